// Layers and CPU kernels: finite-difference gradient checks of every layer (Dropout included) (input and every
// parameter, through segnet/testing/gradient_check.hpp), convolution kernels against plain
// loops, pooling/unpooling round trips and Caffe's tie rule, batch-norm modes and running
// statistics (PyTorch's formula), a whole-model gradient check through the skip wiring, run-time
// shape errors and reproducible initialisation. Expected values are computed here by direct
// loops, not by the code under test.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/cpu/conv.hpp"
#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/compose/model.hpp"
#include "segnet/layers/add.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/dropout.hpp"
#include "segnet/layers/lrn.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/layers/upsample.hpp"
#include "segnet/models/segnet_basic.hpp"
#include "segnet/testing/gradient_check.hpp"

#include "layer_test_support.hpp"

using namespace segnet;
using segnet::testing_support::random_tensor;
using segnet::testing_support::init_layer;
using segnet::testing::check_gradients;
using segnet::testing::GradientCheckOptions;
using segnet::testing::GradientCheckResult;

namespace {

constexpr Dims any(int c) { return {c, dyn, dyn}; }

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

void check_passed(const GradientCheckResult& r, std::initializer_list<const char*> tensors) {
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK(r.checked > 0);
    CHECK(r.kinks == 0);
    for (const char* t : tensors) CHECK_MESSAGE(has(r.tensors, t), "tensor not checked: " << t);
}

/// A test double: y = s * x with a learnable scalar s, whose backward can be made wrong.
class ScaleLayer final : public RuntimeLayer<Cpu> {
public:
    ScaleLayer(double input_error, double param_error) : input_error_(input_error), param_error_(param_error) {
        s_.resize(detail::vector_extents(1));
        ds_.resize(detail::vector_extents(1));
        s_[0] = 1.5f;
    }
    const Tensor<Cpu>& forward(const Tensor<Cpu>& x, Mode) override {
        x_ = &x;
        y_.resize(x.extents());
        for (std::int64_t i = 0; i < x.size(); ++i) y_[i] = s_[0] * x[i];
        return y_;
    }
    const Tensor<Cpu>& backward(const Tensor<Cpu>& dy) override {
        dx_.resize(dy.extents());
        double ds = 0;
        for (std::int64_t i = 0; i < dy.size(); ++i) {
            dx_[i] = float(dy[i] * s_[0] * input_error_);
            ds += double(dy[i]) * (*x_)[i];
        }
        ds_[0] += float(ds * param_error_);
        return dx_;
    }
    void collect(std::vector<ParamRef<Cpu>>& out, const std::string& prefix) override {
        detail::add_param(out, prefix + "scale", s_, &ds_, {1}, false);
    }
    std::string_view kind() const override { return "Scale"; }

private:
    double input_error_, param_error_;
    Tensor<Cpu> s_, ds_, y_, dx_;
    const Tensor<Cpu>* x_ = nullptr;
};

}  // namespace

// --- The checker itself ------------------------------------------------------------------------

TEST_CASE("gradient checker: passes a correct backward and names the wrong tensor of a wrong one") {
    Rng rng(1);
    const Tensor<Cpu> x = random_tensor({2, 3, 4, 5}, rng);
    ScaleLayer good(1.0, 1.0);
    check_passed(check_gradients(good, x, Mode::train), {"input", "scale"});

    ScaleLayer bad_input(1.05, 1.0);  // 5% off: well outside the 1% relative tolerance
    const GradientCheckResult ri = check_gradients(bad_input, x, Mode::train);
    CHECK_FALSE(ri.ok);
    CHECK(ri.worst_tensor == "input");
    CHECK(ri.failed > 0);
    CHECK(ri.max_rel_error == doctest::Approx(0.05 / 1.05).epsilon(0.05).scale(0));

    ScaleLayer bad_param(1.0, 0.95);
    const GradientCheckResult rp = check_gradients(bad_param, x, Mode::train);
    CHECK_FALSE(rp.ok);
    CHECK(rp.worst_tensor == "scale");
    CHECK(rp.worst_index == 0);
}

TEST_CASE("gradient checker: leaves values, running statistics and gradients as it found them") {
    Rng rng(2);
    auto bn = BatchNorm::make<Cpu>(any(3));
    init_layer(*bn, rng);
    std::vector<ParamRef<Cpu>> ps;
    bn->collect(ps, "");
    for (auto& p : ps) {
        for (float& v : p.value->span()) v += rng.uniform(0.1f, 0.2f);  // running_var stays positive
        if (p.grad) p.grad->fill(0.25f);
    }
    std::vector<std::vector<float>> before;
    for (auto& p : ps) {
        before.emplace_back(p.value->span().begin(), p.value->span().end());
        if (p.grad) before.emplace_back(p.grad->span().begin(), p.grad->span().end());
    }
    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);
    CHECK(check_gradients(*bn, x, Mode::train).ok);  // train mode moves running statistics 2x per element
    std::size_t k = 0;
    for (auto& p : ps) {
        CHECK_MESSAGE(std::vector<float>(p.value->span().begin(), p.value->span().end()) == before[k++], p.name);
        if (p.grad) CHECK_MESSAGE(std::vector<float>(p.grad->span().begin(), p.grad->span().end()) == before[k++], p.name);
    }
}

// --- Finite-difference gradients of every layer --------------------------------------------------

TEST_CASE("gradients: Conv with and without bias, K = 1, 3, 7, grouped") {
    Rng rng(10);
    auto run = [&](std::unique_ptr<RuntimeLayer<Cpu>> layer, int in_c, bool bias) {
        init_layer(*layer, rng);
        const Tensor<Cpu> x = random_tensor({2, in_c, 7, 9}, rng);
        const GradientCheckResult r = check_gradients(*layer, x, Mode::train);
        check_passed(r, {"input", "weight"});
        CHECK(has(r.tensors, "bias") == bias);
    };
    SUBCASE("1x1 with bias") { run(Conv<4, 1>::make<Cpu>(any(3)), 3, true); }
    SUBCASE("3x3 without bias") { run(Conv<5, 3, Bias::without>::make<Cpu>(any(3)), 3, false); }
    SUBCASE("7x7 with bias (kernel wider than the 7x9 map's interior)") { run(Conv<4, 7>::make<Cpu>(any(3)), 3, true); }
    SUBCASE("3x3 grouped, 2 groups, 4 -> 6 channels") { run(Conv<6, 3, Bias::with, 2>::make<Cpu>(any(4)), 4, true); }
    SUBCASE("5x5 grouped, 3 groups, no bias") { run(Conv<3, 5, Bias::without, 3>::make<Cpu>(any(6)), 6, false); }
}

TEST_CASE("gradients: DepthwiseConv and Classifier (1x1 and 3x3)") {
    Rng rng(11);
    auto run = [&](std::unique_ptr<RuntimeLayer<Cpu>> layer, int in_c, bool bias) {
        init_layer(*layer, rng);
        const Tensor<Cpu> x = random_tensor({2, in_c, 7, 9}, rng);
        const GradientCheckResult r = check_gradients(*layer, x, Mode::train);
        check_passed(r, {"input", "weight"});
        CHECK(has(r.tensors, "bias") == bias);
    };
    SUBCASE("DepthwiseConv<3>") { run(DepthwiseConv<3>::make<Cpu>(any(5)), 5, false); }
    SUBCASE("DepthwiseConv<7, with bias>") { run(DepthwiseConv<7, Bias::with>::make<Cpu>(any(3)), 3, true); }
    SUBCASE("Classifier<3> (1x1)") { run(Classifier<3>::make<Cpu>(any(4)), 4, true); }
    SUBCASE("Classifier<5, 3> (3x3)") { run(Classifier<5, 3>::make<Cpu>(any(4)), 4, true); }
}

TEST_CASE("gradients: BatchNorm in train mode and eval mode (input, weight, bias)") {
    Rng rng(12);
    auto bn = BatchNorm::make<Cpu>(any(4));
    init_layer(*bn, rng);
    // Per-channel offsets and scales, so the normalisation is not close to the identity.
    Tensor<Cpu> x = random_tensor({2, 4, 7, 9}, rng);
    for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 4; ++c)
            for (int h = 0; h < 7; ++h)
                for (int w = 0; w < 9; ++w) x(n, c, h, w) = x(n, c, h, w) * float(c + 1) + float(c) - 1.f;
    SUBCASE("train") { check_passed(check_gradients(*bn, x, Mode::train), {"input", "weight", "bias"}); }
    SUBCASE("eval") {
        std::vector<ParamRef<Cpu>> ps;
        bn->collect(ps, "");
        for (auto& p : ps) {
            if (p.name == "running_mean") for (float& v : p.value->span()) v = rng.uniform(-1.f, 1.f);
            if (p.name == "running_var") for (float& v : p.value->span()) v = rng.uniform(0.5f, 3.f);
        }
        // Frozen statistics (fine-tuning): the input, gamma and beta gradients of the fixed
        // affine map.
        check_passed(check_gradients(*bn, x, Mode::eval), {"input", "weight", "bias"});
    }
}

TEST_CASE("gradients: ReLU with inputs kept at least 0.1 away from its kink") {
    Rng rng(13);
    Tensor<Cpu> x({2, 3, 7, 9});
    for (float& v : x.span()) v = (rng.uniform() < 0.5f ? -1.f : 1.f) * rng.uniform(0.1f, 1.f);
    auto relu = ReLU::make<Cpu>(any(3));
    check_passed(check_gradients(*relu, x, Mode::train), {"input"});
}

namespace {
/// Distinct values 0.1 apart in a random order: no ties, and a step of 1e-2 never changes an argmax.
Tensor<Cpu> distinct_tensor(Extents e, Rng& rng) {
    Tensor<Cpu> t(e);
    std::vector<float> v(std::size_t(t.size()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * float(i) - 0.05f * float(v.size());
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[std::size_t(rng.below(i))]);
    std::copy(v.begin(), v.end(), t.data());
    return t;
}
}  // namespace

TEST_CASE("gradients: MaxPool<2> and MaxPool<3> on odd sizes (partial windows), distinct values") {
    Rng rng(14);
    SUBCASE("MaxPool<2>, 7x9") {
        auto pool = MaxPool<2>::make<Cpu>(any(3));
        check_passed(check_gradients(*pool, distinct_tensor({2, 3, 7, 9}, rng), Mode::train), {"input"});
    }
    SUBCASE("MaxPool<3>, 8x7") {
        auto pool = MaxPool<3>::make<Cpu>(any(2));
        check_passed(check_gradients(*pool, distinct_tensor({2, 2, 8, 7}, rng), Mode::train), {"input"});
    }
}

namespace {
/// An Encoder's side of a SkipLink, set up by hand as compose/model.hpp does: the pre-pool
/// feature map (TapLayer), then the pool that publishes its indices.
struct EncoderSide {
    Tensor<Cpu> feature;
    std::unique_ptr<RuntimeLayer<Cpu>> pool;
    SkipLink<Cpu> link;
    Tensor<Cpu> pooled;
    EncoderSide(Extents e, int factor, Rng& rng) : feature(distinct_tensor(e, rng)) {
        pool = factor == 2 ? MaxPool<2>::make<Cpu>(any(e.c)) : MaxPool<3>::make<Cpu>(any(e.c));
        pool->connect(&link);
        link.feature = &feature;
        pooled = pool->forward(feature, Mode::train);
        link.indices = &static_cast<MaxPoolLayer<Cpu>&>(*pool).indices();
        link.pool = factor;
    }
};
}  // namespace

TEST_CASE("gradients: ConvTranspose2d (unpaired), its output size from its input alone") {
    Rng rng(16);
    SUBCASE("ConvTranspose2d<4, 3>: stride 1, no padding (DeconvNet's form), 4x5 -> 6x7") {
        auto up = ConvTranspose2d<4, 3>::make<Cpu>(any(3));
        init_layer(*up, rng);
        const Tensor<Cpu> x = random_tensor({2, 3, 4, 5}, rng);
        CHECK(up->forward(x, Mode::train).extents() == Extents{2, 4, 6, 7});
        check_passed(check_gradients(*up, x, Mode::train), {"input", "weight"});
    }
    SUBCASE("ConvTranspose2d<3, 4, 2, 1>: FCN's 2x upscore, 3x5 -> 6x10") {
        auto up = ConvTranspose2d<3, 4, 2, 1, UpsampleInit::bilinear>::make<Cpu>(any(2));
        init_layer(*up, rng);
        const Tensor<Cpu> x = random_tensor({2, 2, 3, 5}, rng);
        CHECK(up->forward(x, Mode::train).extents() == Extents{2, 3, 6, 10});
        check_passed(check_gradients(*up, x, Mode::train), {"input", "weight"});
    }
}

TEST_CASE("ConvTranspose2d<C, 4, 2, 1> bilinear-initialised upsamples a map by 2 as FCN's kernel: by loops") {
    // With the bilinear kernel on the channel diagonal, an interior output pixel is the weighted
    // sum of its two nearest inputs per axis with weights 3/4 and 1/4 (FCN's upsample_filt).
    Rng rng(17);
    auto up = ConvTranspose2d<2, 4, 2, 1, UpsampleInit::bilinear>::make<Cpu>(any(2));
    up->initialize(rng);
    const Tensor<Cpu> x = random_tensor({1, 2, 3, 4}, rng);
    const Tensor<Cpu>& y = up->forward(x, Mode::eval);
    REQUIRE(y.extents() == Extents{1, 2, 6, 8});
    auto in = [&](int c, int h, int w) { return double(x.data()[(c * 3 + h) * 4 + w]); };
    for (int c = 0; c < 2; ++c)
        for (int oy = 1; oy < 5; ++oy)
            for (int ox = 1; ox < 7; ++ox) {
                // output o sits at input coordinate (o - 0.5) / 2: between floor and floor + 1
                const double fy = (oy - 0.5) / 2, fx = (ox - 0.5) / 2;
                const int y0 = int(std::floor(fy)), x0 = int(std::floor(fx));
                const double wy = fy - y0, wx = fx - x0;
                const double expected = (1 - wy) * ((1 - wx) * in(c, y0, x0) + wx * in(c, y0, x0 + 1)) +
                                        wy * ((1 - wx) * in(c, y0 + 1, x0) + wx * in(c, y0 + 1, x0 + 1));
                CHECK(y.data()[(c * 6 + oy) * 8 + ox] == doctest::Approx(expected).epsilon(1e-5));
            }
}

TEST_CASE("gradients: paired upsamplers (Unpool<2>, BilinearUpsample<2>, TransposedConv) through a SkipLink") {
    Rng rng(15);
    SUBCASE("Unpool<2>: 4x5 -> 7x9 at the pool's indices") {
        EncoderSide enc({2, 3, 7, 9}, 2, rng);
        auto unpool = Unpool<2>::make<Cpu>(any(3));
        unpool->connect(&enc.link);
        const Tensor<Cpu> x = random_tensor({2, 3, 4, 5}, rng);
        CHECK(unpool->forward(x, Mode::train).extents() == Extents{2, 3, 7, 9});
        check_passed(check_gradients(*unpool, x, Mode::train), {"input"});
    }
    SUBCASE("BilinearUpsample<2>: 4x5 -> 7x9, fixed kernel (no parameters)") {
        EncoderSide enc({2, 3, 7, 9}, 2, rng);
        auto up = BilinearUpsample<2>::make<Cpu>(any(3));
        up->initialize(rng);
        up->connect(&enc.link);
        const Tensor<Cpu> x = random_tensor({2, 3, 4, 5}, rng);
        CHECK(up->forward(x, Mode::train).extents() == Extents{2, 3, 7, 9});
        const GradientCheckResult r = check_gradients(*up, x, Mode::train);
        check_passed(r, {"input"});
        CHECK(r.tensors.size() == 1);
    }
    SUBCASE("TransposedConv<5, 4, 2>: 3 -> 5 channels, 4x5 -> 7x9, learned weight") {
        EncoderSide enc({2, 3, 7, 9}, 2, rng);
        auto up = TransposedConv<5, 4, 2>::make<Cpu>(any(3));
        init_layer(*up, rng);
        up->connect(&enc.link);
        const Tensor<Cpu> x = random_tensor({2, 3, 4, 5}, rng);
        CHECK(up->forward(x, Mode::train).extents() == Extents{2, 5, 7, 9});
        check_passed(check_gradients(*up, x, Mode::train), {"input", "weight"});
    }
    SUBCASE("TransposedConv<4, 3, 3>: stride 3, 3x3 -> 8x7, He-initialised") {
        EncoderSide enc({2, 2, 8, 7}, 3, rng);
        auto up = TransposedConv<4, 3, 3, UpsampleInit::he>::make<Cpu>(any(2));
        up->initialize(rng);
        up->connect(&enc.link);
        const Tensor<Cpu> x = random_tensor({2, 2, 3, 3}, rng);
        CHECK(up->forward(x, Mode::train).extents() == Extents{2, 4, 8, 7});
        check_passed(check_gradients(*up, x, Mode::train), {"input", "weight"});
    }
}

TEST_CASE("gradients: Add, for the decoder input and for the encoder feature reached through the SkipLink") {
    Rng rng(16);
    Tensor<Cpu> feature = random_tensor({2, 4, 7, 9}, rng);
    SkipLink<Cpu> link;
    link.feature = &feature;
    auto add = Add::make<Cpu>(any(4));
    add->connect(&link);
    GradientCheckOptions opt;
    opt.before_forward = [&] { link.has_feature_grad = false; };  // what the Tap does each forward
    opt.extra_inputs.push_back(
        {"encoder_feature", &feature, [&]() -> const Tensor<Cpu>* { return link.has_feature_grad ? &link.feature_grad : nullptr; }});
    const Tensor<Cpu> x = random_tensor({2, 4, 7, 9}, rng);
    check_passed(check_gradients(*add, x, Mode::train, opt), {"input", "encoder_feature"});
}

TEST_CASE("gradients: LRN (the default, and strong alpha/beta so the normalisation term matters)") {
    Rng rng(17);
    const Tensor<Cpu> x = random_tensor({2, 7, 5, 6}, rng, -2.f, 2.f);
    SUBCASE("LRN<5, 1e-4, 0.75>") { check_passed(check_gradients(*LRN<>::make<Cpu>(any(7)), x, Mode::train), {"input"}); }
    SUBCASE("LRN<3, 0.5, 0.75>") {
        check_passed(check_gradients(*LRN<3, 500000, 75>::make<Cpu>(any(7)), x, Mode::train), {"input"});
    }
    SUBCASE("LRN<5, 1.0, 1.5>") {
        check_passed(check_gradients(*LRN<5, 1000000, 150>::make<Cpu>(any(7)), x, Mode::train), {"input"});
    }
}

TEST_CASE("gradients: LRN with strong alpha is far from the identity (the check above is not vacuous)") {
    Rng rng(18);
    const Tensor<Cpu> x = random_tensor({1, 7, 5, 6}, rng, -2.f, 2.f);
    auto lrn = LRN<3, 500000, 75>::make<Cpu>(any(7));
    const Tensor<Cpu>& y = lrn->forward(x, Mode::train);
    // Channel 3 at pixel 0: k + alpha/size * (x2^2 + x3^2 + x4^2), to the power -beta.
    const int px = 0;
    double s = 0;
    for (int c = 2; c <= 4; ++c) s += double(x[c * 30 + px]) * x[c * 30 + px];
    const double expected = x[3 * 30 + px] * std::pow(1.0 + 0.5 / 3 * s, -0.75);
    CHECK(y[3 * 30 + px] == doctest::Approx(expected).epsilon(1e-5));
    double max_change = 0;
    for (std::int64_t i = 0; i < x.size(); ++i) max_change = std::max(max_change, double(std::abs(y[i] - x[i])));
    CHECK(max_change > 0.3);
}

// --- Whole-model gradient through the skip wiring --------------------------------------------------

namespace {
using TinyNet = Network<Input<3, dyn, dyn>, Encoder<Block<Conv<4, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                        Decoder<Unpool<2>, Add, Block<Conv<4, 3, Bias::without>, BatchNorm>>, Classifier<3>>;
}

namespace {
/// Finite differences through a whole SegNet-style network in float32: ReLU kinks and max-pool
/// argmax swaps (where unpooling makes the network jump) lie within reach of some elements,
/// most often a first-encoder weight, which moves every pre-pool value at once. A 5x7 map keeps
/// them few; allow_kinks accepts an element whose central difference fails only if a one-sided
/// or smaller-step estimate matches. Over 50 seeds this setting had no failures and at most 18%
/// of elements at kinks, while a wrong wiring fails the input and encoder tensors outright.
GradientCheckOptions model_check_options() {
    GradientCheckOptions opt;
    opt.step = 5e-3;
    opt.abs_tol = 2e-3;
    opt.rel_tol = 2e-2;
    opt.allow_kinks = true;
    return opt;
}
void perturb_affine(Model<TinyNet, Cpu>& model, Rng& rng) {  // biases and batch-norm affine off 0 / 1
    for (auto& p : model.parameters())
        if (p.shape.size() == 1)
            for (float& v : p.value->span()) v += rng.uniform(-0.3f, 0.3f);
}
}  // namespace

TEST_CASE("model gradient: tiny encoder-decoder with Unpool + Add, every parameter and the input") {
    Model<TinyNet, Cpu> model(3);
    Rng rng(19);
    perturb_affine(model, rng);
    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);  // 5x7 -> 3x4 -> 5x7
    const GradientCheckResult r = check_gradients(model, x, Mode::train, model_check_options());
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK_MESSAGE(r.kinks * 4 <= r.checked, r.summary());  // the kink rule stays an exception
    const auto params = model.parameters();
    CHECK(r.tensors.size() == params.size() + 1);
    for (const char* name : {"input", "encoder0.0.weight", "encoder0.0.bias", "encoder0.1.weight", "encoder0.1.bias",
                             "decoder0.2.weight", "decoder0.3.weight", "decoder0.3.bias", "classifier.weight",
                             "classifier.bias"})
        CHECK_MESSAGE(has(r.tensors, name), "not checked: " << name);
    std::int64_t elements = x.size();
    for (auto& p : params) elements += p.value->size();
    CHECK(r.checked == elements);
}

TEST_CASE("model gradient: subsampling checks at most max_elements per tensor") {
    Model<TinyNet, Cpu> model(4);
    Rng rng(21);
    perturb_affine(model, rng);
    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);
    GradientCheckOptions opt = model_check_options();
    opt.max_elements = 8;
    const GradientCheckResult r = check_gradients(model, x, Mode::train, opt);
    CHECK_MESSAGE(r.ok, r.summary());
    // input 210, conv 108 + 4, BN 4 + 4, conv 144, BN 4 + 4, classifier 12 + 3: min(8, size) each.
    CHECK(r.checked == 8 + 8 + 4 + 4 + 4 + 8 + 4 + 4 + 8 + 3);
}

TEST_CASE("model backward equals the layers chained by hand, with the skip's gradient summed at the Tap") {
    // The same network built from its layers, wired as compose/model.hpp does; parameters copied
    // from the model by name. The model's gradients must equal the hand-chained ones, and these
    // must differ from the chain without the skip's gradient (so the sum is not negligible).
    Model<TinyNet, Cpu> model(6);
    Rng rng(23);
    perturb_affine(model, rng);
    auto conv0 = Conv<4, 3>::make<Cpu>(any(3));
    auto bn0 = BatchNorm::make<Cpu>(any(4));
    auto relu = ReLU::make<Cpu>(any(4));
    auto pool = MaxPool<2>::make<Cpu>(any(4));
    auto unpool = Unpool<2>::make<Cpu>(any(4));
    auto add = Add::make<Cpu>(any(4));
    auto conv1 = Conv<4, 3, Bias::without>::make<Cpu>(any(4));
    auto bn1 = BatchNorm::make<Cpu>(any(4));
    auto cls = Classifier<3>::make<Cpu>(any(4));
    std::vector<ParamRef<Cpu>> hand;
    conv0->collect(hand, "encoder0.0.");
    bn0->collect(hand, "encoder0.1.");
    conv1->collect(hand, "decoder0.2.");
    bn1->collect(hand, "decoder0.3.");
    cls->collect(hand, "classifier.");
    auto state = model.state();
    REQUIRE(hand.size() == state.size());
    for (std::size_t i = 0; i < hand.size(); ++i) {
        REQUIRE(hand[i].name == state[i].name);
        *hand[i].value = *state[i].value;
        if (hand[i].grad) hand[i].grad->zero();
    }
    SkipLink<Cpu> link;
    pool->connect(&link);
    unpool->connect(&link);
    add->connect(&link);

    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);
    const Tensor<Cpu>& y_model = model.forward(x, Mode::train);
    const Tensor<Cpu> r = random_tensor(y_model.extents(), rng);
    model.zero_grad();
    const Tensor<Cpu> dx_model = model.backward(r);

    const Tensor<Cpu>& feature = relu->forward(bn0->forward(conv0->forward(x, Mode::train), Mode::train), Mode::train);
    link.feature = &feature;  // the Tap
    link.has_feature_grad = false;
    const Tensor<Cpu>& y = cls->forward(
        bn1->forward(conv1->forward(add->forward(unpool->forward(pool->forward(feature, Mode::train), Mode::train),
                                                 Mode::train),
                                    Mode::train),
                     Mode::train),
        Mode::train);
    for (std::int64_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == y_model[i]);
    const Tensor<Cpu>& g_decoder = add->backward(conv1->backward(bn1->backward(cls->backward(r))));
    REQUIRE(link.has_feature_grad);
    const Tensor<Cpu> g_pool = pool->backward(unpool->backward(g_decoder));
    Tensor<Cpu> g_feature = g_pool;
    for (std::int64_t i = 0; i < g_feature.size(); ++i) g_feature[i] += link.feature_grad[i];  // the Tap's sum
    const Tensor<Cpu> dx_one_path = conv0->backward(bn0->backward(relu->backward(g_pool)));
    for (auto& p : hand)  // the encoder's gradients again, from the summed map only
        if (p.grad && p.name.starts_with("encoder")) p.grad->zero();
    const Tensor<Cpu> dx_hand = conv0->backward(bn0->backward(relu->backward(g_feature)));

    double diff = 0, skip_effect = 0;
    for (std::int64_t i = 0; i < dx_hand.size(); ++i) {
        diff = std::max(diff, double(std::abs(dx_model[i] - dx_hand[i])));
        skip_effect = std::max(skip_effect, double(std::abs(dx_hand[i] - dx_one_path[i])));
    }
    CHECK(diff <= 1e-6);
    CHECK(skip_effect > 1e-2);
    for (std::size_t i = 0; i < hand.size(); ++i) {
        if (!hand[i].grad) continue;
        for (std::int64_t j = 0; j < hand[i].grad->size(); ++j)
            CHECK_MESSAGE(std::abs((*hand[i].grad)[j] - (*state[i].grad)[j]) <= 1e-5, hand[i].name << "[" << j << "]");
    }
}

TEST_CASE("Tap: passes the gradient through, adding the skip's gradient once when an Add left one") {
    SkipLink<Cpu> link;
    TapLayer<Cpu> tap(&link);
    Rng rng(22);
    const Tensor<Cpu> x = random_tensor({1, 2, 3, 4}, rng), dy = random_tensor({1, 2, 3, 4}, rng);
    link.has_feature_grad = true;  // stale from a previous pass: forward must clear it
    CHECK(&tap.forward(x, Mode::train) == &x);
    CHECK(link.feature == &x);
    CHECK_FALSE(link.has_feature_grad);
    CHECK(&tap.backward(dy) == &dy);  // no Add in the decoder: the gradient passes unchanged

    const Tensor<Cpu> skip = random_tensor({1, 2, 3, 4}, rng);
    link.feature_grad = skip;
    link.has_feature_grad = true;
    const Tensor<Cpu> sum = tap.backward(dy);
    for (std::int64_t i = 0; i < sum.size(); ++i) CHECK(sum[i] == dy[i] + skip[i]);
    CHECK_FALSE(link.has_feature_grad);  // consumed: a second backward does not add it again
    CHECK(&tap.backward(dy) == &dy);
}

// --- Convolution kernels against plain loops -----------------------------------------------------

namespace {

struct ConvCase {
    int n, in_c, in_h, in_w, out_c, out_h, out_w, k, stride, pad, groups;
    backend::ConvGeometry geometry() const { return {in_c, in_h, in_w, out_c, out_h, out_w, k, stride, pad, groups}; }
};

std::string describe(const ConvCase& c) {
    return std::to_string(c.n) + "x" + std::to_string(c.in_c) + "x" + std::to_string(c.in_h) + "x" + std::to_string(c.in_w) +
           " -> " + std::to_string(c.out_c) + "x" + std::to_string(c.out_h) + "x" + std::to_string(c.out_w) + " k" +
           std::to_string(c.k) + " s" + std::to_string(c.stride) + " p" + std::to_string(c.pad) + " g" +
           std::to_string(c.groups);
}

/// Direct loops for backward-data and backward-filter, with the sum of |terms| of every result
/// (the scale of its float rounding error).
struct ConvBackwardReference {
    std::vector<double> dx, dx_abs, dw, dw_abs, db, db_abs;
};
ConvBackwardReference conv_backward_reference(const std::vector<float>& x, const std::vector<float>& w,
                                              const std::vector<float>& dy, const ConvCase& c) {
    const int cig = c.in_c / c.groups, cog = c.out_c / c.groups;
    ConvBackwardReference r;
    r.dx.assign(x.size(), 0);
    r.dx_abs.assign(x.size(), 0);
    r.dw.assign(w.size(), 0);
    r.dw_abs.assign(w.size(), 0);
    r.db.assign(std::size_t(c.out_c), 0);
    r.db_abs.assign(std::size_t(c.out_c), 0);
    for (int n = 0; n < c.n; ++n)
        for (int co = 0; co < c.out_c; ++co)
            for (int oy = 0; oy < c.out_h; ++oy)
                for (int ox = 0; ox < c.out_w; ++ox) {
                    const double g = dy[((std::size_t(n) * c.out_c + co) * c.out_h + oy) * c.out_w + ox];
                    r.db[std::size_t(co)] += g;
                    r.db_abs[std::size_t(co)] += std::abs(g);
                    for (int ci = 0; ci < cig; ++ci)
                        for (int ky = 0; ky < c.k; ++ky)
                            for (int kx = 0; kx < c.k; ++kx) {
                                const int iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
                                if (iy < 0 || iy >= c.in_h || ix < 0 || ix >= c.in_w) continue;
                                const std::size_t xi =
                                    ((std::size_t(n) * c.in_c + (co / cog) * cig + ci) * c.in_h + iy) * c.in_w + ix;
                                const std::size_t wi = ((std::size_t(co) * cig + ci) * c.k + ky) * c.k + kx;
                                r.dx[xi] += g * w[wi];
                                r.dx_abs[xi] += std::abs(g * w[wi]);
                                r.dw[wi] += g * x[xi];
                                r.dw_abs[wi] += std::abs(g * x[xi]);
                            }
                }
    return r;
}

std::vector<float> random_vector(std::size_t n, Rng& rng) {
    std::vector<float> v(n);
    for (float& f : v) f = rng.uniform(-1.f, 1.f);
    return v;
}
std::vector<float> abs_of(std::vector<float> v) {
    for (float& f : v) f = std::abs(f);
    return v;
}

/// |got - want| <= 2e-5 * (sum of |terms|) + 1e-6 for every element; returns the worst ratio.
/// Float32 GEMMs round well inside this; a single missing or misplaced term (a relative error
/// of about 1 / terms, terms <= 5400 here) exceeds it.
double worst_ratio(const float* got, const std::vector<double>& want, const std::vector<double>& scale, std::int64_t* at) {
    double worst = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double ratio = std::abs(double(got[i]) - want[i]) / (2e-5 * scale[i] + 1e-6);
        if (ratio > worst) {
            worst = ratio;
            *at = std::int64_t(i);
        }
    }
    return worst;
}

struct ThreadCount {  // restores the pool size however the test ends
    int saved = segnet::num_threads();
    explicit ThreadCount(int t) { segnet::set_num_threads(t); }
    ~ThreadCount() { segnet::set_num_threads(saved); }
};

void check_conv_kernels(const ConvCase& c) {
    INFO(describe(c));
    const auto g = c.geometry();
    Rng rng(std::uint64_t(c.in_c * 1000 + c.out_c * 10 + c.k));
    const auto x = random_vector(std::size_t(c.n) * c.in_c * c.in_h * c.in_w, rng);
    const auto w = random_vector(std::size_t(g.weight_size()), rng);
    const auto bias = random_vector(std::size_t(c.out_c), rng);
    const auto dy = random_vector(std::size_t(c.n) * c.out_c * c.out_h * c.out_w, rng);
    const auto dw0 = random_vector(w.size(), rng);  // backward-filter accumulates onto this
    const auto db0 = random_vector(bias.size(), rng);

    std::vector<float> y_ref(dy.size()), y_abs(dy.size());
    backend::cpu::conv2d_forward_reference(x.data(), w.data(), bias.data(), y_ref.data(), c.n, g);
    const auto xa = abs_of(x), wa = abs_of(w), ba = abs_of(bias);
    backend::cpu::conv2d_forward_reference(xa.data(), wa.data(), ba.data(), y_abs.data(), c.n, g);
    const std::vector<double> y_want(y_ref.begin(), y_ref.end()), y_scale(y_abs.begin(), y_abs.end());
    ConvBackwardReference ref = conv_backward_reference(x, w, dy, c);
    for (std::size_t i = 0; i < w.size(); ++i) {
        ref.dw[i] += dw0[i];
        ref.dw_abs[i] += std::abs(dw0[i]);
    }
    for (std::size_t i = 0; i < bias.size(); ++i) {
        ref.db[i] += db0[i];
        ref.db_abs[i] += std::abs(db0[i]);
    }

    for (int threads : {1, 2}) {
        INFO("threads " << threads);
        ThreadCount tc(threads);
        std::int64_t at = -1;
        std::vector<float> y(dy.size(), 7.f);
        backend::cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), c.n, g);
        CHECK_MESSAGE(worst_ratio(y.data(), y_want, y_scale, &at) <= 1.0, "forward, element " << at);

        std::vector<float> dx(x.size(), 7.f);  // overwritten, not accumulated
        backend::cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), c.n, g);
        CHECK_MESSAGE(worst_ratio(dx.data(), ref.dx, ref.dx_abs, &at) <= 1.0, "backward-data, element " << at);

        std::vector<float> dw = dw0, db = db0;
        backend::cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), db.data(), c.n, g);
        CHECK_MESSAGE(worst_ratio(dw.data(), ref.dw, ref.dw_abs, &at) <= 1.0, "backward-filter, element " << at);
        CHECK_MESSAGE(worst_ratio(db.data(), ref.db, ref.db_abs, &at) <= 1.0, "bias gradient, channel " << at);
    }
}

}  // namespace

TEST_CASE("conv kernels vs direct loops: odd 13x11 maps, K = 1, 3, 7, channels 3, 5, 17, groups, depthwise") {
    for (const ConvCase& c : {ConvCase{2, 3, 13, 11, 5, 13, 11, 1, 1, 0, 1},     // pointwise fast path
                              ConvCase{2, 5, 13, 11, 17, 13, 11, 3, 1, 1, 1},
                              ConvCase{2, 17, 13, 11, 3, 13, 11, 7, 1, 3, 1},
                              ConvCase{2, 3, 13, 11, 3, 13, 11, 7, 1, 3, 1},
                              ConvCase{2, 6, 13, 11, 9, 13, 11, 3, 1, 1, 3},     // 3 groups
                              ConvCase{2, 17, 13, 11, 17, 13, 11, 3, 1, 1, 17},  // depthwise
                              ConvCase{2, 5, 13, 11, 5, 13, 11, 7, 1, 3, 5}})    // depthwise 7x7
        check_conv_kernels(c);
}

TEST_CASE("conv kernels vs direct loops: stride 2 with an output size not derived from the input") {
    // The geometry a TransposedConv<OutC, 4, 2> uses: the convolution from its 45-row output to
    // its 23-row input. floor((45 + 2 - 4) / 2) + 1 = 22 rows would fit; the 23rd reads padding.
    for (const ConvCase& c : {ConvCase{2, 5, 45, 31, 3, 23, 16, 4, 2, 1, 1},
                              ConvCase{2, 3, 45, 31, 3, 23, 16, 4, 2, 1, 3},    // BilinearUpsample: depthwise
                              ConvCase{2, 4, 8, 7, 2, 3, 3, 3, 3, 0, 1}})       // stride 3, k 3
        check_conv_kernels(c);
}

TEST_CASE("conv kernels vs direct loops: maps larger than one pixel tile (tiles split rows)") {
    for (const ConvCase& c : {ConvCase{2, 17, 45, 60, 17, 45, 60, 7, 1, 3, 1},    // 833 rows: 640-pixel tiles
                              ConvCase{1, 17, 131, 241, 5, 131, 241, 1, 1, 0, 1}, // pointwise, 2 tiles
                              ConvCase{2, 17, 91, 121, 5, 46, 61, 4, 2, 1, 1}})   // stride 2, 2 tiles each way
        check_conv_kernels(c);
}

// --- Pooling and unpooling ---------------------------------------------------------------------

TEST_CASE("max pooling 45x60 -> 23x30 and unpooling back to 45x60: values at the argmax, zeros elsewhere") {
    Rng rng(30);
    const Tensor<Cpu> x = random_tensor({2, 3, 45, 60}, rng, 0.5f, 1.5f);  // positive: an unpooled 0 is "elsewhere"
    SkipLink<Cpu> link;
    auto pool = MaxPool<2>::make<Cpu>(any(3));
    pool->connect(&link);
    link.feature = &x;  // what the Tap publishes
    const Tensor<Cpu>& y = pool->forward(x, Mode::train);
    REQUIRE(y.extents() == Extents{2, 3, 23, 30});
    REQUIRE(link.indices != nullptr);
    CHECK(link.pool == 2);
    const Tensor<Cpu, std::int32_t>& idx = *link.indices;
    for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 3; ++c)
            for (int oy = 0; oy < 23; ++oy)
                for (int ox = 0; ox < 30; ++ox) {
                    float best = -1.f;
                    int at = -1;
                    for (int iy = 2 * oy; iy < std::min(2 * oy + 2, 45); ++iy)
                        for (int ix = 2 * ox; ix < std::min(2 * ox + 2, 60); ++ix)
                            if (x(n, c, iy, ix) > best) {
                                best = x(n, c, iy, ix);
                                at = iy * 60 + ix;
                            }
                    CHECK(y(n, c, oy, ox) == best);
                    CHECK(idx(n, c, oy, ox) == at);
                }

    auto unpool = Unpool<2>::make<Cpu>(any(3));
    unpool->connect(&link);
    const Tensor<Cpu> pooled = y;
    const Tensor<Cpu>& up = unpool->forward(pooled, Mode::train);
    REQUIRE(up.extents() == x.extents());
    std::int64_t placed = 0;
    for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 3; ++c) {
            std::vector<int> source(45 * 60, -1);  // which pooled value lands on each pixel
            for (int p = 0; p < 23 * 30; ++p) source[std::size_t(idx(n, c, p / 30, p % 30))] = p;
            for (int i = 0; i < 45 * 60; ++i) {
                const float v = up(n, c, i / 60, i % 60);
                if (source[std::size_t(i)] >= 0) {
                    CHECK(v == pooled(n, c, source[std::size_t(i)] / 30, source[std::size_t(i)] % 30));
                    CHECK(v == x(n, c, i / 60, i % 60));  // the maximum is back where it was
                    ++placed;
                } else {
                    CHECK(v == 0.f);
                }
            }
        }
    CHECK(placed == 2 * 3 * 23 * 30);
}

TEST_CASE("max pooling ties go to the first maximum in row-major window order (Caffe)") {
    // 3x5 map, 2x2 windows with ceil rounding: windows cols {0,1}, {2,3}, {4}; rows {0,1}, {2}.
    Tensor<Cpu> x(Extents{1, 1, 3, 5});
    const float values[15] = {
        2, 2, 1, 3, 4,  //
        2, 2, 3, 3, 4,  //
        5, 1, 6, 6, 0,  //
    };
    std::copy(std::begin(values), std::end(values), x.data());
    auto pool = MaxPool<2>::make<Cpu>(any(1));
    const Tensor<Cpu>& y = pool->forward(x, Mode::train);
    const auto& idx = static_cast<MaxPoolLayer<Cpu>&>(*pool).indices();
    REQUIRE(y.extents() == Extents{1, 1, 2, 3});
    CHECK(idx[0] == 0);   // four 2s: the top-left one
    CHECK(idx[1] == 3);   // 3 at (0,3) and (1,2), (1,3): row 0 comes first
    CHECK(idx[2] == 4);   // partial column window: 4 at (0,4) and (1,4)
    CHECK(idx[3] == 10);  // partial row window: 5 at (2,0)
    CHECK(idx[4] == 12);  // 6 at (2,2) and (2,3)
    CHECK(idx[5] == 14);  // a one-pixel window
    CHECK(y[1] == 3.f);
    CHECK(y[4] == 6.f);
}

// --- Batch normalisation ---------------------------------------------------------------------------

namespace {
Tensor<Cpu> shifted_batch(Rng& rng, int n, int c, int h, int w) {
    Tensor<Cpu> x(Extents{n, c, h, w});
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < c; ++ch)
            for (int p = 0; p < h * w; ++p) x(i, ch, p / w, p % w) = rng.normal(2.f * float(ch) - 1.f, 0.5f + float(ch));
    return x;
}
ParamRef<Cpu> find_tensor(std::vector<ParamRef<Cpu>>& ps, const std::string& name) {
    for (auto& p : ps)
        if (p.name == name) return p;
    FAIL("no tensor " << name);
    return {};
}
}  // namespace

TEST_CASE("batch norm train mode: each channel of the output has mean 0 and variance 1 (gamma 1, beta 0)") {
    Rng rng(40);
    auto bn = BatchNorm::make<Cpu>(any(3));
    bn->initialize(rng);
    const Tensor<Cpu> x = shifted_batch(rng, 2, 3, 7, 9);
    const Tensor<Cpu>& y = bn->forward(x, Mode::train);
    for (int c = 0; c < 3; ++c) {
        double s = 0, sq = 0, xs = 0;
        for (int n = 0; n < 2; ++n)
            for (int p = 0; p < 63; ++p) {
                s += y(n, c, p / 9, p % 9);
                sq += double(y(n, c, p / 9, p % 9)) * y(n, c, p / 9, p % 9);
                xs += x(n, c, p / 9, p % 9);
            }
        CHECK(std::abs(xs / 126) > 0.5);  // the input is not already normalised
        CHECK(std::abs(s / 126) < 1e-5);
        CHECK(sq / 126 - (s / 126) * (s / 126) == doctest::Approx(1.0).epsilon(1e-3));  // var / (var + eps)
    }
}

TEST_CASE("batch norm eval mode uses the running statistics, not the batch's") {
    Rng rng(41);
    auto bn = BatchNorm::make<Cpu>(any(3));
    bn->initialize(rng);
    std::vector<ParamRef<Cpu>> ps;
    bn->collect(ps, "");
    const float mean[3] = {0.5f, -1.f, 2.f}, var[3] = {4.f, 0.25f, 1.f}, gamma[3] = {1.5f, 0.5f, -1.f},
                beta[3] = {0.1f, 0.f, -0.3f};
    for (int c = 0; c < 3; ++c) {
        (*find_tensor(ps, "running_mean").value)[c] = mean[c];
        (*find_tensor(ps, "running_var").value)[c] = var[c];
        (*find_tensor(ps, "weight").value)[c] = gamma[c];
        (*find_tensor(ps, "bias").value)[c] = beta[c];
    }
    const Tensor<Cpu> x = shifted_batch(rng, 2, 3, 5, 4);
    const Tensor<Cpu> y_eval = bn->forward(x, Mode::eval);
    for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 3; ++c)
            for (int p = 0; p < 20; ++p) {
                const double want = (x(n, c, p / 4, p % 4) - mean[c]) / std::sqrt(double(var[c]) + 1e-5) * gamma[c] + beta[c];
                CHECK(y_eval(n, c, p / 4, p % 4) == doctest::Approx(want).epsilon(1e-5));
            }
    // Eval leaves the running statistics alone; train mode gives a different output.
    CHECK((*find_tensor(ps, "running_mean").value)[1] == mean[1]);
    CHECK((*find_tensor(ps, "running_var").value)[1] == var[1]);
    const Tensor<Cpu>& y_train = bn->forward(x, Mode::train);
    CHECK(std::abs(y_train[0] - y_eval[0]) > 1e-2);
}

TEST_CASE("batch norm running statistics follow PyTorch: momentum 0.1, unbiased running variance") {
    Rng rng(42);
    auto bn = BatchNorm::make<Cpu>(any(3));
    bn->initialize(rng);
    std::vector<ParamRef<Cpu>> ps;
    bn->collect(ps, "");
    std::vector<double> rm(3, 0.0), rv(3, 1.0);  // PyTorch's initial running_mean / running_var
    for (int step = 0; step < 4; ++step) {
        const Tensor<Cpu> x = shifted_batch(rng, 2, 3, 5, 7);
        bn->forward(x, Mode::train);
        for (int c = 0; c < 3; ++c) {
            double s = 0, sq = 0;
            const int m = 2 * 35;
            for (int n = 0; n < 2; ++n)
                for (int p = 0; p < 35; ++p) s += x(n, c, p / 7, p % 7);
            const double mu = s / m;
            for (int n = 0; n < 2; ++n)
                for (int p = 0; p < 35; ++p) sq += (x(n, c, p / 7, p % 7) - mu) * (x(n, c, p / 7, p % 7) - mu);
            rm[std::size_t(c)] = 0.9 * rm[std::size_t(c)] + 0.1 * mu;
            rv[std::size_t(c)] = 0.9 * rv[std::size_t(c)] + 0.1 * sq / (m - 1);  // unbiased
        }
    }
    for (int c = 0; c < 3; ++c) {
        CHECK((*find_tensor(ps, "running_mean").value)[c] == doctest::Approx(rm[std::size_t(c)]).epsilon(1e-5));
        CHECK((*find_tensor(ps, "running_var").value)[c] == doctest::Approx(rv[std::size_t(c)]).epsilon(1e-5));
    }
    // A biased running variance would differ by the factor m / (m - 1) = 70 / 69 in the batch
    // term: this many steps make that visible at the tolerance above.
    CHECK(rv[2] > 1.5);
}

// --- Model-level run-time errors ---------------------------------------------------------------

TEST_CASE("model: an input too small for the pools names the stage that fails") {
    Model<models::SegNetBasic<11>, Cpu> model(1);
    const Tensor<Cpu> x(Extents{1, 3, 5, 5});  // 5 -> 3 -> 2 -> 1: the fourth pool has no 2x2 window
    std::string message;
    try {
        model.forward(x, Mode::eval);
    } catch (const std::invalid_argument& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("stage 4") != std::string::npos);
    CHECK(message.find("MaxPool") != std::string::npos);
    CHECK(message.find("1x3x5x5") != std::string::npos);
    // 16x16 fits (16 -> 8 -> 4 -> 2 -> 1) and runs.
    CHECK(model.forward(Tensor<Cpu>(Extents{1, 3, 16, 16}), Mode::eval).extents() == Extents{1, 11, 16, 16});
}

TEST_CASE("model: a wrong channel count throws, and backward before forward throws") {
    Model<models::SegNetBasic<11>, Cpu> model(1);
    std::string message;
    try {
        model.forward(Tensor<Cpu>(Extents{1, 4, 16, 16}), Mode::eval);
    } catch (const std::invalid_argument& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.find("channel") != std::string::npos);
    CHECK(message.find("expected 3, got 4") != std::string::npos);

    Model<TinyNet, Cpu> fresh(1);
    CHECK_THROWS_AS(fresh.backward(Tensor<Cpu>(Extents{1, 3, 8, 8})), std::logic_error);
}

// --- Initialisation ------------------------------------------------------------------------------

TEST_CASE("initialisation: the same seed gives identical weights, another seed different ones") {
    Model<models::SegNetBasic<11>, Cpu> a(7), b(7), c(8);
    auto sa = a.state(), sb = b.state(), sc = c.state();
    REQUIRE(sa.size() == sb.size());
    REQUIRE(sa.size() == sc.size());
    int differing = 0;
    for (std::size_t i = 0; i < sa.size(); ++i) {
        CHECK(sa[i].name == sb[i].name);
        CHECK_MESSAGE(std::equal(sa[i].value->span().begin(), sa[i].value->span().end(), sb[i].value->span().begin()),
                      sa[i].name);
        if (!std::equal(sa[i].value->span().begin(), sa[i].value->span().end(), sc[i].value->span().begin())) ++differing;
    }
    CHECK(differing == 9);  // every conv weight (8 convs + classifier); biases and BN start at 0 / 1
}

TEST_CASE("initialisation: He/MSRA, conv weight std = sqrt(2 / fan_in), mean 0") {
    Model<models::SegNetBasic<11>, Cpu> model(7);
    int seen = 0;
    for (auto& p : model.parameters()) {
        if (p.shape.size() != 4) continue;
        const double fan_in = double(p.shape[1]) * p.shape[2] * p.shape[3];
        double s = 0, sq = 0;
        for (float v : p.value->span()) {
            s += v;
            sq += double(v) * v;
        }
        const double n = double(p.value->size()), mean = s / n, sd = std::sqrt(sq / n - mean * mean);
        const double want = std::sqrt(2.0 / fan_in);
        INFO(p.name << " " << n << " values, std " << sd << ", want " << want);
        // Sampling error of a std over n draws is about 1/sqrt(2n): 2.7% for the 704-value classifier.
        CHECK(sd == doctest::Approx(want).epsilon(n > 5000 ? 0.03 : 0.1).scale(0));
        CHECK(std::abs(mean) < 4 * want / std::sqrt(n));
        ++seen;
    }
    CHECK(seen == 9);
}

TEST_CASE("initialisation: grouped and depthwise convs use fan_in = C / groups * K * K") {
    Rng rng(9);
    auto check_std = [](RuntimeLayer<Cpu>& layer, double fan_in) {
        std::vector<ParamRef<Cpu>> ps;
        layer.collect(ps, "");
        double sq = 0;
        for (float v : ps[0].value->span()) sq += double(v) * v;
        const double n = double(ps[0].value->size());
        INFO(layer.kind() << ": " << n << " values");
        CHECK(std::sqrt(sq / n) == doctest::Approx(std::sqrt(2.0 / fan_in)).epsilon(0.05).scale(0));
    };
    auto grouped = Conv<64, 3, Bias::with, 4>::make<Cpu>(any(64));  // 64 x 16 x 3 x 3
    grouped->initialize(rng);
    check_std(*grouped, 16.0 * 9);
    auto depthwise = DepthwiseConv<7>::make<Cpu>(any(64));  // 64 x 1 x 7 x 7
    depthwise->initialize(rng);
    check_std(*depthwise, 49.0);
}

// --- Dropout: seeded masks, exact resume, Monte-Carlo sampling -------------------------------------

TEST_CASE("gradients: Dropout<30> in train mode (its mask fixed by the step)") {
    Rng rng(31);
    auto layer = Dropout<30>::make<Cpu>(any(3));
    layer->initialize(rng);
    auto& random = dynamic_cast<RandomLayer&>(*layer);
    GradientCheckOptions opt;
    opt.before_forward = [&] { random.set_random_step(5); };  // every forward of the check: one mask
    check_passed(check_gradients(*layer, random_tensor({2, 3, 5, 7}, rng), Mode::train, opt), {"input"});
}

TEST_CASE("Dropout: keeps 1 - p of the elements scaled by 1 / (1 - p); eval is the identity; masks follow the step") {
    Rng rng(32);
    auto layer = Dropout<30>::make<Cpu>(any(4));
    layer->initialize(rng);
    auto& random = dynamic_cast<RandomLayer&>(*layer);
    Tensor<Cpu> x({4, 4, 50, 50});
    x.fill(2.f);
    const std::vector<float> y0 = backend::download(layer->forward(x, Mode::train));
    std::int64_t kept = 0;
    for (float v : y0) {
        CHECK((v == 0.f || v == doctest::Approx(2.f / 0.7f)));
        kept += v != 0.f;
    }
    CHECK(double(kept) / double(y0.size()) == doctest::Approx(0.7).epsilon(0.02));
    const std::vector<float> y1 = backend::download(layer->forward(x, Mode::train));  // step 1
    CHECK(y1 != y0);
    random.set_random_step(0);
    CHECK(backend::download(layer->forward(x, Mode::train)) == y0);  // step 0 again: the same mask

    CHECK(&layer->forward(x, Mode::eval) == &x);  // eval: its input, not a copy
    random.set_sampling(true);
    const std::vector<float> s0 = backend::download(layer->forward(x, Mode::eval));
    const std::vector<float> s1 = backend::download(layer->forward(x, Mode::eval));
    CHECK(s0 != s1);
    CHECK(s0 != y0);  // samples draw from their own stream
    random.set_sampling(false);
    CHECK(&layer->forward(x, Mode::eval) == &x);
}

namespace {
struct DropoutNet : Network<Input<3, dyn, dyn>, Encoder<Block<Conv<4, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                            Decoder<Unpool<2>, Block<Conv<4, 3>, BatchNorm, ReLU, Dropout<50>>>, Classifier<3>> {};
}

TEST_CASE("Dropout in a model: model gradient, exact resume from a step, Monte-Carlo sampling in eval") {
    static_assert(parameter_count_v<DropoutNet> == (4 * 3 * 9 + 4) + 8 + (4 * 4 * 9 + 4) + 8 + (4 * 3 + 3));
    Rng rng(33);
    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);
    Model<DropoutNet, Cpu> model(9);
    GradientCheckOptions opt = model_check_options();
    opt.before_forward = [&] { model.set_random_step(3); };
    const GradientCheckResult r = check_gradients(model, x, Mode::train, opt);
    CHECK_MESSAGE(r.ok, r.summary());

    // Train forwards at steps 0, 1, 2 from a fresh model; a second model resumed at step 2 draws
    // the third one's mask (same seed, so the same weights and dropout seed).
    Model<DropoutNet, Cpu> run(9);
    std::vector<std::vector<float>> outputs;
    for (int step = 0; step < 3; ++step) outputs.push_back(backend::download(run.forward(x, Mode::train)));
    CHECK(outputs[0] != outputs[1]);
    Model<DropoutNet, Cpu> resumed(9);
    resumed.set_random_step(2);
    CHECK(backend::download(resumed.forward(x, Mode::train)) == outputs[2]);

    const std::vector<float> e0 = backend::download(run.forward(x, Mode::eval));
    CHECK(backend::download(run.forward(x, Mode::eval)) == e0);  // deterministic
    run.set_sampling(true);
    const std::vector<float> m0 = backend::download(run.forward(x, Mode::eval));
    const std::vector<float> m1 = backend::download(run.forward(x, Mode::eval));
    CHECK(m0 != m1);
    run.set_sampling(false);
    CHECK(backend::download(run.forward(x, Mode::eval)) == e0);
}
