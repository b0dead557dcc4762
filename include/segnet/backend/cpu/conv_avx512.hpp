// segnet/backend/cpu/conv_avx512.hpp: register-blocked AVX-512 direct convolution for the
// stride-1, same-size convolutions every SegNet layer uses (forward, backward-data,
// backward-filter), chosen at run time when the CPU has AVX-512.
//
//   if (segnet::cpu::avx512::usable(g)) segnet::cpu::avx512::conv2d_forward(x, w, bias, y, n, g);
//   segnet::cpu::avx512::conv2d_forward(x, w, bias, y, n, g, bn_scale, /*relu*/ true);   // eval fusion
//   segnet::cpu::avx512::conv2d_backward_data(dy, w, dx, n, g);
//   segnet::cpu::avx512::conv2d_backward_filter(x, dy, dw, n, g);      // dw += ...
//
// Works on the NCHW tensors as they are, without im2col: a band of input rows is copied, with
// its zero border, into a per-thread buffer whose rows are padded to a multiple of 16 floats;
// a micro-kernel then keeps 8 output channels x 48 output pixels (24 zmm accumulators) in
// registers and, for every (input channel, ky, kx), loads 3 vectors of shifted input pixels and
// broadcasts 8 weights (packed per block of 8 output channels). Backward-data is the same
// kernel on dy with the weights transposed and flipped (stride 1, same padding). Backward-filter
// keeps 4 output channels x 6 filter taps of 16-lane partial sums over a band of pixels and
// reduces them once per band. The forward optionally multiplies each output channel's weights
// by a scale while packing them (a batch norm folded in: no extra pass, no extra buffer) and
// applies ReLU to the accumulators before they are stored (the epilogue). Functions carry
// __attribute__((target)) so a binary built without -mavx512f still contains them; conv.hpp
// calls them only when the CPU reports AVX-512, and keeps the Eigen im2col kernels as the
// fallback and the reference the tests compare with.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "segnet/backend/conv_geometry.hpp"
#include "segnet/backend/cpu/thread_pool.hpp"

#include "segnet/backend/cpu/simd.hpp"

namespace segnet::cpu::avx512 {

using backend::ConvGeometry;

inline bool cpu_has_avx512() { return simd::has_avx512(); }

/// The geometries these kernels handle: stride 1, no groups, output the size of the input,
/// same padding (pad = (k - 1) / 2, k odd).
inline bool supports(const ConvGeometry& g) {
    return g.groups == 1 && g.stride == 1 && g.in_h == g.out_h && g.in_w == g.out_w && g.k % 2 == 1 &&
           2 * g.pad == g.k - 1;
}

inline bool usable(const ConvGeometry& g) { return supports(g) && cpu_has_avx512(); }

#if SEGNET_HAVE_AVX512_KERNELS
// GCC 12 reports its own _mm512_reduce_add_ps (an _mm256_undefined_pd operand) as uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace detail {

inline constexpr int fwd_mr = 8;   // output channels per register block
inline constexpr int fwd_nv = 3;   // 16-float vectors of output pixels per register block
inline constexpr int bwf_mr = 4;   // backward-filter: output channels per block
inline constexpr int bwf_nr = 6;   // backward-filter: filter taps (ci, ky, kx) per block

inline std::int64_t round_up(std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; }

/// Per-thread scratch that only grows (the band buffers and partial gradients are reused from
/// call to call, so steady-state runs neither allocate nor fault in fresh pages).
inline float* scratch(std::vector<float>& v, std::int64_t n) {
    if (std::int64_t(v.size()) < n) v.resize(std::size_t(n));
    return v.data();
}

/// The padded copy of `rows` input rows starting at y0 - pad: buf[ci][r][j] = x[ci][y0 - pad + r]
/// [j - pad], zero outside the image; rows are wp floats apart (wp >= w + k - 1 + 15).
inline void fill_band(const float* x, int c, int h, int w, int pad, int y0, int rows, int wp, float* buf) {
    const std::int64_t plane = std::int64_t(h) * w;
    for (int ci = 0; ci < c; ++ci)
        for (int r = 0; r < rows; ++r) {
            float* d = buf + (std::int64_t(ci) * rows + r) * wp;
            const int iy = y0 - pad + r;
            if (iy < 0 || iy >= h) {
                std::memset(d, 0, sizeof(float) * std::size_t(wp));
                continue;
            }
            std::memset(d, 0, sizeof(float) * std::size_t(pad));
            std::memcpy(d + pad, x + ci * plane + std::int64_t(iy) * w, sizeof(float) * std::size_t(w));
            std::memset(d + pad + w, 0, sizeof(float) * std::size_t(wp - pad - w));
        }
}

/// w packed for the forward micro-kernel: for each block of up to 8 output channels starting at
/// o0, [ci][ky][kx][m] at offset o0 * in_c * k * k. get(o, i, ky, kx) reads the logical weight.
template <class Get>
void pack_block(int o0, int out_c, int in_c, int k, Get& get, float* dst) {
    {
        const int mr = std::min(fwd_mr, out_c - o0);
        float* d = dst + std::int64_t(o0) * in_c * k * k;
        for (int i = 0; i < in_c; ++i)
            for (int ky = 0; ky < k; ++ky)
                for (int kx = 0; kx < k; ++kx)
                    for (int m = 0; m < mr; ++m) *d++ = get(o0 + m, i, ky, kx);
    }
}

template <class Get>
void pack_weights(int out_c, int in_c, int k, Get get, float* dst) {
    // In parallel: 512 x 512 x 3 x 3 weights, read transposed for backward-data, take
    // milliseconds on one thread, as long as a whole 23 x 30 convolution.
    parallel_for(0, (out_c + fwd_mr - 1) / fwd_mr, [&](std::int64_t b, std::int64_t e, int) {
        for (int o0 = int(b) * fwd_mr; o0 < std::min<std::int64_t>(out_c, e * fwd_mr); o0 += fwd_mr)
            pack_block(o0, out_c, in_c, k, get, dst);
    });
}

/// y[m][0 .. 16 NV) = bias[m] + sum over (ci, ky, kx) of w[m][ci][ky][kx] * x[ci][ky][kx + ...]
/// for MR output channels, max(., 0) when relu; the last vector is stored under `last`.
template <int MR, int NV, int KS = 0>
SEGNET_AVX512_TARGET void fwd_micro(const float* xb, std::int64_t cstride, int wp, int cin, int k_runtime,
                                    const float* wpk, float* y, std::int64_t yplane, __mmask16 last,
                                    const float* bias, bool relu) {
    const int k = KS ? KS : k_runtime;  // KS: the kernel size fixed at compile time (unrolled taps)
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[m][v] = bias ? _mm512_set1_ps(bias[m]) : _mm512_setzero_ps();
    for (int ci = 0; ci < cin; ++ci) {
        const float* xc = xb + ci * cstride;
        {
            // The next channel's rows are a long stride away: ask for them early.
            const float* nx = xc + 2 * cstride;
            for (int ky = 0; ky < k; ++ky)
#pragma GCC unroll 4
                for (int v = 0; v <= NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(nx + ky * wp + 16 * v), _MM_HINT_T0);
        }
        for (int ky = 0; ky < k; ++ky) {
            const float* xr = xc + std::int64_t(ky) * wp;
#pragma GCC unroll 7
            for (int kx = 0; kx < k; ++kx) {
                __m512 xv[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_ps(xr + kx + 16 * v);
#pragma GCC unroll 8
                for (int m = 0; m < MR; ++m) {
                    const __m512 wv = _mm512_set1_ps(wpk[m]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(wv, xv[v], acc[m][v]);
                }
                wpk += MR;
            }
        }
    }
    if (relu) {  // the epilogue of a fused conv + (batch norm +) ReLU: no separate pass over y
        const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_max_ps(acc[m][v], zero);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 4
        for (int v = 0; v + 1 < NV; ++v) _mm512_storeu_ps(y + m * yplane + 16 * v, acc[m][v]);
        _mm512_mask_storeu_ps(y + m * yplane + 16 * (NV - 1), last, acc[m][NV - 1]);
    }
}

using FwdFn = void (*)(const float*, std::int64_t, int, int, int, const float*, float*, std::int64_t, __mmask16,
                       const float*, bool);
template <std::size_t... I>
constexpr std::array<FwdFn, sizeof...(I)> fwd_table(std::index_sequence<I...>) {
    return {&fwd_micro<int(I / fwd_nv) + 1, int(I % fwd_nv) + 1>...};
}
inline constexpr auto fwd_kernels = fwd_table(std::make_index_sequence<fwd_mr * fwd_nv>{});

/// Output rows [y0, y0 + rows) of one image from the band buffer (row 0 = input row y0 - pad).
inline void fwd_band(const float* buf, int rows_in_buf, int wp, int cin, int cout, int k, const float* packed,
                     const float* bias, bool relu, float* y, int h, int w, int y0, int rows) {
    const std::int64_t plane = std::int64_t(h) * w, cstride = std::int64_t(rows_in_buf) * wp;
    const std::int64_t wsz = std::int64_t(cin) * k * k;
    // Weights are streamed once per register block of output channels and stay in L2 while
    // the block sweeps the band (512 x 512 x 3 x 3 weights are 9.4 MB: cycling all of them per
    // pixel tile would stream them from L3).
    // Row tiles of equal vector counts (60 = 32 + 28, not 48 + 12 whose 1-vector tile would be
    // bound by its 8 broadcasts per 8 FMAs).
    const int tiles = (w + 16 * fwd_nv - 1) / (16 * fwd_nv);
    const int tile = ((w + tiles - 1) / tiles + 15) / 16 * 16;
    for (int o0 = 0; o0 < cout; o0 += fwd_mr) {
        const int mr = std::min(fwd_mr, cout - o0);
        for (int r = 0; r < rows; ++r) {
            const float* xrow = buf + std::int64_t(r) * wp;
            float* yrow = y + std::int64_t(y0 + r) * w;
            for (int ox0 = 0; ox0 < w; ox0 += tile) {
                const int rem = std::min(tile, w - ox0);
                const int nv = (rem + 15) / 16;
                const __mmask16 last = rem % 16 ? __mmask16((1u << (rem % 16)) - 1) : __mmask16(0xFFFF);
                // The full register block for the kernel sizes the models use has its taps unrolled.
                FwdFn fn = fwd_kernels[std::size_t((mr - 1) * fwd_nv + nv - 1)];
                if (mr == fwd_mr && nv == fwd_nv)
                    fn = k == 3 ? &fwd_micro<fwd_mr, fwd_nv, 3> : k == 7 ? &fwd_micro<fwd_mr, fwd_nv, 7> : fn;
                fn(xrow + ox0, cstride, wp, cin, k, packed + o0 * wsz, yrow + o0 * plane + ox0, plane, last,
                   bias ? bias + o0 : nullptr, relu);
            }
        }
    }
}

struct Band {
    int rows;   // output rows per task
    int bands;  // tasks per image
};
/// Output rows per task: enough tasks to balance the threads, a band buffer of at most ~2 MB.
inline Band plan_bands(int batch, int h, int cin, int k, int wp, int min_rows) {
    const int threads = num_threads();
    const int want_tasks_per_image = std::max(1, (4 * threads + batch - 1) / batch);
    int rows = std::max(min_rows, (h + want_tasks_per_image - 1) / want_tasks_per_image);
    rows = std::min(rows, h);
    while (rows > 1 && std::int64_t(cin) * (rows + k - 1) * wp * 4 > (std::int64_t(768) << 10)) rows = (rows + 1) / 2;
    return {rows, (h + rows - 1) / rows};
}

inline thread_local std::vector<float> band_buffer;
inline thread_local std::vector<float> packed_buffer;

/// y = conv(x, packed weights) (+ bias), max(., 0) when relu: the driver shared by forward and
/// backward-data.
inline void direct_conv(const float* x, const float* packed, const float* bias, bool relu, float* y, int batch,
                        int cin, int cout, int h, int w, int k) {
    const int pad = k / 2;
    const int wp = int(round_up(round_up(w, 16) + k - 1, 16));
    const Band b = plan_bands(batch, h, cin, k, wp, 1);
    parallel_for(0, std::int64_t(batch) * b.bands, [&](std::int64_t first, std::int64_t end, int) {
        for (std::int64_t item = first; item < end; ++item) {
            const int n = int(item / b.bands);
            const int y0 = int(item % b.bands) * b.rows;
            const int rows = std::min(b.rows, h - y0);
            const int rows_in_buf = rows + k - 1;
            float* buf = scratch(band_buffer, std::int64_t(cin) * rows_in_buf * wp + 16);
            const float* xn = x + std::int64_t(n) * cin * h * w;
            fill_band(xn, cin, h, w, pad, y0, rows_in_buf, wp, buf);
            fwd_band(buf, rows_in_buf, wp, cin, cout, k, packed, bias, relu, y + std::int64_t(n) * cout * h * w, h, w,
                     y0, rows);
        }
    });
}

/// dw[m][j] += sum over the band's pixels of dy[m][p] * x[tap j][p] for MR output channels and
/// NR filter taps at offsets off[j] in the band buffer.
template <int MR, int NR>
SEGNET_AVX512_TARGET void bwf_micro(const float* dy, std::int64_t plane, int w, int rows, const float* buf,
                                    const std::int64_t* off, int wp, float* dw, std::int64_t dwstride) {
    __m512 acc[MR][NR];
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 6
        for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_setzero_ps();
    const float* xo[NR];
#pragma GCC unroll 6
    for (int j = 0; j < NR; ++j) xo[j] = buf + off[j];
    for (int r = 0; r < rows; ++r) {
        const float* dyr = dy + std::int64_t(r) * w;
        const std::int64_t xr = std::int64_t(r) * wp;
        // Masked loads throughout (zeros beyond the row: no garbage times garbage). A separate
        // unmasked loop for the full vectors measured 40% slower with GCC 12 (not investigated).
        for (int ox = 0; ox < w; ox += 16) {
            const int rem = w - ox;
            const __mmask16 mask = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
            __m512 dv[MR];
#pragma GCC unroll 4
            for (int m = 0; m < MR; ++m) dv[m] = _mm512_maskz_loadu_ps(mask, dyr + m * plane + ox);
#pragma GCC unroll 6
            for (int j = 0; j < NR; ++j) {
                const __m512 xv = _mm512_maskz_loadu_ps(mask, xo[j] + xr + ox);
#pragma GCC unroll 4
                for (int m = 0; m < MR; ++m) acc[m][j] = _mm512_fmadd_ps(dv[m], xv, acc[m][j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 6
        for (int j = 0; j < NR; ++j) dw[m * dwstride + j] += _mm512_reduce_add_ps(acc[m][j]);
}

using BwfFn = void (*)(const float*, std::int64_t, int, int, const float*, const std::int64_t*, int, float*,
                       std::int64_t);
template <std::size_t... I>
constexpr std::array<BwfFn, sizeof...(I)> bwf_table(std::index_sequence<I...>) {
    return {&bwf_micro<int(I / bwf_nr) + 1, int(I % bwf_nr) + 1>...};
}
inline constexpr auto bwf_kernels = bwf_table(std::make_index_sequence<bwf_mr * bwf_nr>{});

inline thread_local std::vector<float> partial_buffer;

}  // namespace detail

/// y = conv(x, w * weight_scale) (+ bias), max(., 0) when relu; y is overwritten. weight_scale
/// (per output channel, or null: 1) multiplies the weights as they are packed: a batch norm folded
/// into the convolution (conv.hpp). Requires usable(g).
inline void conv2d_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                           const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
    using namespace detail;
    const int k = g.k, cin = g.in_c, cout = g.out_c;
    const std::int64_t kk = std::int64_t(k) * k;
    float* packed = scratch(packed_buffer, g.weight_size());
    if (weight_scale)
        pack_weights(cout, cin, k,
                     [&](int o, int i, int ky, int kx) {
                         return w[(o * cin + i) * kk + ky * k + kx] * weight_scale[o];
                     },
                     packed);
    else
        pack_weights(cout, cin, k, [&](int o, int i, int ky, int kx) { return w[(o * cin + i) * kk + ky * k + kx]; },
                     packed);
    direct_conv(x, packed, bias, relu, y, batch, cin, cout, g.in_h, g.in_w, k);
}

/// dx = the gradient of sum(dy * conv(x, w)) with respect to x; dx is overwritten. A stride-1
/// same-padded convolution's transpose is the convolution of dy with w transposed (in <-> out)
/// and flipped.
inline void conv2d_backward_data(const float* dy, const float* w, float* dx, int batch, const ConvGeometry& g) {
    using namespace detail;
    const int k = g.k, cin = g.in_c, cout = g.out_c;
    const std::int64_t kk = std::int64_t(k) * k;
    float* packed = scratch(packed_buffer, g.weight_size());
    pack_weights(cin, cout, k,
                 [&](int o, int i, int ky, int kx) { return w[(i * cin + o) * kk + (k - 1 - ky) * k + (k - 1 - kx)]; },
                 packed);
    direct_conv(dy, packed, nullptr, false, dx, batch, cout, cin, g.in_h, g.in_w, k);
}

/// dw += the gradient of sum(dy * conv(x, w)) with respect to w (the bias gradient is left to
/// the caller).
inline void conv2d_backward_filter(const float* x, const float* dy, float* dw, int batch, const ConvGeometry& g) {
    using namespace detail;
    const int k = g.k, cin = g.in_c, cout = g.out_c, h = g.in_h, w = g.in_w, pad = g.pad;
    const std::int64_t taps = std::int64_t(cin) * k * k, plane = std::int64_t(h) * w;
    const int wp = int(round_up(round_up(w, 16) + k - 1, 16));
    // Long pixel runs per band (the 16-lane sums are reduced once per band), enough bands to
    // share between threads.
    const int threads = num_threads();
    int rows = std::min(h, std::max(1, (2048 + w - 1) / w));
    while (rows > 1 && std::int64_t(batch) * ((h + rows - 1) / rows) < 2 * threads) rows = (rows + 1) / 2;
    while (rows > 1 && std::int64_t(cin) * (rows + k - 1) * wp * 4 > (std::int64_t(4) << 20)) rows = (rows + 1) / 2;
    const int bands = (h + rows - 1) / rows;
    std::vector<float*> partials(std::size_t(threads), nullptr);
    parallel_for(0, std::int64_t(batch) * bands, [&](std::int64_t first, std::int64_t end, int worker) {
        float* acc = scratch(partial_buffer, g.weight_size());
        std::fill_n(acc, g.weight_size(), 0.f);
        partials[std::size_t(worker)] = acc;
        std::vector<std::int64_t> off(static_cast<std::size_t>(taps));
        for (std::int64_t item = first; item < end; ++item) {
            const int n = int(item / bands);
            const int y0 = int(item % bands) * rows;
            const int nrows = std::min(rows, h - y0);
            const int rows_in_buf = nrows + k - 1;
            float* buf = scratch(band_buffer, std::int64_t(cin) * rows_in_buf * wp + 16);
            fill_band(x + std::int64_t(n) * cin * plane, cin, h, w, pad, y0, rows_in_buf, wp, buf);
            for (std::int64_t t = 0; t < taps; ++t) {
                const std::int64_t ci = t / (k * k), ky = t / k % k, kx = t % k;
                off[std::size_t(t)] = (ci * rows_in_buf + ky) * wp + kx;
            }
            const float* dyn = dy + std::int64_t(n) * cout * plane + std::int64_t(y0) * w;
            // Blocks of output channels and of taps small enough that their dy rows and input
            // rows (about 256 KB each) stay in L2 while the register blocks sweep them.
            const std::int64_t px = std::int64_t(nrows) * w;
            const int co_chunk = int(std::clamp<std::int64_t>((std::int64_t(64) << 10) / px / bwf_mr * bwf_mr, bwf_mr,
                                                              round_up(cout, bwf_mr)));
            const std::int64_t ci_chunk = std::max<std::int64_t>(1, (std::int64_t(64) << 10) / (std::int64_t(rows_in_buf) * wp));
            const std::int64_t tap_chunk = round_up(ci_chunk * k * k, bwf_nr);
            for (int c0 = 0; c0 < cout; c0 += co_chunk)
                for (std::int64_t tc = 0; tc < taps; tc += tap_chunk)
                    for (int o0 = c0; o0 < std::min(cout, c0 + co_chunk); o0 += bwf_mr) {
                        const int mr = std::min(bwf_mr, cout - o0);
                        for (std::int64_t t0 = tc; t0 < std::min(taps, tc + tap_chunk); t0 += bwf_nr) {
                            const int nr = int(std::min<std::int64_t>(bwf_nr, taps - t0));
                            bwf_kernels[std::size_t((mr - 1) * bwf_nr + nr - 1)](
                                dyn + o0 * plane, plane, w, nrows, buf, off.data() + t0, wp, acc + o0 * taps + t0, taps);
                        }
                    }
        }
    });
    for (float* p : partials)
        if (p)
            parallel_for(0, g.weight_size(), [&](std::int64_t b, std::int64_t e, int) {
                for (std::int64_t i = b; i < e; ++i) dw[i] += p[i];
            }, 1 << 14);
}

#pragma GCC diagnostic pop
#else   // no x86 AVX-512 kernels in this build: usable() is false, these are never called.
inline void conv2d_forward(const float*, const float*, const float*, float*, int, const ConvGeometry&,
                           const float* = nullptr, bool = false) {}
inline void conv2d_backward_data(const float*, const float*, float*, int, const ConvGeometry&) {}
inline void conv2d_backward_filter(const float*, const float*, float*, int, const ConvGeometry&) {}
#endif

}  // namespace segnet::cpu::avx512
