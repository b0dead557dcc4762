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

/// An owning, 64-byte aligned NCHW host tensor.
template <class T>
class Tensor<Cpu, T> {
public:
    static constexpr std::size_t alignment = 64;

    Tensor() = default;
    explicit Tensor(Extents e) { resize(e); }
    Tensor(std::initializer_list<int> dims) { resize(make_extents(dims)); }
    Tensor(const Tensor& o) : Tensor(o.ext_) { std::copy_n(o.data_, o.size(), data_); }
    Tensor(Tensor&& o) noexcept { swap(o); }
    Tensor& operator=(const Tensor& o) {
        if (this != &o) {
            resize(o.ext_);
            std::copy_n(o.data_, o.size(), data_);
        }
        return *this;
    }
    Tensor& operator=(Tensor&& o) noexcept {
        swap(o);
        return *this;
    }
    ~Tensor() { release(); }

    void swap(Tensor& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(ext_, o.ext_);
        std::swap(capacity_, o.capacity_);
    }

    /// Changes the extents; storage is reallocated only when it must grow. New contents are
    /// zero when storage was reallocated, unspecified otherwise (use fill()).
    void resize(Extents e) {
        if (e.n < 0 || e.c < 0 || e.h < 0 || e.w < 0)
            throw std::invalid_argument("segnet::Tensor::resize: negative extent in " + to_string(e));
        const std::int64_t need = e.size();
        if (need > capacity_) {
            release();
            const std::size_t bytes =
                (std::size_t(need) * sizeof(T) + alignment - 1) / alignment * alignment;
            data_ = static_cast<T*>(std::aligned_alloc(alignment, bytes));
            if (!data_) throw std::bad_alloc();
            std::memset(static_cast<void*>(data_), 0, bytes);
            capacity_ = need;
        }
        ext_ = e;
    }
    void resize(std::initializer_list<int> dims) { resize(make_extents(dims)); }
    void fill(T v) { std::fill_n(data_, size(), v); }
    void zero() { fill(T(0)); }

    T* data() { return data_; }
    const T* data() const { return data_; }
    const Extents& extents() const { return ext_; }
    std::int64_t size() const { return ext_.size(); }
    std::int64_t capacity() const { return capacity_; }
    int n() const { return ext_.n; }
    int c() const { return ext_.c; }
    int h() const { return ext_.h; }
    int w() const { return ext_.w; }
    bool empty() const { return size() == 0; }

    std::span<T> span() { return {data_, std::size_t(size())}; }
    std::span<const T> span() const { return {data_, std::size_t(size())}; }
    T& operator()(int n, int c, int h, int w) { return view()(n, c, h, w); }
    const T& operator()(int n, int c, int h, int w) const { return view()(n, c, h, w); }
    T& operator[](std::int64_t i) { return data_[i]; }
    const T& operator[](std::int64_t i) const { return data_[i]; }

    TensorView<Cpu, T> view() { return {data_, ext_}; }
    TensorView<Cpu, const T> view() const { return {data_, ext_}; }
    TensorView<Cpu, T> image(int i) { return view().image(i); }
    TensorView<Cpu, const T> image(int i) const { return view().image(i); }
    operator TensorView<Cpu, T>() { return view(); }
    operator TensorView<Cpu, const T>() const { return view(); }

private:
    void release() {
        std::free(data_);
        data_ = nullptr;
        capacity_ = 0;
        ext_ = {};
    }
    T* data_ = nullptr;
    Extents ext_{};
    std::int64_t capacity_ = 0;
};

}  // namespace segnet
