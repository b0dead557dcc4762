// Composite layers (compose/branches.hpp): Branches (sum, concat), Residual (identity and
// projection shortcuts), ResizedToInput and its bilinear kernel, CroppedToInput: shapes and faults, parameter
// names, the analysis of a network holding them, finite-difference gradients, a few SGD steps.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "segnet/compose/branches.hpp"
#include "segnet/models/resnet.hpp"
#include "segnet/layers/upsample.hpp"
#include "segnet/segnet.hpp"
#include "segnet/testing/gradient_check.hpp"
#include "segnet/train/loss.hpp"
#include "segnet/train/optimizer.hpp"

#include "layer_test_support.hpp"

using namespace segnet;
using segnet::testing_support::random_tensor;
using segnet::testing_support::init_layer;
using segnet::testing::check_gradients;
using segnet::testing::GradientCheckOptions;

namespace {

constexpr Dims any(int c) { return {c, dyn, dyn}; }

std::vector<std::string> names_of(RuntimeLayer<Cpu>& layer) {
    std::vector<ParamRef<Cpu>> ps;
    layer.collect(ps, "");
    std::vector<std::string> names;
    for (auto& p : ps) names.push_back(p.name);
    return names;
}

void check_layer_gradients(RuntimeLayer<Cpu>& layer, Extents in, std::uint64_t seed) {
    Rng rng(seed);
    init_layer(layer, rng);
    const Tensor<Cpu> x = random_tensor(in, rng);
    GradientCheckOptions o;
    o.allow_kinks = true;  // ReLU in the paths and after a residual sum
    const auto r = check_gradients(layer, x, Mode::train, o);
    CHECK_MESSAGE(r.ok, layer.kind(), ": worst ", r.worst_tensor, "[", r.worst_index, "] rel ", r.max_rel_error);
    CHECK(r.kinks < r.checked / 10);
}

/// PyTorch's F.interpolate(mode="bilinear", align_corners=False), written plainly in double.
std::vector<double> reference_resize(const std::vector<float>& x, int h, int w, int oh, int ow) {
    auto source = [](int o, int in, int out) {
        const double s = (o + 0.5) * double(in) / double(out) - 0.5;
        return s < 0 ? 0.0 : s;
    };
    std::vector<double> y(std::size_t(oh) * ow);
    for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox) {
            const double sy = source(oy, h, oh), sx = source(ox, w, ow);
            const int y0 = int(sy), x0 = int(sx), y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
            const double fy = sy - y0, fx = sx - x0;
            auto at = [&](int r, int c) { return double(x[std::size_t(r) * w + c]); };
            y[std::size_t(oy) * ow + ox] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) +
                                           fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
        }
    return y;
}

std::vector<float> resize(const std::vector<float>& x, int h, int w, int oh, int ow) {
    std::vector<float> y(std::size_t(oh) * ow);
    backend::cpu::bilinear_resize_forward(x.data(), 1, h, w, y.data(), oh, ow);
    return y;
}

// The paths the tests compose.
using ConvBnRelu8 = Block<Conv<8, 3, Bias::without>, BatchNorm, ReLU>;
using BasicBody = Block<Conv<8, 3, Bias::without>, BatchNorm, ReLU, Conv<8, 3, Bias::without>, BatchNorm>;
using Projection = Block<Conv<8, 1, Bias::without>, BatchNorm>;
using PooledBranch = ResizedToInput<Block<MaxPool<2>, Conv<2, 1>>>;

}  // namespace

// --- the bilinear kernel -------------------------------------------------------------------------

TEST_CASE("bilinear resize: PyTorch's align_corners=False arithmetic, up and down, with the clamp at 0") {
    Rng rng(3);
    const int sizes[][4] = {{3, 4, 5, 7}, {3, 4, 2, 3}, {7, 9, 14, 18}, {7, 9, 3, 4}, {5, 5, 1, 1}, {1, 1, 4, 4}, {6, 6, 6, 6}};
    for (const auto& s : sizes) {
        std::vector<float> x(std::size_t(s[0]) * s[1]);
        for (float& v : x) v = rng.uniform(-2.f, 2.f);
        const auto got = resize(x, s[0], s[1], s[2], s[3]);
        const auto want = reference_resize(x, s[0], s[1], s[2], s[3]);
        for (std::size_t i = 0; i < got.size(); ++i)
            CHECK_MESSAGE(got[i] == doctest::Approx(want[i]).epsilon(1e-5), s[0], "x", s[1], " -> ", s[2], "x", s[3], " at ", i);
    }
    // The same size is the identity.
    std::vector<float> x(36);
    for (float& v : x) v = rng.uniform(-2.f, 2.f);
    CHECK(resize(x, 6, 6, 6, 6) == x);
}

TEST_CASE("bilinear resize: numbers PyTorch 1.13 computed") {
    // /usr/bin/python3 -c "import torch, torch.nn.functional as F
    //   x = (torch.arange(12, dtype=torch.float32) * 0.37 - 1.5).square().reshape(1, 1, 3, 4)
    //   print(F.interpolate(x, size=(5, 7), mode='bilinear', align_corners=False).flatten().tolist())"
    // (and size=(2, 3))
    std::vector<float> x(12);
    for (int i = 0; i < 12; ++i) x[std::size_t(i)] = (float(i) * 0.37f - 1.5f) * (float(i) * 0.37f - 1.5f);
    const std::vector<float> up = {2.25f,     1.902464f, 1.346407f, 0.9272499f, 0.5472071f, 0.3040642f, 0.1521f,
                                   1.35016f,  1.159081f, 0.8533556f, 0.68453f,  0.5548186f, 0.5620072f, 0.5665002f,
                                   0.0004001263f, 0.0440073f, 0.1137788f, 0.3204503f, 0.5662361f, 0.948922f, 1.188101f,
                                   1.27912f,  1.557413f, 2.002681f, 2.58485f,   3.206133f,  3.964317f,  4.438181f,
                                   2.1316f,   2.56635f,  3.26195f,  4.09445f,   4.966065f,  5.97458f,   6.604901f};
    const std::vector<float> down = {1.57105f, 0.7755499f, 0.4363834f, 1.75605f, 3.15095f, 5.002184f};
    const auto got_up = resize(x, 3, 4, 5, 7), got_down = resize(x, 3, 4, 2, 3);
    for (std::size_t i = 0; i < up.size(); ++i) CHECK(got_up[i] == doctest::Approx(up[i]).epsilon(1e-5).scale(1));  // absolute near 0
    for (std::size_t i = 0; i < down.size(); ++i) CHECK(got_down[i] == doctest::Approx(down[i]).epsilon(1e-5));
}

TEST_CASE("bilinear resize: backward is the forward's transpose (<R x, dy> = <x, R^T dy>)") {
    Rng rng(4);
    const int h = 5, w = 7, oh = 12, ow = 3;
    std::vector<float> x(std::size_t(h) * w), dy(std::size_t(oh) * ow), dx(x.size());
    for (float& v : x) v = rng.uniform(-1.f, 1.f);
    for (float& v : dy) v = rng.uniform(-1.f, 1.f);
    const auto y = resize(x, h, w, oh, ow);
    backend::cpu::bilinear_resize_backward(dy.data(), 1, oh, ow, dx.data(), h, w);
    double lhs = 0, rhs = 0;
    for (std::size_t i = 0; i < y.size(); ++i) lhs += double(y[i]) * dy[i];
    for (std::size_t i = 0; i < x.size(); ++i) rhs += double(x[i]) * dx[i];
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-5));
}

// --- shapes, faults, analysis ----------------------------------------------------------------------

TEST_CASE("branches: shape rules, parameter counts and FLOPs come from the paths") {
    using Sum = Branches<Merge::sum, ConvBnRelu8, Projection>;
    using Cat = Branches<Merge::concat, Identity, ConvBnRelu8, PooledBranch>;
    static_assert(Layer<Sum> && Layer<Cat> && Layer<Residual<BasicBody>> && Layer<PooledBranch>);
    static_assert(Sum::infer({4, 10, 12}).out == Dims{8, 10, 12});
    static_assert(Cat::infer({4, 10, 12}).out == Dims{4 + 8 + 2, 10, 12});
    static_assert(Cat::infer({4, dyn, dyn}).out == Dims{14, dyn, dyn});
    // conv 3x3 4->8 without bias + BN(8); conv 1x1 4->8 + BN(8)
    static_assert(Sum::parameter_count({4, dyn, dyn}) == (4 * 8 * 9 + 16) + (4 * 8 + 16));
    // body: 8*8*9 + 16 twice; identity: nothing
    static_assert(Residual<BasicBody>::parameter_count({8, dyn, dyn}) == 2 * (8 * 8 * 9 + 16));
    static_assert(PooledBranch::parameter_count({4, dyn, dyn}) == 4 * 2 + 2);
    static_assert(PooledBranch::infer({4, 9, 11}).out == Dims{2, 9, 11});
    // FLOPs: the paths' (as the walk counts each layer) plus one add per value.
    constexpr Dims in{4, 10, 12};
    static_assert(Sum::flops(in) == Conv<8, 3, Bias::without>::flops(in) + BatchNorm::flops({8, 10, 12}) +
                                        ReLU::flops({8, 10, 12}) + Conv<8, 1, Bias::without>::flops(in) +
                                        BatchNorm::flops({8, 10, 12}) + 8 * 10 * 12);
    // Faults name the branch: 1-based, with the two numbers.
    constexpr ShapeResult channels = Branches<Merge::sum, ConvBnRelu8, Identity>::infer({4, 10, 12});
    static_assert(channels.fault == Fault::branch_channels && channels.branch == 2 && channels.expected == 8 &&
                  channels.actual == 4);
    constexpr ShapeResult size = Branches<Merge::concat, Identity, Identity, MaxPool<2>>::infer({4, 10, 12});
    static_assert(size.fault == Fault::branch_size && size.branch == 3 && size.expected == 10 && size.actual == 5);
    constexpr ShapeResult inner = Branches<Merge::concat, Identity, Block<MaxPool<2>, MaxPool<8>>>::infer({4, 10, 12});
    static_assert(inner.fault == Fault::too_small && inner.branch == 2 && inner.expected == 8 && inner.actual == 5);
    constexpr ShapeResult paired = Residual<Block<Conv<4, 3>, Add>>::infer({4, 10, 12});
    static_assert(paired.fault == Fault::skip_outside_decoder && paired.branch == 1);
}

namespace {
using ResNet = Network<Input<3, 16, 16>, Block<Conv<8, 3, Bias::without>, BatchNorm, ReLU>, Residual<BasicBody>,
                       Residual<BasicBody, Projection>, Branches<Merge::concat, Identity, PooledBranch>,
                       Classifier<3>>;
}  // namespace

TEST_CASE("branches: a network holding composites is analysed by the same walk") {
    constexpr std::int64_t stem = 3 * 8 * 9 + 16;
    constexpr std::int64_t basic = 2 * (8 * 8 * 9 + 16);
    constexpr std::int64_t projection = 8 * 8 + 16;
    constexpr std::int64_t pyramid = 8 * 2 + 2;
    constexpr std::int64_t classifier = 10 * 3 + 3;
    static_assert(parameter_count_v<ResNet> == stem + basic + basic + projection + pyramid + classifier);
    static_assert(output_shape_t<ResNet, Shape<3, 16, 16>>::channels == 3);
    // Receptive field: the stem's 3, two bodies of two 3x3 each (+8), the pyramid's pooled
    // branch (a 2x2 pool, then the resize reads 2 of its values 2 pixels apart: window 4, +3).
    static_assert(receptive_field_v<ResNet> == 3 + 8 + 3);
    // Training memory counts what the composites keep inside (each path layer's map, the
    // residual sums), not only their outputs.
    constexpr std::int64_t plane = 16 * 16;
    constexpr std::int64_t maps = 3 * plane                       // input
                                  + 3 * 8 * plane                 // stem
                                  + (5 * 8 + 8 + 8) * plane       // residual 1: body, sum, output
                                  + (5 * 8 + 2 * 8 + 8 + 8) * plane  // residual 2: + projection
                                  + (8 * 64 + 2 * 64 + 2 * plane + 10 * plane)  // pyramid: pool, conv (8x8); resized; output
                                  + 3 * plane;                    // classifier
    static_assert(training_activation_bytes_v<ResNet, Shape<3, 16, 16>> == 4 * maps);
    // Inference: the largest input + output (+ what a composite's children keep) over the layers,
    // here the second residual block: its input, its paths' maps, the sum and its output.
    static_assert(inference_activation_bytes_v<ResNet, Shape<3, 16, 16>> == 4 * (8 + 5 * 8 + 2 * 8 + 8 + 8) * plane);

    // A fault only a run-time size reveals names the branch in one line.
    using Dyn = Network<Input<3, dyn, dyn>, Conv<4, 3>, Branches<Merge::sum, Identity, Block<MaxPool<2>, Conv<4, 1>>>>;
    const Analysis a = Dyn::analyse({3, 16, 16});
    REQUIRE_FALSE(a.ok());
    CHECK(describe(a.diag) == "segnet: stage 2, layer 1 (Branches<sum>), branch 2: a branch's size differs from the "
                              "first branch's (expected 16, got 8)");
}

namespace {
// ResNet-50's body as torchvision builds it (models/resnet.hpp: Bottleneck v1.5, the projecting
// first block of each layer), ImageNet's at output stride 32 and the dilated segmentation ones.
struct ResNet50Body : Network<Input<3, dyn, dyn>, models::ResNet50Body<32>> {};
struct ResNet50Stride16 : Network<Input<3, dyn, dyn>, models::ResNet50Body<16>> {};
struct ResNet50Stride8 : Network<Input<3, dyn, dyn>, models::DilatedResNet50> {};
}  // namespace

TEST_CASE("branches: ResNet-50's body has torchvision's parameter count") {
    // torchvision resnet50: 25,557,032 parameters, of which fc holds 2048 * 1000 + 1000 = 2,049,000.
    // Per stage: conv1 + bn1 9,408 + 128; layer1 215,808; layer2 1,219,584; layer3 7,098,368; layer4 14,964,736.
    static_assert(parameter_count_v<ResNet50Body> == 25'557'032 - 2'049'000);
    static_assert(parameter_count_v<ResNet50Body> == 9'408 + 128 + 215'808 + 1'219'584 + 7'098'368 + 14'964'736);
    // Dilation changes no count, only the output stride (torchvision's replace_stride_with_dilation).
    static_assert(parameter_count_v<ResNet50Stride8> == parameter_count_v<ResNet50Body>);
    static_assert(std::is_same_v<output_shape_t<ResNet50Body, Shape<3, 224, 224>>, Shape<2048, 7, 7>>);
    static_assert(std::is_same_v<output_shape_t<ResNet50Stride16, Shape<3, 224, 224>>, Shape<2048, 14, 14>>);
    static_assert(std::is_same_v<output_shape_t<ResNet50Stride8, Shape<3, 224, 224>>, Shape<2048, 28, 28>>);
    // torchvision's _make_layer: a dilated layer has stride 1 and its first block keeps the
    // previous dilation (layer3: 1 then 2; layer4: 2 then 4).
    using models::Bottleneck, models::ResNetLayer;
    static_assert(std::is_same_v<models::DilatedResNet50,
                                 Block<models::ResNetStem, ResNetLayer<64, 3, 1, 1, 1>, ResNetLayer<128, 4, 2, 1, 1>,
                                       ResNetLayer<256, 6, 1, 1, 2>, ResNetLayer<512, 3, 1, 2, 4>>>);
    static_assert(std::is_same_v<models::ResNet50Body<16>,
                                 Block<models::ResNetStem, ResNetLayer<64, 3, 1, 1, 1>, ResNetLayer<128, 4, 2, 1, 1>,
                                       ResNetLayer<256, 6, 2, 1, 1>, ResNetLayer<512, 3, 1, 1, 2>>>);
    static_assert(std::is_same_v<ResNetLayer<512, 3, 1, 2, 4>,
                                 Block<Bottleneck<512, 1, 2, true>, Bottleneck<512, 1, 4, false>, Bottleneck<512, 1, 4, false>>>);
    // Each stride-2 step rounds up (7x7 s2 p3, 3x3 s2 p1 and 1x1 s2 all give ceil(H / 2)).
    CHECK(ResNet50Stride8::analyse({3, 45, 61}).output == Dims{2048, 6, 8});
    CHECK(ResNet50Body::analyse({3, 8, 8}).output == Dims{2048, 1, 1});
}

TEST_CASE("branches: a network resized back to its input size at the end (DeepLab's upsampling)") {
    struct Net : Network<Input<3, dyn, dyn>, ResizedToInput<Block<Conv<8, 3>, MaxPool<2>, Conv<8, 3>, MaxPool<2>, Classifier<3>>>> {};
    static_assert(output_shape_t<Net, Shape<3, 13, 17>>::channels == 3);
    static_assert(Net::analyse({3, 13, 17}).output == Dims{3, 13, 17});
    Model<Net, Cpu> model(3);
    Rng rng(7);
    CHECK(model.forward(random_tensor({2, 3, 13, 17}, rng), Mode::eval).extents() == Extents{2, 3, 13, 17});
}

TEST_CASE("branches: parameters are named under the composite's prefix") {
    Model<ResNet, Cpu> model(1);
    std::vector<std::string> names;
    for (const auto& p : model.parameters()) names.push_back(p.name);
    const std::vector<std::string> expected_some = {
        "stage1.0.weight",          "stage2.body.0.weight",     "stage2.body.1.weight",
        "stage2.body.4.bias", "stage3.shortcut.0.weight", "stage3.shortcut.1.bias",
        // the pyramid's branch 1 is one layer, ResizedToInput (0), whose path adds no level: its conv is 1
        "stage4.branch1.0.1.weight", "stage4.branch1.0.1.bias", "classifier.weight"};
    for (const auto& n : expected_some) CHECK_MESSAGE(std::find(names.begin(), names.end(), n) != names.end(), n);
    // Nothing is named twice, and the identity shortcut adds nothing.
    auto sorted = names;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    CHECK(std::none_of(names.begin(), names.end(), [](const std::string& n) { return n.starts_with("stage2.shortcut"); }));

    auto nested = Branches<Merge::sum, Identity, Block<ReLU, Residual<BasicBody>>>::make<Cpu>(any(8));
    const auto nested_names = names_of(*nested);
    CHECK(std::find(nested_names.begin(), nested_names.end(), "branch1.1.body.3.weight") != nested_names.end());
}

// --- forward values ---------------------------------------------------------------------------------

namespace {
/// Copies every parameter of `from` into `to`, matched by position (same layers, same order).
void copy_parameters(RuntimeLayer<Cpu>& from, const std::string& from_prefix, RuntimeLayer<Cpu>& to) {
    std::vector<ParamRef<Cpu>> a, b;
    from.collect(a, "");
    to.collect(b, "");
    std::size_t j = 0;
    for (auto& p : a)
        if (p.name.starts_with(from_prefix)) *b.at(j++).value = *p.value;
    REQUIRE(j == b.size());
}
}  // namespace

TEST_CASE("forward: Residual is ReLU(body + shortcut); Branches concatenate in order and sum") {
    Rng rng(20);
    const Tensor<Cpu> x = random_tensor({2, 4, 5, 6}, rng);
    auto residual = Residual<Conv<4, 3>, Conv<4, 1>>::make<Cpu>(any(4));
    init_layer(*residual, rng);
    auto body = Conv<4, 3>::make<Cpu>(any(4));
    auto shortcut = Conv<4, 1>::make<Cpu>(any(4));
    copy_parameters(*residual, "body.", *body);
    copy_parameters(*residual, "shortcut.", *shortcut);
    const Tensor<Cpu> b = body->forward(x, Mode::eval), s = shortcut->forward(x, Mode::eval);
    const Tensor<Cpu>& y = residual->forward(x, Mode::eval);
    REQUIRE(y.extents() == x.extents());
    for (std::int64_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(std::max(b[i] + s[i], 0.f)));

    auto cat = Branches<Merge::concat, Conv<4, 3>, Identity>::make<Cpu>(any(4));
    init_layer(*cat, rng);
    copy_parameters(*cat, "branch0.", *body);
    const Tensor<Cpu> b2 = body->forward(x, Mode::eval);
    const Tensor<Cpu>& c = cat->forward(x, Mode::eval);
    REQUIRE(c.extents() == Extents{2, 8, 5, 6});
    const std::int64_t per_image = 4 * 30;
    for (int n = 0; n < 2; ++n)
        for (std::int64_t i = 0; i < per_image; ++i) {
            CHECK(c[n * 2 * per_image + i] == b2[n * per_image + i]);
            CHECK(c[n * 2 * per_image + per_image + i] == x[n * per_image + i]);
        }

    auto sum = Branches<Merge::sum, Identity, Identity, Identity>::make<Cpu>(any(4));
    const Tensor<Cpu>& t = sum->forward(x, Mode::eval);
    for (std::int64_t i = 0; i < t.size(); ++i) CHECK(t[i] == doctest::Approx(3 * x[i]));
}

TEST_CASE("forward: a model holding composites runs eval and train at any size; a size the paths disagree on is one error") {
    Model<ResNet, Cpu> model(2);
    Rng rng(21);
    const Tensor<Cpu> x = random_tensor({1, 3, 16, 16}, rng);
    const Tensor<Cpu> eval = model.forward(x, Mode::eval);
    CHECK(eval.extents() == Extents{1, 3, 16, 16});
    auto pyramid = Branches<Merge::concat, Identity, PooledBranch>::make<Cpu>(any(3));
    CHECK(pyramid->forward(random_tensor({1, 3, 7, 9}, rng), Mode::train).extents() == Extents{1, 5, 7, 9});
    // A sum of a pooled path and the identity: only an odd size reveals it (7 -> 4 after a ceil-mode pool).
    auto uneven = Branches<Merge::sum, Identity, ResizedToInput<MaxPool<2>>, MaxPool<2>>::make<Cpu>(any(3));
    CHECK_THROWS_WITH_AS(uneven->forward(random_tensor({1, 3, 7, 9}, rng), Mode::eval),
                         "segnet::Branches<sum>: branch 3 gives 1x3x4x5, branch 1 1x3x7x9 (a sum needs equal maps)",
                         std::invalid_argument);
}

TEST_CASE("forward: the model's random-layer switches reach a Dropout inside a composite") {
    struct Net : Network<Input<3, dyn, dyn>, Conv<4, 3>, Residual<Block<Conv<4, 3>, Dropout<50>>>, Classifier<2>> {};
    struct Plain : Network<Input<3, dyn, dyn>, Conv<4, 3>, Residual<Conv<4, 3>>, Classifier<2>> {};
    Model<Net, Cpu> model(4);
    CHECK(model.has_random_layers());
    CHECK_FALSE(Model<Plain, Cpu>(4).has_random_layers());
    Rng rng(8);
    const Tensor<Cpu> x = random_tensor({1, 3, 6, 6}, rng);
    auto values = [](const Tensor<Cpu>& t) { return std::vector<float>(t.span().begin(), t.span().end()); };
    const auto deterministic = values(model.forward(x, Mode::eval));
    CHECK(values(model.forward(x, Mode::eval)) == deterministic);
    model.set_sampling(true);  // the Dropout inside the Residual draws in eval mode too
    const auto first = values(model.forward(x, Mode::eval));
    const auto second = values(model.forward(x, Mode::eval));
    CHECK(first != deterministic);
    CHECK(first != second);
    model.set_sampling(true);  // restarts the sample counter: the same draws again
    CHECK(values(model.forward(x, Mode::eval)) == first);
}

// --- gradients -----------------------------------------------------------------------------------

TEST_CASE("gradients: Residual with the identity and with a projection shortcut") {
    auto identity = Residual<BasicBody>::make<Cpu>(any(8));
    check_layer_gradients(*identity, {2, 8, 5, 6}, 11);
    auto projection = Residual<Block<Conv<8, 3>, BatchNorm>, Projection>::make<Cpu>(any(3));
    check_layer_gradients(*projection, {2, 3, 5, 6}, 12);
}

TEST_CASE("gradients: Branches summed and concatenated (backward sums the paths' input gradients)") {
    auto sum = Branches<Merge::sum, Conv<4, 3>, Conv<4, 1>, Identity>::make<Cpu>(any(4));
    check_layer_gradients(*sum, {2, 4, 5, 6}, 13);
    auto cat = Branches<Merge::concat, Identity, Block<Conv<3, 3>, BatchNorm>, Conv<2, 1>>::make<Cpu>(any(3));
    check_layer_gradients(*cat, {2, 3, 5, 6}, 14);
}

TEST_CASE("gradients: ResizedToInput, up from a pooled map and down from a larger one") {
    auto pooled = ResizedToInput<Block<MaxPool<2>, Conv<3, 1>>>::make<Cpu>(any(2));
    check_layer_gradients(*pooled, {2, 2, 7, 9}, 15);
    auto down = ResizedToInput<Conv<2, 3>>::make<Cpu>(any(2));  // a same-size path: the resize is the identity
    check_layer_gradients(*down, {1, 2, 4, 5}, 16);
}

TEST_CASE("gradients: CroppedToInput, a path 2x upsampled past the input cropped back (FCN's skip)") {
    // 5x7 pooled to 3x4, upsampled to 6x8, cropped to 5x7: the cropped-off row and column get no gradient.
    auto crop = CroppedToInput<Block<MaxPool<2>, Conv<3, 1>, ConvTranspose2d<3, 4, 2, 1>>>::make<Cpu>(any(2));
    check_layer_gradients(*crop, {2, 2, 5, 7}, 17);
}

TEST_CASE("forward: CroppedToInput keeps the path's top-left window; a path smaller than its input is one error") {
    Rng rng(18);
    auto crop = CroppedToInput<ConvTranspose2d<2, 3>>::make<Cpu>(any(2));  // 4x5 -> 6x7, cropped to 4x5
    crop->initialize(rng);
    auto full = ConvTranspose2d<2, 3>::make<Cpu>(any(2));
    Rng same(18);
    full->initialize(same);
    const Tensor<Cpu> x = random_tensor({1, 2, 4, 5}, rng);
    const Tensor<Cpu>& y = crop->forward(x, Mode::eval);
    REQUIRE(y.extents() == Extents{1, 2, 4, 5});
    const Tensor<Cpu>& uncropped = full->forward(x, Mode::eval);
    REQUIRE(uncropped.extents() == Extents{1, 2, 6, 7});
    for (int c = 0; c < 2; ++c)
        for (int h = 0; h < 4; ++h)
            for (int w = 0; w < 5; ++w) CHECK(y.data()[(c * 4 + h) * 5 + w] == uncropped.data()[(c * 6 + h) * 7 + w]);
    auto shrinking = CroppedToInput<MaxPool<2>>::make<Cpu>(any(2));
    CHECK_THROWS_WITH_AS(shrinking->forward(x, Mode::eval), doctest::Contains("smaller than its input"), std::invalid_argument);
}

// --- training --------------------------------------------------------------------------------------

TEST_CASE("training: a tiny network with residual blocks learns a few SGD steps (the loss falls)") {
    using Tiny = Network<Input<3, dyn, dyn>, Block<Conv<8, 3, Bias::without>, BatchNorm, ReLU>,
                         Residual<BasicBody>, Residual<BasicBody, Projection>, Classifier<2>>;
    Model<Tiny, Cpu> model(5);
    Rng rng(6);
    // Class 1 where the first input channel is positive: learnable by a pointwise rule.
    Tensor<Cpu> x = random_tensor({4, 3, 12, 12}, rng);
    Tensor<Cpu, std::uint8_t> labels({4, 1, 12, 12});
    for (int n = 0; n < 4; ++n)
        for (int i = 0; i < 144; ++i) labels[std::int64_t(n) * 144 + i] = x[std::int64_t(n) * 3 * 144 + i] > 0 ? 1 : 0;
    CrossEntropyLoss loss(CrossEntropyOptions{});
    Sgd<Cpu> sgd(model.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 0});
    Tensor<Cpu> grad;
    std::vector<double> losses;
    for (int step = 0; step < 12; ++step) {
        model.zero_grad();
        const Tensor<Cpu>& logits = model.forward(x, Mode::train);
        grad.resize(logits.extents());
        losses.push_back(loss.forward_backward(logits, labels, grad));
        model.backward(grad);
        sgd.step();
    }
    CHECK(losses.back() < 0.7 * losses.front());
}
