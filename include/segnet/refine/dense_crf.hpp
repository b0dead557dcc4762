#pragma once
// Fully connected CRF on a network's class probabilities (Krähenbühl and Koltun, "Efficient
// Inference in Fully Connected CRFs with Gaussian Edge Potentials", NIPS 2011), as DeepLab
// refines its output (the paper's Table 3 "DeepLab-LargeFOV-denseCRF"): Potts pairwise terms
// with two Gaussian kernels over every pair of pixels,
//
//   k_a(i, j) = exp(-|p_i - p_j|^2 / 2 theta_a^2 - |I_i - I_j|^2 / 2 theta_b^2)   (appearance)
//   k_s(i, j) = exp(-|p_i - p_j|^2 / 2 theta_s^2)                                (smoothness)
//
// (p a pixel's position, I its RGB colour), unaries U_i(l) = -log P_i(l) from the network.
// Each kernel is filtered on the permutohedral lattice (permutohedral.hpp) and normalised
// symmetrically, K = D^-1/2 k D^-1/2 with D_i = sum_j k(i, j), as the authors' released code does
// by default (NORMALIZE_SYMMETRIC): the lattice's gain is off by 10-50% while its normalised
// averages agree with the exact Gaussian within about 3% (tests/test_refine.cpp). Mean-field
// inference updates every pixel at once,
//
//   Q_i(l) proportional to exp(-U_i(l) + w_a (K_a Q)_i(l) + w_s (K_s Q)_i(l)),
//
// the stationary condition of the free energy free_energy() computes. The pixel loops and the
// filter run on the CPU backend's thread pool (segnet::set_num_threads); the result does not
// depend on the thread count.
#include <segnet/refine/permutohedral.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace segnet::refine {

/// The kernels' weights and widths (pixels, colour levels 0..255) and the iteration count.
/// Defaults: chosen on CamVid val for the shipped SegNet-Basic (docs/uncertainty.md: a grid
/// around DeepLab-LargeFOV's PASCAL VOC values, Chen et al. 2015: w_a 4, theta_a 121, theta_b 5,
/// w_s 3, theta_s 3, 10 iterations; CamVid's best differs in theta_b, 3).
struct DenseCrfOptions {
    int iterations = 10;
    float appearance_weight = 4.0f;  ///< w_a
    float appearance_xy = 121.0f;    ///< theta_a, pixels
    float appearance_rgb = 3.0f;     ///< theta_b, colour levels
    float smoothness_weight = 3.0f;  ///< w_s
    float smoothness_xy = 3.0f;      ///< theta_s, pixels
};

/// Throws std::invalid_argument naming the first option out of range.
inline void check_options(const DenseCrfOptions& o) {
    auto require = [](bool ok, const std::string& what) {
        if (!ok) throw std::invalid_argument("dense CRF: " + what);
    };
    require(o.iterations >= 0 && o.iterations <= 1000, "iterations must be in 0..1000, got " + std::to_string(o.iterations));
    auto weight = [&](float w, const char* name) {
        require(std::isfinite(w) && w >= 0, std::string(name) + " must be a finite weight >= 0, got " + std::to_string(w));
    };
    auto width = [&](float s, const char* name) {
        require(std::isfinite(s) && s > 0, std::string(name) + " must be a finite width > 0, got " + std::to_string(s));
    };
    weight(o.appearance_weight, "appearance weight");
    weight(o.smoothness_weight, "smoothness weight");
    width(o.appearance_xy, "appearance xy width");
    width(o.appearance_rgb, "appearance rgb width");
    width(o.smoothness_xy, "smoothness xy width");
}

class DenseCrf {
public:
    /// `probabilities`: `classes` planes of height x width (a pixel's values sum to 1, as a
    /// softmax gives); `rgb`: height x width x 3 bytes. Q starts at the probabilities.
    DenseCrf(const float* probabilities, int classes, int height, int width, const std::uint8_t* rgb,
             const DenseCrfOptions& options)
        : classes_(classes), pixels_(std::size_t(height) * std::size_t(width)),
          options_((check_options(options), options)),
          appearance_(lattice(height, width, rgb, options.appearance_xy, options.appearance_rgb, true)),
          smoothness_(lattice(height, width, rgb, options.smoothness_xy, 1.0f, false)) {
        if (classes < 1) throw std::invalid_argument("dense CRF: " + std::to_string(classes) + " classes");
        unary_.resize(pixels_ * classes_);
        q_.resize(pixels_ * classes_);
        for (std::size_t i = 0; i < pixels_; ++i)
            for (int l = 0; l < classes_; ++l) {
                const float p = probabilities[std::size_t(l) * pixels_ + i];
                if (!(p >= 0.0f && p <= 1.0f + 1e-4f))
                    throw std::invalid_argument("dense CRF: probability " + std::to_string(p) + " at pixel " +
                                                std::to_string(i) + ", class " + std::to_string(l) +
                                                " is not in [0, 1]");
                unary_[i * classes_ + l] = -std::log(std::max(p, 1e-10f));
            }
        normalize_from_energy(unary_);
        appearance_norm_ = symmetric_normalization(appearance_);
        smoothness_norm_ = symmetric_normalization(smoothness_);
    }

    /// One mean-field update of every pixel at once.
    void iterate() {
        filter_messages();
        std::vector<float> energy(pixels_ * classes_);
        for_pixels([&](std::size_t i) {
            for (std::size_t k = i * classes_; k < (i + 1) * classes_; ++k)
                energy[k] = unary_[k] - options_.appearance_weight * appearance_q_[k] -
                            options_.smoothness_weight * smoothness_q_[k];
        });
        normalize_from_energy(energy);
    }

    /// Runs options.iterations updates.
    void run() {
        for (int t = 0; t < options_.iterations; ++t) iterate();
    }

    /// The mean-field free energy of Q, up to a constant: sum_i sum_l Q_i(l) (U_i(l) + log Q_i(l))
    /// - 1/2 sum over kernels of w Q . K Q (the Potts terms: agreement lowers the energy).
    double free_energy() {
        filter_messages();
        double energy = 0;
        for (std::size_t k = 0; k < q_.size(); ++k) {
            const double q = q_[k];
            energy += q * unary_[k] + (q > 0 ? q * std::log(q) : 0.0) -
                      0.5 * q * (options_.appearance_weight * appearance_q_[k] + options_.smoothness_weight * smoothness_q_[k]);
        }
        return energy;
    }

    /// The marginals Q as `classes` planes of height x width.
    std::vector<float> marginals() const {
        std::vector<float> planes(q_.size());
        for (std::size_t i = 0; i < pixels_; ++i)
            for (int l = 0; l < classes_; ++l) planes[std::size_t(l) * pixels_ + i] = q_[i * classes_ + l];
        return planes;
    }

    /// The most probable class of each pixel under Q.
    std::vector<std::uint8_t> labels() const {
        std::vector<std::uint8_t> out(pixels_);
        for (std::size_t i = 0; i < pixels_; ++i) {
            const float* q = &q_[i * classes_];
            out[i] = std::uint8_t(std::max_element(q, q + classes_) - q);
        }
        return out;
    }

private:
    /// A kernel's lattice: each pixel's position / xy (and colour / rgb).
    static PermutohedralLattice lattice(int height, int width, const std::uint8_t* rgb, float xy, float colour, bool with_colour) {
        if (height < 1 || width < 1)
            throw std::invalid_argument("dense CRF: image of " + std::to_string(width) + "x" + std::to_string(height));
        const int dims = with_colour ? 5 : 2;
        std::vector<float> f(std::size_t(height) * width * dims);
        for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x) {
                const std::size_t i = std::size_t(y) * width + x;
                float* row = &f[i * dims];
                row[0] = float(x) / xy;
                row[1] = float(y) / xy;
                if (with_colour)
                    for (int c = 0; c < 3; ++c) row[2 + c] = float(rgb[i * 3 + c]) / colour;
            }
        return PermutohedralLattice(f.data(), dims, height * width);
    }

    /// 1 / sqrt(sum_j k(i, j)) for every pixel i.
    std::vector<float> symmetric_normalization(const PermutohedralLattice& kernel) const {
        std::vector<float> ones(pixels_, 1.0f), norm(pixels_);
        kernel.filter(ones.data(), norm.data(), 1);
        for (float& v : norm) v = 1.0f / std::sqrt(std::max(v, 1e-20f));
        return norm;
    }

    /// out = D^-1/2 k D^-1/2 Q for one kernel.
    void normalized_filter(const PermutohedralLattice& kernel, const std::vector<float>& norm, std::vector<float>& out) {
        scaled_.resize(q_.size());
        for_pixels([&](std::size_t i) {
            for (int l = 0; l < classes_; ++l) scaled_[i * classes_ + l] = norm[i] * q_[i * classes_ + l];
        });
        out.resize(q_.size());
        kernel.filter(scaled_.data(), out.data(), classes_);
        for_pixels([&](std::size_t i) {
            for (int l = 0; l < classes_; ++l) out[i * classes_ + l] *= norm[i];
        });
    }

    /// fn(i) for every pixel i, on the CPU backend's thread pool.
    template <class F>
    void for_pixels(const F& fn) const {
        backend::cpu::parallel_for(0, std::int64_t(pixels_), [&](std::int64_t first, std::int64_t last, int) {
            for (std::int64_t i = first; i < last; ++i) fn(std::size_t(i));
        }, 4096);
    }

    /// Each kernel's message K Q.
    void filter_messages() {
        normalized_filter(appearance_, appearance_norm_, appearance_q_);
        normalized_filter(smoothness_, smoothness_norm_, smoothness_q_);
    }

    /// Q_i(l) = exp(-energy_i(l)) / sum over l.
    void normalize_from_energy(const std::vector<float>& energy) {
        for_pixels([&](std::size_t i) {
            const float* e = &energy[i * classes_];
            const float lowest = *std::min_element(e, e + classes_);
            float sum = 0;
            for (int l = 0; l < classes_; ++l) sum += q_[i * classes_ + l] = std::exp(lowest - e[l]);
            for (int l = 0; l < classes_; ++l) q_[i * classes_ + l] /= sum;
        });
    }

    int classes_;
    std::size_t pixels_;
    DenseCrfOptions options_;
    PermutohedralLattice appearance_, smoothness_;
    std::vector<float> unary_, q_, scaled_, appearance_q_, smoothness_q_, appearance_norm_, smoothness_norm_;
};

/// The refined labels of one image: `iterations` mean-field updates from the network's
/// probabilities (`classes` planes of height x width) and the image (height x width x 3 RGB).
inline std::vector<std::uint8_t> dense_crf(const float* probabilities, int classes, int height, int width,
                                           const std::uint8_t* rgb, const DenseCrfOptions& options = {}) {
    DenseCrf crf(probabilities, classes, height, width, rgb, options);
    crf.run();
    return crf.labels();
}

}  // namespace segnet::refine
