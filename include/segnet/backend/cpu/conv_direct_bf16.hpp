// segnet/backend/cpu/conv_direct_bf16.hpp: the direct convolution (conv_direct.hpp) in bf16 with
// FP32 accumulation on AVX512-BF16 (vdpbf16ps), for Precision::bf16 (core/precision.hpp).
//
//   if (segnet::backend::cpu::avx512_bf16::wanted(g))   // Precision::bf16 asked for, BF16 units, geometry
//       segnet::backend::cpu::avx512_bf16::conv2d_forward(x, w, bias, y, n, g);   // same arguments as avx512::
//
// The same drivers and micro-kernels as the FP32 kernels (conv_direct_kernels.hpp, included a
// third time with the traits direct::Avx512Bf16), whose multiply-add is vdpbf16ps: per 32-bit
// lane, acc += a.lo * b.lo + a.hi * b.hi over two bf16 values. So the operands hold pairs:
//   forward, backward-data: the reduction runs over pairs of input channels. The band (built in
//     FP32 as for the FP32 kernels) is rounded to words [bf16 x[2p][j], bf16 x[2p + 1][j]] per
//     pixel j, and the packed weights to the matching [w[m][2p], w[m][2p + 1]]; an odd channel
//     count pads with a zero channel. Lanes stay output pixels and the register blocking is
//     AVX-512's (8 channels x 3 vectors): half the channel iterations of the FP32 kernel.
//   backward-filter: lanes are pixels; the input band and dy streams are rounded to bf16 and a
//     vector holds 32 pixels, so each lane sums the products of two adjacent stream positions
//     (the total over the stream is the same); streams are padded with zeros to whole vectors.
// Rounding is to nearest even (vcvtne2ps2bf16), as PyTorch rounds; the weights are scaled (eval
// fusion) before they are rounded; accumulators, bias, ReLU and outputs are FP32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "segnet/backend/cpu/conv_direct.hpp"
#include "segnet/core/precision.hpp"

namespace segnet::backend::cpu::direct {

/// The bf16 bits of v rounded to nearest even (NaN stays a quiet NaN): vcvtneps2bf16 in scalar
/// code, for checking the kernels.
inline std::uint32_t bf16_bits(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x40u;
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

/// v rounded to bf16 and back (what the bf16 kernels multiply).
inline float bf16_round(float v) {
    const std::uint32_t u = bf16_bits(v) << 16;
    float r;
    std::memcpy(&r, &u, sizeof r);
    return r;
}

#if SEGNET_HAVE_AVX512_KERNELS
/// The converted operands of the bf16 kernels, per thread (they only grow).
inline thread_local std::vector<std::uint32_t> band_pairs_buffer;
inline thread_local std::vector<std::uint16_t> bf16_stream_buffers[2];

/// out[i] = [bf16 first[i], bf16 second[i]] (low, high; second null: zero) for i < n.
SEGNET_AVX512_BF16_TARGET inline void pair_run(const float* first, const float* second, std::int64_t n,
                                               std::uint32_t* out) {
    // cvtne2ps puts the first run's 16 values in elements 0..15 and the second's in 16..31;
    // this permutation interleaves them into pairs.
    alignas(64) static constexpr std::uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                                 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26,
                                                                 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i order = _mm512_load_si512(interleave);
    for (std::int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
        const __m512 lo = _mm512_maskz_loadu_ps(m, first + i);
        const __m512 hi = second ? _mm512_maskz_loadu_ps(m, second + i) : _mm512_setzero_ps();
        const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        _mm512_mask_storeu_epi32(out + i, m, _mm512_permutexvar_epi16(order, both));
    }
}

/// out[p][i] = [bf16 band[2p][i], bf16 band[2p + 1][i]] (low, high; zero past channel c - 1) for
/// planes of `plane` floats.
SEGNET_AVX512_BF16_TARGET inline void pair_channels(const float* band, int c, std::int64_t plane,
                                                    std::uint32_t* out) {
    for (int p = 0; p < (c + 1) / 2; ++p) {
        const float* first = band + 2 * p * plane;
        pair_run(first, 2 * p + 1 < c ? first + plane : nullptr, plane, out + p * plane);
    }
}

/// out[i] = bf16 src[i] for i < n.
SEGNET_AVX512_BF16_TARGET inline void round_to_bf16(const float* src, std::int64_t n, std::uint16_t* out) {
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(out + i, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i)));
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(out + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

/// AVX512-BF16: AVX-512's vectors and register blocking; operands are bf16 pairs and the
/// multiply-add (fmadd on two integer vectors) is vdpbf16ps.
struct Avx512Bf16 : Avx512 {
    using elem = std::uint32_t;         // forward: a pair of channels' bf16 values (low: even channel)
    using stream_elem = std::uint16_t;  // backward-filter: one pixel's bf16 value
    static constexpr int channels_per_elem = 2, stream_elems_per_lane = 2;
    static bool available() { return simd::has_avx512_bf16(); }
    using Avx512::fmadd;
    using Avx512::loadu;
    using Avx512::set1;
    SEGNET_AVX512_BF16_TARGET static __m512i loadu(const std::uint32_t* p) { return _mm512_loadu_si512(p); }
    SEGNET_AVX512_BF16_TARGET static __m512i loadu(const std::uint16_t* p) { return _mm512_loadu_si512(p); }
    SEGNET_AVX512_BF16_TARGET static __m512i set1(std::uint32_t pair) { return _mm512_set1_epi32(int(pair)); }
    /// acc[i] + a.lo[i] b.lo[i] + a.hi[i] b.hi[i] per 32-bit lane i.
    SEGNET_AVX512_BF16_TARGET static vec fmadd(__m512i a, __m512i b, vec acc) {
        return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
    }
    /// The FP32 band (c planes of `plane` floats) as pairs of channels.
    static const elem* band_operand(const float* band, int c, std::int64_t plane) {
        elem* out = scratch(band_pairs_buffer, (c + 1) / 2 * plane + 16);
        pair_channels(band, c, plane, out);
        std::memset(out + (c + 1) / 2 * plane, 0, 16 * sizeof(elem));  // read past the band, as in FP32
        return out;
    }
    /// An FP32 stream rounded to bf16 (`which`: 0 the input band, 1 dy: both are in use at once).
    static const stream_elem* stream_operand(const float* stream, std::int64_t n, int which) {
        stream_elem* out = scratch(bf16_stream_buffers[which], n);
        round_to_bf16(stream, n, out);
        return out;
    }
    /// pack_weights over pairs of input channels: [bf16 get(o, 2p, ky, kx), bf16 get(o, 2p + 1,
    /// ky, kx)] per element. Packed in FP32 first, then each block of output channels paired as
    /// a band is ([i][ky][kx][m] -> [p][ky][kx][m]): a scalar conversion per weight took almost half
    /// of a 512 x 512 x 3 x 3 backward-data at 23 x 30 (perf, one Zen 5 core).
    template <class Get>
    static void pack_weights(int mr_max, int out_c, int in_c, int k, Get get, elem* dst) {
        const std::int64_t kk = std::int64_t(k) * k;
        float* fp32 = scratch(packed_buffer<float>, std::int64_t(out_c) * in_c * kk);
        direct::pack_weights(mr_max, out_c, in_c, k, get, fp32);
        parallel_for(0, (out_c + mr_max - 1) / mr_max, [&](std::int64_t b, std::int64_t e, int) {
            for (std::int64_t block = b; block < e; ++block) {
                const std::int64_t o0 = block * mr_max, mr = std::min<std::int64_t>(mr_max, out_c - o0);
                pair_channels(fp32 + o0 * in_c * kk, in_c, kk * mr, dst + o0 * ((in_c + 1) / 2) * kk);
            }
        });
    }
};
#endif

}  // namespace segnet::backend::cpu::direct

#if SEGNET_HAVE_AVX512_KERNELS
#define SEGNET_DC_NS avx512_bf16
#define SEGNET_DC_ISA Avx512Bf16
#define SEGNET_DC_TARGET SEGNET_AVX512_BF16_TARGET
#include "segnet/backend/cpu/conv_direct_kernels.hpp"
#undef SEGNET_DC_NS
#undef SEGNET_DC_ISA
#undef SEGNET_DC_TARGET
#else
SEGNET_DC_ABSENT_ISA(avx512_bf16)
#endif

namespace segnet::backend::cpu::avx512_bf16 {
/// Whether the dispatching entry points (conv.hpp) run g on these kernels: Precision::bf16 asked
/// for on this thread, a CPU with AVX512-BF16 (and SEGNET_CONV allowing AVX-512), a direct
/// geometry, and no AMX. On CPUs with AMX (Intel), vdpbf16ps issues at half the rate of FP32 FMAs
/// and these kernels ran 1.5-2x slower than the FP32 ones (conv-bench, docs/performance.md 7.4):
/// there the layers AMX does not take (fewer than 16 channels) run FP32.
inline bool wanted(const backend::ConvGeometry& g) {
    return compute_precision() == Precision::bf16 && usable(g) && !simd::has_amx_bf16();
}
}  // namespace segnet::backend::cpu::avx512_bf16
