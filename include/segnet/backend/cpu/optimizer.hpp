// segnet/backend/cpu/optimizer.hpp: the CPU kernels of the optimizer updates (rules in
// backend/optimizer_update.hpp), one loop per case so that each vectorises.
//
//   segnet::backend::sgd_update(weight, grad, &buffer, step, SgdBuffer::later);   // Tensor<Cpu>
//   segnet::backend::adam_update(weight, grad, m, v, step);
//
// GCC vectorises the Adam loops only with -fno-math-errno (std::sqrt may otherwise set errno, a
// branch per element); the SGD loops need no flag. Single-threaded: a parameter tensor is small
// next to the convolutions that produced its gradient.
#pragma once

#include <cstdint>

#include "segnet/backend/optimizer_update.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet::backend {

/// One SGD step of one parameter; `buffer` is the momentum buffer (null when mode is none).
inline void sgd_update(Tensor<Cpu>& weight, const Tensor<Cpu>& grad, Tensor<Cpu>* buffer, const SgdStep& step,
                       SgdBuffer mode) {
    const SgdStep s = step;  // a local copy: no aliasing with the tensors for the vectoriser
    const std::int64_t n = weight.size();
    float* __restrict w = weight.data();
    const float* __restrict g = grad.data();
    if (mode == SgdBuffer::none) {
        for (std::int64_t j = 0; j < n; ++j) w[j] = update::sgd_plain(w[j], g[j], s);
        return;
    }
    float* __restrict b = buffer->data();
    if (mode == SgdBuffer::first) {
        for (std::int64_t j = 0; j < n; ++j) b[j] = update::sgd_buffer(b[j], w[j], g[j], s, true);
    } else {
        for (std::int64_t j = 0; j < n; ++j) b[j] = update::sgd_buffer(b[j], w[j], g[j], s, false);
    }
    if (s.nesterov) {
        for (std::int64_t j = 0; j < n; ++j) w[j] = update::sgd_nesterov_weight(w[j], g[j], b[j], s);
    } else {
        for (std::int64_t j = 0; j < n; ++j) w[j] = update::sgd_weight(w[j], b[j], s);
    }
}

/// One Adam / AdamW step of one parameter with its two moment tensors.
inline void adam_update(Tensor<Cpu>& weight, const Tensor<Cpu>& grad, Tensor<Cpu>& exp_avg, Tensor<Cpu>& exp_avg_sq,
                        const AdamStep& step) {
    const AdamStep s = step;
    const std::int64_t n = weight.size();
    float* __restrict w = weight.data();
    const float* __restrict g = grad.data();
    float* __restrict m = exp_avg.data();
    float* __restrict v = exp_avg_sq.data();
    if (s.decoupled) {
        if (s.weight_decay != 0)
            for (std::int64_t j = 0; j < n; ++j) w[j] *= s.shrink;
        for (std::int64_t j = 0; j < n; ++j) w[j] = update::adam(w[j], g[j], m[j], v[j], s);
    } else {
        for (std::int64_t j = 0; j < n; ++j)
            w[j] = update::adam(w[j], update::decayed(g[j], w[j], s.weight_decay), m[j], v[j], s);
    }
}

}  // namespace segnet::backend
