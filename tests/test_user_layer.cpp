// A layer written in user code, outside the library (docs/architecture.md, "Adding a layer"): it
// meets the Layer contract of segnet/layers/layer.hpp, composes into a Network, trains with the
// library's optimiser and passes the library's gradient checker, alone and inside a model.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "segnet/compose/model.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/testing/gradient_check.hpp"
#include "segnet/train/optimizer.hpp"

#include "layer_test_support.hpp"

namespace user {

/// y[n, c, h, w] = x[n, c, h, w] * scale[c], a learned scale per channel (parameter "scale").
class ChannelScaleLayer final : public segnet::RuntimeLayer<segnet::Cpu> {
public:
    using Tensor = segnet::Tensor<segnet::Cpu>;
    explicit ChannelScaleLayer(int channels) : c_(channels) {
        scale_.resize({1, channels, 1, 1});
        grad_.resize({1, channels, 1, 1});
    }
    const Tensor& forward(const Tensor& x, segnet::Mode mode) override { return forward_into(x, mode, y_); }
    /// Into the model's buffer (train_buffer_use().pooled): out may not be x (in_place false).
    const Tensor& forward_into(const Tensor& x, segnet::Mode, Tensor& out) override {
        x_ = &x;
        out.resize(x.extents());
        const std::int64_t plane = std::int64_t(x.h()) * x.w();
        for (std::int64_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale_[(i / plane) % c_];
        return out;
    }
    const Tensor& backward(const Tensor& dy) override { return backward_into(dy, dx_); }
    const Tensor& backward_into(const Tensor& dy, Tensor& dx) override {
        dx.resize(dy.extents());
        const std::int64_t plane = std::int64_t(dy.h()) * dy.w();
        for (std::int64_t i = 0; i < dy.size(); ++i) {
            const std::int64_t c = (i / plane) % c_;
            dx[i] = dy[i] * scale_[c];
            grad_[c] += dy[i] * (*x_)[i];
        }
        return dx;
    }
    /// Backward reads its input (for the scale's gradient), not its output.
    segnet::TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = true, .reads_output = false, .reads_feature = false};
    }
    void initialize(segnet::Rng& rng) override {
        for (float& s : scale_.span()) s = rng.uniform(0.5f, 1.5f);
    }
    void collect(std::vector<segnet::ParamRef<segnet::Cpu>>& out, const std::string& prefix) override {
        out.push_back({prefix + "scale", &scale_, &grad_, {c_}, false});
    }
    std::string_view kind() const override { return "ChannelScale"; }

private:
    int c_;
    Tensor scale_, grad_, y_, dx_;
    const Tensor* x_ = nullptr;
};

/// The layer type: the contract's five required members, no optional ones (pointwise geometry).
struct ChannelScale {
    static constexpr std::string_view name = "ChannelScale";
    static constexpr segnet::ShapeResult infer(segnet::Dims in) { return segnet::ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(segnet::Dims in) { return in.c; }
    static constexpr std::int64_t flops(segnet::Dims in) { return in.spatial_static() ? in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<segnet::RuntimeLayer<Device>> make(segnet::Dims in) {
        static_assert(std::is_same_v<Device, segnet::Cpu>, "user::ChannelScale runs on the CPU only");
        return std::make_unique<ChannelScaleLayer>(in.c);
    }
};

}  // namespace user

using namespace segnet;
using segnet::testing_support::random_tensor;

namespace {

struct UserNet : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<4, 3>, user::ChannelScale, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<4, 3>, user::ChannelScale>>,
    Classifier<3>> {};

static_assert(Layer<user::ChannelScale> && PlainLayer<user::ChannelScale>);
static_assert(parameter_count_v<UserNet> == (4 * 3 * 9 + 4) + 4 + (4 * 4 * 9 + 4) + 4 + (4 * 3 + 3));

}  // namespace

TEST_CASE("user layer: gradient check of the layer alone (input and scale)") {
    Rng rng(5);
    auto layer = user::ChannelScale::make<Cpu>({3, dyn, dyn});
    layer->initialize(rng);
    const testing::GradientCheckResult r = testing::check_gradients(*layer, random_tensor({2, 3, 4, 5}, rng), Mode::train);
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK(r.checked == 2 * 3 * 4 * 5 + 3);
}

TEST_CASE("user layer: composes into a Network, named, gradient-checked and trained with the library's code") {
    Model<UserNet, Cpu> model(7);
    std::vector<std::string> names;
    for (auto& p : model.parameters()) names.push_back(p.name);
    CHECK(names == std::vector<std::string>{"encoder0.0.weight", "encoder0.0.bias", "encoder0.1.scale",
                                            "decoder0.1.weight", "decoder0.1.bias", "decoder0.2.scale",
                                            "classifier.weight", "classifier.bias"});
    Rng rng(11);
    const Tensor<Cpu> x = random_tensor({2, 3, 5, 7}, rng);

    testing::GradientCheckOptions opt;  // through ReLU and max pooling: as test_layers' model check
    opt.step = 5e-3;
    opt.abs_tol = 2e-3;
    opt.rel_tol = 2e-2;
    opt.allow_kinks = true;
    const testing::GradientCheckResult r = testing::check_gradients(model, x, Mode::train, opt);
    CHECK_MESSAGE(r.ok, r.summary());
    CHECK(r.tensors.size() == names.size() + 1);

    // Eval: the planner runs it on its own between fused steps; same values with fusion off.
    const std::vector<float> fused = backend::download(model.forward(x, Mode::eval));
    model.set_eval_fusion(false);
    const std::vector<float> plain = backend::download(model.forward(x, Mode::eval));
    for (std::size_t i = 0; i < fused.size(); ++i) CHECK(fused[i] == doctest::Approx(plain[i]).epsilon(1e-4));

    // A few SGD steps on L = 0.5 * |logits|^2 (dL/dlogits = logits): the loss goes down.
    Sgd sgd(model.parameters(), {.lr = 2e-3, .momentum = 0.5, .weight_decay = 0});
    auto loss_and_step = [&] {
        const Tensor<Cpu>& y = model.forward(x, Mode::train);
        double loss = 0;
        for (float v : y.span()) loss += 0.5 * double(v) * v;
        Tensor<Cpu> grad(y.extents());
        for (std::int64_t i = 0; i < y.size(); ++i) grad[i] = y[i];
        model.zero_grad();
        model.backward(grad);
        sgd.step();
        return loss;
    };
    const double first = loss_and_step();
    double last = first;
    for (int step = 0; step < 5; ++step) last = loss_and_step();
    MESSAGE("loss " << first << " -> " << last);
    CHECK(std::isfinite(last));
    CHECK(last < 0.8 * first);
}
