// segnet/backend/cpu/conv.hpp: 2-D convolution kernels (forward, backward-data,
// backward-filter) for the CPU: AVX-512 or AVX2 + FMA direct convolution where the CPU and the
// geometry allow (conv_direct.hpp), otherwise GEMMs (gemm.hpp) on im2col tiles of pixels.
//
//   segnet::backend::ConvGeometry g{.in_c = 3, .in_h = 45, .in_w = 60, .out_c = 64,
//                               .out_h = 45, .out_w = 60, .k = 7, .stride = 1, .pad = 3};
//   segnet::backend::cpu::conv2d_forward(x, w, bias, y, batch, g);   // y = conv(x, w) + bias
//   segnet::backend::cpu::conv2d_forward(x, w, folded_bias, y, batch, g, bn_scale, /*relu*/ true);
//       // eval fusion: y = max(conv(x, w * bn_scale) + folded_bias, 0), one pass
//
// Layout: x [N, in_c, in_h, in_w], y [N, out_c, out_h, out_w], w [out_c, in_c/groups, k, k]
// (PyTorch OIHW). The output size is given, not derived, so the same three kernels also serve
// transposed convolutions whose output is cropped to a paired encoder's size (a transposed
// conv's forward is a conv's backward-data). The dispatching entry points (conv2d_forward, ...)
// pick the direct kernels for stride-1 same-size convolutions without groups, dilated or not
// (every SegNet conv, and DeepLab's and PSPNet's atrous 3x3 with pad = dilation; strided,
// grouped and valid-padded ones take the im2col path): AVX-512 on
// CPUs with AVX-512, else AVX2 + FMA on CPUs with those (run-time check;
// SEGNET_CONV=avx2 skips AVX-512, SEGNET_CONV=im2col forces the im2col path). Under
// Precision::bf16 (core/precision.hpp, per thread) they compute in bf16 with FP32 accumulation
// instead: on AMX tiles where the CPU has AMX-BF16 and the layer at least 16 input and output
// channels (conv_amx.hpp; the fused unpooled and pooled forwards then decline), else with the
// bf16 direct kernels where the CPU has AVX512-BF16 but no AMX (conv_direct_bf16.hpp; the fused
// forwards too); elsewhere (the layers AMX does not take, CPUs without BF16 units, the im2col
// path) bf16 computes exactly FP32 (bf16_kernels_run). The
// *_im2col functions are the portable path and the reference the fast kernels are tested
// against: they never materialise a whole-image im2col buffer: columns are built for one tile
// of pixels (about 2 MB) per worker thread. Backward-data is a gather (each input pixel reads
// the outputs it fed), so tiles are independent and need no atomic scatter.
// The forward's two optional arguments serve eval-mode fusion (compose/model.hpp): weight_scale
// multiplies each output channel's weights (a batch norm folded in, batch_norm.hpp's
// fold_conv_bias gives the matching bias) and relu applies max(., 0) before the result is
// stored. Both paths apply them inside the kernel: the direct one while packing the weights
// and in the micro-kernel's store, the im2col one on a scaled copy of the weights and on the
// tile the GEMM just wrote.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "segnet/backend/conv_geometry.hpp"
#include "segnet/backend/cpu/conv_amx.hpp"
#include "segnet/backend/cpu/conv_direct.hpp"
#include "segnet/backend/cpu/gemm.hpp"
#include "segnet/backend/cpu/conv_winograd.hpp"
#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/core/precision.hpp"

namespace segnet::backend::cpu {

using backend::ConvGeometry;

/// Whether conv2d_forward and its gradients, called now on this thread, compute g in bf16:
/// Precision::bf16 asked for and BF16 units that take g (AMX, or AVX512-BF16 where there is no
/// AMX). Otherwise they compute it in FP32, exactly as under Precision::fp32.
inline bool bf16_kernels_run(const ConvGeometry& g) { return amx::wanted(g) || avx512_bf16::wanted(g); }

namespace detail {

/// Pixels per tile so that a column buffer of `rows` rows stays near 2 MB (cache-friendly GEMM
/// panels, bounded memory), at least 64 pixels.
inline std::int64_t tile_pixels(std::int64_t rows, std::int64_t plane) {
    const std::int64_t t = std::max<std::int64_t>(64, (std::int64_t(1) << 19) / std::max<std::int64_t>(1, rows));
    return std::min(plane, (t + 15) / 16 * 16);
}

/// dst[t] = src[o0 + t] where 0 <= o0 + t < width, zero elsewhere (t in [0, run)): one run of a
/// stride-1 tile row, contiguous but for the zero padding at the borders.
inline void copy_padded_run(const float* src, int o0, int width, int run, float* dst) {
    const int lo = std::clamp(-o0, 0, run);
    const int hi = std::clamp(width - o0, lo, run);
    std::fill_n(dst, lo, 0.f);
    std::copy(src + o0 + lo, src + o0 + hi, dst + lo);
    std::fill(dst + hi, dst + run, 0.f);
}

/// The column layout of a tile, the loop im2col and its transpose share: for each channel c of
/// the cn planes at `maps` (plane values apart), each tap (ky, kx) and each run of the tile's
/// pixels p0 + j (j < pn) that stays on one row y of a `width`-wide grid from column x0,
/// fill(map_c, ky, kx, y, x0, run, dst) writes col[(c, ky, kx), j .. j + run) = dst[0 .. run).
template <class Fill>
void build_columns(const float* maps, std::int64_t plane, int cn, int k, std::int64_t p0, std::int64_t pn, int width,
                   float* col, Fill fill) {
    for (int c = 0; c < cn; ++c) {
        const float* map = maps + c * plane;
        for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
                float* row = col + ((std::int64_t(c) * k + ky) * k + kx) * pn;
                std::int64_t j = 0;
                while (j < pn) {
                    const std::int64_t p = p0 + j;
                    const int run = int(std::min<std::int64_t>(pn - j, width - p % width));
                    fill(map, ky, kx, int(p / width), int(p % width), run, row + j);
                    j += run;
                }
            }
    }
}

/// col[(ci, ky, kx), j] = x[ci, oy*s - p + ky*d, ox*s - p + kx*d] for output pixels p0 + j (zero
/// outside the image), over the channels [c0, c0 + cn) of one image.
inline void im2col_tile(const float* x, const ConvGeometry& g, int c0, int cn, std::int64_t p0, std::int64_t pn,
                        float* col) {
    build_columns(x + c0 * g.in_plane(), g.in_plane(), cn, g.k, p0, pn, g.out_w, col,
                  [&g](const float* xc, int ky, int kx, int oy, int ox0, int run, float* dst) {
                      const int iy = oy * g.stride - g.pad + ky * g.dilation;
                      if (iy < 0 || iy >= g.in_h) {
                          std::fill_n(dst, run, 0.f);
                          return;
                      }
                      const float* src = xc + std::int64_t(iy) * g.in_w;
                      const int tap_x = kx * g.dilation;
                      if (g.stride == 1) return copy_padded_run(src, ox0 - g.pad + tap_x, g.in_w, run, dst);
                      for (int t = 0; t < run; ++t) {
                          const int ix = (ox0 + t) * g.stride - g.pad + tap_x;
                          dst[t] = (ix >= 0 && ix < g.in_w) ? src[ix] : 0.f;
                      }
                  });
}

/// The transpose of im2col as a gather: col[(co, ky, kx), j] = dy[co, oy, ox] for input pixel
/// q0 + j = (iy, ix) where iy = oy*s - p + ky*d and ix = ox*s - p + kx*d (zero when no such output).
inline void col_from_outputs_tile(const float* dy, const ConvGeometry& g, int c0, int cn, std::int64_t q0,
                                  std::int64_t qn, float* col) {
    build_columns(dy + c0 * g.out_plane(), g.out_plane(), cn, g.k, q0, qn, g.in_w, col,
                  [&g](const float* dyc, int ky, int kx, int iy, int ix0, int run, float* dst) {
                      const int s = g.stride, ty = iy + g.pad - ky * g.dilation;
                      if (ty < 0 || ty % s != 0 || ty / s >= g.out_h) {
                          std::fill_n(dst, run, 0.f);
                          return;
                      }
                      const float* src = dyc + std::int64_t(ty / s) * g.out_w;
                      const int tap_x = kx * g.dilation;
                      if (s == 1) return copy_padded_run(src, ix0 + g.pad - tap_x, g.out_w, run, dst);
                      for (int t = 0; t < run; ++t) {
                          const int tx = ix0 + t + g.pad - tap_x;
                          dst[t] = (tx >= 0 && tx % s == 0 && tx / s < g.out_w) ? src[tx / s] : 0.f;
                      }
                  });
}

/// Runs body(worker, n, p0, pn, col) on the thread pool for every tile of a batch's planes of
/// `plane` pixels (pixels [p0, p0 + pn) of image n; tile_pixels(rows, plane) per tile); col is
/// the worker's buffer for a tile's rows x pn columns (not allocated when pointwise).
template <class Body>
void for_each_tile(int batch, std::int64_t plane, std::int64_t rows, bool pointwise, Body body) {
    const std::int64_t tile = tile_pixels(rows, plane), tiles = (plane + tile - 1) / tile;
    std::vector<std::vector<float>> scratch(num_threads());
    parallel_for(0, std::int64_t(batch) * tiles, [&](std::int64_t b, std::int64_t e, int worker) {
        auto& col = scratch[worker];
        if (!pointwise) col.resize(std::size_t(rows * tile));
        for (std::int64_t item = b; item < e; ++item) {
            const std::int64_t p0 = (item % tiles) * tile;
            body(worker, int(item / tiles), p0, std::min(tile, plane - p0), col.data());
        }
    });
}

/// A GEMM operand for one tile of one group, row-major with its leading dimension: for a
/// pointwise convolution the group's maps themselves (pixels [p0, p0 + pn) of planes of
/// `plane`), otherwise the rows x pn columns build(col) writes into col.
struct TileOperand {
    const float* data;
    std::int64_t ld;
};
template <class Build>
TileOperand tile_operand(bool pointwise, const float* maps, std::int64_t plane, std::int64_t p0, std::int64_t pn,
                         float* col, Build build) {
    if (pointwise) return {maps + p0, plane};
    build(col);
    return {col, pn};
}

}  // namespace detail

/// y = conv(x, w * weight_scale) (+ bias when bias != nullptr), max(., 0) when relu; y is
/// overwritten. weight_scale: per output channel, or null (1). The im2col path.
inline void conv2d_forward_im2col(const float* x, const float* w, const float* bias, float* y, int batch,
                                 const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
    g.validate();
    using namespace detail;
    const int cig = g.in_c_per_group(), cog = g.out_c_per_group();
    const std::int64_t rows = std::int64_t(cig) * g.k * g.k;
    if (weight_scale) {
        static thread_local std::vector<float> scaled;  // grows only: no allocation in a steady state
        if (scaled.size() < std::size_t(g.weight_size())) scaled.resize(std::size_t(g.weight_size()));
        for (int co = 0; co < g.out_c; ++co)
            for (std::int64_t r = 0; r < rows; ++r)
                scaled[std::size_t(co * rows + r)] = w[co * rows + r] * weight_scale[co];
        w = scaled.data();
    }
    const std::int64_t P = g.out_plane();
    const bool pointwise = g.is_pointwise();
    for_each_tile(batch, P, rows, pointwise, [&](int, int n, std::int64_t p0, std::int64_t pn, float* col) {
        const float* xn = x + std::int64_t(n) * g.in_c * g.in_plane();
        float* yn = y + std::int64_t(n) * g.out_c * P;
        for (int gi = 0; gi < g.groups; ++gi) {
            const TileOperand cols = tile_operand(pointwise, xn + std::int64_t(gi) * cig * P, P, p0, pn, col,
                                                  [&](float* c) { im2col_tile(xn, g, gi * cig, cig, p0, pn, c); });
            float* yt = yn + std::int64_t(gi) * cog * P + p0;
            gemm(cog, pn, rows, w + std::int64_t(gi) * cog * rows, rows, cols.data, cols.ld, false, yt, P, false);
            for (int co = 0; co < cog; ++co) {
                float* row = yt + co * P;
                const float b = bias ? bias[gi * cog + co] : 0.f;
                if (relu)
                    for (std::int64_t j = 0; j < pn; ++j) row[j] = std::max(row[j] + b, 0.f);
                else if (bias)
                    for (std::int64_t j = 0; j < pn; ++j) row[j] += b;
            }
        }
    });
}

/// Whether conv2d_forward_unpooled / _pooled decline g because Winograd (conv_winograd.hpp), which
/// they do not have, runs it: Winograd and a separate (un)pooling pass beat the fused direct
/// kernels. SegNet inference, 360x480, batch 1, 2 threads, CPU time per thread on a busy Zen 5
/// host (segnet-bench): these fusions declined where Winograd runs 450-464 ms, taken by the
/// direct kernels (Winograd elsewhere) 574-582 ms, no Winograd 690-850 ms.
inline bool winograd_beats_fusion(const ConvGeometry& g, int batch) {
    return !bf16_kernels_run(g) && winograd::chosen(g, batch);
}

/// conv2d_forward on the max-unpooling `u` describes (the eval-mode fusion of an Unpool and the
/// convolution after it): the direct kernels build their input bands from the pooled values and
/// indices, so the unpooled map is never written or read. Only where the direct kernels run g on
/// this CPU and neither Winograd (winograd_beats_fusion) nor AMX does: returns false, and writes
/// nothing, otherwise (the caller then unpools first).
inline bool conv2d_forward_unpooled(const direct::Unpooled& u, const float* w, const float* bias, float* y, int batch,
                                    const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
    g.validate();
    if (u.k < 1 || pooled_extent(g.in_h, u.k) != u.ph || pooled_extent(g.in_w, u.k) != u.pw)
        throw std::invalid_argument("segnet::backend::cpu::conv2d_forward_unpooled: pooled " + std::to_string(u.ph) + "x" +
                                    std::to_string(u.pw) + " is not the " + std::to_string(u.k) + "x pooling of " +
                                    std::to_string(g.in_h) + "x" + std::to_string(g.in_w));
    if (winograd_beats_fusion(g, batch) || amx::wanted(g)) return false;
    if (avx512_bf16::wanted(g)) avx512_bf16::conv2d_forward(nullptr, w, bias, y, batch, g, weight_scale, relu, &u);
    else if (avx512::usable(g)) avx512::conv2d_forward(nullptr, w, bias, y, batch, g, weight_scale, relu, &u);
    else if (avx2::usable(g)) avx2::conv2d_forward(nullptr, w, bias, y, batch, g, weight_scale, relu, &u);
    else return false;
    return true;
}

/// conv2d_forward followed by a max pooling of window = stride = k (ceil rounding, ties and
/// indices as cpu::max_pool_forward) into `values` and `indices` ({batch, out_c, ceil(h / k),
/// ceil(w / k)}): the eval-mode fusion of an Encoder's last convolution and its MaxPool. The
/// direct kernels pool each band of output rows while it is in cache, so the full-size map is
/// never written. Only where the direct kernels run g on this CPU and neither Winograd
/// (winograd_beats_fusion) nor AMX does: returns false, and writes nothing, otherwise (the
/// caller then convolves and pools separately).
inline bool conv2d_forward_pooled(const float* x, const float* w, const float* bias, int batch, const ConvGeometry& g,
                                  int k, float* values, std::int32_t* indices, const float* weight_scale = nullptr,
                                  bool relu = false) {
    g.validate();
    if (k < 1) throw std::invalid_argument("segnet::backend::cpu::conv2d_forward_pooled: pooling window " + std::to_string(k));
    if (winograd_beats_fusion(g, batch) || amx::wanted(g)) return false;
    const direct::Pooled p{values, indices, k};
    if (avx512_bf16::wanted(g)) avx512_bf16::conv2d_forward(x, w, bias, nullptr, batch, g, weight_scale, relu, nullptr, &p);
    else if (avx512::usable(g)) avx512::conv2d_forward(x, w, bias, nullptr, batch, g, weight_scale, relu, nullptr, &p);
    else if (avx2::usable(g)) avx2::conv2d_forward(x, w, bias, nullptr, batch, g, weight_scale, relu, nullptr, &p);
    else return false;
    return true;
}

/// dx = d(sum dy * conv(x, w)) / dx; dx is overwritten. The im2col path.
inline void conv2d_backward_data_im2col(const float* dy, const float* w, float* dx, int batch, const ConvGeometry& g) {
    g.validate();
    using namespace detail;
    const int cig = g.in_c_per_group(), cog = g.out_c_per_group();
    const std::int64_t kk = std::int64_t(g.k) * g.k;
    const std::int64_t rows = cog * kk;  // (co, ky, kx) per group
    const std::int64_t Q = g.in_plane(), P = g.out_plane();
    // wt[g][ci][(co, ky, kx)] = w[g*cog + co][ci][ky][kx]
    std::vector<float> wt(std::size_t(g.weight_size()));
    for (int gi = 0; gi < g.groups; ++gi)
        for (int co = 0; co < cog; ++co)
            for (int ci = 0; ci < cig; ++ci)
                std::copy_n(w + ((std::int64_t(gi) * cog + co) * cig + ci) * kk, kk,
                            wt.data() + (std::int64_t(gi) * cig + ci) * rows + co * kk);
    const bool pointwise = g.is_pointwise();
    for_each_tile(batch, Q, rows, pointwise, [&](int, int n, std::int64_t q0, std::int64_t qn, float* col) {
        const float* dyn = dy + std::int64_t(n) * g.out_c * P;
        float* dxn = dx + std::int64_t(n) * g.in_c * Q;
        for (int gi = 0; gi < g.groups; ++gi) {
            const TileOperand cols =
                tile_operand(pointwise, dyn + std::int64_t(gi) * cog * P, P, q0, qn, col,
                             [&](float* c) { col_from_outputs_tile(dyn, g, gi * cog, cog, q0, qn, c); });
            gemm(cig, qn, rows, wt.data() + std::int64_t(gi) * cig * rows, rows, cols.data, cols.ld, false,
                 dxn + std::int64_t(gi) * cig * Q + q0, Q, false);
        }
    });
}

namespace detail {
/// dbias[co] += sum of dy over the batch and the plane.
inline void bias_gradient(const float* dy, float* dbias, int batch, const ConvGeometry& g) {
    const std::int64_t P = g.out_plane();
    parallel_for(0, g.out_c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t co = b; co < e; ++co) {
            double s = 0;
            for (int n = 0; n < batch; ++n) {
                const float* p = dy + (std::int64_t(n) * g.out_c + co) * P;
                // 16 independent float lanes per 4096-value chunk (vectorises), summed in double.
                for (std::int64_t c0 = 0; c0 < P; c0 += 4096) {
                    const std::int64_t c1 = std::min(P, c0 + 4096);
                    float lanes[16] = {};
                    std::int64_t i = c0;
                    for (; i + 16 <= c1; i += 16)
                        for (int j = 0; j < 16; ++j) lanes[j] += p[i + j];
                    for (; i < c1; ++i) lanes[0] += p[i];
                    for (float v : lanes) s += v;
                }
            }
            dbias[co] += float(s);
        }
    });
}
}  // namespace detail

/// dw += d(sum dy * conv(x, w)) / dw, and dbias += sum of dy per channel (when dbias != nullptr).
/// The im2col path.
inline void conv2d_backward_filter_im2col(const float* x, const float* dy, float* dw, float* dbias, int batch,
                                   const ConvGeometry& g) {
    g.validate();
    using namespace detail;
    const int cig = g.in_c_per_group(), cog = g.out_c_per_group();
    const std::int64_t rows = std::int64_t(cig) * g.k * g.k;
    const std::int64_t P = g.out_plane();
    const bool pointwise = g.is_pointwise();
    std::vector<std::vector<float>> partial(num_threads());  // each worker's dw, from its first tile
    for_each_tile(batch, P, rows, pointwise, [&](int worker, int n, std::int64_t p0, std::int64_t pn, float* col) {
        auto& acc = partial[worker];
        if (acc.empty()) acc.assign(std::size_t(g.weight_size()), 0.f);
        const float* xn = x + std::int64_t(n) * g.in_c * g.in_plane();
        const float* dyn = dy + std::int64_t(n) * g.out_c * P;
        for (int gi = 0; gi < g.groups; ++gi) {
            // dw[co][r] += sum over the tile's pixels j of dy[co][j] * cols[r][j]: cols is B transposed.
            const TileOperand cols = tile_operand(pointwise, xn + std::int64_t(gi) * cig * P, P, p0, pn, col,
                                                  [&](float* c) { im2col_tile(xn, g, gi * cig, cig, p0, pn, c); });
            gemm(cog, rows, pn, dyn + std::int64_t(gi) * cog * P + p0, P, cols.data, cols.ld, true,
                 acc.data() + std::int64_t(gi) * cog * rows, rows, true);
        }
    });
    for (auto& acc : partial)
        if (!acc.empty())
            for (std::int64_t i = 0; i < g.weight_size(); ++i) dw[i] += acc[i];
    if (dbias) bias_gradient(dy, dbias, batch, g);
}

/// y = conv(x, w * weight_scale) (+ bias when bias != nullptr), max(., 0) when relu; y is
/// overwritten (weight_scale: per output channel, null: none). AVX-512 or AVX2 direct
/// convolution where the CPU and the geometry allow it (conv_direct.hpp), otherwise the im2col path.
inline void conv2d_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                           const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
    g.validate();
    if (amx::wanted(g)) return amx::conv2d_forward(x, w, bias, y, batch, g, weight_scale, relu);
    if (avx512_bf16::wanted(g)) return avx512_bf16::conv2d_forward(x, w, bias, y, batch, g, weight_scale, relu);
    if (!bf16_kernels_run(g) && winograd::chosen(g, batch))
        return winograd::conv2d_forward(x, w, bias, y, batch, g, weight_scale, relu);
    if (avx512::usable(g)) return avx512::conv2d_forward(x, w, bias, y, batch, g, weight_scale, relu);
    if (avx2::usable(g)) return avx2::conv2d_forward(x, w, bias, y, batch, g, weight_scale, relu);
    conv2d_forward_im2col(x, w, bias, y, batch, g, weight_scale, relu);
}

/// dx = d(sum dy * conv(x, w)) / dx; dx is overwritten.
inline void conv2d_backward_data(const float* dy, const float* w, float* dx, int batch, const ConvGeometry& g) {
    g.validate();
    if (amx::wanted(g)) return amx::conv2d_backward_data(dy, w, dx, batch, g);
    if (avx512_bf16::wanted(g)) return avx512_bf16::conv2d_backward_data(dy, w, dx, batch, g);
    if (!bf16_kernels_run(g) && winograd::chosen(g, batch))
        return winograd::conv2d_backward_data(dy, w, dx, batch, g);
    if (avx512::usable(g)) return avx512::conv2d_backward_data(dy, w, dx, batch, g);
    if (avx2::usable(g)) return avx2::conv2d_backward_data(dy, w, dx, batch, g);
    conv2d_backward_data_im2col(dy, w, dx, batch, g);
}

/// The FP32 direct-convolution kernels conv2d_forward and its gradients use for g on this CPU:
/// "AVX-512", "AVX2" or "" (the im2col path). Under Precision::bf16, bf16_units_name() (simd.hpp)
/// names the units that run instead.
inline const char* direct_conv_isa(const ConvGeometry& g) {
    return avx512::usable(g) ? "AVX-512" : avx2::usable(g) ? "AVX2" : "";
}

/// dw += d(sum dy * conv(x, w)) / dw, and dbias += sum of dy per channel (when dbias != nullptr).
/// In FP32, dilated geometries whose phase bands make short streams take the im2col path
/// (direct::backward_filter_streams_pay).
inline void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* dbias, int batch,
                                   const ConvGeometry& g) {
    g.validate();
    const bool direct_pays = direct::backward_filter_streams_pay(g);
    if (amx::wanted(g))
        amx::conv2d_backward_filter(x, dy, dw, batch, g);
    else if (avx512_bf16::wanted(g))  // bf16 keeps its kernels: im2col would compute FP32
        avx512_bf16::conv2d_backward_filter(x, dy, dw, batch, g);
    else if (avx512::usable(g) && direct_pays)
        avx512::conv2d_backward_filter(x, dy, dw, batch, g);
    else if (avx2::usable(g) && direct_pays)
        avx2::conv2d_backward_filter(x, dy, dw, batch, g);
    else
        return conv2d_backward_filter_im2col(x, dy, dw, dbias, batch, g);
    if (dbias) detail::bias_gradient(dy, dbias, batch, g);
}

/// Plain 7-loop convolution (stride, padding, dilation, groups): the reference the GEMM kernels
/// are tested against.
inline void conv2d_forward_reference(const float* x, const float* w, const float* bias, float* y, int batch,
                                     const ConvGeometry& g) {
    const int cig = g.in_c_per_group(), cog = g.out_c_per_group();
    for (int n = 0; n < batch; ++n)
        for (int co = 0; co < g.out_c; ++co) {
            const int gi = co / cog;
            for (int oy = 0; oy < g.out_h; ++oy)
                for (int ox = 0; ox < g.out_w; ++ox) {
                    double s = bias ? bias[co] : 0.0;
                    for (int ci = 0; ci < cig; ++ci)
                        for (int ky = 0; ky < g.k; ++ky)
                            for (int kx = 0; kx < g.k; ++kx) {
                                const int iy = oy * g.stride - g.pad + ky * g.dilation;
                                const int ix = ox * g.stride - g.pad + kx * g.dilation;
                                if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
                                s += double(x[((std::int64_t(n) * g.in_c + gi * cig + ci) * g.in_h + iy) * g.in_w + ix]) *
                                     w[((std::int64_t(co) * cig + ci) * g.k + ky) * g.k + kx];
                            }
                    y[((std::int64_t(n) * g.out_c + co) * g.out_h + oy) * g.out_w + ox] = float(s);
                }
        }
}

}  // namespace segnet::backend::cpu
