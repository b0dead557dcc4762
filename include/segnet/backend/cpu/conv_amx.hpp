// segnet/backend/cpu/conv_amx.hpp: the stride-1 same-size convolutions (forward, backward-data,
// backward-filter) in bf16 with FP32 accumulation on AMX tiles (Intel Sapphire Rapids and later),
// for Precision::bf16 (core/precision.hpp); conv.hpp prefers them to the AVX512-BF16 kernels
// (conv_direct_bf16.hpp) where the CPU has AMX-BF16.
//
//   if (segnet::backend::cpu::amx::wanted(g))   // Precision::bf16 asked for, AMX granted, geometry
//       segnet::backend::cpu::amx::conv2d_forward(x, w, bias, y, n, g, bn_scale, relu);
//
// A tile multiply (TDPBF16PS) adds a 16 x 32 bf16 matrix times a 32 x 16 one (stored as 16 rows of
// 16 pairs) to a 16 x 16 FP32 tile: 8192 multiply-adds per instruction. The convolutions become
// such products without im2col, because an image is kept as padded planes whose rows are wp = w +
// k - 1 values apart and the output positions are counted with the same pitch (q = y * wp + x;
// positions with x >= w are computed and dropped): the input a tap (ky, kx) pairs with output q is
// then at q + ky * wp + kx for every q, so one tap's operand for 16 consecutive positions is 16
// consecutive values of every plane, at one stride.
//   forward:         tile[o][q] += w(o, c, ky, kx) x[c][q + ky wp + kx] over 32 channels per step:
//                    A the packed weights (16 output channels x 32 input channels of one tap), B
//                    the input as pairs of channels ([c / 2][position] words [x[2p], x[2p + 1]],
//                    the AVX512-BF16 kernels' pairs), 16 positions per row. Each step multiplies
//                    2 x 2 tiles (32 output channels x 32 positions) from 2 + 2 loads. The output
//                    tile rows are output channels: stored as NCHW rows, with bias and ReLU.
//   backward-data:   the forward on dy with the weights transposed and flipped (stride 1, same
//                    padding), as in conv_direct.hpp.
//   backward-filter: tile[o][c] += dy[o][u - s] x[c][u] over 32 padded positions u per step, for
//                    the tap's shift s = ky wp + kx: A the output gradient (bf16 rows with zeros
//                    around them, so any shift is one unaligned load), B the input transposed to
//                    [u / 2][c] pairs of positions. Positions are swept in chunks that stay in the
//                    L2 cache; every (tap, 32 output channels) item owns its accumulator tiles.
// Channel counts are padded with zeros to the tiles (32 input channels per step, 32 output
// channels per block), so layers with fewer than 16 channels stay on the AVX512-BF16 kernels.
// Rounding to bf16 is to nearest even, as there; accumulators, bias, ReLU and outputs are FP32.
// Linux must grant the process the AMX tile state (simd::has_amx_bf16 asks); each worker loads
// the tile configuration before its tiles and releases them after.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if __has_include(<sys/mman.h>)
#include <sys/mman.h>
#endif

#include "segnet/backend/cpu/conv_direct_bf16.hpp"
#include "segnet/core/precision.hpp"

namespace segnet::backend::cpu::amx {

/// Whether the AMX kernels run g on this CPU: AMX-BF16 granted, a direct geometry (stride 1,
/// same size), no dilation (its band layout assumes adjacent taps), at least 16 input and
/// output channels (fewer would mostly multiply padding).
inline bool usable(const ConvGeometry& g) {
    return simd::has_amx_bf16() && direct::supports(g) && g.dilation == 1 && g.in_c >= 16 && g.out_c >= 16;
}

/// Whether the dispatching entry points (conv.hpp) run g on AMX: Precision::bf16 asked for on this
/// thread and usable(g).
inline bool wanted(const ConvGeometry& g) { return compute_precision() == Precision::bf16 && usable(g); }

#if SEGNET_HAVE_AMX_KERNELS

using direct::round_up;

/// One image's padded planes: rows wp = w + k - 1 apart, output positions q = y * wp + x in
/// [0, positions), rounded up to whole pairs of tiles; `plane` values per plane cover the padded
/// image and every read past it.
struct Planes {
    int k, pad, h, w, wp;
    std::int64_t positions, positions_rounded, plane;
    Planes(int k_, int h_, int w_) : k(k_), pad((k_ - 1) / 2), h(h_), w(w_), wp(w_ + k_ - 1) {
        positions = std::int64_t(h) * wp;
        positions_rounded = round_up(positions, 32);
        plane = round_up(positions_rounded + std::int64_t(k - 1) * (wp + 1), 32);
    }
};

struct alignas(64) TileConfig {
    std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
    std::uint16_t bytes_per_row[16] = {};
    std::uint8_t rows[16] = {};
};

/// Configures tiles 0..7 as 16 rows of 64 bytes on this thread.
SEGNET_AMX_TARGET inline void configure_tiles() {
    static const TileConfig config = [] {
        TileConfig c;
        for (int t = 0; t < 8; ++t) c.rows[t] = 16, c.bytes_per_row[t] = 64;
        return c;
    }();
    _tile_loadconfig(&config);
}

/// Releases this thread's tiles (their state no longer needs saving).
SEGNET_AMX_TARGET inline void release_tiles() { _tile_release(); }

/// Scratch that only grows, in 2 MB pages where the OS gives them (madvise; transparent huge pages
/// in "madvise" mode, Debian's default): a tile load reads 16 rows up to a plane apart, each in
/// its own 4 KB page otherwise, and the TLB misses cost more than the loads.
template <class T>
class HugePageScratch {
public:
    HugePageScratch() = default;
    HugePageScratch(const HugePageScratch&) = delete;
    HugePageScratch& operator=(const HugePageScratch&) = delete;
    ~HugePageScratch() { std::free(data_); }
    /// Room for n values (contents undefined after growing).
    T* get(std::int64_t n) {
        constexpr std::size_t page = std::size_t(2) << 20;
        const std::size_t need = (std::size_t(n) * sizeof(T) + page - 1) / page * page;
        if (need > bytes_) {
            std::free(data_);
            data_ = static_cast<T*>(std::aligned_alloc(page, need));
            bytes_ = data_ ? need : 0;
            if (!data_) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
            madvise(data_, need, MADV_HUGEPAGE);
#endif
        }
        return data_;
    }

private:
    T* data_ = nullptr;
    std::size_t bytes_ = 0;
};

/// The kernels' operands: per calling thread (the workers share them), they only grow.
inline thread_local HugePageScratch<std::uint32_t> input_operand_buffer;
inline thread_local HugePageScratch<std::uint16_t> packed_weight_buffer, gradient_operand_buffer;
inline thread_local HugePageScratch<std::uint16_t> rounded_input_buffer;
inline thread_local HugePageScratch<float> filter_accumulator_buffer;

/// out[p][.] = the padded plane of pairs of channels [x[2p], x[2p + 1]] of one image (c planes of
/// h x w), for p < pairs (zero past channel c - 1).
inline void pair_planes(const float* x, int c, int pairs, const Planes& s, std::uint32_t* out) {
    const std::int64_t hw = std::int64_t(s.h) * s.w;
    parallel_for(0, pairs, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t p = b; p < e; ++p) {
            std::uint32_t* d = out + p * s.plane;
            if (2 * p >= c) {
                std::memset(d, 0, sizeof(std::uint32_t) * std::size_t(s.plane));
                continue;
            }
            const float* first = x + 2 * p * hw;
            const float* second = 2 * p + 1 < c ? first + hw : nullptr;
            const std::int64_t top = std::int64_t(s.pad) * s.wp;
            std::memset(d, 0, sizeof(std::uint32_t) * std::size_t(top + s.pad));
            for (int y = 0; y < s.h; ++y) {
                std::uint32_t* row = d + top + std::int64_t(y) * s.wp + s.pad;
                direct::pair_run(first + std::int64_t(y) * s.w, second ? second + std::int64_t(y) * s.w : nullptr, s.w, row);
                std::memset(row + s.w, 0, sizeof(std::uint32_t) * std::size_t(s.wp - s.w));  // right pad + next left pad
            }
            const std::int64_t used = top + std::int64_t(s.h) * s.wp + s.pad;
            std::memset(d + used, 0, sizeof(std::uint32_t) * std::size_t(s.plane - used));
        }
    });
}

/// The weights of the convolution the kernels compute, read from an OIHW array: w(o, c, tap) =
/// w[o * o_stride + c * c_stride + (flip ? kk - 1 - tap : tap)] * scale[o] (scale null: 1). The
/// forward reads the weights as they are, backward-data transposed and flipped.
struct WeightView {
    const float* w;
    std::int64_t o_stride, c_stride;
    bool flip;
    const float* scale;
};

/// The forward's A operands: for each block of 16 output channels ob (out_c padded to 32), each
/// block of 32 input channels cb and each tap, a 16 x 32 bf16 tile [o][c] of v(o, c, tap), zero
/// past out_c and in_c; tiles in that order, 512 values each. Each row is two gathers.
SEGNET_AVX512_BF16_TARGET inline void pack_weight_block(int ob, int out_c, int in_c, int k, const WeightView& v,
                                                        std::uint16_t* dst) {
    const int in_blocks = int(round_up(in_c, 32) / 32), kk = k * k;
    const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(int(v.c_stride)));
    for (int ol = 0; ol < 16; ++ol) {
        const int o = ob * 16 + ol;
        std::uint16_t* row = dst + std::int64_t(ob) * in_blocks * kk * 512 + ol * 32;
        const __m512 scale = _mm512_set1_ps(o < out_c && v.scale ? v.scale[o] : 1.f);
        for (int cb = 0; cb < in_blocks; ++cb) {
            const int left = o < out_c ? std::clamp(in_c - cb * 32, 0, 32) : 0;
            const __mmask16 lo = __mmask16((1u << std::min(left, 16)) - 1);
            const __mmask16 hi = __mmask16((1u << std::max(left - 16, 0)) - 1);
            const float* base = v.w + std::int64_t(std::min(o, out_c - 1)) * v.o_stride + std::int64_t(cb) * 32 * v.c_stride;
            for (int tap = 0; tap < kk; ++tap, row += 512) {
                const float* at = base + (v.flip ? kk - 1 - tap : tap);
                const __m512 first = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lo, lanes, at, 4);
                const __m512 second = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), hi, lanes, at + 16 * v.c_stride, 4);
                _mm512_storeu_si512(row, (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(second, scale), _mm512_mul_ps(first, scale)));
            }
        }
    }
}
inline void pack_weights(int out_c, int in_c, int k, const WeightView& v, std::uint16_t* dst) {
    parallel_for(0, round_up(out_c, 32) / 16, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ob = b; ob < e; ++ob) pack_weight_block(int(ob), out_c, in_c, k, v, dst);
    });
}

/// Accumulator tiles 0..3 += the 2 x 2 products of A tiles (a0, a1; rows a_stride bytes apart)
/// and B tiles (b0, b1; rows b_stride bytes apart): 0 += a0 b0, 1 += a0 b1, 2 += a1 b0, 3 += a1 b1.
SEGNET_AMX_TARGET inline void multiply_2x2(const void* a0, const void* a1, long a_stride, const void* b0,
                                           const void* b1, long b_stride) {
    _tile_loadd(4, a0, a_stride);
    _tile_loadd(5, a1, a_stride);
    _tile_loadd(6, b0, b_stride);
    _tile_loadd(7, b1, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

/// Stores accumulator tiles 0..3 at t0..t3 (rows `stride` bytes apart).
SEGNET_AMX_TARGET inline void store_2x2(float* t0, float* t1, float* t2, float* t3, long stride) {
    _tile_stored(0, t0, stride);
    _tile_stored(1, t1, stride);
    _tile_stored(2, t2, stride);
    _tile_stored(3, t3, stride);
}

/// out[32][32] = the products for output channels [32 op, 32 op + 32) (a0, a1: their two blocks'
/// packed tiles) and the 32 positions from q (b: the pairs planes at q).
SEGNET_AMX_TARGET inline void forward_tiles(const std::uint16_t* a0, const std::uint16_t* a1, const std::uint32_t* b,
                                            const Planes& s, int in_blocks, float* out) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const long b_stride = long(s.plane) * 4;
    for (int cb = 0; cb < in_blocks; ++cb)
        for (int ky = 0; ky < s.k; ++ky) {
            const std::uint32_t* row = b + std::int64_t(cb) * 16 * s.plane + std::int64_t(ky) * s.wp;
            for (int kx = 0; kx < s.k; ++kx, a0 += 512, a1 += 512) {
                multiply_2x2(a0, a1, 64, row + kx, row + kx + 16, b_stride);
            }
        }
    store_2x2(out, out + 16, out + 512, out + 528, 128);
}

/// Writes the rows of out[32][32] (output channels o0.., positions q0..q0 + 31) that are output
/// channels below out_c and positions inside the image to y (one image), plus bias, ReLU.
SEGNET_AVX512_BF16_TARGET inline void store_outputs(const float* out, int o0, int out_c, std::int64_t q0,
                                                    const Planes& s, const float* bias, bool relu, float* y) {
    struct Run {
        int from, length;
        std::int64_t at;
    };
    Run runs[32];
    int n = 0;
    for (int j = 0; j < 32;) {
        const std::int64_t q = q0 + j;
        if (q >= s.positions) break;
        const int x = int(q % s.wp);
        if (x >= s.w) {
            j += s.wp - x;
            continue;
        }
        const int length = std::min(32 - j, s.w - x);
        runs[n++] = {j, length, (q / s.wp) * s.w + x};
        j += length;
    }
    const std::int64_t hw = std::int64_t(s.h) * s.w;
    for (int ol = 0; ol < 32 && o0 + ol < out_c; ++ol) {
        const __m512 b = _mm512_set1_ps(bias ? bias[o0 + ol] : 0.f);
        __m512 v0 = _mm512_add_ps(_mm512_loadu_ps(out + ol * 32), b);
        __m512 v1 = _mm512_add_ps(_mm512_loadu_ps(out + ol * 32 + 16), b);
        if (relu) {  // masked max: the plain one starts from _mm512_undefined (a GCC 12 warning)
            v0 = _mm512_maskz_max_ps(0xFFFF, v0, _mm512_setzero_ps());
            v1 = _mm512_maskz_max_ps(0xFFFF, v1, _mm512_setzero_ps());
        }
        // Each run straight from the registers: position j of the block goes to base + j, where
        // base = yo + at - from; masked-off lanes are not touched.
        float* yo = y + std::int64_t(o0 + ol) * hw;
        for (int r = 0; r < n; ++r) {
            const std::uint32_t lanes = std::uint32_t((std::uint64_t(1) << runs[r].length) - 1) << runs[r].from;
            const std::uintptr_t base =
                reinterpret_cast<std::uintptr_t>(yo + runs[r].at) - std::uintptr_t(runs[r].from) * sizeof(float);
            _mm512_mask_storeu_ps(reinterpret_cast<float*>(base), __mmask16(lanes & 0xFFFF), v0);
            _mm512_mask_storeu_ps(reinterpret_cast<float*>(base + 16 * sizeof(float)), __mmask16(lanes >> 16), v1);
        }
    }
}

/// y = conv(x, w) (+ bias, max(., 0) when relu) for every image, for the weights `weights` of an
/// in_c -> out_c, k x k, stride-1 same-size convolution on h x w planes.
inline void forward(const float* x, const WeightView& weights, const float* bias, float* y, int batch, int in_c,
                    int out_c, int h, int w, int k, bool relu) {
    const Planes s(k, h, w);
    const int in_blocks = int(round_up(in_c, 32) / 32), out_pairs = int(round_up(out_c, 32) / 32), kk = k * k;
    std::uint16_t* packed = packed_weight_buffer.get(std::int64_t(out_pairs) * 2 * in_blocks * kk * 512);
    pack_weights(out_c, in_c, k, weights, packed);
    std::uint32_t* pairs = input_operand_buffer.get(std::int64_t(in_blocks) * 16 * s.plane);
    const std::int64_t q_blocks = s.positions_rounded / 32;
    // Work items: (chunk of positions, group of 32-channel output blocks), enough of them to
    // balance the threads; a chunk's operands stay in L2 while every block of the group runs.
    const std::int64_t chunk = std::clamp<std::int64_t>(q_blocks / (4 * num_threads()), 1, 8);
    const std::int64_t chunks = (q_blocks + chunk - 1) / chunk;
    const int groups = int(std::clamp<std::int64_t>((4 * num_threads() + chunks - 1) / chunks, 1, out_pairs));
    const int per_group = (out_pairs + groups - 1) / groups;
    const std::int64_t block_stride = std::int64_t(in_blocks) * kk * 512;
    for (int n = 0; n < batch; ++n) {
        pair_planes(x + std::int64_t(n) * in_c * h * w, in_c, in_blocks * 16, s, pairs);
        float* yn = y + std::int64_t(n) * out_c * h * w;
        parallel_for(0, chunks * groups, [&](std::int64_t b, std::int64_t e, int) {
            configure_tiles();
            alignas(64) float out[32 * 32];
            for (std::int64_t item = b; item < e; ++item) {
                const std::int64_t c0 = (item / groups) * chunk, c1 = std::min(q_blocks, c0 + chunk);
                const int g0 = int(item % groups) * per_group, g1 = std::min(out_pairs, g0 + per_group);
                for (int op = g0; op < g1; ++op)
                    for (std::int64_t qb = c0; qb < c1; ++qb) {
                        forward_tiles(packed + 2 * op * block_stride, packed + (2 * op + 1) * block_stride,
                                      pairs + qb * 32, s, in_blocks, out);
                        store_outputs(out, 32 * op, out_c, qb * 32, s, bias, relu, yn);
                    }
            }
            release_tiles();
        });
    }
}

/// The padded bf16 planes of one image's output gradient, laid out for backward_filter_tiles:
/// out[o][lead + q] = bf16 dy[o][y][x] at q = y * wp + x (x < w), zero elsewhere, rows `row`
/// values apart, for o < rows_total (zero past out_c).
inline void gradient_rows(const float* dy, int out_c, int rows_total, const Planes& s, std::int64_t lead,
                          std::int64_t row, std::uint16_t* out) {
    const std::int64_t hw = std::int64_t(s.h) * s.w;
    parallel_for(0, rows_total, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t o = b; o < e; ++o) {
            std::uint16_t* d = out + o * row;
            std::memset(d, 0, sizeof(std::uint16_t) * std::size_t(row));
            if (o >= out_c) continue;
            for (int y = 0; y < s.h; ++y)
                direct::round_to_bf16(dy + o * hw + std::int64_t(y) * s.w, s.w, d + lead + std::int64_t(y) * s.wp);
        }
    });
}

/// out[j * channels + i] = the 32-bit pair r0 + j of bf16 plane i, for i, j < 16 (planes `plane`
/// values apart): a 16 x 16 transpose of 32-bit elements in 4 rounds of unpack / shuffle.
SEGNET_AVX512_BF16_TARGET inline void transpose_pairs(const std::uint16_t* planes, std::int64_t plane, std::int64_t r0,
                                                      int channels, std::uint32_t* out) {
    // The masked forms (all lanes) because the plain ones start from _mm512_undefined, which
    // GCC 12 reports as uninitialised here.
    const __mmask16 all16 = 0xFFFF;
    const __mmask8 all8 = 0xFF;
    __m512i v[16];
    for (int i = 0; i < 16; ++i)
        v[i] = _mm512_loadu_si512(reinterpret_cast<const std::uint32_t*>(planes + i * plane) + r0);
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_maskz_unpacklo_epi32(all16, v[i], v[i + 1]);
        t[i + 1] = _mm512_maskz_unpackhi_epi32(all16, v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_maskz_unpacklo_epi64(all8, t[i], t[i + 2]);
        v[i + 1] = _mm512_maskz_unpackhi_epi64(all8, t[i], t[i + 2]);
        v[i + 2] = _mm512_maskz_unpacklo_epi64(all8, t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_maskz_unpackhi_epi64(all8, t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; ++i) {
        t[i] = _mm512_maskz_shuffle_i32x4(all16, v[i], v[i + 4], 0x88);
        t[i + 4] = _mm512_maskz_shuffle_i32x4(all16, v[i + 8], v[i + 12], 0x88);
        t[i + 8] = _mm512_maskz_shuffle_i32x4(all16, v[i], v[i + 4], 0xDD);
        t[i + 12] = _mm512_maskz_shuffle_i32x4(all16, v[i + 8], v[i + 12], 0xDD);
    }
    for (int i = 0; i < 4; ++i) {
        v[i] = _mm512_maskz_shuffle_i32x4(all16, t[i], t[i + 4], 0x88);
        v[i + 8] = _mm512_maskz_shuffle_i32x4(all16, t[i], t[i + 4], 0xDD);
        v[i + 4] = _mm512_maskz_shuffle_i32x4(all16, t[i + 8], t[i + 12], 0x88);
        v[i + 12] = _mm512_maskz_shuffle_i32x4(all16, t[i + 8], t[i + 12], 0xDD);
    }
    // v[j] is now column j: pair r0 + j of the 16 planes.
    for (int j = 0; j < 16; ++j) _mm512_storeu_si512(out + j * channels, v[j]);
}

/// The padded input of one image transposed to pairs of positions: out[u / 2][c] = [bf16
/// x_padded[c][u], bf16 x_padded[c][u + 1]] for c < channels (a multiple of 16; zero past in_c).
inline void position_pairs(const float* x, int in_c, int channels, const Planes& s, std::uint32_t* out) {
    // Each channel's padded plane in bf16 first, then 16 x 16 transposes of 32-bit pairs.
    std::uint16_t* planes = rounded_input_buffer.get(std::int64_t(channels) * s.plane);
    const std::int64_t hw = std::int64_t(s.h) * s.w;
    parallel_for(0, channels, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t c = b; c < e; ++c) {
            std::uint16_t* d = planes + c * s.plane;
            std::memset(d, 0, sizeof(std::uint16_t) * std::size_t(s.plane));
            if (c >= in_c) continue;
            for (int y = 0; y < s.h; ++y)
                direct::round_to_bf16(x + c * hw + std::int64_t(y) * s.w, s.w,
                                      d + std::int64_t(y + s.pad) * s.wp + s.pad);
        }
    });
    const std::int64_t pair_rows = s.plane / 2, row_blocks = pair_rows / 16;
    parallel_for(0, row_blocks * (channels / 16), [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t item = b; item < e; ++item) {
            const std::int64_t r0 = (item % row_blocks) * 16, c0 = (item / row_blocks) * 16;
            transpose_pairs(planes + c0 * s.plane, s.plane, r0, channels, out + r0 * channels + c0);
        }
    });
}

/// The accumulator tiles of 32 output channels (a: the gradient rows at o0 and the shifted
/// position) x 32 input channels (b: the position pairs at c0) += the products over `steps`
/// steps of 32 positions; acc: four 16 x 16 tiles [o block][c block].
SEGNET_AMX_TARGET inline void backward_filter_tiles(const std::uint16_t* a, std::int64_t a_row,
                                                    const std::uint32_t* b, int channels, std::int64_t steps,
                                                    float* acc) {
    _tile_loadd(0, acc, 64);
    _tile_loadd(1, acc + 256, 64);
    _tile_loadd(2, acc + 512, 64);
    _tile_loadd(3, acc + 768, 64);
    const long a_stride = long(a_row) * 2, b_stride = long(channels) * 4;
    const std::uint16_t* a1 = a + 16 * a_row;
    for (std::int64_t step = 0; step < steps; ++step, a += 32, a1 += 32, b += 16 * std::int64_t(channels))
        multiply_2x2(a, a1, a_stride, b, b + 16, b_stride);
    store_2x2(acc, acc + 256, acc + 512, acc + 768, 64);
}

#endif  // SEGNET_HAVE_AMX_KERNELS

/// y = conv(x, w * weight_scale) (+ bias when bias != nullptr), max(., 0) when relu; y is
/// overwritten. Requires usable(g).
inline void conv2d_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                           const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
#if SEGNET_HAVE_AMX_KERNELS
    const std::int64_t kk = std::int64_t(g.k) * g.k;
    forward(x, {w, g.in_c * kk, kk, false, weight_scale}, bias, y, batch, g.in_c, g.out_c, g.in_h, g.in_w, g.k, relu);
#else
    (void)x, (void)w, (void)bias, (void)y, (void)batch, (void)g, (void)weight_scale, (void)relu;
#endif
}

/// dx = d(sum dy * conv(x, w)) / dx; dx is overwritten. Requires usable(g).
inline void conv2d_backward_data(const float* dy, const float* w, float* dx, int batch, const ConvGeometry& g) {
#if SEGNET_HAVE_AMX_KERNELS
    const std::int64_t kk = std::int64_t(g.k) * g.k;
    // The forward of the transposed, flipped kernel: dy's out_c channels in, dx's in_c out.
    forward(dy, {w, kk, g.in_c * kk, true, nullptr}, nullptr, dx, batch, g.out_c, g.in_c, g.in_h, g.in_w, g.k, false);
#else
    (void)dy, (void)w, (void)dx, (void)batch, (void)g;
#endif
}

/// dw += d(sum dy * conv(x, w)) / dw. Requires usable(g).
inline void conv2d_backward_filter(const float* x, const float* dy, float* dw, int batch, const ConvGeometry& g) {
#if SEGNET_HAVE_AMX_KERNELS
    const Planes s(g.k, g.in_h, g.in_w);
    const int k = g.k, kk = k * k, in_c = g.in_c, out_c = g.out_c;
    const int channels = int(round_up(in_c, 32)), out_rows = int(round_up(out_c, 32));
    const int in_pairs = channels / 32, out_pairs = out_rows / 32;
    const std::int64_t lead = round_up(std::int64_t(k - 1) * (s.wp + 1), 32);
    const std::int64_t row = lead + s.plane + 32;
    std::uint16_t* grad = gradient_operand_buffer.get(std::int64_t(out_rows) * row);
    std::uint32_t* positions = input_operand_buffer.get(s.plane / 2 * channels);
    const std::int64_t tile_sets = std::int64_t(kk) * out_pairs * in_pairs;
    float* acc = filter_accumulator_buffer.get(tile_sets * 1024);
    std::memset(acc, 0, sizeof(float) * std::size_t(tile_sets * 1024));
    // Only the positions of image rows carry input; they are swept in chunks.
    const std::int64_t u0 = std::int64_t(s.pad) * s.wp / 32 * 32;
    const std::int64_t u1 = round_up(std::int64_t(s.pad + s.h) * s.wp, 32);
    // Positions per chunk: the chunk's input pairs (chunk / 2 x channels words) about 512 KB, so
    // that they stay in L2 while every item reads them; larger chunks also mean fewer parallel
    // sweeps. 64 x 64 x 7 x 7 at 360 x 480 (2 threads): 1024 positions 68 ms, 4096 52 ms; 512
    // channels at 45 x 60: 1024 11 ms, 4096 14 ms.
    const std::int64_t chunk = std::clamp<std::int64_t>((std::int64_t(1) << 18) / channels / 32 * 32, 512, 4096);
    const std::int64_t hw = std::int64_t(s.h) * s.w;
    for (int n = 0; n < batch; ++n) {
        gradient_rows(dy + std::int64_t(n) * out_c * hw, out_c, out_rows, s, lead, row, grad);
        position_pairs(x + std::int64_t(n) * in_c * hw, in_c, channels, s, positions);
        for (std::int64_t c0 = u0; c0 < u1; c0 += chunk) {
            const std::int64_t steps = (std::min(u1, c0 + chunk) - c0) / 32;
            parallel_for(0, std::int64_t(kk) * out_pairs, [&](std::int64_t b, std::int64_t e, int) {
                configure_tiles();
                for (std::int64_t item = b; item < e; ++item) {
                    const int tap = int(item / out_pairs), op = int(item % out_pairs);
                    const std::int64_t shift = std::int64_t(tap / k) * s.wp + tap % k;
                    const std::uint16_t* a = grad + std::int64_t(op) * 32 * row + lead + c0 - shift;
                    for (int cp = 0; cp < in_pairs; ++cp)
                        backward_filter_tiles(a, row, positions + c0 / 2 * channels + cp * 32, channels, steps,
                                              acc + ((std::int64_t(tap) * out_pairs + op) * in_pairs + cp) * 1024);
                }
                release_tiles();
            });
        }
    }
    // dw[o][c][ky][kx] += the tiles: tile (o block ob % 2, c block cb % 2) of set (tap, op, cp).
    parallel_for(0, out_c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t o = b; o < e; ++o)
            for (int c = 0; c < in_c; ++c)
                for (int tap = 0; tap < kk; ++tap) {
                    const std::int64_t set = (std::int64_t(tap) * out_pairs + o / 32) * in_pairs + c / 32;
                    const float v = acc[set * 1024 + ((o % 32) / 16 * 2 + (c % 32) / 16) * 256 + (o % 16) * 16 + c % 16];
                    dw[(o * in_c + c) * kk + tap] += v;
                }
    });
#else
    (void)x, (void)dy, (void)dw, (void)batch, (void)g;
#endif
}

}  // namespace segnet::backend::cpu::amx
