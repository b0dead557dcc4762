// segnet/backend/cuda/device.cuh: the CUDA context (device, one stream) and the caching
// allocator every Tensor<Cuda> draws from.
//
//   if (segnet::backend::cuda::device_count() == 0) return;            // no GPU: nothing to do
//   void* p = segnet::backend::cuda::allocator().allocate(1 << 20);     // cudaMalloc only on a cache miss
//   segnet::backend::cuda::allocator().deallocate(p);                   // back to its size bucket
//
// All work runs in order on one non-blocking stream (segnet::backend::cuda::stream()), so a block freed
// by one tensor and handed to the next is safe to reuse without synchronising: every later use
// is queued after every earlier one. Sizes are rounded to buckets (powers of two up to 1 MiB,
// then quarter-octave steps, so at most 25% waste) and freed blocks wait in per-bucket free
// lists: after the first training step, a step of the same shapes makes no cudaMalloc
// (stats().mallocs stays constant). release_cached() hands the free blocks back to the driver.
// On an allocation failure the cache is released and the allocation retried once.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "segnet/backend/cuda/error.cuh"

namespace segnet::backend::cuda {

/// Number of visible CUDA devices; 0 when there is none or the driver cannot be reached (never
/// throws: the GPU tests use it to decide to skip).
inline int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

/// The stream and device every segnet CUDA operation uses. Created on first use and never
/// destroyed (tensors with static storage may be freed after main returns).
class Context {
public:
    static Context& get() {
        static Context* c = new Context();
        return *c;
    }
    cudaStream_t stream() const { return stream_; }
    int device() const { return device_; }

private:
    Context() {
        if (device_count() == 0)
            throw CudaError("cudaGetDeviceCount(&n)", "no CUDA device is visible to this process", __FILE__, __LINE__);
        SEGNET_CUDA_CHECK(cudaGetDevice(&device_));
        SEGNET_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }
    cudaStream_t stream_ = nullptr;
    int device_ = 0;
};

inline cudaStream_t stream() { return Context::get().stream(); }
/// Waits for all queued segnet work (timing, reading results on the host).
inline void synchronize() { SEGNET_CUDA_CHECK(cudaStreamSynchronize(stream())); }

struct AllocatorStats {
    std::int64_t mallocs = 0;         // cudaMalloc calls so far
    std::int64_t bytes_reserved = 0;  // held from the driver (in use + cached)
    std::int64_t bytes_in_use = 0;    // handed out to tensors
};

class CachingAllocator {
public:
    /// The bucket a request of `bytes` is served from.
    static std::size_t bucket(std::size_t bytes) {
        constexpr std::size_t min_block = 256, small_limit = std::size_t(1) << 20;
        if (bytes <= min_block) return min_block;
        std::size_t p = min_block;
        while (p < bytes) p <<= 1;  // the power of two at or above
        if (p <= small_limit) return p;
        const std::size_t step = p / 8;  // quarter octave of the lower power of two (p/2 / 4)
        return (bytes + step - 1) / step * step;
    }

    void* allocate(std::size_t bytes) {
        if (bytes == 0) return nullptr;
        const std::size_t size = bucket(bytes);
        std::lock_guard<std::mutex> lock(mutex_);
        auto& list = free_[size];
        void* p = nullptr;
        if (!list.empty()) {
            p = list.back();
            list.pop_back();
        } else {
            if (cudaMalloc(&p, size) != cudaSuccess) {
                (void)cudaGetLastError();
                release_cached_locked();
                SEGNET_CUDA_CHECK(cudaMalloc(&p, size));
            }
            ++stats_.mallocs;
            stats_.bytes_reserved += std::int64_t(size);
        }
        live_[p] = size;
        stats_.bytes_in_use += std::int64_t(size);
        return p;
    }

    /// Returns a block to its bucket; never throws (called from destructors).
    void deallocate(void* p) noexcept {
        if (!p) return;
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = live_.find(p);
        if (it == live_.end()) return;
        stats_.bytes_in_use -= std::int64_t(it->second);
        free_[it->second].push_back(p);
        live_.erase(it);
    }

    /// Frees every cached (unused) block back to the driver.
    void release_cached() {
        std::lock_guard<std::mutex> lock(mutex_);
        release_cached_locked();
    }

    AllocatorStats stats() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return stats_;
    }

private:
    void release_cached_locked() {
        (void)cudaStreamSynchronize(Context::get().stream());
        for (auto& [size, list] : free_) {
            for (void* p : list) {
                (void)cudaFree(p);
                stats_.bytes_reserved -= std::int64_t(size);
            }
            list.clear();
        }
    }
    mutable std::mutex mutex_;
    std::unordered_map<std::size_t, std::vector<void*>> free_;
    std::unordered_map<void*, std::size_t> live_;
    AllocatorStats stats_;
};

/// The process-wide allocator (never destroyed, like the context).
inline CachingAllocator& allocator() {
    static CachingAllocator* a = new CachingAllocator();
    return *a;
}

/// Scratch device memory that returns to the allocator at scope exit (cuDNN workspaces, padded
/// copies, reduction buffers).
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t bytes) : p_(allocator().allocate(bytes)), bytes_(bytes) {}
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(bytes_, o.bytes_);
        return *this;
    }
    ~DeviceBuffer() { allocator().deallocate(p_); }
    void* get() const { return p_; }
    template <class T>
    T* as() const { return static_cast<T*>(p_); }
    std::size_t bytes() const { return bytes_; }

private:
    void* p_ = nullptr;
    std::size_t bytes_ = 0;
};

}  // namespace segnet::backend::cuda
