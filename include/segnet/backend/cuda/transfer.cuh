// segnet/backend/cuda/transfer.cuh: copying a model's parameters and buffers between devices,
// by name, so a CPU model's weights (e.g. loaded from a checkpoint) run on the GPU and back.
//
//   segnet::Model<Net, segnet::Cpu> cpu(42);   load_checkpoint("best.safetensors", cpu);
//   segnet::Model<Net, segnet::Cuda> gpu(0);   segnet::cuda::copy_state(cpu, gpu);
//   ... train on gpu ...                        segnet::cuda::copy_state(gpu, cpu);  save_checkpoint(...)
//
// Every tensor of state() (weights, biases, batch-norm running statistics) must exist in both
// models with the same extents; a mismatch throws std::invalid_argument naming the tensor.
#pragma once

#include <stdexcept>
#include <string>
#include <unordered_map>

#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/compose/model.hpp"

namespace segnet::cuda {

namespace detail {
template <class From, class To, class Copy>
void copy_state_impl(AnyModel<From>& from, AnyModel<To>& to, Copy copy) {
    auto src = from.state();
    auto dst = to.state();
    if (src.size() != dst.size())
        throw std::invalid_argument("segnet::cuda::copy_state: the models hold " + std::to_string(src.size()) + " and " +
                                    std::to_string(dst.size()) + " tensors");
    std::unordered_map<std::string, ParamRef<From>*> by_name;
    for (auto& p : src) by_name[p.name] = &p;
    for (auto& d : dst) {
        const auto it = by_name.find(d.name);
        if (it == by_name.end())
            throw std::invalid_argument("segnet::cuda::copy_state: tensor '" + d.name + "' is missing in the source model");
        if (it->second->value->extents() != d.value->extents())
            throw std::invalid_argument("segnet::cuda::copy_state: tensor '" + d.name + "' is " +
                                        to_string(it->second->value->extents()) + " in the source and " +
                                        to_string(d.value->extents()) + " in the destination");
        copy(*it->second->value, *d.value);
    }
}
}  // namespace detail

inline void copy_state(AnyModel<Cpu>& from, AnyModel<Cuda>& to) {
    detail::copy_state_impl(from, to, [](const Tensor<Cpu>& s, Tensor<Cuda>& d) { copy_to_device(s, d); });
}
inline void copy_state(AnyModel<Cuda>& from, AnyModel<Cpu>& to) {
    detail::copy_state_impl(from, to, [](const Tensor<Cuda>& s, Tensor<Cpu>& d) { copy_to_host(s, d); });
}

}  // namespace segnet::cuda
