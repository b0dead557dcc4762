// segnet/backend/cross_entropy.hpp: what the softmax cross-entropy kernels of every device share:
// the options, the checks of logits, labels and class weights, and the normalisation.
//
//   double value = segnet::backend::cross_entropy(logits, labels, options, &grad);   // any device
//
// The loss (train/loss.hpp, segnet::CrossEntropyLoss) calls backend::cross_entropy; each device
// has one kernel, written against the rules here: backend/cpu/loss.hpp (one pass per image row)
// and backend/cuda/loss.cuh (one thread per pixel), both included at the end of this file.
// Per counted pixel i: nll_i = log(sum_c exp(z_c - max)) + max - z_{y_i}; the loss is
// sum_i w_{y_i} * nll_i times inv_norm(), and the fused gradient is
// w_y * inv_norm * (softmax - onehot(y)); ignored pixels add nothing and get zero gradient.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/core/tensor.hpp"

namespace segnet {

enum class LossNormalization {
    weighted_mean,  ///< sum(w_y * nll) / sum(w_y) over non-ignored pixels (PyTorch 'mean')
    sum,            ///< sum(w_y * nll) over non-ignored pixels (paper / Caffe normalize: false)
};

struct CrossEntropyOptions {
    /// One weight per class (size K), e.g. from MedianFrequencyCounter; empty = every pixel 1.
    std::vector<float> class_weights{};
    /// Pixels with this label add nothing to the loss and get zero gradient; negative = none.
    int ignore_label = -1;
    LossNormalization normalization = LossNormalization::weighted_mean;
    /// weighted_mean's denominator when these logits are one rank's share of a batch spread over
    /// processes (data-parallel training): the whole batch's sum of w_y, so that the ranks'
    /// losses and gradients add up to the whole batch's. Negative: these logits' own sum.
    double batch_weight_sum = -1;
};

namespace backend::loss {

inline constexpr const char* who = "segnet::CrossEntropyLoss: ";

/// Class weights must be finite and >= 0.
inline void check_class_weights(const std::vector<float>& weights) {
    for (std::size_t c = 0; c < weights.size(); ++c) {
        const float w = weights[c];
        if (!(w >= 0.0f) || !std::isfinite(w))
            throw std::invalid_argument(std::string(who) + "class weight " + std::to_string(c) + " is " +
                                        std::to_string(w) + "; weights must be finite and >= 0");
    }
}

/// The gradient has the logits' extents.
inline void check_grad(const Extents& logits, const Extents& grad) {
    if (grad != logits)
        throw std::invalid_argument(std::string(who) + "gradient extents " + to_string(grad) +
                                    " differ from logits extents " + to_string(logits) +
                                    "; resize the gradient tensor to the logits' extents");
}

/// Labels {N, 1, H, W} match logits {N, K, H, W}, K >= 1, and one weight per class if any.
inline void check_extents(const Extents& le, const Extents& ye, const CrossEntropyOptions& o) {
    if (ye.c != 1 || ye.n != le.n || ye.h != le.h || ye.w != le.w)
        throw std::invalid_argument(std::string(who) +
                                    "labels must be {N, 1, H, W} matching logits {N, K, H, W}; logits are " +
                                    to_string(le) + ", labels are " + to_string(ye));
    if (le.c <= 0)
        throw std::invalid_argument(std::string(who) + "logits have no class channel (" + to_string(le) + ")");
    if (!o.class_weights.empty() && int(o.class_weights.size()) != le.c)
        throw std::invalid_argument(std::string(who) + std::to_string(o.class_weights.size()) +
                                    " class weights given but the logits have " + std::to_string(le.c) +
                                    " classes (channels)");
}

/// sum of w_y over the counted pixels, from the 256 label counts; throws for a label that is
/// neither a class nor the ignore label (before any output is written), `where(v)` telling
/// where value v occurs.
template <class CountT, class Where>
double weight_sum(const CountT (&count)[256], int classes, const CrossEntropyOptions& o, Where where) {
    double sum = 0.0;
    for (int v = 0; v < 256; ++v) {
        if (count[v] == 0 || v == o.ignore_label) continue;
        if (v >= classes)
            throw std::invalid_argument(std::string(who) + "label value " + std::to_string(v) + where(v) +
                                        " is not a class (the logits have " + std::to_string(classes) +
                                        " channels) and is not the ignore label (" + std::to_string(o.ignore_label) +
                                        ")");
        sum += double(count[v]) * (o.class_weights.empty() ? 1.0 : double(o.class_weights[v]));
    }
    return sum;
}

/// 1/D: the factor of every pixel's loss and gradient (0 when nothing counted, not 1/0).
inline double inv_norm(double weight_sum, const CrossEntropyOptions& o) {
    if (o.normalization == LossNormalization::sum) return 1.0;
    if (o.batch_weight_sum >= 0) weight_sum = o.batch_weight_sum;
    return weight_sum > 0.0 ? 1.0 / weight_sum : 0.0;
}

}  // namespace backend::loss
}  // namespace segnet

#include "segnet/backend/cpu/loss.hpp"
#if defined(__CUDACC__) && !defined(SEGNET_NO_CUDA)
#include "segnet/backend/cuda/loss.cuh"
#endif
