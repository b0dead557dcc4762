// segnet/backend/cpu/resize.hpp: bilinear resizing of NCHW planes with PyTorch's
// F.interpolate(mode="bilinear", align_corners=False) arithmetic, forward and backward.
//
//   segnet::backend::cpu::bilinear_resize_forward(x, planes, 7, 9, y, 14, 18);
//   segnet::backend::cpu::bilinear_resize_backward(dy, planes, 14, 18, dx, 7, 9);   // dx = resize^T dy
//
// The sampling positions and weights are segnet::bilinear_taps (core/bilinear.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/core/bilinear.hpp"

namespace segnet::backend::cpu {

/// y (planes x out_h x out_w) = bilinear resize of x (planes x in_h x in_w).
inline void bilinear_resize_forward(const float* x, std::int64_t planes, int in_h, int in_w, float* y, int out_h,
                                    int out_w) {
    const auto rows = bilinear_taps(in_h, out_h), cols = bilinear_taps(in_w, out_w);
    parallel_for(0, planes, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t p = b; p < e; ++p) {
            const float* src = x + p * in_h * in_w;
            float* dst = y + p * out_h * out_w;
            for (int oy = 0; oy < out_h; ++oy) {
                const BilinearTap r = rows[std::size_t(oy)];
                const float* top = src + std::int64_t(r.i0) * in_w;
                const float* bottom = src + std::int64_t(r.i1) * in_w;
                for (int ox = 0; ox < out_w; ++ox) {
                    const BilinearTap c = cols[std::size_t(ox)];
                    dst[std::int64_t(oy) * out_w + ox] = r.w0 * (c.w0 * top[c.i0] + c.w1 * top[c.i1]) +
                                                         r.w1 * (c.w0 * bottom[c.i0] + c.w1 * bottom[c.i1]);
                }
            }
        }
    });
}

/// dx (planes x in_h x in_w) = the transpose of the resize applied to dy (planes x out_h x out_w):
/// every output's gradient goes back to its four sources with its weights.
inline void bilinear_resize_backward(const float* dy, std::int64_t planes, int out_h, int out_w, float* dx, int in_h,
                                     int in_w) {
    const auto rows = bilinear_taps(in_h, out_h), cols = bilinear_taps(in_w, out_w);
    parallel_for(0, planes, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t p = b; p < e; ++p) {
            const float* g = dy + p * out_h * out_w;
            float* d = dx + p * in_h * in_w;
            std::fill_n(d, std::int64_t(in_h) * in_w, 0.f);
            for (int oy = 0; oy < out_h; ++oy) {
                const BilinearTap r = rows[std::size_t(oy)];
                float* top = d + std::int64_t(r.i0) * in_w;
                float* bottom = d + std::int64_t(r.i1) * in_w;
                for (int ox = 0; ox < out_w; ++ox) {
                    const BilinearTap c = cols[std::size_t(ox)];
                    const float v = g[std::int64_t(oy) * out_w + ox];
                    top[c.i0] += r.w0 * c.w0 * v;
                    top[c.i1] += r.w0 * c.w1 * v;
                    bottom[c.i0] += r.w1 * c.w0 * v;
                    bottom[c.i1] += r.w1 * c.w1 * v;
                }
            }
        }
    });
}

}  // namespace segnet::backend::cpu
