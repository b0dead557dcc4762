// segnet/core/parameter.hpp: named references to a model's parameters and buffers.
//
//   for (segnet::ParamRef<segnet::Cpu>& p : model.parameters())
//       std::cout << p.name << " " << segnet::to_string(p.value->extents()) << "\n";
//   // "encoder0.0.weight 64x3x7x7", "encoder0.1.running_mean 1x64x1x1", ...
//
// Names and layouts follow PyTorch (conv weight OIHW; batch norm weight, bias, running_mean,
// running_var), so optimizers and checkpoints address tensors the way PyTorch users expect.
// Extents are stored NCHW-padded: a conv weight [O, I, kh, kw] is {O, I, kh, kw}; a vector of
// length L is {1, L, 1, 1}; `shape` holds the PyTorch shape ([L] for a vector).
#pragma once

#include <string>
#include <vector>

#include "segnet/core/tensor.hpp"

namespace segnet {

template <class Device>
struct ParamRef {
    std::string name;
    Tensor<Device>* value = nullptr;
    /// nullptr for buffers that are not trained (batch norm running statistics).
    Tensor<Device>* grad = nullptr;
    /// The PyTorch shape of the tensor (e.g. {64, 3, 7, 7} or {64}).
    std::vector<int> shape;
    /// Weight decay applies (conv/transposed-conv weights); false for biases and BN affine.
    bool decay = true;
    bool trainable() const { return grad != nullptr; }
};

}  // namespace segnet
