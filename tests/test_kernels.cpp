// Convolution kernels: the dispatched (AVX-512 or AVX2 direct, where the CPU has it) forward,
// backward-data and backward-filter against plain double-precision loops and against the
// im2col path (im2col tiles and gemm.hpp, itself checked against plain loops), on odd sizes, every kernel size the models use (1, 3, 7, and 5),
// dilations 1 to 12 (the atrous same-size convolutions of DeepLab and PSPNet), channel counts
// that are not multiples of the vector widths (8, 16) or of the register blocks (forward 4, 8
// output channels; backward-filter 2, 4 output channels x 5, 6 taps), batch 1 and 2, 1 and 2
// threads. Every direct
// kernel set this CPU runs (AVX-512 and AVX2 on an AVX-512 CPU, AVX2 on an AVX2 one) is also
// called by name, so both are checked wherever AVX-512 is available. No timing here. Also the
// forward's eval-fusion arguments (weights scaled per output channel, ReLU at the store) on every
// path against the reference with pre-scaled weights and a separate ReLU, and the forward on an
// unpooling read from pooled values and indices (bit for bit the materialised one).
// The bf16 kernels (Precision::bf16 on AMX or AVX512-BF16; skipped on CPUs without them) on the same
// kinds of shapes against the reference on bf16-rounded operands and within bf16's rounding
// bound of the plain reference, and Precision::bf16 on a CPU without BF16 units (SEGNET_CONV=avx2
// here) bit for bit the FP32 result.
#include <doctest/doctest.h>

#include <segnet/backend/cpu/conv.hpp>
#include <segnet/backend/cpu/gemm.hpp>
#include <segnet/backend/cpu/pool.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using segnet::backend::ConvGeometry;
namespace cpu = segnet::backend::cpu;

namespace {

struct Case {
    int cin, cout, h, w, k, batch;
    int dilation = 1;  // atrous: taps this many pixels apart, pad dilation (k - 1) / 2
};

std::vector<float> random_vector(std::size_t n, std::mt19937& gen, float scale = 1.f) {
    std::normal_distribution<float> nd(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(gen);
    return v;
}

ConvGeometry same_geometry(const Case& c) {
    return {c.cin, c.h, c.w, c.cout, c.h, c.w, c.k, 1, c.dilation * (c.k / 2), 1, c.dilation};
}

float at(const std::vector<float>& t, int c, int h, int w, int n, int ci, int y, int x) {
    return t[((std::size_t(n) * c + ci) * h + y) * w + x];
}

/// dx[n][ci][iy][ix] = sum over co, ky, kx of dy[n][co][oy][ox] w[co][ci][ky][kx], iy = oy*s - p + ky*d.
std::vector<float> backward_data_reference(const std::vector<float>& dy, const std::vector<float>& w, int batch,
                                           const ConvGeometry& g) {
    std::vector<double> dx(std::size_t(batch) * g.in_c * g.in_plane(), 0.0);
    for (int n = 0; n < batch; ++n)
        for (int co = 0; co < g.out_c; ++co)
            for (int oy = 0; oy < g.out_h; ++oy)
                for (int ox = 0; ox < g.out_w; ++ox) {
                    const double d = at(dy, g.out_c, g.out_h, g.out_w, n, co, oy, ox);
                    for (int ci = 0; ci < g.in_c; ++ci)
                        for (int ky = 0; ky < g.k; ++ky)
                            for (int kx = 0; kx < g.k; ++kx) {
                                const int iy = oy * g.stride - g.pad + ky * g.dilation;
                                const int ix = ox * g.stride - g.pad + kx * g.dilation;
                                if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
                                dx[((std::size_t(n) * g.in_c + ci) * g.in_h + iy) * g.in_w + ix] +=
                                    d * w[((std::size_t(co) * g.in_c + ci) * g.k + ky) * g.k + kx];
                            }
                }
    return {dx.begin(), dx.end()};
}

/// dw[co][ci][ky][kx] = sum over n, oy, ox of dy[n][co][oy][ox] x[n][ci][iy][ix].
std::vector<float> backward_filter_reference(const std::vector<float>& x, const std::vector<float>& dy, int batch,
                                             const ConvGeometry& g) {
    std::vector<float> dw(std::size_t(g.weight_size()));
    for (int co = 0; co < g.out_c; ++co)
        for (int ci = 0; ci < g.in_c; ++ci)
            for (int ky = 0; ky < g.k; ++ky)
                for (int kx = 0; kx < g.k; ++kx) {
                    double s = 0;
                    for (int n = 0; n < batch; ++n)
                        for (int oy = 0; oy < g.out_h; ++oy)
                            for (int ox = 0; ox < g.out_w; ++ox) {
                                const int iy = oy * g.stride - g.pad + ky * g.dilation;
                                const int ix = ox * g.stride - g.pad + kx * g.dilation;
                                if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) continue;
                                s += double(at(dy, g.out_c, g.out_h, g.out_w, n, co, oy, ox)) *
                                     at(x, g.in_c, g.in_h, g.in_w, n, ci, iy, ix);
                            }
                    dw[((std::size_t(co) * g.in_c + ci) * g.k + ky) * g.k + kx] = float(s);
                }
    return dw;
}

/// One set of direct-convolution kernels (conv_direct.hpp), called by name.
struct DirectPath {
    const char* name;
    bool (*usable)(const ConvGeometry&);
    void (*forward)(const float*, const float*, const float*, float*, int, const ConvGeometry&, const float*, bool);
    void (*backward_data)(const float*, const float*, float*, int, const ConvGeometry&);
    void (*backward_filter)(const float*, const float*, float*, int, const ConvGeometry&);
    /// The forward on an unpooled input that is never materialised (eval fusion of Unpool + conv).
    void (*forward_unpooled)(const cpu::direct::Unpooled&, const float*, const float*, float*, int,
                             const ConvGeometry&, const float*, bool);
    /// The forward max-pooled band by band, the full-size output never written (eval fusion of
    /// conv + MaxPool).
    void (*forward_pooled)(const float*, const float*, const float*, const cpu::direct::Pooled&, int,
                           const ConvGeometry&, const float*, bool);
};
#define SEGNET_TEST_DIRECT_PATH(NAME, NS)                                                                        \
    DirectPath {                                                                                                \
        NAME, &cpu::NS::usable,                                                                                 \
            [](const float* x, const float* w, const float* b, float* y, int n, const ConvGeometry& g,          \
               const float* s, bool r) { cpu::NS::conv2d_forward(x, w, b, y, n, g, s, r); },                    \
            &cpu::NS::conv2d_backward_data, &cpu::NS::conv2d_backward_filter,                                   \
            [](const cpu::direct::Unpooled& u, const float* w, const float* b, float* y, int n,                 \
               const ConvGeometry& g, const float* s, bool r) { cpu::NS::conv2d_forward(nullptr, w, b, y, n, g, s, r, &u); }, \
            [](const float* x, const float* w, const float* b, const cpu::direct::Pooled& p, int n,             \
               const ConvGeometry& g, const float* s, bool r) {                                                 \
                cpu::NS::conv2d_forward(x, w, b, nullptr, n, g, s, r, nullptr, &p);                             \
            }                                                                                                   \
    }
const DirectPath direct_paths[] = {SEGNET_TEST_DIRECT_PATH("AVX-512", avx512), SEGNET_TEST_DIRECT_PATH("AVX2", avx2)};
#undef SEGNET_TEST_DIRECT_PATH

/// max |a - b| / max(1, max |b|): float sums of up to 3136 products against double sums.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
    double diff = 0, scale = 1;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, double(std::abs(a[i] - b[i])));
        scale = std::max(scale, double(std::abs(b[i])));
    }
    return diff / scale;
}

/// "cin 64 cout 11 13x11 k1 batch 2 threads 1", for CAPTURE.
std::string describe(const Case& c, int threads) {
    return "cin " + std::to_string(c.cin) + " cout " + std::to_string(c.cout) + " " + std::to_string(c.h) + "x" +
           std::to_string(c.w) + " k" + std::to_string(c.k) + " dilation " + std::to_string(c.dilation) + " batch " +
           std::to_string(c.batch) + " threads " +
           std::to_string(threads);
}

/// A case's random operands, seeded from its sizes.
struct CaseData {
    std::mt19937 gen;
    std::vector<float> x, w, bias, dy;
    CaseData(const Case& c, int threads, unsigned salt)
        : gen(unsigned(c.cin * 131 + c.cout * 17 + c.h * 7 + c.k + c.batch * 1000 + c.dilation * 10000 + threads) + salt),
          x(random_vector(std::size_t(c.batch) * c.cin * c.h * c.w, gen)),
          w(random_vector(std::size_t(c.cout) * c.cin * c.k * c.k, gen, 0.2f)),
          bias(random_vector(std::size_t(c.cout), gen)),
          dy(random_vector(std::size_t(c.batch) * c.cout * c.h * c.w, gen)) {}
};

void check_case(const Case& c, int threads) {
    segnet::set_num_threads(threads);
    const ConvGeometry g = same_geometry(c);
    const std::string where = describe(c, threads);
    CAPTURE(where);
    const CaseData data(c, threads, 0);
    const auto &x = data.x, &w = data.w, &bias = data.bias, &dy = data.dy;
    const double tol = 2e-5;

    // forward (with and without bias)
    std::vector<float> y(dy.size(), 123.f), y_ref(dy.size()), y_im2col(dy.size());
    cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), c.batch, g);
    cpu::conv2d_forward_reference(x.data(), w.data(), bias.data(), y_ref.data(), c.batch, g);
    cpu::conv2d_forward_im2col(x.data(), w.data(), bias.data(), y_im2col.data(), c.batch, g);
    CHECK(relative_error(y, y_ref) < tol);
    CHECK(relative_error(y_im2col, y_ref) < tol);
    cpu::conv2d_forward(x.data(), w.data(), nullptr, y.data(), c.batch, g);
    cpu::conv2d_forward_reference(x.data(), w.data(), nullptr, y_ref.data(), c.batch, g);
    CHECK(relative_error(y, y_ref) < tol);

    // backward-data (dx overwritten: start from garbage)
    std::vector<float> dx(x.size(), -7.f), dx_im2col(x.size(), 5.f);
    cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), c.batch, g);
    cpu::conv2d_backward_data_im2col(dy.data(), w.data(), dx_im2col.data(), c.batch, g);
    const auto dx_ref = backward_data_reference(dy, w, c.batch, g);
    CHECK(relative_error(dx, dx_ref) < tol);
    CHECK(relative_error(dx_im2col, dx_ref) < tol);

    // backward-filter accumulates into dw and dbias
    std::vector<float> dw(w.size(), 0.5f), dbias(bias.size(), -1.f);
    cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), dbias.data(), c.batch, g);
    auto dw_ref = backward_filter_reference(x, dy, c.batch, g);
    for (auto& v : dw_ref) v += 0.5f;
    CHECK(relative_error(dw, dw_ref) < tol);
    std::vector<float> dw_im2col(w.size(), 0.5f);
    cpu::conv2d_backward_filter_im2col(x.data(), dy.data(), dw_im2col.data(), nullptr, c.batch, g);
    CHECK(relative_error(dw_im2col, dw_ref) < tol);
    for (int co = 0; co < c.cout; ++co) {
        double s = -1;
        for (int n = 0; n < c.batch; ++n)
            for (int i = 0; i < c.h * c.w; ++i) s += dy[(std::size_t(n) * c.cout + co) * c.h * c.w + i];
        CHECK(std::abs(dbias[std::size_t(co)] - s) < 1e-3 * std::max(1.0, std::abs(s)));
    }

    // every direct kernel set the CPU runs, by name (the dispatched one above is one of them)
    for (const DirectPath& p : direct_paths) {
        if (!p.usable(g)) continue;
        CAPTURE(std::string(p.name));
        std::vector<float> yd(dy.size(), 123.f);
        p.forward(x.data(), w.data(), bias.data(), yd.data(), c.batch, g, nullptr, false);
        cpu::conv2d_forward_reference(x.data(), w.data(), bias.data(), y_ref.data(), c.batch, g);
        CHECK(relative_error(yd, y_ref) < tol);
        std::vector<float> dxd(x.size(), -7.f);
        p.backward_data(dy.data(), w.data(), dxd.data(), c.batch, g);
        CHECK(relative_error(dxd, dx_ref) < tol);
        std::vector<float> dwd(w.size(), 0.5f);
        p.backward_filter(x.data(), dy.data(), dwd.data(), c.batch, g);
        CHECK(relative_error(dwd, dw_ref) < tol);
    }
}

}  // namespace

TEST_CASE("gemm: C = A B and C += A B^T against plain loops (panel and block edges, leading dimensions)") {
    std::mt19937 gen(11);
    struct Size {
        std::int64_t m, n, k;
    };
    // 1x1x1; edges of the MR-row and NR-column panels; more than one KC block of the reduction
    // and more than one NC block of columns.
    for (const Size sz : {Size{1, 1, 1}, Size{7, 33, 5}, Size{17, 47, 300}, Size{9, 2100, 3}, Size{64, 70, 513}})
        for (const bool transposed : {false, true})
            for (const bool accumulate : {false, true}) {
                CAPTURE(sz.m);
                CAPTURE(sz.n);
                CAPTURE(sz.k);
                CAPTURE(transposed);
                CAPTURE(accumulate);
                const std::int64_t lda = sz.k + 3, ldb = (transposed ? sz.k : sz.n) + 2, ldc = sz.n + 5;
                const auto a = random_vector(std::size_t(sz.m * lda), gen);
                const auto b = random_vector(std::size_t((transposed ? sz.n : sz.k) * ldb), gen);
                auto c = random_vector(std::size_t(sz.m * ldc), gen);
                const auto c0 = c;
                cpu::gemm(sz.m, sz.n, sz.k, a.data(), lda, b.data(), ldb, transposed, c.data(), ldc, accumulate);
                double worst = 0;
                for (std::int64_t i = 0; i < sz.m; ++i) {
                    for (std::int64_t j = 0; j < sz.n; ++j) {
                        double s = accumulate ? c0[std::size_t(i * ldc + j)] : 0.0;
                        for (std::int64_t p = 0; p < sz.k; ++p)
                            s += double(a[std::size_t(i * lda + p)]) *
                                 b[std::size_t(transposed ? j * ldb + p : p * ldb + j)];
                        worst = std::max(worst, std::abs(s - c[std::size_t(i * ldc + j)]) / (1.0 + std::abs(s)));
                    }
                    // The columns between n and ldc are not C's: untouched.
                    for (std::int64_t j = sz.n; j < ldc; ++j) REQUIRE(c[std::size_t(i * ldc + j)] == c0[std::size_t(i * ldc + j)]);
                }
                CHECK(worst < 1e-5 * std::sqrt(double(sz.k)));
            }
}

TEST_CASE("conv kernels: which path runs") {
    const ConvGeometry same{64, 13, 11, 64, 13, 11, 7, 1, 3, 1};
    const std::string isa = cpu::direct_conv_isa(same);
    MESSAGE("direct convolution kernels in use: "
            << (isa.empty() ? std::string("none (the im2col path is what runs)") : isa + " (compared with the reference below)"));
    for (const DirectPath& p : direct_paths)
        MESSAGE(std::string(p.name) << " direct kernels "
                                    << std::string(p.usable(same) ? "run here (tested by name)" : "not available"));
    CHECK(cpu::avx512::supports(same));
    CHECK(cpu::avx2::supports(same));
    for (const ConvGeometry& g : {ConvGeometry{64, 13, 11, 64, 7, 6, 3, 2, 1, 1},     // stride 2
                                  ConvGeometry{64, 13, 11, 64, 13, 11, 3, 1, 1, 4},   // groups
                                  ConvGeometry{64, 13, 11, 64, 15, 13, 3, 1, 2, 1}}) {  // not same size
        CHECK_FALSE(cpu::avx512::supports(g));
        CHECK_FALSE(cpu::avx2::supports(g));
        CHECK_FALSE(cpu::avx2::usable(g));
        CHECK(std::string(cpu::direct_conv_isa(g)).empty());
    }
    // SEGNET_CONV=im2col switches every direct kernel off, =avx2 AVX-512 only.
    if (cpu::simd::conv_env_is("im2col")) CHECK(isa.empty());
    if (cpu::simd::conv_env_is("avx2") && !isa.empty()) CHECK(isa == "AVX2");
}

TEST_CASE("conv kernels match the reference: SegNet-Basic shapes (7x7, 1x1)") {
    const std::vector<Case> cases = {
        {3, 64, 13, 11, 7, 1},  {64, 64, 13, 11, 7, 2}, {64, 11, 13, 11, 1, 2}, {3, 5, 45, 61, 7, 2},
        {5, 17, 45, 61, 7, 1},  {17, 3, 45, 61, 7, 1},  {17, 5, 45, 61, 1, 1},  {64, 17, 9, 50, 7, 1},
        {5, 64, 3, 2, 7, 2},    {1, 1, 1, 1, 7, 1},     {17, 64, 7, 97, 7, 1},
    };
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_case(c, threads);
}

TEST_CASE("conv kernels match the reference: VGG shapes (3x3)") {
    const std::vector<Case> cases = {
        {3, 64, 13, 11, 3, 2}, {64, 64, 13, 11, 3, 1}, {17, 5, 45, 61, 3, 2}, {5, 17, 45, 61, 3, 1},
        {130, 20, 6, 33, 3, 1}, {64, 11, 23, 30, 3, 1}, {9, 9, 2, 1, 3, 1},
    };
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_case(c, threads);
}

TEST_CASE("conv kernels match the reference: bands wider than half the L2 (column groups)") {
    // Many input channels on long rows: the forward sweeps such a band in column groups (each
    // within half the L2, at least one row tile), here several groups and a short last one for
    // any L2 up to 2 MB (200 x 7 rows x 24 pixels x 4 bytes = 134 KB per tile).
    MESSAGE("L2: " << cpu::direct::l2_bytes() / 1024 << " KB; row tiles per column group: 7x7, 200 channels: "
                   << cpu::direct::column_group_tiles(200, 7, 24, 7, 17)
                   << ", 3x3, 300 channels: " << cpu::direct::column_group_tiles(300, 3, 24, 3, 14));
    CHECK(cpu::direct::column_group_tiles(200, 7, 24, 7, 17) < 17);
    CHECK(cpu::direct::column_group_tiles(1, 1, 24, 1, 3) == 3);      // all tiles when they fit
    CHECK(cpu::direct::column_group_tiles(4096, 9, 24, 7, 3) == 1);  // at least one
    const std::vector<Case> cases = {{200, 5, 3, 401, 7, 1}, {300, 6, 4, 333, 3, 2}};
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_case(c, threads);
}

TEST_CASE("conv kernels: an unpooled input read from the pooled values and indices (eval fusion)") {
    // Every direct path on (values, indices) of a real max pooling gives bit for bit what it gives
    // on the materialised unpooling (the same band values, the same arithmetic), with and
    // without the fusion epilogue; the dispatcher declines where no direct kernel runs.
    struct UnpoolCase {
        int c, cout, h, w, k, pool, batch;
        int dilation = 1;
    };
    for (const UnpoolCase& t : {UnpoolCase{5, 9, 13, 11, 7, 2, 2}, UnpoolCase{17, 6, 45, 61, 3, 2, 1},
                                UnpoolCase{3, 4, 10, 17, 5, 3, 1}, UnpoolCase{64, 8, 9, 50, 7, 2, 1},
                                UnpoolCase{130, 5, 3, 401, 7, 2, 1}, UnpoolCase{17, 6, 45, 61, 3, 2, 1, 4}}) {
        for (int threads : {1, 2}) {
            segnet::set_num_threads(threads);
            CAPTURE(t.c);
            CAPTURE(t.h);
            CAPTURE(t.w);
            CAPTURE(t.k);
            CAPTURE(t.pool);
            CAPTURE(threads);
            std::mt19937 gen(unsigned(t.c * 13 + t.h + t.k + t.pool * 100 + threads));
            const int ph = (t.h + t.pool - 1) / t.pool, pw = (t.w + t.pool - 1) / t.pool;
            const auto pre = random_vector(std::size_t(t.batch) * t.c * t.h * t.w, gen);
            std::vector<float> values(std::size_t(t.batch) * t.c * ph * pw);
            std::vector<std::int32_t> indices(values.size());
            cpu::max_pool_forward(pre.data(), t.batch, t.c, t.h, t.w, t.pool, values.data(), ph, pw, indices.data());
            std::vector<float> unpooled(pre.size(), 5.f);
            cpu::max_unpool_forward(values.data(), indices.data(), t.batch, t.c, ph, pw, unpooled.data(), t.h, t.w);
            CAPTURE(t.dilation);
            const ConvGeometry g{t.c, t.h, t.w, t.cout, t.h, t.w, t.k, 1, t.dilation * (t.k / 2), 1, t.dilation};
            const auto w = random_vector(std::size_t(g.weight_size()), gen, 0.2f);
            const auto bias = random_vector(std::size_t(t.cout), gen);
            const auto scale = random_vector(std::size_t(t.cout), gen);
            const cpu::direct::Unpooled u{values.data(), indices.data(), ph, pw, t.pool};
            const std::size_t out = std::size_t(t.batch) * t.cout * t.h * t.w;
            std::vector<float> ref(out);
            cpu::conv2d_forward_reference(unpooled.data(), w.data(), bias.data(), ref.data(), t.batch, g);
            for (const DirectPath& p : direct_paths) {
                if (!p.usable(g)) continue;
                CAPTURE(std::string(p.name));
                for (const bool epilogue : {false, true}) {
                    const float* s = epilogue ? scale.data() : nullptr;
                    std::vector<float> materialised(out, 1.f), fused(out, 2.f);
                    p.forward(unpooled.data(), w.data(), bias.data(), materialised.data(), t.batch, g, s, epilogue);
                    p.forward_unpooled(u, w.data(), bias.data(), fused.data(), t.batch, g, s, epilogue);
                    CHECK(fused == materialised);
                }
                std::vector<float> fused(out, 2.f);
                p.forward_unpooled(u, w.data(), bias.data(), fused.data(), t.batch, g, nullptr, false);
                CHECK(relative_error(fused, ref) < 2e-5);
            }
            std::vector<float> y(out, 3.f);
            const bool ran = cpu::conv2d_forward_unpooled(u, w.data(), bias.data(), y.data(), t.batch, g);
            CHECK(ran == (!std::string(cpu::direct_conv_isa(g)).empty() && !cpu::winograd_beats_fusion(g, t.batch)));
            if (ran) CHECK(relative_error(y, ref) < 2e-5);
            else CHECK(y == std::vector<float>(out, 3.f));  // declined: nothing written
        }
    }
    // The pooled size must be the pooling of the convolution's input size.
    const ConvGeometry g{2, 9, 8, 3, 9, 8, 3, 1, 1, 1};
    std::vector<float> values(2 * 4 * 4), w(std::size_t(g.weight_size())), y(3 * 9 * 8);
    std::vector<std::int32_t> indices(values.size());
    CHECK_THROWS_AS(cpu::conv2d_forward_unpooled({values.data(), indices.data(), 4, 4, 2}, w.data(), nullptr, y.data(),
                                                 1, g),
                    std::invalid_argument);
}

TEST_CASE("conv kernels: the output max-pooled band by band (eval fusion of conv + MaxPool)") {
    // Every direct path pooling its own bands gives bit for bit the values and indices of
    // max_pool_forward on the map the same path writes (the same accumulators; the same pooling
    // rule on rows that now come from a per-thread band), with and without the fusion epilogue:
    // odd sizes (ceil windows of one row or column), pool 2 and 3, bands that must hold whole
    // windows (130 channels x 401 columns: bands of a few rows), batch 2. The dispatcher declines
    // where no direct kernel runs.
    struct PoolCase {
        int c, cout, h, w, k, pool, batch;
        int dilation = 1;
    };
    for (const PoolCase& t : {PoolCase{5, 9, 13, 11, 7, 2, 2}, PoolCase{17, 6, 45, 61, 3, 2, 1},
                              PoolCase{3, 4, 10, 17, 5, 3, 1}, PoolCase{64, 19, 9, 50, 7, 2, 1},
                              PoolCase{130, 5, 29, 401, 7, 3, 1}, PoolCase{130, 5, 30, 401, 3, 2, 2},
                              PoolCase{17, 6, 45, 61, 3, 2, 1, 4}}) {
        for (int threads : {1, 2}) {
            segnet::set_num_threads(threads);
            CAPTURE(t.c);
            CAPTURE(t.cout);
            CAPTURE(t.h);
            CAPTURE(t.w);
            CAPTURE(t.k);
            CAPTURE(t.pool);
            CAPTURE(threads);
            std::mt19937 gen(unsigned(t.c * 29 + t.h + t.k + t.pool * 100 + threads));
            const auto x = random_vector(std::size_t(t.batch) * t.c * t.h * t.w, gen);
            CAPTURE(t.dilation);
            const ConvGeometry g{t.c, t.h, t.w, t.cout, t.h, t.w, t.k, 1, t.dilation * (t.k / 2), 1, t.dilation};
            const auto w = random_vector(std::size_t(g.weight_size()), gen, 0.2f);
            const auto bias = random_vector(std::size_t(t.cout), gen);
            const auto scale = random_vector(std::size_t(t.cout), gen);
            const int ph = (t.h + t.pool - 1) / t.pool, pw = (t.w + t.pool - 1) / t.pool;
            const std::size_t full = std::size_t(t.batch) * t.cout * t.h * t.w;
            const std::size_t pooled = std::size_t(t.batch) * t.cout * ph * pw;
            for (const DirectPath& p : direct_paths) {
                if (!p.usable(g)) continue;
                CAPTURE(std::string(p.name));
                for (const bool epilogue : {false, true}) {
                    const float* s = epilogue ? scale.data() : nullptr;
                    std::vector<float> y(full), values_ref(pooled, 1.f), values(pooled, 2.f);
                    std::vector<std::int32_t> indices_ref(pooled, -1), indices(pooled, -2);
                    p.forward(x.data(), w.data(), bias.data(), y.data(), t.batch, g, s, epilogue);
                    cpu::max_pool_forward(y.data(), t.batch, t.cout, t.h, t.w, t.pool, values_ref.data(), ph, pw,
                                          indices_ref.data());
                    p.forward_pooled(x.data(), w.data(), bias.data(), {values.data(), indices.data(), t.pool}, t.batch,
                                     g, s, epilogue);
                    CHECK(values == values_ref);
                    CHECK(indices == indices_ref);
                }
            }
            // The dispatcher: against the reference convolution, pooled by the plain loop.
            std::vector<float> y_ref(full), values_ref(pooled), values(pooled, 3.f);
            std::vector<std::int32_t> indices_ref(pooled), indices(pooled, -3);
            cpu::conv2d_forward_reference(x.data(), w.data(), bias.data(), y_ref.data(), t.batch, g);
            cpu::max_pool_forward(y_ref.data(), t.batch, t.cout, t.h, t.w, t.pool, values_ref.data(), ph, pw,
                                  indices_ref.data());
            const bool ran = cpu::conv2d_forward_pooled(x.data(), w.data(), bias.data(), t.batch, g, t.pool,
                                                        values.data(), indices.data());
            CHECK(ran == (!std::string(cpu::direct_conv_isa(g)).empty() && !cpu::winograd_beats_fusion(g, t.batch)));
            if (ran) {
                CHECK(relative_error(values, values_ref) < 2e-5);
                // An argmax may differ from the reference's only where two values of the window
                // are within rounding of each other (in the reference's map).
                int differing = 0;
                for (std::size_t i = 0; i < pooled; ++i) {
                    if (indices[i] == indices_ref[i]) continue;
                    ++differing;
                    const std::size_t plane = i / std::size_t(ph * pw) * std::size_t(t.h * t.w);
                    CHECK(std::abs(y_ref[plane + std::size_t(indices[i])] - y_ref[plane + std::size_t(indices_ref[i])]) <
                          1e-4f);
                }
                CHECK(differing * 1000 <= int(pooled));
            } else {
                CHECK(values == std::vector<float>(pooled, 3.f));  // declined: nothing written
            }
        }
    }
}

namespace {

/// The forward with weight_scale and relu (eval fusion) against the reference on w * scale
/// followed by max(., 0), on the dispatched and the im2col path; relu alone is bit for bit the
/// plain forward clamped at 0 (the same accumulators, clamped before the store).
void check_epilogue(const ConvGeometry& g, int batch, int threads) {
    segnet::set_num_threads(threads);
    CAPTURE(g.in_c);
    CAPTURE(g.out_c);
    CAPTURE(g.in_h);
    CAPTURE(g.in_w);
    CAPTURE(g.k);
    CAPTURE(g.groups);
    CAPTURE(batch);
    CAPTURE(threads);
    std::mt19937 gen(unsigned(g.in_c * 31 + g.out_c * 7 + g.in_h + g.k * 3 + batch * 100 + threads));
    const auto x = random_vector(std::size_t(batch) * g.in_c * g.in_plane(), gen);
    const auto w = random_vector(std::size_t(g.weight_size()), gen, 0.2f);
    const auto bias = random_vector(std::size_t(g.out_c), gen);
    std::uniform_real_distribution<float> ud(0.3f, 2.f);
    std::vector<float> scale(std::size_t(g.out_c));
    for (auto& v : scale) v = ud(gen) * (gen() % 4 == 0 ? -1.f : 1.f);  // a batch norm's gamma may be negative
    std::vector<float> w_scaled(w.size());
    const std::size_t per = w.size() / std::size_t(g.out_c);
    for (std::size_t i = 0; i < w.size(); ++i) w_scaled[i] = w[i] * scale[i / per];
    const std::size_t out = std::size_t(batch) * g.out_c * g.out_plane();
    auto relu = [](std::vector<float> v) {
        for (auto& e : v) e = std::max(e, 0.f);
        return v;
    };
    std::vector<float> ref(out), ref_scaled(out);
    cpu::conv2d_forward_reference(x.data(), w.data(), bias.data(), ref.data(), batch, g);
    cpu::conv2d_forward_reference(x.data(), w_scaled.data(), bias.data(), ref_scaled.data(), batch, g);
    REQUIRE(std::count_if(ref.begin(), ref.end(), [](float v) { return v < 0; }) > 0);  // the ReLU matters
    using Forward = void (*)(const float*, const float*, const float*, float*, int, const ConvGeometry&, const float*,
                             bool);
    std::vector<std::pair<const char*, Forward>> paths = {{"dispatched", &cpu::conv2d_forward},
                                                          {"im2col", &cpu::conv2d_forward_im2col}};
    for (const DirectPath& p : direct_paths)
        if (p.usable(g)) paths.emplace_back(p.name, p.forward);
    for (const auto& [name, forward] : paths) {
        CAPTURE(std::string(name));
        std::vector<float> plain(out, 9.f), y(out, 9.f);
        forward(x.data(), w.data(), bias.data(), plain.data(), batch, g, nullptr, false);
        forward(x.data(), w.data(), bias.data(), y.data(), batch, g, nullptr, true);
        CHECK(y == relu(plain));
        forward(x.data(), w.data(), bias.data(), y.data(), batch, g, scale.data(), true);
        CHECK(relative_error(y, relu(ref_scaled)) < 2e-5);
        forward(x.data(), w.data(), nullptr, y.data(), batch, g, scale.data(), false);
        std::vector<float> ref_nobias(out);
        cpu::conv2d_forward_reference(x.data(), w_scaled.data(), nullptr, ref_nobias.data(), batch, g);
        CHECK(relative_error(y, ref_nobias) < 2e-5);
    }
}

}  // namespace

TEST_CASE("conv kernels match the reference: register-block and row tails (k 1, 3, 5, 7)") {
    // Output channel counts around the register blocks (AVX2: 4 forward, 2 backward-filter;
    // AVX-512: 8, 4), widths around the vector widths and the 3-vector row tiles (AVX2: 8 and 24
    // pixels, AVX-512: 16 and 48), tap counts (in_c k k) around the 5 and 6 tap blocks.
    const std::vector<Case> cases = {
        {1, 1, 5, 1, 3, 1},   {2, 3, 4, 7, 3, 1},   {3, 5, 3, 8, 5, 2},   {4, 7, 5, 9, 1, 1},   {5, 9, 2, 23, 3, 1},
        {6, 13, 3, 24, 5, 1}, {7, 4, 4, 25, 7, 2},  {3, 12, 2, 47, 3, 1}, {2, 8, 3, 49, 5, 1},  {9, 6, 6, 17, 5, 1},
        {11, 2, 5, 33, 7, 1}, {1, 16, 7, 40, 5, 1}, {8, 3, 1, 72, 3, 2},  {13, 1, 9, 15, 1, 1},
    };
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_case(c, threads);
}

TEST_CASE("conv kernels match the reference: atrous 3x3 (dilation 2, 4, 12: DeepLab, PSPNet)") {
    // Same-size atrous convolutions (pad = dilation) on the direct kernels: odd sizes, channels
    // around the vector widths and register blocks, a dilation as large as the map (every tap but
    // the centre reads the zero border) and larger (DeepLab-LargeFOV's 12 on a small map).
    const std::vector<Case> cases = {
        {3, 5, 13, 11, 3, 2, 2},  {17, 9, 45, 61, 3, 1, 2},  {64, 11, 23, 30, 3, 1, 4}, {5, 17, 9, 50, 3, 2, 4},
        {9, 13, 29, 37, 3, 1, 12}, {7, 3, 5, 7, 3, 1, 12},   {130, 20, 6, 33, 3, 1, 2}, {2, 8, 3, 49, 5, 1, 2},
        {11, 2, 5, 33, 7, 1, 3},  {4, 7, 5, 9, 1, 1, 5},     {1, 1, 1, 1, 3, 1, 4},
    };
    for (const Case& c : cases) {
        CHECK(std::string(cpu::direct_conv_isa(same_geometry(c))) == cpu::direct_conv_isa(same_geometry(Case{1, 1, 3, 3, 3, 1})));
        for (int threads : {1, 2}) check_case(c, threads);
    }
}

TEST_CASE("conv kernels: the eval-fusion epilogue (per-channel weight scale, ReLU at the store)") {
    const std::vector<Case> cases = {
        {5, 17, 45, 61, 7, 1}, {17, 5, 13, 11, 3, 2}, {3, 64, 13, 11, 7, 1}, {64, 11, 23, 30, 3, 1},
        {130, 20, 6, 33, 3, 1}, {17, 5, 45, 61, 1, 2}, {9, 9, 2, 1, 3, 1}, {64, 64, 7, 97, 7, 1},
        {17, 9, 45, 61, 3, 1, 2}, {9, 13, 29, 37, 3, 2, 12},
    };
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_epilogue(same_geometry(c), c.batch, threads);
    // Depthwise (groups) and stride 2: the im2col path only.
    check_epilogue({8, 13, 11, 8, 13, 11, 3, 1, 1, 8}, 2, 2);
    check_epilogue({5, 13, 11, 7, 7, 6, 3, 2, 1, 1}, 2, 2);
}

TEST_CASE("conv kernels: geometries the fast path does not take still use the im2col path") {
    segnet::set_num_threads(2);
    std::mt19937 gen(3);
    const ConvGeometry g{5, 13, 11, 7, 7, 6, 3, 2, 1, 1};  // stride 2
    const auto x = random_vector(std::size_t(2) * 5 * 13 * 11, gen);
    const auto w = random_vector(std::size_t(g.weight_size()), gen);
    std::vector<float> y(std::size_t(2) * 7 * 7 * 6), y_ref(y.size());
    cpu::conv2d_forward(x.data(), w.data(), nullptr, y.data(), 2, g);
    cpu::conv2d_forward_reference(x.data(), w.data(), nullptr, y_ref.data(), 2, g);
    CHECK(relative_error(y, y_ref) < 2e-5);
    const auto dy = random_vector(y.size(), gen);
    std::vector<float> dx(x.size());
    cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), 2, g);
    CHECK(relative_error(dx, backward_data_reference(dy, w, 2, g)) < 2e-5);
    std::vector<float> dw(w.size());
    cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), nullptr, 2, g);
    CHECK(relative_error(dw, backward_filter_reference(x, dy, 2, g)) < 2e-5);
}

TEST_CASE("max pooling 2x2: the vectorised rows keep the scalar rule (ties, NaN, odd sizes)") {
    std::mt19937 gen(11);
    std::uniform_int_distribution<int> small(-2, 2);  // many ties
    for (int threads : {1, 2}) {
        segnet::set_num_threads(threads);
        for (auto [h, w] : {std::pair{13, 11}, std::pair{45, 61}, std::pair{2, 2}, std::pair{1, 5}, std::pair{7, 97}}) {
            CAPTURE(h);
            CAPTURE(w);
            const int n = 2, c = 3, oh = (h + 1) / 2, ow = (w + 1) / 2;
            std::vector<float> x(std::size_t(n) * c * h * w);
            for (auto& v : x) v = float(small(gen));
            x[5] = std::nanf("");
            x[std::size_t(w) + 3] = std::nanf("");
            for (int i = 0; i < 4 && std::size_t(16 + i) < x.size(); ++i) x[std::size_t(16 + i)] = std::nanf("");
            std::vector<float> y(std::size_t(n) * c * oh * ow);
            std::vector<std::int32_t> idx(y.size());
            cpu::max_pool_forward(x.data(), n, c, h, w, 2, y.data(), oh, ow, idx.data());
            bool same = true;
            for (int nc = 0; nc < n * c; ++nc)
                for (int oy = 0; oy < oh; ++oy)
                    for (int ox = 0; ox < ow; ++ox) {
                        const float* xp = x.data() + std::size_t(nc) * h * w;
                        float best = -INFINITY;
                        std::int32_t at = oy * 2 * w + ox * 2;
                        for (int iy = oy * 2; iy < std::min(h, oy * 2 + 2); ++iy)
                            for (int ix = ox * 2; ix < std::min(w, ox * 2 + 2); ++ix)
                                if (xp[iy * w + ix] > best) best = xp[iy * w + ix], at = iy * w + ix;
                        const std::size_t o = (std::size_t(nc) * oh + oy) * ow + ox;
                        const float want = xp[at];
                        same = same && idx[o] == at &&
                               ((std::isnan(want) && std::isnan(y[o])) || want == y[o]);
                    }
            CHECK(same);
        }
    }
}

namespace {

/// One set of Winograd F(4x4, 3x3) kernels (conv_winograd.hpp), called by name.
struct WinogradPath {
    const char* name;
    bool (*usable)(const ConvGeometry&);
    void (*forward)(const float*, const float*, const float*, float*, int, const ConvGeometry&, const float*, bool);
    void (*backward_data)(const float*, const float*, float*, int, const ConvGeometry&);
};
const WinogradPath winograd_paths[] = {
    {"AVX-512", &cpu::avx512::winograd_usable, &cpu::avx512::winograd_forward, &cpu::avx512::winograd_backward_data},
    {"AVX2", &cpu::avx2::winograd_usable, &cpu::avx2::winograd_forward, &cpu::avx2::winograd_backward_data}};

/// Winograd's error against the im2col path, relative to the output's largest value: measured
/// below 1e-5 on SegNet's shapes up to 512 channels (conv_winograd.hpp), about 3e-6 at the
/// channel counts here; the direct kernels' bound (2e-5) would leave little margin.
constexpr double winograd_tolerance = 5e-5;

/// Winograd forward (with and without bias, with the eval-fusion scale and ReLU) and
/// backward-data against the im2col path, on realistic data: ReLU'd inputs, He-initialised weights.
void check_winograd(const WinogradPath& p, int cin, int cout, int h, int w, int batch, int threads) {
    segnet::set_num_threads(threads);
    const ConvGeometry g{cin, h, w, cout, h, w, 3, 1, 1, 1};
    CAPTURE(std::string(p.name));
    CAPTURE(cin);
    CAPTURE(cout);
    CAPTURE(h);
    CAPTURE(w);
    CAPTURE(batch);
    CAPTURE(threads);
    std::mt19937 gen(unsigned(cin * 131 + cout * 17 + h * 7 + w + batch * 1000 + threads));
    auto x = random_vector(std::size_t(batch) * cin * h * w, gen);
    for (auto& v : x) v = std::max(v, 0.f);
    const auto weights = random_vector(std::size_t(g.weight_size()), gen, std::sqrt(2.f / float(cin * 9)));
    const auto bias = random_vector(std::size_t(cout), gen);
    const auto dy = random_vector(std::size_t(batch) * cout * h * w, gen);
    std::uniform_real_distribution<float> ud(0.3f, 2.f);
    std::vector<float> scale(static_cast<std::size_t>(cout));
    for (auto& v : scale) v = ud(gen) * (gen() % 4 == 0 ? -1.f : 1.f);

    std::vector<float> y(dy.size(), 123.f), y_ref(dy.size());
    for (const float* b : {bias.data(), static_cast<const float*>(nullptr)}) {
        p.forward(x.data(), weights.data(), b, y.data(), batch, g, nullptr, false);
        cpu::conv2d_forward_im2col(x.data(), weights.data(), b, y_ref.data(), batch, g);
        CHECK(relative_error(y, y_ref) < winograd_tolerance);
    }
    p.forward(x.data(), weights.data(), bias.data(), y.data(), batch, g, scale.data(), true);
    cpu::conv2d_forward_im2col(x.data(), weights.data(), bias.data(), y_ref.data(), batch, g, scale.data(), true);
    CHECK(relative_error(y, y_ref) < winograd_tolerance);
    CHECK(std::count(y.begin(), y.end(), 0.f) > 0);  // the ReLU clamped something

    std::vector<float> dx(x.size(), -7.f), dx_ref(x.size());
    p.backward_data(dy.data(), weights.data(), dx.data(), batch, g);
    cpu::conv2d_backward_data_im2col(dy.data(), weights.data(), dx_ref.data(), batch, g);
    CHECK(relative_error(dx, dx_ref) < winograd_tolerance);
}

}  // namespace

TEST_CASE("conv kernels: Winograd F(4x4, 3x3) forward and backward-data against the im2col path") {
    // Tile tails (sizes not multiples of 4), maps smaller than a tile, rows of several tile
    // groups with a partial last one (AVX-512 16 tiles = 64 pixels, AVX2 32), more groups than a
    // block (3), odd channel counts around the register blocks (AVX-512 8, AVX2 4 output
    // channels), batch > 1, 1 and 2 threads (2: the output channels split into chunks too).
    struct Shape {
        int cin, cout, h, w, batch;
    };
    const std::vector<Shape> shapes = {
        {1, 1, 1, 1, 1},   {3, 5, 2, 3, 2},   {5, 7, 4, 4, 1},    {17, 9, 23, 30, 2}, {64, 64, 5, 70, 1},
        {7, 13, 9, 131, 2}, {3, 64, 13, 11, 1}, {64, 17, 22, 30, 1}, {33, 40, 15, 66, 2},
    };
    for (const WinogradPath& p : winograd_paths) {
        if (!p.usable({8, 8, 8, 8, 8, 8, 3, 1, 1, 1})) {
            MESSAGE(std::string(p.name) << " Winograd kernels skipped: this CPU (or SEGNET_CONV) does not run them");
            continue;
        }
        for (const Shape& s : shapes)
            for (int threads : {1, 2}) check_winograd(p, s.cin, s.cout, s.h, s.w, s.batch, threads);
    }
}

TEST_CASE("conv kernels: when the entry points take Winograd") {
    using cpu::winograd::Mode;
    const ConvGeometry segnet_layer{64, 45, 60, 64, 45, 60, 3, 1, 1, 1};
    CHECK(cpu::winograd::supports(segnet_layer));
    for (const ConvGeometry& g : {ConvGeometry{64, 13, 11, 64, 7, 6, 3, 2, 1, 1},      // stride 2
                                  ConvGeometry{64, 13, 11, 64, 13, 11, 3, 1, 1, 4},    // groups
                                  ConvGeometry{64, 13, 11, 64, 13, 11, 7, 1, 3, 1},    // 7x7
                                  ConvGeometry{64, 13, 11, 64, 15, 13, 3, 1, 2, 1}}) {  // not same size
        CHECK_FALSE(cpu::winograd::supports(g));
        cpu::winograd::set_mode(Mode::on);
        CHECK_FALSE(cpu::winograd::chosen(g, 1));
    }
    const Mode before = cpu::winograd::mode();
    cpu::winograd::set_mode(Mode::off);
    CHECK_FALSE(cpu::winograd::chosen(segnet_layer, 1));
    // the measured rule: channels >= 64, with AVX-512 >= 2048 pixels in the batch
    const ConvGeometry small_map{512, 23, 30, 512, 23, 30, 3, 1, 1, 1};
    for (bool avx512 : {false, true}) {
        CHECK(cpu::winograd::faster_than_direct(segnet_layer, 1, avx512));
        CHECK_FALSE(cpu::winograd::faster_than_direct({3, 45, 60, 64, 45, 60, 3, 1, 1, 1}, 1, avx512));
        CHECK(cpu::winograd::faster_than_direct(small_map, 4, avx512));
    }
    CHECK_FALSE(cpu::winograd::faster_than_direct(small_map, 1, true));
    CHECK(cpu::winograd::faster_than_direct(small_map, 1, false));
    cpu::winograd::set_mode(Mode::on);
    CHECK(cpu::winograd::chosen(segnet_layer, 1) == cpu::winograd::usable(segnet_layer));
    if (cpu::winograd::usable(segnet_layer)) {
        // the dispatched entry points, forced onto Winograd
        segnet::set_num_threads(2);
        std::mt19937 gen(11);
        const ConvGeometry g{24, 10, 21, 20, 10, 21, 3, 1, 1, 1};
        const auto x = random_vector(std::size_t(2) * 24 * 10 * 21, gen);
        const auto w = random_vector(std::size_t(g.weight_size()), gen, 0.1f);
        std::vector<float> y(std::size_t(2) * 20 * 10 * 21), y_ref(y.size()), dx(x.size()), dx_ref(x.size());
        cpu::conv2d_forward(x.data(), w.data(), nullptr, y.data(), 2, g);
        cpu::conv2d_forward_im2col(x.data(), w.data(), nullptr, y_ref.data(), 2, g);
        CHECK(relative_error(y, y_ref) < winograd_tolerance);
        cpu::conv2d_backward_data(y.data(), w.data(), dx.data(), 2, g);
        cpu::conv2d_backward_data_im2col(y.data(), w.data(), dx_ref.data(), 2, g);
        CHECK(relative_error(dx, dx_ref) < winograd_tolerance);
    } else {
        MESSAGE("Winograd kernels skipped: this CPU has neither AVX-512 nor AVX2 + FMA (or SEGNET_CONV=im2col)");
    }
    cpu::winograd::set_mode(before);
}

// --- bf16 kernels (Precision::bf16 on AVX512-BF16) ------------------------------------------------

namespace {

/// Whether this CPU runs the bf16 kernels (AVX512-BF16, SEGNET_CONV allowing AVX-512): the tests
/// that need them are reported skipped where it does not, the FP32-fallback test where it does.
const bool bf16_units = cpu::bf16_units();

std::vector<float> bf16_rounded(std::vector<float> v) {
    for (auto& e : v) e = cpu::direct::bf16_round(e);
    return v;
}

std::vector<float> absolute(std::vector<float> v) {
    for (auto& e : v) e = std::abs(e);
    return v;
}

/// Tolerances of the bf16 kernels, from bf16's rounding (8 significant bits, round to nearest
/// even: relative error at most 2^-8 per rounded operand):
///  - against the reference on the bf16-rounded operands: each product of two bf16 values is
///    exact in FP32 (8 x 8 significant bits), so only the FP32 accumulation order differs from
///    the double-precision reference: the FP32 kernels' tolerance (2e-5 of max(1, max |ref|)).
///  - against the plain FP32 reference, element by element: each product is off by at most
///    (1 + 2^-8)^2 - 1 < 2^-7 * 1.01 of |x w|, so the sum by at most that times sum |x| |w| (the
///    same convolution on absolute values), plus the accumulation's 2e-5.
constexpr double bf16_tight_tol = 2e-5;
constexpr double bf16_product_error = 1.01 / 128;

/// |got - ref| <= bf16_product_error * abs_ref + 2e-5 max(1, max |ref|) everywhere (abs_ref: the
/// operation on the operands' absolute values).
bool within_bf16_bound(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<float>& abs_ref) {
    double scale = 1;
    for (float v : ref) scale = std::max(scale, double(std::abs(v)));
    for (std::size_t i = 0; i < got.size(); ++i)
        if (std::abs(double(got[i]) - ref[i]) > bf16_product_error * abs_ref[i] + 2e-5 * scale) return false;
    return true;
}

/// The dispatched forward, backward-data and backward-filter under Precision::bf16 against the
/// reference on bf16-rounded operands (tight) and on the operands as they are (the bf16 bound),
/// and different from the FP32 result (the bf16 kernels ran, not FP32); the forward also with
/// the eval-fusion epilogue (weights scaled before they are rounded, ReLU) and the fused
/// unpooling / pooling bit for bit the bf16 forward on the materialised map.
void check_bf16_case(const Case& c, int threads) {
    segnet::set_num_threads(threads);
    const ConvGeometry g = same_geometry(c);
    const std::string where = describe(c, threads);
    CAPTURE(where);
    CaseData data(c, threads, 5);
    const auto &x = data.x, &w = data.w, &bias = data.bias, &dy = data.dy;
    const auto xr = bf16_rounded(x), wr = bf16_rounded(w), dyr = bf16_rounded(dy);
    const std::size_t out = dy.size();

    std::vector<float> y_fp32(out), dx_fp32(x.size()), dw_fp32(w.size(), 0.5f);
    cpu::conv2d_forward(x.data(), w.data(), bias.data(), y_fp32.data(), c.batch, g);
    cpu::conv2d_backward_data(dy.data(), w.data(), dx_fp32.data(), c.batch, g);
    cpu::conv2d_backward_filter(x.data(), dy.data(), dw_fp32.data(), nullptr, c.batch, g);

    segnet::PrecisionScope bf16(segnet::Precision::bf16);
    if (!cpu::bf16_kernels_run(g)) {
        // No BF16 units take g on this CPU (with AMX: fewer than 16 channels, which run FP32
        // there): exactly the FP32 results.
        std::vector<float> y(out), dx(x.size()), dw(w.size(), 0.5f);
        cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), c.batch, g);
        cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), c.batch, g);
        cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), nullptr, c.batch, g);
        CHECK(y == y_fp32);
        CHECK(dx == dx_fp32);
        CHECK(dw == dw_fp32);
        return;
    }
    // forward, with and without bias
    std::vector<float> y(out, 123.f), ref(out), ref_rounded(out), abs_ref(out);
    cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), c.batch, g);
    cpu::conv2d_forward_reference(xr.data(), wr.data(), bias.data(), ref_rounded.data(), c.batch, g);
    cpu::conv2d_forward_reference(x.data(), w.data(), bias.data(), ref.data(), c.batch, g);
    const auto xa = absolute(x), wa = absolute(w), dya = absolute(dy);
    cpu::conv2d_forward_reference(xa.data(), wa.data(), nullptr, abs_ref.data(), c.batch, g);
    CHECK(relative_error(y, ref_rounded) < bf16_tight_tol);
    CHECK(within_bf16_bound(y, ref, abs_ref));
    CHECK(y != y_fp32);
    cpu::conv2d_forward(x.data(), w.data(), nullptr, y.data(), c.batch, g);
    cpu::conv2d_forward_reference(xr.data(), wr.data(), nullptr, ref_rounded.data(), c.batch, g);
    CHECK(relative_error(y, ref_rounded) < bf16_tight_tol);

    // the eval-fusion epilogue: w * scale rounded, then ReLU
    std::uniform_real_distribution<float> ud(0.3f, 2.f);
    std::vector<float> scale(std::size_t(c.cout));
    for (auto& v : scale) v = ud(data.gen) * (data.gen() % 4 == 0 ? -1.f : 1.f);
    std::vector<float> w_scaled(w.size());
    const std::size_t per = w.size() / std::size_t(c.cout);
    for (std::size_t i = 0; i < w.size(); ++i) w_scaled[i] = w[i] * scale[i / per];
    const auto wsr = bf16_rounded(w_scaled);
    cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), c.batch, g, scale.data(), true);
    cpu::conv2d_forward_reference(xr.data(), wsr.data(), bias.data(), ref_rounded.data(), c.batch, g);
    for (auto& v : ref_rounded) v = std::max(v, 0.f);
    CHECK(relative_error(y, ref_rounded) < bf16_tight_tol);

    // the fused unpooling and pooling (2x2): bit for bit the bf16 forward on the materialised map
    if (c.h >= 2 && c.w >= 2) {
        const int ph = (c.h + 1) / 2, pw = (c.w + 1) / 2;
        std::vector<float> values(std::size_t(c.batch) * c.cin * ph * pw);
        std::vector<std::int32_t> indices(values.size());
        cpu::max_pool_forward(x.data(), c.batch, c.cin, c.h, c.w, 2, values.data(), ph, pw, indices.data());
        std::vector<float> unpooled(x.size());
        cpu::max_unpool_forward(values.data(), indices.data(), c.batch, c.cin, ph, pw, unpooled.data(), c.h, c.w);
        std::vector<float> materialised(out, 1.f), fused(out, 2.f);
        cpu::conv2d_forward(unpooled.data(), w.data(), bias.data(), materialised.data(), c.batch, g, scale.data(), true);
        const cpu::direct::Unpooled u{values.data(), indices.data(), ph, pw, 2};
        // The AMX kernels have no fused (un)pooling: the calls decline and write nothing.
        const bool fused_kernels = !cpu::amx::wanted(g);
        CHECK(cpu::conv2d_forward_unpooled(u, w.data(), bias.data(), fused.data(), c.batch, g, scale.data(), true) ==
              fused_kernels);
        CHECK(fused == (fused_kernels ? materialised : std::vector<float>(out, 2.f)));

        const int oh = (c.h + 1) / 2, ow = (c.w + 1) / 2;
        const std::size_t pooled = std::size_t(c.batch) * c.cout * oh * ow;
        std::vector<float> values_ref(pooled), values_fused(pooled, 3.f);
        std::vector<std::int32_t> indices_ref(pooled), indices_fused(pooled, -3);
        cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), c.batch, g);
        cpu::max_pool_forward(y.data(), c.batch, c.cout, c.h, c.w, 2, values_ref.data(), oh, ow, indices_ref.data());
        CHECK(cpu::conv2d_forward_pooled(x.data(), w.data(), bias.data(), c.batch, g, 2, values_fused.data(),
                                         indices_fused.data()) == fused_kernels);
        CHECK(values_fused == (fused_kernels ? values_ref : std::vector<float>(pooled, 3.f)));
        CHECK(indices_fused == (fused_kernels ? indices_ref : std::vector<std::int32_t>(pooled, -3)));
    }

    // backward-data (dx overwritten: start from garbage)
    std::vector<float> dx(x.size(), -7.f);
    cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), c.batch, g);
    CHECK(relative_error(dx, backward_data_reference(dyr, wr, c.batch, g)) < bf16_tight_tol);
    CHECK(within_bf16_bound(dx, backward_data_reference(dy, w, c.batch, g), backward_data_reference(dya, wa, c.batch, g)));
    CHECK(dx != dx_fp32);

    // backward-filter accumulates into dw; dbias stays FP32
    std::vector<float> dw(w.size(), 0.5f), dbias(bias.size(), -1.f);
    cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), dbias.data(), c.batch, g);
    auto dw_ref_rounded = backward_filter_reference(xr, dyr, c.batch, g), dw_ref = backward_filter_reference(x, dy, c.batch, g);
    for (auto& v : dw_ref_rounded) v += 0.5f;
    for (auto& v : dw_ref) v += 0.5f;
    CHECK(relative_error(dw, dw_ref_rounded) < bf16_tight_tol);
    CHECK(within_bf16_bound(dw, dw_ref, backward_filter_reference(xa, dya, c.batch, g)));
    CHECK(dw != dw_fp32);
    for (int co = 0; co < c.cout; ++co) {
        double s = -1;
        for (int n = 0; n < c.batch; ++n)
            for (int i = 0; i < c.h * c.w; ++i) s += dy[(std::size_t(n) * c.cout + co) * c.h * c.w + i];
        CHECK(std::abs(dbias[std::size_t(co)] - s) < 1e-3 * std::max(1.0, std::abs(s)));
    }
}

}  // namespace

TEST_CASE("bf16 rounding: to nearest even, as vcvtneps2bf16") {
    CHECK(cpu::direct::bf16_bits(1.f) == 0x3F80u);
    CHECK(cpu::direct::bf16_round(1.f + 1.f / 256) == 1.f);               // a tie: to the even 1.0
    CHECK(cpu::direct::bf16_round(1.f + 3.f / 256) == 1.f + 4.f / 256);   // a tie: to the even 1 + 2/128
    CHECK(cpu::direct::bf16_round(1.f + 1.f / 256 + 1.f / 4096) == 1.f + 1.f / 128);  // above the tie
    CHECK(cpu::direct::bf16_round(-3.f) == -3.f);
    CHECK(std::isinf(cpu::direct::bf16_round(INFINITY)));
    CHECK(std::isnan(cpu::direct::bf16_round(std::nanf(""))));
    CHECK(std::isinf(cpu::direct::bf16_round(3.4e38f)));  // above bf16's largest finite value: rounds up
}

TEST_CASE("bf16 conv kernels match the reference: SegNet-Basic and VGG shapes" * doctest::skip(!bf16_units)) {
    const std::vector<Case> cases = {
        {3, 64, 13, 11, 7, 1},  {64, 64, 13, 11, 7, 2}, {64, 11, 13, 11, 1, 2}, {5, 17, 45, 61, 7, 1},
        {17, 64, 7, 97, 7, 1},  {3, 64, 13, 11, 3, 2},  {64, 64, 13, 11, 3, 1}, {17, 5, 45, 61, 3, 2},
        {130, 20, 6, 33, 3, 1}, {64, 11, 23, 30, 3, 1}, {9, 9, 2, 1, 3, 1},     {200, 5, 3, 401, 7, 1},
    };
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_bf16_case(c, threads);
}

TEST_CASE("bf16 conv kernels match the reference: odd channels, register-block and row tails" *
          doctest::skip(!bf16_units)) {
    // Odd input channel counts (a zero channel pads the last pair), output channels around the
    // register blocks (8 forward, 4 backward-filter), widths around 16 and 48 pixels, streams
    // around 32 pixels (backward-filter).
    const std::vector<Case> cases = {
        {1, 1, 5, 1, 3, 1},  {2, 3, 4, 7, 3, 1},  {3, 5, 3, 8, 5, 2},   {4, 7, 5, 9, 1, 1},   {5, 9, 2, 23, 3, 1},
        {7, 4, 4, 25, 7, 2}, {3, 12, 2, 47, 3, 1}, {2, 8, 3, 49, 5, 1}, {11, 2, 5, 33, 7, 1}, {1, 16, 7, 40, 5, 1},
        {8, 3, 1, 72, 3, 2}, {13, 1, 9, 15, 1, 1}, {17, 9, 45, 61, 3, 1, 2}, {9, 13, 29, 37, 3, 2, 12},
        {5, 17, 9, 50, 3, 1, 4},
    };
    for (const Case& c : cases)
        for (int threads : {1, 2}) check_bf16_case(c, threads);
}

TEST_CASE("AMX conv kernels match the reference: channels around the tiles, position tails" *
          doctest::skip(!cpu::simd::has_amx_bf16())) {
    // Channel counts around the tiles (16 rows, 32 input channels per step, output channels in
    // blocks of 32), widths and heights around the 32 positions of a tile pair (positions are
    // counted with the padded pitch w + k - 1), every odd kernel size SegNet-like models use.
    const std::vector<Case> cases = {
        {16, 16, 5, 7, 3, 1},  {17, 33, 6, 4, 5, 2},  {32, 31, 1, 30, 3, 1},  {33, 48, 9, 11, 3, 2},
        {64, 64, 23, 30, 7, 1}, {96, 64, 13, 9, 3, 3}, {64, 16, 2, 33, 1, 1},  {48, 65, 3, 2, 7, 1},
        {31, 17, 12, 12, 5, 1}, {64, 96, 4, 26, 3, 2},
    };
    for (const Case& c : cases) {
        CHECK(cpu::amx::usable(same_geometry(c)));
        for (int threads : {1, 2}) check_bf16_case(c, threads);
    }
    for (int threads : {1, 2}) check_bf16_case({3, 64, 13, 11, 7, 1}, threads);
    // Fewer than 16 channels on either side: not on AMX, and not on the AVX512-BF16 kernels either
    // (slower than FP32 on these CPUs): FP32 (check_bf16_case checks the results are FP32's).
    for (const Case& c : {Case{3, 64, 13, 11, 7, 1}, Case{64, 11, 13, 11, 1, 1}}) {
        CHECK_FALSE(cpu::amx::usable(same_geometry(c)));
        segnet::PrecisionScope bf16(segnet::Precision::bf16);
        CHECK_FALSE(cpu::bf16_kernels_run(same_geometry(c)));
    }
}

TEST_CASE("Precision::bf16 without BF16 units: the FP32 result" * doctest::skip(bf16_units)) {
    // Run by the test_kernels.avx2_path CTest entry (SEGNET_CONV=avx2 switches the BF16 units off
    // on a CPU that has them) and on every CPU without AVX512-BF16.
    for (const Case& c : {Case{5, 17, 45, 61, 7, 2}, Case{64, 11, 13, 11, 1, 1}, Case{17, 5, 13, 11, 3, 1}}) {
        CAPTURE(c.cin);
        const ConvGeometry g = same_geometry(c);
        std::mt19937 gen(unsigned(c.cin));
        const auto x = random_vector(std::size_t(c.batch) * c.cin * c.h * c.w, gen);
        const auto w = random_vector(std::size_t(g.weight_size()), gen, 0.2f);
        const auto dy = random_vector(std::size_t(c.batch) * c.cout * c.h * c.w, gen);
        std::vector<float> y32(dy.size()), dx32(x.size()), dw32(w.size()), y16(dy.size()), dx16(x.size()), dw16(w.size());
        cpu::conv2d_forward(x.data(), w.data(), nullptr, y32.data(), c.batch, g);
        cpu::conv2d_backward_data(dy.data(), w.data(), dx32.data(), c.batch, g);
        cpu::conv2d_backward_filter(x.data(), dy.data(), dw32.data(), nullptr, c.batch, g);
        segnet::PrecisionScope bf16(segnet::Precision::bf16);
        CHECK_FALSE(cpu::avx512_bf16::wanted(g));
        cpu::conv2d_forward(x.data(), w.data(), nullptr, y16.data(), c.batch, g);
        cpu::conv2d_backward_data(dy.data(), w.data(), dx16.data(), c.batch, g);
        cpu::conv2d_backward_filter(x.data(), dy.data(), dw16.data(), nullptr, c.batch, g);
        CHECK(y16 == y32);
        CHECK(dx16 == dx32);
        CHECK(dw16 == dw32);
    }
}
