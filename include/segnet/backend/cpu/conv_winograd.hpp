// segnet/backend/cpu/conv_winograd.hpp: Winograd F(4x4, 3x3) convolution for the 3x3, stride-1,
// same-padding convolutions of SegNet (forward with the eval-fusion epilogue, and backward-data),
// in AVX-512 and AVX2 + FMA, chosen at run time from the CPU's features.
//
//   if (segnet::backend::cpu::winograd::chosen(g, n))                    // conv.hpp does this
//       segnet::backend::cpu::winograd::conv2d_forward(x, w, bias, y, n, g, bn_scale, /*relu*/ true);
//   segnet::backend::cpu::winograd::conv2d_backward_data(dy, w, dx, n, g);
//   segnet::backend::cpu::avx2::winograd_forward(x, w, bias, y, n, g);   // one ISA, by name
//
// Why: the direct kernels (conv_direct.hpp) run near the FMA peak, so only fewer multiplies make
// them faster. F(4x4, 3x3) computes a 4x4 output tile from a 6x6 input tile with 36 products
// per (input, output) channel pair instead of 144: 4x fewer FMAs, plus the transforms.
//
// Design. Per call the weights are transformed once (U = G g G^T per filter, the eval fusion's
// per-output-channel scale folded in; backward-data transposes and rotates the filters first)
// into [36 positions][panels of MR output channels][in_c][MR]: 4x the weights' size, shared by
// all threads. There is no cache (tensors have no version counter, and the weights change in
// training); measured on one Zen 5 core, the transform takes 0.2 ms at 64 x 64 channels and
// about 10 ms at 512 x 512 (writing 38 MB), a fifth of a 512-channel 45x60 forward at batch 1.
// The output's 4x4 tiles are taken in groups of L consecutive tiles of one tile row (one tile per
// vector lane; a row's last group may reach past its end), NV groups to a block (one
// micro-kernel's width: AVX-512 3 x 16, AVX2 3 x 8 tiles), block by block on the thread pool;
// a block's work is
//   1. input transform: a group's 6 input rows (4 L + 4 floats each, read in place, or copied
//      with the zero padding at the image's borders) are split into the patches' 6 columns by
//      in-register permutes (deinterleave4: 4 loads and 12 shuffles for 4 columns of L tiles,
//      where gathers ran the whole convolution 1.7x slower on Zen 5) and B^T d B is computed
//      with vector adds, into V[36][in_c][block];
//   2. 36 GEMMs M[pos] = U[pos]^T V[pos], [out_c x in_c] x [in_c x block], by a register-blocked
//      micro-kernel (MR output channels x NV vectors of tiles: AVX-512 8 x 3, AVX2 4 x 3, as the
//      direct forward) with FP32 accumulation; V[pos] (at most 96 KB) stays in L2 while the
//      weight panels stream;
//   3. output transform: A^T M A per output channel on L tiles at once, + bias, ReLU (the eval
//      fusion's epilogue), interleaved back into rows of 4 L pixels (clipped at the borders).
// Memory: U (36 x in_c x out_c floats: 38 MB at 512 x 512, per calling thread, kept for the next
// call) and, per worker, V and M (36 x 48 x in_c and out_c floats: 3.5 MB each at 512 channels).
// Small maps have fewer blocks than threads want: then the output channels are split into
// chunks too (each chunk repeats its block's input transform, a small part of the work).
// At 64 channels the transforms are half of the time (360x480, one thread: ~22 of ~42 ms; the
// GEMMs run at ~95% of the FMA peak), at 512 channels the GEMMs are most of it.
//
// Error: the transforms' constants (up to 8 and 1/24) amplify FP32 rounding. Measured against
// a double-precision reference (8 output / input channels of each layer) on SegNet's shapes,
// batch 1, He-initialised weights, ReLU'd N(0, 1) inputs, N(0, 1) output gradients; max |error|
// / max |reference|:
//                          forward                      backward-data
//   shape              Winograd  direct   Eigen      Winograd  direct
//   64x64 360x480       6.9e-6   7.2e-7   7.2e-7      6.6e-6   9.9e-7
//   128x128 180x240     6.7e-6   8.3e-7   4.8e-7      1.2e-5   1.9e-6
//   256x256 90x120      1.5e-5   1.3e-6   7.1e-7      9.4e-6   1.7e-6
//   512x512 45x60       1.2e-5   2.0e-6   4.9e-7      1.6e-5   2.3e-6
//   512x512 23x30       1.0e-5   1.7e-6   4.0e-7      1.9e-5   2.7e-6
// (Eigen: the im2col path when it multiplied with Eigen; max |error| 3e-5 .. 1e-4 on outputs of
// magnitude ~5): 5-10x the direct kernels' error, 300x
// below bf16's rounding (4e-3), so F(4x4, 3x3) is accurate enough and F(2x2, 3x3) (2.25x fewer
// multiplies instead of 4x) is not needed. Tests compare with the im2col path at 5e-5.
//
// When it is chosen (chosen(g, batch)): 3x3, stride 1, pad 1, same size, no groups, FP32
// precision (the caller checks compute_precision()), an AVX-512 or AVX2 + FMA CPU, and
// faster_than_direct(g, batch, avx512) (a rule on the channel counts and, with AVX-512, the
// batch's pixels, measured on SegNet's shapes, see there). SEGNET_WINOGRAD=1 in the environment forces it on wherever it can
// run, SEGNET_WINOGRAD=0 off (simd.hpp's SEGNET_CONV=im2col switches it off too, SEGNET_CONV=avx2
// makes it AVX2); set_mode() does the same from a program (conv-bench --winograd). The eval
// fusions that pool or unpool inside the direct kernels (conv.hpp's conv2d_forward_pooled /
// _unpooled) decline where Winograd is chosen: Winograd plus a separate pooling pass is faster
// (conv.hpp, winograd_beats_fusion). Backward-filter stays direct (not implemented).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "segnet/backend/conv_geometry.hpp"
#include "segnet/backend/cpu/conv_direct.hpp"
#include "segnet/backend/cpu/simd.hpp"
#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::backend::cpu::winograd {

using backend::ConvGeometry;

inline constexpr int positions = 36;        // 6 x 6 transformed values per tile

/// The geometries Winograd F(4x4, 3x3) handles: 3x3, stride 1, no dilation, pad 1, output the size of the
/// input, no groups.
inline bool supports(const ConvGeometry& g) {
    return g.groups == 1 && g.k == 3 && g.stride == 1 && g.dilation == 1 && g.pad == 1 && g.in_h == g.out_h &&
           g.in_w == g.out_w;
}

/// Whether Winograd is used: automatic (the measured rule), never, or wherever it can run.
enum class Mode { automatic, off, on };

inline Mode& mode_setting() {
    static Mode mode = [] {
        const char* env = std::getenv("SEGNET_WINOGRAD");
        if (env && std::strcmp(env, "0") == 0) return Mode::off;
        if (env && std::strcmp(env, "1") == 0) return Mode::on;
        return Mode::automatic;
    }();
    return mode;
}
/// The current mode (from SEGNET_WINOGRAD=0/1 at start, else automatic).
inline Mode mode() { return mode_setting(); }
/// Overrides the mode for the whole process (timing, tests); not thread-safe against running kernels.
inline void set_mode(Mode m) { mode_setting() = m; }

/// The rule automatic mode applies, measured with conv-bench --winograd compare on an AMD EPYC
/// (Zen 5, 1 and 2 threads, batch 1 and 4; docs/performance.md). With AVX-512, Winograd ran
/// SegNet's 3x3 layers with 64-512 channels on maps of 45x60 and larger 1.6-2.3x faster than the
/// direct kernels (forward and backward-data), the first layer (3 -> 64: the transforms dominate
/// a 3-channel GEMM) 1.2-2.2x slower, and 512 channels on 23x30 about as fast (0.88-1.00 at
/// batch 1, 1.05-1.14 at batch 4: the per-call weight transform, 38 MB at 512 x 512, weighs on
/// so few pixels, and half of each 16-tile row group is empty at 8 tiles per row). With AVX2
/// (SEGNET_CONV=avx2, one thread, batch 1) it ran 1.5-2.1x faster at 64-512 channels, 23x30
/// included (8-tile groups fit its rows, and the direct kernels are half as fast). Hence: both
/// channel counts at least 64 and, with AVX-512, at least 2048 output pixels in the batch.
inline bool faster_than_direct(const ConvGeometry& g, int batch, bool avx512) {
    return std::min(g.in_c, g.out_c) >= 64 && (!avx512 || std::int64_t(batch) * g.out_plane() >= 2048);
}

/// The output's 4x4 tiles of one image in groups of `lanes` consecutive tiles of one tile row
/// (one tile per vector lane; a row's last group may reach past the row's end), and the groups
/// in blocks of groups_per_block (the image's last block may have fewer).
struct Tiling {
    int h, w, lanes, tiles_x, groups_per_row, groups_per_block;
    std::int64_t groups, blocks;
    Tiling(int h_, int w_, int lanes_, int groups_per_block_)
        : h(h_), w(w_), lanes(lanes_), tiles_x((w_ + 3) / 4), groups_per_row((tiles_x + lanes_ - 1) / lanes_),
          groups_per_block(groups_per_block_), groups(std::int64_t((h_ + 3) / 4) * groups_per_row),
          blocks((groups + groups_per_block_ - 1) / groups_per_block_) {}
    std::int64_t plane() const { return std::int64_t(h) * w; }
    /// The groups [first, first + count) of block b.
    std::int64_t first_group(std::int64_t b) const { return b * groups_per_block; }
    int group_count(std::int64_t b) const { return int(std::min<std::int64_t>(groups_per_block, groups - first_group(b))); }
    /// Group index's top-left output pixel (row, column).
    int group_y(std::int64_t group) const { return int(group / groups_per_row) * 4; }
    int group_x(std::int64_t group) const { return int(group % groups_per_row) * lanes * 4; }
};

/// The 6 input rows a group of `lanes` tiles at output pixel (y, x) reads, each from column
/// x - 1 on and `extent` floats long (4 lanes + 4: the last tile's patch and the shifted
/// loads): pointers into the plane when they lie inside it, else into `buffer` (6 x extent
/// floats), filled with the plane's values and zero outside.
inline void patch_rows(const float* plane, int h, int w, int y, int x, int extent, float* buffer,
                       const float* (&rows)[6]) {
    const int x0 = x - 1;
    const bool inside = y - 1 >= 0 && y + 4 < h && x0 >= 0 && x0 + extent <= w;
    for (int r = 0; r < 6; ++r) {
        const int iy = y - 1 + r;
        if (inside) {
            rows[r] = plane + std::int64_t(iy) * w + x0;
            continue;
        }
        float* d = buffer + r * extent;
        rows[r] = d;
        if (iy < 0 || iy >= h) {
            std::fill_n(d, extent, 0.f);
            continue;
        }
        const float* src = plane + std::int64_t(iy) * w;
        const int lo = std::clamp(-x0, 0, extent), hi = std::clamp(w - x0, lo, extent);
        std::fill_n(d, lo, 0.f);
        std::copy(src + x0 + lo, src + x0 + hi, d + lo);
        std::fill(d + hi, d + extent, 0.f);
    }
}

/// Chunks to split the output channels into so that the threads get enough work items: 1 when
/// the blocks alone give each thread several, at most one per panel.
inline int channel_chunks(std::int64_t blocks, int panels, int threads) {
    if (threads <= 1 || blocks >= 4 * threads) return 1;
    return int(std::clamp<std::int64_t>((4 * threads + blocks - 1) / blocks, 1, panels));
}

/// G, the weight transform of F(4x4, 3x3): the 6 values a 3-tap filter becomes.
inline constexpr float weight_transform[6][3] = {{1.f / 4, 0, 0},           {-1.f / 6, -1.f / 6, -1.f / 6},
                                                 {-1.f / 6, 1.f / 6, -1.f / 6}, {1.f / 24, 1.f / 12, 1.f / 6},
                                                 {1.f / 24, -1.f / 12, 1.f / 6}, {0, 0, 1}};

inline thread_local std::vector<float> weight_buffer;   // the transformed weights, per calling thread
inline thread_local std::vector<float> input_buffer;    // a block's V, per worker
inline thread_local std::vector<float> product_buffer;  // a block's M, per worker

/// The transformed weights U[pos][panel][ci][mr] (zero past out_c) of out_c x in_c filters,
/// filter(o, i) pointing at the 9 taps of output channel o's filter on input channel i, times
/// scale[o] when scale is not null. Valid until the calling thread's next call.
template <class Filter>
const float* transform_weights(int mr, int out_c, int in_c, const float* scale, Filter filter, bool flip) {
    const int panels = (out_c + mr - 1) / mr;
    const std::int64_t panel_size = std::int64_t(in_c) * mr;
    float* U = direct::scratch(weight_buffer, positions * panels * panel_size);
    // (G g G^T)[a][b] = sum over taps (ky, kx) of G[a][ky] G[b][kx] g[ky][kx]: 9 products per
    // position, computed for a chunk of the panel's filters at once (vectorised over them) and
    // written position by position in runs of chunk x mr floats (writing a filter's 36 values,
    // 1/36 of U apart, at once would hit one cache set 36 times: 15x slower at 512 channels).
    static const auto coefficients = [] {
        std::array<std::array<float, 9>, positions> c{};
        for (int a = 0; a < 6; ++a)
            for (int b = 0; b < 6; ++b)
                for (int t = 0; t < 9; ++t) c[a * 6 + b][t] = weight_transform[a][t / 3] * weight_transform[b][t % 3];
        return c;
    }();
    constexpr int chunk = 32;
    parallel_for(0, panels, [&](std::int64_t b, std::int64_t e, int) {
        std::vector<float> taps(std::size_t(9) * chunk * mr);  // [tap][filter of the chunk]
        const std::int64_t run = std::int64_t(chunk) * mr;
        for (std::int64_t panel = b; panel < e; ++panel)
            for (int c0 = 0; c0 < in_c; c0 += chunk) {
                const int n = std::min(chunk, in_c - c0) * mr;
                for (int i = 0; i < n; ++i) {
                    const int o = int(panel) * mr + i % mr, ci = c0 + i / mr;
                    const float* g = o < out_c ? filter(o, ci) : nullptr;
                    const float s = g && scale ? scale[o] : 1.f;
                    for (int t = 0; t < 9; ++t) taps[std::size_t(t * run + i)] = g ? s * g[flip ? 8 - t : t] : 0.f;
                }
                for (int k = 0; k < positions; ++k) {
                    float* dst = U + (k * panels + panel) * panel_size + std::int64_t(c0) * mr;
                    std::fill_n(dst, n, 0.f);
                    for (int t = 0; t < 9; ++t) {
                        const float c = coefficients[std::size_t(k)][std::size_t(t)];
                        if (c == 0.f) continue;
                        const float* tap = taps.data() + t * run;
                        for (int i = 0; i < n; ++i) dst[i] += c * tap[i];
                    }
                }
            }
    });
    return U;
}

#if SEGNET_HAVE_AVX512_KERNELS
/// The direct kernels' AVX-512 traits plus Winograd's register blocking and the conversions
/// between a row of L tiles' 4 columns (4L contiguous floats) and 4 vectors of one column each.
struct Avx512 : direct::Avx512 {
    static constexpr int mr = 8, nv = 3;
    /// v[c][j] = p[4 j + c] (lane j: tile j).
    SEGNET_AVX512_TARGET static void deinterleave4(const float* p, vec (&v)[4]) {
        const vec a0 = loadu(p), a1 = loadu(p + 16), a2 = loadu(p + 32), a3 = loadu(p + 48);
        for (int c = 0; c < 4; ++c) {
            // lanes 0-7 take 4 j + c from a0:a1, lanes 8-15 4 (j - 8) + c from a2:a3
            const __m512i index = _mm512_add_epi32(
                _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28), _mm512_set1_epi32(c));
            v[c] = _mm512_mask_blend_ps(0xFF00, _mm512_permutex2var_ps(a0, index, a1), _mm512_permutex2var_ps(a2, index, a3));
        }
    }
    /// The patch columns 4 and 5 (the next tile's 0 and 1) from deinterleave4(p)'s columns 0 and
    /// 1: shifted one lane, with p[4 L] and p[4 L + 1] in the last (2 broadcasts and 2 valignd
    /// instead of a second deinterleave4). Broadcasts, not vector loads: a patch row holds 4 L + 4
    /// floats, and a 16-float load at p + 4 L would read past its end (past the image or the
    /// patch buffer).
    SEGNET_AVX512_TARGET static void next_tile_columns(const float* p, const vec (&v)[4], vec& c4, vec& c5) {
        c4 = _mm512_castsi512_ps(
            _mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(p[64])), _mm512_castps_si512(v[0]), 1));
        c5 = _mm512_castsi512_ps(
            _mm512_alignr_epi32(_mm512_castps_si512(_mm512_set1_ps(p[65])), _mm512_castps_si512(v[1]), 1));
    }
    /// p[4 j + c] = v[c][j]: the inverse of deinterleave4.
    SEGNET_AVX512_TARGET static void interleave4(const vec (&v)[4], float* p) {
        const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const __m512i high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
        const __m512i first = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
        const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
        const vec lo01 = _mm512_permutex2var_ps(v[0], low, v[1]), hi01 = _mm512_permutex2var_ps(v[0], high, v[1]);
        const vec lo23 = _mm512_permutex2var_ps(v[2], low, v[3]), hi23 = _mm512_permutex2var_ps(v[2], high, v[3]);
        storeu(p, _mm512_permutex2var_ps(lo01, first, lo23));
        storeu(p + 16, _mm512_permutex2var_ps(lo01, second, lo23));
        storeu(p + 32, _mm512_permutex2var_ps(hi01, first, hi23));
        storeu(p + 48, _mm512_permutex2var_ps(hi01, second, hi23));
    }
};
#endif

#if SEGNET_HAVE_AVX2_KERNELS
/// The direct kernels' AVX2 traits plus Winograd's register blocking (12 accumulators + 3 inputs
/// + 1 broadcast = 16 registers) and the tile-row conversions (as Avx512's, with the lanes in
/// the order the in-lane unpacks leave them: lane j holds tile {0, 4, 2, 6, 1, 5, 3, 7}[j];
/// interleave4 undoes it, and the transforms work lane by lane, so the order never shows).
struct Avx2 : direct::Avx2 {
    static constexpr int mr = 4, nv = 3;
    SEGNET_AVX2_TARGET static void deinterleave4(const float* p, vec (&v)[4]) {
        const vec a0 = loadu(p), a1 = loadu(p + 8), a2 = loadu(p + 16), a3 = loadu(p + 24);
        const vec u0 = _mm256_unpacklo_ps(a0, a1), u1 = _mm256_unpackhi_ps(a0, a1);
        const vec u2 = _mm256_unpacklo_ps(a2, a3), u3 = _mm256_unpackhi_ps(a2, a3);
        v[0] = _mm256_unpacklo_ps(u0, u2);
        v[1] = _mm256_unpackhi_ps(u0, u2);
        v[2] = _mm256_unpacklo_ps(u1, u3);
        v[3] = _mm256_unpackhi_ps(u1, u3);
    }
    /// The patch columns 4 and 5: the next tile's 0 and 1, deinterleaved from p + 4 (in the
    /// unpacks' lane order a one-tile shift is no lane shift).
    SEGNET_AVX2_TARGET static void next_tile_columns(const float* p, const vec (&)[4], vec& c4, vec& c5) {
        vec shifted[4];
        deinterleave4(p + 4, shifted);
        c4 = shifted[0];
        c5 = shifted[1];
    }
    SEGNET_AVX2_TARGET static void interleave4(const vec (&v)[4], float* p) {
        const vec a0 = _mm256_unpacklo_ps(v[0], v[1]), a1 = _mm256_unpackhi_ps(v[0], v[1]);
        const vec b0 = _mm256_unpacklo_ps(v[2], v[3]), b1 = _mm256_unpackhi_ps(v[2], v[3]);
        storeu(p, _mm256_shuffle_ps(a0, b0, 0x44));       // tiles 0, 1
        storeu(p + 8, _mm256_shuffle_ps(a1, b1, 0x44));   // tiles 2, 3
        storeu(p + 16, _mm256_shuffle_ps(a0, b0, 0xEE));  // tiles 4, 5
        storeu(p + 24, _mm256_shuffle_ps(a1, b1, 0xEE));  // tiles 6, 7
    }
};
#endif

}  // namespace segnet::backend::cpu::winograd

// The kernels, once per ISA.
#if SEGNET_HAVE_AVX512_KERNELS
#define SEGNET_WG_NS avx512
#define SEGNET_WG_ISA Avx512
#define SEGNET_WG_TARGET SEGNET_AVX512_TARGET
#include "segnet/backend/cpu/conv_winograd_kernels.hpp"
#undef SEGNET_WG_NS
#undef SEGNET_WG_ISA
#undef SEGNET_WG_TARGET
#endif
#if SEGNET_HAVE_AVX2_KERNELS
#define SEGNET_WG_NS avx2
#define SEGNET_WG_ISA Avx2
#define SEGNET_WG_TARGET SEGNET_AVX2_TARGET
#include "segnet/backend/cpu/conv_winograd_kernels.hpp"
#undef SEGNET_WG_NS
#undef SEGNET_WG_ISA
#undef SEGNET_WG_TARGET
#endif

#if !SEGNET_HAVE_AVX512_KERNELS || !SEGNET_HAVE_AVX2_KERNELS
// A kernel set this build does not compile (not x86, or below the build's baseline: simd.hpp):
// winograd_usable() is false, so the entry points are never called.
#define SEGNET_WG_ABSENT_ISA(NS)                                                                                        \
    namespace segnet::backend::cpu::NS {                                                                         \
    inline bool winograd_usable(const backend::ConvGeometry&) { return false; }                                  \
    inline void winograd_forward(const float*, const float*, const float*, float*, int,                         \
                                 const backend::ConvGeometry&, const float* = nullptr, bool = false) {}          \
    inline void winograd_backward_data(const float*, const float*, float*, int, const backend::ConvGeometry&) {} \
    }
#if !SEGNET_HAVE_AVX512_KERNELS
SEGNET_WG_ABSENT_ISA(avx512)
#endif
#if !SEGNET_HAVE_AVX2_KERNELS
SEGNET_WG_ABSENT_ISA(avx2)
#endif
#undef SEGNET_WG_ABSENT_ISA
#endif

namespace segnet::backend::cpu::winograd {

/// Whether the Winograd kernels run g on this CPU (AVX-512 or AVX2 + FMA).
inline bool usable(const ConvGeometry& g) { return avx512::winograd_usable(g) || avx2::winograd_usable(g); }

/// Whether conv.hpp's entry points take Winograd for g on a batch (FP32 only: the caller checks
/// the precision).
inline bool chosen(const ConvGeometry& g, int batch) {
    return mode() != Mode::off && usable(g) &&
           (mode() == Mode::on || faster_than_direct(g, batch, avx512::winograd_usable(g)));
}

/// avx512::winograd_forward where the CPU has AVX-512, else avx2::winograd_forward.
inline void conv2d_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                           const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
    if (avx512::winograd_usable(g)) return avx512::winograd_forward(x, w, bias, y, batch, g, weight_scale, relu);
    avx2::winograd_forward(x, w, bias, y, batch, g, weight_scale, relu);
}

/// avx512::winograd_backward_data where the CPU has AVX-512, else avx2::winograd_backward_data.
inline void conv2d_backward_data(const float* dy, const float* w, float* dx, int batch, const ConvGeometry& g) {
    if (avx512::winograd_usable(g)) return avx512::winograd_backward_data(dy, w, dx, batch, g);
    avx2::winograd_backward_data(dy, w, dx, batch, g);
}

}  // namespace segnet::backend::cpu::winograd
