// segnet/backend/cpu/pool.hpp: max pooling that keeps argmax indices, and the unpooling that
// uses them (SegNet's decoder upsampling).
//
//   segnet::backend::cpu::max_pool_forward(x, n, c, 45, 60, 2, y, 23, 30, indices);  // ceil rounding
//   segnet::backend::cpu::max_unpool_forward(y, indices, n, c, 23, 30, x_up, 45, 60); // back to 45x60
//
// Window = stride = k (SegNet's 2x2, stride 2). Output size ceil(h / k), as Caffe's ceil mode:
// a 45-row map pools to 23 rows, the last window holding one row. Indices are flat positions
// in the input plane (y * w + x), as PyTorch's return_indices. Ties go to the first maximum in
// row-major window order, as Caffe (a strictly greater value replaces the current maximum).
// Full 2x2 windows run 16 at a time with AVX-512 where the CPU has it, 8 at a time with AVX2
// (the same rule; SEGNET_CONV=im2col turns both off, as for the convolutions).
//
// Windowed and adaptive pooling (MaxPoolWindow, AvgPool, AdaptiveAvgPool) read the ranges of
// pool_geometry.hpp: window_max_pool_forward keeps the same indices and tie rule (its backward
// is max_pool_backward, which adds where windows overlap), average_pool_forward divides by the
// spans' counts. Both run separably (the column ranges of every row, then the row ranges),
// branch-free, one plane per task, written so that the compiler vectorises them across output
// columns (no intrinsics: the vector width is the build's target, -march=native by default,
// SEGNET_NATIVE): the row pass as it is, the column pass tap by tap over the outputs whose windows are
// whole and evenly spaced (uniform_run; the clipped border outputs go span by span). Max
// pooling's backward is a scatter through the indices (max_pool_backward) and stays scalar.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "segnet/backend/cpu/simd.hpp"
#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/backend/pool_geometry.hpp"

namespace segnet::backend::cpu {

namespace pool_detail {
#if SEGNET_HAVE_AVX512_KERNELS
/// The `full` complete 2x2 windows of one output row (input rows r0 and r0 + w), 16 at a time:
/// even and odd columns are separated with a permute, and the window is scanned in row-major
/// order keeping the first strictly greater value, exactly as the scalar loop (ties and NaNs).
SEGNET_AVX512_TARGET inline void max_pool2_row_avx512(const float* r0, int w, int full, std::int32_t base, float* y,
                                                      std::int32_t* idx) {
    const float* r1 = r0 + w;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512 neg_inf = _mm512_set1_ps(-__builtin_inff());
    for (int ox = 0; ox < full; ox += 16) {
        const int cnt = full - ox < 16 ? full - ox : 16;
        const __mmask16 m = __mmask16(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1);
        const int in = 2 * cnt;  // input columns read
        const __mmask16 mlo = __mmask16(in >= 16 ? 0xFFFFu : (1u << in) - 1);
        const __mmask16 mhi = __mmask16(in >= 32 ? 0xFFFFu : in > 16 ? (1u << (in - 16)) - 1 : 0u);
        const __m512 p0 = _mm512_maskz_loadu_ps(mlo, r0 + 2 * ox), p1 = _mm512_maskz_loadu_ps(mhi, r0 + 2 * ox + 16);
        const __m512 q0 = _mm512_maskz_loadu_ps(mlo, r1 + 2 * ox), q1 = _mm512_maskz_loadu_ps(mhi, r1 + 2 * ox + 16);
        const __m512 a = _mm512_permutex2var_ps(p0, even, p1), b = _mm512_permutex2var_ps(p0, odd, p1);
        const __m512 c = _mm512_permutex2var_ps(q0, even, q1), d = _mm512_permutex2var_ps(q0, odd, q1);
        const __m512i i0 = _mm512_add_epi32(_mm512_set1_epi32(base + 2 * ox), even);
        __m512 best = neg_inf, val = a;
        __m512i at = i0;
        __mmask16 g = _mm512_cmp_ps_mask(a, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, g, a);
        g = _mm512_cmp_ps_mask(b, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, g, b);
        val = _mm512_mask_mov_ps(val, g, b);
        at = _mm512_mask_mov_epi32(at, g, _mm512_add_epi32(i0, _mm512_set1_epi32(1)));
        g = _mm512_cmp_ps_mask(c, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, g, c);
        val = _mm512_mask_mov_ps(val, g, c);
        at = _mm512_mask_mov_epi32(at, g, _mm512_add_epi32(i0, _mm512_set1_epi32(w)));
        g = _mm512_cmp_ps_mask(d, best, _CMP_GT_OQ);
        val = _mm512_mask_mov_ps(val, g, d);
        at = _mm512_mask_mov_epi32(at, g, _mm512_add_epi32(i0, _mm512_set1_epi32(w + 1)));
        _mm512_mask_storeu_ps(y + ox, m, val);
        _mm512_mask_storeu_epi32(idx + ox, m, at);
    }
}
#else
inline void max_pool2_row_avx512(const float*, int, int, std::int32_t, float*, std::int32_t*) {}
#endif

#if SEGNET_HAVE_AVX2_KERNELS
/// The same for AVX2, 8 windows at a time; returns how many of the `full` windows it did (a
/// multiple of 8: the rest go to the scalar loop). Even and odd columns are separated by a
/// shuffle within 128-bit lanes and a cross-lane permute.
// (Helpers, not lambdas: a lambda does not inherit its enclosing function's target attribute.)
/// The even columns of two vectors of 8 consecutive columns, in order.
SEGNET_AVX2_TARGET inline __m256 even_columns_avx2(__m256 p0, __m256 p1) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0x88)), 0xD8));
}
/// The odd columns, likewise.
SEGNET_AVX2_TARGET inline __m256 odd_columns_avx2(__m256 p0, __m256 p1) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(p0, p1, 0xDD)), 0xD8));
}
/// b where m is set, else a (integer lanes).
SEGNET_AVX2_TARGET inline __m256i select_avx2(__m256i a, __m256i b, __m256 m) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
}
SEGNET_AVX2_TARGET inline int max_pool2_row_avx2(const float* r0, int w, int full, std::int32_t base, float* y,
                                                 std::int32_t* idx) {
    const float* r1 = r0 + w;
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256 neg_inf = _mm256_set1_ps(-__builtin_inff());
    int ox = 0;
    for (; ox + 8 <= full; ox += 8) {
        const __m256 p0 = _mm256_loadu_ps(r0 + 2 * ox), p1 = _mm256_loadu_ps(r0 + 2 * ox + 8);
        const __m256 q0 = _mm256_loadu_ps(r1 + 2 * ox), q1 = _mm256_loadu_ps(r1 + 2 * ox + 8);
        const __m256 a = even_columns_avx2(p0, p1), b = odd_columns_avx2(p0, p1);
        const __m256 c = even_columns_avx2(q0, q1), d = odd_columns_avx2(q0, q1);
        const __m256i i0 = _mm256_add_epi32(_mm256_set1_epi32(base + 2 * ox), even);
        __m256 g = _mm256_cmp_ps(a, neg_inf, _CMP_GT_OQ);
        __m256 best = _mm256_blendv_ps(neg_inf, a, g), val = a;
        __m256i at = i0;
        g = _mm256_cmp_ps(b, best, _CMP_GT_OQ);
        best = _mm256_blendv_ps(best, b, g);
        val = _mm256_blendv_ps(val, b, g);
        at = select_avx2(at, _mm256_add_epi32(i0, _mm256_set1_epi32(1)), g);
        g = _mm256_cmp_ps(c, best, _CMP_GT_OQ);
        best = _mm256_blendv_ps(best, c, g);
        val = _mm256_blendv_ps(val, c, g);
        at = select_avx2(at, _mm256_add_epi32(i0, _mm256_set1_epi32(w)), g);
        g = _mm256_cmp_ps(d, best, _CMP_GT_OQ);
        val = _mm256_blendv_ps(val, d, g);
        at = select_avx2(at, _mm256_add_epi32(i0, _mm256_set1_epi32(w + 1)), g);
        _mm256_storeu_ps(y + ox, val);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + ox), at);
    }
    return ox;
}
#else
inline int max_pool2_row_avx2(const float*, int, int, std::int32_t, float*, std::int32_t*) { return 0; }
#endif
}  // namespace pool_detail

/// Pooled rows [oy0, oy1) of one plane: `rows` points at input row oy0 * k of an h x w plane
/// (the rows up to min(h, oy1 * k) follow it, w floats apart), y and indices at the pooled plane
/// (ow wide, row oy at oy * ow). Indices are positions in the whole plane. max_pool_forward runs
/// it on whole planes, the convolution with a fused pooling (conv_direct.hpp) on the rows of a
/// band it has just computed.
inline void max_pool_rows(const float* rows, int h, int w, int k, int oy0, int oy1, float* y, std::int32_t* indices,
                          int ow) {
    const bool fast2 = k == 2 && simd::has_avx512();
    const bool fast2_avx2 = k == 2 && !fast2 && simd::has_avx2_fma();
    for (int oy = oy0; oy < oy1; ++oy) {
        const float* r0 = rows + std::int64_t(oy - oy0) * k * w;  // input row oy * k
        float* yr = y + std::int64_t(oy) * ow;
        std::int32_t* ir = indices + std::int64_t(oy) * ow;
        int ox = 0;
        if (fast2 && oy * 2 + 1 < h) {
            ox = w / 2;  // the full 2x2 windows of this row; an odd last column falls through
            pool_detail::max_pool2_row_avx512(r0, w, ox, oy * 2 * w, yr, ir);
        } else if (fast2_avx2 && oy * 2 + 1 < h) {
            ox = pool_detail::max_pool2_row_avx2(r0, w, w / 2, oy * 2 * w, yr, ir);
        }
        const int rows_here = std::min(k, h - oy * k);
        for (; ox < ow; ++ox) {
            const int x0 = ox * k, cols = std::min(k, w - x0);
            float best = -std::numeric_limits<float>::infinity();
            float value = r0[x0];  // a NaN-only window keeps its first cell
            std::int32_t at = (oy * k) * w + x0;
            for (int dy = 0; dy < rows_here; ++dy)
                for (int dx = 0; dx < cols; ++dx) {
                    const float v = r0[std::int64_t(dy) * w + x0 + dx];
                    if (v > best) {
                        best = v;
                        value = v;
                        at = (oy * k + dy) * w + x0 + dx;
                    }
                }
            yr[ox] = value;
            ir[ox] = at;
        }
    }
}

inline void max_pool_forward(const float* x, int n, int c, int h, int w, int k, float* y, int oh, int ow,
                             std::int32_t* indices) {
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t nc = b; nc < e; ++nc)
            max_pool_rows(x + nc * in_plane, h, w, k, 0, oh, y + nc * out_plane, indices + nc * out_plane, ow);
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

namespace pool_detail {
/// One row's (value, index) pairs merged into the running maxima of a row of outputs (strictly
/// greater replaces); restrict lets the compiler vectorise the selects.
inline void max_of_rows(const float* __restrict row, const std::int32_t* __restrict row_at, int ow,
                        float* __restrict best, float* __restrict value, std::int32_t* __restrict at) {
    for (int ox = 0; ox < ow; ++ox) {
        const bool greater = row[ox] > best[ox];
        best[ox] = greater ? row[ox] : best[ox];
        value[ox] = greater ? row[ox] : value[ox];
        at[ox] = greater ? row_at[ox] : at[ox];
    }
}

/// The longest run of outputs [first, last) whose spans all have `width` cells and start `step`
/// apart (span o begins at begin + (o - first) step): a sliding window's outputs clear of the
/// borders, every bin of an adaptive pooling whose size divides the map. The column passes run
/// it tap by tap across the outputs, where loads are contiguous (step 1) or evenly strided and
/// the compiler vectorises; the other outputs take the per-span loop.
struct UniformRun {
    int first = 0, last = 0, begin = 0, step = 1, width = 0;
};
inline UniformRun uniform_run(const std::vector<PoolSpan>& spans) {
    const int n = int(spans.size());
    const auto width = [&](int o) { return spans[std::size_t(o)].end - spans[std::size_t(o)].begin; };
    const auto begin = [&](int o) { return spans[std::size_t(o)].begin; };
    UniformRun best;
    for (int s = 0; s < n;) {
        const int step = s + 1 < n ? begin(s + 1) - begin(s) : 1;
        int e = s + 1;
        while (e < n && width(e) == width(s) && begin(e) - begin(e - 1) == step) ++e;
        if (e - s > best.last - best.first) best = {s, e, begin(s), step, width(s)};
        s = std::max(s + 1, e - 1);  // the pair (e - 1, e) may start the next run
    }
    return best;
}

/// uniform_run(spans) where it holds at least 16 outputs (a vector's worth), else an empty run:
/// a short run's outputs go faster span by span (AdaptiveAvgPool<1>: one output of 61 cells
/// took 3x longer tap by tap).
inline UniformRun tapwise_run(const std::vector<PoolSpan>& spans) {
    const UniformRun r = uniform_run(spans);
    return r.last - r.first >= 16 ? r : UniformRun{};
}

/// Calls tap(o, x) for outputs o in [r.first, r.last) and their t-th cells x, t = 0 .. width - 1
/// in order (t outermost, so each t is one pass over contiguous or evenly strided cells); the
/// step is a constant in the common cases (1: DeepLab's size-keeping pools, 2: ResNet's stem
/// pool) so that the compiler vectorises each pass without gathers.
template <class Tap>
void for_each_uniform_tap(const UniformRun& r, Tap tap) {
    // Locals: the integer stores of a tap (indices) could alias r's fields, and the compiler
    // would then not know the trip count.
    const int first = r.first, last = r.last, begin = r.begin, width = r.width;
    const auto passes = [&](auto step) {
        for (int t = 0; t < width; ++t) {
            const int x0 = begin + t - first * step;  // cell of output o: x0 + o step
            for (int o = first; o < last; ++o) tap(o, x0 + o * step);
        }
    };
    if (r.step == 1) passes(std::integral_constant<int, 1>{});
    else if (r.step == 2) passes(std::integral_constant<int, 2>{});
    else passes(r.step);
}

/// The running maxima m and their indices at over the uniform run's taps of one row, tap by tap
/// (strictly greater replaces: the first maximum in column order). A function of its own with
/// restrict pointers and the step as a constant where it is 1 or 2: through a lambda GCC 12
/// lost the restrict, kept the branches and ran 2x slower than the span-by-span loop.
template <class Step>
void uniform_taps_max(const float* __restrict row, std::int32_t row_start, const UniformRun& r, Step step,
                      float* __restrict m, std::int32_t* __restrict at) {
    const int first = r.first, last = r.last, begin = r.begin, width = r.width;
    for (int t = 0; t < width; ++t) {
        const int x0 = begin + t - first * int(step);
        for (int o = first; o < last; ++o) {
            const int xx = x0 + o * int(step);
            const float v = row[xx];
            const bool greater = v > m[o];
            m[o] = greater ? v : m[o];
            at[o] = greater ? row_start + xx : at[o];
        }
    }
}

/// Per input row, the maximum over every column range and its flat index (h x ow each), first
/// maximum in column order: the uniform run tap by tap, the other outputs span by span.
inline void column_range_maxima(const float* xp, int h, int w, const std::vector<PoolSpan>& cols,
                                const UniformRun& run, float* __restrict row_best, std::int32_t* __restrict row_at) {
    const int ow = int(cols.size());
    constexpr float neg_inf = -std::numeric_limits<float>::infinity();
    for (int yy = 0; yy < h; ++yy) {
        const float* __restrict row = xp + std::int64_t(yy) * w;
        float* __restrict m = row_best + std::int64_t(yy) * ow;
        std::int32_t* __restrict at = row_at + std::int64_t(yy) * ow;
        const std::int32_t row_start = yy * w;
        for (int ox = 0; ox < ow; ++ox) {
            const PoolSpan& col = cols[std::size_t(ox)];
            // Locals, not m[ox] and at[ox]: GCC keeps these in registers.
            float best = neg_inf;
            std::int32_t best_at = row_start + col.begin;
            const int end = ox >= run.first && ox < run.last ? col.begin : col.end;  // the run: below
            for (int xx = col.begin; xx < end; ++xx) {
                const bool greater = row[xx] > best;
                best = greater ? row[xx] : best;
                best_at = greater ? row_start + xx : best_at;
            }
            m[ox] = best;
            at[ox] = best_at;
        }
        if (run.step == 1) uniform_taps_max(row, row_start, run, std::integral_constant<int, 1>{}, m, at);
        else if (run.step == 2) uniform_taps_max(row, row_start, run, std::integral_constant<int, 2>{}, m, at);
        else uniform_taps_max(row, row_start, run, run.step, m, at);
    }
}

/// Per input row, the sum over every column range (h x ow), each summed in column order.
inline void column_range_sums(const float* xp, int h, int w, const std::vector<PoolSpan>& cols, const UniformRun& run,
                              float* __restrict row_sums) {
    const int ow = int(cols.size());
    for (int yy = 0; yy < h; ++yy) {
        const float* __restrict row = xp + std::int64_t(yy) * w;
        float* __restrict sum = row_sums + std::int64_t(yy) * ow;
        for (int ox = 0; ox < ow; ++ox) {
            const PoolSpan& col = cols[std::size_t(ox)];
            const int end = ox >= run.first && ox < run.last ? col.begin : col.end;  // the run: below
            float s = 0.f;  // a local: in a register
            for (int xx = col.begin; xx < end; ++xx) s += row[xx];
            sum[ox] = s;
        }
        for_each_uniform_tap(run, [&](int o, int xx) { sum[o] += row[xx]; });
    }
}

/// The divisor of each output column's average: the column span's count, as a float.
inline std::vector<float> column_counts(const PoolSpans& spans) {
    std::vector<float> counts(spans.cols.size());
    for (std::size_t i = 0; i < counts.size(); ++i) counts[i] = float(spans.cols[i].count);
    return counts;
}
}  // namespace pool_detail

/// Max pooling over arbitrary ranges (padding never wins: every range holds a map cell), with
/// the first-maximum rule and flat plane indices of max_pool_rows. Separable: each input row's
/// maximum over every column range, then the maximum of those over the row ranges; scanning rows
/// in order and keeping only strictly greater values is the row-major first maximum of the
/// window (a NaN-only window keeps its first cell). Both passes are branch-free selects that the
/// compiler vectorises across output columns (the column pass over its uniform run).
inline void window_max_pool_forward(const float* x, int n, int c, int h, int w, const PoolSpans& spans, float* y,
                                    std::int32_t* indices) {
    const int oh = int(spans.rows.size()), ow = int(spans.cols.size());
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    constexpr float neg_inf = -std::numeric_limits<float>::infinity();
    const pool_detail::UniformRun run = pool_detail::tapwise_run(spans.cols);
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        std::vector<float> row_best(std::size_t(h) * std::size_t(ow));  // per input row and output column
        std::vector<std::int32_t> row_at(row_best.size());
        std::vector<float> best(static_cast<std::size_t>(ow));
        for (std::int64_t nc = b; nc < e; ++nc) {
            const float* xp = x + nc * in_plane;
            float* yp = y + nc * out_plane;
            std::int32_t* ip = indices + nc * out_plane;
            pool_detail::column_range_maxima(xp, h, w, spans.cols, run, row_best.data(), row_at.data());
            for (int oy = 0; oy < oh; ++oy) {
                const PoolSpan& r = spans.rows[std::size_t(oy)];
                float* yr = yp + std::int64_t(oy) * ow;
                std::int32_t* ir = ip + std::int64_t(oy) * ow;
                for (int ox = 0; ox < ow; ++ox) {
                    best[std::size_t(ox)] = neg_inf;
                    ir[ox] = r.begin * w + spans.cols[std::size_t(ox)].begin;
                    yr[ox] = xp[ir[ox]];
                }
                for (int yy = r.begin; yy < r.end; ++yy)
                    pool_detail::max_of_rows(row_best.data() + std::size_t(yy) * std::size_t(ow),
                                             row_at.data() + std::size_t(yy) * std::size_t(ow), ow, best.data(), yr, ir);
            }
        }
    });
}

/// y = the sum over each output's ranges divided by the product of their counts; separable: the
/// column ranges' sums of every row, then their sums over the row ranges (each sum in map order,
/// vectorised across output columns).
inline void average_pool_forward(const float* x, int n, int c, int h, int w, const PoolSpans& spans, float* y) {
    const int oh = int(spans.rows.size()), ow = int(spans.cols.size());
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    const pool_detail::UniformRun run = pool_detail::tapwise_run(spans.cols);
    const std::vector<float> col_count = pool_detail::column_counts(spans);
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        std::vector<float> row_sums(std::size_t(h) * std::size_t(ow));
        for (std::int64_t nc = b; nc < e; ++nc) {
            pool_detail::column_range_sums(x + nc * in_plane, h, w, spans.cols, run, row_sums.data());
            for (int oy = 0; oy < oh; ++oy) {
                const PoolSpan& r = spans.rows[std::size_t(oy)];
                float* __restrict yr = y + nc * out_plane + std::int64_t(oy) * ow;
                std::fill(yr, yr + ow, 0.f);
                for (int yy = r.begin; yy < r.end; ++yy) {
                    const float* __restrict sums = row_sums.data() + std::size_t(yy) * std::size_t(ow);
                    for (int ox = 0; ox < ow; ++ox) yr[ox] += sums[ox];
                }
                const float row_count = float(r.count);
                for (int ox = 0; ox < ow; ++ox) yr[ox] /= row_count * col_count[std::size_t(ox)];
            }
        }
    });
}

/// dx is overwritten: each output's gradient, divided as in forward, spread over its ranges (the
/// transpose of the two passes: over the row ranges into a per-row buffer, then the columns, the
/// uniform run tap by tap).
inline void average_pool_backward(const float* dy, int n, int c, const PoolSpans& spans, float* dx, int h, int w) {
    const int oh = int(spans.rows.size()), ow = int(spans.cols.size());
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    const pool_detail::UniformRun run = pool_detail::tapwise_run(spans.cols);
    const std::vector<float> col_count = pool_detail::column_counts(spans);
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        std::vector<float> row_grad(std::size_t(h) * std::size_t(ow)), share(static_cast<std::size_t>(ow));
        for (std::int64_t nc = b; nc < e; ++nc) {
            std::fill(row_grad.begin(), row_grad.end(), 0.f);
            const float* dyp = dy + nc * out_plane;
            for (int oy = 0; oy < oh; ++oy) {
                const PoolSpan& r = spans.rows[std::size_t(oy)];
                const float* dr = dyp + std::int64_t(oy) * ow;
                const float row_count = float(r.count);
                for (int ox = 0; ox < ow; ++ox) share[std::size_t(ox)] = dr[ox] / (row_count * col_count[std::size_t(ox)]);
                for (int yy = r.begin; yy < r.end; ++yy) {
                    float* __restrict g = row_grad.data() + std::size_t(yy) * std::size_t(ow);
                    const float* __restrict sh = share.data();
                    for (int ox = 0; ox < ow; ++ox) g[ox] += sh[ox];
                }
            }
            float* dxp = dx + nc * in_plane;
            std::fill(dxp, dxp + in_plane, 0.f);
            for (int yy = 0; yy < h; ++yy) {
                const float* __restrict g = row_grad.data() + std::size_t(yy) * std::size_t(ow);
                float* __restrict dxr = dxp + std::int64_t(yy) * w;
                for (int ox = 0; ox < ow; ++ox) {
                    if (ox >= run.first && ox < run.last) continue;
                    const PoolSpan& col = spans.cols[std::size_t(ox)];
                    for (int xx = col.begin; xx < col.end; ++xx) dxr[xx] += g[ox];
                }
                // One tap's cells are distinct outputs' (step >= 1), so each pass has no
                // dependences; a step of 0 (adaptive bins on a map narrower than the grid) adds
                // to one cell, in order.
                pool_detail::for_each_uniform_tap(run, [&](int o, int xx) { dxr[xx] += g[o]; });
            }
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

}  // namespace segnet::backend::cpu
