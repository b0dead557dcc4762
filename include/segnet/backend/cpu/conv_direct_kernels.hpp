// segnet/backend/cpu/conv_direct_kernels.hpp: the ISA-generic body of the direct convolution,
// included by conv_direct.hpp once per instruction set (no include guard, on purpose).
//
// conv_direct.hpp defines, for each inclusion,
//   SEGNET_DC_NS      the namespace under segnet::backend::cpu (avx512, avx2, avx512_bf16),
//   SEGNET_DC_ISA     the traits struct in segnet::backend::cpu::direct (Avx512, Avx2, Avx512Bf16),
//   SEGNET_DC_TARGET  the __attribute__((target(...))) of the micro-kernels.
// Everything ISA-specific comes from the traits: the vector operations, the register blocking
// (Isa::fwd_mr x Isa::fwd_nv, Isa::bwf_mr x Isa::bwf_nr) and the reduction's operands: the
// element type of the band and packed weights (float, or a pair of channels in bf16) and of the
// backward-filter streams (float or bf16), made from the FP32 band, weights and streams by
// Isa::band_operand, Isa::pack_weights and Isa::stream_operand, and the multiply-add on them
// (Isa::fmadd: FMA, or vdpbf16ps). See conv_direct.hpp and conv_direct_bf16.hpp.
#if !defined(SEGNET_DC_NS) || !defined(SEGNET_DC_ISA) || !defined(SEGNET_DC_TARGET)
#error "conv_direct_kernels.hpp is included by conv_direct.hpp only"
#endif

namespace segnet::backend::cpu::SEGNET_DC_NS {

using backend::ConvGeometry;

/// The ISA's traits (direct::Avx512 or direct::Avx2).
using Isa = direct::SEGNET_DC_ISA;

/// The geometries these kernels handle (direct::supports) on a CPU that runs them.
inline bool supports(const ConvGeometry& g) { return direct::supports(g); }
inline bool usable(const ConvGeometry& g) { return direct::supports(g) && Isa::available(); }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace detail {

using direct::round_up;
using direct::scratch;
using vec = Isa::vec;
inline constexpr int L = Isa::lanes;
/// The forward's band and packed-weight element (float, or a pair of channels' bf16 values) and
/// the vector of them that a multiply-add takes (Isa::fmadd: FMA, or a bf16 pair dot product).
using Elem = Isa::elem;
using Operand = decltype(Isa::loadu(std::declval<const Elem*>()));
/// The backward-filter's stream element (float or bf16) and how many one vector holds.
using StreamElem = Isa::stream_elem;
inline constexpr int S = L * Isa::stream_elems_per_lane;

/// y[m][0 .. L NV) = bias[m] + sum over (ci, ky, kx) of w[m][ci][ky][kx] * x[ci][ky][kx d + ...]
/// for MR output channels (d: the dilation; tap rows are row_tap elements apart in the band:
/// its row stride, or d of them), max(., 0) when relu; of the last vector only the
/// first `last_n` lanes are stored. ci runs over the band's elements: channels (FP32) or pairs of
/// channels (bf16, whose multiply-add sums the pair).
template <int MR, int NV, int KS = 0, int DS = 0>
SEGNET_DC_TARGET void fwd_micro(const Elem* xb, std::int64_t cstride, std::int64_t row_tap, int cin, int k_runtime,
                                int d_runtime, const Elem* wpk, float* y, std::int64_t yplane, int last_n,
                                const float* bias, bool relu) {
    const int k = KS ? KS : k_runtime;  // KS: the kernel size fixed at compile time (unrolled taps)
    const int d = DS ? DS : d_runtime;  // DS: the dilation fixed at compile time (SegNet's 1)
    vec acc[MR][NV];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[m][v] = bias ? Isa::set1(bias[m]) : Isa::zero();
    for (int ci = 0; ci < cin; ++ci) {
        const Elem* xc = xb + ci * cstride;
        {
            // The next channel's rows are a long stride away: ask for them early (a cache line
            // per 16 floats).
            const Elem* nx = xc + 2 * cstride;
            for (int ky = 0; ky < k; ++ky)
#pragma GCC unroll 4
                for (int v = 0; v * 16 <= NV * L + (k - 1) * (d - 1); ++v)
                    _mm_prefetch(reinterpret_cast<const char*>(nx + ky * row_tap + 16 * v), _MM_HINT_T0);
        }
        for (int ky = 0; ky < k; ++ky) {
            const Elem* xr = xc + ky * row_tap;
#pragma GCC unroll 7
            for (int kx = 0; kx < k; ++kx) {
                Operand xv[NV];
#pragma GCC unroll 4
                for (int v = 0; v < NV; ++v) {
                    xv[v] = Isa::loadu(xr + kx * d + L * v);
                    // Load once, use MR times: without this GCC folds the load into each of the
                    // MR FMAs (AVX2: 16 loads per 12 FMAs, more than the load ports take).
                    if constexpr (Isa::pin_inputs) __asm__("" : "+v"(xv[v]));
                }
#pragma GCC unroll 8
                for (int m = 0; m < MR; ++m) {
                    const Operand wv = Isa::set1(wpk[m]);
#pragma GCC unroll 4
                    for (int v = 0; v < NV; ++v) acc[m][v] = Isa::fmadd(wv, xv[v], acc[m][v]);
                }
                wpk += MR;
            }
        }
    }
    if (relu) {  // the epilogue of a fused conv + (batch norm +) ReLU: no separate pass over y
        const vec zero = Isa::zero();
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[m][v] = Isa::max(acc[m][v], zero);
    }
    const auto last = Isa::tail_mask(last_n);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 4
        for (int v = 0; v + 1 < NV; ++v) Isa::storeu(y + m * yplane + L * v, acc[m][v]);
        Isa::mask_storeu(y + m * yplane + L * (NV - 1), last, acc[m][NV - 1]);
    }
}

using FwdFn = void (*)(const Elem*, std::int64_t, std::int64_t, int, int, int, const Elem*, float*, std::int64_t,
                       int, const float*, bool);
template <std::size_t... I>
constexpr std::array<FwdFn, sizeof...(I)> fwd_table(std::index_sequence<I...>) {
    return {&fwd_micro<int(I / Isa::fwd_nv) + 1, int(I % Isa::fwd_nv) + 1>...};
}
inline constexpr auto fwd_kernels = fwd_table(std::make_index_sequence<Isa::fwd_mr * Isa::fwd_nv>{});

/// The full-height register block of NV vectors with its taps unrolled for kernel size k and
/// dilation d where one is compiled (3x3 and 7x7 at dilation 1, 3x3 at any dilation), else
/// `otherwise`.
template <int NV>
FwdFn unrolled_fwd_kernel(int k, int d, FwdFn otherwise) {
    constexpr int MR = Isa::fwd_mr;
    if (d == 1) return k == 3 ? &fwd_micro<MR, NV, 3, 1> : k == 7 ? &fwd_micro<MR, NV, 7, 1> : otherwise;
    return k == 3 ? &fwd_micro<MR, NV, 3> : otherwise;
}

/// `rows` output rows of one image from the band buffer (row 0 = input row y0 - pad), written
/// to y (the first of those rows of output channel 0; rows yrow floats apart, channels yplane),
/// taps d columns and tap_rows band rows apart (d, or 1 in a band of one phase's rows). cin
/// counts the band's elements per pixel (channels, or pairs of channels).
inline void fwd_band(const Elem* buf, int rows_in_buf, int wp, int cin, int cout, int k, int d, int tap_rows,
                     const Elem* packed, const float* bias, bool relu, float* y, std::int64_t yplane,
                     std::int64_t yrow, int w, int rows) {
    constexpr int MR = Isa::fwd_mr, NV = Isa::fwd_nv;
    const std::int64_t cstride = std::int64_t(rows_in_buf) * wp;
    const std::int64_t wsz = std::int64_t(cin) * k * k;
    // Weights are streamed once per register block of output channels and stay in L2 while
    // the block sweeps the band (512 x 512 x 3 x 3 weights are 9.4 MB: cycling all of them per
    // pixel tile would stream them from L3).
    // Row tiles of equal vector counts (AVX-512: 60 = 32 + 28, not 48 + 12 whose 1-vector tile
    // would be bound by its MR broadcasts per MR FMAs).
    const int tiles = (w + L * NV - 1) / (L * NV);
    const int tile = ((w + tiles - 1) / tiles + L - 1) / L * L;
    // Column groups: the part of the band one group's tiles read (all input channels and rows,
    // the group's columns plus the border) should stay in L2 while every block of output
    // channels sweeps it; a 64-channel band for a 7x7 kernel at width 480 is 875 KB, more than
    // the 512 KB L2 of a Zen 3 core, and was read from L3 once per block of channels.
    const int group_tiles = direct::column_group_tiles(cin, rows_in_buf, tile, d * (k - 1) + 1, (w + tile - 1) / tile);
    for (int g0 = 0; g0 < w; g0 += group_tiles * tile) {
        for (int o0 = 0; o0 < cout; o0 += MR) {
            const int mr = std::min(MR, cout - o0);
            for (int r = 0; r < rows; ++r) {
                const Elem* xrow = buf + std::int64_t(r) * wp;
                float* yr = y + r * yrow;
                for (int ox0 = g0; ox0 < std::min(w, g0 + group_tiles * tile); ox0 += tile) {
                    const int rem = std::min(tile, w - ox0);
                    const int nv = (rem + L - 1) / L;
                    const int last_n = rem - (nv - 1) * L;
                    // The full register block, and the one a vector narrower (rows of 60 and 30
                    // pixels: tiles of 32 and 28 with AVX-512), have their taps unrolled for the
                    // kernel sizes the models use: 3x3 and 7x7 undilated (SegNet), 3x3 at any
                    // dilation (DeepLab, PSPNet).
                    FwdFn fn = fwd_kernels[std::size_t((mr - 1) * NV + nv - 1)];
                    if (mr == MR && nv == NV) fn = unrolled_fwd_kernel<NV>(k, d, fn);
                    if constexpr (NV > 1)
                        if (mr == MR && nv == NV - 1) fn = unrolled_fwd_kernel<NV - 1>(k, d, fn);
                    fn(xrow + ox0, cstride, std::int64_t(wp) * tap_rows, cin, k, d, packed + o0 * wsz,
                       yr + o0 * yplane + ox0, yplane, last_n, bias ? bias + o0 : nullptr, relu);
                }
            }
        }
    }
}

/// y = conv(x, packed weights) (+ bias), max(., 0) when relu: the driver shared by forward and
/// backward-data. With `unpooled`, x is unused and the input is that unpooling (never stored).
/// With `pooled`, y is unused: each band is computed into a per-thread buffer and max-pooled
/// from there into pooled->values and indices while it is still in cache (the bands hold whole
/// pooling windows). The band is built in FP32 and handed to the micro-kernels as
/// Isa::band_operand makes it (the bf16 kernels round it to pairs of channels).
inline void direct_conv(const float* x, const Elem* packed, const float* bias, bool relu, float* y, int batch,
                        int cin, int cout, int h, int w, int k, int d, const direct::Unpooled* unpooled = nullptr,
                        const direct::Pooled* pooled = nullptr) {
    const int span = d * (k - 1) + 1;  // the rows and columns a pixel's taps cover
    const int pad = span / 2;
    const int wp = direct::band_row_stride(w, span, L);
    // A dilated kernel's output rows oy = p, p + d, p + 2d, ... (phase p) read input rows of
    // phase p only (pad = d (k - 1) / 2 is a multiple of d): a band holds one phase's rows, d
    // apart in the map and adjacent in the buffer, with k - 1 border rows as at dilation 1. Bands
    // of contiguous rows would need d (k - 1) border rows: at dilation 12 and 512 channels no
    // band fits the 4 MB plan_bands allows, and bands of one output row re-read all the weights
    // per row. A fused pooling needs contiguous rows (whole windows): its bands keep them, with
    // at least as many rows as the dilation adds border rows.
    const int phases = pooled ? 1 : d, tap_rows = d / phases;
    const int phase_h = ceil_div(h, phases);  // the rows of the largest phase
    const int band_border = (k - 1) * tap_rows;
    const direct::Band b = direct::plan_bands(batch * phases, phase_h, cin, band_border + 1, wp,
                                              std::max(1, band_border - (k - 1)), pooled ? pooled->k : 1);
    parallel_for(0, std::int64_t(batch) * phases * b.bands, [&](std::int64_t first, std::int64_t end, int) {
        for (std::int64_t item = first; item < end; ++item) {
            const int n = int(item / (std::int64_t(phases) * b.bands));
            const int phase = int(item / b.bands % phases);
            const int j0 = int(item % b.bands) * b.rows;  // the band's first row within its phase
            const int rows = std::min(b.rows, ceil_div(h - phase, phases) - j0);
            if (rows <= 0) continue;  // a phase with fewer rows than the largest
            const int y0 = phase + j0 * phases;  // its first output row
            const int rows_in_buf = rows + band_border;
            float* buf = scratch(direct::band_buffer, std::int64_t(cin) * rows_in_buf * wp + 16);
            if (unpooled)
                direct::fill_band_unpooled(*unpooled, n, cin, h, w, pad, y0, rows_in_buf, wp, buf, phases);
            else
                direct::fill_band(x + std::int64_t(n) * cin * h * w, cin, h, w, pad, y0, rows_in_buf, wp, buf, phases);
            const Elem* band = Isa::band_operand(buf, cin, std::int64_t(rows_in_buf) * wp);
            const int units = (cin + Isa::channels_per_elem - 1) / Isa::channels_per_elem;
            if (!pooled) {
                fwd_band(band, rows_in_buf, wp, units, cout, k, d, tap_rows, packed, bias, relu,
                         y + std::int64_t(n) * cout * h * w + std::int64_t(y0) * w, std::int64_t(h) * w,
                         std::int64_t(phases) * w, w, rows);
                continue;
            }
            const std::int64_t yplane = std::int64_t(rows) * w;
            float* yband = scratch(direct::output_band_buffer, std::int64_t(cout) * b.rows * w);
            fwd_band(band, rows_in_buf, wp, units, cout, k, d, tap_rows, packed, bias, relu, yband, yplane, w, w, rows);
            const int pk = pooled->k, ph = pooled_extent(h, pk), pw = pooled_extent(w, pk);
            const std::int64_t pplane = std::int64_t(ph) * pw;
            const int oy0 = y0 / pk, oy1 = std::min(ph, ceil_div(y0 + rows, pk));
            for (int co = 0; co < cout; ++co) {
                const std::int64_t at = (std::int64_t(n) * cout + co) * pplane;
                max_pool_rows(yband + co * yplane, h, w, pk, oy0, oy1, pooled->values + at, pooled->indices + at, pw);
            }
        }
    });
}

/// dw[m][j] += sum over a band's stream of dy[m][p] * x[tap j][p] for MR output channels and NR
/// filter taps at offsets off[j] in the band buffer, p over nvec whole vectors (the streams of
/// conv2d_backward_filter: no row structure, no masks). The bf16 multiply-add sums the products
/// of adjacent pixels into one lane: the same total.
template <int MR, int NR>
SEGNET_DC_TARGET void bwf_micro(const StreamElem* dy, std::int64_t dplane, std::int64_t nvec, const StreamElem* buf,
                                const std::int64_t* off, float* dw, std::int64_t dwstride) {
    vec acc[MR][NR];
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 6
        for (int j = 0; j < NR; ++j) acc[m][j] = Isa::zero();
    const StreamElem* xo[NR];
#pragma GCC unroll 6
    for (int j = 0; j < NR; ++j) xo[j] = buf + off[j];
    for (std::int64_t p = 0; p < nvec * S; p += S) {
        Operand dv[MR];
#pragma GCC unroll 4
        for (int m = 0; m < MR; ++m) dv[m] = Isa::loadu(dy + m * dplane + p);
#pragma GCC unroll 6
        for (int j = 0; j < NR; ++j) {
            Operand xv = Isa::loadu(xo[j] + p);
            // One load, MR uses, on every ISA: unmasked, GCC would fold the load into each of
            // the MR FMAs (28 loads per 24 FMAs, half the speed with AVX-512).
            __asm__("" : "+v"(xv));
#pragma GCC unroll 4
            for (int m = 0; m < MR; ++m) acc[m][j] = Isa::fmadd(dv[m], xv, acc[m][j]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 6
        for (int j = 0; j < NR; ++j) dw[m * dwstride + j] += Isa::reduce_add(acc[m][j]);
}

using BwfFn = void (*)(const StreamElem*, std::int64_t, std::int64_t, const StreamElem*, const std::int64_t*,
                       float*, std::int64_t);
template <std::size_t... I>
constexpr std::array<BwfFn, sizeof...(I)> bwf_table(std::index_sequence<I...>) {
    return {&bwf_micro<int(I / Isa::bwf_nr) + 1, int(I % Isa::bwf_nr) + 1>...};
}
inline constexpr auto bwf_kernels = bwf_table(std::make_index_sequence<Isa::bwf_mr * Isa::bwf_nr>{});

}  // namespace detail

/// y = conv(x, w * weight_scale) (+ bias), max(., 0) when relu; y is overwritten. weight_scale
/// (per output channel, or null: 1) multiplies the weights as they are packed: a batch norm folded
/// into the convolution (conv.hpp). Requires usable(g).
/// With `unpooled` (x unused), the input is the max-unpooling it describes (eval-mode fusion of
/// an Unpool and this convolution: the unpooled map is never written). With `pooled` (y unused),
/// the output is max-pooled as it is computed (eval-mode fusion of this convolution and the
/// Encoder's MaxPool after it: the full-size map is never written).
inline void conv2d_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                           const ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false,
                           const direct::Unpooled* unpooled = nullptr, const direct::Pooled* pooled = nullptr) {
    using namespace detail;
    const int k = g.k, cin = g.in_c, cout = g.out_c;
    const std::int64_t kk = std::int64_t(k) * k;
    Elem* packed = scratch(direct::packed_buffer<Elem>, g.weight_size());
    if (weight_scale)
        Isa::pack_weights(Isa::fwd_mr, cout, cin, k,
                          [&](int o, int i, int ky, int kx) {
                              return w[(o * cin + i) * kk + ky * k + kx] * weight_scale[o];
                          },
                          packed);
    else
        Isa::pack_weights(Isa::fwd_mr, cout, cin, k,
                          [&](int o, int i, int ky, int kx) { return w[(o * cin + i) * kk + ky * k + kx]; }, packed);
    direct_conv(x, packed, bias, relu, y, batch, cin, cout, g.in_h, g.in_w, k, g.dilation, unpooled, pooled);
}

/// dx = the gradient of sum(dy * conv(x, w)) with respect to x; dx is overwritten. A stride-1
/// same-padded convolution's transpose is the convolution of dy with w transposed (in <-> out)
/// and flipped, at the same dilation (the padding d (k - 1) / 2 is symmetric).
inline void conv2d_backward_data(const float* dy, const float* w, float* dx, int batch, const ConvGeometry& g) {
    using namespace detail;
    const int k = g.k, cin = g.in_c, cout = g.out_c;
    const std::int64_t kk = std::int64_t(k) * k;
    Elem* packed = scratch(direct::packed_buffer<Elem>, g.weight_size());
    Isa::pack_weights(
        Isa::fwd_mr, cin, cout, k,
        [&](int o, int i, int ky, int kx) { return w[(i * cin + o) * kk + (k - 1 - ky) * k + (k - 1 - kx)]; }, packed);
    direct_conv(dy, packed, nullptr, false, dx, batch, cout, cin, g.in_h, g.in_w, k, g.dilation);
}

/// dw += the gradient of sum(dy * conv(x, w)) with respect to w (the bias gradient is left to
/// the caller).
///
/// Each band is turned into streams: the input rows go to the band buffer w + s - 1 floats apart
/// (s = d (k - 1) + 1, the taps' span at dilation d: just the zero border, no rounding to the
/// vector width) and dy's rows are copied with the same stride, zeros in the s - 1 gap columns
/// and up to the last whole vector. A band holds the rows of one phase of the dilation (output
/// rows p, p + d, ...; their taps read input rows of the same phase: direct_conv), adjacent in
/// the buffer. Output pixel (r, ox) is then stream position p = r * (w + s - 1) + ox for dy and
/// for every tap (ci, ky, kx) at offset (ci * rows_in_buf + ky) * (w + s - 1) + kx d in the
/// band buffer, so the micro-kernel runs one unmasked loop over the whole band; a gap position
/// adds dy 0 x a finite input. The
/// row-by-row loop it replaces ran 4 vectors per row at width 60 (2 at 30) with a masked tail:
/// 45-61% of the FMA peak for SegNet's deep layers (docs/performance.md, section 6).
inline void conv2d_backward_filter(const float* x, const float* dy, float* dw, int batch, const ConvGeometry& g) {
    using namespace detail;
    constexpr int MR = Isa::bwf_mr, NR = Isa::bwf_nr;
    const int k = g.k, dil = g.dilation, cin = g.in_c, cout = g.out_c, h = g.in_h, w = g.in_w, pad = g.pad;
    const int span = direct::tap_span(g);
    const std::int64_t taps = std::int64_t(cin) * k * k, plane = std::int64_t(h) * w;
    const int wq = w + span - 1;  // the streams' row stride
    // Long pixel runs per band (the vector partial sums are reduced once per band), enough bands
    // to share between threads; bands of rows of one phase (dil phases per image).
    const int threads = num_threads();
    const int phase_h = ceil_div(h, dil);  // the rows of the largest phase
    int rows = std::min(phase_h, std::max(1, (2048 + w - 1) / w));
    while (rows > 1 && std::int64_t(batch) * dil * ((phase_h + rows - 1) / rows) < 2 * threads) rows = (rows + 1) / 2;
    while (rows > 1 && std::int64_t(cin) * (rows + k - 1) * wq * 4 > (std::int64_t(4) << 20)) rows = (rows + 1) / 2;
    const int bands = (phase_h + rows - 1) / rows;
    std::vector<float*> partials(std::size_t(threads), nullptr);
    parallel_for(0, std::int64_t(batch) * dil * bands, [&](std::int64_t first, std::int64_t end, int worker) {
        float* acc = scratch(direct::partial_buffer, g.weight_size());
        std::fill_n(acc, g.weight_size(), 0.f);
        partials[std::size_t(worker)] = acc;
        std::vector<std::int64_t> off(static_cast<std::size_t>(taps));
        for (std::int64_t item = first; item < end; ++item) {
            const int n = int(item / (std::int64_t(dil) * bands));
            const int phase = int(item / bands % dil);
            const int j0 = int(item % bands) * rows;  // the band's first row within its phase
            const int nrows = std::min(rows, ceil_div(h - phase, dil) - j0);
            if (nrows <= 0) continue;  // a phase with fewer rows than the largest
            const int y0 = phase + j0 * dil;  // its first output row
            const int rows_in_buf = nrows + k - 1;
            // The last vector of a stream reads up to S + span - 1 values past the band: zeros.
            const std::int64_t band = std::int64_t(cin) * rows_in_buf * wq;
            float* buf = scratch(direct::band_buffer, band + S + span);
            direct::fill_band(x + std::int64_t(n) * cin * plane, cin, h, w, pad, y0, rows_in_buf, wq, buf, dil);
            std::fill_n(buf + band, S + span, 0.f);
            const std::int64_t nvec = (std::int64_t(nrows) * wq + S - 1) / S, dplane = nvec * S;
            float* dys = scratch(direct::dy_stream_buffer, std::int64_t(cout) * dplane);
            const float* dyn = dy + std::int64_t(n) * cout * plane + std::int64_t(y0) * w;
            for (int co = 0; co < cout; ++co) {
                float* d = dys + co * dplane;
                for (int r = 0; r < nrows; ++r) {
                    std::memcpy(d + std::int64_t(r) * wq, dyn + co * plane + std::int64_t(r) * dil * w,
                                sizeof(float) * std::size_t(w));
                    std::memset(d + std::int64_t(r) * wq + w, 0, sizeof(float) * std::size_t(span - 1));
                }
                std::fill(d + std::int64_t(nrows) * wq, d + dplane, 0.f);
            }
            const StreamElem* xstream = Isa::stream_operand(buf, band + S + span, 0);
            const StreamElem* dystream = Isa::stream_operand(dys, std::int64_t(cout) * dplane, 1);
            for (std::int64_t t = 0; t < taps; ++t) {
                const std::int64_t ci = t / (k * k), ky = t / k % k, kx = t % k;
                off[std::size_t(t)] = (ci * rows_in_buf + ky) * wq + kx * dil;
            }
            // Blocks of output channels and of taps small enough that their dy streams and input
            // rows (about 256 KB each) stay in L2 while the register blocks sweep them.
            const int co_chunk =
                int(std::clamp<std::int64_t>((std::int64_t(64) << 10) / dplane / MR * MR, MR, round_up(cout, MR)));
            const std::int64_t ci_chunk =
                std::max<std::int64_t>(1, (std::int64_t(64) << 10) / (std::int64_t(rows_in_buf) * wq));
            const std::int64_t tap_chunk = round_up(ci_chunk * k * k, NR);
            for (int c0 = 0; c0 < cout; c0 += co_chunk)
                for (std::int64_t tc = 0; tc < taps; tc += tap_chunk)
                    for (int o0 = c0; o0 < std::min(cout, c0 + co_chunk); o0 += MR) {
                        const int mr = std::min(MR, cout - o0);
                        for (std::int64_t t0 = tc; t0 < std::min(taps, tc + tap_chunk); t0 += NR) {
                            const int nr = int(std::min<std::int64_t>(NR, taps - t0));
                            bwf_kernels[std::size_t((mr - 1) * NR + nr - 1)](dystream + o0 * dplane, dplane, nvec,
                                                                             xstream, off.data() + t0,
                                                                             acc + o0 * taps + t0, taps);
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

}  // namespace segnet::backend::cpu::SEGNET_DC_NS
