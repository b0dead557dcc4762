// segnet/backend/cuda/metrics.cuh: confusion-matrix accumulation on the GPU (argmax over the
// class channels and K x K counts by atomics), then one small copy into a ConfusionMatrix.
//
//   segnet::ConfusionMatrix cm(11);
//   segnet::cuda::add_logits(cm, logits, labels, /*ignore_label=*/11);   // Tensor<Cuda> inputs
//   double miou = cm.mean_iou();
//
// The rule is ConfusionMatrix::add_logits's: ties go to the lowest class, truth == ignore_label
// is skipped, a truth value that is neither a class nor the ignore label throws (before counting).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/metrics/confusion.hpp"

namespace segnet::cuda {

namespace kernels {
/// counts[K*K] += (truth, argmax); counts[K*K] (one past the matrix) counts bad truth values.
SEGNET_KERNEL void confusion(const float* z, const std::uint8_t* truth, int classes, std::int64_t plane,
                             std::int64_t pixels, int ignore, unsigned long long* counts) {
    SEGNET_GRID_STRIDE(p, pixels) {
        const int t = truth[p];
        if (t == ignore) continue;
        if (t >= classes) {
            atomicAdd(counts + std::int64_t(classes) * classes, 1ull);
            continue;
        }
        const float* zp = z + (p / plane) * classes * plane + p % plane;
        int best = 0;
        float bv = zp[0];
        for (int c = 1; c < classes; ++c)
            if (zp[c * plane] > bv) bv = zp[c * plane], best = c;
        atomicAdd(counts + std::int64_t(t) * classes + best, 1ull);
    }
}
}  // namespace kernels

/// Adds counts (row = truth, column = prediction) to a ConfusionMatrix through its public add().
/// ConfusionMatrix has no way to add counts directly yet; this feeds label pairs in chunks.
inline void add_counts(ConfusionMatrix& cm, const std::vector<std::int64_t>& counts) {
    const int k = cm.num_classes();
    constexpr std::int64_t chunk = 1 << 20;
    Tensor<Cpu, std::uint8_t> pred, truth;
    for (int t = 0; t < k; ++t)
        for (int p = 0; p < k; ++p)
            for (std::int64_t left = counts[std::size_t(t) * k + p]; left > 0; left -= chunk) {
                const int n = int(left < chunk ? left : chunk);
                pred.resize({1, 1, 1, n});
                truth.resize({1, 1, 1, n});
                pred.fill(std::uint8_t(p));
                truth.fill(std::uint8_t(t));
                cm.add(pred.view(), truth.view());
            }
}

inline void add_logits(ConfusionMatrix& cm, const Tensor<Cuda>& logits, const Tensor<Cuda, std::uint8_t>& truth,
                       int ignore_label = -1) {
    const Extents e = logits.extents();
    const int k = cm.num_classes();
    if (e.c != k || truth.extents() != Extents{e.n, 1, e.h, e.w})
        throw std::invalid_argument("segnet::cuda::add_logits: logits must be {N, " + std::to_string(k) +
                                    ", H, W} and truth {N, 1, H, W}; logits are " + to_string(e) + ", truth is " +
                                    to_string(truth.extents()));
    const std::size_t cells = std::size_t(k) * k + 1;
    DeviceBuffer d(cells * sizeof(unsigned long long));
    SEGNET_CUDA_CHECK(cudaMemsetAsync(d.get(), 0, d.bytes(), stream()));
    const std::int64_t pixels = std::int64_t(e.n) * e.plane();
    if (pixels > 0)
        SEGNET_CUDA_LAUNCH(kernels::confusion<<<kernels::grid_for(pixels), 256, 0, stream()>>>(
            logits.data(), truth.data(), k, e.plane(), pixels, ignore_label, d.as<unsigned long long>()));
    std::vector<unsigned long long> h(cells);
    SEGNET_CUDA_CHECK(cudaMemcpyAsync(h.data(), d.get(), d.bytes(), cudaMemcpyDeviceToHost, stream()));
    synchronize();
    if (h.back() > 0)
        throw std::invalid_argument("segnet::cuda::add_logits: " + std::to_string(h.back()) +
                                    " truth values are neither a class (0.." + std::to_string(k - 1) +
                                    ") nor the ignore label (" + std::to_string(ignore_label) + ")");
    add_counts(cm, std::vector<std::int64_t>(h.begin(), h.end() - 1));
}

}  // namespace segnet::cuda
