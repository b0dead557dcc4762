// segnet/compose/transfer.hpp: copying a model's parameters and buffers to another model, by
// name, on the same or another device: a CPU model's weights (e.g. loaded from a checkpoint)
// run on the GPU, and a GPU model's come back to be saved.
//
//   segnet::Model<Net, segnet::Cpu> cpu(42);   load_checkpoint("best.safetensors", cpu);
//   segnet::Model<Net, segnet::Cuda> gpu(0);   segnet::copy_state(cpu, gpu);
//   ... train on gpu ...                        segnet::copy_state(gpu, cpu);  save_checkpoint(...)
//
// Every tensor of state() (weights, biases, batch-norm running statistics) must exist in both
// models with the same extents; a mismatch throws std::invalid_argument naming the tensor. The
// copies are backend::copy_across (the CUDA overloads exist in nvcc translation units).
#pragma once

#include <stdexcept>
#include <string>
#include <unordered_map>

#include "segnet/backend/ops.hpp"
#include "segnet/compose/any_model.hpp"

namespace segnet {

template <class From, class To>
void copy_state(AnyModel<From>& from, AnyModel<To>& to) {
    auto src = from.state();
    auto dst = to.state();
    if (src.size() != dst.size())
        throw std::invalid_argument("segnet::copy_state: the models hold " + std::to_string(src.size()) + " and " +
                                    std::to_string(dst.size()) + " tensors");
    std::unordered_map<std::string, ParamRef<From>*> by_name;
    for (auto& p : src) by_name[p.name] = &p;
    for (auto& d : dst) {
        const auto it = by_name.find(d.name);
        if (it == by_name.end())
            throw std::invalid_argument("segnet::copy_state: tensor '" + d.name + "' is missing in the source model");
        if (it->second->value->extents() != d.value->extents())
            throw std::invalid_argument("segnet::copy_state: tensor '" + d.name + "' is " +
                                        to_string(it->second->value->extents()) + " in the source and " +
                                        to_string(d.value->extents()) + " in the destination");
        backend::copy_across(*it->second->value, *d.value);
    }
}

}  // namespace segnet
