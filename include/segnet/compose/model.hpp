// segnet/compose/model.hpp: Model<Net, Device>, a network instantiated on a device with its
// parameters, gradients and activation buffers, and AnyModel<Device>, the same with the network
// type erased (what programs, the trainer and evaluation take).
//
//   Model<models::SegNetBasic<11>, Cpu> model(/*seed*/ 42);
//   const Tensor<Cpu>& logits = model.forward(x, Mode::train);   // x: {N, 3, H, W}
//   model.backward(grad_logits);   // accumulates parameter gradients; zero_grad() resets
//
// The model is a flat list of run-time layers built by the same walk that checks the type.
// Both modes run the layers on one pool of buffers the model owns (RuntimeLayer::forward_into
// and backward_into; a layer that does not override them keeps its own buffers).
// In Mode::eval, a node's input buffer goes back to the pool as soon as no later node needs it
// (an Encoder's pre-pool map stays until its Decoder's last reader of the values when a skip
// layer reads them, e.g. Add; unpooling needs only its size and the pool's indices, which the
// pool layer keeps). Buffers are picked by a fixed rule (lowest free index), so the second
// eval forward of the same input size reuses exactly the first one's buffers and allocates
// nothing. backward after an eval forward is an error.
// Eval-mode fusion (on by default; set_eval_fusion(false) turns it off): a convolution followed
// by a batch norm, by a ReLU, or by both (nodes whose fusion_role() is convolution,
// channel_affine, relu, in that order) runs as one step, the convolution's forward_fused_into:
// the batch norm folded into its weights and bias from the current running statistics, the
// ReLU in the kernel's store. An Unpool right before such a convolution joins the step where the
// backend can read the unpooling from the pooled values and indices (the CPU's direct kernels:
// the unpooled map is never written); elsewhere the Unpool runs on its own. Likewise an
// Encoder's Tap and MaxPool right after such a step join it where no skip layer reads the
// Encoder's map (SegNet's Unpool reads only its size and the indices) and the backend can pool
// as it computes (the CPU's direct kernels pool each band of output rows in cache: the
// full-size map is never written, the Tap publishes only its size). The pattern is
// matched on every eval forward (a few virtual calls per node, no allocation), so replaced layers
// and changed parameters are always honoured. Train mode never fuses.
// In Mode::train, forward and the backward that follows are planned as one pass: a buffer is
// busy until the last step that reads its value, as each layer's train_buffer_use() states:
// a convolution's or batch norm's input until its backward, a ReLU's output until its backward,
// a batch norm's output only until the ReLU after it has run, which may therefore overwrite it
// in place; an Encoder's map until its Decoder's skip layers have read it (AddProjected: until
// its backward). Gradients take buffers as they are freed (activations the backward no longer
// reads, gradients already consumed) instead of one buffer per layer. A
// skip's gradient to its Encoder (SkipLink::feature_grad) is the link's own and lives until the
// Tap has added it. The last forward's output stays valid until the next forward; the input x
// must outlive the backward that follows its forward (layers keep a reference, not a copy);
// backward runs once per train forward (it overwrites the activations), and what it returns,
// d loss / d input, stays valid until the next forward. The second pass of an input size makes
// the same buffer choices as the first (best fit by the sizes the shape walk gives), so it
// allocates no buffer.
// Sizes are checked once per new input size: a static Input must match exactly, and a dyn
// one is analysed with the real sizes (a too-small image is an error naming the stage).
#pragma once

#include <algorithm>
#include <cctype>
#include <limits>
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
        link_->size_only = false;
        link_->has_feature_grad = false;
        return x;
    }
    /// An eval step that pools the map as it computes it (the map never exists): publishes only
    /// its size, all an Unpool or other size-reading upsampler takes from the link.
    void publish_size_only(const Extents& map) {
        link_->feature = nullptr;
        link_->feature_extents = map;
        link_->feature_extents_of = nullptr;
        link_->size_only = true;
        link_->has_feature_grad = false;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, sum_); }
    /// dy plus the gradient the Decoder's skip layers sent, when they sent one; else dy itself.
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& out) override {
        if (!link_->has_feature_grad) return dy;
        out.resize(dy.extents());
        backend::add(dy, link_->feature_grad, out);  // elementwise: out may be dy
        link_->has_feature_grad = false;
        return out;
    }
    /// Passes x through; what its skip readers need of the map the model pins (ModelNode).
    TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = false, .reads_output = false, .reads_feature = false, .in_place = true};
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
    int feature_until = -1;     // a Tap: the last node whose forward reads its map's values (-1: none)
    int feature_backward = -1;  // a Tap: the first node whose backward reads them (-1: none)
    TapLayer<Device>* tap = nullptr;  // the layer, when this node is a Tap
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
        if (link >= 0 && l->train_buffer_use().reads_feature) {
            int& first = nodes[tap_nodes[std::size_t(link)]].feature_backward;
            if (first < 0) first = int(nodes.size());  // backward runs in reverse: the first reader is the last to run
        }
        std::string prefix = stage_prefix + "." + std::to_string(layer_number - 1) + ".";
        if (single) {
            constexpr std::string_view own = layer_traits<L>::parameter_prefix;  // e.g. the Classifier's
            prefix = own.empty() ? stage_prefix + "." : std::string(own) + ".";
        }
        nodes.push_back({std::move(l), std::move(prefix), stage});
    }
    void tap(int link) {
        links.push_back(std::make_unique<SkipLink<Device>>());
        tap_nodes.push_back(nodes.size());
        auto tap_layer = std::make_unique<TapLayer<Device>>(links[std::size_t(link)].get());
        TapLayer<Device>* tap_ptr = tap_layer.get();
        nodes.push_back({std::move(tap_layer), "", stage});
        nodes.back().tap = tap_ptr;
    }
};

/// Collects every node's input size, in the order ModelBuilder adds the nodes (a Tap: 0, its
/// input being the next layer's).
struct NodeInputs {
    std::vector<std::int64_t>& elements;  // per image
    template <class L>
    void layer(Dims in, int, int, int) {
        elements.push_back(in.elements());
    }
    void tap(int) { elements.push_back(0); }
    void begin_stage(StageKind, int, int, bool) {}
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
    /// Both modes run on the model's buffer pool (see the top of this file); no backward after
    /// an eval forward.
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode = Mode::eval) {
        check_input(x.extents());
        output_ = nullptr;
        backward_ready_ = false;
        if (mode == Mode::eval) {
            eval_forward_ = true;
            return forward_pooled(x);
        }
        eval_forward_ = false;
        output_ = &forward_train(x);
        backward_ready_ = true;
        return *output_;
    }

    /// Elements held by the buffer pool (its buffers' capacities): eval activations, train
    /// activations and gradients; for tests and the memory figures.
    std::int64_t activation_pool_elements() const {
        std::int64_t total = 0;
        for (const auto& b : pool_) total += b->capacity();
        return total;
    }
    std::size_t activation_pool_buffers() const { return pool_.size(); }

    /// Eval-mode fusion of convolution + batch norm (+ ReLU) into one kernel pass (see the top of
    /// this file); on by default. Off: every layer runs on its own, as in train mode. The two
    /// agree to float rounding (the folded weights round differently), not bit for bit.
    void set_eval_fusion(bool on) { eval_fusion_ = on; }
    bool eval_fusion() const { return eval_fusion_; }
    /// How many nodes the eval forward would run as fused steps: for each fused step, the number
    /// of nodes it replaces beyond the first (a conv + batch norm + ReLU step counts 2, an
    /// unpool + conv + batch norm step 2, a conv + batch norm + ReLU + Tap + max pool step 4; an
    /// unpooling or pooling the kernels decline at run time, on a CPU without AVX2, still counts).
    int eval_fused_nodes() const {
        int fused = 0;
        for (std::size_t i = 0; i < nodes_.size();) {
            const std::size_t last = fused_until(i);
            fused += int(last - i);
            i = last + 1;
        }
        return fused;
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
        return backward_pooled(grad_output);
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
        for (std::size_t i = 0; i < nodes_.size();) {
            const int node = int(i);
            const int out_buf = free_buffer(node, cur_buf);
            Tensor<Device>& out = *pool_[std::size_t(out_buf)];
            // A fused step runs nodes i .. last; its input is read by node i only (a Tap inside
            // publishes only its map's size: the step pools that map as it computes it).
            std::size_t last = fused_until(i);
            const Tensor<Device>* y = last == i ? nullptr : forward_fused_step(i, last, *cur, out);
            if (!y) {  // not fused, or the backend declined an unpooling's or lone pool's fusion: node i alone
                last = i;
                y = &nodes_[i].layer->forward_into(*cur, Mode::eval, out);
            }
            if (cur_buf >= 0) {
                int& until = busy_until_[std::size_t(cur_buf)];
                until = std::max({until, int(last), nodes_[i].feature_until});  // a Tap pins its map
            }
            cur_buf = y == &out ? out_buf : y == cur ? cur_buf : -1;
            cur = y;
            i = last + 1;
        }
        return *cur;
    }
    /// Runs nodes i .. last (fused_until(i) > i) as one step into out: [unpool,] convolution
    /// [, channel_affine] [, relu] [, Tap, max_pool]. nullptr when the convolution declines the
    /// unpooled input; where it declines the pooling, the step ends before the Tap (last is
    /// moved back there).
    const Tensor<Device>* forward_fused_step(std::size_t i, std::size_t& last, const Tensor<Device>& x,
                                             Tensor<Device>& out) {
        const bool unpool = nodes_[i].layer->fusion_role() == FusionRole::unpool;
        const std::size_t conv = unpool ? i + 1 : i;
        std::size_t next = conv + 1;
        ChannelAffine<Device> affine{};
        if (next <= last && nodes_[next].layer->fusion_role() == FusionRole::channel_affine)
            affine = nodes_[next++].layer->eval_affine();
        const bool relu = next <= last && nodes_[next].layer->fusion_role() == FusionRole::relu;
        if (relu) ++next;
        if (unpool)
            return nodes_[conv].layer->forward_unpooled_fused_into(nodes_[i].layer->eval_unpooled(x), affine, relu, out);
        if (next <= last) {  // a Tap and the pool follow
            const Tensor<Device>* y =
                nodes_[conv].layer->forward_pooled_fused_into(x, affine, relu, *nodes_[next + 1].layer, out);
            if (y) {
                nodes_[next].tap->publish_size_only({y->n(), y->c(), x.h(), x.w()});
                return y;
            }
            last = next - 1;
            if (last == conv) return nullptr;
        }
        return &nodes_[conv].layer->forward_fused_into(x, affine, relu, out);
    }
    /// The last node of the eval step that starts at node i: i itself, or with fusion on, the end
    /// of a convolution, channel_affine, relu run (at least two of them, the convolution first),
    /// of an unpool followed by a convolution that takes it unpooled and that run, or of such a
    /// run (no unpool) followed by an Encoder's Tap whose map no skip layer reads and its max
    /// pool, where the convolution can pool its output.
    std::size_t fused_until(std::size_t i) const {
        if (!eval_fusion_) return i;
        if (nodes_[i].layer->fusion_role() == FusionRole::unpool) {
            if (i + 1 < nodes_.size() && nodes_[i + 1].layer->fusion_role() == FusionRole::convolution &&
                nodes_[i + 1].layer->fuses_unpooled_input())
                return std::max(i + 1, conv_run_end(i + 1));
            return i;
        }
        if (nodes_[i].layer->fusion_role() != FusionRole::convolution) return i;
        const std::size_t last = conv_run_end(i);
        if (last + 2 < nodes_.size() && nodes_[last + 1].tap && nodes_[last + 1].feature_until < 0 &&
            nodes_[last + 2].layer->fusion_role() == FusionRole::max_pool && nodes_[i].layer->fuses_pooled_output())
            return last + 2;
        return last;
    }
    /// The end of the convolution [, channel_affine] [, relu] run that starts at node i.
    std::size_t conv_run_end(std::size_t i) const {
        std::size_t last = i;
        if (last + 1 < nodes_.size() && nodes_[last + 1].layer->fusion_role() == FusionRole::channel_affine) ++last;
        if (last + 1 < nodes_.size() && nodes_[last + 1].layer->fusion_role() == FusionRole::relu) ++last;
        return last;
    }
    int free_buffer(int node, int in_use) {
        for (std::size_t b = 0; b < pool_.size(); ++b)
            if (int(b) != in_use && busy_until_[b] < node) return int(b);
        add_buffer();
        return int(pool_.size() - 1);
    }
    void add_buffer() {
        pool_.push_back(std::make_unique<Tensor<Device>>());
        busy_until_.push_back(-1);
        planned_.push_back(0);
    }
    /// The pool buffer that holds t, or -1.
    int buffer_of(const Tensor<Device>* t) const {
        for (std::size_t b = 0; b < pool_.size(); ++b)
            if (pool_[b].get() == t) return int(b);
        return -1;
    }

    // --- train mode: forward and backward on one pool -------------------------------------------
    // Time runs over the forward (node i at step i) and then the backward (node i at step
    // back_step(i) = 2n - 1 - i). busy_until_[b] is the last step that reads buffer b's value: a
    // node's output is busy until its last reader ran (the next node; the node's own backward
    // when it reads its output; the next node's backward when it reads its input; a Tap's skip
    // readers, forward or backward); a gradient until the node before it ran its backward.
    // Buffers are chosen best fit by size (every node's output size is known from the shape walk)
    // over planned_, the sizes this pass has given each buffer so far, and used in index order:
    // the choice depends only on the sizes and the steps, so every pass of the same input size
    // makes the same choices, and the second one allocates nothing.
    int back_step(std::size_t node) const { return int(2 * nodes_.size() - 1 - node); }

    /// A buffer free at `step` other than `in_use`, for `need` elements: the smallest planned
    /// one that holds them, else the largest free one (it grows), else the next unused one.
    int fit_buffer(int step, std::int64_t need, int in_use) {
        int best = -1, largest = -1;
        for (int b = 0; b < used_; ++b) {
            if (b == in_use || busy_until_[std::size_t(b)] >= step) continue;
            const std::int64_t p = planned_[std::size_t(b)];
            if (p >= need) {
                if (best < 0 || p < planned_[std::size_t(best)]) best = b;
            } else if (largest < 0 || p > planned_[std::size_t(largest)]) {
                largest = b;
            }
        }
        if (best >= 0) return best;
        if (largest >= 0) return largest;
        while (std::size_t(used_) < pool_.size() && busy_until_[std::size_t(used_)] >= step) ++used_;  // pinned
        if (std::size_t(used_) == pool_.size()) add_buffer();
        return used_;
    }
    /// Records that buffer b (from fit_buffer) now holds a value read until `until`.
    void take_buffer(int b, int until) {
        if (b == used_) ++used_;
        planned_[std::size_t(b)] = std::max(planned_[std::size_t(b)], pool_[std::size_t(b)]->size());
        busy_until_[std::size_t(b)] = until;
    }

    const Tensor<Device>& forward_train(const Tensor<Device>& x) {
        constexpr int forever = std::numeric_limits<int>::max();
        std::fill(busy_until_.begin(), busy_until_.end(), -1);
        std::fill(planned_.begin(), planned_.end(), 0);
        used_ = 0;
        const Tensor<Device>* cur = &x;
        int cur_buf = buffer_of(&x);  // x may be the model's last output: never overwritten
        if (cur_buf >= 0) busy_until_[std::size_t(cur_buf)] = forever;
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            const int step = int(i);
            const ModelNode<Device>& node = nodes_[i];
            const TrainBufferUse use = node.layer->train_buffer_use();
            const std::int64_t need = std::int64_t(x.n()) * out_elements_[i];
            const Tensor<Device>* y;
            int out_buf = -1;
            if (!use.pooled) {
                y = &node.layer->forward(*cur, Mode::train);
            } else {
                // In place when the input's value has no reader after this node (e.g. a ReLU
                // after a BatchNorm, whose backward reads its input, not its output).
                const bool in_place = use.in_place && !use.reads_input && cur_buf >= 0 &&
                                      busy_until_[std::size_t(cur_buf)] < step;
                out_buf = in_place ? cur_buf : fit_buffer(step, need, cur_buf);
                y = &node.layer->forward_into(*cur, Mode::train, *pool_[std::size_t(out_buf)]);
            }
            if (cur_buf >= 0) {  // this node read its input; later readers of the same value:
                int& until = busy_until_[std::size_t(cur_buf)];
                until = std::max(until, step);
                if (use.reads_input || !use.pooled) until = std::max(until, back_step(i));
                until = std::max(until, node.feature_until);  // a Tap: the skip layers' forward
                if (node.feature_backward >= 0) until = std::max(until, back_step(std::size_t(node.feature_backward)));
            }
            if (out_buf >= 0 && y == pool_[std::size_t(out_buf)].get()) {
                const int until = use.reads_output ? back_step(i) : step;
                if (out_buf == cur_buf) busy_until_[std::size_t(out_buf)] = std::max(busy_until_[std::size_t(out_buf)], until);
                else take_buffer(out_buf, until);
                cur_buf = out_buf;
            } else if (y != cur) {
                cur_buf = -1;  // the layer's own buffer
            }
            cur = y;
        }
        if (cur_buf >= 0) busy_until_[std::size_t(cur_buf)] = forever;  // the output: until the next forward
        return *cur;
    }

    const Tensor<Device>& backward_pooled(const Tensor<Device>& grad_output) {
        constexpr int forever = std::numeric_limits<int>::max();
        const Tensor<Device>* g = &grad_output;
        int g_buf = buffer_of(g);
        if (g_buf >= 0) busy_until_[std::size_t(g_buf)] = forever;  // the caller's: never overwritten
        const int n = grad_output.n();
        for (std::size_t i = nodes_.size(); i-- > 0;) {
            const int step = back_step(i);
            RuntimeLayer<Device>& layer = *nodes_[i].layer;
            const TrainBufferUse use = layer.train_buffer_use();
            const std::int64_t need = std::int64_t(n) * in_elements(i);  // d loss / d input: the input's size
            const Tensor<Device>* dx;
            int dx_buf = -1;
            if (!use.pooled) {
                dx = &layer.backward(*g);
            } else {
                const bool in_place = use.in_place && g_buf >= 0 && busy_until_[std::size_t(g_buf)] < step;
                dx_buf = in_place ? g_buf : fit_buffer(step, need, g_buf);
                dx = &layer.backward_into(*g, *pool_[std::size_t(dx_buf)]);
            }
            if (g_buf >= 0) busy_until_[std::size_t(g_buf)] = std::max(busy_until_[std::size_t(g_buf)], step);
            if (dx_buf >= 0 && dx == pool_[std::size_t(dx_buf)].get()) {
                if (dx_buf != g_buf) take_buffer(dx_buf, step);
                g_buf = dx_buf;
            } else if (dx != g) {
                g_buf = -1;
            }
            g = dx;
        }
        return *g;
    }
    /// Elements per image of node i's input.
    std::int64_t in_elements(std::size_t i) const {
        return i == 0 ? checked_.elements() : out_elements_[i - 1];
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
    Dims checked_{};
    bool backward_ready_ = false;  // a train forward that no backward has consumed yet
    std::vector<std::int64_t> out_elements_;             // per node: output elements per image
    std::vector<std::unique_ptr<Tensor<Device>>> pool_;  // activation and gradient buffers
    std::vector<int> busy_until_;                        // per buffer: the last step that reads it
    std::vector<std::int64_t> planned_;                  // train: per buffer, this pass's largest use
    int used_ = 0;                                       // train: buffers this pass has used (a prefix)
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
    std::vector<std::int64_t> node_inputs(Dims input) const override {
        std::vector<std::int64_t> elements;
        detail::NodeInputs visitor{elements};
        Net::walk(input, visitor);
        return elements;
    }
};

}  // namespace segnet
