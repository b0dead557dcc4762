// segnet/compose/buffer_pool.hpp: the activation and gradient buffers a model owns, and the two
// rules by which its planners (eval_plan.hpp, train_plan.hpp) pick one.
//
//   BufferPool<Cpu> pool;
//   int b = pool.lowest_free(node, in_use);     // eval: lowest index free at `node`
//   int g = pool.best_fit(step, need, in_use);  // train: best fit by planned size
//   pool.take(g, until);                        // g now holds a value read until step `until`
//
// busy_until(b) is the last step that reads buffer b's value. Both rules depend only on the
// steps and sizes, so a second pass of the same input size makes the same choices as the first
// and allocates nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "segnet/core/tensor.hpp"

namespace segnet {

template <class Device>
class BufferPool {
public:
    std::size_t size() const { return buffers_.size(); }
    Tensor<Device>& operator[](int b) { return *buffers_[std::size_t(b)]; }
    const Tensor<Device>* get(int b) const { return buffers_[std::size_t(b)].get(); }
    int& busy_until(int b) { return busy_until_[std::size_t(b)]; }
    /// Elements held (the buffers' capacities).
    std::int64_t elements() const {
        std::int64_t total = 0;
        for (const auto& b : buffers_) total += b->capacity();
        return total;
    }
    /// The buffer that holds t, or -1.
    int buffer_of(const Tensor<Device>* t) const {
        for (std::size_t b = 0; b < buffers_.size(); ++b)
            if (buffers_[b].get() == t) return int(b);
        return -1;
    }
    /// A new pass: nothing busy (train: nothing planned or used yet either).
    void start_pass() {
        std::fill(busy_until_.begin(), busy_until_.end(), -1);
        std::fill(planned_.begin(), planned_.end(), 0);
        used_ = 0;
    }

    /// Eval: the lowest-index buffer free at `node` other than `in_use` (free: busy_until < node).
    int lowest_free(int node, int in_use) {
        for (std::size_t b = 0; b < buffers_.size(); ++b)
            if (int(b) != in_use && busy_until_[b] < node) return int(b);
        add_buffer();
        return int(buffers_.size() - 1);
    }

    /// Train: a buffer free at `step` other than `in_use`, for `need` elements: the smallest
    /// planned one that holds them, else the largest free one (it grows), else the next unused one.
    int best_fit(int step, std::int64_t need, int in_use) {
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
        while (std::size_t(used_) < buffers_.size() && busy_until_[std::size_t(used_)] >= step) ++used_;  // pinned
        if (std::size_t(used_) == buffers_.size()) add_buffer();
        return used_;
    }
    /// Train: records that buffer b (from best_fit) now holds a value read until `until`.
    void take(int b, int until) {
        if (b == used_) ++used_;
        planned_[std::size_t(b)] = std::max(planned_[std::size_t(b)], buffers_[std::size_t(b)]->size());
        busy_until_[std::size_t(b)] = until;
    }

private:
    void add_buffer() {
        buffers_.push_back(std::make_unique<Tensor<Device>>());
        busy_until_.push_back(-1);
        planned_.push_back(0);
    }

    std::vector<std::unique_ptr<Tensor<Device>>> buffers_;
    std::vector<int> busy_until_;        // per buffer: the last step that reads it
    std::vector<std::int64_t> planned_;  // train: per buffer, this pass's largest use
    int used_ = 0;                       // train: buffers this pass has used (a prefix)
};

}  // namespace segnet
