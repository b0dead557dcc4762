// segnet/backend/cpu/conv_winograd_kernels.hpp: the ISA-generic body of the Winograd F(4x4, 3x3)
// convolution, included by conv_winograd.hpp once per instruction set (no include guard, on
// purpose, as conv_direct_kernels.hpp).
//
// conv_winograd.hpp defines, for each inclusion,
//   SEGNET_WG_NS      the namespace under segnet::backend::cpu (avx512, avx2),
//   SEGNET_WG_ISA     the traits struct in segnet::backend::cpu::winograd (Avx512, Avx2),
//   SEGNET_WG_TARGET  the __attribute__((target(...))) of the kernels.
#if !defined(SEGNET_WG_NS) || !defined(SEGNET_WG_ISA) || !defined(SEGNET_WG_TARGET)
#error "conv_winograd_kernels.hpp is included by conv_winograd.hpp only"
#endif

namespace segnet::backend::cpu::SEGNET_WG_NS {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace winograd_detail {

using Isa = winograd::SEGNET_WG_ISA;
using vec = Isa::vec;
inline constexpr int L = Isa::lanes;
inline constexpr int MR = Isa::mr;                       // output channels per micro-kernel
inline constexpr int block_tiles = Isa::nv * Isa::lanes;  // tiles per block: one micro-kernel's width
inline constexpr int P = winograd::positions;

/// Floats from one position's part of V or M to the next: `rows` rows of a block, plus one
/// cache line. Without it, at channel counts that are multiples of 64, the 36 positions of a
/// tile lie a multiple of 4 KB apart, in one L1 set of 12 ways: the transforms, which touch all
/// 36 at once, ran 1.2-1.4x slower (64 channels, 360x480, one Zen 5 core).
inline std::int64_t position_stride(std::int64_t rows) { return rows * block_tiles + 16; }

/// m[r][0 .. block_tiles) = sum over ci of u[ci][r] * v[ci][0 .. block_tiles) for the MR output
/// channels of one packed weight panel (u: [cin][MR]; v, m: rows block_tiles floats apart).
SEGNET_WG_TARGET inline void gemm_micro(const float* u, const float* v, float* m, int cin) {
    constexpr int NV = Isa::nv;
    vec acc[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = Isa::zero();
    for (int ci = 0; ci < cin; ++ci) {
        const float* vc = v + std::int64_t(ci) * block_tiles;
        vec in[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) in[j] = Isa::loadu(vc + j * L);
        const float* uc = u + std::int64_t(ci) * MR;
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const vec b = Isa::set1(uc[r]);
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) acc[r][j] = Isa::fmadd(b, in[j], acc[r][j]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) Isa::storeu(m + std::int64_t(r) * block_tiles + j * L, acc[r][j]);
}

/// B^T d B on L tiles at once (d: 6x6 vectors, row-major; v: the 36 positions).
SEGNET_WG_TARGET inline void input_tile_transform(const vec (&d)[6][6], vec (&v)[P]) {
    vec t[6][6];
    const auto bt = [](vec d0, vec d1, vec d2, vec d3, vec d4, vec d5, vec* o, int stride) {
        o[0] = 4.f * d0 - 5.f * d2 + d4;
        o[stride] = d3 + d4 - 4.f * (d1 + d2);
        o[2 * stride] = d4 - d3 + 4.f * (d1 - d2);
        o[3 * stride] = d4 - d2 + 2.f * (d3 - d1);
        o[4 * stride] = d4 - d2 + 2.f * (d1 - d3);
        o[5 * stride] = 4.f * d1 - 5.f * d3 + d5;
    };
    for (int c = 0; c < 6; ++c) bt(d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c], &t[0][c], 6);
    for (int i = 0; i < 6; ++i) bt(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], &v[i * 6], 1);
}

/// A^T m A on L tiles at once (m: the 36 positions; y: 4x4 vectors, row-major).
SEGNET_WG_TARGET inline void output_tile_transform(const vec (&m)[P], vec (&y)[4][4]) {
    vec s[4][6];
    const auto at = [](vec m0, vec m1, vec m2, vec m3, vec m4, vec m5, vec* o, int stride) {
        const vec sum12 = m1 + m2, diff12 = m1 - m2, sum34 = m3 + m4, diff34 = m3 - m4;
        o[0] = m0 + sum12 + sum34;
        o[stride] = diff12 + 2.f * diff34;
        o[2 * stride] = sum12 + 4.f * sum34;
        o[3 * stride] = diff12 + 8.f * diff34 + m5;
    };
    for (int j = 0; j < 6; ++j) at(m[j], m[6 + j], m[12 + j], m[18 + j], m[24 + j], m[30 + j], &s[0][j], 6);
    for (int i = 0; i < 4; ++i) at(s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5], &y[i][0], 1);
}

/// V[pos][ci][0 .. block_tiles) = B^T d B of the 6x6 input patches of block b's tiles of one
/// image, group g in lanes [g L, g L + L) (groups past the image's last one are zero);
/// positions position_stride(cin) apart.
SEGNET_WG_TARGET inline void input_transform(const float* xn, int cin, const winograd::Tiling& tiling, std::int64_t b,
                                             float* V) {
    constexpr int extent = 4 * L + 4;
    float buffer[6 * extent];
    const int groups = tiling.group_count(b);
    const std::int64_t stride = position_stride(cin);
    for (int ci = 0; ci < cin; ++ci) {
        const float* xc = xn + ci * tiling.plane();
        for (int g = 0; g < groups; ++g) {
            const std::int64_t group = tiling.first_group(b) + g;
            const float* rows[6];
            winograd::patch_rows(xc, tiling.h, tiling.w, tiling.group_y(group), tiling.group_x(group), extent, buffer, rows);
            vec d[6][6], v[P];
            for (int r = 0; r < 6; ++r) {
                vec columns[4];
                Isa::deinterleave4(rows[r], columns);
                for (int c = 0; c < 4; ++c) d[r][c] = columns[c];
                Isa::next_tile_columns(rows[r], columns, d[r][4], d[r][5]);
            }
            input_tile_transform(d, v);
            for (int k = 0; k < P; ++k) Isa::storeu(V + k * stride + std::int64_t(ci) * block_tiles + g * L, v[k]);
        }
        for (int g = groups; g < Isa::nv; ++g)
            for (int k = 0; k < P; ++k) Isa::storeu(V + k * stride + std::int64_t(ci) * block_tiles + g * L, Isa::zero());
    }
}

/// y[co] on block b's tiles = A^T M A (+ bias, max(., 0) when relu) for output channels
/// [co_begin, co_end); M[pos][co - co_begin][0 .. block_tiles), positions position_stride(rows_per_pos) apart.
SEGNET_WG_TARGET inline void output_transform(const float* M, std::int64_t rows_per_pos, int co_begin, int co_end,
                                              const float* bias, bool relu, const winograd::Tiling& tiling,
                                              std::int64_t b, float* yn) {
    alignas(64) float row_buffer[4 * L];
    const int groups = tiling.group_count(b);
    for (int co = co_begin; co < co_end; ++co) {
        const float* mc = M + std::int64_t(co - co_begin) * block_tiles;
        float* yc = yn + co * tiling.plane();
        const vec bias_v = Isa::set1(bias ? bias[co] : 0.f);
        for (int g = 0; g < groups; ++g) {
            vec m[P], y[4][4];
            for (int k = 0; k < P; ++k) m[k] = Isa::loadu(mc + k * position_stride(rows_per_pos) + g * L);
            output_tile_transform(m, y);
            const std::int64_t group = tiling.first_group(b) + g;
            const int y0 = tiling.group_y(group), x0 = tiling.group_x(group);
            const int rows = std::min(4, tiling.h - y0), columns = std::min(4 * L, tiling.w - x0);
            for (int p = 0; p < rows; ++p) {
                for (int q = 0; q < 4; ++q) y[p][q] = relu ? Isa::max(y[p][q] + bias_v, Isa::zero()) : y[p][q] + bias_v;
                float* dst = yc + std::int64_t(y0 + p) * tiling.w + x0;
                if (columns == 4 * L) {
                    Isa::interleave4(y[p], dst);
                } else {
                    Isa::interleave4(y[p], row_buffer);
                    std::copy_n(row_buffer, columns, dst);
                }
            }
        }
    }
}

/// y = the convolution whose transformed weights are U (winograd::transform_weights with MR),
/// + bias, max(., 0) when relu: batch images of cin planes h x w in, cout planes out.
inline void run(const float* x, const float* U, const float* bias, float* y, int batch, int cin, int cout, int h,
                int w, bool relu) {
    const winograd::Tiling tiling(h, w, L, Isa::nv);
    const int panels = (cout + MR - 1) / MR;
    const int chunks = winograd::channel_chunks(std::int64_t(batch) * tiling.blocks, panels, num_threads());
    const int panels_per_chunk = (panels + chunks - 1) / chunks;
    const std::int64_t rows_per_pos = std::int64_t(panels_per_chunk) * MR;
    parallel_for(0, std::int64_t(batch) * tiling.blocks * chunks, [&](std::int64_t begin, std::int64_t end, int) {
        float* V = direct::scratch(winograd::input_buffer, P * position_stride(cin));
        float* M = direct::scratch(winograd::product_buffer, P * position_stride(rows_per_pos));
        std::int64_t transformed = -1;  // the (image, block) V holds: a block's chunks are adjacent items
        for (std::int64_t item = begin; item < end; ++item) {
            const std::int64_t image_block = item / chunks, b = image_block % tiling.blocks;
            const int n = int(image_block / tiling.blocks);
            if (image_block != transformed) {
                input_transform(x + std::int64_t(n) * cin * tiling.plane(), cin, tiling, b, V);
                transformed = image_block;
            }
            const int panel0 = int(item % chunks) * panels_per_chunk;
            const int panel1 = std::min(panels, panel0 + panels_per_chunk);
            if (panel0 >= panel1) continue;
            for (int k = 0; k < P; ++k)
                for (int panel = panel0; panel < panel1; ++panel)
                    gemm_micro(U + (std::int64_t(k) * panels + panel) * cin * MR, V + k * position_stride(cin),
                               M + k * position_stride(rows_per_pos) + std::int64_t(panel - panel0) * MR * block_tiles,
                               cin);
            output_transform(M, rows_per_pos, panel0 * MR, std::min(cout, panel1 * MR), bias, relu, tiling, b,
                             y + std::int64_t(n) * cout * tiling.plane());
        }
    });
}

}  // namespace winograd_detail
#pragma GCC diagnostic pop

/// Whether these kernels run g on this CPU (winograd::supports and the ISA).
inline bool winograd_usable(const backend::ConvGeometry& g) { return winograd::supports(g) && winograd_detail::Isa::available(); }

/// y = conv(x, w * weight_scale) (+ bias), max(., 0) when relu, by Winograd F(4x4, 3x3);
/// y is overwritten. Only where winograd_usable(g).
inline void winograd_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                             const backend::ConvGeometry& g, const float* weight_scale = nullptr, bool relu = false) {
    using namespace winograd_detail;
    const float* U = winograd::transform_weights(MR, g.out_c, g.in_c, weight_scale, [&](int o, int i) {
        return w + (std::int64_t(o) * g.in_c + i) * 9;
    }, /*flip=*/false);
    run(x, U, bias, y, batch, g.in_c, g.out_c, g.in_h, g.in_w, relu);
}

/// dx = d(sum dy * conv(x, w)) / dx by Winograd F(4x4, 3x3): the forward convolution of dy with
/// the weights transposed (in <-> out) and rotated by 180 degrees; dx is overwritten.
inline void winograd_backward_data(const float* dy, const float* w, float* dx, int batch, const backend::ConvGeometry& g) {
    using namespace winograd_detail;
    const float* U = winograd::transform_weights(MR, g.in_c, g.out_c, nullptr, [&](int i, int o) {
        return w + (std::int64_t(o) * g.in_c + i) * 9;
    }, /*flip=*/true);
    run(dy, U, nullptr, dx, batch, g.out_c, g.in_c, g.in_h, g.in_w, false);
}

}  // namespace segnet::backend::cpu::SEGNET_WG_NS
