// segnet/backend/cpu/conv_direct.hpp: register-blocked direct convolution for the stride-1,
// same-size convolutions every SegNet layer uses, and their atrous form (dilation d, pad
// d (k - 1) / 2: DeepLab, PSPNet) (forward, backward-data, backward-filter), in
// AVX-512 and AVX2 + FMA, and in bf16 with FP32 accumulation on AVX512-BF16 for Precision::bf16
// (conv_direct_bf16.hpp), chosen at run time from the CPU's features.
//
//   if (segnet::backend::cpu::avx512::usable(g)) segnet::backend::cpu::avx512::conv2d_forward(x, w, bias, y, n, g);
//   else if (segnet::backend::cpu::avx2::usable(g)) segnet::backend::cpu::avx2::conv2d_forward(x, w, bias, y, n, g);
//   segnet::backend::cpu::avx2::conv2d_forward(x, w, bias, y, n, g, bn_scale, /*relu*/ true);   // eval fusion
//   segnet::backend::cpu::avx2::conv2d_backward_data(dy, w, dx, n, g);
//   segnet::backend::cpu::avx2::conv2d_backward_filter(x, dy, dw, n, g);      // dw += ...
//
// Works on the NCHW tensors as they are, without im2col: a band of input rows is copied, with
// its zero border, into a per-thread buffer whose rows are padded to a multiple of the vector
// width; a micro-kernel then keeps MR output channels x NV vectors of output pixels in
// registers and, for every (input channel, ky, kx), loads NV vectors of shifted input pixels and
// broadcasts MR weights (packed per block of MR output channels). A dilated kernel reads the
// same band, taps d rows and d columns apart, with a border of d (k - 1) / 2. Backward-data is the same
// kernel on dy with the weights transposed and flipped (stride 1, same padding). Backward-filter
// keeps MR output channels x NR filter taps of vector partial sums over a band of pixels and
// reduces them once per band. The forward optionally multiplies each output channel's weights
// by a scale while packing them (a batch norm folded in: no extra pass, no extra buffer) and
// applies ReLU to the accumulators before they are stored (the epilogue).
//
// One source, three kernel sets: the ISA-independent parts (band copy, weight packing, band
// planning) are here once; the micro-kernels and their drivers are in conv_direct_kernels.hpp,
// written against an ISA traits struct (vector type, lanes, loads / stores / masked tail stores,
// FMA, max, broadcast, horizontal sum, the register blocking, and the operands the reduction
// runs over: FP32 values, or bf16 pairs) and included three times: as namespace avx512 with
// direct::Avx512 and __attribute__((target("avx512f,..."))), as namespace avx2 with direct::Avx2
// and target("avx2,fma"), and as namespace avx512_bf16 with direct::Avx512Bf16 (AVX-512's
// vectors and blocking; the multiply-add is vdpbf16ps over pairs of channels, or of pixels in
// backward-filter) and target("...,avx512bf16") (GCC's target attribute cannot differ between
// instantiations of one template, hence the inclusion rather than a template parameter). A
// binary built without -march=native (SEGNET_NATIVE=OFF) contains all three; conv.hpp calls the
// bf16 kernels under Precision::bf16 where the CPU has AVX512-BF16 (and AMX does not take the
// layer: conv_amx.hpp), else AVX-512 where the CPU
// reports it, else AVX2 + FMA, else the im2col kernels (conv.hpp, on gemm.hpp), which are also
// the reference the tests compare with. SEGNET_CONV=avx2 forces AVX2 on an AVX-512 CPU (no bf16
// kernels either), SEGNET_CONV=im2col the im2col path (simd.hpp).
//
// Register blocking (accumulators + operands must fit the register file, or the kernel spills):
//   AVX-512 (32 zmm, 16 lanes): forward 8 channels x 3 vectors (24 accumulators, 48 pixels),
//                               backward-filter 4 channels x 6 taps (24 accumulators).
//   AVX512-BF16:                the same blocks; a forward operand vector holds 16 pixels x 2
//                               channels, a backward-filter one 32 pixels, so each iteration
//                               does twice the FP32 kernel's multiply-adds.
//   AVX2    (16 ymm,  8 lanes): forward 4 channels x 3 vectors (12 accumulators + 3 inputs
//                               + 1 broadcast, 24 pixels), backward-filter 2 channels x 5 taps
//                               (10 accumulators + 2 dy + 1 input; 3 x 4, 16 registers exactly,
//                               spills with GCC 12 and took twice the time, also without masks).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

#include "segnet/backend/conv_geometry.hpp"
#include "segnet/backend/cpu/pool.hpp"
#include "segnet/backend/cpu/simd.hpp"
#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/core/shape.hpp"

namespace segnet::backend::cpu::direct {

using backend::ConvGeometry;

/// The rows (and columns) one output pixel's taps span: dilation (k - 1) + 1.
inline int tap_span(const ConvGeometry& g) { return g.dilation * (g.k - 1) + 1; }

/// The geometries these kernels handle: stride 1, no groups, output the size of the input, same
/// padding (k odd, pad = dilation (k - 1) / 2), any dilation: the atrous 3x3 convolutions of
/// DeepLab and PSPNet (pad = dilation) as well as SegNet's.
inline bool supports(const ConvGeometry& g) {
    return g.groups == 1 && g.stride == 1 && g.in_h == g.out_h && g.in_w == g.out_w && g.k % 2 == 1 &&
           2 * g.pad == g.dilation * (g.k - 1);
}

/// Whether the direct backward-filter beats the im2col path on g: always at dilation 1; dilated,
/// where a band of one phase's rows (ceil(h / d) rows of w + d (k - 1) stream positions) makes a
/// stream of at least 1024 positions. Shorter streams spend their time on the reductions of the
/// partial sums: DeepLab-LargeFOV's fc6 (dilation 12 on 46x61: streams of 340) took 1.3x the
/// im2col path's time, its conv5 (dilation 2: 1449) 0.72x (docs/performance.md, section 9).
inline bool backward_filter_streams_pay(const ConvGeometry& g) {
    return g.dilation == 1 || std::int64_t(ceil_div(g.in_h, g.dilation)) * (g.in_w + tap_span(g) - 1) >= 1024;
}

inline std::int64_t round_up(std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; }


/// Per-thread scratch that only grows (the band buffers and partial gradients are reused from
/// call to call, so steady-state runs neither allocate nor fault in fresh pages).
template <class T>
T* scratch(std::vector<T>& v, std::int64_t n) {
    if (std::int64_t(v.size()) < n) v.resize(std::size_t(n));
    return v.data();
}

inline thread_local std::vector<float> band_buffer;
template <class Elem>  // float, or the bf16 kernels' pairs of channels
inline thread_local std::vector<Elem> packed_buffer;
inline thread_local std::vector<float> partial_buffer;
inline thread_local std::vector<float> output_band_buffer;  // a band's output before a fused pooling
inline thread_local std::vector<float> dy_stream_buffer;    // backward-filter: a band of dy as streams

/// Floats between the rows of a band buffer: w plus the border, a multiple of the vector width
/// (every row tile starts and is loaded in whole vectors).
inline int band_row_stride(int w, int k, int lanes) { return int(round_up(round_up(w, lanes) + k - 1, lanes)); }

/// The padded copy of `rows` input rows, `row_step` apart from y0 - pad: buf[ci][r][j] =
/// x[ci][y0 - pad + r row_step][j - pad], zero outside the image; rows are wp floats apart
/// (wp >= w + k - 1 + lanes - 1). A row_step of d gathers the rows one phase of a convolution
/// of dilation d reads (see direct_conv).
inline void fill_band(const float* x, int c, int h, int w, int pad, int y0, int rows, int wp, float* buf,
                      int row_step = 1) {
    const std::int64_t plane = std::int64_t(h) * w;
    for (int ci = 0; ci < c; ++ci)
        for (int r = 0; r < rows; ++r) {
            float* d = buf + (std::int64_t(ci) * rows + r) * wp;
            const int iy = y0 - pad + r * row_step;
            if (iy < 0 || iy >= h) {
                std::memset(d, 0, sizeof(float) * std::size_t(wp));
                continue;
            }
            std::memset(d, 0, sizeof(float) * std::size_t(pad));
            std::memcpy(d + pad, x + ci * plane + std::int64_t(iy) * w, sizeof(float) * std::size_t(w));
            std::memset(d + pad + w, 0, sizeof(float) * std::size_t(wp - pad - w));
        }
}

/// A convolution's input given as a max-unpooling that was never materialised: `values` and
/// `indices` ({n, c, ph, pw}, indices flat positions y * w + x in the h x w unpooled plane, as
/// max pooling writes them) stand for the map that is values[i] at indices[i] and zero elsewhere.
struct Unpooled {
    const float* values = nullptr;
    const std::int32_t* indices = nullptr;
    int ph = 0, pw = 0;  // the pooled size
    int k = 0;           // the pooling window and stride
};

/// fill_band for an unpooled input: the same rows, built by scattering the pooled values of
/// pooled row iy / k that belong to unpooled row iy (each value is added to a zeroed row, as
/// cpu::max_unpool_forward does, so the band is bit for bit the materialised map's).
inline void fill_band_unpooled(const Unpooled& u, std::int64_t image, int c, int h, int w, int pad, int y0, int rows,
                               int wp, float* buf, int row_step = 1) {
    const std::int64_t pplane = std::int64_t(u.ph) * u.pw;
    const float* values = u.values + image * c * pplane;
    const std::int32_t* indices = u.indices + image * c * pplane;
    for (int ci = 0; ci < c; ++ci)
        for (int r = 0; r < rows; ++r) {
            float* d = buf + (std::int64_t(ci) * rows + r) * wp;
            std::memset(d, 0, sizeof(float) * std::size_t(wp));
            const int iy = y0 - pad + r * row_step;
            if (iy < 0 || iy >= h) continue;
            const std::int64_t p0 = ci * pplane + std::int64_t(iy / u.k) * u.pw;
            const std::int32_t row_start = iy * w;
            float* dp = d + pad;
            for (int px = 0; px < u.pw; ++px) {
                const std::uint32_t col = std::uint32_t(indices[p0 + px] - row_start);
                if (col < std::uint32_t(w)) dp[col] += values[p0 + px];
            }
        }
}

/// A convolution's output handed to a max pooling (window = stride = k, ceil rounding, as
/// cpu::max_pool_forward) band by band as it is computed: only the pooled values and indices
/// ({n, c, ceil(h / k), ceil(w / k)}) are written, the full-size map never is.
struct Pooled {
    float* values = nullptr;
    std::int32_t* indices = nullptr;
    int k = 0;
};

/// w packed for the forward micro-kernel: for each block of up to mr output channels starting
/// at o0, [ci][ky][kx][m] at offset o0 * in_c * k * k. get(o, i, ky, kx) reads the logical
/// weight. In parallel: 512 x 512 x 3 x 3 weights, read transposed for backward-data, take
/// milliseconds on one thread, as long as a whole 23 x 30 convolution.
template <class Elem, class Get>
void pack_weights(int mr_max, int out_c, int in_c, int k, Get get, Elem* dst) {
    parallel_for(0, (out_c + mr_max - 1) / mr_max, [&](std::int64_t b, std::int64_t e, int) {
        for (int o0 = int(b) * mr_max; o0 < std::min<std::int64_t>(out_c, e * mr_max); o0 += mr_max) {
            const int mr = std::min(mr_max, out_c - o0);
            Elem* d = dst + std::int64_t(o0) * in_c * k * k;
            for (int i = 0; i < in_c; ++i)
                for (int ky = 0; ky < k; ++ky)
                    for (int kx = 0; kx < k; ++kx)
                        for (int m = 0; m < mr; ++m) *d++ = get(o0 + m, i, ky, kx);
        }
    });
}

/// This core's L2 cache in bytes (sysconf; 512 KB when it does not say).
inline std::int64_t l2_bytes() {
    static const std::int64_t bytes = [] {
#ifdef _SC_LEVEL2_CACHE_SIZE
        const long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#else
        const long v = 0;
#endif
        return v > 0 ? std::int64_t(v) : std::int64_t(512) << 10;
    }();
    return bytes;
}

/// Row tiles per column group of the forward band sweep: as many as keep the group's part of the
/// band (cin x rows x (tiles x tile + k - 1) floats) within half the L2, at least one.
inline int column_group_tiles(int cin, int rows_in_buf, int tile, int k, int tiles) {
    const std::int64_t budget = l2_bytes() / 2 / 4;  // floats
    const std::int64_t per_tile = std::int64_t(cin) * rows_in_buf * tile;
    const std::int64_t border = std::int64_t(cin) * rows_in_buf * (k - 1);
    const std::int64_t fit = (budget - border) / std::max<std::int64_t>(1, per_tile);
    return int(std::clamp<std::int64_t>(fit, 1, tiles));
}

struct Band {
    int rows;   // output rows per task
    int bands;  // tasks per image
};
/// Output rows per task: enough tasks to balance the threads, a band buffer of at most 4 MB,
/// a multiple of `row_multiple` (a fused pooling's window: each band pools whole windows), and
/// at least `min_rows` (up to h) even where the band then exceeds 4 MB: a band of contiguous
/// rows of a dilated kernel holds d (k - 1) border rows (the fused pooling's case, direct_conv).
/// The forward sweeps a band in column groups that fit in L2 (column_group_tiles), so a tall
/// band costs no cache misses, and each group's weights are read once for all its rows: on a
/// Zen 3 core (512 KB L2) 4 MB bands with column groups ran SegNet-Basic's inference 10% faster
/// than the earlier 768 KB bands swept whole (docs/performance.md, section 4a).
inline Band plan_bands(int batch, int h, int cin, int k, int wp, int min_rows, int row_multiple = 1) {
    const int threads = num_threads();
    const int want_tasks_per_image = std::max(1, (4 * threads + batch - 1) / batch);
    int rows = std::max(min_rows, (h + want_tasks_per_image - 1) / want_tasks_per_image);
    rows = std::min(int(round_up(rows, row_multiple)), h);
    const int fewest = std::min(h, int(round_up(min_rows, row_multiple)));
    while (rows > std::max(row_multiple, fewest) && std::int64_t(cin) * (rows + k - 1) * wp * 4 > (std::int64_t(4) << 20))
        rows = std::max(fewest, int(round_up((rows + 1) / 2, row_multiple)));
    return {rows, (h + rows - 1) / rows};
}

/// The FP32 kernels' operands: the band, the packed weights and the backward-filter streams
/// hold the FP32 values themselves (the bf16 kernels convert them: conv_direct_bf16.hpp).
struct Fp32Operands {
    using elem = float;         // forward: one channel's value per band and weight element
    using stream_elem = float;  // backward-filter: one pixel's value per stream element
    static constexpr int channels_per_elem = 1, stream_elems_per_lane = 1;
    static const float* band_operand(const float* band, int, std::int64_t) { return band; }
    static const float* stream_operand(const float* stream, std::int64_t, int) { return stream; }
    template <class Get>
    static void pack_weights(int mr_max, int out_c, int in_c, int k, Get get, float* dst) {
        direct::pack_weights(mr_max, out_c, in_c, k, get, dst);
    }
};

#if SEGNET_HAVE_AVX512_KERNELS
// GCC 12 reports its own _mm512_reduce_add_ps (an _mm256_undefined_pd operand) as uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
/// AVX-512F: 16 lanes, 32 registers, mask registers for the row tails.
struct Avx512 : Fp32Operands {
    using vec = __m512;
    using mask = __mmask16;
    static constexpr int lanes = 16;
    static constexpr int fwd_mr = 8, fwd_nv = 3;  // forward: output channels x vectors of pixels
    static constexpr int bwf_mr = 4, bwf_nr = 6;  // backward-filter: output channels x taps
    static constexpr bool pin_inputs = false;     // keep loaded input vectors in registers (no folding)
    static bool available() { return simd::has_avx512(); }
    SEGNET_AVX512_TARGET static vec zero() { return _mm512_setzero_ps(); }
    SEGNET_AVX512_TARGET static vec set1(float v) { return _mm512_set1_ps(v); }
    SEGNET_AVX512_TARGET static vec loadu(const float* p) { return _mm512_loadu_ps(p); }
    SEGNET_AVX512_TARGET static void storeu(float* p, vec v) { _mm512_storeu_ps(p, v); }
    SEGNET_AVX512_TARGET static vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
    SEGNET_AVX512_TARGET static vec max(vec a, vec b) { return _mm512_max_ps(a, b); }
    /// The first n lanes (n >= lanes: all).
    SEGNET_AVX512_TARGET static mask tail_mask(int n) { return n >= 16 ? mask(0xFFFF) : mask((1u << n) - 1); }
    SEGNET_AVX512_TARGET static void mask_storeu(float* p, mask m, vec v) { _mm512_mask_storeu_ps(p, m, v); }
    SEGNET_AVX512_TARGET static float reduce_add(vec v) { return _mm512_reduce_add_ps(v); }
};
#pragma GCC diagnostic pop
#endif

#if SEGNET_HAVE_AVX2_KERNELS
/// AVX2 + FMA: 8 lanes, 16 registers, vmaskmov for the forward's row tails (masked-off lanes
/// are not written).
struct Avx2 : Fp32Operands {
    using vec = __m256;
    using mask = __m256i;
    static constexpr int lanes = 8;
    static constexpr int fwd_mr = 4, fwd_nv = 3;
    static constexpr int bwf_mr = 2, bwf_nr = 5;  // 3 x 4 spills with GCC 12: twice the time
    static constexpr bool pin_inputs = true;
    static bool available() { return simd::has_avx2_fma(); }
    SEGNET_AVX2_TARGET static vec zero() { return _mm256_setzero_ps(); }
    SEGNET_AVX2_TARGET static vec set1(float v) { return _mm256_set1_ps(v); }
    SEGNET_AVX2_TARGET static vec loadu(const float* p) { return _mm256_loadu_ps(p); }
    SEGNET_AVX2_TARGET static void storeu(float* p, vec v) { _mm256_storeu_ps(p, v); }
    SEGNET_AVX2_TARGET static vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
    SEGNET_AVX2_TARGET static vec max(vec a, vec b) { return _mm256_max_ps(a, b); }
    SEGNET_AVX2_TARGET static mask tail_mask(int n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    SEGNET_AVX2_TARGET static void mask_storeu(float* p, mask m, vec v) { _mm256_maskstore_ps(p, m, v); }
    SEGNET_AVX2_TARGET static float reduce_add(vec v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
};
#endif

}  // namespace segnet::backend::cpu::direct

// The kernels, once per ISA.
#if SEGNET_HAVE_AVX512_KERNELS
#define SEGNET_DC_NS avx512
#define SEGNET_DC_ISA Avx512
#define SEGNET_DC_TARGET SEGNET_AVX512_TARGET
#include "segnet/backend/cpu/conv_direct_kernels.hpp"
#undef SEGNET_DC_NS
#undef SEGNET_DC_ISA
#undef SEGNET_DC_TARGET
#endif
#if SEGNET_HAVE_AVX2_KERNELS
#define SEGNET_DC_NS avx2
#define SEGNET_DC_ISA Avx2
#define SEGNET_DC_TARGET SEGNET_AVX2_TARGET
#include "segnet/backend/cpu/conv_direct_kernels.hpp"
#undef SEGNET_DC_NS
#undef SEGNET_DC_ISA
#undef SEGNET_DC_TARGET
#endif

// A kernel set this build does not compile (not x86, or below the build's baseline: simd.hpp):
// usable() is false, so the entry points are never called.
#define SEGNET_DC_ABSENT_ISA(NS)                                                                                       \
    namespace segnet::backend::cpu::NS {                                                                        \
    inline bool usable(const backend::ConvGeometry&) { return false; }                                          \
    inline void conv2d_forward(const float*, const float*, const float*, float*, int, const backend::ConvGeometry&, \
                               const float* = nullptr, bool = false, const direct::Unpooled* = nullptr,        \
                               const direct::Pooled* = nullptr) {}                                              \
    inline void conv2d_backward_data(const float*, const float*, float*, int, const backend::ConvGeometry&) {}  \
    inline void conv2d_backward_filter(const float*, const float*, float*, int, const backend::ConvGeometry&) {} \
    }
#if !SEGNET_HAVE_AVX512_KERNELS
SEGNET_DC_ABSENT_ISA(avx512)
#endif
#if !SEGNET_HAVE_AVX2_KERNELS
SEGNET_DC_ABSENT_ISA(avx2)
#endif

// The bf16 kernels on AVX512-BF16 (Precision::bf16): the same kernels once more.
#include "segnet/backend/cpu/conv_direct_bf16.hpp"
