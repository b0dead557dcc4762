// segnet/backend/cpu/pool.hpp: max pooling that keeps argmax indices, and the unpooling that
// uses them (SegNet's decoder upsampling).
//
//   segnet::cpu::max_pool_forward(x, n, c, 45, 60, 2, y, 23, 30, indices);  // ceil rounding
//   segnet::cpu::max_unpool_forward(y, indices, n, c, 23, 30, x_up, 45, 60); // back to 45x60
//
// Window = stride = k (SegNet's 2x2, stride 2). Output size ceil(h / k), as Caffe's ceil mode:
// a 45-row map pools to 23 rows, the last window holding one row. Indices are flat positions
// in the input plane (y * w + x), as PyTorch's return_indices. Ties go to the first maximum in
// row-major window order, as Caffe (a strictly greater value replaces the current maximum).
#pragma once

#include <cstdint>
#include <limits>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::cpu {

inline void max_pool_forward(const float* x, int n, int c, int h, int w, int k, float* y, int oh, int ow,
                             std::int32_t* indices) {
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t nc = b; nc < e; ++nc) {
            const float* xp = x + nc * in_plane;
            float* yp = y + nc * out_plane;
            std::int32_t* ip = indices + nc * out_plane;
            for (int oy = 0; oy < oh; ++oy)
                for (int ox = 0; ox < ow; ++ox) {
                    float best = -std::numeric_limits<float>::infinity();
                    std::int32_t at = (oy * k) * w + ox * k;  // a NaN-only window keeps its first cell
                    const int y1 = oy * k + k < h ? oy * k + k : h;
                    const int x1 = ox * k + k < w ? ox * k + k : w;
                    for (int iy = oy * k; iy < y1; ++iy)
                        for (int ix = ox * k; ix < x1; ++ix) {
                            const float v = xp[std::int64_t(iy) * w + ix];
                            if (v > best) {
                                best = v;
                                at = iy * w + ix;
                            }
                        }
                    yp[oy * ow + ox] = xp[at];
                    ip[oy * ow + ox] = at;
                }
        }
    });
}

/// dx is overwritten: each pooled gradient goes back to its argmax.
inline void max_pool_backward(const float* dy, const std::int32_t* indices, int n, int c, int oh, int ow,
                              float* dx, int h, int w) {
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t nc = b; nc < e; ++nc) {
            float* dxp = dx + nc * in_plane;
            for (std::int64_t i = 0; i < in_plane; ++i) dxp[i] = 0.f;
            const float* dyp = dy + nc * out_plane;
            const std::int32_t* ip = indices + nc * out_plane;
            for (std::int64_t i = 0; i < out_plane; ++i) dxp[ip[i]] += dyp[i];
        }
    });
}

/// Unpooling is the same scatter as max pooling's backward: each value goes back to the
/// position its maximum came from, zeros elsewhere.
inline void max_unpool_forward(const float* x, const std::int32_t* indices, int n, int c, int oh, int ow, float* y,
                               int h, int w) {
    max_pool_backward(x, indices, n, c, oh, ow, y, h, w);
}

/// Unpooling's backward is a gather: dx[i] = dy[indices[i]].
inline void max_unpool_backward(const float* dy, const std::int32_t* indices, int n, int c, int oh, int ow,
                                float* dx, int h, int w) {
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t nc = b; nc < e; ++nc) {
            const float* dyp = dy + nc * in_plane;
            float* dxp = dx + nc * out_plane;
            const std::int32_t* ip = indices + nc * out_plane;
            for (std::int64_t i = 0; i < out_plane; ++i) dxp[i] = dyp[ip[i]];
        }
    });
}

}  // namespace segnet::cpu
