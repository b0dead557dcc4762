// segnet/backend/cuda/loss.cuh: the CUDA kernel of the softmax cross-entropy (rules and options
// in backend/cross_entropy.hpp): one thread per pixel, the CPU kernel's arithmetic per pixel.
//
//   double value = segnet::backend::cross_entropy(logits, labels, options, &grad);   // Tensor<Cuda>
//
// Labels are uint8 {N, 1, H, W} in device memory. A label histogram on the GPU decides the
// checks and the denominator before anything is written, as on the CPU. The value is summed in
// double per block, then across blocks; it is returned to the host, so each call synchronises.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "segnet/backend/cross_entropy.hpp"
#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/error.cuh"
#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/tensor.cuh"

namespace segnet::backend::cuda::kernels {
SEGNET_KERNEL void label_histogram(const std::uint8_t* y, std::int64_t n, unsigned long long* counts) {
    __shared__ unsigned int local[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) local[i] = 0;
    __syncthreads();
    SEGNET_GRID_STRIDE(i, n) atomicAdd(&local[y[i]], 1u);
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        if (local[i]) atomicAdd(&counts[i], (unsigned long long)local[i]);
}

/// One thread per pixel, the CPU's arithmetic per pixel; block sums of w * nll in double.
SEGNET_KERNEL void cross_entropy(const float* z, const std::uint8_t* labels, int classes, std::int64_t plane,
                                 std::int64_t pixels, const float* weights, int ignore, double inv_norm, float* grad,
                                 double* total) {
    double local = 0;
    SEGNET_GRID_STRIDE(p, pixels) {
        const std::int64_t img = p / plane, px = p % plane;
        const float* zp = z + img * classes * plane + px;
        float mx = zp[0];
        for (int c = 1; c < classes; ++c) mx = fmaxf(mx, zp[c * plane]);
        float sum = 0.f;
        for (int c = 0; c < classes; ++c) sum += expf(zp[c * plane] - mx);
        const int label = labels[p];
        float scale = 0.f;
        if (label != ignore) {
            const float w = weights ? weights[label] : 1.f;
            const double nll = double(mx) + log(double(sum)) - double(zp[label * plane]);
            local += double(w) * nll;
            scale = float(double(w) * inv_norm);
        }
        if (grad) {
            float* gp = grad + img * classes * plane + px;
            const float r = scale / sum;
            for (int c = 0; c < classes; ++c) gp[c * plane] = r * expf(zp[c * plane] - mx);
            if (label != ignore) gp[label * plane] -= scale;
        }
    }
    __shared__ double s[256];
    s[threadIdx.x] = local;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (int(threadIdx.x) < half) s[threadIdx.x] += s[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(total, s[0]);
}
}  // namespace segnet::backend::cuda::kernels

namespace segnet::backend {

/// The loss value of device logits {N, K, H, W} against device labels {N, 1, H, W}; with `grad`
/// (the logits' extents) also d loss / d logits. Validated before any output is written.
inline double cross_entropy(const Tensor<Cuda>& logits, const Tensor<Cuda, std::uint8_t>& labels,
                            const CrossEntropyOptions& o, Tensor<Cuda>* grad) {
    using namespace cuda;
    const Extents e = logits.extents();
    if (grad) loss::check_grad(e, grad->extents());
    loss::check_extents(e, labels.extents(), o);
    DeviceBuffer counts_d(256 * sizeof(unsigned long long));
    SEGNET_CUDA_CHECK(cudaMemsetAsync(counts_d.get(), 0, counts_d.bytes(), stream()));
    if (labels.size() > 0)
        SEGNET_CUDA_LAUNCH(kernels::label_histogram<<<kernels::grid_for(labels.size()), 256, 0, stream()>>>(
            labels.data(), labels.size(), counts_d.as<unsigned long long>()));
    unsigned long long counts[256];
    SEGNET_CUDA_CHECK(cudaMemcpyAsync(counts, counts_d.get(), sizeof counts, cudaMemcpyDeviceToHost, stream()));
    synchronize();
    const double inv_norm = loss::inv_norm(
        loss::weight_sum(counts, e.c, o, [&](int v) { return " (" + std::to_string(counts[v]) + " pixels)"; }), o);

    Tensor<Cuda> weights;  // a few floats, from the caching allocator
    if (!o.class_weights.empty()) {
        weights.resize({1, int(o.class_weights.size()), 1, 1});
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(weights.data(), o.class_weights.data(), weights.bytes(),
                                          cudaMemcpyHostToDevice, stream()));
    }
    const std::int64_t pixels = std::int64_t(e.n) * e.plane();
    DeviceBuffer total_d(sizeof(double));
    SEGNET_CUDA_CHECK(cudaMemsetAsync(total_d.get(), 0, sizeof(double), stream()));
    if (pixels > 0)
        SEGNET_CUDA_LAUNCH(kernels::cross_entropy<<<kernels::grid_for(pixels), 256, 0, stream()>>>(
            logits.data(), labels.data(), e.c, e.plane(), pixels, weights.empty() ? nullptr : weights.data(),
            o.ignore_label, inv_norm, grad ? grad->data() : nullptr, total_d.as<double>()));
    double total = 0;
    SEGNET_CUDA_CHECK(cudaMemcpyAsync(&total, total_d.get(), sizeof total, cudaMemcpyDeviceToHost, stream()));
    synchronize();
    return total * inv_norm;
}

}  // namespace segnet::backend
