#pragma once
// Gaussian filtering in d dimensions on the permutohedral lattice (Adams, Baek, Davis,
// "Fast High-Dimensional Filtering Using the Permutohedral Lattice", Eurographics 2010), in the
// form Krähenbühl and Koltun's dense CRF uses it:
//
//     out[i] ~= sum over j of exp(-|f_i - f_j|^2 / 2) * in[j]
//
// for n points with d-dimensional features f (already divided by the kernel's standard
// deviations) and values of any width. Each point is embedded in the (d+1)-dimensional
// lattice, its value splatted onto the d+1 vertices of its enclosing simplex with barycentric
// weights, blurred along the d+1 lattice directions with a [1 2 1] kernel, and sliced back. The
// cost is linear in n and in d^2, independent of the kernel's width; the result is an
// approximation (tests/test_refine.cpp states its error against the brute-force sum).
//
// filter() runs on the CPU backend's thread pool (segnet::set_num_threads): the splat over
// ranges of value channels, the blur over vertices, the slice over points. Every sum keeps its
// order, so the result does not depend on the thread count.
#include "segnet/backend/cpu/thread_pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace segnet::refine {

class PermutohedralLattice {
public:
    /// Builds the lattice for `points` feature vectors of `dims` floats each (row-major).
    PermutohedralLattice(const float* features, int dims, int points) : d_(dims), n_(points) {
        if (dims < 1 || dims > 16) throw std::invalid_argument("permutohedral lattice: " + std::to_string(dims) +
                                                               " feature dimensions; 1..16 are supported");
        if (points < 0) throw std::invalid_argument("permutohedral lattice: negative point count");
        const int d1 = d_ + 1;
        vertex_.resize(std::size_t(n_) * d1);
        weight_.resize(std::size_t(n_) * d1);
        KeyTable table(d_, std::size_t(n_) * d1);

        // Scales that make the lattice's blur a unit-variance Gaussian in feature space.
        std::vector<float> scale(d_);
        const float inv_std = std::sqrt(2.0f / 3.0f) * float(d1);
        for (int i = 0; i < d_; ++i) scale[i] = inv_std / std::sqrt(float((i + 1) * (i + 2)));

        std::vector<float> elevated(d1), barycentric(d1 + 1);
        std::vector<int> nearest(d1), rank(d1);
        std::vector<short> key(d_);
        const float down = 1.0f / float(d1);
        for (int p = 0; p < n_; ++p) {
            const float* f = features + std::size_t(p) * d_;
            // Elevate into the hyperplane x . 1 = 0 of R^(d+1).
            float sum = 0;
            for (int i = d_; i > 0; --i) {
                const float cf = f[i - 1] * scale[i - 1];
                elevated[i] = sum - float(i) * cf;
                sum += cf;
            }
            elevated[0] = sum;
            // The nearest lattice point of remainder 0 (coordinates that are multiples of d+1).
            int coordinate_sum = 0;
            for (int i = 0; i <= d_; ++i) {
                const float v = elevated[i] * down;
                const int up = int(std::ceil(v)) * d1, lo = int(std::floor(v)) * d1;
                nearest[i] = (float(up) - elevated[i] < elevated[i] - float(lo)) ? up : lo;
                coordinate_sum += nearest[i];
            }
            coordinate_sum /= d1;
            // Rank of each coordinate's remainder, then the correction that puts it on the plane.
            std::fill(rank.begin(), rank.end(), 0);
            for (int i = 0; i < d_; ++i)
                for (int j = i + 1; j <= d_; ++j)
                    (elevated[i] - float(nearest[i]) < elevated[j] - float(nearest[j]) ? rank[i] : rank[j])++;
            for (int i = 0; i <= d_; ++i) {
                rank[i] += coordinate_sum;
                if (rank[i] < 0) {
                    rank[i] += d1;
                    nearest[i] += d1;
                } else if (rank[i] > d_) {
                    rank[i] -= d1;
                    nearest[i] -= d1;
                }
            }
            // Barycentric coordinates in the enclosing simplex.
            std::fill(barycentric.begin(), barycentric.end(), 0.0f);
            for (int i = 0; i <= d_; ++i) {
                const float v = (elevated[i] - float(nearest[i])) * down;
                barycentric[d_ - rank[i]] += v;
                barycentric[d_ - rank[i] + 1] -= v;
            }
            barycentric[0] += 1.0f + barycentric[d1];
            // The simplex's d+1 vertices: the nearest point plus the canonical offset of each remainder.
            for (int r = 0; r <= d_; ++r) {
                for (int i = 0; i < d_; ++i) key[i] = short(nearest[i] + (rank[i] <= d_ - r ? r : r - d1));
                vertex_[std::size_t(p) * d1 + r] = table.find_or_insert(key.data());
                weight_[std::size_t(p) * d1 + r] = barycentric[r];
            }
        }
        vertices_ = int(table.size());

        // Each vertex's two neighbours along each of the d+1 lattice directions (-1: none).
        neighbours_.assign(std::size_t(vertices_) * d1 * 2, -1);
        std::vector<short> n1(d_), n2(d_);
        for (int v = 0; v < vertices_; ++v) {
            const short* k = table.key(v);
            for (int dir = 0; dir <= d_; ++dir) {
                for (int i = 0; i < d_; ++i) {
                    n1[i] = short(k[i] - 1);
                    n2[i] = short(k[i] + 1);
                }
                if (dir < d_) {
                    n1[dir] = short(k[dir] + d_);
                    n2[dir] = short(k[dir] - d_);
                }
                neighbours_[(std::size_t(dir) * vertices_ + v) * 2] = table.find(n1.data());
                neighbours_[(std::size_t(dir) * vertices_ + v) * 2 + 1] = table.find(n2.data());
            }
        }
    }

    int dims() const { return d_; }
    int points() const { return n_; }
    int vertices() const { return vertices_; }

    /// out[i * width + c] = the filtered in[j * width + c] (point-major, `width` values a point).
    /// `out` and `in` may not overlap.
    void filter(const float* in, float* out, int width) const {
        const int d1 = d_ + 1;
        // Slot 0 is the missing neighbour (always zero), vertex v lives in slot v + 1.
        std::vector<float> values(std::size_t(vertices_ + 1) * width, 0.0f), blurred(values.size(), 0.0f);
        // Splat: points scatter onto shared vertices, so threads split the channels, not the points.
        backend::cpu::parallel_for(0, width, [&](std::int64_t first, std::int64_t last, int) {
            for (int p = 0; p < n_; ++p)
                for (int r = 0; r < d1; ++r) {
                    const std::size_t slot = std::size_t(vertex_[std::size_t(p) * d1 + r] + 1) * width;
                    const float w = weight_[std::size_t(p) * d1 + r];
                    for (std::int64_t c = first; c < last; ++c) values[slot + c] += w * in[std::size_t(p) * width + c];
                }
        });
        for (int dir = 0; dir <= d_; ++dir) {
            backend::cpu::parallel_for(0, vertices_, [&](std::int64_t first, std::int64_t last, int) {
                for (std::int64_t v = first; v < last; ++v) {
                    const int* nb = &neighbours_[(std::size_t(dir) * vertices_ + std::size_t(v)) * 2];
                    const float* a = &values[std::size_t(nb[0] + 1) * width];
                    const float* b = &values[std::size_t(nb[1] + 1) * width];
                    const float* self = &values[std::size_t(v + 1) * width];
                    float* o = &blurred[std::size_t(v + 1) * width];
                    for (int c = 0; c < width; ++c) o[c] = self[c] + 0.5f * (a[c] + b[c]);
                }
            }, 4096);
            values.swap(blurred);
        }
        // The constant that brings the splat-blur-slice gain to the Gaussian's (Adams et al.'s).
        const float alpha = 1.0f / (1.0f + std::pow(2.0f, -float(d_)));
        backend::cpu::parallel_for(0, n_, [&](std::int64_t first, std::int64_t last, int) {
            for (std::int64_t p = first; p < last; ++p) {
                float* o = out + std::size_t(p) * width;
                std::fill(o, o + width, 0.0f);
                for (int r = 0; r < d1; ++r) {
                    const std::size_t slot = std::size_t(vertex_[std::size_t(p) * d1 + r] + 1) * width;
                    const float w = weight_[std::size_t(p) * d1 + r] * alpha;
                    for (int c = 0; c < width; ++c) o[c] += w * values[slot + c];
                }
            }
        }, 4096);
    }

private:
    /// Open-addressing hash table of lattice points (d short coordinates; the (d+1)th is implied).
    class KeyTable {
    public:
        KeyTable(int dims, std::size_t expected) : d_(dims) {
            std::size_t capacity = 16;
            while (capacity < 2 * expected) capacity *= 2;
            slots_.assign(capacity, -1);
            keys_.reserve(expected * std::size_t(d_) / 4);
        }
        std::size_t size() const { return keys_.size() / std::size_t(d_); }
        const short* key(int index) const { return &keys_[std::size_t(index) * d_]; }
        int find(const short* k) const {
            for (std::size_t h = hash(k);; h = (h + 1) & (slots_.size() - 1)) {
                const int index = slots_[h];
                if (index < 0) return -1;
                if (std::equal(k, k + d_, key(index))) return index;
            }
        }
        int find_or_insert(const short* k) {
            if (2 * (size() + 1) > slots_.size()) grow();
            for (std::size_t h = hash(k);; h = (h + 1) & (slots_.size() - 1)) {
                const int index = slots_[h];
                if (index < 0) {
                    slots_[h] = int(size());
                    keys_.insert(keys_.end(), k, k + d_);
                    return slots_[h];
                }
                if (std::equal(k, k + d_, key(index))) return index;
            }
        }

    private:
        std::size_t hash(const short* k) const {
            std::uint64_t h = 0;
            for (int i = 0; i < d_; ++i) h = (h + std::uint64_t(std::uint16_t(k[i]))) * 2531011u;
            return std::size_t(h ^ (h >> 29)) & (slots_.size() - 1);
        }
        void grow() {
            std::vector<int> old(slots_.size() * 2, -1);
            slots_.swap(old);
            for (int index = 0; index < int(size()); ++index)
                for (std::size_t h = hash(key(index));; h = (h + 1) & (slots_.size() - 1))
                    if (slots_[h] < 0) {
                        slots_[h] = index;
                        break;
                    }
        }
        int d_;
        std::vector<int> slots_;
        std::vector<short> keys_;
    };

    int d_, n_, vertices_ = 0;
    std::vector<int> vertex_;     ///< n x (d+1): each point's simplex vertices
    std::vector<float> weight_;   ///< n x (d+1): their barycentric weights
    std::vector<int> neighbours_; ///< (d+1) x vertices x 2
};

}  // namespace segnet::refine
