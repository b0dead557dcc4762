// segnet/backend/cpu/loss.hpp: the CPU kernel of the softmax cross-entropy (rules and options in
// backend/cross_entropy.hpp).
//
//   double value = segnet::backend::cross_entropy(logits, labels, options, &grad);   // Tensor<Cpu>
//
// Single-threaded: one pass per image row, vectorisable inner loops over the row, channel-outer
// so that memory access stays contiguous (NCHW). Loss sums are accumulated in double so that a
// 4x360x480 batch does not lose float precision.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "segnet/backend/cross_entropy.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet::backend {

/// The loss value of logits {N, K, H, W} against labels {N, 1, H, W}; with `grad` (the logits'
/// extents) also d loss / d logits. Everything is validated before any output is written.
inline double cross_entropy(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> labels,
                            const CrossEntropyOptions& o, const TensorView<Cpu, float>* grad) {
    const Extents e = logits.extents();
    const Extents ye = labels.extents();
    if (grad) loss::check_grad(e, grad->extents());
    loss::check_extents(e, ye, o);
    // Counting labels first makes both the check and the denominator a single pass.
    std::int64_t count[256] = {};
    const std::uint8_t* labels_begin = labels.data();
    for (std::int64_t i = 0, n = labels.size(); i < n; ++i) ++count[labels_begin[i]];
    const double inv_norm = loss::inv_norm(loss::weight_sum(count, e.c, o, [&](int v) {
        const std::int64_t at = std::find(labels_begin, labels_begin + labels.size(), std::uint8_t(v)) - labels_begin;
        const std::int64_t plane = ye.plane();
        return " at (n=" + std::to_string(at / plane) + ", y=" + std::to_string(at % plane / ye.w) +
               ", x=" + std::to_string(at % ye.w) + ")";
    }), o);

    const int classes = e.c, width = e.w;
    const std::int64_t plane = e.plane();
    const auto& weights = o.class_weights;
    std::vector<float> row_max(width), row_sum(width), pixel_scale(width);
    double total = 0.0;

    for (int n = 0; n < e.n; ++n) {
        const float* z_image = logits.data() + std::int64_t(n) * classes * plane;
        const std::uint8_t* y_image = labels.data() + std::int64_t(n) * plane;
        float* g_image = grad ? grad->data() + std::int64_t(n) * classes * plane : nullptr;
        for (int h = 0; h < e.h; ++h) {
            const std::int64_t row = std::int64_t(h) * width;
            const std::uint8_t* y = y_image + row;
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
                if (label == o.ignore_label) {
                    pixel_scale[x] = 0.0f;
                    continue;
                }
                const float w = weights.empty() ? 1.0f : weights[label];
                const float z_y = z_image[label * plane + row + x];
                const double nll = double(row_max[x]) + std::log(double(row_sum[x])) - double(z_y);
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
                if (label != o.ignore_label) g_image[label * plane + row + x] -= pixel_scale[x];
            }
        }
    }
    return total * inv_norm;
}

inline double cross_entropy(const Tensor<Cpu>& logits, const Tensor<Cpu, std::uint8_t>& labels,
                            const CrossEntropyOptions& o, Tensor<Cpu>* grad) {
    const TensorView<Cpu, float> g = grad ? grad->view() : TensorView<Cpu, float>{};
    return cross_entropy(logits.view(), labels.view(), o, grad ? &g : nullptr);
}

}  // namespace segnet::backend
