// segnet/core/tensor.hpp: NCHW tensors on a device; on the CPU, 64-byte aligned float32.
//
//   segnet::Tensor<segnet::Cpu> x({2, 3, 360, 480});      // owning, zero-filled
//   x(1, 0, 10, 20) = 0.5f;                               // element access (n, c, h, w)
//   segnet::TensorView<segnet::Cpu> img = x.image(1);     // non-owning view of image 1
//
// A Tensor owns its storage (deep copies on copy, cheap moves) and keeps its capacity when
// resized to something no larger, so buffers planned once are reused across calls. A
// TensorView is a pointer plus extents; kernels take views. Depends only on core/.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "segnet/core/device.hpp"
#include "segnet/core/shape.hpp"

namespace segnet {

inline std::string to_string(const Extents& e) {
    return std::to_string(e.n) + "x" + std::to_string(e.c) + "x" + std::to_string(e.h) + "x" +
           std::to_string(e.w);
}

inline Extents make_extents(std::initializer_list<int> dims) {
    if (dims.size() != 4)
        throw std::invalid_argument("segnet::Tensor: extents must be {N, C, H, W} (4 values), got " +
                                    std::to_string(dims.size()));
    auto it = dims.begin();
    Extents e{it[0], it[1], it[2], it[3]};
    if (e.n < 0 || e.c < 0 || e.h < 0 || e.w < 0)
        throw std::invalid_argument("segnet::Tensor: negative extent in " + to_string(e));
    return e;
}

/// Primary template: each backend specialises it (backend/cuda provides Tensor<Cuda, T>).
template <class Device, class T = float>
class Tensor;
template <class Device, class T = float>
class TensorView;

/// A non-owning NCHW view of host memory.
template <class T>
class TensorView<Cpu, T> {
public:
    TensorView() = default;
    TensorView(T* data, Extents e) : data_(data), ext_(e) {}

    T* data() const { return data_; }
    const Extents& extents() const { return ext_; }
    std::int64_t size() const { return ext_.size(); }
    int n() const { return ext_.n; }
    int c() const { return ext_.c; }
    int h() const { return ext_.h; }
    int w() const { return ext_.w; }
    std::span<T> span() const { return {data_, std::size_t(size())}; }
    T& operator()(int n, int c, int h, int w) const {
        return data_[((std::int64_t(n) * ext_.c + c) * ext_.h + h) * ext_.w + w];
    }
    /// Image i of the batch as a batch of one.
    TensorView image(int i) const {
        return {data_ + std::int64_t(i) * ext_.c * ext_.plane(), {1, ext_.c, ext_.h, ext_.w}};
    }
    operator TensorView<Cpu, const T>() const { return {data_, ext_}; }

private:
    T* data_ = nullptr;
    Extents ext_{};
};

namespace detail {

/// What every device's owning tensor is, written once: NCHW extents over storage that only grows
/// (new storage zero-filled), deep copies, cheap moves. `Memory` is the device's storage:
///   static constexpr const char* name                 "segnet::Tensor", for errors
///   static T* allocate_zeroed(std::int64_t count)      zero-filled storage for count values
///   static void deallocate(T* p)                       p may be null
///   static void copy(T* dst, const T* src, std::int64_t count)
/// Tensor<Cpu, T> (below) and Tensor<Cuda, T> (backend/cuda/tensor.cuh) add their access.
template <class Memory, class T>
class OwnedTensor {
public:
    OwnedTensor() = default;
    explicit OwnedTensor(Extents e) { resize(e); }
    OwnedTensor(std::initializer_list<int> dims) { resize(make_extents(dims)); }
    OwnedTensor(const OwnedTensor& o) : OwnedTensor(o.ext_) { Memory::copy(data_, o.data_, o.size()); }
    OwnedTensor(OwnedTensor&& o) noexcept { swap(o); }
    OwnedTensor& operator=(const OwnedTensor& o) {
        if (this != &o) {
            resize(o.ext_);
            Memory::copy(data_, o.data_, o.size());
        }
        return *this;
    }
    OwnedTensor& operator=(OwnedTensor&& o) noexcept {
        swap(o);
        return *this;
    }
    ~OwnedTensor() { Memory::deallocate(data_); }

    void swap(OwnedTensor& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(ext_, o.ext_);
        std::swap(capacity_, o.capacity_);
    }

    /// Changes the extents; storage is reallocated only when it must grow. New contents are
    /// zero when storage was reallocated, unspecified otherwise (use fill()).
    void resize(Extents e) {
        if (e.n < 0 || e.c < 0 || e.h < 0 || e.w < 0)
            throw std::invalid_argument(std::string(Memory::name) + "::resize: negative extent in " + to_string(e));
        const std::int64_t need = e.size();
        if (need > capacity_) {
            Memory::deallocate(data_);
            data_ = nullptr;
            capacity_ = 0;
            ext_ = {};
            data_ = Memory::allocate_zeroed(need);
            capacity_ = need;
        }
        ext_ = e;
    }
    void resize(std::initializer_list<int> dims) { resize(make_extents(dims)); }

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
    T* data_ = nullptr;
    Extents ext_{};
    std::int64_t capacity_ = 0;
};

/// Host storage: 64-byte aligned (whole cache lines, aligned vector loads), zero-filled.
template <class T>
struct HostMemory {
    static constexpr const char* name = "segnet::Tensor";
    static constexpr std::size_t alignment = 64;
    static T* allocate_zeroed(std::int64_t count) {
        const std::size_t bytes = (std::size_t(count) * sizeof(T) + alignment - 1) / alignment * alignment;
        void* p = std::aligned_alloc(alignment, bytes);
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
        return static_cast<T*>(p);
    }
    static void deallocate(T* p) { std::free(p); }
    static void copy(T* dst, const T* src, std::int64_t count) { std::copy_n(src, count, dst); }
};

}  // namespace detail

/// An owning, 64-byte aligned NCHW host tensor.
template <class T>
class Tensor<Cpu, T> : public detail::OwnedTensor<detail::HostMemory<T>, T> {
    using Base = detail::OwnedTensor<detail::HostMemory<T>, T>;

public:
    static constexpr std::size_t alignment = detail::HostMemory<T>::alignment;
    using Base::Base;
    using Base::data;
    using Base::extents;
    using Base::size;

    void fill(T v) { std::fill_n(data(), size(), v); }
    void zero() { fill(T(0)); }

    std::span<T> span() { return {data(), std::size_t(size())}; }
    std::span<const T> span() const { return {data(), std::size_t(size())}; }
    T& operator()(int n, int c, int h, int w) { return view()(n, c, h, w); }
    const T& operator()(int n, int c, int h, int w) const { return view()(n, c, h, w); }
    T& operator[](std::int64_t i) { return data()[i]; }
    const T& operator[](std::int64_t i) const { return data()[i]; }

    TensorView<Cpu, T> view() { return {data(), extents()}; }
    TensorView<Cpu, const T> view() const { return {data(), extents()}; }
    TensorView<Cpu, T> image(int i) { return view().image(i); }
    TensorView<Cpu, const T> image(int i) const { return view().image(i); }
    operator TensorView<Cpu, T>() { return view(); }
    operator TensorView<Cpu, const T>() const { return view(); }
};

}  // namespace segnet
