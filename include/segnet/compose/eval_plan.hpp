// segnet/compose/eval_plan.hpp: the eval-mode forward: which nodes run as one fused step
// (layers/fusion.hpp) and which pool buffer each step writes.
//
//   EvalPlanner<Cpu> plan{nodes, /*fusion*/ true, &pool};
//   const Tensor<Cpu>& y = plan.forward(x);   // valid until the next forward
//   int n = plan.fused_nodes();               // nodes replaced by fused steps
//
// A node's input buffer goes back to the pool as soon as no later node needs it (an Encoder's
// pre-pool map stays until its Decoder's last reader of the values when a skip layer reads
// them, e.g. Add). Buffers are picked lowest-free-index, so the second forward of an input size
// reuses the first one's buffers and allocates nothing. With fusion on, a convolution followed
// by a batch norm, a ReLU or both (roles convolution, channel_affine, relu) runs as one step;
// an Unpool before it joins where the backend can read the unpooling from the pooled values
// and indices; an Encoder's Tap and MaxPool after it join where no skip layer reads the map and
// the backend can pool as it computes. The pattern is matched on every forward (a few virtual
// calls per node, no allocation), so replaced layers and changed parameters are honoured.
#pragma once

#include <algorithm>
#include <vector>

#include "segnet/compose/buffer_pool.hpp"
#include "segnet/compose/builder.hpp"
#include "segnet/core/cancel.hpp"

namespace segnet {

template <class Device>
class EvalPlanner {
public:
    /// pool: where forward writes (only fused_nodes() and fused_until() without one). cancel
    /// (may be null): checked before each step; a cancelled one makes forward throw Cancelled.
    EvalPlanner(const std::vector<ModelNode<Device>>& nodes, bool fusion, BufferPool<Device>* pool = nullptr,
                const CancelToken* cancel = nullptr)
        : nodes_(nodes), fusion_(fusion), pool_(pool), cancel_(cancel) {}

    /// The eval forward: node i reads `cur` (in pool buffer cur_buf, or -1: x or a layer's own
    /// output) and writes into the lowest-index pool buffer that is free at i. A buffer is free
    /// at node i when it does not hold the current input and busy_until < i.
    const Tensor<Device>& forward(const Tensor<Device>& x) {
        BufferPool<Device>& pool = *pool_;
        pool.start_pass();
        const Tensor<Device>* cur = &x;
        // x may be the last eval forward's output: then it is in the pool, never overwritten now
        int cur_buf = pool.buffer_of(&x);
        if (cur_buf >= 0) pool.busy_until(cur_buf) = int(nodes_.size());
        for (std::size_t i = 0; i < nodes_.size();) {
            // Between steps only: a kernel is never left half-way, and the next pass's start_pass()
            // frees whatever this one held, so a cancelled forward leaves the model reusable.
            if (cancel_) cancel_->throw_if_cancelled("the forward");
            const int out_buf = pool.lowest_free(int(i), cur_buf);
            Tensor<Device>& out = pool[out_buf];
            // A fused step runs nodes i .. last; its input is read by node i only (a Tap inside
            // publishes only its map's size: the step pools that map as it computes it).
            std::size_t last = fused_until(i);
            const Tensor<Device>* y = last == i ? nullptr : forward_fused_step(i, last, *cur, out);
            if (!y) {  // not fused, or the backend declined an unpooling's or lone pool's fusion: node i alone
                last = i;
                y = &nodes_[i].layer->forward_into(*cur, Mode::eval, out);
            }
            if (cur_buf >= 0) {
                int& until = pool.busy_until(cur_buf);
                until = std::max({until, int(last), nodes_[i].feature_until});  // a Tap pins its map
            }
            cur_buf = y == &out ? out_buf : y == cur ? cur_buf : -1;
            cur = y;
            i = last + 1;
        }
        return *cur;
    }

    /// For each fused step, the number of nodes it replaces beyond the first.
    int fused_nodes() const {
        int fused = 0;
        for (std::size_t i = 0; i < nodes_.size();) {
            const std::size_t last = fused_until(i);
            fused += int(last - i);
            i = last + 1;
        }
        return fused;
    }

    /// The last node of the eval step that starts at node i: i itself, or with fusion on, the end
    /// of a convolution, channel_affine, relu run (at least two of them, the convolution first),
    /// of an unpool followed by a convolution that takes it unpooled and that run, or of such a
    /// run (no unpool) followed by an Encoder's Tap whose map no skip layer reads and its max
    /// pool, where the convolution can pool its output.
    std::size_t fused_until(std::size_t i) const {
        if (!fusion_) return i;
        if (role(i) == FusionRole::unpool) {
            if (i + 1 < nodes_.size() && role(i + 1) == FusionRole::convolution &&
                nodes_[i + 1].fusion()->fuses_unpooled_input())
                return std::max(i + 1, conv_run_end(i + 1));
            return i;
        }
        if (role(i) != FusionRole::convolution) return i;
        const std::size_t last = conv_run_end(i);
        if (last + 2 < nodes_.size() && nodes_[last + 1].tap && nodes_[last + 1].feature_until < 0 &&
            role(last + 2) == FusionRole::max_pool && nodes_[i].fusion()->fuses_pooled_output())
            return last + 2;
        return last;
    }

private:
    FusionRole role(std::size_t i) const { return nodes_[i].fusion_role(); }

    /// Runs nodes i .. last (fused_until(i) > i) as one step into out: [unpool,] convolution
    /// [, channel_affine] [, relu] [, Tap, max_pool]. nullptr when the convolution declines the
    /// unpooled input; where it declines the pooling, the step ends before the Tap (last is
    /// moved back there).
    const Tensor<Device>* forward_fused_step(std::size_t i, std::size_t& last, const Tensor<Device>& x,
                                             Tensor<Device>& out) {
        const bool unpool = role(i) == FusionRole::unpool;
        const std::size_t conv = unpool ? i + 1 : i;
        EvalFusion<Device>& conv_layer = *nodes_[conv].fusion();
        std::size_t next = conv + 1;
        ChannelAffine<Device> affine{};
        if (next <= last && role(next) == FusionRole::channel_affine) affine = nodes_[next++].fusion()->eval_affine();
        const bool relu = next <= last && role(next) == FusionRole::relu;
        if (relu) ++next;
        if (unpool) return conv_layer.forward_unpooled_fused_into(nodes_[i].fusion()->eval_unpooled(x), affine, relu, out);
        if (next <= last) {  // a Tap and the pool follow
            const Tensor<Device>* y = conv_layer.forward_pooled_fused_into(x, affine, relu, *nodes_[next + 1].fusion(), out);
            if (y) {
                nodes_[next].tap->publish_size_only({y->n(), y->c(), x.h(), x.w()});
                return y;
            }
            last = next - 1;
            if (last == conv) return nullptr;
        }
        return &conv_layer.forward_fused_into(x, affine, relu, out);
    }
    /// The end of the convolution [, channel_affine] [, relu] run that starts at node i.
    std::size_t conv_run_end(std::size_t i) const {
        std::size_t last = i;
        if (last + 1 < nodes_.size() && role(last + 1) == FusionRole::channel_affine) ++last;
        if (last + 1 < nodes_.size() && role(last + 1) == FusionRole::relu) ++last;
        return last;
    }

    const std::vector<ModelNode<Device>>& nodes_;
    bool fusion_;
    BufferPool<Device>* pool_;
    const CancelToken* cancel_;
};

}  // namespace segnet
