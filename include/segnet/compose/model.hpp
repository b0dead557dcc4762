// segnet/compose/model.hpp: Model<Net, Device>, a network instantiated on a device with its
// parameters, gradients and activation buffers, and AnyModel<Device>, the same with the network
// type erased (what programs, the trainer and evaluation take).
//
//   Model<models::SegNetBasic<11>, Cpu> model(/*seed*/ 42);
//   const Tensor<Cpu>& logits = model.forward(x, Mode::train);   // x: {N, 3, H, W}
//   model.backward(grad_logits);   // accumulates parameter gradients; zero_grad() resets
//
// The model is a flat list of run-time layers built by the same walk that checks the type.
// In Mode::train, layers own their outputs and keep everything backward needs; an output stays
// valid until the next forward. The input x must outlive the backward that follows its forward
// (layers keep a reference, not a copy).
// In Mode::eval, the model runs the layers through forward_into with buffers from its own
// activation pool: a node's input buffer goes back to the pool as soon as no later node needs
// it (an Encoder's pre-pool map stays until its Decoder's last reader of the values when a skip
// layer reads them, e.g. Add; unpooling needs only its size and the pool's indices, which the
// pool layer keeps). Buffers are picked by a fixed rule (lowest free index), so the second
// eval forward of the same input size reuses exactly the first one's buffers and allocates
// nothing. backward after an eval forward is an error.
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
        link_->feature_extents = x.extents();
        link_->feature_extents_of = &x;
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
    int feature_until = -1;  // a Tap: the last node that reads its map's values (-1: none)
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
    std::vector<std::size_t> tap_nodes{};  // per link, its Tap's node

    template <class L>
    void layer(Dims in, int, int layer_number, int link) {
        auto l = L::template make<Device>(in);
        if (link >= 0) l->connect(links[std::size_t(link)].get());
        if (link >= 0 && skip_storage_of<L>(in, SkipDims{}).reads_feature)
            nodes[tap_nodes[std::size_t(link)]].feature_until = int(nodes.size());
        std::string prefix = stage_prefix + "." + std::to_string(layer_number - 1) + ".";
        if (single) prefix = L::name == std::string_view("Classifier") ? "classifier." : stage_prefix + ".";
        nodes.push_back({std::move(l), std::move(prefix), stage});
    }
    void tap(int link) {
        links.push_back(std::make_unique<SkipLink<Device>>());
        tap_nodes.push_back(nodes.size());
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
    /// Mode::eval runs on the activation pool (see the top of this file): no backward after it.
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode = Mode::eval) {
        check_input(x.extents());
        if (mode == Mode::eval) {
            output_ = nullptr;
            eval_forward_ = true;
            return forward_pooled(x);
        }
        eval_forward_ = false;
        const Tensor<Device>* cur = &x;
        for (auto& n : nodes_) cur = &n.layer->forward(*cur, mode);
        output_ = cur;
        return *cur;
    }

    /// Elements held by the eval-mode activation pool (its buffers' capacities), for tests and
    /// the memory figures.
    std::int64_t activation_pool_elements() const {
        std::int64_t total = 0;
        for (const auto& b : pool_) total += b->capacity();
        return total;
    }
    std::size_t activation_pool_buffers() const { return pool_.size(); }

    /// Back-propagates d loss / d logits through the last forward; accumulates parameter
    /// gradients and returns d loss / d input.
    const Tensor<Device>& backward(const Tensor<Device>& grad_output) {
        if (eval_forward_)
            throw std::logic_error("segnet::Model::backward: the last forward ran in Mode::eval, which frees "
                                   "activations as it goes; run forward(x, Mode::train) before backward");
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
    /// The eval forward: node i reads `cur` (in pool buffer cur_buf, or -1: x or a layer's own
    /// output) and writes into the lowest-index pool buffer that is free at i. A buffer is free
    /// at node i when it does not hold the current input and busy_until_ < i.
    const Tensor<Device>& forward_pooled(const Tensor<Device>& x) {
        std::fill(busy_until_.begin(), busy_until_.end(), -1);
        const Tensor<Device>* cur = &x;
        int cur_buf = -1;  // x may be the last eval forward's output: then it is in the pool
        for (std::size_t b = 0; b < pool_.size(); ++b)
            if (pool_[b].get() == &x) {
                cur_buf = int(b);
                busy_until_[b] = int(nodes_.size());  // never overwritten during this forward
            }
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            const int node = int(i);
            const int out_buf = free_buffer(node, cur_buf);
            Tensor<Device>& out = *pool_[std::size_t(out_buf)];
            const Tensor<Device>* y = &nodes_[i].layer->forward_into(*cur, Mode::eval, out);
            if (cur_buf >= 0) {
                int& until = busy_until_[std::size_t(cur_buf)];
                until = std::max({until, node, nodes_[i].feature_until});  // a Tap pins its map
            }
            cur_buf = y == &out ? out_buf : y == cur ? cur_buf : -1;
            cur = y;
        }
        return *cur;
    }
    int free_buffer(int node, int in_use) {
        for (std::size_t b = 0; b < pool_.size(); ++b)
            if (int(b) != in_use && busy_until_[b] < node) return int(b);
        pool_.push_back(std::make_unique<Tensor<Device>>());
        busy_until_.push_back(-1);
        return int(pool_.size() - 1);
    }

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
    bool eval_forward_ = false;
    Dims checked_{};
    std::vector<std::unique_ptr<Tensor<Device>>> pool_;  // eval-mode activation buffers
    std::vector<int> busy_until_;                        // per buffer: the last node that needs it
};

/// A network type instantiated on a device: built by the walk that checked the type.
template <NetworkType Net, class Device = Cpu>
class Model final : public AnyModel<Device> {
public:
    using network = Net;
    using device = Device;
    static constexpr std::int64_t parameter_count = parameter_count_v<Net>;

    explicit Model(std::uint64_t seed = 0) : AnyModel<Device>(Net::name, Net::input::dims, Net::analysis.output.c) {
        detail::ModelBuilder<Device> builder{this->nodes_, this->links_, {}, false, 0, {}};
        Net::walk(Net::input::dims, builder);
        this->initialize(seed);
    }

    Analysis analyse(Dims input) const override { return Net::analyse(input); }
};

}  // namespace segnet
