// segnet/compose/train_plan.hpp: the train-mode forward and the backward that follows, planned
// as one pass over the model's buffer pool from what each layer's backward reads.
//
//   TrainPlanner<Cpu> plan{nodes, pool, out_elements, in_elements0, after_backward};
//   const Tensor<Cpu>& y = plan.forward(x);
//   const Tensor<Cpu>& dx = plan.backward(dy);   // same planner state: once per forward
//
// Time runs over the forward (node i at step i) and then the backward (node i at step
// back_step(i) = 2n - 1 - i). A buffer is busy until the last step that reads its value, as
// each layer's train_buffer_use() states: a node's output until its last reader ran (the next
// node; its own backward when it reads its output; the next node's backward when that reads its
// input; a Tap's skip readers, forward or backward); a gradient until the node before it ran its
// backward. So a batch norm's output is free once the ReLU after it has run, which may then
// overwrite it in place, and gradients take the buffers backward has freed. Buffers are chosen
// best fit by size (every node's output size is known from the shape walk): every pass of the
// same input size makes the same choices, and the second one allocates nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "segnet/compose/buffer_pool.hpp"
#include "segnet/compose/builder.hpp"

namespace segnet {

template <class Device>
class TrainPlanner {
public:
    /// out_elements: per node, its output's elements per image; input_elements: the network's
    /// input's, per image. after_backward (may be empty): called with a node's index once its
    /// backward has run, i.e. once its parameters' gradients are final.
    TrainPlanner(std::vector<ModelNode<Device>>& nodes, BufferPool<Device>& pool,
                 const std::vector<std::int64_t>& out_elements, std::int64_t input_elements,
                 const std::function<void(std::size_t)>& after_backward)
        : nodes_(nodes), pool_(pool), out_elements_(out_elements), input_elements_(input_elements),
          after_backward_(after_backward) {}

    const Tensor<Device>& forward(const Tensor<Device>& x) {
        pool_.start_pass();
        const Tensor<Device>* cur = &x;
        int cur_buf = pool_.buffer_of(&x);  // x may be the model's last output: never overwritten
        if (cur_buf >= 0) pool_.busy_until(cur_buf) = forever;
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
                const bool in_place = use.in_place && !use.reads_input && cur_buf >= 0 && pool_.busy_until(cur_buf) < step;
                out_buf = in_place ? cur_buf : pool_.best_fit(step, need, cur_buf);
                y = &node.layer->forward_into(*cur, Mode::train, pool_[out_buf]);
            }
            if (cur_buf >= 0) {  // this node read its input; later readers of the same value:
                int& until = pool_.busy_until(cur_buf);
                until = std::max(until, step);
                if (use.reads_input || !use.pooled) until = std::max(until, back_step(i));
                until = std::max(until, node.feature_until);  // a Tap: the skip layers' forward
                if (node.feature_backward >= 0) until = std::max(until, back_step(std::size_t(node.feature_backward)));
            }
            if (out_buf >= 0 && y == pool_.get(out_buf)) {
                const int until = use.reads_output ? back_step(i) : step;
                if (out_buf == cur_buf) pool_.busy_until(out_buf) = std::max(pool_.busy_until(out_buf), until);
                else pool_.take(out_buf, until);
                cur_buf = out_buf;
            } else if (y != cur) {
                cur_buf = -1;  // the layer's own buffer
            }
            cur = y;
        }
        if (cur_buf >= 0) pool_.busy_until(cur_buf) = forever;  // the output: until the next forward
        return *cur;
    }

    const Tensor<Device>& backward(const Tensor<Device>& grad_output) {
        const Tensor<Device>* g = &grad_output;
        int g_buf = pool_.buffer_of(g);
        if (g_buf >= 0) pool_.busy_until(g_buf) = forever;  // the caller's: never overwritten
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
                const bool in_place = use.in_place && g_buf >= 0 && pool_.busy_until(g_buf) < step;
                dx_buf = in_place ? g_buf : pool_.best_fit(step, need, g_buf);
                dx = &layer.backward_into(*g, pool_[dx_buf]);
            }
            if (g_buf >= 0) pool_.busy_until(g_buf) = std::max(pool_.busy_until(g_buf), step);
            if (dx_buf >= 0 && dx == pool_.get(dx_buf)) {
                if (dx_buf != g_buf) pool_.take(dx_buf, step);
                g_buf = dx_buf;
            } else if (dx != g) {
                g_buf = -1;
            }
            g = dx;
            if (after_backward_) after_backward_(i);
        }
        return *g;
    }

private:
    static constexpr int forever = std::numeric_limits<int>::max();
    int back_step(std::size_t node) const { return int(2 * nodes_.size() - 1 - node); }
    /// Elements per image of node i's input.
    std::int64_t in_elements(std::size_t i) const { return i == 0 ? input_elements_ : out_elements_[i - 1]; }

    std::vector<ModelNode<Device>>& nodes_;
    BufferPool<Device>& pool_;
    const std::vector<std::int64_t>& out_elements_;
    std::int64_t input_elements_;
    const std::function<void(std::size_t)>& after_backward_;
};

}  // namespace segnet
