// segnet/backend/cpu/lrn.hpp: Caffe's cross-channel local response normalisation.
//
//   segnet::cpu::lrn_forward(x, n, c, plane, 5, 1e-4f, 0.75f, 1.f, y, scale);
//   segnet::cpu::lrn_backward(x, y, scale, dy, n, c, plane, 5, 1e-4f, 0.75f, dx);
//
// scale_i = k + alpha/size * sum_{j in [i - (size-1)/2, i + size/2]} x_j^2, y_i = x_i * scale_i^-beta
// (Caffe's LRNLayer, ACROSS_CHANNELS; the window is clipped at the first and last channel).
#pragma once

#include <cmath>
#include <cstdint>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::cpu {

inline void lrn_forward(const float* x, int n, int c, std::int64_t plane, int size, float alpha, float beta, float k,
                        float* y, float* scale) {
    const int pre = (size - 1) / 2, post = size - pre - 1;
    parallel_for(0, std::int64_t(n) * plane, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t t = b; t < e; ++t) {
            const std::int64_t img = t / plane, px = t % plane;
            const float* xp = x + img * c * plane + px;
            for (int ch = 0; ch < c; ++ch) {
                float s = 0.f;
                for (int j = ch - pre; j <= ch + post; ++j)
                    if (j >= 0 && j < c) s += xp[j * plane] * xp[j * plane];
                const float sc = k + alpha / float(size) * s;
                scale[img * c * plane + ch * plane + px] = sc;
                y[img * c * plane + ch * plane + px] = xp[ch * plane] * std::pow(sc, -beta);
            }
        }
    });
}

inline void lrn_backward(const float* x, const float* y, const float* scale, const float* dy, int n, int c,
                         std::int64_t plane, int size, float alpha, float beta, float* dx) {
    const int pre = (size - 1) / 2, post = size - pre - 1;
    const float coeff = 2.f * alpha * beta / float(size);
    parallel_for(0, std::int64_t(n) * plane, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t t = b; t < e; ++t) {
            const std::int64_t img = t / plane, px = t % plane;
            const std::int64_t base = img * c * plane + px;
            for (int ch = 0; ch < c; ++ch) {
                // x_ch appears in the windows of the channels j with j - pre <= ch <= j + post.
                float acc = 0.f;
                for (int j = ch - post; j <= ch + pre; ++j)
                    if (j >= 0 && j < c) acc += dy[base + j * plane] * y[base + j * plane] / scale[base + j * plane];
                const std::int64_t i = base + ch * plane;
                dx[i] = dy[i] * std::pow(scale[i], -beta) - coeff * x[i] * acc;
            }
        }
    });
}

}  // namespace segnet::cpu
