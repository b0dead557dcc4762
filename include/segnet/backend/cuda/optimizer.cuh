// segnet/backend/cuda/optimizer.cuh: the CUDA kernels of the optimizer updates (rules in
// backend/optimizer_update.hpp, the functions the CPU loops call), one launch per parameter.
//
//   segnet::backend::sgd_update(weight, grad, &buffer, step, SgdBuffer::later);   // Tensor<Cuda>
//   segnet::backend::adam_update(weight, grad, m, v, step);
#pragma once

#include <cstdint>

#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/backend/optimizer_update.hpp"

namespace segnet::backend::cuda::kernels {
SEGNET_KERNEL void sgd_update(float* w, const float* g, float* b, std::int64_t n, backend::SgdStep s,
                              backend::SgdBuffer mode) {
    namespace u = backend::update;
    SEGNET_GRID_STRIDE(j, n) {
        if (mode == backend::SgdBuffer::none) {
            w[j] = u::sgd_plain(w[j], g[j], s);
            continue;
        }
        b[j] = u::sgd_buffer(b[j], w[j], g[j], s, mode == backend::SgdBuffer::first);
        w[j] = s.nesterov ? u::sgd_nesterov_weight(w[j], g[j], b[j], s) : u::sgd_weight(w[j], b[j], s);
    }
}
SEGNET_KERNEL void adam_update(float* w, const float* g, float* m, float* v, std::int64_t n, backend::AdamStep s) {
    namespace u = backend::update;
    SEGNET_GRID_STRIDE(j, n) {
        if (s.decoupled) {
            if (s.weight_decay != 0) w[j] *= s.shrink;
            w[j] = u::adam(w[j], g[j], m[j], v[j], s);
        } else {
            w[j] = u::adam(w[j], u::decayed(g[j], w[j], s.weight_decay), m[j], v[j], s);
        }
    }
}
}  // namespace segnet::backend::cuda::kernels

namespace segnet::backend {

/// One SGD step of one device parameter; `buffer` is the momentum buffer (null when mode is none).
inline void sgd_update(Tensor<Cuda>& weight, const Tensor<Cuda>& grad, Tensor<Cuda>* buffer, const SgdStep& s,
                       SgdBuffer mode) {
    const std::int64_t n = weight.size();
    if (n == 0) return;
    SEGNET_CUDA_LAUNCH(cuda::kernels::sgd_update<<<cuda::kernels::grid_for(n), 256, 0, cuda::stream()>>>(
        weight.data(), grad.data(), buffer ? buffer->data() : nullptr, n, s, mode));
}

/// One Adam / AdamW step of one device parameter with its two moment tensors.
inline void adam_update(Tensor<Cuda>& weight, const Tensor<Cuda>& grad, Tensor<Cuda>& exp_avg,
                        Tensor<Cuda>& exp_avg_sq, const AdamStep& s) {
    const std::int64_t n = weight.size();
    if (n == 0) return;
    SEGNET_CUDA_LAUNCH(cuda::kernels::adam_update<<<cuda::kernels::grid_for(n), 256, 0, cuda::stream()>>>(
        weight.data(), grad.data(), exp_avg.data(), exp_avg_sq.data(), n, s));
}

}  // namespace segnet::backend
