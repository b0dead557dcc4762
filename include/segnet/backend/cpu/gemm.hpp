// segnet/backend/cpu/gemm.hpp: a portable single-threaded float GEMM for the im2col
// convolution path (conv.hpp), written in GCC/Clang vector extensions so that it compiles to
// the widest vectors the build targets (AVX-512, AVX2, SSE, NEON) without intrinsics.
//
//   segnet::backend::cpu::gemm(m, n, k, a, lda, b, ldb, /*b_transposed*/ false, c, ldc, /*accumulate*/ false);
//       // C[m x n] = A[m x k] * B[k x n]; all row-major with leading dimensions lda, ldb, ldc
//   segnet::backend::cpu::gemm(m, n, k, a, lda, bt, ldb, true, c, ldc, true);
//       // C += A * B where B is given transposed (bt[n x k], row j of bt is column j of B)
//
// The GotoBLAS structure, small: B is packed in panels of NR columns for a block of KC rows of
// the reduction, A in panels of MR rows, and a micro-kernel keeps an MR x NR block of C in
// registers (MR x 2 vectors) while it walks the KC reduction. Edge blocks are computed whole on
// zero-padded panels and stored through a small buffer. The callers parallelise over tiles of
// pixels, so this routine is single-threaded; its packing buffers are per thread and only grow.
// It replaced Eigen's GEMM, whose headers alone doubled the compile time of every translation
// unit that includes the library; the direct kernels (conv_direct.hpp) do the heavy work on
// x86, this path serves the other geometries (strided and transposed convolutions, groups), the
// CPUs without AVX2, and the tests as their reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace segnet::backend::cpu {

namespace gemm_detail {

// Vector width and rows per micro-kernel from the build's target: the accumulators (2 MR
// vectors), two B vectors and a broadcast must fit the register file.
#if defined(__AVX512F__)
inline constexpr int lanes = 16;
inline constexpr int MR = 8;  // 16 accumulators of 32 zmm
#elif defined(__AVX__)
inline constexpr int lanes = 8;
inline constexpr int MR = 6;  // 12 accumulators + 3 of 16 ymm
#else
inline constexpr int lanes = 4;  // SSE, NEON
inline constexpr int MR = 6;
#endif
inline constexpr int NR = 2 * lanes;
inline constexpr std::int64_t KC = 256;   // a KC x NR panel of B stays in L1 while A streams
inline constexpr std::int64_t NC = 2048;  // a KC x NC block of packed B (2 MB) stays in L2 / L3

typedef float vec __attribute__((vector_size(lanes * sizeof(float))));
typedef float unaligned_vec __attribute__((vector_size(lanes * sizeof(float)), aligned(sizeof(float)), may_alias));

inline vec load(const float* p) { return *reinterpret_cast<const unaligned_vec*>(p); }
inline void store(float* p, vec v) { *reinterpret_cast<unaligned_vec*>(p) = v; }
template <std::size_t... I>
vec broadcast(float x, std::index_sequence<I...>) {
    return vec{((void)I, x)...};
}
inline vec broadcast(float x) { return broadcast(x, std::make_index_sequence<lanes>{}); }

/// ab[MR][NR] = sum over kc of a_panel[., MR] x b_panel[., NR] (both packed, kc-major).
inline void micro_kernel(std::int64_t kc, const float* a, const float* b, float* ab) {
    vec acc0[MR], acc1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = vec{};
    for (std::int64_t p = 0; p < kc; ++p) {
        const vec b0 = load(b), b1 = load(b + lanes);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
            const vec ai = broadcast(a[i]);
            acc0[i] += ai * b0;
            acc1[i] += ai * b1;
        }
        a += MR;
        b += NR;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
        store(ab + i * NR, acc0[i]);
        store(ab + i * NR + lanes, acc1[i]);
    }
}

/// Packs rows [0, mc) x reduction [0, kc) of A (row-major, lda) into MR-row panels, kc-major,
/// zero rows past mc.
inline void pack_a(std::int64_t mc, std::int64_t kc, const float* a, std::int64_t lda, float* out) {
    for (std::int64_t i0 = 0; i0 < mc; i0 += MR) {
        const std::int64_t rows = std::min<std::int64_t>(MR, mc - i0);
        for (std::int64_t p = 0; p < kc; ++p) {
            for (std::int64_t i = 0; i < rows; ++i) out[i] = a[(i0 + i) * lda + p];
            for (std::int64_t i = rows; i < MR; ++i) out[i] = 0.f;
            out += MR;
        }
    }
}

/// Packs reduction [0, kc) x columns [0, nc) of B into NR-column panels, kc-major, zero columns
/// past nc. B is row-major [k x n] (ldb), or given transposed ([n x k], ldb) when transposed.
inline void pack_b(std::int64_t kc, std::int64_t nc, const float* b, std::int64_t ldb, bool transposed, float* out) {
    for (std::int64_t j0 = 0; j0 < nc; j0 += NR) {
        const std::int64_t cols = std::min<std::int64_t>(NR, nc - j0);
        for (std::int64_t p = 0; p < kc; ++p) {
            if (!transposed) {
                std::copy_n(b + p * ldb + j0, cols, out);
            } else {
                for (std::int64_t j = 0; j < cols; ++j) out[j] = b[(j0 + j) * ldb + p];
            }
            std::fill(out + cols, out + NR, 0.f);
            out += NR;
        }
    }
}

inline thread_local std::vector<float> packed_a, packed_b;

}  // namespace gemm_detail

/// C[m x n] = A[m x k] * B (accumulate: C += A * B). Row-major with leading dimensions lda,
/// ldb, ldc; B is [k x n], or, when b_transposed, given as its transpose [n x k]. k == 0 leaves C
/// (accumulate) or zeroes it.
inline void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda, const float* b,
                 std::int64_t ldb, bool b_transposed, float* c, std::int64_t ldc, bool accumulate) {
    using namespace gemm_detail;
    if (m <= 0 || n <= 0) return;
    if (!accumulate)
        for (std::int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.f);
    if (k <= 0) return;
    const std::int64_t m_padded = (m + MR - 1) / MR * MR;
    if (std::int64_t(packed_a.size()) < m_padded * KC) packed_a.resize(std::size_t(m_padded * KC));
    const std::int64_t nc_max = std::min(NC, (n + NR - 1) / NR * NR);
    if (std::int64_t(packed_b.size()) < nc_max * KC) packed_b.resize(std::size_t(nc_max * KC));
    alignas(64) float ab[MR * NR];
    for (std::int64_t p0 = 0; p0 < k; p0 += KC) {
        const std::int64_t kc = std::min(KC, k - p0);
        pack_a(m, kc, a + p0, lda, packed_a.data());  // once per block of the reduction
        for (std::int64_t j0 = 0; j0 < n; j0 += NC) {
            const std::int64_t nc = std::min(NC, n - j0);
            const float* b_block = b_transposed ? b + j0 * ldb + p0 : b + p0 * ldb + j0;
            pack_b(kc, nc, b_block, ldb, b_transposed, packed_b.data());
            for (std::int64_t jr = 0; jr < nc; jr += NR) {
                const std::int64_t cols = std::min<std::int64_t>(NR, nc - jr);
                const float* bp = packed_b.data() + jr * kc;
                for (std::int64_t ir = 0; ir < m; ir += MR) {
                    const std::int64_t rows = std::min<std::int64_t>(MR, m - ir);
                    micro_kernel(kc, packed_a.data() + ir * kc, bp, ab);
                    float* cb = c + ir * ldc + j0 + jr;
                    for (std::int64_t i = 0; i < rows; ++i)
                        for (std::int64_t j = 0; j < cols; ++j) cb[i * ldc + j] += ab[i * NR + j];
                }
            }
        }
    }
}

}  // namespace segnet::backend::cpu
