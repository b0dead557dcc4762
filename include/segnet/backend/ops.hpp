// segnet/backend/ops.hpp: the operations layers and training call, for every device that is
// available.
//
//   #include "segnet/backend/ops.hpp"
//   segnet::backend::relu_forward(x, y);                          // resolved by the tensor's device
//   segnet::backend::Staging<Device> staging;                     // a host batch on the device
//   model.forward(staging.images(batch.images), Mode::eval);
//   Tensor<Cpu, std::uint8_t> labels = segnet::backend::predict_labels(logits);   // host labels
//
// CPU operations are always present; the CUDA backend (backend/cuda/ops.cuh) adds its overloads
// for Tensor<Cuda> when the translation unit is compiled by nvcc, here, before any template
// names them (define SEGNET_NO_CUDA to keep an nvcc-compiled unit CPU-only). The templates at
// the end are written once over the device from those overloads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "segnet/backend/cpu/argmax.hpp"
#include "segnet/backend/cpu/ops.hpp"
#include "segnet/core/parameter.hpp"

namespace segnet::backend {

/// Copies host values into a tensor of the same size (parameter initialisation, loading).
inline void upload(const std::vector<float>& values, Tensor<Cpu>& t) {
    std::copy_n(values.data(), t.size(), t.data());
}
/// Copies a tensor's values to the host.
inline std::vector<float> download(const Tensor<Cpu>& t) { return {t.data(), t.data() + t.size()}; }

/// Copies a tensor's values to flat memory of the same device at `dst` (gradient buckets).
inline void copy_to_flat(const Tensor<Cpu>& src, float* dst) { std::copy_n(src.data(), src.size(), dst); }
/// Copies flat memory of the tensor's device at `src` into the tensor (its size of values).
inline void copy_from_flat(const float* src, Tensor<Cpu>& dst) { std::copy_n(src, dst.size(), dst.data()); }

/// Copies `src` into `dst` (resized to match); across devices where they differ (cuda/ops.cuh).
template <class T>
void copy_across(const Tensor<Cpu, T>& src, Tensor<Cpu, T>& dst) {
    dst = src;
}
/// A host copy of a tensor.
template <class T>
Tensor<Cpu, T> to_host(const Tensor<Cpu, T>& t) {
    return t;
}

/// labels {N, 1, H, W} = the argmax over the channels of logits {N, K, H, W} (lowest class on ties).
inline void argmax_channels(const Tensor<Cpu>& logits, Tensor<Cpu, std::uint8_t>& labels) {
    labels.resize({logits.n(), 1, logits.h(), logits.w()});
    cpu::argmax_channels(logits.view(), labels.view());
}

/// The index of the first tensor holding a NaN or Inf, or -1.
inline std::ptrdiff_t first_nonfinite(const std::vector<const Tensor<Cpu>*>& tensors) {
    for (std::size_t i = 0; i < tensors.size(); ++i)
        for (float v : tensors[i]->span())
            if (!std::isfinite(v)) return std::ptrdiff_t(i);
    return -1;
}

}  // namespace segnet::backend

#if defined(__CUDACC__) && !defined(SEGNET_NO_CUDA)
#include "segnet/backend/cuda/ops.cuh"
#endif

namespace segnet::backend {

/// A device copy of `host` (the same tensor's copy on the CPU).
template <class Device, class T>
Tensor<Device, T> to_device(const Tensor<Cpu, T>& host) {
    Tensor<Device, T> d;
    copy_across(host, d);
    return d;
}

/// Where a host batch goes before a forward pass: device tensors kept from batch to batch (the
/// caching allocator makes that free after the first); on the CPU the host tensors themselves.
template <class Device>
class Staging {
public:
    const Tensor<Device>& images(const Tensor<Cpu>& host) { return stage(host, images_); }
    const Tensor<Device, std::uint8_t>& labels(const Tensor<Cpu, std::uint8_t>& host) { return stage(host, labels_); }

private:
    static constexpr bool on_host = std::is_same_v<Device, Cpu>;
    struct Nothing {};
    /// A device copy of a host tensor; nothing at all on the CPU.
    template <class T>
    using Copy = std::conditional_t<on_host, Nothing, Tensor<Device, T>>;

    template <class T>
    static const Tensor<Device, T>& stage(const Tensor<Cpu, T>& host, Copy<T>& on_device) {
        if constexpr (on_host) {
            return host;
        } else {
            copy_across(host, on_device);
            return on_device;
        }
    }
    [[no_unique_address]] Copy<float> images_;
    [[no_unique_address]] Copy<std::uint8_t> labels_;
};

/// The predicted labels of {N, K, H, W} logits, as {N, 1, H, W} host labels (argmax_channels on
/// the logits' device, then one small copy).
template <class Device>
Tensor<Cpu, std::uint8_t> predict_labels(const Tensor<Device>& logits) {
    if constexpr (std::is_same_v<Device, Cpu>) {
        Tensor<Cpu, std::uint8_t> labels({logits.n(), 1, logits.h(), logits.w()});
        cpu::argmax_channels(logits.view(), labels.view());
        return labels;
    } else {
        Tensor<Device, std::uint8_t> labels;
        argmax_channels(logits, labels);
        return to_host(labels);
    }
}

/// The first parameter whose value holds a NaN or Inf, or nullptr (one pass, one synchronisation
/// on a GPU; the weights are checked after each update so that diverged weights are never saved).
template <class Device>
const ParamRef<Device>* first_nonfinite(const std::vector<ParamRef<Device>>& params) {
    std::vector<const Tensor<Device>*> values;
    values.reserve(params.size());
    for (const ParamRef<Device>& p : params) values.push_back(p.value);
    const std::ptrdiff_t i = first_nonfinite(values);
    return i < 0 ? nullptr : &params[std::size_t(i)];
}

}  // namespace segnet::backend
