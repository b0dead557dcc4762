// segnet/compose/any_model.hpp: AnyModel<Device>, the run-time model with the network type
// erased (what programs, the trainer and evaluation take): its nodes, its parameters, and
// forward/backward on the model's buffer pool.
//
//   AnyModel<Cpu>& m = model;                          // any Model<Net, Cpu>
//   const Tensor<Cpu>& logits = m.forward(x, Mode::train);
//   m.backward(grad_logits);                           // accumulates parameter gradients
//
// @post forward's result is valid until the next forward; x must outlive the backward that
//       follows its forward (layers keep a reference); backward runs once per train forward and
//       never after an eval forward.
// Sizes are checked once per new input size: a static Input must match exactly, and a dyn one is
// analysed with the real sizes (a too-small image is an error naming the stage). An eval forward
// can be cut short between layers by a CancelToken (set_cancel_token, core/cancel.hpp). The planners:
// eval_plan.hpp (eval mode, fusion), train_plan.hpp (train mode).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/compose/buffer_pool.hpp"
#include "segnet/compose/builder.hpp"
#include "segnet/compose/eval_plan.hpp"
#include "segnet/compose/train_plan.hpp"
#include "segnet/core/cancel.hpp"
#include "segnet/core/precision.hpp"

namespace segnet {

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
    /// Both modes run on the model's buffer pool; no backward after an eval forward.
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode = Mode::eval) {
        check_input(x.extents());
        const PrecisionScope precision(precision_);
        output_ = nullptr;
        backward_ready_ = false;
        if (mode == Mode::eval) {
            eval_forward_ = true;
            return EvalPlanner<Device>(nodes_, eval_fusion_, &pool_, cancel_).forward(x);
        }
        eval_forward_ = false;
        output_ = &train_planner().forward(x);
        backward_ready_ = true;
        return *output_;
    }

    /// Cooperative cancellation (core/cancel.hpp): while a token is set, each Mode::eval forward
    /// checks it before every layer (or fused step) and throws Cancelled once it is cancelled;
    /// the model is then reusable as after a finished forward (the next one starts a fresh pass
    /// over the buffer pool). nullptr (the default): nothing is checked. Train forwards do not
    /// check it (a step cut half-way would leave random layers' step counters apart). The token
    /// must outlive its use; set nullptr before it goes.
    void set_cancel_token(const CancelToken* token) { cancel_ = token; }
    const CancelToken* cancel_token() const { return cancel_; }

    /// Elements held by the buffer pool (its buffers' capacities): eval activations, train
    /// activations and gradients; for tests and the memory figures.
    std::int64_t activation_pool_elements() const { return pool_.elements(); }
    std::size_t activation_pool_buffers() const { return pool_.size(); }

    /// Eval-mode fusion of convolution + batch norm (+ ReLU) into one kernel pass (eval_plan.hpp);
    /// on by default. Off: every layer runs on its own, as in train mode. The two agree to float
    /// rounding (the folded weights round differently), not bit for bit.
    void set_eval_fusion(bool on) { eval_fusion_ = on; }

    /// The precision the model's convolutions compute in (core/precision.hpp): Precision::bf16
    /// rounds their operands to bfloat16 and accumulates in FP32 where the device has BF16
    /// units, and runs FP32 where it does not; parameters, activations and gradients stay FP32.
    /// Precision::fp32 by default.
    void set_precision(Precision p) { precision_ = p; }
    Precision precision() const { return precision_; }
    bool eval_fusion() const { return eval_fusion_; }
    /// How many nodes the eval forward would run as fused steps: for each fused step, the number
    /// of nodes it replaces beyond the first (a conv + batch norm + ReLU step counts 2, an
    /// unpool + conv + batch norm step 2, a conv + batch norm + ReLU + Tap + max pool step 4; an
    /// unpooling or pooling the kernels decline at run time, on a CPU without AVX2, still counts).
    int eval_fused_nodes() const { return EvalPlanner<Device>(nodes_, eval_fusion_).fused_nodes(); }

    /// Random layers (RandomLayer, e.g. Dropout): the step whose draws the next train forward
    /// makes; each train forward counts one on, from 0 after initialize(). A trainer resuming at
    /// step s calls set_random_step(s), so the resumed run draws what the uninterrupted one drew.
    void set_random_step(std::uint64_t step) {
        each_random_layer([&](RandomLayer& r) { r.set_random_step(step); });
    }
    /// Whether any layer draws random numbers (a RandomLayer: Dropout), i.e. whether Monte-Carlo
    /// sampling can give more than one answer.
    bool has_random_layers() const {
        bool found = false;
        each_random_layer([&](RandomLayer&) { found = true; });
        return found;
    }
    /// Monte-Carlo sampling (Bayesian SegNet): random layers draw in Mode::eval too; off by default.
    /// Switching it on restarts their sample counters, so the samples that follow depend only on the
    /// model's seed.
    void set_sampling(bool on) {
        each_random_layer([&](RandomLayer& r) { r.set_sampling(on); });
    }
    /// f on every RandomLayer, those inside composite layers (CompositeRuntime) too.
    void each_random_layer(const std::function<void(RandomLayer&)>& f) const {
        for (const auto& n : nodes_)
            for_each_layer_in<Device>(*n.layer, [&](RuntimeLayer<Device>& l) {
                if (auto* r = dynamic_cast<RandomLayer*>(&l)) f(*r);
            });
    }

    /// Back-propagates d loss / d logits through the last forward (Mode::train); accumulates
    /// parameter gradients and returns d loss / d input, valid until the next forward. Once per
    /// forward: backward reuses the forward's activation buffers for gradients as it goes.
    const Tensor<Device>& backward(const Tensor<Device>& grad_output) {
        if (eval_forward_)
            throw std::logic_error("segnet::Model::backward: the last forward ran in Mode::eval, which frees "
                                   "activations as it goes; run forward(x, Mode::train) before backward");
        if (!output_) throw std::logic_error("segnet::Model::backward: call forward first");
        if (!backward_ready_)
            throw std::logic_error("segnet::Model::backward: the last forward was already back-propagated (backward "
                                   "reuses its activations for gradients); run forward(x, Mode::train) again");
        if (grad_output.extents() != output_->extents())
            throw std::invalid_argument("segnet::Model::backward: gradient " + to_string(grad_output.extents()) +
                                        " differs from the last output " + to_string(output_->extents()));
        backward_ready_ = false;
        const PrecisionScope precision(precision_);
        return train_planner().backward(grad_output);
    }

    /// Called during backward with a node's index (in layers()) as soon as that node's backward has
    /// run, so its parameters' gradients are final: data-parallel training starts summing a bucket
    /// of gradients across processes while backward goes on (train/data_parallel.hpp). Empty: none.
    void set_backward_observer(std::function<void(std::size_t node)> observer) {
        backward_observer_ = std::move(observer);
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
    /// Every node's input size per image (a Tap: 0), in the order of layers().
    virtual std::vector<std::int64_t> node_inputs(Dims input) const = 0;

protected:
    AnyModel(std::string_view name, Dims input, int classes) : name_(name), input_(input), classes_(classes) {}

    std::vector<ModelNode<Device>> nodes_;
    std::vector<std::unique_ptr<SkipLink<Device>>> links_;

private:
    TrainPlanner<Device> train_planner() {
        return {nodes_, pool_, out_elements_, checked_.elements(), backward_observer_};
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
        // Every node's output size per image, for the train-mode buffer choice: node i's output
        // is node i + 1's input (a Tap passes its input through), the last one the network's.
        std::vector<std::int64_t> in = node_inputs(e.image());
        if (in.size() != nodes_.size()) throw std::logic_error("segnet::Model: the shape walk and the layers differ");
        for (std::size_t i = in.size(); i-- > 1;)
            if (in[i - 1] == 0) in[i - 1] = in[i];
        out_elements_.assign(nodes_.size(), 0);
        for (std::size_t i = 0; i + 1 < nodes_.size(); ++i) out_elements_[i] = in[i + 1];
        if (!nodes_.empty()) out_elements_.back() = a.output.elements();
        checked_ = e.image();
    }

    std::string_view name_;
    Dims input_;
    int classes_;
    const Tensor<Device>* output_ = nullptr;
    bool eval_forward_ = false;
    bool eval_fusion_ = true;
    Precision precision_ = Precision::fp32;
    const CancelToken* cancel_ = nullptr;        // set_cancel_token: checked by eval forwards
    Dims checked_{};
    bool backward_ready_ = false;                // a train forward that no backward has consumed yet
    std::vector<std::int64_t> out_elements_;     // per node: output elements per image
    BufferPool<Device> pool_;                    // activation and gradient buffers
    std::function<void(std::size_t)> backward_observer_;
};

}  // namespace segnet
