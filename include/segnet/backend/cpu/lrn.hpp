// segnet/backend/cpu/lrn.hpp: Caffe's cross-channel local response normalisation.
//
//   segnet::backend::cpu::lrn_forward(x, n, c, plane, 5, 1e-4f, 0.75f, 1.f, y, scale);
//   segnet::backend::cpu::lrn_backward(x, y, scale, dy, n, c, plane, 5, 1e-4f, 0.75f, dx);
//
// Caffe's LRNLayer, ACROSS_CHANNELS: the per-pixel arithmetic is backend/lrn_math.hpp's, shared
// with the CUDA kernel; this file runs it over the pixels on the thread pool.
#pragma once

#include <cstdint>

#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/backend/lrn_math.hpp"

namespace segnet::backend::cpu {

inline void lrn_forward(const float* x, int n, int c, std::int64_t plane, int size, float alpha, float beta, float k,
                        float* y, float* scale) {
    parallel_for(0, std::int64_t(n) * plane, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t t = b; t < e; ++t) {
            const std::int64_t base = t / plane * c * plane + t % plane;
            backend::lrn::forward_pixel(x + base, c, plane, size, alpha, beta, k, y + base, scale + base);
        }
    });
}

inline void lrn_backward(const float* x, const float* y, const float* scale, const float* dy, int n, int c,
                         std::int64_t plane, int size, float alpha, float beta, float* dx) {
    parallel_for(0, std::int64_t(n) * plane, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t t = b; t < e; ++t) {
            const std::int64_t base = t / plane * c * plane + t % plane;
            backend::lrn::backward_pixel(x + base, y + base, scale + base, dy + base, c, plane, size, alpha, beta,
                                         dx + base);
        }
    });
}

}  // namespace segnet::backend::cpu
