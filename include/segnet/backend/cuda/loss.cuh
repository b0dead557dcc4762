// segnet/backend/cuda/loss.cuh: the weighted per-pixel softmax cross-entropy with ignore label
// on the GPU, the twin of segnet::CrossEntropyLoss (train/loss.hpp): same options, same
// normalisation (weighted_mean or sum), same fused gradient w_y * (softmax - onehot(y)) / D.
//
//   segnet::cuda::CrossEntropyLoss loss({.class_weights = weights, .ignore_label = 11});
//   double value = loss.forward_backward(logits, labels, grad_logits);   // all Tensor<Cuda>
//
// Labels are uint8 {N, 1, H, W} in device memory. Bad labels throw std::invalid_argument before
// anything is written, as on the CPU (one histogram pass decides). The value is summed in
// double per block, then across blocks; it is returned to the host, so each call synchronises.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/error.cuh"
#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/train/loss.hpp"

namespace segnet::cuda {

namespace kernels {
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
}  // namespace kernels

class CrossEntropyLoss {
public:
    CrossEntropyLoss() = default;
    /// Validates the options exactly as segnet::CrossEntropyLoss does.
    explicit CrossEntropyLoss(CrossEntropyOptions options) : options_(segnet::CrossEntropyLoss(options).options()) {
        if (!options_.class_weights.empty()) {
            weights_.resize({1, int(options_.class_weights.size()), 1, 1});
            SEGNET_CUDA_CHECK(cudaMemcpyAsync(weights_.data(), options_.class_weights.data(), weights_.bytes(),
                                              cudaMemcpyHostToDevice, stream()));
        }
    }
    const CrossEntropyOptions& options() const { return options_; }

    double forward(const Tensor<Cuda>& logits, const Tensor<Cuda, std::uint8_t>& labels) const {
        return run(logits, labels, nullptr);
    }
    double forward_backward(const Tensor<Cuda>& logits, const Tensor<Cuda, std::uint8_t>& labels,
                            Tensor<Cuda>& grad_logits) const {
        if (grad_logits.extents() != logits.extents())
            throw std::invalid_argument("segnet::cuda::CrossEntropyLoss: gradient extents " +
                                        to_string(grad_logits.extents()) + " differ from logits extents " +
                                        to_string(logits.extents()) +
                                        "; resize the gradient tensor to the logits' extents");
        return run(logits, labels, &grad_logits);
    }

private:
    double weight_sum(const Tensor<Cuda>& logits, const Tensor<Cuda, std::uint8_t>& labels) const {
        const Extents& le = logits.extents();
        const Extents& ye = labels.extents();
        if (ye.c != 1 || ye.n != le.n || ye.h != le.h || ye.w != le.w)
            throw std::invalid_argument(
                "segnet::cuda::CrossEntropyLoss: labels must be {N, 1, H, W} matching logits {N, K, H, W}; "
                "logits are " + to_string(le) + ", labels are " + to_string(ye));
        if (le.c <= 0)
            throw std::invalid_argument("segnet::cuda::CrossEntropyLoss: logits have no class channel (" +
                                        to_string(le) + ")");
        const auto& weights = options_.class_weights;
        if (!weights.empty() && int(weights.size()) != le.c)
            throw std::invalid_argument("segnet::cuda::CrossEntropyLoss: " + std::to_string(weights.size()) +
                                        " class weights given but the logits have " + std::to_string(le.c) +
                                        " classes (channels)");
        DeviceBuffer counts_d(256 * sizeof(unsigned long long));
        SEGNET_CUDA_CHECK(cudaMemsetAsync(counts_d.get(), 0, counts_d.bytes(), stream()));
        if (labels.size() > 0)
            SEGNET_CUDA_LAUNCH(kernels::label_histogram<<<kernels::grid_for(labels.size()), 256, 0, stream()>>>(
                labels.data(), labels.size(), counts_d.as<unsigned long long>()));
        unsigned long long counts[256];
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(counts, counts_d.get(), sizeof counts, cudaMemcpyDeviceToHost, stream()));
        synchronize();
        double sum = 0.0;
        for (int v = 0; v < 256; ++v) {
            if (counts[v] == 0 || v == options_.ignore_label) continue;
            if (v >= le.c)
                throw std::invalid_argument("segnet::cuda::CrossEntropyLoss: label value " + std::to_string(v) +
                                            " (" + std::to_string(counts[v]) + " pixels) is not a class (the logits have " +
                                            std::to_string(le.c) + " channels) and is not the ignore label (" +
                                            std::to_string(options_.ignore_label) + ")");
            sum += double(counts[v]) * (weights.empty() ? 1.0 : double(weights[v]));
        }
        return sum;
    }

    double run(const Tensor<Cuda>& logits, const Tensor<Cuda, std::uint8_t>& labels, Tensor<Cuda>* grad) const {
        const double wsum = weight_sum(logits, labels);
        const bool mean = options_.normalization == LossNormalization::weighted_mean;
        const double inv_norm = mean ? (wsum > 0.0 ? 1.0 / wsum : 0.0) : 1.0;
        const Extents e = logits.extents();
        const std::int64_t pixels = std::int64_t(e.n) * e.plane();
        DeviceBuffer total_d(sizeof(double));
        SEGNET_CUDA_CHECK(cudaMemsetAsync(total_d.get(), 0, sizeof(double), stream()));
        if (pixels > 0)
            SEGNET_CUDA_LAUNCH(kernels::cross_entropy<<<kernels::grid_for(pixels), 256, 0, stream()>>>(
                logits.data(), labels.data(), e.c, e.plane(), pixels, weights_.empty() ? nullptr : weights_.data(),
                options_.ignore_label, inv_norm, grad ? grad->data() : nullptr, total_d.as<double>()));
        double total = 0;
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(&total, total_d.get(), sizeof total, cudaMemcpyDeviceToHost, stream()));
        synchronize();
        return total * inv_norm;
    }

    CrossEntropyOptions options_{};
    Tensor<Cuda> weights_;
};

}  // namespace segnet::cuda
