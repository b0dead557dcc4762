// segnet/backend/optimizer_update.hpp: the update rules of SGD (momentum, Nesterov) and Adam /
// AdamW, per element, shared by every device's optimizer kernel (torch.optim's float32 terms).
//
//   segnet::backend::SgdStep s{.lr = 0.1f, .momentum = 0.9f, .dampening_keep = 1.f, .weight_decay = 5e-4f};
//   segnet::backend::sgd_update(*p.value, *p.grad, &momentum_buffer, s, SgdBuffer::later);
//   segnet::backend::adam_update(*p.value, *p.grad, m, v, AdamStep::at(lr, b1, b2, eps, t, decoupled).with_decay(wd, lr));
//
// The optimizers (train/optimizer.hpp) keep the bookkeeping and call sgd_update/adam_update on
// their parameters' device; the kernels are backend/cpu/optimizer.hpp (loops the compiler
// vectorises) and, in an nvcc translation unit, backend/cuda/optimizer.cuh (one launch per
// tensor), both included at the end of this file and both written with the functions below, so
// the arithmetic is one text.
#pragma once

#include <cmath>
#include <cstdint>

#include "segnet/backend/host_device.hpp"

namespace segnet::backend {

/// One SGD step's scalars in float32 (torch.optim.SGD).
struct SgdStep {
    float lr = 0;
    float momentum = 0;
    float dampening_keep = 1;  ///< 1 - dampening
    float weight_decay = 0;    ///< of this parameter (0 when it is not decayed)
    bool nesterov = false;
};
/// The momentum buffer's state: none (momentum 0), first step (buf = d), later steps.
enum class SgdBuffer { none, first, later };

/// One Adam / AdamW step's scalars: formed in double, as PyTorch does in Python, used in float32.
struct AdamStep {
    float step_size = 0;  ///< -lr / (1 - beta1^t)
    float bc2_sqrt = 1;   ///< sqrt(1 - beta2^t)
    float b1 = 0, c1 = 0, b2 = 0, c2 = 0, eps = 0;
    float weight_decay = 0;  ///< of this parameter
    float shrink = 1;        ///< AdamW: 1 - lr * weight_decay
    bool decoupled = false;  ///< AdamW (decay on the weight) or Adam (decay added to the gradient)

    /// The scalars of step `t` (1-based, after the increment); with_decay() adds a parameter's decay.
    static AdamStep at(double lr, double beta1, double beta2, double eps, std::int64_t t, bool decoupled) {
        AdamStep s;
        const double bc1 = 1.0 - std::pow(beta1, double(t));
        const double bc2 = 1.0 - std::pow(beta2, double(t));
        s.step_size = float(-(lr / bc1));
        s.bc2_sqrt = float(std::sqrt(bc2));
        s.b1 = float(beta1), s.c1 = float(1.0 - beta1);
        s.b2 = float(beta2), s.c2 = float(1.0 - beta2);
        s.eps = float(eps);
        s.decoupled = decoupled;
        return s;
    }
    /// This step for a parameter whose weight decay is wd (0 when it is not decayed).
    AdamStep with_decay(float wd, double lr) const {
        AdamStep s = *this;
        s.weight_decay = wd;
        s.shrink = float(1.0 - lr * double(wd));
        return s;
    }
};

namespace update {

/// d = g + wd * w: the gradient with coupled (L2) weight decay.
SEGNET_HOST_DEVICE inline float decayed(float g, float w, float wd) { return g + wd * w; }

/// SGD without momentum: w - lr * d.
SEGNET_HOST_DEVICE inline float sgd_plain(float w, float g, const SgdStep& s) {
    return w - s.lr * decayed(g, w, s.weight_decay);
}
/// The momentum buffer after this step: d on the first step, momentum * b + (1 - dampening) * d later.
SEGNET_HOST_DEVICE inline float sgd_buffer(float b, float w, float g, const SgdStep& s, bool first) {
    return first ? decayed(g, w, s.weight_decay) : s.momentum * b + s.dampening_keep * decayed(g, w, s.weight_decay);
}
/// The weight after the step from the updated buffer b.
SEGNET_HOST_DEVICE inline float sgd_weight(float w, float b, const SgdStep& s) { return w - s.lr * b; }
/// Nesterov: d + momentum * b, with d recomputed from g and the not-yet-updated w, not stored.
SEGNET_HOST_DEVICE inline float sgd_nesterov_weight(float w, float g, float b, const SgdStep& s) {
    return w - s.lr * (decayed(g, w, s.weight_decay) + s.momentum * b);
}

/// Adam's moments and weight for gradient g (already decayed for Adam; raw for AdamW, whose
/// weight was shrunk first); returns the new weight.
SEGNET_HOST_DEVICE inline float adam(float w, float g, float& m, float& v, const AdamStep& s) {
    m = m * s.b1 + s.c1 * g;
    v = v * s.b2 + (s.c2 * g) * g;
#if defined(__CUDA_ARCH__)
    return w + s.step_size * (m / (sqrtf(v) / s.bc2_sqrt + s.eps));
#else
    return w + s.step_size * (m / (std::sqrt(v) / s.bc2_sqrt + s.eps));
#endif
}

}  // namespace update
}  // namespace segnet::backend

#include "segnet/backend/cpu/optimizer.hpp"
#if defined(__CUDACC__) && !defined(SEGNET_NO_CUDA)
#include "segnet/backend/cuda/optimizer.cuh"
#endif
