// segnet/layers/fusion.hpp: eval-mode fusion, a capability some run-time layers add to the
// RuntimeLayer contract: a convolution that runs the batch norm and ReLU after it in its own
// kernel, reads a preceding Unpool without it being written, or max-pools its own output.
//
//   class MyConvLayer final : public RuntimeLayer<Cpu>, public EvalFusion<Cpu> { ... };
//   if (EvalFusion<Cpu>* f = eval_fusion_of(*layer)) role = f->fusion_role();   // one dynamic_cast
//   // the planner that uses it: compose/eval_plan.hpp
//
// A layer that does not derive from EvalFusion simply runs on its own in eval mode. The roles:
// a convolution runs a following batch norm's affine map (eval_affine()) and ReLU inside its
// own kernel (forward_fused_into), and, where the backend can, reads a preceding Unpool's
// output from the pooled values and indices (eval_unpooled(), forward_unpooled_fused_into),
// and pools an Encoder's MaxPool after it band by band as it computes (eval_pooling(),
// forward_pooled_fused_into). Depends on core/ and layers/layer.hpp only.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "segnet/core/tensor.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

/// What a layer can be in an eval-mode fusion (AnyModel::set_eval_fusion): a convolution that runs
/// the layers after it in its own kernel, a per-channel affine map (an eval-mode batch norm), a
/// ReLU, a max-unpooling the convolution after it can read without it being written, a max
/// pooling the convolution before it can apply to its output as it stores it. The model fuses
/// "convolution, then affine, then ReLU" (or a prefix with at least two), preceded by an
/// unpooling where the convolution takes one (fuses_unpooled_input()), or followed by an
/// Encoder's pool where the convolution can pool (fuses_pooled_output()) and no skip layer reads
/// the Encoder's full-size map.
enum class FusionRole { none, convolution, channel_affine, relu, unpool, max_pool };

/// A max-unpooling not materialised: the map of `extents` that is values[i] at the flat
/// position indices[i] of its plane and zero elsewhere (values and indices: the pooled size).
template <class Device>
struct UnpooledInput {
    const Tensor<Device>* values = nullptr;
    const Tensor<Device, std::int32_t>* indices = nullptr;
    int k = 0;           // the pooling window and stride
    Extents extents{};   // the unpooled map's
};

/// A max pooling a convolution applies to its own output (window = stride = k, ceil rounding):
/// the values go to the step's output buffer, the argmax positions to `indices` (the pool layer's
/// own tensor, which its Decoder reads).
template <class Device>
struct PoolingOutput {
    Tensor<Device, std::int32_t>* indices = nullptr;
    int k = 0;
};

/// A per-channel affine map y = x * scale[c] + shift[c] ({1, C, 1, 1} tensors; null scale:
/// identity), what a convolution folds into its weights and bias.
template <class Device>
struct ChannelAffine {
    const Tensor<Device>* scale = nullptr;
    const Tensor<Device>* shift = nullptr;
};

/// The eval-fusion interface a run-time layer may implement beside RuntimeLayer<Device>. Each
/// member serves one role (fusion_role()); the others keep their defaults.
template <class Device>
class EvalFusion {
public:
    virtual ~EvalFusion() = default;
    virtual FusionRole fusion_role() const = 0;
    /// channel_affine: the layer's Mode::eval map from its current parameters, computed now (the
    /// tensors are the layer's own, valid until the next call or parameter change).
    virtual ChannelAffine<Device> eval_affine() {
        throw std::logic_error("segnet: eval_affine() on a layer whose fusion_role() is not channel_affine");
    }
    /// convolution: forward(x, Mode::eval) followed by `affine` (when its scale is set) and ReLU
    /// (when relu), written into `out` as forward_into does, in one pass over the output.
    virtual const Tensor<Device>& forward_fused_into(const Tensor<Device>& /*x*/, const ChannelAffine<Device>& /*affine*/,
                                                     bool /*relu*/, Tensor<Device>& /*out*/) {
        throw std::logic_error("segnet: forward_fused_into() on a layer whose fusion_role() is not convolution");
    }
    /// unpool: what forward(x, Mode::eval) would produce, as a description (checked as forward
    /// checks x), for a convolution's forward_unpooled_fused_into.
    virtual UnpooledInput<Device> eval_unpooled(const Tensor<Device>& /*x*/) {
        throw std::logic_error("segnet: eval_unpooled() on a layer whose fusion_role() is not unpool");
    }
    /// convolution: whether forward_unpooled_fused_into can run on this device at all.
    virtual bool fuses_unpooled_input() const { return false; }
    /// convolution: forward_fused_into on the unpooling `in` describes, without the unpooled map
    /// being written; nullptr (nothing written) where the backend declines the geometry.
    virtual const Tensor<Device>* forward_unpooled_fused_into(const UnpooledInput<Device>& /*in*/,
                                                              const ChannelAffine<Device>& /*affine*/, bool /*relu*/,
                                                              Tensor<Device>& /*out*/) {
        return nullptr;
    }
    /// max_pool: forward_into(x, Mode::eval, ...) for an x of extents `in` that a convolution will
    /// pool itself: records what forward records (the input size, the link's indices) and says
    /// where the indices go.
    virtual PoolingOutput<Device> eval_pooling(const Extents& /*in*/) {
        throw std::logic_error("segnet: eval_pooling() on a layer whose fusion_role() is not max_pool");
    }
    /// convolution: whether forward_pooled_fused_into can run on this device for this layer.
    virtual bool fuses_pooled_output() const { return false; }
    /// convolution: forward_fused_into followed by `pool` (a max_pool layer; the convolution
    /// calls its eval_pooling with the full-size map's extents), the pooled values written into
    /// `out` and the indices where eval_pooling says, without the full-size map being written;
    /// nullptr (nothing written to out) where the backend declines the geometry.
    virtual const Tensor<Device>* forward_pooled_fused_into(const Tensor<Device>& /*x*/,
                                                            const ChannelAffine<Device>& /*affine*/, bool /*relu*/,
                                                            EvalFusion& /*pool*/, Tensor<Device>& /*out*/) {
        return nullptr;
    }
};

/// The layer's eval-fusion capability, or nullptr: the one place it is discovered.
template <class Device>
EvalFusion<Device>* eval_fusion_of(RuntimeLayer<Device>& layer) {
    return dynamic_cast<EvalFusion<Device>*>(&layer);
}

/// Its role in a fusion (none for a layer without the capability).
template <class Device>
FusionRole fusion_role_of(RuntimeLayer<Device>& layer) {
    const EvalFusion<Device>* f = eval_fusion_of(layer);
    return f ? f->fusion_role() : FusionRole::none;
}

}  // namespace segnet
