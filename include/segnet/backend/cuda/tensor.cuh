// segnet/backend/cuda/tensor.cuh: Tensor<Cuda, T>, an NCHW tensor in device memory, and the
// copies between host and device.
//
//   segnet::Tensor<segnet::Cuda> x = segnet::cuda::to_device(host_batch);   // Tensor<Cpu> -> GPU
//   const segnet::Tensor<segnet::Cuda>& logits = model.forward(x, segnet::Mode::eval);
//   segnet::Tensor<segnet::Cpu> out = segnet::cuda::to_host(logits);        // waits for the GPU
//
// The same interface as Tensor<Cpu> minus element access: extents, resize (storage grows only,
// new storage zero-filled), fill/zero, deep copy, cheap move. Storage comes from the caching
// allocator (device.cuh); all work is queued on segnet::cuda::stream().
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

namespace cuda::kernels {
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
}  // namespace cuda::kernels

template <class T>
class Tensor<Cuda, T> {
public:
    Tensor() = default;
    explicit Tensor(Extents e) { resize(e); }
    Tensor(std::initializer_list<int> dims) { resize(make_extents(dims)); }
    Tensor(const Tensor& o) : Tensor(o.ext_) { copy_from(o); }
    Tensor(Tensor&& o) noexcept { swap(o); }
    Tensor& operator=(const Tensor& o) {
        if (this != &o) {
            resize(o.ext_);
            copy_from(o);
        }
        return *this;
    }
    Tensor& operator=(Tensor&& o) noexcept {
        swap(o);
        return *this;
    }
    ~Tensor() { cuda::allocator().deallocate(data_); }

    void swap(Tensor& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(ext_, o.ext_);
        std::swap(capacity_, o.capacity_);
    }

    /// Changes the extents; storage is reallocated only when it must grow. New contents are
    /// zero when storage was reallocated, unspecified otherwise (use fill()).
    void resize(Extents e) {
        if (e.n < 0 || e.c < 0 || e.h < 0 || e.w < 0)
            throw std::invalid_argument("segnet::Tensor<Cuda>::resize: negative extent in " + to_string(e));
        const std::int64_t need = e.size();
        if (need > capacity_) {
            cuda::allocator().deallocate(data_);
            data_ = nullptr;
            capacity_ = 0;
            data_ = static_cast<T*>(cuda::allocator().allocate(std::size_t(need) * sizeof(T)));
            capacity_ = need;
            SEGNET_CUDA_CHECK(cudaMemsetAsync(data_, 0, std::size_t(need) * sizeof(T), cuda::stream()));
        }
        ext_ = e;
    }
    void resize(std::initializer_list<int> dims) { resize(make_extents(dims)); }
    void fill(T v) {
        if (size() == 0) return;
        SEGNET_CUDA_LAUNCH(cuda::kernels::fill<T><<<cuda::kernels::grid_for(size()), 256, 0, cuda::stream()>>>(data_, size(), v));
    }
    void zero() {
        if (size() > 0) SEGNET_CUDA_CHECK(cudaMemsetAsync(data_, 0, std::size_t(size()) * sizeof(T), cuda::stream()));
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    const Extents& extents() const { return ext_; }
    std::int64_t size() const { return ext_.size(); }
    std::int64_t capacity() const { return capacity_; }
    std::size_t bytes() const { return std::size_t(size()) * sizeof(T); }
    int n() const { return ext_.n; }
    int c() const { return ext_.c; }
    int h() const { return ext_.h; }
    int w() const { return ext_.w; }
    bool empty() const { return size() == 0; }

private:
    void copy_from(const Tensor& o) {
        if (o.size() > 0)
            SEGNET_CUDA_CHECK(cudaMemcpyAsync(data_, o.data_, o.bytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
    }
    T* data_ = nullptr;
    Extents ext_{};
    std::int64_t capacity_ = 0;
};

namespace cuda {

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

}  // namespace cuda
}  // namespace segnet
