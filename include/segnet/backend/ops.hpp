// segnet/backend/ops.hpp: the operations layers call, for every device that is available.
//
//   #include "segnet/backend/ops.hpp"
//   segnet::backend::relu_forward(x, y);   // resolved by the tensor's device
//
// CPU operations are always present; the CUDA backend adds its overloads when compiled by nvcc
// (its own issue).
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
