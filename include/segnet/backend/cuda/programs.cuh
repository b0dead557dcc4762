// segnet/backend/cuda/programs.cuh: the Cuda steps of the device-generic trainer and evaluation
// (train/trainer.hpp, train/evaluate.hpp), so that train(AnyModel<Cuda>&, ...),
// evaluate_model(AnyModel<Cuda>&, ...) and the programs' --device cuda work in an nvcc
// translation unit:
//
//   auto model = segnet::models::make_model<segnet::Cuda>("segnet-basic", 11, 42);
//   segnet::TrainResult r = segnet::train(*model, options, train_set, &val_set);
//
// EvalDevice<Cuda>: batches are copied into device tensors kept across batches (the caching
// allocator makes that free after the first batch); predictions are an argmax kernel and one
// uint8 copy to the host (the metrics, BF included, run on host labels as on the CPU).
// TrainDevice<Cuda>: cuda::CrossEntropyLoss, cuda::make_optimizer, and the weights' NaN/Inf
// check as one kernel per parameter into a single counter (one synchronisation per step).
//
// Included by train/evaluate.hpp when compiled by nvcc; never by g++.
#pragma once

#ifndef __CUDACC__
#error "segnet/backend/cuda/programs.cuh must be compiled by nvcc (a .cu file linked with segnet::cuda)"
#endif

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/error.cuh"
#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/loss.cuh"
#include "segnet/backend/cuda/metrics.cuh"
#include "segnet/backend/cuda/optimizer.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/backend/cuda/transfer.cuh"
#include "segnet/train/evaluate.hpp"  // EvalDevice, TrainDevice (declared)

namespace segnet {

namespace cuda {
namespace kernels {
/// labels[n, 0, p] = the first channel with the largest value (ConfusionMatrix::argmax_channels' rule).
SEGNET_KERNEL void argmax_channels(const float* z, int classes, std::int64_t plane, std::int64_t pixels,
                                   std::uint8_t* labels) {
    SEGNET_GRID_STRIDE(p, pixels) {
        const float* zp = z + (p / plane) * classes * plane + p % plane;
        int best = 0;
        float bv = zp[0];
        for (int c = 1; c < classes; ++c)
            if (zp[c * plane] > bv) bv = zp[c * plane], best = c;
        labels[p] = std::uint8_t(best);
    }
}
SEGNET_KERNEL void count_nonfinite(const float* x, std::int64_t n, unsigned int* count) {
    SEGNET_GRID_STRIDE(i, n)
    if (!isfinite(x[i])) atomicAdd(count, 1u);
}
}  // namespace kernels

/// Argmax of {N, K, H, W} device logits as {N, 1, H, W} host labels.
inline Tensor<Cpu, std::uint8_t> predict_labels(const Tensor<Cuda>& logits) {
    const Extents e = logits.extents();
    Tensor<Cuda, std::uint8_t> d({e.n, 1, e.h, e.w});
    const std::int64_t pixels = std::int64_t(e.n) * e.plane();
    if (pixels > 0 && e.c > 0)
        SEGNET_CUDA_LAUNCH(kernels::argmax_channels<<<kernels::grid_for(pixels), 256, 0, stream()>>>(
            logits.data(), e.c, e.plane(), pixels, d.data()));
    return to_host(d);
}

/// Whether every value of the tensors is finite: one kernel each, one counter, one synchronisation.
/// Returns the index of the first tensor with a NaN or Inf, or -1.
inline std::ptrdiff_t first_nonfinite(const std::vector<const Tensor<Cuda>*>& tensors) {
    DeviceBuffer count(sizeof(unsigned int));
    SEGNET_CUDA_CHECK(cudaMemsetAsync(count.get(), 0, count.bytes(), stream()));
    for (const Tensor<Cuda>* t : tensors)
        if (t->size() > 0)
            SEGNET_CUDA_LAUNCH(kernels::count_nonfinite<<<kernels::grid_for(t->size()), 256, 0, stream()>>>(
                t->data(), t->size(), count.as<unsigned int>()));
    unsigned int h = 0;
    SEGNET_CUDA_CHECK(cudaMemcpyAsync(&h, count.get(), sizeof h, cudaMemcpyDeviceToHost, stream()));
    synchronize();
    if (h == 0) return -1;
    for (std::size_t i = 0; i < tensors.size(); ++i)  // the rare failure: find which one
        if (first_nonfinite({tensors[i]}) == 0) return std::ptrdiff_t(i);
    return 0;
}
}  // namespace cuda

template <>
struct EvalDevice<Cuda> {
    static constexpr const char* name = "cuda";
    /// Device copies of the host batch, reused from batch to batch.
    struct Staging {
        Tensor<Cuda> x;
        Tensor<Cuda, std::uint8_t> y;
        const Tensor<Cuda>& images(const Tensor<Cpu>& host) {
            cuda::copy_to_device(host, x);
            return x;
        }
        const Tensor<Cuda, std::uint8_t>& labels(const Tensor<Cpu, std::uint8_t>& host) {
            cuda::copy_to_device(host, y);
            return y;
        }
    };
    static Tensor<Cpu, std::uint8_t> predict_labels(const Tensor<Cuda>& logits) { return cuda::predict_labels(logits); }
};

template <>
struct TrainDevice<Cuda> {
    using Loss = cuda::CrossEntropyLoss;
    static std::unique_ptr<Optimizer> optimizer(std::string_view name, std::vector<ParamRef<Cuda>> params,
                                                const OptimizerOptions& options) {
        return cuda::make_optimizer(name, std::move(params), options);
    }
    static double forward_backward(const Loss& loss, const Tensor<Cuda>& logits,
                                   const Tensor<Cuda, std::uint8_t>& labels, Tensor<Cuda>& grad) {
        return loss.forward_backward(logits, labels, grad);
    }
    static const ParamRef<Cuda>* first_nonfinite(const std::vector<ParamRef<Cuda>>& params) {
        std::vector<const Tensor<Cuda>*> values;
        values.reserve(params.size());
        for (const auto& p : params) values.push_back(p.value);
        const std::ptrdiff_t i = cuda::first_nonfinite(values);
        return i < 0 ? nullptr : &params[std::size_t(i)];
    }
};

}  // namespace segnet
