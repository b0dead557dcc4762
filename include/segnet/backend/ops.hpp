// segnet/backend/ops.hpp: the operations layers call, for every device that is available.
//
//   #include "segnet/backend/ops.hpp"
//   segnet::backend::relu_forward(x, y);   // resolved by the tensor's device
//
// CPU operations are always present; the CUDA backend (backend/cuda/ops.cuh) adds its overloads
// for Tensor<Cuda> when the translation unit is compiled by nvcc, here, before any layer template
// names them (define SEGNET_NO_CUDA to keep an nvcc-compiled unit CPU-only).
#pragma once

#include <vector>

#include "segnet/backend/cpu/ops.hpp"

namespace segnet::backend {

/// Copies host values into a tensor of the same size (parameter initialisation, loading).
inline void upload(const std::vector<float>& values, Tensor<Cpu>& t) {
    std::copy_n(values.data(), t.size(), t.data());
}
/// Copies a tensor's values to the host.
inline std::vector<float> download(const Tensor<Cpu>& t) { return {t.data(), t.data() + t.size()}; }

}  // namespace segnet::backend

#if defined(__CUDACC__) && !defined(SEGNET_NO_CUDA)
#include "segnet/backend/cuda/ops.cuh"
#endif
