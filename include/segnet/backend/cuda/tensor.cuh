// segnet/backend/cuda/tensor.cuh: Tensor<Cuda, T>, an NCHW tensor in device memory, and the
// copies between host and device.
//
//   segnet::Tensor<segnet::Cuda> x = segnet::backend::cuda::to_device(host_batch);   // Tensor<Cpu> -> GPU
//   const segnet::Tensor<segnet::Cuda>& logits = model.forward(x, segnet::Mode::eval);
//   segnet::Tensor<segnet::Cpu> out = segnet::backend::cuda::to_host(logits);        // waits for the GPU
//
// The same interface as Tensor<Cpu> minus element access: extents, resize (storage grows only,
// new storage zero-filled), fill/zero, deep copy, cheap move. Storage comes from the caching
// allocator (device.cuh); all work is queued on segnet::backend::cuda::stream().
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <utility>

#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/error.cuh"
#include "segnet/core/tensor.hpp"

namespace segnet {

namespace backend::cuda::kernels {
template <class T>
__global__ void fill(T* p, std::int64_t n, T v) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
         i += std::int64_t(blockDim.x) * gridDim.x)
        p[i] = v;
}
/// Blocks for a grid-stride loop over n elements (256 threads each, capped).
inline unsigned grid_for(std::int64_t n, int threads = 256) {
    const std::int64_t b = (n + threads - 1) / threads;
    return unsigned(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}
}  // namespace backend::cuda::kernels

namespace backend::cuda::detail {
/// Device storage for Tensor<Cuda, T> (core/tensor.hpp's OwnedTensor): from the caching
/// allocator, zero-filled, copied on segnet::backend::cuda::stream().
template <class T>
struct DeviceMemory {
    static constexpr const char* name = "segnet::Tensor<Cuda>";
    static T* allocate_zeroed(std::int64_t count) {
        T* p = static_cast<T*>(allocator().allocate(std::size_t(count) * sizeof(T)));
        SEGNET_CUDA_CHECK(cudaMemsetAsync(p, 0, std::size_t(count) * sizeof(T), stream()));
        return p;
    }
    static void deallocate(T* p) { allocator().deallocate(p); }
    static void copy(T* dst, const T* src, std::int64_t count) {
        if (count > 0)
            SEGNET_CUDA_CHECK(cudaMemcpyAsync(dst, src, std::size_t(count) * sizeof(T), cudaMemcpyDeviceToDevice, stream()));
    }
};
}  // namespace backend::cuda::detail

template <class T>
class Tensor<Cuda, T> : public detail::OwnedTensor<backend::cuda::detail::DeviceMemory<T>, T> {
public:
    using detail::OwnedTensor<backend::cuda::detail::DeviceMemory<T>, T>::OwnedTensor;
    void fill(T v) {
        if (this->size() == 0) return;
        SEGNET_CUDA_LAUNCH(backend::cuda::kernels::fill<T><<<backend::cuda::kernels::grid_for(this->size()), 256, 0, backend::cuda::stream()>>>(
            this->data(), this->size(), v));
    }
    void zero() {
        if (this->size() > 0) SEGNET_CUDA_CHECK(cudaMemsetAsync(this->data(), 0, this->bytes(), backend::cuda::stream()));
    }
};

namespace backend::cuda {

/// Copies a host tensor into `dst` (resized to match); returns when the host buffer may change.
template <class T>
void copy_to_device(const Tensor<Cpu, T>& src, Tensor<Cuda, T>& dst) {
    dst.resize(src.extents());
    if (src.size() > 0)
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), dst.bytes(), cudaMemcpyHostToDevice, stream()));
}
/// Copies a device tensor into `dst` (resized to match), waiting for the GPU.
template <class T>
void copy_to_host(const Tensor<Cuda, T>& src, Tensor<Cpu, T>& dst) {
    dst.resize(src.extents());
    if (src.size() > 0)
        SEGNET_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToHost, stream()));
    synchronize();
}
template <class T>
Tensor<Cuda, T> to_device(const Tensor<Cpu, T>& src) {
    Tensor<Cuda, T> d;
    copy_to_device(src, d);
    return d;
}
template <class T>
Tensor<Cpu, T> to_host(const Tensor<Cuda, T>& src) {
    Tensor<Cpu, T> h;
    copy_to_host(src, h);
    return h;
}

}  // namespace backend::cuda
}  // namespace segnet
