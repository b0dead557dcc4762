// segnet/layers/layer.hpp: what every layer is: a static shape rule (the type) and a run-time
// object with forward/backward (made by the type for a device).
//
//   static_assert(segnet::Layer<segnet::Conv<64, 7>>);
//   constexpr segnet::ShapeResult r = segnet::Conv<64, 7>::infer({3, 360, 480});   // {64, 360, 480}
//   auto conv = segnet::Conv<64, 7>::make<segnet::Cpu>({3, segnet::dyn, segnet::dyn});
//
// A layer type L provides
//   L::name                             a short name for diagnostics ("Conv")
//   L::infer(Dims) -> ShapeResult       its shape rule (paired layers: infer(Dims, SkipDims))
//   L::parameter_count(Dims) -> int64   learnable scalars for an input with those channels
//   L::flops(Dims) -> int64             forward floating-point operations for a static input
//   L::make<Device>(Dims) -> unique_ptr<RuntimeLayer<Device>>
// The run-time object takes sizes at run time (one kernel instantiation serves every shape);
// only the checking lives in types. Paired layers (Unpool, Add, ...) read their Decoder's
// Encoder through a SkipLink the network connects when it is built. A run-time layer may also
// write into buffers the model hands it (forward_into, backward_into) and state what its
// backward reads (train_buffer_use()): the model's buffer pool plans from that. For eval-mode
// fusion a layer states its fusion_role(): a convolution runs a following batch norm's affine
// map (eval_affine()) and ReLU inside its own kernel (forward_fused_into), and, where the
// backend can, reads a preceding Unpool's output from the pooled values and indices without it
// being written (eval_unpooled(), forward_unpooled_fused_into), and an Encoder's MaxPool after
// it by pooling each band of output rows as it is computed, without the full-size map being
// written (eval_pooling(), forward_pooled_fused_into). A layer of your own takes part only if
// it overrides these (the defaults: FusionRole::none).
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "segnet/core/device.hpp"
#include "segnet/core/parameter.hpp"
#include "segnet/core/random.hpp"
#include "segnet/core/shape_rule.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet {

/// What an Encoder leaves for its Decoder during one forward pass, and the gradient the
/// Decoder sends back through it.
template <class Device>
struct SkipLink {
    const Tensor<Device>* feature = nullptr;               // the encoder's pre-pool feature map
    Extents feature_extents{};                              // its extents when the Tap published it
    const Tensor<Device>* feature_extents_of = nullptr;    // the map feature_extents belongs to
    const Tensor<Device, std::int32_t>* indices = nullptr;  // the pool's argmax positions
    Tensor<Device> feature_grad;                            // d loss / d feature via the skip
    bool has_feature_grad = false;
    int pool = 0;
    bool size_only = false;  // the last eval forward pooled the map as it computed it: no map, its size

    /// Whether the Encoder has run: its Tap published the map, or only its size.
    bool published() const { return feature != nullptr || size_only; }
    /// The encoder map's size, all an upsampler reads: as the Tap recorded it (in eval mode the
    /// model may have reused the map's buffer since, or never written it), or the map's own for a
    /// link set by hand.
    Extents feature_size() const {
        return size_only || feature_extents_of == feature ? feature_extents : feature->extents();
    }
};

/// How a layer's train-mode forward and backward use buffers, for the model's buffer pool
/// (AnyModel: which buffer may be reused when). The defaults describe a layer that knows nothing
/// of the pool: the model calls forward() and backward() in train mode, keeps the layer's input
/// until its backward, and never hands it an aliased buffer.
struct TrainBufferUse {
    bool pooled = false;        // forward_into / backward_into also serve Mode::train (see below)
    bool reads_input = true;    // backward reads forward's x (its values, or its size through x)
    bool reads_output = true;   // backward reads the values of forward's result
    bool reads_feature = true;  // backward reads the values of its SkipLink's feature map
    bool in_place = false;      // forward_into accepts &out == &x, backward_into &dx == &dy
};

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

/// The run-time interface of a layer on a device.
template <class Device>
class RuntimeLayer {
public:
    virtual ~RuntimeLayer() = default;
    /// Computes the output (owned by the layer, valid until the next forward). In train mode
    /// the layer keeps what backward needs, including a reference to x.
    virtual const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) = 0;
    /// Forward into a buffer the model owns (AnyModel's buffer pool): a layer that overrides it
    /// resizes `out`, writes its result there and returns `out`. In Mode::eval the model reuses
    /// x and out as soon as the next layers have read them: nothing of them may be read later.
    /// In Mode::train (only when train_buffer_use().pooled) the layer may keep references to x
    /// and out for its backward; the model keeps their values as train_buffer_use() says
    /// (reads_input, reads_output) and no longer. The default runs forward() (the result stays
    /// the layer's own, or is x itself for pass-through layers).
    virtual const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode mode, Tensor<Device>& /*out*/) {
        return forward(x, mode);
    }
    /// Given d loss / d output, accumulates parameter gradients and returns d loss / d input.
    virtual const Tensor<Device>& backward(const Tensor<Device>& dy) = 0;
    /// backward() with d loss / d input written into a buffer the model owns: a layer that
    /// overrides it resizes `dx`, writes there and returns `dx` (or returns dy itself when the
    /// gradient passes through unchanged). The default runs backward() (the layer's own buffer).
    virtual const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& /*dx*/) {
        return backward(dy);
    }
    /// What the train-mode passes read and accept (see TrainBufferUse).
    virtual TrainBufferUse train_buffer_use() const { return {}; }
    /// Eval-mode fusion (see FusionRole): none unless the layer overrides it.
    virtual FusionRole fusion_role() const { return FusionRole::none; }
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
                                                            RuntimeLayer& /*pool*/, Tensor<Device>& /*out*/) {
        return nullptr;
    }
    /// He/MSRA initialisation (or the layer's fixed initial values).
    virtual void initialize(Rng&) {}
    /// Appends the layer's tensors, named prefix + "weight" etc.
    virtual void collect(std::vector<ParamRef<Device>>&, const std::string& /*prefix*/) {}
    /// Paired layers receive their Encoder's link; others ignore it.
    virtual void connect(SkipLink<Device>*) {}
    virtual std::string_view kind() const = 0;
};

template <class L>
concept PlainLayer = requires(Dims d) {
    { L::name } -> std::convertible_to<std::string_view>;
    { L::infer(d) } -> std::same_as<ShapeResult>;
    { L::parameter_count(d) } -> std::convertible_to<std::int64_t>;
    { L::flops(d) } -> std::convertible_to<std::int64_t>;
    { L::template make<Cpu>(d) } -> std::same_as<std::unique_ptr<RuntimeLayer<Cpu>>>;
};

template <class L>
concept PairedLayer = requires(Dims d, SkipDims s) {
    { L::name } -> std::convertible_to<std::string_view>;
    { L::infer(d, s) } -> std::same_as<ShapeResult>;
    { L::parameter_count(d) } -> std::convertible_to<std::int64_t>;
    { L::flops(d, s) } -> std::convertible_to<std::int64_t>;
    { L::template make<Cpu>(d) } -> std::same_as<std::unique_ptr<RuntimeLayer<Cpu>>>;
};

/// Every layer meets one of the two forms.
template <class L>
concept Layer = PlainLayer<L> || PairedLayer<L>;

namespace detail {

/// Adds a tensor to a parameter list with its PyTorch shape.
template <class Device>
void add_param(std::vector<ParamRef<Device>>& out, const std::string& name, Tensor<Device>& value,
               Tensor<Device>* grad, std::vector<int> shape, bool decay) {
    out.push_back({name, &value, grad, std::move(shape), decay});
}

/// A tensor's storage sized to hold a parameter of `count` scalars as {1, count, 1, 1}.
inline Extents vector_extents(int count) { return {1, count, 1, 1}; }

}  // namespace detail
}  // namespace segnet
