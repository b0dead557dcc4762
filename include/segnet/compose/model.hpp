// segnet/compose/model.hpp: Model<Net, Device>, a network type instantiated on a device with its
// parameters, gradients and activation buffers; includes everything a model is made of.
//
//   Model<models::SegNetBasic<11>, Cpu> model(/*seed*/ 42);
//   const Tensor<Cpu>& logits = model.forward(x, Mode::train);   // x: {N, 3, H, W}
//   model.backward(grad_logits);   // accumulates parameter gradients; zero_grad() resets
//
// The pieces, one idea per file:
//   compose/tap.hpp          the Tap: an Encoder's map published to its SkipLink
//   compose/builder.hpp      ModelNode and the walk's visitors that build the node list
//   compose/buffer_pool.hpp  the buffers the model owns and how one is picked
//   compose/eval_plan.hpp    the eval forward and its fusions (layers/fusion.hpp)
//   compose/train_plan.hpp   the train forward and backward, planned as one pass
//   compose/any_model.hpp    AnyModel<Device>: the model with the network type erased
#pragma once

#include <cstdint>
#include <vector>

#include "segnet/compose/any_model.hpp"
#include "segnet/compose/network.hpp"

namespace segnet {

/// A network type instantiated on a device: built by the walk that checked the type.
template <NetworkType Net, class Device = Cpu>
class Model final : public AnyModel<Device> {
public:
    using network = Net;
    using device = Device;
    static constexpr std::int64_t parameter_count = parameter_count_v<Net>;

    explicit Model(std::uint64_t seed = 0) : AnyModel<Device>(Net::name, Net::input::dims, Net::analysis.output.c) {
        detail::ModelBuilder<Device> builder{this->nodes_, this->links_};
        Net::walk(Net::input::dims, builder);
        this->initialize(seed);
    }

    Analysis analyse(Dims input) const override { return Net::analyse(input); }
    std::vector<std::int64_t> node_inputs(Dims input) const override {
        std::vector<std::int64_t> elements;
        detail::NodeInputs visitor{elements};
        Net::walk(input, visitor);
        return elements;
    }
};

}  // namespace segnet
