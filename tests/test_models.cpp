// Models and skip policies at run time: one training step (forward, cross-entropy, backward) of
// every built-in model on a small batch, with a finite loss and a non-zero gradient in every
// parameter tensor; finite-difference checks of the skip layers (NoSkip, AddProjected, Concat)
// alone and inside a model; the registry's dispatch and its errors; Model::set_precision(bf16)
// against FP32, and PrecisionScope.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "segnet/backend/cpu/simd.hpp"  // bf16_units
#include "segnet/programs/preflight.hpp"
#include "segnet/segnet.hpp"
#include "segnet/testing/gradient_check.hpp"
#include "segnet/train/loss.hpp"
#include "segnet/train/optimizer.hpp"

#include "layer_test_support.hpp"

using namespace segnet;
using segnet::testing_support::random_tensor;
using segnet::testing::check_gradients;
using segnet::testing::GradientCheckOptions;
using segnet::testing::GradientCheckResult;

namespace {

constexpr Dims any(int c) { return {c, dyn, dyn}; }

bool all_finite(const Tensor<Cpu>& t) {
    for (float v : t.span())
        if (!std::isfinite(v)) return false;
    return true;
}

double max_abs(const Tensor<Cpu>& t) {
    double m = 0;
    for (float v : t.span()) m = std::max(m, double(std::abs(v)));
    return m;
}

void check_passed(const GradientCheckResult& r) {
    INFO(r.summary());
    CHECK(bool(r));
}

/// The input a model is tried at: 48x64, or the smallest it takes when that is larger (a model
/// that needs more declares `smallest_input`: DeconvNet's valid fc6 needs 193x193). At 48x64
/// FCN-8s crops: pool5 is 2x2, upscore2 gives 4x4, cropped to pool4's 3x4.
template <class Net>
constexpr Dims trial_input() {
    if constexpr (requires { Net::smallest_input; }) return Net::smallest_input;
    else return {3, 48, 64};
}

/// One SGD-free training step: forward in train mode, loss and its gradient, backward.
template <class Net>
void one_training_step() {
    constexpr int classes = Net::analysis.output.c;
    CAPTURE(Net::name);
    Model<Net, Cpu> model(7);
    Rng rng(11);
    constexpr Dims size = trial_input<Net>();
    const Tensor<Cpu> x = random_tensor({2, 3, size.h, size.w}, rng);
    Tensor<Cpu, std::uint8_t> labels({2, 1, size.h, size.w});
    for (auto& v : labels.span()) v = std::uint8_t(rng.uniform() * classes) % classes;

    const Tensor<Cpu>& logits = model.forward(x, Mode::train);
    REQUIRE(logits.extents() == Extents{2, classes, size.h, size.w});
    Tensor<Cpu> grad(logits.extents());
    const CrossEntropyLoss loss;
    const double value = loss.forward_backward(logits, labels, grad);
    CHECK(std::isfinite(value));
    CHECK(value > 0);
    model.zero_grad();
    const Tensor<Cpu>& dx = model.backward(grad);
    CHECK(dx.extents() == x.extents());
    CHECK(all_finite(dx));

    auto params = model.parameters();
    std::int64_t scalars = 0;
    for (auto& p : params) {
        CAPTURE(p.name);
        scalars += p.value->size();
        CHECK(all_finite(*p.grad));
        CHECK(max_abs(*p.grad) > 0);
    }
    CHECK(scalars == parameter_count_v<Net>);
}

template <template <int> class... M>
void every_model(models::ModelList<M...>) {
    (one_training_step<M<11>>(), ...);
}

}  // namespace

TEST_CASE("every built-in model takes a training step: finite loss, every parameter gets a gradient") {
    every_model(models::BuiltinModels{});
}

namespace {
/// A few SGD steps on one small batch (fixed images and labels) lower the cross-entropy: the
/// network's forward, backward and parameters fit together as a trainable whole.
template <class Net>
void loss_falls(int height, int width, double lr) {
    constexpr int classes = Net::analysis.output.c;
    Model<Net, Cpu> model(5);
    // Two regions per image (left and right halves), each a class, its colour the class's sign
    // plus noise: an easy task, so that a few steps must make progress.
    Rng rng(13);
    Tensor<Cpu> x = random_tensor({2, 3, height, width}, rng);
    Tensor<Cpu, std::uint8_t> labels({2, 1, height, width});
    for (int n = 0; n < 2; ++n)
        for (int y = 0; y < height; ++y)
            for (int w = 0; w < width; ++w) {
                const int label = (w * 2 / width + n) % classes;
                labels.data()[(std::int64_t(n) * height + y) * width + w] = std::uint8_t(label);
                for (int c = 0; c < 3; ++c)
                    x.data()[((std::int64_t(n) * 3 + c) * height + y) * width + w] =
                        0.2f * x.data()[((std::int64_t(n) * 3 + c) * height + y) * width + w] + (label ? 1.f : -1.f);
            }
    Sgd sgd(model.parameters(), {.lr = lr, .momentum = 0.9, .weight_decay = 0});
    const CrossEntropyLoss loss;
    auto loss_and_step = [&] {
        const Tensor<Cpu>& logits = model.forward(x, Mode::train);
        Tensor<Cpu> grad(logits.extents());
        const double value = loss.forward_backward(logits, labels, grad);
        model.zero_grad();
        model.backward(grad);
        sgd.step();
        return value;
    };
    const double first = loss_and_step();
    double last = first;
    for (int step = 0; step < 8; ++step) last = loss_and_step();
    MESSAGE(Net::name << ": loss " << first << " -> " << last);
    CHECK(std::isfinite(last));
    CHECK(last < 0.8 * first);
}
}  // namespace

TEST_CASE("peer networks: a few SGD steps on one small batch lower the loss") {
    // issue 19's ResNet-50 peers: output stride 8, so 64x64 leaves 8x8 maps for ASPP and the pyramid.
    SUBCASE("deeplabv3") { loss_falls<models::DeepLabV3<2>>(64, 64, 0.01); }
    SUBCASE("pspnet") { loss_falls<models::PspNet<2>>(64, 64, 0.01); }
    SUBCASE("unet") { loss_falls<models::UNet<2>>(32, 32, 0.01); }
    SUBCASE("deeplab-largefov") { loss_falls<models::DeepLabLargeFov<2>>(32, 32, 0.01); }
    SUBCASE("fcn-vgg16") { loss_falls<models::FcnVgg16<2>>(32, 32, 0.001); }
}

// DeconvNet's smallest input is 193x193 (its valid 7x7 fc6): about 2.5 min of 2 cores in a
// release build, far longer under the sanitizers, whose CI pass skips it (the release pass runs it).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SEGNET_TEST_UNDER_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SEGNET_TEST_UNDER_SANITIZER 1
#endif
#ifdef SEGNET_TEST_UNDER_SANITIZER
constexpr bool under_sanitizer = true;
#else
constexpr bool under_sanitizer = false;
#endif

TEST_CASE("peer networks: DeconvNet's SGD steps on one small batch lower the loss" * doctest::skip(under_sanitizer)) {
    loss_falls<models::DeconvNet<2>>(193, 193, 0.1);
}

TEST_CASE("a variant with few classes trains too (FCN decodes in K channels)") {
    one_training_step<models::FcnBasic<3>>();
    one_training_step<models::FcnBasicNoAddition<2>>();
}

// --- Finite-difference checks of the skip layers -------------------------------------------------

TEST_CASE("gradients: NoSkip passes the map and its gradient unchanged") {
    Rng rng(1);
    auto layer = NoSkip::make<Cpu>(any(4));
    const Tensor<Cpu> x = random_tensor({2, 4, 5, 6}, rng);
    CHECK(&layer->forward(x, Mode::train) == &x);
    check_passed(check_gradients(*layer, x, Mode::train));
}

TEST_CASE("gradients: AddProjected, for the decoder input, the 1x1 weight and the encoder feature") {
    Rng rng(2);
    Tensor<Cpu> feature = random_tensor({2, 5, 7, 9}, rng);
    SkipLink<Cpu> link;
    link.feature = &feature;
    auto layer = AddProjected<3, 5>::make<Cpu>(any(3));
    layer->initialize(rng);
    layer->connect(&link);
    GradientCheckOptions opt;
    opt.before_forward = [&] { link.has_feature_grad = false; };
    opt.extra_inputs.push_back({"encoder_feature", &feature, [&]() -> const Tensor<Cpu>* {
                                    return link.has_feature_grad ? &link.feature_grad : nullptr;
                                }});
    const Tensor<Cpu> x = random_tensor({2, 3, 7, 9}, rng);
    check_passed(check_gradients(*layer, x, Mode::train, opt));

    // The forward is x + W * feature, computed here by loops.
    std::vector<ParamRef<Cpu>> params;
    layer->collect(params, "");
    REQUIRE(params.size() == 1);
    CHECK(params[0].shape == std::vector<int>{3, 5, 1, 1});
    const Tensor<Cpu>& y = layer->forward(x, Mode::train);
    const Tensor<Cpu>& w = *params[0].value;
    for (int c = 0; c < 3; ++c) {
        double expect = x(1, c, 4, 5);
        for (int f = 0; f < 5; ++f) expect += double(w[c * 5 + f]) * feature(1, f, 4, 5);
        CHECK(y(1, c, 4, 5) == doctest::Approx(expect).epsilon(1e-5));
    }
}

TEST_CASE("AddProjected adds to a feature gradient another skip layer already sent") {
    Rng rng(3);
    Tensor<Cpu> feature = random_tensor({1, 2, 3, 3}, rng);
    SkipLink<Cpu> link;
    link.feature = &feature;
    link.feature_grad.resize(feature.extents());
    link.feature_grad.fill(1.f);
    link.has_feature_grad = true;
    auto layer = AddProjected<2, 2>::make<Cpu>(any(2));
    layer->initialize(rng);
    layer->connect(&link);
    const Tensor<Cpu> x = random_tensor({1, 2, 3, 3}, rng);
    layer->forward(x, Mode::train);
    Tensor<Cpu> dy({1, 2, 3, 3});  // zero: nothing is added, the 1s stay
    layer->backward(dy);
    for (float v : link.feature_grad.span()) CHECK(v == 1.f);
}

TEST_CASE("gradients: Concat, for the decoder input and the encoder feature; values in channel order") {
    Rng rng(4);
    Tensor<Cpu> feature = random_tensor({2, 3, 5, 4}, rng);
    SkipLink<Cpu> link;
    link.feature = &feature;
    auto layer = Concat::make<Cpu>(any(2));
    layer->connect(&link);
    GradientCheckOptions opt;
    opt.before_forward = [&] { link.has_feature_grad = false; };
    opt.extra_inputs.push_back({"encoder_feature", &feature, [&]() -> const Tensor<Cpu>* {
                                    return link.has_feature_grad ? &link.feature_grad : nullptr;
                                }});
    const Tensor<Cpu> x = random_tensor({2, 2, 5, 4}, rng);
    check_passed(check_gradients(*layer, x, Mode::train, opt));

    const Tensor<Cpu>& y = layer->forward(x, Mode::train);
    REQUIRE(y.extents() == Extents{2, 5, 5, 4});
    CHECK(y(1, 1, 2, 3) == x(1, 1, 2, 3));
    CHECK(y(1, 2, 2, 3) == feature(1, 0, 2, 3));
    CHECK(y(0, 4, 4, 0) == feature(0, 2, 4, 0));
}

TEST_CASE("skip layers reject maps that do not fit, at run time, with the sizes") {
    Rng rng(5);
    Tensor<Cpu> feature = random_tensor({1, 4, 6, 6}, rng);
    SkipLink<Cpu> link;
    link.feature = &feature;
    const Tensor<Cpu> x = random_tensor({1, 4, 5, 6}, rng);
    auto concat = Concat::make<Cpu>(any(4));
    concat->connect(&link);
    CHECK_THROWS_AS(concat->forward(x, Mode::eval), std::invalid_argument);
    auto proj = AddProjected<4, 4>::make<Cpu>(any(4));
    proj->connect(&link);
    CHECK_THROWS_AS(proj->forward(x, Mode::eval), std::invalid_argument);
    auto unconnected = Concat::make<Cpu>(any(4));
    CHECK_THROWS_AS(unconnected->forward(x, Mode::eval), std::logic_error);
}

namespace {
// Each policy in a one-encoder network (5x7 -> 3x4 -> 5x7: few ReLU / argmax kinks within a
// finite-difference step, as test_layers.cpp's model check), so the encoder's Tap adds the
// skip's gradient to the encoder's own and every parameter is checked.
template <class Upsample, class... Skip>
using OneSkipNet = Network<Input<3, dyn, dyn>, Encoder<Block<Conv<4, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                           Decoder<Upsample, Skip..., Block<Conv<4, 3, Bias::without>, BatchNorm>>, Classifier<3>>;

template <class Net>
void check_model_gradients() {
    Model<Net, Cpu> model(3);
    Rng rng(19);
    for (auto& p : model.parameters())  // biases and batch-norm affine off 0 / 1
        if (p.shape.size() == 1)
            for (float& v : p.value->span()) v += rng.uniform(-0.3f, 0.3f);
    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);
    GradientCheckOptions opt;
    opt.step = 5e-3;
    opt.abs_tol = 2e-3;
    opt.rel_tol = 2e-2;
    opt.allow_kinks = true;
    const GradientCheckResult r = check_gradients(model, x, Mode::train, opt);
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK_MESSAGE(r.kinks * 4 <= r.checked, r.summary());
}
}  // namespace

TEST_CASE("model gradient: each skip policy through the encoder's tap, every parameter and the input") {
    SUBCASE("TransposedConv + AddProjected") { check_model_gradients<OneSkipNet<TransposedConv<3, 4, 2>, AddProjected<3, 4>>>(); }
    SUBCASE("Unpool + Concat") { check_model_gradients<OneSkipNet<Unpool<2>, Concat>>(); }
    SUBCASE("BilinearUpsample + NoSkip + Add") { check_model_gradients<OneSkipNet<BilinearUpsample<2>, NoSkip, Add>>(); }
    SUBCASE("Unpool + Concat + AddProjected (two skips share the feature gradient)") {
        using Net = Network<Input<3, dyn, dyn>, Encoder<Block<Conv<4, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                            Decoder<Unpool<2>, AddProjected<4, 4>, Concat, Block<Conv<4, 3, Bias::without>, BatchNorm>>,
                            Classifier<3>>;
        check_model_gradients<Net>();
    }
}

// --- Registry ------------------------------------------------------------------------------------

TEST_CASE("with_model: calls the callable with the named model's type") {
    for (std::string_view name : models::model_names) {
        const std::string_view got = models::with_model(name, 11, []<class Net>() { return Net::name; });
        CHECK(got == name);
    }
    CHECK(models::with_model("fcn-basic", 19, []<class Net>() {
              return Net::analysis.output.c;
          }) == 19);
    CHECK(models::with_model("segnet-basic", 2, []<class Net>() { return parameter_count_v<Net>; }) ==
          parameter_count_v<models::SegNetBasic<2>>);
    int calls = 0;
    models::with_model("segnet", 150, [&]<class Net>() { ++calls; });  // void callables work too
    CHECK(calls == 1);
}

TEST_CASE("analyse_model: a model's shape walk by name, without building it") {
    const Analysis a = models::analyse_model("segnet-basic", 11, Dims{3, 360, 480});
    CHECK(a.ok());
    CHECK(a.inference_peak_bytes == models::SegNetBasic<11>::analyse(Dims{3, 360, 480}).inference_peak_bytes);
    CHECK(a.inference_peak_bytes > models::analyse_model("segnet-basic", 11, Dims{3, 180, 240}).inference_peak_bytes);
    const Analysis small = models::analyse_model("segnet-basic", 11, Dims{3, 7, 7});
    CHECK(!small.ok());
    CHECK(small.diag.fault == Fault::too_small);
    CHECK_THROWS_AS(models::analyse_model("segnet-huge", 11, Dims{3, 64, 64}), std::invalid_argument);
}

TEST_CASE("preflight: a size the network cannot take and a run over the memory budget are refused") {
    CHECK_THROWS_WITH_AS(programs::cli::require_input_size<Cpu>("segnet-basic", 4, 7, 7, "'a.png'"),
                         doctest::Contains("segnet: 'a.png' is 7x7, a size segnet-basic cannot take: stage 4"), DataError);
    CHECK_THROWS_WITH_AS((programs::cli::require_input_size<Cpu, programs::cli::UsageError>("segnet-basic", 4, 7, 7, "--size")),
                         doctest::Contains("--size is 7x7"), programs::cli::UsageError);
    const Analysis a = programs::cli::require_input_size<Cpu>("segnet-basic", 4, 64, 64, "'a.png'");
    const std::int64_t need = programs::cli::inference_bytes(a, 64, 64);
    CHECK(need > a.inference_peak_bytes);
    CHECK_NOTHROW(programs::cli::require_memory(need, {need, true}, "'a.png'", "use --size"));
    CHECK_NOTHROW(programs::cli::require_memory(need, {-1, false}, "'a.png'", "use --size"));  // unknown: no refusal
    CHECK_THROWS_WITH_AS(programs::cli::require_memory(3LL << 30, {1LL << 30, true}, "'a.png' (4000x4000)", "use --size"),
                         doctest::Contains("'a.png' (4000x4000) needs about 3.0 GB of memory, over the 1.0 GB of --max-memory; use --size"),
                         DataError);
    CHECK(programs::cli::training_bytes(a, 4) == 4 * a.training_bytes_per_image);
}

TEST_CASE("preflight: --max-memory reads bytes and K/M/G suffixes") {
    auto budget = [](const char* value) {
        const char* argv[] = {"prog", "--max-memory", value};
        programs::cli::Args args(3, const_cast<char**>(argv), "prog", "");
        return programs::cli::memory_budget(args);
    };
    CHECK(budget("512M").bytes == 512LL << 20);
    CHECK(budget("1.5G").bytes == 3LL << 29);
    CHECK(budget("1000").bytes == 1000);
    CHECK(budget("8G").from_flag);
    CHECK_THROWS_WITH_AS(budget("lots"), doctest::Contains("--max-memory: expected a size"), programs::cli::UsageError);
    CHECK_THROWS_AS(budget("-1G"), programs::cli::UsageError);
    CHECK_THROWS_AS(budget("5T"), programs::cli::UsageError);
}

TEST_CASE("with_model: unknown names list the valid ones; unsupported class counts say which are") {
    auto f = []<class Net>() { return 0; };
    try {
        models::with_model("segnet-basic-bilinear", 11, f);
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        CHECK(what.find("segnet-basic-bilinear") != std::string::npos);
        CHECK(what.find("fcn-basic-no-addition-no-dim-reduction") != std::string::npos);
        CHECK(what.find("segnet-basic-caffe") != std::string::npos);
    }
    try {
        models::with_model("segnet", 40, f);
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("40 classes") != std::string::npos);
        CHECK(std::string(e.what()).find("11, 12, 19, 21") != std::string::npos);
    }
    CHECK_THROWS_AS(models::with_model("segnet", 0, f), std::invalid_argument);
}

TEST_CASE("Model::set_precision(bf16): the convolutions in bf16 where the CPU has BF16 units, else FP32") {
    // SegNet-Basic (7x7 convolutions, 1x1 classifier, fused pool/unpool in eval): the eval and
    // train forwards and the backward in bf16 differ from FP32 (the bf16 kernels ran) but stay
    // related to it on a CPU with AVX512-BF16, and are FP32 bit for bit on one without (or with
    // SEGNET_CONV=avx2 / im2col). Only loosely related: a rounding that flips a max-pooling argmax
    // moves a value to another pixel, and every 7x7 convolution after it spreads the change; on
    // this input (a freshly initialised network) the relative RMS difference was 0.14 to 0.20
    // and the median element difference 8 to 12% of the RMS (AMD Zen 5), while each of these
    // convolutions alone matches FP32 on bf16-rounded operands to 2e-6 (test_kernels checks
    // the kernels' accuracy). Unrelated outputs would differ by about 1.4 RMS.
    Rng rng(5);
    const Tensor<Cpu> x = random_tensor({2, 3, 48, 64}, rng);
    const Tensor<Cpu> grad = random_tensor({2, 11, 48, 64}, rng);
    auto run = [&](Precision p) {
        Model<models::SegNetBasic<11>, Cpu> model(7);  // a fresh one: train forwards move the batch-norm statistics
        model.set_precision(p);
        std::vector<Tensor<Cpu>> out;
        out.push_back(model.forward(x, Mode::eval));
        out.push_back(model.forward(x, Mode::train));
        out.push_back(model.backward(grad));
        CHECK(compute_precision() == Precision::fp32);  // the model's scope ends with each call
        return out;
    };
    const auto fp32 = run(Precision::fp32);
    const auto bf16 = run(Precision::bf16);
    for (std::size_t i = 0; i < fp32.size(); ++i) {
        CAPTURE(i);
        double diff2 = 0, norm2 = 0;
        for (std::int64_t j = 0; j < fp32[i].size(); ++j) {
            const double a = fp32[i].span()[j], d = a - bf16[i].span()[j];
            diff2 += d * d;
            norm2 += a * a;
        }
        const double relative_rms = std::sqrt(diff2 / norm2);
        MESSAGE("output " << i << " (eval, train, input gradient): bf16 against FP32, relative RMS difference "
                          << relative_rms);
        if (backend::cpu::bf16_units()) {
            CHECK(relative_rms > 0);
            CHECK(relative_rms < 0.5);
        } else {
            CHECK(relative_rms == 0);
        }
    }
}

TEST_CASE("PrecisionScope sets the thread's precision and restores the previous one; Model's forward leaves it as it was") {
    CHECK(compute_precision() == Precision::fp32);
    {
        const PrecisionScope outer(Precision::bf16);
        CHECK(compute_precision() == Precision::bf16);
        {
            const PrecisionScope inner(Precision::fp32);
            CHECK(compute_precision() == Precision::fp32);
        }
        CHECK(compute_precision() == Precision::bf16);
        Model<models::SegNetBasic<11>, Cpu> model(5);  // fp32 by default: its forward sets fp32, then restores
        Rng rng(3);
        model.forward(random_tensor({1, 3, 16, 16}, rng), Mode::eval);
        CHECK(compute_precision() == Precision::bf16);
    }
    CHECK(compute_precision() == Precision::fp32);
    CHECK(parse_precision("bf16") == Precision::bf16);
    CHECK(parse_precision("fp32") == Precision::fp32);
    CHECK_FALSE(parse_precision("auto").has_value());
    CHECK(std::string_view(to_string(Precision::bf16)) == "bf16");
}

// --- Bayesian SegNet: Monte-Carlo dropout inference (compose/monte_carlo.hpp) ---------------------

namespace {
using BayesianBasic3 = models::BayesianSegNetBasic<3>;
std::vector<float> image_logits(const Tensor<Cpu>& logits, int n) {
    const std::int64_t size = logits.size() / logits.n();
    return {logits.data() + n * size, logits.data() + (n + 1) * size};
}
}  // namespace

TEST_CASE("Monte Carlo: T samples as one batch equal T single forwards with sampling on") {
    Rng rng(61);
    const Tensor<Cpu> image = random_tensor({1, 3, 16, 16}, rng);
    constexpr int samples = 4;
    Tensor<Cpu> copies({samples, 3, 16, 16});
    for (int t = 0; t < samples; ++t) std::copy_n(image.data(), image.size(), copies.data() + t * image.size());
    Model<BayesianBasic3, Cpu> model(7);
    model.set_sampling(true);
    const Tensor<Cpu> batched = model.forward(copies, Mode::eval);
    model.set_sampling(true);  // restarts the sample counter
    for (int t = 0; t < samples; ++t) {
        const std::vector<float> single = backend::download(model.forward(image, Mode::eval));
        const std::vector<float> from_batch = image_logits(batched, t);
        REQUIRE(single.size() == from_batch.size());
        float worst = 0.f;
        for (std::size_t i = 0; i < single.size(); ++i) worst = std::max(worst, std::abs(single[i] - from_batch[i]));
        CHECK_MESSAGE(worst <= 1e-4f, "sample " << t << ": max difference " << worst);
    }
    CHECK(image_logits(batched, 0) != image_logits(batched, 1));  // the samples differ

    // The library call: the same mean whether the samples run in one batch or one at a time.
    const MonteCarloPrediction one_batch = monte_carlo_predict(model, image, samples);
    const MonteCarloPrediction singles = monte_carlo_predict(model, image, samples, 1);
    for (std::int64_t i = 0; i < one_batch.mean.size(); ++i)
        REQUIRE(one_batch.mean.data()[i] == doctest::Approx(singles.mean.data()[i]).epsilon(1e-4));
}

TEST_CASE("Monte Carlo: reproducible from the model's seed; mean, entropy and variance are consistent") {
    Rng rng(62);
    const Tensor<Cpu> images = random_tensor({2, 3, 16, 16}, rng);
    Model<BayesianBasic3, Cpu> a(11), b(11), other(12);
    const MonteCarloPrediction pa = monte_carlo_predict(a, images, 5);
    const MonteCarloPrediction pb = monte_carlo_predict(b, images, 5);
    CHECK(backend::download(pa.mean) == backend::download(pb.mean));
    CHECK(backend::download(monte_carlo_predict(a, images, 5).mean) == backend::download(pa.mean));  // again
    CHECK(backend::download(monte_carlo_predict(other, images, 5).mean) != backend::download(pa.mean));

    const std::int64_t plane = 16 * 16;
    bool any_spread = false;
    for (int n = 0; n < 2; ++n)
        for (std::int64_t i = 0; i < plane; ++i) {
            double total = 0.0, entropy = 0.0;
            for (int k = 0; k < 3; ++k) {
                const double m = pa.mean.data()[(n * 3 + k) * plane + i];
                total += m;
                if (m > 0) entropy -= m * std::log(m);
            }
            REQUIRE(total == doctest::Approx(1.0).epsilon(1e-5));
            REQUIRE(pa.entropy.data()[n * plane + i] == doctest::Approx(entropy).epsilon(1e-4));
            REQUIRE(pa.variance.data()[n * plane + i] >= 0.f);
            any_spread = any_spread || pa.variance.data()[n * plane + i] > 0.f;
        }
    CHECK(any_spread);

    // One sample: its softmax, so no spread.
    const MonteCarloPrediction one = monte_carlo_predict(a, images, 1);
    for (float v : one.variance.span()) REQUIRE(v == doctest::Approx(0.f).epsilon(1e-6));
}

TEST_CASE("Monte Carlo: bad sample counts and models without dropout are rejected; sampling ends off") {
    Rng rng(63);
    const Tensor<Cpu> image = random_tensor({1, 3, 16, 16}, rng);
    Model<BayesianBasic3, Cpu> model(5);
    const std::vector<float> deterministic = backend::download(model.forward(image, Mode::eval));
    CHECK_THROWS_WITH_AS(monte_carlo_predict(model, image, 0), doctest::Contains("samples must be in [1, 1000]"),
                         std::invalid_argument);
    CHECK_THROWS_AS(monte_carlo_predict(model, image, max_monte_carlo_samples + 1), std::invalid_argument);
    Model<models::SegNetBasic<3>, Cpu> plain(5);
    CHECK_FALSE(plain.has_random_layers());
    CHECK(model.has_random_layers());
    CHECK_THROWS_WITH_AS(monte_carlo_predict(plain, image, 4), doctest::Contains("has no dropout"),
                         std::invalid_argument);
    (void)monte_carlo_predict(model, image, 3);
    CHECK(backend::download(model.forward(image, Mode::eval)) == deterministic);  // sampling is off again
}

namespace {
/// Runs a model's layer and cancels a token as it does, counting its runs: a forward that checks
/// the token between layers must stop right after it.
struct CancelsAsItRuns final : RuntimeLayer<Cpu> {
    std::unique_ptr<RuntimeLayer<Cpu>> inner;
    CancelToken& token;
    int runs = 0;
    CancelsAsItRuns(std::unique_ptr<RuntimeLayer<Cpu>> layer, CancelToken& t) : inner(std::move(layer)), token(t) {}
    const Tensor<Cpu>& forward(const Tensor<Cpu>& x, Mode mode) override {
        ++runs;
        token.cancel();
        return inner->forward(x, mode);
    }
    const Tensor<Cpu>& forward_into(const Tensor<Cpu>& x, Mode mode, Tensor<Cpu>& out) override {
        ++runs;
        token.cancel();
        return inner->forward_into(x, mode, out);
    }
    const Tensor<Cpu>& backward(const Tensor<Cpu>& dy) override { return inner->backward(dy); }
    TrainBufferUse train_buffer_use() const override { return inner->train_buffer_use(); }
    std::string_view kind() const override { return inner->kind(); }
};

/// Wraps node i of `model` (its layer goes back by unwrap()).
CancelsAsItRuns& wrap(AnyModel<Cpu>& model, std::size_t i, CancelToken& token) {
    auto wrapper = std::make_unique<CancelsAsItRuns>(std::move(model.layers()[i].layer), token);
    CancelsAsItRuns& ref = *wrapper;
    model.layers()[i].layer = std::move(wrapper);
    return ref;
}
void unwrap(AnyModel<Cpu>& model, std::size_t i) {
    auto& wrapper = dynamic_cast<CancelsAsItRuns&>(*model.layers()[i].layer);
    model.layers()[i].layer = std::move(wrapper.inner);
}
}  // namespace

TEST_CASE("CancelToken: an eval forward stops at the first layer after the cancel, throws Cancelled, and the model "
          "then computes what it computed before") {
    Rng rng(64);
    const Tensor<Cpu> image = random_tensor({1, 3, 32, 32}, rng);
    Model<models::SegNetBasic<3>, Cpu> model(9);
    const std::vector<float> reference = backend::download(model.forward(image, Mode::eval));
    model.set_eval_fusion(false);  // every node a step of its own, so node 2 runs alone after node 1
    CancelToken token;
    model.set_cancel_token(&token);
    CancelToken unused;
    CancelsAsItRuns& cancels = wrap(model, 1, token);
    CancelsAsItRuns& next = wrap(model, 2, unused);
    CHECK_THROWS_WITH_AS(model.forward(image, Mode::eval), doctest::Contains("the forward cancelled"), Cancelled);
    CHECK(cancels.runs == 1);
    CHECK(next.runs == 0);  // checked between node 1 and node 2
    unwrap(model, 2);
    unwrap(model, 1);
    CHECK_THROWS_AS(model.forward(image, Mode::eval), Cancelled);  // still cancelled: stops before node 0
    model.set_cancel_token(nullptr);
    model.set_eval_fusion(true);
    CHECK(backend::download(model.forward(image, Mode::eval)) == reference);

    // A deadline: not yet passed, nothing changes; passed, the forward is cut short.
    const CancelToken later(std::chrono::steady_clock::now() + std::chrono::hours(1));
    model.set_cancel_token(&later);
    CHECK(backend::download(model.forward(image, Mode::eval)) == reference);
    const CancelToken passed(std::chrono::steady_clock::now() - std::chrono::milliseconds(1));
    model.set_cancel_token(&passed);
    CHECK_THROWS_WITH_AS(model.forward(image, Mode::eval), doctest::Contains("cut short at its deadline"), Cancelled);
    model.set_cancel_token(nullptr);
    CHECK(backend::download(model.forward(image, Mode::eval)) == reference);
}

TEST_CASE("CancelToken: Monte-Carlo sampling cancelled half-way ends with sampling off, and the next run draws what "
          "an uncancelled one draws") {
    Rng rng(65);
    const Tensor<Cpu> image = random_tensor({1, 3, 16, 16}, rng);
    Model<BayesianBasic3, Cpu> model(13), fresh(13);
    const std::vector<float> deterministic = backend::download(model.forward(image, Mode::eval));
    CancelToken token;
    model.set_cancel_token(&token);
    std::thread canceller([&] {  // from another thread, during the run (1000 samples, one per forward)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        token.cancel();
    });
    CHECK_THROWS_WITH_AS(monte_carlo_predict(model, image, max_monte_carlo_samples, 1), doctest::Contains("cancelled"),
                         Cancelled);
    canceller.join();
    model.set_cancel_token(nullptr);
    CHECK(backend::download(model.forward(image, Mode::eval)) == deterministic);  // sampling is off again
    CHECK(backend::download(monte_carlo_predict(model, image, 4).mean) ==
          backend::download(monte_carlo_predict(fresh, image, 4).mean));
}
