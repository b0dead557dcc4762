// segnet/backend/cuda/ops.cuh: the CUDA backend's operations on Tensor<Cuda>, the same
// overloads backend/cpu/ops.hpp gives for Tensor<Cpu>, so every layer runs on either device.
//
//   segnet::backend::conv2d_forward(x, weight, bias_or_nullptr, y, geometry);   // cuDNN
//   segnet::backend::max_pool_forward(x, 2, y, indices);                        // own kernel
//
// Included by backend/ops.hpp when the translation unit is compiled by nvcc (before any layer
// template, which names these functions by qualified lookup). Semantics, layouts and the
// geometry struct are those of the CPU backend; this file only adapts tensors and checks sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/conv_geometry.hpp"
#include "segnet/backend/cuda/cudnn_adapter.cuh"
#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/core/tensor.hpp"

namespace segnet::backend {

using CudaTensor = Tensor<Cuda>;
using CudaIndices = Tensor<Cuda, std::int32_t>;

namespace cuda_detail {
inline void same_size(const char* op, const CudaTensor& a, const CudaTensor& b) {
    if (a.size() != b.size())
        throw std::invalid_argument(std::string("segnet::backend::") + op + " (cuda): sizes differ, " +
                                    to_string(a.extents()) + " and " + to_string(b.extents()));
}
}  // namespace cuda_detail

/// y = conv(x, w * weight_scale) + bias, max(., 0) when relu (the CPU overload's eval fusion).
/// Here the scaled weights are a scratch copy from the caching allocator (no cudaMalloc in a
/// steady state) fed to cuDNN, and the ReLU is a separate in-place pass over y.
inline void conv2d_forward(const CudaTensor& x, const CudaTensor& w, const CudaTensor* bias, CudaTensor& y,
                           const ConvGeometry& g, const CudaTensor* weight_scale = nullptr, bool relu = false) {
    cuda::DeviceBuffer scaled;
    const float* weights = w.data();
    if (weight_scale) {
        scaled = cuda::DeviceBuffer(w.bytes());
        cuda::launch::scale_rows(w.data(), weight_scale->data(), g.out_c, w.size() / g.out_c, scaled.as<float>());
        weights = scaled.as<float>();
    }
    cuda::cudnn::conv_forward(x.data(), weights, bias ? bias->data() : nullptr, y.data(), x.n(), g);
    if (relu) cuda::launch::relu_forward(y.data(), y.data(), y.size());
}
inline void conv2d_backward_data(const CudaTensor& dy, const CudaTensor& w, CudaTensor& dx, const ConvGeometry& g) {
    cuda::cudnn::conv_backward_data(dy.data(), w.data(), dx.data(), dy.n(), g);
}
inline void conv2d_backward_filter(const CudaTensor& x, const CudaTensor& dy, CudaTensor& dw, CudaTensor* dbias,
                                   const ConvGeometry& g) {
    cuda::cudnn::conv_backward_filter(x.data(), dy.data(), dw.data(), dbias ? dbias->data() : nullptr, x.n(), g);
}

inline void relu_forward(const CudaTensor& x, CudaTensor& y) { cuda::launch::relu_forward(x.data(), y.data(), x.size()); }
inline void relu_backward(const CudaTensor& y, const CudaTensor& dy, CudaTensor& dx) {
    cuda::launch::relu_backward(y.data(), dy.data(), dx.data(), y.size());
}
inline void add(const CudaTensor& a, const CudaTensor& b, CudaTensor& y) {
    cuda_detail::same_size("add", a, b);
    cuda::launch::add(a.data(), b.data(), y.data(), a.size());
}
inline void accumulate(const CudaTensor& x, CudaTensor& y) {
    cuda_detail::same_size("accumulate", x, y);
    cuda::launch::accumulate(x.data(), y.data(), x.size());
}
inline void copy(const CudaTensor& x, CudaTensor& y) {
    cuda_detail::same_size("copy", x, y);
    if (x.size() > 0)
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(y.data(), x.data(), x.bytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
}
/// dst[:, dst_c0 : dst_c0 + count] = (or += when accumulate) src[:, src_c0 : src_c0 + count].
inline void copy_channels(const CudaTensor& src, int src_c0, CudaTensor& dst, int dst_c0, int count,
                          bool accumulate = false) {
    if (src.n() != dst.n() || src.h() != dst.h() || src.w() != dst.w() || src_c0 < 0 || dst_c0 < 0 ||
        src_c0 + count > src.c() || dst_c0 + count > dst.c())
        throw std::invalid_argument("segnet::backend::copy_channels (cuda): " + std::to_string(count) +
                                    " channels from " + to_string(src.extents()) + " at " + std::to_string(src_c0) +
                                    " do not fit " + to_string(dst.extents()) + " at " + std::to_string(dst_c0));
    cuda::launch::copy_channels(src.data(), src.c(), src_c0, dst.data(), dst.c(), dst_c0, count, src.n(),
                                src.extents().plane(), accumulate);
}

inline void batch_norm_train(const CudaTensor& x, const CudaTensor& gamma, const CudaTensor& beta, float eps,
                             float momentum, CudaTensor& running_mean, CudaTensor& running_var, CudaTensor& y,
                             CudaTensor& saved_mean, CudaTensor& saved_invstd) {
    cuda::cudnn::batch_norm_train(x.data(), x.n(), x.c(), x.h(), x.w(), gamma.data(), beta.data(), eps, momentum,
                                  running_mean.data(), running_var.data(), y.data(), saved_mean.data(),
                                  saved_invstd.data());
}
inline void batch_norm_eval(const CudaTensor& x, const CudaTensor& gamma, const CudaTensor& beta,
                            const CudaTensor& running_mean, const CudaTensor& running_var, float eps, CudaTensor& y) {
    cuda::cudnn::batch_norm_eval(x.data(), x.n(), x.c(), x.h(), x.w(), gamma.data(), beta.data(), running_mean.data(),
                                 running_var.data(), eps, y.data());
}
inline void batch_norm_eval_affine(const CudaTensor& gamma, const CudaTensor& beta, const CudaTensor& running_mean,
                                   const CudaTensor& running_var, float eps, CudaTensor& scale, CudaTensor& shift) {
    cuda::launch::batch_norm_eval_affine(int(gamma.size()), gamma.data(), beta.data(), running_mean.data(),
                                         running_var.data(), eps, scale.data(), shift.data());
}
/// The CUDA backend has no unpooling fused into the convolution's input: it declines, and the
/// model runs the Unpool and the convolution separately (cpu/ops.hpp has the fused one).
inline bool conv2d_forward_unpooled(const CudaTensor&, const CudaIndices&, int, const CudaTensor&, const CudaTensor*,
                                    CudaTensor&, const ConvGeometry&, const CudaTensor* = nullptr, bool = false) {
    return false;
}
inline constexpr bool fuses_unpooled_input(const CudaTensor&, int) { return false; }
/// Nor a max pooling fused into the convolution's output (the model pools separately).
inline bool conv2d_forward_pooled(const CudaTensor&, const CudaTensor&, const CudaTensor*, CudaTensor&, CudaIndices&,
                                  int, const ConvGeometry&, const CudaTensor* = nullptr, bool = false) {
    return false;
}
inline constexpr bool fuses_pooled_output(const CudaTensor&, int) { return false; }
inline void fold_conv_bias(const CudaTensor* bias, const CudaTensor& scale, const CudaTensor& shift,
                           CudaTensor& folded) {
    cuda::launch::fold_conv_bias(int(scale.size()), bias ? bias->data() : nullptr, scale.data(), shift.data(),
                                 folded.data());
}
/// The CPU signature carries no epsilon: cuDNN reads it only when no saved statistics are
/// given, and here they always are; BatchNorm's 1e-5 is passed for form.
inline void batch_norm_backward(const CudaTensor& x, const CudaTensor& dy, const CudaTensor& gamma,
                                const CudaTensor& saved_mean, const CudaTensor& saved_invstd, CudaTensor& dx,
                                CudaTensor& dgamma, CudaTensor& dbeta) {
    cuda::cudnn::batch_norm_backward(x.data(), dy.data(), x.n(), x.c(), x.h(), x.w(), gamma.data(), saved_mean.data(),
                                     saved_invstd.data(), 1e-5f, dx.data(), dgamma.data(), dbeta.data());
}
/// Eval-mode backward (frozen statistics): dx, and gamma/beta gradients accumulated.
inline void batch_norm_eval_backward(const CudaTensor& x, const CudaTensor& dy, const CudaTensor& gamma,
                                     const CudaTensor& running_mean, const CudaTensor& running_var, float eps,
                                     CudaTensor& dx, CudaTensor& dgamma, CudaTensor& dbeta) {
    cuda::launch::batch_norm_eval_backward(x.data(), dy.data(), dy.n(), dy.c(), dy.extents().plane(), gamma.data(),
                                           running_mean.data(), running_var.data(), eps, dx.data(), dgamma.data(),
                                           dbeta.data());
}

inline void max_pool_forward(const CudaTensor& x, int k, CudaTensor& y, CudaIndices& indices) {
    cuda::launch::max_pool_forward(x.data(), x.n(), x.c(), x.h(), x.w(), k, y.data(), y.h(), y.w(), indices.data());
}
inline void max_pool_backward(const CudaTensor& dy, const CudaIndices& indices, CudaTensor& dx) {
    cuda::launch::max_pool_backward(dy.data(), indices.data(), dy.n(), dy.c(), dy.h(), dy.w(), dx.data(), dx.h(), dx.w());
}
inline void max_unpool_forward(const CudaTensor& x, const CudaIndices& indices, CudaTensor& y) {
    cuda::launch::max_pool_backward(x.data(), indices.data(), x.n(), x.c(), x.h(), x.w(), y.data(), y.h(), y.w());
}
inline void max_unpool_backward(const CudaTensor& dy, const CudaIndices& indices, CudaTensor& dx) {
    cuda::launch::max_unpool_backward(dy.data(), indices.data(), dx.n(), dx.c(), dx.h(), dx.w(), dx.data(), dy.h(),
                                      dy.w());
}

inline void lrn_forward(const CudaTensor& x, int size, float alpha, float beta, float k, CudaTensor& y,
                        CudaTensor& scale) {
    cuda::launch::lrn_forward(x.data(), x.n(), x.c(), x.extents().plane(), size, alpha, beta, k, y.data(), scale.data());
}
inline void lrn_backward(const CudaTensor& x, const CudaTensor& y, const CudaTensor& scale, const CudaTensor& dy,
                         int size, float alpha, float beta, CudaTensor& dx) {
    cuda::launch::lrn_backward(x.data(), y.data(), scale.data(), dy.data(), x.n(), x.c(), x.extents().plane(), size,
                               alpha, beta, dx.data());
}

/// Copies host values into a device tensor of the same size (parameter initialisation, loading).
inline void upload(const std::vector<float>& values, CudaTensor& t) {
    if (std::int64_t(values.size()) < t.size())
        throw std::invalid_argument("segnet::backend::upload (cuda): " + std::to_string(values.size()) +
                                    " values for a tensor of " + to_string(t.extents()));
    if (t.size() > 0)
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(t.data(), values.data(), t.bytes(), cudaMemcpyHostToDevice, cuda::stream()));
}
/// Copies a device tensor's values to the host (waits for the GPU).
inline std::vector<float> download(const CudaTensor& t) {
    std::vector<float> v(std::size_t(t.size()));
    if (t.size() > 0) {
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(v.data(), t.data(), t.bytes(), cudaMemcpyDeviceToHost, cuda::stream()));
        cuda::synchronize();
    }
    return v;
}

/// Copies a device tensor's values to device memory at `dst` (gradient buckets; queued on the stream).
inline void copy_to_flat(const CudaTensor& src, float* dst) {
    if (src.size() > 0)
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(dst, src.data(), src.bytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
}
/// Copies device memory at `src` into a device tensor (its size of values; queued on the stream).
inline void copy_from_flat(const float* src, CudaTensor& dst) {
    if (dst.size() > 0)
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src, dst.bytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
}

/// Copies `src` into `dst` (resized to match) across devices; to the host waits for the GPU.
template <class T>
void copy_across(const Tensor<Cpu, T>& src, Tensor<Cuda, T>& dst) {
    cuda::copy_to_device(src, dst);
}
template <class T>
void copy_across(const Tensor<Cuda, T>& src, Tensor<Cpu, T>& dst) {
    cuda::copy_to_host(src, dst);
}
template <class T>
void copy_across(const Tensor<Cuda, T>& src, Tensor<Cuda, T>& dst) {
    dst = src;
}
/// A host copy of a device tensor (waits for the GPU).
template <class T>
Tensor<Cpu, T> to_host(const Tensor<Cuda, T>& t) {
    return cuda::to_host(t);
}

/// labels {N, 1, H, W} = the argmax over the channels of logits {N, K, H, W} (lowest class on ties).
inline void argmax_channels(const CudaTensor& logits, Tensor<Cuda, std::uint8_t>& labels) {
    const Extents e = logits.extents();
    labels.resize({e.n, 1, e.h, e.w});
    cuda::launch::argmax_channels(logits.data(), e.n, e.c, e.plane(), labels.data());
}

/// The index of the first tensor holding a NaN or Inf, or -1: one kernel per tensor into one
/// counter and one synchronisation; only when some value is not finite, a second pass finds which.
inline std::ptrdiff_t first_nonfinite(const std::vector<const CudaTensor*>& tensors) {
    cuda::DeviceBuffer count(sizeof(unsigned int));
    auto any = [&](std::size_t begin, std::size_t end) {
        SEGNET_CUDA_CHECK(cudaMemsetAsync(count.get(), 0, count.bytes(), cuda::stream()));
        for (std::size_t i = begin; i < end; ++i)
            cuda::launch::count_nonfinite(tensors[i]->data(), tensors[i]->size(), count.as<unsigned int>());
        unsigned int h = 0;
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(&h, count.get(), sizeof h, cudaMemcpyDeviceToHost, cuda::stream()));
        cuda::synchronize();
        return h > 0;
    };
    if (!any(0, tensors.size())) return -1;
    for (std::size_t i = 0; i < tensors.size(); ++i)
        if (any(i, i + 1)) return std::ptrdiff_t(i);
    return -1;
}

}  // namespace segnet::backend
