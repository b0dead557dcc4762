// segnet/train/loss.hpp: per-pixel softmax cross-entropy on NCHW logits, the SegNet training loss.
//
//   segnet::CrossEntropyLoss loss({.class_weights = weights, .ignore_label = 11});
//   double value = loss.forward_backward(logits, labels, grad_logits);  // loss + d loss/d logits
//   double check = loss.forward(logits, labels);                         // loss only
//
// Logits are float {N, K, H, W} (K classes, no softmax applied: the classifier is a plain conv);
// labels are uint8 {N, 1, H, W}, one class index per pixel, or the ignore label (CamVid void =
// 11). The softmax is folded into the loss because softmax followed by log is unstable on its
// own, and because the fused gradient, w_y * (softmax - onehot(y)) / D, is one line.
//
// Normalisation (LossNormalization):
//   weighted_mean (default): L = sum_i w_{y_i} * nll_i / sum_i w_{y_i} over non-ignored pixels,
//       PyTorch's CrossEntropyLoss(weight=w, ignore_index=v, reduction='mean'). The default
//       because the loss and gradient scale do not change with image size or batch size, so a
//       learning rate carries over between crops and batch sizes.
//   sum: L = sum_i w_{y_i} * nll_i, the paper's "summed over the mini-batch" (Caffe
//       SoftmaxWithLoss with normalize: false). Its gradient grows with N*H*W: the paper's
//       learning rate 0.1 with this loss is not the same step as 0.1 with weighted_mean.
// When no pixel contributes (all ignored, or all their weights are 0) the loss and gradient
// are 0 rather than 0/0.
//
// The work is single-threaded: one pass per image row, vectorisable inner loops over the row.
// Loss sums are accumulated in double so that a 4x360x480 batch does not lose float precision.
#pragma once

#include <algorithm>
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
};

class CrossEntropyLoss {
public:
    CrossEntropyLoss() = default;
    explicit CrossEntropyLoss(CrossEntropyOptions options) : options_(std::move(options)) {
        for (std::size_t c = 0; c < options_.class_weights.size(); ++c) {
            const float w = options_.class_weights[c];
            if (!(w >= 0.0f) || !std::isfinite(w))
                throw std::invalid_argument("segnet::CrossEntropyLoss: class weight " +
                                            std::to_string(c) + " is " + std::to_string(w) +
                                            "; weights must be finite and >= 0");
        }
    }

    const CrossEntropyOptions& options() const { return options_; }

    /// The loss value; throws std::invalid_argument on mismatched extents or bad labels.
    double forward(TensorView<Cpu, const float> logits,
                   TensorView<Cpu, const std::uint8_t> labels) const {
        return run(logits, labels, nullptr);
    }

    /// Writes d loss / d logits into `grad_logits` (same extents as `logits`), returns nothing:
    /// use forward_backward when the value is wanted too, it costs the same.
    void backward(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> labels,
                  TensorView<Cpu, float> grad_logits) const {
        check_grad(logits, grad_logits);
        run(logits, labels, &grad_logits);
    }

    /// The loss value and its gradient in one pass over the logits.
    double forward_backward(TensorView<Cpu, const float> logits,
                            TensorView<Cpu, const std::uint8_t> labels,
                            TensorView<Cpu, float> grad_logits) const {
        check_grad(logits, grad_logits);
        return run(logits, labels, &grad_logits);
    }

private:
    static void check_grad(TensorView<Cpu, const float> logits, TensorView<Cpu, float> grad) {
        if (grad.extents() != logits.extents())
            throw std::invalid_argument("segnet::CrossEntropyLoss: gradient extents " +
                                        to_string(grad.extents()) + " differ from logits extents " +
                                        to_string(logits.extents()) +
                                        "; resize the gradient tensor to the logits' extents");
    }

    // Validates everything before any output is written, and returns sum of w_y over counted
    // pixels: the weighted_mean denominator is needed before the first gradient is written.
    double check_and_weight_sum(TensorView<Cpu, const float> logits,
                                TensorView<Cpu, const std::uint8_t> labels) const {
        const Extents& le = logits.extents();
        const Extents& ye = labels.extents();
        if (ye.c != 1 || ye.n != le.n || ye.h != le.h || ye.w != le.w)
            throw std::invalid_argument(
                "segnet::CrossEntropyLoss: labels must be {N, 1, H, W} matching logits {N, K, H, W}; "
                "logits are " + to_string(le) + ", labels are " + to_string(ye));
        const int classes = le.c;
        if (classes <= 0)
            throw std::invalid_argument("segnet::CrossEntropyLoss: logits have no class channel (" +
                                        to_string(le) + ")");
        const auto& weights = options_.class_weights;
        if (!weights.empty() && int(weights.size()) != classes)
            throw std::invalid_argument("segnet::CrossEntropyLoss: " + std::to_string(weights.size()) +
                                        " class weights given but the logits have " +
                                        std::to_string(classes) + " classes (channels)");
        // Counting labels first makes both the check and the denominator a single pass.
        std::int64_t count[256] = {};
        const std::uint8_t* y = labels.data();
        for (std::int64_t i = 0, n = labels.size(); i < n; ++i) ++count[y[i]];
        double weight_sum = 0.0;
        for (int v = 0; v < 256; ++v) {
            if (count[v] == 0 || v == options_.ignore_label) continue;
            if (v >= classes) {
                const std::int64_t at = std::find(y, y + labels.size(), std::uint8_t(v)) - y;
                const std::int64_t plane = ye.plane();
                throw std::invalid_argument(
                    "segnet::CrossEntropyLoss: label value " + std::to_string(v) + " at (n=" +
                    std::to_string(at / plane) + ", y=" + std::to_string(at % plane / ye.w) +
                    ", x=" + std::to_string(at % ye.w) + ") is not a class (the logits have " +
                    std::to_string(classes) + " channels) and is not the ignore label (" +
                    std::to_string(options_.ignore_label) + ")");
            }
            weight_sum += double(count[v]) * (weights.empty() ? 1.0 : double(weights[v]));
        }
        return weight_sum;
    }

    double run(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> labels,
               const TensorView<Cpu, float>* grad) const {
        const double weight_sum = check_and_weight_sum(logits, labels);
        const bool mean = options_.normalization == LossNormalization::weighted_mean;
        // 1/D: every pixel's gradient carries it, so a zero denominator means nothing counted.
        const double inv_norm = mean ? (weight_sum > 0.0 ? 1.0 / weight_sum : 0.0) : 1.0;

        const Extents e = logits.extents();
        const int classes = e.c, width = e.w;
        const std::int64_t plane = e.plane();
        const auto& weights = options_.class_weights;
        std::vector<float> row_max(width), row_sum(width), pixel_scale(width);
        double total = 0.0;

        for (int n = 0; n < e.n; ++n) {
            const float* z_image = logits.data() + std::int64_t(n) * classes * plane;
            const std::uint8_t* y_image = labels.data() + std::int64_t(n) * plane;
            float* g_image = grad ? grad->data() + std::int64_t(n) * classes * plane : nullptr;
            for (int h = 0; h < e.h; ++h) {
                const std::int64_t row = std::int64_t(h) * width;
                const std::uint8_t* y = y_image + row;
                // Channel-outer loops keep memory access contiguous along the row (NCHW).
                std::copy_n(z_image + row, width, row_max.data());
                for (int c = 1; c < classes; ++c) {
                    const float* z = z_image + c * plane + row;
                    for (int x = 0; x < width; ++x) row_max[x] = std::max(row_max[x], z[x]);
                }
                std::fill(row_sum.begin(), row_sum.end(), 0.0f);
                for (int c = 0; c < classes; ++c) {
                    const float* z = z_image + c * plane + row;
                    for (int x = 0; x < width; ++x) row_sum[x] += std::exp(z[x] - row_max[x]);
                }
                // Per pixel: nll = log-sum-exp - z_y, with max subtracted so exp never overflows
                // and the largest term is exactly 1 (row_sum >= 1, its log is finite).
                double row_loss = 0.0;
                for (int x = 0; x < width; ++x) {
                    const int label = y[x];
                    if (label == options_.ignore_label) {
                        pixel_scale[x] = 0.0f;
                        continue;
                    }
                    const float w = weights.empty() ? 1.0f : weights[label];
                    const float z_y = z_image[label * plane + row + x];
                    const double nll =
                        double(row_max[x]) + std::log(double(row_sum[x])) - double(z_y);
                    row_loss += double(w) * nll;
                    pixel_scale[x] = float(double(w) * inv_norm);
                }
                total += row_loss;
                if (!g_image) continue;
                for (int x = 0; x < width; ++x) row_sum[x] = pixel_scale[x] / row_sum[x];
                for (int c = 0; c < classes; ++c) {
                    const float* z = z_image + c * plane + row;
                    float* g = g_image + c * plane + row;
                    for (int x = 0; x < width; ++x) g[x] = row_sum[x] * std::exp(z[x] - row_max[x]);
                }
                for (int x = 0; x < width; ++x) {
                    const int label = y[x];
                    if (label != options_.ignore_label)
                        g_image[label * plane + row + x] -= pixel_scale[x];
                }
            }
        }
        return total * inv_norm;
    }

    CrossEntropyOptions options_{};
};

}  // namespace segnet
