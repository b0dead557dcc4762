// segnet/core/device.hpp: device tags that choose where a model's work runs.
//
//   segnet::Model<segnet::models::SegNetBasic<11>, segnet::Cpu> m(42);   // CPU kernels
//   segnet::Model<segnet::models::SegNetBasic<11>, segnet::Cuda> g(42);  // cuDNN (own issue)
//
// A network type names no device: the device is chosen where the model is instantiated, as
// Eigen chooses it at the assignment (`dst.device(d) = expr`). Depends on nothing.
#pragma once

namespace segnet {

struct Cpu {
    static constexpr const char* name = "cpu";
};
struct Cuda {
    static constexpr const char* name = "cuda";
};

/// Train mode uses batch statistics and keeps what backward needs; eval uses running statistics.
enum class Mode { train, eval };

}  // namespace segnet
