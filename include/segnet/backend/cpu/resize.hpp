// segnet/backend/cpu/resize.hpp: bilinear resizing of NCHW planes with PyTorch's
// F.interpolate(mode="bilinear", align_corners=False) arithmetic, forward and backward.
//
//   segnet::backend::cpu::bilinear_resize_forward(x, planes, 7, 9, y, 14, 18);
//   segnet::backend::cpu::bilinear_resize_backward(dy, planes, 14, 18, dx, 7, 9);   // dx = resize^T dy
//
// Output index o reads source position s = (o + 0.5) * in / out - 0.5, clamped at 0 (PyTorch's
// area_pixel_compute_source_index), from rows floor(s) and floor(s) + 1 (the last row repeats),
// weighted by 1 - frac(s) and frac(s); all in float, as PyTorch's CPU kernel computes it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::backend::cpu {

/// The two source indices and weights of one output index along one axis.
struct BilinearTap {
    int i0 = 0, i1 = 0;
    float w0 = 1.f, w1 = 0.f;
};

inline std::vector<BilinearTap> bilinear_taps(int in, int out) {
    std::vector<BilinearTap> taps(std::size_t(std::max(out, 0)));
    const float scale = float(in) / float(out);
    for (int o = 0; o < out; ++o) {
        const float src = std::max(scale * (float(o) + 0.5f) - 0.5f, 0.f);
        const int i0 = std::min(int(src), in - 1);
        const float frac = src - float(i0);
        taps[std::size_t(o)] = {i0, i0 < in - 1 ? i0 + 1 : i0, 1.f - frac, frac};
    }
    return taps;
}

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
