// Windowed and adaptive pooling (layers/pool.hpp: MaxPoolWindow, AvgPool, AdaptiveAvgPool): the
// static shape rules as static_asserts (PyTorch's floor and ceil sizes, the window that does not
// fit, which layers may be an Encoder's pool), the CPU kernels against plain loops written here
// from PyTorch's definitions (odd sizes, padding, ceil and floor rounding), finite-difference
// gradient checks of each layer and of a small model that chains them through the buffer pool,
// and the ONNX operators they export as (and the exports refused).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/compose/model.hpp"
#include "segnet/export/onnx.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/testing/gradient_check.hpp"

#include "layer_test_support.hpp"

using namespace segnet;
using segnet::testing_support::random_tensor;
using segnet::testing::check_gradients;
using segnet::testing::GradientCheckOptions;
using segnet::testing::GradientCheckResult;

// --- shape rules -----------------------------------------------------------------------------------

// ResNet's stem pool and DeepLab's size-keeping pools.
static_assert(MaxPoolWindow<3, 2, 1>::infer({64, 360, 480}).out == Dims{64, 180, 240});
static_assert(MaxPoolWindow<3, 1, 1>::infer({512, 45, 60}).out == Dims{512, 45, 60});
static_assert(AvgPool<3, 1, 1>::infer({512, 45, 61}).out == Dims{512, 45, 61});
// Floor (PyTorch's default) and ceil differ on 46: (46 + 2 - 3) / 2 = 22.5.
static_assert(MaxPoolWindow<3, 2, 1>::infer({1, 46, 46}).out.h == 23);
static_assert(MaxPoolWindow<3, 2, 1, PoolRounding::ceil>::infer({1, 46, 46}).out.h == 24);
static_assert(AvgPool<2, 2, 0, PoolRounding::ceil>::infer({1, 45, 7}).out == Dims{1, 23, 4});
// Ceil rounding never starts a window in the right padding: 5 + 2 pad, window 2, stride 2 gives
// 3 windows, not the 4 that ceil((5 + 2 - 2) / 2) + 1 counts.
static_assert(MaxPoolWindow<2, 2, 1, PoolRounding::ceil>::infer({1, 5, 5}).out.h == 3);
// dyn stays dyn; the padded map must hold a window (expected: the window, got: the padded size).
static_assert(MaxPoolWindow<3, 2, 1>::infer({8, dyn, 9}).out == Dims{8, dyn, 5});
static_assert(MaxPoolWindow<5, 1, 1>::infer({1, 2, 9}).fault == Fault::too_small);
static_assert(MaxPoolWindow<5, 1, 1>::infer({1, 2, 9}).expected == 5);
static_assert(MaxPoolWindow<5, 1, 1>::infer({1, 2, 9}).actual == 4);
static_assert(AvgPool<3>::infer({1, 9, 2}).fault == Fault::too_small);
static_assert(MaxPoolWindow<3, 1, 1>::infer({1, 1, 1}).fault == Fault::none);  // 1 + 2 pad holds 3
// Adaptive pooling: any size to the grid, the grid larger than the map included.
static_assert(AdaptiveAvgPool<6>::infer({512, 45, 60}).out == Dims{512, 6, 6});
static_assert(AdaptiveAvgPool<6>::infer({512, 4, dyn}).out == Dims{512, 6, 6});
static_assert(AdaptiveAvgPool<1>::infer({2048, dyn, dyn}).out == Dims{2048, 1, 1});
// The contract: layers, no parameters, flops from the window.
static_assert(Layer<MaxPoolWindow<3, 2, 1>> && Layer<AvgPool<3, 1, 1>> && Layer<AdaptiveAvgPool<6>>);
static_assert(MaxPoolWindow<3, 2, 1>::parameter_count({64, dyn, dyn}) == 0 && AdaptiveAvgPool<2>::parameter_count({4, 1, 1}) == 0);
static_assert(AvgPool<3, 1, 1>::flops({2, 4, 5}) == 2 * 4 * 5 * 9);
static_assert(MaxPoolWindow<3, 2, 1>::flops({2, dyn, 5}) == 0);
static_assert(geometry_of<MaxPoolWindow<3, 2, 1>>.window == 3 && geometry_of<MaxPoolWindow<3, 2, 1>>.down == 2);
// Only MaxPool<K> pairs with Unpool: the general forms are never an Encoder's pool, even with
// window = stride (tests/compile_fail/encoder_window_pool.cpp shows the message).
static_assert(PoolingLayer<MaxPool<2>> && PoolingLayer<MaxPool<3>>);
static_assert(!PoolingLayer<MaxPoolWindow<2>> && !PoolingLayer<AvgPool<2>> && !PoolingLayer<AdaptiveAvgPool<1>>);
static_assert(!PoolingLayer<Conv2d<8, 2, ConvOptions{.stride = 2, .padding = Padding::valid}>>);  // window == stride, yet no pool
// MaxPool<K> keeps Caffe's ceil mode, and exports as it did.
static_assert(MaxPool<2>::infer({1, 45, 45}).out.h == 23 && MaxPool<2>::export_as.ceil_mode);
static_assert(!MaxPoolWindow<2>::export_as.ceil_mode && MaxPoolWindow<3, 2, 1>::export_as.pad == 1);

namespace {

constexpr Dims any(int c) { return {c, dyn, dyn}; }

/// Distinct values 0.1 apart in a random order: no ties, and a step of 1e-2 never changes an argmax.
Tensor<Cpu> distinct_tensor(Extents e, Rng& rng) {
    Tensor<Cpu> t(e);
    std::vector<float> v(std::size_t(t.size()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * float(i) - 0.05f * float(v.size());
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[std::size_t(rng.below(i))]);
    for (std::size_t i = 0; i < v.size(); ++i) t[std::int64_t(i)] = v[i];
    return t;
}

struct Window {
    int k, s, p;
    bool ceil;
};
/// PyTorch's output size, written out (pooling_output_shape in ATen).
int reference_extent(int in, const Window& w) {
    const int span = in + 2 * w.p - w.k;
    int out = (w.ceil ? (span + w.s - 1) / w.s : span / w.s) + 1;
    if (w.ceil && (out - 1) * w.s >= in + w.p) --out;
    return out;
}

/// Max pooling by the definition: every in-map cell of each padded window, first maximum wins.
void reference_max_pool(const Tensor<Cpu>& x, const Window& w, std::vector<float>& y, std::vector<std::int32_t>& idx) {
    const int oh = reference_extent(x.h(), w), ow = reference_extent(x.w(), w);
    y.assign(std::size_t(x.n() * x.c() * oh * ow), 0.f);
    idx.assign(y.size(), -1);
    std::size_t o = 0;
    for (int nc = 0; nc < x.n() * x.c(); ++nc)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox, ++o) {
                float best = -std::numeric_limits<float>::infinity();
                for (int dy = 0; dy < w.k; ++dy)
                    for (int dx = 0; dx < w.k; ++dx) {
                        const int iy = oy * w.s - w.p + dy, ix = ox * w.s - w.p + dx;
                        if (iy < 0 || ix < 0 || iy >= x.h() || ix >= x.w()) continue;
                        const float v = x[std::int64_t(nc) * x.h() * x.w() + iy * x.w() + ix];
                        if (v > best) {
                            best = v;
                            idx[o] = iy * x.w() + ix;
                        }
                    }
                y[o] = best;
            }
}

/// Average pooling as ATen's avg_pool2d with count_include_pad: the divisor is the window clipped
/// to the padded map (not to the map).
std::vector<float> reference_avg_pool(const Tensor<Cpu>& x, const Window& w) {
    const int oh = reference_extent(x.h(), w), ow = reference_extent(x.w(), w);
    std::vector<float> y;
    for (int nc = 0; nc < x.n() * x.c(); ++nc)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const int y0 = oy * w.s - w.p, x0 = ox * w.s - w.p;
                const int y1 = std::min(y0 + w.k, x.h() + w.p), x1 = std::min(x0 + w.k, x.w() + w.p);
                double sum = 0;
                for (int iy = std::max(y0, 0); iy < std::min(y1, x.h()); ++iy)
                    for (int ix = std::max(x0, 0); ix < std::min(x1, x.w()); ++ix)
                        sum += x[std::int64_t(nc) * x.h() * x.w() + iy * x.w() + ix];
                y.push_back(float(sum / ((y1 - y0) * (x1 - x0))));
            }
    return y;
}

/// Adaptive average pooling with PyTorch's bin edges, floor(i H / B) to ceil((i + 1) H / B).
std::vector<float> reference_adaptive(const Tensor<Cpu>& x, int bins) {
    std::vector<float> y;
    const auto edge = [&](int i, int in, bool up) {
        const double e = double(i) * in / bins;
        return int(up ? std::ceil(e) : std::floor(e));
    };
    for (int nc = 0; nc < x.n() * x.c(); ++nc)
        for (int by = 0; by < bins; ++by)
            for (int bx = 0; bx < bins; ++bx) {
                const int y0 = edge(by, x.h(), false), y1 = edge(by + 1, x.h(), true);
                const int x0 = edge(bx, x.w(), false), x1 = edge(bx + 1, x.w(), true);
                double sum = 0;
                for (int iy = y0; iy < y1; ++iy)
                    for (int ix = x0; ix < x1; ++ix) sum += x[std::int64_t(nc) * x.h() * x.w() + iy * x.w() + ix];
                y.push_back(float(sum / ((y1 - y0) * (x1 - x0))));
            }
    return y;
}

void check_close(const Tensor<Cpu>& y, const std::vector<float>& expected) {
    REQUIRE(std::size_t(y.size()) == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i)
        CHECK_MESSAGE(std::abs(y[std::int64_t(i)] - expected[i]) <= 1e-5f, "output " << i);
}

template <class L>
void check_max_layer(const Window& w, Extents e, Rng& rng) {
    const Tensor<Cpu> x = random_tensor(e, rng);
    auto layer = L::template make<Cpu>(any(e.c));
    const Tensor<Cpu>& y = layer->forward(x, Mode::eval);
    std::vector<float> expected;
    std::vector<std::int32_t> idx;
    reference_max_pool(x, w, expected, idx);
    CHECK(y.extents() == Extents{e.n, e.c, reference_extent(e.h, w), reference_extent(e.w, w)});
    REQUIRE(std::size_t(y.size()) == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) CHECK(y[std::int64_t(i)] == expected[i]);
    // The argmax positions, through backward: a one-hot dy lands where the reference's maximum was.
    Tensor<Cpu> dy(y.extents());
    dy.fill(0.f);
    const std::int64_t probe = y.size() - 1;  // the last output: a partial window in ceil mode
    dy[probe] = 1.f;
    const Tensor<Cpu>& dx = layer->backward(dy);
    const std::int64_t plane = std::int64_t(e.h) * e.w, nc = probe / (y.size() / (e.n * e.c));
    CHECK(dx[nc * plane + idx[std::size_t(probe)]] == 1.f);
}

template <class L>
void check_avg_layer(const Window& w, Extents e, Rng& rng) {
    const Tensor<Cpu> x = random_tensor(e, rng);
    auto layer = L::template make<Cpu>(any(e.c));
    const Tensor<Cpu>& y = layer->forward(x, Mode::eval);
    CHECK(y.extents() == Extents{e.n, e.c, reference_extent(e.h, w), reference_extent(e.w, w)});
    check_close(y, reference_avg_pool(x, w));
}

void check_passed(const GradientCheckResult& r) {
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK(r.checked > 0);
    CHECK(r.kinks == 0);
}

}  // namespace

// --- kernels against the definitions ---------------------------------------------------------------

TEST_CASE("MaxPoolWindow: values and argmax as PyTorch's max_pool2d (odd sizes, padding, floor and ceil)") {
    Rng rng(31);
    check_max_layer<MaxPoolWindow<3, 2, 1>>({3, 2, 1, false}, {2, 3, 7, 9}, rng);
    check_max_layer<MaxPoolWindow<3, 2, 1, PoolRounding::ceil>>({3, 2, 1, true}, {2, 3, 8, 6}, rng);
    check_max_layer<MaxPoolWindow<3, 1, 1>>({3, 1, 1, false}, {1, 2, 5, 7}, rng);
    check_max_layer<MaxPoolWindow<2, 2, 1, PoolRounding::ceil>>({2, 2, 1, true}, {1, 2, 5, 5}, rng);
    check_max_layer<MaxPoolWindow<2>>({2, 2, 0, false}, {1, 3, 7, 5}, rng);  // floor: the odd row is dropped
    check_max_layer<MaxPoolWindow<5, 3, 2, PoolRounding::ceil>>({5, 3, 2, true}, {2, 1, 11, 4}, rng);
}

TEST_CASE("AvgPool: values as PyTorch's avg_pool2d with count_include_pad=True (odd sizes, padding, floor and ceil)") {
    Rng rng(32);
    check_avg_layer<AvgPool<3, 2, 1>>({3, 2, 1, false}, {2, 3, 7, 9}, rng);
    check_avg_layer<AvgPool<3, 2, 1, PoolRounding::ceil>>({3, 2, 1, true}, {2, 3, 8, 6}, rng);
    check_avg_layer<AvgPool<3, 1, 1>>({3, 1, 1, false}, {1, 2, 5, 7}, rng);
    // Ceil windows that run past the padding divide by the padded part only.
    check_avg_layer<AvgPool<2, 2, 0, PoolRounding::ceil>>({2, 2, 0, true}, {1, 2, 5, 7}, rng);
    check_avg_layer<AvgPool<4, 3, 1, PoolRounding::ceil>>({4, 3, 1, true}, {1, 2, 9, 6}, rng);
}

TEST_CASE("AdaptiveAvgPool: PyTorch's bins, to grids smaller and larger than the map") {
    Rng rng(33);
    const Tensor<Cpu> x = random_tensor({2, 3, 7, 10}, rng);
    SUBCASE("1: the plane's mean") { check_close(AdaptiveAvgPool<1>::make<Cpu>(any(3))->forward(x, Mode::eval), reference_adaptive(x, 1)); }
    SUBCASE("3: overlapping bins on 7 rows") { check_close(AdaptiveAvgPool<3>::make<Cpu>(any(3))->forward(x, Mode::eval), reference_adaptive(x, 3)); }
    SUBCASE("6") { check_close(AdaptiveAvgPool<6>::make<Cpu>(any(3))->forward(x, Mode::eval), reference_adaptive(x, 6)); }
    SUBCASE("a grid larger than the map") {
        const Tensor<Cpu> small = random_tensor({1, 2, 2, 4}, rng);
        auto pool = AdaptiveAvgPool<3>::make<Cpu>(any(2));
        const Tensor<Cpu>& y = pool->forward(small, Mode::eval);
        CHECK(y.extents() == Extents{1, 2, 3, 3});
        check_close(y, reference_adaptive(small, 3));
    }
    SUBCASE("the layer follows a change of input size") {
        auto pool = AdaptiveAvgPool<2>::make<Cpu>(any(3));
        pool->forward(x, Mode::eval);
        const Tensor<Cpu> other = random_tensor({1, 3, 5, 3}, rng);
        check_close(pool->forward(other, Mode::eval), reference_adaptive(other, 2));
    }
}

TEST_CASE("pooling kernels: the uniform run of spans the column passes vectorise") {
    using backend::cpu::pool_detail::uniform_run;
    // 3x3 stride 1 pad 1 on 10 columns: outputs 1 .. 8 read full windows, 0 and 9 are clipped.
    const auto same = uniform_run(backend::window_spans({1, 10}, {3, 1, 1}, {1, 10}).cols);
    CHECK((same.first == 1 && same.last == 9 && same.begin == 0 && same.step == 1 && same.width == 3));
    // 3x3 stride 2 pad 1 on 10 columns (5 outputs): 1 .. 4 start at 1, 3, 5, 7.
    const auto stem = uniform_run(backend::window_spans({1, 10}, {3, 2, 1}, {1, 5}).cols);
    CHECK((stem.first == 1 && stem.last == 5 && stem.begin == 1 && stem.step == 2 && stem.width == 3));
    // Adaptive bins: all uniform where the grid divides the map, overlapping bins of 3 on 7 too.
    const auto divides = uniform_run(backend::adaptive_spans({60, 60}, 6).cols);
    CHECK((divides.first == 0 && divides.last == 6 && divides.step == 10 && divides.width == 10));
    const auto overlapping = uniform_run(backend::adaptive_spans({7, 7}, 3).cols);
    CHECK((overlapping.first == 0 && overlapping.last == 3 && overlapping.step == 2 && overlapping.width == 3));
}

TEST_CASE("pooling kernels: wide maps through the vectorised column runs (ties, NaN, every step)") {
    // Widths well past a vector (16 lanes) and its tails, values on a coarse grid (many ties:
    // the first maximum in row-major order must win, as in the reference) and scattered NaNs
    // (never a maximum where the window holds a number).
    Rng rng(36);
    for (const Window& win : {Window{3, 1, 1, false}, Window{3, 2, 1, false}, Window{3, 2, 1, true}, Window{5, 3, 2, true},
                              Window{4, 4, 0, false}}) {
        for (const Extents e : {Extents{1, 2, 6, 67}, Extents{2, 1, 9, 100}, Extents{1, 1, 3, 17}}) {
            CAPTURE(win.k);
            CAPTURE(win.s);
            CAPTURE(e.w);
            Tensor<Cpu> x = random_tensor(e, rng);
            for (float& v : x.span()) v = std::round(v * 2.f) / 2.f;  // 5 distinct values
            for (std::int64_t i = 7; i < x.size(); i += 41) x[i] = std::numeric_limits<float>::quiet_NaN();
            const int oh = reference_extent(e.h, win), ow = reference_extent(e.w, win);
            const backend::PoolSpans spans = backend::window_spans({e.h, e.w}, {win.k, win.s, win.p}, {oh, ow});
            Tensor<Cpu> y({e.n, e.c, oh, ow});
            Tensor<Cpu, std::int32_t> indices(y.extents());
            backend::window_max_pool_forward(x, spans, y, indices);
            std::vector<float> expected;
            std::vector<std::int32_t> expected_at;
            reference_max_pool(x, win, expected, expected_at);
            bool same = true;
            for (std::size_t i = 0; i < expected.size(); ++i)
                same = same && y[std::int64_t(i)] == expected[i] && indices[std::int64_t(i)] == expected_at[i];
            CHECK(same);
            // The average of the same map without NaNs, against the double-precision definition.
            for (float& v : x.span()) v = std::isnan(v) ? 0.25f : v;
            Tensor<Cpu> avg({e.n, e.c, oh, ow});
            backend::average_pool_forward(x, spans, avg);
            check_close(avg, reference_avg_pool(x, win));
        }
    }
}

TEST_CASE("pooling kernels: the average pool's backward is its forward's transpose on wide maps") {
    // <dy, A x> = <A^T dy, x> for random x and dy: every output's share reaches exactly the cells
    // it averaged, through the uniform run and the clipped spans alike.
    Rng rng(37);
    const Extents e{2, 3, 11, 70};
    for (const backend::PoolSpans& spans :
         {backend::window_spans({11, 70}, {3, 1, 1}, {11, 70}), backend::window_spans({11, 70}, {3, 2, 1}, {6, 35}),
          backend::adaptive_spans({11, 70}, 6), backend::adaptive_spans({11, 70}, 1)}) {
        const Tensor<Cpu> x = random_tensor(e, rng);
        const Extents out{e.n, e.c, int(spans.rows.size()), int(spans.cols.size())};
        const Tensor<Cpu> dy = random_tensor(out, rng);
        Tensor<Cpu> y(out), dx(e);
        backend::average_pool_forward(x, spans, y);
        dx.fill(123.f);  // overwritten
        backend::average_pool_backward(dy, spans, dx);
        double forward = 0, transpose = 0;
        for (std::int64_t i = 0; i < y.size(); ++i) forward += double(dy[i]) * y[i];
        for (std::int64_t i = 0; i < x.size(); ++i) transpose += double(dx[i]) * x[i];
        CHECK(std::abs(forward - transpose) <= 1e-4 * std::max(1.0, std::abs(forward)));
    }
}

// --- gradients -------------------------------------------------------------------------------------

TEST_CASE("gradients: MaxPoolWindow with overlapping windows, padding and ceil rounding") {
    Rng rng(34);
    SUBCASE("3x3 stride 2 pad 1, ceil, 8x7") {
        auto pool = MaxPoolWindow<3, 2, 1, PoolRounding::ceil>::make<Cpu>(any(2));
        check_passed(check_gradients(*pool, distinct_tensor({2, 2, 8, 7}, rng), Mode::train));
    }
    SUBCASE("3x3 stride 1 pad 1 (a cell is the maximum of several windows), 5x6") {
        auto pool = MaxPoolWindow<3, 1, 1>::make<Cpu>(any(3));
        check_passed(check_gradients(*pool, distinct_tensor({1, 3, 5, 6}, rng), Mode::train));
    }
}

TEST_CASE("gradients: AvgPool and AdaptiveAvgPool") {
    Rng rng(35);
    SUBCASE("AvgPool<3, 2, 1, ceil>, 8x7") {
        auto pool = AvgPool<3, 2, 1, PoolRounding::ceil>::make<Cpu>(any(2));
        check_passed(check_gradients(*pool, random_tensor({2, 2, 8, 7}, rng), Mode::train));
    }
    SUBCASE("AvgPool<3, 1, 1>, 5x6") {
        auto pool = AvgPool<3, 1, 1>::make<Cpu>(any(3));
        check_passed(check_gradients(*pool, random_tensor({1, 3, 5, 6}, rng), Mode::train));
    }
    SUBCASE("AdaptiveAvgPool<3>, 7x5 (overlapping bins)") {
        auto pool = AdaptiveAvgPool<3>::make<Cpu>(any(2));
        check_passed(check_gradients(*pool, random_tensor({2, 2, 7, 5}, rng), Mode::train));
    }
    SUBCASE("AdaptiveAvgPool<6>, 4x4 (a grid larger than the map)") {
        auto pool = AdaptiveAvgPool<6>::make<Cpu>(any(2));
        check_passed(check_gradients(*pool, random_tensor({1, 2, 4, 4}, rng), Mode::train));
    }
}

namespace {
// A ResNet-like stem and a pyramid level chained in a model: the run-time shape walk, the buffer
// pool (sizes_only backward) and the three layers' gradients together.
using PoolNet = Network<Input<2, dyn, dyn>, Block<Conv<3, 3>, MaxPoolWindow<3, 2, 1>, AvgPool<3, 1, 1>, AdaptiveAvgPool<2>>,
                        Classifier<2>>;
}  // namespace

TEST_CASE("model gradient: convolution, MaxPoolWindow, AvgPool and AdaptiveAvgPool in one network") {
    Model<PoolNet, Cpu> model(5);
    Rng rng(36);
    const Tensor<Cpu> x = random_tensor({2, 2, 7, 9}, rng);  // 7x9 -> 4x5 -> 4x5 -> 2x2
    CHECK(model.forward(x, Mode::eval).extents() == Extents{2, 2, 2, 2});
    GradientCheckOptions opt;
    opt.step = 5e-3;
    opt.abs_tol = 2e-3;
    opt.rel_tol = 2e-2;
    opt.allow_kinks = true;  // a convolution's outputs may tie or swap under a max window
    const GradientCheckResult r = check_gradients(model, x, Mode::train, opt);
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK_MESSAGE(r.kinks * 4 <= r.checked, r.summary());
    CHECK(r.tensors.size() == model.parameters().size() + 1);
}

TEST_CASE("run-time shape rule: a map too small for the window is refused with the layer named") {
    Model<Network<Input<1, dyn, dyn>, MaxPoolWindow<5, 1, 1>>, Cpu> model(1);
    const Tensor<Cpu> x({1, 1, 2, 9});
    try {
        model.forward(x, Mode::eval);
        FAIL("no error for a 2-row map under a 5x5 window with pad 1");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("MaxPoolWindow") != std::string::npos);
    }
}

namespace {
using ExportNet = Network<Input<3, dyn, dyn>, Block<Conv<4, 3>, MaxPoolWindow<3, 2, 1, PoolRounding::ceil>, AvgPool<3, 1, 1>,
                                               AdaptiveAvgPool<1>>, Classifier<2>>;
using PyramidNet = Network<Input<3, dyn, dyn>, Block<Conv<4, 3>, AdaptiveAvgPool<3>>, Classifier<2>>;
using EdgeNet = Network<Input<3, dyn, dyn>, Block<Conv<4, 3>, MaxPoolWindow<2, 2, 1, PoolRounding::ceil>>, Classifier<2>>;

bool contains(const std::string& bytes, std::string_view s) { return bytes.find(s) != std::string::npos; }
std::string refusal(auto export_it) {
    try {
        export_it();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("ONNX: MaxPool with pads and ceil_mode, AveragePool counting the padding, GlobalAveragePool") {
    Model<ExportNet, Cpu> model(1);
    const std::string bytes = onnx::to_onnx(model);
    for (std::string_view op : {"MaxPool", "AveragePool", "GlobalAveragePool", "count_include_pad", "ceil_mode", "pads"})
        CHECK_MESSAGE(contains(bytes, op), op);
    CHECK_FALSE(contains(bytes, ".indices"));  // not an Encoder's pool: no Indices output
}

TEST_CASE("ONNX: AdaptiveAvgPool<3> at a static size only (AveragePool where it divides by 3, else MatMuls), ceil-mode padding only where ONNX agrees") {
    Model<PyramidNet, Cpu> pyramid(1);
    const std::string divisible = onnx::to_onnx(pyramid, {.height = 45, .width = 60});
    CHECK(contains(divisible, "AveragePool"));
    CHECK_FALSE(contains(divisible, "MatMul"));
    const std::string symbolic = refusal([&] { onnx::to_onnx(pyramid); });
    CHECK(contains(symbolic, "AdaptiveAvgPool<3>"));
    // 61 columns in 3 bins (PyTorch's windows 0-21, 20-41, 40-61): written as averaging matrices.
    CHECK(contains(onnx::to_onnx(pyramid, {.height = 45, .width = 61}), "MatMul"));
    // 5 rows, window 2, stride 2, pad 1: ONNX's ceil_mode counts 4 windows, PyTorch and segnet 3.
    Model<EdgeNet, Cpu> edge(1);
    CHECK(contains(refusal([&] { onnx::to_onnx(edge, {.height = 5, .width = 6}); }), "one more output"));
    CHECK(contains(onnx::to_onnx(edge, {.height = 6, .width = 6}), "MaxPool"));
}
