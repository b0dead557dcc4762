// Convolution geometry: stride, dilation and the padding policies of Conv2d. The CPU kernels
// (the dispatching entry points and the im2col path) against plain loops written here, forward
// and both backward passes; finite-difference gradients of the layer; its shape rule (static
// asserts and the run-time output size); the fast kernels declining what they cannot compute.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "segnet/backend/cpu/conv.hpp"
#include "segnet/compose/model.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/testing/gradient_check.hpp"

#include "layer_test_support.hpp"

using namespace segnet;
using segnet::testing_support::random_tensor;
using backend::ConvGeometry;

// --- The shape rule, at compile time -------------------------------------------------------------

// DeepLab-LargeFOV's fc6: 3x3, dilation 12, same padding keeps the size; its window is 25.
using AtrousFc6 = Conv2d<1024, 3, ConvOptions{.dilation = 12}>;
static_assert(AtrousFc6::infer({512, 46, 61}).out == Dims{1024, 46, 61});
static_assert(AtrousFc6::pad == 12 && geometry_of<AtrousFc6>.window == 25 && geometry_of<AtrousFc6>.down == 1);
// ResNet's stem: 7x7 stride 2 pad 3: 224 -> 112, 225 -> 113 (floor((225 + 6 - 7) / 2) + 1).
using Stem = Conv2d<64, 7, ConvOptions{.stride = 2, .padding = Padding::explicit_(3)}>;
static_assert(Stem::infer({3, 224, 225}).out == Dims{64, 112, 113});
static_assert(geometry_of<Stem>.window == 7 && geometry_of<Stem>.down == 2);
static_assert(Stem::parameter_count({3, dyn, dyn}) == 64 * 3 * 7 * 7 + 64);
static_assert(Stem::flops({3, 224, 224}) == (2LL * 3 * 7 * 7 + 1) * 64 * 112 * 112);
static_assert(Stem::flops({3, dyn, 224}) == 0);
// FCN's fc6: 7x7 valid on the 7x7 pool5 map of a 224 input: one pixel; dyn stays dyn.
using ValidFc6 = Conv2d<4096, 7, ConvOptions{.padding = Padding::valid}>;
static_assert(ValidFc6::infer({512, 7, 7}).out == Dims{4096, 1, 1});
static_assert(ValidFc6::infer({512, dyn, 12}).out == Dims{4096, dyn, 6});
// The map smaller than the dilated window less the padding: Fault::conv_window with the numbers.
static_assert(ValidFc6::infer({512, 6, 7}).fault == Fault::conv_window);
static_assert(ValidFc6::infer({512, 7, 6}).expected == 7 && ValidFc6::infer({512, 7, 6}).actual == 6);
using DilatedValid = Conv2d<8, 3, ConvOptions{.dilation = 4, .padding = Padding::valid}>;  // window 9
static_assert(DilatedValid::infer({8, 9, 9}).out == Dims{8, 1, 1});
static_assert(DilatedValid::infer({8, 8, 9}).fault == Fault::conv_window);
static_assert(DilatedValid::infer({8, 8, 9}).expected == 9 && DilatedValid::infer({8, 8, 9}).actual == 8);
// Same padding with a stride: pad dilation (K - 1) / 2, ceil(H / stride) rows.
static_assert(Conv2d<8, 3, ConvOptions{.stride = 2, .dilation = 2}>::infer({4, 45, 60}).out == Dims{8, 23, 30});
// An even kernel with explicit padding (the size PyTorch gives: 10 + 2 - 4 + 1 = 9).
static_assert(Conv2d<8, 4, ConvOptions{.padding = Padding::explicit_(1)}>::infer({4, 10, 10}).out == Dims{8, 9, 9});
// Groups still checked against the input's channels.
static_assert(Conv2d<8, 3, ConvOptions{.groups = 4}>::infer({6, 9, 9}).fault == Fault::groups_indivisible);
// Conv is Conv2d's special case: the same type, the same geometry and ONNX attributes as before.
static_assert(std::is_same_v<Conv<64, 7, Bias::without, 2>,
                             Conv2d<64, 7, ConvOptions{.groups = 2, .bias = Bias::without}>>);
static_assert(Conv<64, 7>::pad == 3 && Conv<64, 7>::stride == 1 && Conv<64, 7>::dilation == 1);
static_assert(Conv<64, 7>::infer({3, 45, 60}).out == Dims{64, 45, 60});
static_assert(Conv<64, 7>::export_as.pad == 3 && Classifier<11, 3>::export_as.pad == 1 &&
              DepthwiseConv<7>::export_as.pad == 3);
static_assert(Stem::export_as.stride == 2 && Stem::export_as.pad == 3 && AtrousFc6::export_as.dilation == 12);
static_assert(Layer<AtrousFc6> && Layer<Stem> && Layer<ValidFc6>);

namespace {

/// One convolution case: sizes, kernel, stride, pad, dilation, groups; the output size from
/// PyTorch's arithmetic.
ConvGeometry make_geometry(int in_c, int h, int w, int out_c, int k, int stride, int pad, int dilation, int groups) {
    ConvGeometry g{in_c, h, w, out_c, 0, 0, k, stride, pad, groups, dilation};
    g.out_h = backend::conv_output_extent(h, k, stride, pad, dilation);
    g.out_w = backend::conv_output_extent(w, k, stride, pad, dilation);
    return g;
}

/// The input index a tap reads, or -1 outside the map.
std::int64_t input_index(const ConvGeometry& g, int n, int c, int oy, int ox, int ky, int kx) {
    const int iy = oy * g.stride - g.pad + ky * g.dilation, ix = ox * g.stride - g.pad + kx * g.dilation;
    if (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w) return -1;
    return ((std::int64_t(n) * g.in_c + c) * g.in_h + iy) * g.in_w + ix;
}

/// Runs visit(x index, w index, y index) for every multiply of the convolution: the three
/// reference passes below are this one loop nest, read in three directions.
template <class Visit>
void for_each_tap(const ConvGeometry& g, int batch, Visit visit) {
    const int cig = g.in_c_per_group(), cog = g.out_c_per_group();
    for (int n = 0; n < batch; ++n)
        for (int co = 0; co < g.out_c; ++co)
            for (int oy = 0; oy < g.out_h; ++oy)
                for (int ox = 0; ox < g.out_w; ++ox)
                    for (int ci = 0; ci < cig; ++ci)
                        for (int ky = 0; ky < g.k; ++ky)
                            for (int kx = 0; kx < g.k; ++kx) {
                                const std::int64_t xi = input_index(g, n, co / cog * cig + ci, oy, ox, ky, kx);
                                if (xi < 0) continue;
                                visit(xi, ((std::int64_t(co) * cig + ci) * g.k + ky) * g.k + kx,
                                      ((std::int64_t(n) * g.out_c + co) * g.out_h + oy) * g.out_w + ox);
                            }
}

void check_close(const Tensor<Cpu>& got, const std::vector<double>& want, const std::string& what) {
    REQUIRE(std::size_t(got.size()) == want.size());
    double worst = 0;
    for (std::int64_t i = 0; i < got.size(); ++i) {
        const double w = want[std::size_t(i)];
        worst = std::max(worst, std::abs(double(got[i]) - w) / (1.0 + std::abs(w)));
    }
    CHECK_MESSAGE(worst < 1e-4, what << ": worst relative error " << worst);
}

std::string describe(const ConvGeometry& g) {
    return "k " + std::to_string(g.k) + " stride " + std::to_string(g.stride) + " pad " + std::to_string(g.pad) +
           " dilation " + std::to_string(g.dilation) + " groups " + std::to_string(g.groups) + " " +
           std::to_string(g.in_h) + "x" + std::to_string(g.in_w) + " -> " + std::to_string(g.out_h) + "x" +
           std::to_string(g.out_w);
}

/// Strided, dilated, valid, explicit and grouped cases, including an even kernel, 1x1 with a
/// stride, and a dilated window that reaches past both borders.
const std::vector<ConvGeometry>& geometry_cases() {
    static const std::vector<ConvGeometry> cases = {
        make_geometry(3, 13, 17, 5, 3, 1, 2, 2, 1),   // atrous, same padding
        make_geometry(4, 15, 11, 6, 3, 2, 1, 1, 2),   // stride 2, grouped
        make_geometry(3, 16, 19, 4, 7, 2, 3, 1, 1),   // ResNet stem's shape
        make_geometry(4, 14, 13, 4, 3, 3, 0, 3, 1),   // valid, dilated, stride 3
        make_geometry(6, 12, 10, 9, 3, 2, 4, 4, 3),   // dilated, strided, grouped
        make_geometry(2, 9, 12, 3, 4, 1, 1, 2, 1),    // even K, explicit padding, dilated
        make_geometry(5, 11, 9, 7, 1, 2, 0, 1, 1),    // 1x1, stride 2
        make_geometry(2, 7, 8, 3, 3, 1, 6, 5, 1),     // the window reaches past both borders
        make_geometry(8, 10, 10, 8, 5, 1, 0, 2, 8),   // depthwise, valid, dilated
    };
    return cases;
}

}  // namespace

// --- The kernels against plain loops ------------------------------------------------------------

TEST_CASE("conv kernels: stride, dilation, padding and groups against plain loops, forward and both backward passes") {
    Rng rng(19);
    const int batch = 2;
    for (const ConvGeometry& g : geometry_cases()) {
        INFO(describe(g));
        const Tensor<Cpu> x = random_tensor({batch, g.in_c, g.in_h, g.in_w}, rng);
        const Tensor<Cpu> w = random_tensor({g.out_c, g.in_c_per_group(), g.k, g.k}, rng);
        const Tensor<Cpu> bias = random_tensor({1, g.out_c, 1, 1}, rng);
        const Tensor<Cpu> dy = random_tensor({batch, g.out_c, g.out_h, g.out_w}, rng);

        std::vector<double> y_ref(std::size_t(dy.size()), 0.0), dx_ref(std::size_t(x.size()), 0.0),
            dw_ref(std::size_t(w.size()), 0.0), db_ref(std::size_t(g.out_c), 0.0);
        for (std::size_t i = 0; i < y_ref.size(); ++i) y_ref[i] = bias[std::int64_t(i) / g.out_plane() % g.out_c];
        for_each_tap(g, batch, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) {
            y_ref[std::size_t(yi)] += double(x[xi]) * w[wi];
            dx_ref[std::size_t(xi)] += double(dy[yi]) * w[wi];
            dw_ref[std::size_t(wi)] += double(dy[yi]) * x[xi];
        });
        for (std::int64_t i = 0; i < dy.size(); ++i) db_ref[std::size_t(i / g.out_plane() % g.out_c)] += dy[i];

        Tensor<Cpu> y({batch, g.out_c, g.out_h, g.out_w}), y_im2col(y.extents());
        backend::cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), batch, g);
        backend::cpu::conv2d_forward_im2col(x.data(), w.data(), bias.data(), y_im2col.data(), batch, g);
        check_close(y, y_ref, "forward");
        check_close(y_im2col, y_ref, "forward, im2col");

        Tensor<Cpu> dx(x.extents());
        backend::cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), batch, g);
        check_close(dx, dx_ref, "backward data");

        Tensor<Cpu> dw(w.extents()), db({1, g.out_c, 1, 1});
        dw.fill(0.5f);  // the filter gradient accumulates
        db.fill(0.5f);
        for (double& v : dw_ref) v += 0.5;
        for (double& v : db_ref) v += 0.5;
        backend::cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), db.data(), batch, g);
        check_close(dw, dw_ref, "backward filter");
        check_close(db, db_ref, "bias gradient");
    }
}

TEST_CASE("conv kernels: the reference loop is the same convolution as the tap loop here") {
    // conv2d_forward_reference serves other tests as the truth; it must take dilation too.
    Rng rng(7);
    for (const ConvGeometry& g : geometry_cases()) {
        INFO(describe(g));
        const Tensor<Cpu> x = random_tensor({1, g.in_c, g.in_h, g.in_w}, rng);
        const Tensor<Cpu> w = random_tensor({g.out_c, g.in_c_per_group(), g.k, g.k}, rng);
        std::vector<double> y_ref(std::size_t(g.out_c * g.out_plane()), 0.0);
        for_each_tap(g, 1, [&](std::int64_t xi, std::int64_t wi, std::int64_t yi) {
            y_ref[std::size_t(yi)] += double(x[xi]) * w[wi];
        });
        Tensor<Cpu> y({1, g.out_c, g.out_h, g.out_w});
        backend::cpu::conv2d_forward_reference(x.data(), w.data(), nullptr, y.data(), 1, g);
        check_close(y, y_ref, "conv2d_forward_reference");
    }
}

TEST_CASE("conv kernels: the direct kernels take same-size atrous geometries; Winograd and AMX do not") {
    // SegNet's geometry (3x3 and 7x7, stride 1, same padding) and DeepLab's atrous 3x3 (pad =
    // dilation) are the direct kernels' (and the bf16 direct kernels'); Winograd and AMX take
    // dilation 1 only.
    const ConvGeometry segnet_3x3 = make_geometry(64, 45, 60, 64, 3, 1, 1, 1, 1);
    const ConvGeometry segnet_7x7 = make_geometry(64, 45, 60, 64, 7, 1, 3, 1, 1);
    CHECK(backend::cpu::direct::supports(segnet_3x3));
    CHECK(backend::cpu::direct::supports(segnet_7x7));
    CHECK(backend::cpu::winograd::supports(segnet_3x3));
    for (const ConvGeometry& g : {make_geometry(64, 45, 60, 64, 3, 1, 2, 2, 1),      // atrous, same size
                                  make_geometry(64, 45, 60, 64, 3, 1, 12, 12, 1)}) {  // DeepLab-LargeFOV's fc6
        INFO(describe(g));
        CHECK(backend::cpu::direct::supports(g));
        CHECK_FALSE(backend::cpu::winograd::supports(g));
        CHECK_FALSE(backend::cpu::amx::usable(g));
    }
    // Backward-filter: direct where a phase's band makes streams of at least 1024 positions
    // (conv5 of DeepLab-LargeFOV at 360x480: 23 rows of 63), im2col for fc6 (4 rows of 85), and
    // always at dilation 1, however small the map.
    CHECK(backend::cpu::direct::backward_filter_streams_pay(make_geometry(512, 46, 61, 512, 3, 1, 2, 2, 1)));
    CHECK_FALSE(backend::cpu::direct::backward_filter_streams_pay(make_geometry(512, 46, 61, 1024, 3, 1, 12, 12, 1)));
    CHECK(backend::cpu::direct::backward_filter_streams_pay(make_geometry(8, 2, 3, 8, 3, 1, 1, 1, 1)));
    for (const ConvGeometry& g : {make_geometry(64, 45, 60, 64, 3, 2, 1, 1, 1),     // strided
                                  make_geometry(64, 45, 60, 64, 3, 1, 0, 1, 1),     // valid
                                  make_geometry(64, 45, 60, 64, 3, 1, 1, 2, 1)}) {  // dilated, not same size
        INFO(describe(g));
        CHECK_FALSE(backend::cpu::direct::supports(g));  // AMX and the bf16 direct kernels ask it too
        CHECK_FALSE(backend::cpu::winograd::supports(g));
        CHECK_FALSE(backend::cpu::amx::usable(g));
        CHECK(std::string(backend::cpu::direct_conv_isa(g)).empty());
    }
}

TEST_CASE("Conv: SegNet's convolutions make the geometry they made before Conv2d") {
    // The geometry ConvLayer builds (conv_kernel plus the map sizes) for Conv<OutC, K>: stride 1,
    // pad K / 2, dilation 1, the input's size: the direct/Winograd dispatch sees what it saw.
    for (int k : {1, 3, 7}) {
        const ConvGeometry kernel = detail::conv_kernel(64, 64, k, ConvOptions{});
        CHECK(kernel.stride == 1);
        CHECK(kernel.pad == k / 2);
        CHECK(kernel.dilation == 1);
        CHECK(kernel.groups == 1);
        CHECK(backend::conv_output_extent(45, k, kernel.stride, kernel.pad, kernel.dilation) == 45);
    }
}

// --- The layer ------------------------------------------------------------------------------------

namespace {
template <class L>
void check_layer(int in_c, int h, int w, std::uint64_t seed) {
    Rng rng(seed);
    auto layer = L::template make<Cpu>({in_c, dyn, dyn});
    layer->initialize(rng);
    std::vector<ParamRef<Cpu>> params;
    layer->collect(params, "");
    for (auto& p : params)
        if (p.name == "bias")
            for (float& v : p.value->span()) v = rng.uniform(-0.5f, 0.5f);
    const Tensor<Cpu> x = random_tensor({2, in_c, h, w}, rng);
    const Tensor<Cpu>& y = layer->forward(x, Mode::train);
    const ShapeResult rule = L::infer({in_c, h, w});
    REQUIRE(rule.fault == Fault::none);
    CHECK(y.extents() == Extents{2, rule.out.c, rule.out.h, rule.out.w});
    const testing::GradientCheckResult r = testing::check_gradients(*layer, x, Mode::train);
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK(r.checked > 0);
    const auto checked = [&](const char* t) { return std::find(r.tensors.begin(), r.tensors.end(), t) != r.tensors.end(); };
    CHECK(checked("input"));
    CHECK(checked("weight"));
    CHECK(checked("bias") == L::has_bias);
}
}  // namespace

TEST_CASE("gradients: Conv2d with a stride, explicit padding") {
    check_layer<Conv2d<4, 3, ConvOptions{.stride = 2, .padding = Padding::explicit_(1)}>>(3, 9, 8, 1);
}
TEST_CASE("gradients: Conv2d atrous (dilation 2, same padding), no bias") {
    check_layer<Conv2d<4, 3, ConvOptions{.dilation = 2, .bias = Bias::without}>>(3, 8, 9, 2);
}
TEST_CASE("gradients: Conv2d valid, dilated, strided and grouped") {
    using L = Conv2d<4, 3, ConvOptions{.stride = 2, .dilation = 2, .padding = Padding::valid, .groups = 2}>;
    check_layer<L>(4, 11, 10, 3);
}
TEST_CASE("gradients: Conv2d with an even kernel and explicit padding") {
    check_layer<Conv2d<3, 2, ConvOptions{.padding = Padding::explicit_(1)}>>(2, 6, 7, 4);
}

TEST_CASE("Conv2d: a run-time input smaller than the dilated window: the rule reports it, the layer throws") {
    using L = Conv2d<4, 3, ConvOptions{.dilation = 3, .padding = Padding::valid}>;  // window 7
    const ShapeResult r = L::infer({3, 6, 20});
    CHECK(r.fault == Fault::conv_window);
    CHECK(r.expected == 7);
    CHECK(r.actual == 6);
    Rng rng(5);
    auto layer = L::make<Cpu>({3, dyn, dyn});
    layer->initialize(rng);
    const Tensor<Cpu> x = random_tensor({1, 3, 6, 20}, rng);
    CHECK_THROWS_AS(layer->forward(x, Mode::eval), std::invalid_argument);  // ConvGeometry::validate
}

// --- In a model ------------------------------------------------------------------------------------

namespace {
/// Strided, atrous and valid convolutions between batch norms: the model's buffer pool and eval
/// fusion (convolution + batch norm + ReLU) on layers whose output is smaller than their input.
/// 9x11 -> 5x6 -> 5x6 -> 3x4 -> 3x4.
struct GeometryNet
    : Network<Input<3, dyn, dyn>, Block<Conv2d<4, 3, ConvOptions{.stride = 2}>, BatchNorm, ReLU>,
              Block<Conv2d<4, 3, ConvOptions{.dilation = 2, .bias = Bias::without}>, BatchNorm, ReLU>,
              Conv2d<4, 3, ConvOptions{.padding = Padding::valid, .groups = 2}>, Classifier<3>> {};

/// Biases and batch-norm affine parameters off their initial 0 / 1, so their gradients are general.
void perturb_affine(Model<GeometryNet, Cpu>& model, Rng& rng) {
    for (auto& p : model.parameters())
        if (p.shape.size() == 1)
            for (float& v : p.value->span()) v += rng.uniform(-0.3f, 0.3f);
}
}  // namespace

TEST_CASE("model gradient: strided, atrous and valid convolutions in a network, every parameter and the input") {
    Model<GeometryNet, Cpu> model(5);
    Rng rng(23);
    perturb_affine(model, rng);
    const Tensor<Cpu> x = random_tensor({2, 3, 9, 11}, rng);
    CHECK(model.forward(x, Mode::train).extents() == Extents{2, 3, 3, 4});
    testing::GradientCheckOptions opt;
    opt.step = 5e-3;
    opt.abs_tol = 2e-3;
    opt.rel_tol = 2e-2;
    opt.allow_kinks = true;  // ReLU kinks within a step of some elements
    const testing::GradientCheckResult r = testing::check_gradients(model, x, Mode::train, opt);
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK_MESSAGE(r.kinks * 4 <= r.checked, r.summary());
    CHECK(r.tensors.size() == model.parameters().size() + 1);
}

TEST_CASE("model: eval fusion (convolution + batch norm + ReLU in one pass) on strided and atrous layers") {
    // The fused eval step folds the batch norm into the im2col kernel's weights and bias; the
    // unfused one runs the three layers. Both must give the same map, of the rule's size.
    Model<GeometryNet, Cpu> model(6);
    Rng rng(29);
    perturb_affine(model, rng);
    model.forward(random_tensor({2, 3, 17, 20}, rng), Mode::train);  // running statistics off 0 / 1
    const Tensor<Cpu> x = random_tensor({1, 3, 17, 20}, rng);
    model.set_eval_fusion(true);
    CHECK(model.eval_fused_nodes() > 0);  // the two Conv2d + BatchNorm + ReLU blocks
    const Tensor<Cpu> fused = model.forward(x, Mode::eval);
    model.set_eval_fusion(false);
    const Tensor<Cpu>& unfused = model.forward(x, Mode::eval);
    constexpr Dims rule = GeometryNet::analyse({3, 17, 20}).output;
    static_assert(rule == Dims{3, 7, 8});
    REQUIRE(fused.extents() == Extents{1, rule.c, rule.h, rule.w});
    REQUIRE(unfused.extents() == fused.extents());
    double worst = 0;
    for (std::int64_t i = 0; i < fused.size(); ++i) worst = std::max(worst, double(std::abs(fused[i] - unfused[i])));
    CHECK(worst < 1e-4);
}
