// segnet/compose/model.hpp: Model<Net, Device>, a network instantiated on a device with its
// parameters, gradients and activation buffers, and AnyModel<Device>, the same with the network
// type erased (what programs, the trainer and evaluation take).
//
//   Model<models::SegNetBasic<11>, Cpu> model(/*seed*/ 42);
//   const Tensor<Cpu>& logits = model.forward(x, Mode::train);   // x: {N, 3, H, W}
//   model.backward(grad_logits);   // accumulates parameter gradients; zero_grad() resets
//
// The model is a flat list of run-time layers built by the same walk that checks the type.
// Layers own their outputs; an output stays valid until the next forward. The input x must
// outlive the backward that follows its forward (layers keep a reference, not a copy).
// Sizes are checked once per new input size: a static Input must match exactly, and a dyn
// one is analysed with the real sizes (a too-small image is an error naming the stage).
#pragma once

#include <algorithm>
#include <cctype>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/compose/network.hpp"

namespace segnet {

/// Where an Encoder's pre-pool map is published for its Decoder, and where the skip's gradient
/// joins the encoder's own.
template <class Device>
class TapLayer final : public RuntimeLayer<Device> {
public:
    explicit TapLayer(SkipLink<Device>* link) : link_(link) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode) override {
        link_->feature = &x;
        link_->has_feature_grad = false;
        return x;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override {
        if (!link_->has_feature_grad) return dy;
        sum_.resize(dy.extents());
        backend::add(dy, link_->feature_grad, sum_);
        link_->has_feature_grad = false;
        return sum_;
    }
    std::string_view kind() const override { return "Tap"; }

private:
    SkipLink<Device>* link_;
    Tensor<Device> sum_;
};

template <class Device>
struct ModelNode {
    std::unique_ptr<RuntimeLayer<Device>> layer;
    std::string prefix;  // parameter name prefix, e.g. "encoder0.0."
    int stage = 0;
};

namespace detail {
template <class Device>
struct ModelBuilder {
    std::vector<ModelNode<Device>>& nodes;
    std::vector<std::unique_ptr<SkipLink<Device>>>& links;
    std::string stage_prefix;
    bool single = false;
    int stage = 0;

    void begin_stage(StageKind kind, int stage_number, int ordinal, bool single_layer) {
        stage = stage_number;
        single = single_layer;
        if (kind == StageKind::encoder) stage_prefix = "encoder" + std::to_string(ordinal);
        else if (kind == StageKind::decoder) stage_prefix = "decoder" + std::to_string(ordinal);
        else stage_prefix = "stage" + std::to_string(stage_number);
    }
    template <class L>
    void layer(Dims in, int, int layer_number, int link) {
        auto l = L::template make<Device>(in);
        if (link >= 0) l->connect(links[std::size_t(link)].get());
        std::string prefix = stage_prefix + "." + std::to_string(layer_number - 1) + ".";
        if (single) prefix = L::name == std::string_view("Classifier") ? "classifier." : stage_prefix + ".";
        nodes.push_back({std::move(l), std::move(prefix), stage});
    }
    void tap(int link) {
        links.push_back(std::make_unique<SkipLink<Device>>());
        nodes.push_back({std::make_unique<TapLayer<Device>>(links[std::size_t(link)].get()), "", stage});
    }
};
}  // namespace detail

/// The run-time model behind every Model<Net, Device>, with the network type erased: programs
/// and the trainer work on an AnyModel so that they are compiled once, not once per network.
template <class Device>
class AnyModel {
public:
    virtual ~AnyModel() = default;
    AnyModel(const AnyModel&) = delete;
    AnyModel& operator=(const AnyModel&) = delete;

    /// Re-draws every parameter (He/MSRA) and resets batch-norm statistics, reproducibly.
    void initialize(std::uint64_t seed) {
        Rng rng(seed);
        for (auto& n : nodes_) n.layer->initialize(rng);
        zero_grad();
    }

    /// Runs the network; the result is owned by the model and valid until the next forward.
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode = Mode::eval) {
        check_input(x.extents());
        const Tensor<Device>* cur = &x;
        for (auto& n : nodes_) cur = &n.layer->forward(*cur, mode);
        output_ = cur;
        return *cur;
    }

    /// Back-propagates d loss / d logits through the last forward; accumulates parameter
    /// gradients and returns d loss / d input.
    const Tensor<Device>& backward(const Tensor<Device>& grad_output) {
        if (!output_) throw std::logic_error("segnet::Model::backward: call forward first");
        if (grad_output.extents() != output_->extents())
            throw std::invalid_argument("segnet::Model::backward: gradient " + to_string(grad_output.extents()) +
                                        " differs from the last output " + to_string(output_->extents()));
        const Tensor<Device>* g = &grad_output;
        for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) g = &it->layer->backward(*g);
        return *g;
    }

    /// Trainable parameters with PyTorch-style names ("encoder0.0.weight", "classifier.bias").
    std::vector<ParamRef<Device>> parameters() {
        auto all = state();
        std::erase_if(all, [](const ParamRef<Device>& p) { return !p.trainable(); });
        return all;
    }
    /// Every tensor a checkpoint holds: parameters and buffers (batch-norm running statistics).
    std::vector<ParamRef<Device>> state() {
        std::vector<ParamRef<Device>> out;
        for (auto& n : nodes_) n.layer->collect(out, n.prefix);
        return out;
    }
    void zero_grad() {
        for (auto& p : state())
            if (p.grad) p.grad->zero();
    }

    /// The run-time layers in execution order (for per-layer timing and inspection).
    const std::vector<ModelNode<Device>>& layers() const { return nodes_; }
    std::vector<ModelNode<Device>>& layers() { return nodes_; }

    /// The network's name ("segnet-basic"; "custom" for an unnamed Network).
    std::string_view name() const { return name_; }
    /// Output channels: the number of classes.
    int classes() const { return classes_; }
    /// The declared input (channels; height/width or dyn).
    Dims input() const { return input_; }
    /// The network's shape walk for an input size (as Net::analyse).
    virtual Analysis analyse(Dims input) const = 0;

protected:
    AnyModel(std::string_view name, Dims input, int classes) : name_(name), input_(input), classes_(classes) {}

    std::vector<ModelNode<Device>> nodes_;
    std::vector<std::unique_ptr<SkipLink<Device>>> links_;

private:
    void check_input(const Extents& e) {
        auto fail = [&](Fault f, int expected, int actual) {
            Diagnosis d{};
            d.fault = f;
            d.expected = expected;
            d.actual = actual;
            throw std::invalid_argument(describe(d) + " for an input of " + to_string(e));
        };
        if (e.n < 1 || e.h < 1 || e.w < 1)
            throw std::invalid_argument("segnet::Model::forward: empty input " + to_string(e));
        if (e.c != input_.c) fail(Fault::input_channels, input_.c, e.c);
        if (input_.h != dyn && e.h != input_.h) fail(Fault::input_size, input_.h, e.h);
        if (input_.w != dyn && e.w != input_.w) fail(Fault::input_size, input_.w, e.w);
        if (e.image() == checked_) return;
        const Analysis a = analyse(e.image());
        if (!a.ok()) throw std::invalid_argument(describe(a.diag) + " for an input of " + to_string(e));
        checked_ = e.image();
    }

    std::string_view name_;
    Dims input_;
    int classes_;
    const Tensor<Device>* output_ = nullptr;
    Dims checked_{};
};

/// A network type instantiated on a device: built by the walk that checked the type.
template <NetworkType Net, class Device = Cpu>
class Model final : public AnyModel<Device> {
public:
    using network = Net;
    using device = Device;
    static constexpr std::int64_t parameter_count = parameter_count_v<Net>;

    explicit Model(std::uint64_t seed = 0) : AnyModel<Device>(Net::name, Net::input::dims, Net::analysis.output.c) {
        detail::ModelBuilder<Device> builder{this->nodes_, this->links_, {}, false, 0};
        Net::walk(Net::input::dims, builder);
        this->initialize(seed);
    }

    Analysis analyse(Dims input) const override { return Net::analyse(input); }
};

}  // namespace segnet
