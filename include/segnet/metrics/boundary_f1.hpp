// segnet/metrics/boundary_f1.hpp: boundary F1 (BF, Csurka et al. 2013) as the SegNet paper's
// public Matlab script computes it: per image and class, one-to-one matching of boundary pixels.
//
//   segnet::BoundaryF1Accumulator bf(11, {.ignore_label = 11});
//   for (const auto& batch : test_set) bf.add(predicted_labels, batch.labels);  // {N, 1, H, W} uint8
//   std::printf("BF %.2f\n", bf.mean());                                        // in %
//
// Definition (SEGNET.md section 4), per image and class c, with mask = (labels == c):
// - Boundary pixels: BSDS `seg2bdry(mask, 'imageSize')`. Pixel (y, x) is a boundary pixel if the
//   2x2 block with it at the top-left holds both mask values; in the last row only (y, x+1) is
//   compared, in the last column only (y+1, x); the bottom-right pixel never is a boundary pixel.
//   For a label map, a non-constant block makes the pixel a boundary pixel of every class in it.
// - Predicted and true boundary pixels are matched one-to-one if their Euclidean distance is
//   <= tolerance * image diagonal (0.75 %: 4.5 px at 360x480), with a maximum-cardinality
//   matching (Hopcroft-Karp). BSDS `correspondPixels` solves a min-cost assignment whose
//   outlier cost (100x the radius) makes it maximise the number of matches first; the count of
//   matches, which is all BF uses, is therefore the maximum matching's.
// - precision = matched / predicted pixels, recall = matched / true pixels,
//   F1 = 2PR / (P + R); a side with no pixels makes F1 = 0.
// - A class counts for the image if the truth or the prediction has a boundary pixel of it: a
//   class predicted but absent from the truth scores 0. A class with no boundary pixel on either
//   side is skipped, even if it covers the whole image in both (nothing to match).
// - Image BF = mean F1 over counted classes; dataset BF = mean over images. An image with no
//   counted class has no BF (NaN); it is left out of the dataset mean and counted in
//   images_without_boundaries(). (Never happens on CamVid: every image holds several classes.)
// All values are in percent (0..100), like the other metrics and the paper.
//
// Void: the reference script does not mask void for BF, so by default void is simply "not c" in
// every class mask, and truth pixels of class c next to void are boundary pixels. With
// mask_void, pixels whose truth is the ignore label are removed from both boundary maps before
// matching. Void itself is never a class.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/core/tensor.hpp"

namespace segnet {

struct BoundaryF1Options {
    /// Matching radius as a fraction of the image diagonal (the script's 0.75 %).
    double tolerance = 0.0075;
    /// The void label of the truth (CamVid: 11); negative = every truth value must be a class.
    int ignore_label = -1;
    /// Remove pixels whose truth is void from both boundary maps (not the reference behaviour).
    bool mask_void = false;
};

/// Boundary pixel counts of one class in one image.
struct ClassBoundaryMatch {
    std::int64_t predicted = 0;  ///< predicted boundary pixels
    std::int64_t truth = 0;      ///< true boundary pixels
    std::int64_t matched = 0;    ///< pairs in the maximum one-to-one matching

    bool counted() const { return predicted > 0 || truth > 0; }
    double precision() const { return predicted > 0 ? 100.0 * double(matched) / double(predicted) : 0.0; }
    double recall() const { return truth > 0 ? 100.0 * double(matched) / double(truth) : 0.0; }
    /// In %; 0 when a side has no pixels.
    double f1() const {
        if (predicted == 0 || truth == 0 || matched == 0) return 0.0;
        const double p = precision(), r = recall();
        return 2.0 * p * r / (p + r);
    }
};

struct ImageBoundaryF1 {
    std::vector<ClassBoundaryMatch> classes;  ///< one entry per class, counted or not
    int counted_classes = 0;
    /// Mean F1 over counted classes in %; NaN when no class counted.
    double bf = std::numeric_limits<double>::quiet_NaN();
};

/// Maximum-cardinality matching between two boundary pixel sets within a radius; holds its
/// buffers so repeated calls (classes, images) do not allocate.
class BoundaryMatcher {
public:
    /// Pixels are flat indices y * width + x. Returns the size of a maximum one-to-one matching
    /// where a predicted and a true pixel may pair if their distance is <= radius.
    std::int64_t max_matching(std::span<const std::int32_t> predicted, std::span<const std::int32_t> truth,
                              int height, int width, double radius) {
        if (predicted.empty() || truth.empty()) return 0;
        prepare(height, width, radius);
        build_graph(predicted, truth, width, height);
        return hopcroft_karp(std::int32_t(predicted.size()), std::int32_t(truth.size()));
    }

private:
    void prepare(int height, int width, double radius) {
        if (std::int64_t(index_of_.size()) != std::int64_t(height) * width)
            index_of_.assign(std::size_t(height) * width, -1);
        if (radius != radius_) {
            radius_ = radius;
            offsets_.clear();
            const int r = int(std::floor(radius));
            // Relative slack: 0.0075 * diagonal is rarely exact in binary, and a pixel at exactly
            // the radius must match, as the script's `d > maxDist` test lets it.
            const double limit = radius * radius * (1.0 + 1e-12);
            for (int dy = -r; dy <= r; ++dy)
                for (int dx = -r; dx <= r; ++dx)
                    if (double(dy * dy + dx * dx) <= limit) offsets_.push_back({dy, dx, dy * dy + dx * dx});
            // Nearest first: the greedy start then pairs coincident pixels, which leaves
            // Hopcroft-Karp little to augment.
            std::stable_sort(offsets_.begin(), offsets_.end(),
                             [](const Offset& a, const Offset& b) { return a.d2 < b.d2; });
        }
    }

    void build_graph(std::span<const std::int32_t> predicted, std::span<const std::int32_t> truth, int width,
                     int height) {
        for (std::size_t j = 0; j < truth.size(); ++j) index_of_[truth[j]] = std::int32_t(j);
        adj_start_.assign(predicted.size() + 1, 0);
        adj_.clear();
        for (std::size_t i = 0; i < predicted.size(); ++i) {
            const int y = predicted[i] / width, x = predicted[i] % width;
            for (const Offset& o : offsets_) {
                const int ny = y + o.dy, nx = x + o.dx;
                if (ny < 0 || ny >= height || nx < 0 || nx >= width) continue;
                if (const std::int32_t j = index_of_[ny * width + nx]; j >= 0) adj_.push_back(j);
            }
            adj_start_[i + 1] = std::int32_t(adj_.size());
        }
        for (std::int32_t p : truth) index_of_[p] = -1;  // reset only what was set
    }

    std::int64_t hopcroft_karp(std::int32_t left, std::int32_t right) {
        constexpr std::int32_t unmatched = -1, unreached = std::numeric_limits<std::int32_t>::max();
        match_left_.assign(left, unmatched);
        match_right_.assign(right, unmatched);
        std::int64_t matched = 0;
        for (std::int32_t u = 0; u < left; ++u)
            for (std::int32_t e = adj_start_[u]; e < adj_start_[u + 1]; ++e)
                if (match_right_[adj_[e]] == unmatched) {
                    match_left_[u] = adj_[e];
                    match_right_[adj_[e]] = u;
                    ++matched;
                    break;
                }
        layer_.resize(left);
        next_edge_.resize(left);
        for (;;) {
            // BFS from all free left vertices; layer = alternating path length to each left vertex.
            queue_.clear();
            for (std::int32_t u = 0; u < left; ++u) {
                layer_[u] = match_left_[u] == unmatched ? 0 : unreached;
                if (layer_[u] == 0) queue_.push_back(u);
            }
            bool free_right_reached = false;
            for (std::size_t q = 0; q < queue_.size(); ++q) {
                const std::int32_t u = queue_[q];
                for (std::int32_t e = adj_start_[u]; e < adj_start_[u + 1]; ++e) {
                    const std::int32_t w = match_right_[adj_[e]];
                    if (w == unmatched) free_right_reached = true;
                    else if (layer_[w] == unreached) {
                        layer_[w] = layer_[u] + 1;
                        queue_.push_back(w);
                    }
                }
            }
            if (!free_right_reached) return matched;
            // Iterative DFS along increasing layers (augmenting paths can be thousands long on
            // a boundary chain: no recursion). A dead end is marked unreached for the phase.
            std::copy(adj_start_.begin(), adj_start_.end() - 1, next_edge_.begin());
            for (std::int32_t root = 0; root < left; ++root) {
                if (match_left_[root] != unmatched) continue;
                stack_.assign(1, root);
                while (!stack_.empty()) {
                    const std::int32_t u = stack_.back();
                    if (next_edge_[u] == adj_start_[u + 1]) {
                        layer_[u] = unreached;
                        stack_.pop_back();
                        continue;
                    }
                    const std::int32_t w = match_right_[adj_[next_edge_[u]]];
                    if (w == unmatched) {
                        // Flip the path: each stacked vertex takes the edge it is exploring.
                        for (std::int32_t x : stack_) {
                            const std::int32_t v = adj_[next_edge_[x]];
                            match_left_[x] = v;
                            match_right_[v] = x;
                        }
                        ++matched;
                        break;
                    }
                    if (layer_[w] == layer_[u] + 1) stack_.push_back(w);
                    else ++next_edge_[u];
                }
            }
        }
    }

    struct Offset {
        int dy, dx, d2;
    };
    double radius_ = -1.0;
    std::vector<Offset> offsets_;
    std::vector<std::int32_t> index_of_;  // pixel -> true boundary pixel index, -1 elsewhere
    std::vector<std::int32_t> adj_start_, adj_, match_left_, match_right_, layer_, next_edge_, queue_, stack_;
};

/// Computes per-class boundary pixels of label images and their BF; reusable across images.
class BoundaryF1Evaluator {
public:
    explicit BoundaryF1Evaluator(int num_classes, BoundaryF1Options options = {})
        : classes_(num_classes), options_(options) {
        if (num_classes <= 0 || num_classes > 256)
            throw std::invalid_argument("segnet::BoundaryF1: the number of classes must be in 1..256 "
                                        "(uint8 labels), got " + std::to_string(num_classes));
        if (!(options.tolerance >= 0.0))
            throw std::invalid_argument("segnet::BoundaryF1: tolerance must be >= 0 (a fraction of "
                                        "the image diagonal), got " + std::to_string(options.tolerance));
        predicted_pixels_.resize(num_classes);
        true_pixels_.resize(num_classes);
    }

    int num_classes() const { return classes_; }
    const BoundaryF1Options& options() const { return options_; }

    /// BF of one image: `predicted` and `truth` are {1, 1, H, W} (or image(i) of a batch).
    ImageBoundaryF1 evaluate(TensorView<Cpu, const std::uint8_t> predicted,
                             TensorView<Cpu, const std::uint8_t> truth) {
        const Extents e = truth.extents();
        if (e.n != 1 || e.c != 1 || predicted.extents() != e)
            throw std::invalid_argument("segnet::BoundaryF1: prediction and truth must both be one "
                                        "image {1, 1, H, W}; prediction is " + to_string(predicted.extents()) +
                                        ", truth is " + to_string(e));
        check_values(predicted.data(), truth.data(), e);
        collect_boundaries(predicted.data(), predicted_pixels_, e.h, e.w, truth.data());
        collect_boundaries(truth.data(), true_pixels_, e.h, e.w, truth.data());
        const double radius = options_.tolerance * std::sqrt(double(e.h) * e.h + double(e.w) * e.w);

        ImageBoundaryF1 result;
        result.classes.resize(classes_);
        double f1_sum = 0.0;
        for (int c = 0; c < classes_; ++c) {
            ClassBoundaryMatch& m = result.classes[c];
            m.predicted = std::int64_t(predicted_pixels_[c].size());
            m.truth = std::int64_t(true_pixels_[c].size());
            if (!m.counted()) continue;
            m.matched = matcher_.max_matching(predicted_pixels_[c], true_pixels_[c], e.h, e.w, radius);
            ++result.counted_classes;
            f1_sum += m.f1();
        }
        if (result.counted_classes > 0) result.bf = f1_sum / result.counted_classes;
        return result;
    }

    /// The seg2bdry boundary of one class as a {1, 1, H, W} 0/1 map (for inspection and tests);
    /// with mask_void, `truth` supplies the void pixels to remove (else it may be empty).
    Tensor<Cpu, std::uint8_t> class_boundary(TensorView<Cpu, const std::uint8_t> labels, int cls,
                                            TensorView<Cpu, const std::uint8_t> truth = {}) {
        const Extents e = labels.extents();
        if (e.n != 1 || e.c != 1)
            throw std::invalid_argument("segnet::BoundaryF1::class_boundary: labels must be {1, 1, H, W}, got " +
                                        to_string(e));
        if (cls < 0 || cls >= classes_)
            throw std::invalid_argument("segnet::BoundaryF1::class_boundary: class " + std::to_string(cls) +
                                        " is not in 0.." + std::to_string(classes_ - 1));
        if (options_.mask_void && truth.extents() != e)
            throw std::invalid_argument("segnet::BoundaryF1::class_boundary: mask_void needs the truth "
                                        "image (" + to_string(e) + "), got " + to_string(truth.extents()));
        collect_boundaries(labels.data(), predicted_pixels_, e.h, e.w, truth.data());
        Tensor<Cpu, std::uint8_t> map({1, 1, e.h, e.w});
        for (std::int32_t p : predicted_pixels_[cls]) map[p] = 1;
        return map;
    }

private:
    void check_values(const std::uint8_t* predicted, const std::uint8_t* truth, const Extents& e) const {
        for (std::int64_t i = 0, n = e.plane(); i < n; ++i) {
            const bool bad_truth = truth[i] >= classes_ && truth[i] != options_.ignore_label;
            if (!bad_truth && predicted[i] < classes_) continue;
            const std::string at = " at (y=" + std::to_string(i / e.w) + ", x=" + std::to_string(i % e.w) + ")";
            if (bad_truth)
                throw std::invalid_argument("segnet::BoundaryF1: truth label value " + std::to_string(truth[i]) +
                                            at + " is not a class (" + std::to_string(classes_) +
                                            " classes) and is not the ignore label (" +
                                            std::to_string(options_.ignore_label) + ")");
            throw std::invalid_argument("segnet::BoundaryF1: predicted label value " +
                                        std::to_string(predicted[i]) + at + " is not a class (" +
                                        std::to_string(classes_) + " classes)");
        }
    }

    // One pass for all classes: a pixel whose 2x2 block (clipped at the last row/column) is not
    // constant is a boundary pixel of each class value in the block, since that block holds
    // both 1 and 0 of each such class's mask.
    void collect_boundaries(const std::uint8_t* s, std::vector<std::vector<std::int32_t>>& out, int height,
                            int width, const std::uint8_t* truth) const {
        for (auto& v : out) v.clear();
        const bool mask = options_.mask_void && options_.ignore_label >= 0 && truth != nullptr;
        const int classes = classes_;
        auto emit = [&](std::int32_t i, int v) {
            if (v < classes) out[v].push_back(i);
        };
        for (int y = 0; y < height; ++y) {
            const bool last_row = y + 1 == height;
            for (int x = 0; x < width; ++x) {
                const std::int32_t i = y * width + x;
                const int a = s[i];
                const bool last_col = x + 1 == width;
                const int b = last_col ? a : s[i + 1];
                const int c = last_row ? a : s[i + width];
                const int d = (last_row || last_col) ? a : s[i + width + 1];
                if (a == b && a == c && a == d) continue;
                if (mask && truth[i] == options_.ignore_label) continue;
                emit(i, a);
                if (b != a) emit(i, b);
                if (c != a && c != b) emit(i, c);
                if (d != a && d != b && d != c) emit(i, d);
            }
        }
    }

    int classes_;
    BoundaryF1Options options_;
    std::vector<std::vector<std::int32_t>> predicted_pixels_, true_pixels_;
    BoundaryMatcher matcher_;
};

/// BF of one image ({1, 1, H, W} labels); allocates its buffers each call: use
/// BoundaryF1Evaluator or BoundaryF1Accumulator over many images.
inline ImageBoundaryF1 boundary_f1(TensorView<Cpu, const std::uint8_t> predicted,
                                   TensorView<Cpu, const std::uint8_t> truth, int num_classes,
                                   BoundaryF1Options options = {}) {
    return BoundaryF1Evaluator(num_classes, options).evaluate(predicted, truth);
}

/// Dataset BF: the mean of image BF over the images added, plus per-class means.
class BoundaryF1Accumulator {
public:
    explicit BoundaryF1Accumulator(int num_classes, BoundaryF1Options options = {})
        : evaluator_(num_classes, options), class_f1_sum_(num_classes, 0.0), class_images_(num_classes, 0) {}

    /// Adds every image of {N, 1, H, W} predicted and true label batches; returns nothing, the
    /// image results are folded in (use BoundaryF1Evaluator to keep them).
    void add(TensorView<Cpu, const std::uint8_t> predicted, TensorView<Cpu, const std::uint8_t> truth) {
        if (predicted.extents() != truth.extents() || truth.c() != 1)
            throw std::invalid_argument("segnet::BoundaryF1Accumulator::add: prediction and truth must "
                                        "both be {N, 1, H, W} with equal extents; prediction is " +
                                        to_string(predicted.extents()) + ", truth is " + to_string(truth.extents()));
        for (int n = 0; n < truth.n(); ++n) add_image(evaluator_.evaluate(predicted.image(n), truth.image(n)));
    }

    /// Folds in an image result computed elsewhere (e.g. by another thread's evaluator).
    void add_image(const ImageBoundaryF1& image) {
        if (int(image.classes.size()) != num_classes())
            throw std::invalid_argument("segnet::BoundaryF1Accumulator::add_image: result has " +
                                        std::to_string(image.classes.size()) + " classes, expected " +
                                        std::to_string(num_classes()));
        ++images_;
        if (image.counted_classes == 0) {
            ++images_without_boundaries_;
            return;
        }
        bf_sum_ += image.bf;
        for (int c = 0; c < num_classes(); ++c)
            if (image.classes[c].counted()) {
                class_f1_sum_[c] += image.classes[c].f1();
                ++class_images_[c];
            }
    }

    int num_classes() const { return evaluator_.num_classes(); }
    std::int64_t images() const { return images_; }
    std::int64_t images_without_boundaries() const { return images_without_boundaries_; }
    /// Dataset BF in %: mean image BF over images with a counted class; 0 if there is none.
    double mean() const {
        const std::int64_t n = images_ - images_without_boundaries_;
        return n > 0 ? bf_sum_ / double(n) : 0.0;
    }
    /// Per class, mean F1 (%) over the images in which it was counted; NaN if never counted.
    /// Its sums and counts as doubles, to be summed across processes, and back (same layout).
    std::vector<double> totals() const {
        std::vector<double> t{bf_sum_, double(images_), double(images_without_boundaries_)};
        t.insert(t.end(), class_f1_sum_.begin(), class_f1_sum_.end());
        t.insert(t.end(), class_images_.begin(), class_images_.end());
        return t;
    }
    void assign_totals(const double* t) {
        bf_sum_ = t[0];
        images_ = std::int64_t(t[1]);
        images_without_boundaries_ = std::int64_t(t[2]);
        const std::size_t k = class_f1_sum_.size();
        for (std::size_t c = 0; c < k; ++c) class_f1_sum_[c] = t[3 + c];
        for (std::size_t c = 0; c < k; ++c) class_images_[c] = std::int64_t(t[3 + k + c]);
    }

    std::vector<double> class_mean_f1() const {
        std::vector<double> r(num_classes(), std::numeric_limits<double>::quiet_NaN());
        for (int c = 0; c < num_classes(); ++c)
            if (class_images_[c] > 0) r[c] = class_f1_sum_[c] / double(class_images_[c]);
        return r;
    }

private:
    BoundaryF1Evaluator evaluator_;
    double bf_sum_ = 0.0;
    std::vector<double> class_f1_sum_;
    std::vector<std::int64_t> class_images_;
    std::int64_t images_ = 0, images_without_boundaries_ = 0;
};

}  // namespace segnet
