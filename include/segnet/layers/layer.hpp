// segnet/layers/layer.hpp: the layer contract, written once: what a layer type declares (its
// static shape rule and optional capabilities) and the run-time object it makes for a device.
//
//   static_assert(segnet::Layer<segnet::Conv<64, 7>>);
//   constexpr segnet::ShapeResult r = segnet::Conv<64, 7>::infer({3, 360, 480});   // {64, 360, 480}
//   auto conv = segnet::Conv<64, 7>::make<segnet::Cpu>({3, segnet::dyn, segnet::dyn});
//
// A layer type L (concept Layer) declares, as static members:
//   required
//     name                                 a short name for diagnostics and kind() ("Conv")
//     infer(Dims) -> ShapeResult           its shape rule; a *paired* layer, one that reads its
//                                          Decoder's Encoder (Unpool, Add, ...): infer(Dims, SkipDims)
//     parameter_count(Dims) -> int64       learnable scalars for an input with those channels
//     flops(Dims) -> int64                 forward operations per image, 0 for dyn sizes
//                                          (paired: flops(Dims, SkipDims))
//     make<Device>(Dims) -> unique_ptr<RuntimeLayer<Device>>   its run-time object
//   optional (read only through layer_traits<L>; a wrong type is a Layer concept failure)
//     geometry : LayerGeometry             its receptive-field effect (default: pointwise);
//                                          a pool declares window = down = its factor
//     skip_storage(Dims, SkipDims) -> SkipStorage   paired layers: what the Encoder must keep
//                                          for it (default: nothing)
//     parameter_prefix : string_view       its parameters' prefix when it is a stage of its own
//                                          (default "stage<N>"; Classifier: "classifier")
//     passes_input_through : bool          forward returns its input: no new map (default false)
//     encoder_pool : bool                  false: never an Encoder's pool, even with a pooling
//                                          geometry (it keeps no indices for Unpool; default true)
//     export_as : ExportSpec               what it computes at inference, for exporters
//                                          (export/onnx.hpp); none: the layer cannot be exported
//     inner_activation_elements(Dims) -> int64   maps per image it keeps for backward besides its
//                                          output (composites: their children's; default 0)
// Nothing else is looked up by name. The run-time object (RuntimeLayer below) takes sizes at
// run time (one kernel instantiation serves every shape); only the checking lives in types.
// Optional run-time capabilities are separate interfaces its class may also derive from, each
// found by one dynamic_cast: EvalFusion<Device> (layers/fusion.hpp), RandomLayer and
// CompositeRuntime<Device> (below).
// A layer written outside the library meets the same contract and composes like the built-in
// ones (docs/architecture.md, "Adding a layer"; tests/test_user_layer.cpp).
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
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
    /// A skip layer's backward sends d loss / d feature: write(feature_grad, add) writes it into
    /// feature_grad (sized `size` when it is the first), adding to it when `add` (another skip
    /// layer of the same Encoder sent one already).
    template <class Write>
    void send_feature_grad(const Extents& size, Write write) {
        if (!has_feature_grad) feature_grad.resize(size);
        write(feature_grad, has_feature_grad);
        has_feature_grad = true;
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

    /// A pooled layer whose backward reads no values of the forward pass, only sizes it recorded
    /// (pooling and unpooling, which read their indices; Add and Concat, which pass dy on).
    static constexpr TrainBufferUse sizes_only() {
        return {.pooled = true, .reads_input = false, .reads_output = false, .reads_feature = false};
    }
};

/// The run-time interface of a layer on a device: what every layer implements (forward,
/// backward, the buffers it uses, initialisation, parameters, its Encoder's link). Eval-mode
/// fusion is a separate capability some layers add (EvalFusion, layers/fusion.hpp).
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
    /// He/MSRA initialisation (or the layer's fixed initial values).
    virtual void initialize(Rng&) {}
    /// Appends the layer's tensors, named prefix + "weight" etc.
    virtual void collect(std::vector<ParamRef<Device>>&, const std::string& /*prefix*/) {}
    /// Paired layers receive their Encoder's link; others ignore it.
    virtual void connect(SkipLink<Device>*) {}
    virtual std::string_view kind() const = 0;
};

/// The part the layers paired through a SkipLink share (MaxPool and its Unpool, the upsamplers,
/// the skip policies): the link connect() sets, and forward() and backward() into the layer's own
/// buffers through its forward_into() and backward_into() (Add and AddProjected pass dy on as
/// d loss / d input: they override backward()).
template <class Device>
class LinkedLayer : public RuntimeLayer<Device> {
public:
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override {
        return this->forward_into(x, mode, y_);
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return this->backward_into(dy, dx_); }
    void connect(SkipLink<Device>* link) override { link_ = link; }

protected:
    Tensor<Device> y_, dx_;
    SkipLink<Device>* link_ = nullptr;
};

/// A run-time capability of layers that draw random numbers as they run (Dropout). Their draws
/// depend only on a seed they take from the model's Rng in initialize() and on a step counter:
/// each train forward draws for the current step, then counts one on. The model sets both
/// switches on every such layer (AnyModel::set_random_step, AnyModel::set_sampling).
class RandomLayer {
public:
    virtual ~RandomLayer() = default;
    /// The step the next train forward draws for (a resumed run sets the step it resumes at).
    virtual void set_random_step(std::uint64_t step) = 0;
    /// Monte-Carlo sampling: draw in Mode::eval too (off: eval is deterministic).
    virtual void set_sampling(bool on) = 0;
};

/// A run-time capability of composite layers (compose/branches.hpp: Branches, Residual, ResizedToInput), which
/// own other run-time layers: each_child(f) calls f on each of them, so that what the model does
/// to every layer (RandomLayer's switches) reaches the layers inside (for_each_layer_in below).
template <class Device>
class CompositeRuntime {
public:
    virtual ~CompositeRuntime() = default;
    virtual void each_child(const std::function<void(RuntimeLayer<Device>&)>& f) = 0;
};

/// Calls f on `layer` and, through composites (CompositeRuntime), on every layer inside it.
template <class Device>
void for_each_layer_in(RuntimeLayer<Device>& layer, const std::function<void(RuntimeLayer<Device>&)>& f) {
    f(layer);
    if (auto* composite = dynamic_cast<CompositeRuntime<Device>*>(&layer))
        composite->each_child([&](RuntimeLayer<Device>& child) { for_each_layer_in(child, f); });
}

// --- the static contract -------------------------------------------------------------------

/// What a paired layer reads from its Encoder, i.e. what the encoder must keep until the
/// decoder runs (declared by the layer: `static constexpr SkipStorage skip_storage(Dims, SkipDims)`).
struct SkipStorage {
    bool indices = false;        // the pooling indices (SegNet's unpooling)
    int channels = 0;            // float maps per pre-pool pixel kept for the decoder (a feature
                                 // map: its channels; FCN's reduced map: the reduced channels)
    bool reads_feature = false;  // the decoder's output depends on the encoder's values (skip)
};

/// How a layer maps its input grid to its output grid, for the receptive field (declared by the
/// layer: `static constexpr LayerGeometry geometry`): an output value reads `window` consecutive
/// input values per axis; `down` is the stride (pooling), `up` the upsampling factor.
struct LayerGeometry {
    int window = 1;
    int down = 1;
    int up = 1;
};

/// What a layer computes at inference, in the terms of standard operator sets, for exporters
/// (export/onnx.hpp writes ONNX from it): declared as `static constexpr ExportSpec export_as`.
/// The exporter reads the layer's tensors from the model by their names (prefix + "weight",
/// "bias", "running_mean", ...) and its paired Encoder's map, indices and size from the walk.
enum class ExportOp {
    identity,            // y = x (Dropout at inference, NoSkip)
    conv,                // K x K convolution, stride, pad on each side, dilation; "weight" (+ "bias")
    batch_norm,          // inference batch norm from "weight", "bias", "running_mean", "running_var"
    relu,
    max_pool,            // K x K window, stride, pad, ceil_mode; an Encoder's pool's indices go to its Unpool
    average_pool,        // K x K window, stride, pad, ceil_mode; padding counts in the divisor
    adaptive_average_pool,  // to a K x K grid (PyTorch's bins); K = 1: global average
    unpool,              // max unpooling with the paired pool's indices to the encoder's map size
    add_skip,            // y = x + the encoder's map
    add_projected_skip,  // y = x + (1 x 1 convolution "weight", no bias) of the encoder's map
    concat_skip,         // y = [x, the encoder's map] along channels
    transposed_conv,     // K x K, stride S, pad ceil((K - S) / 2), cropped to the encoder's map size
    conv_transpose,      // K x K, stride S, pad on each side, no crop (an unpaired ConvTranspose2d); "weight"
    lrn,                 // cross-channel local response normalisation
    // Composites (compose/branches.hpp): the exporter writes each path (its path_list) from the
    // composite's input, then the merge.
    merge_sum,           // the paths' results added (Branches<Merge::sum>)
    merge_concat,        // the paths' results concatenated along channels (Branches<Merge::concat>)
    residual,            // ReLU(body + shortcut) (Residual)
    resize_to_input,     // the path's result resized bilinearly (align_corners=False) to the input's size
    crop_to_input,       // the top-left input-sized window of the path's result
};
struct ExportSpec {
    ExportOp op = ExportOp::identity;
    int kernel = 1;
    int stride = 1;               // convolution, pooling, unpooling, transposed convolution
    int pad = 0;                  // convolution, pooling: zero rows and columns on each side
    int dilation = 1;             // convolution: pixels between its taps
    int groups = 1;               // 0: one group per input channel (depthwise)
    bool bias = false;            // the layer has a "bias" tensor
    bool fixed_bilinear = false;  // transposed convolution: FCN's fixed bilinear kernel, no "weight"
    float epsilon = 0.f;          // batch norm
    float alpha = 0.f, beta = 0.f, k = 0.f;  // LRN: y = x / (k + alpha / kernel * sum x^2)^beta
    bool ceil_mode = false;       // pooling: ceil rounding of the output size
};

/// The required members, a layer that reads only its input.
template <class L>
concept PlainLayer = requires(Dims d) {
    { L::name } -> std::convertible_to<std::string_view>;
    { L::infer(d) } -> std::same_as<ShapeResult>;
    { L::parameter_count(d) } -> std::convertible_to<std::int64_t>;
    { L::flops(d) } -> std::convertible_to<std::int64_t>;
    { L::template make<Cpu>(d) } -> std::same_as<std::unique_ptr<RuntimeLayer<Cpu>>>;
};

/// The required members, a layer that also reads its Decoder's Encoder (SkipDims).
template <class L>
concept PairedLayer = requires(Dims d, SkipDims s) {
    { L::name } -> std::convertible_to<std::string_view>;
    { L::infer(d, s) } -> std::same_as<ShapeResult>;
    { L::parameter_count(d) } -> std::convertible_to<std::int64_t>;
    { L::flops(d, s) } -> std::convertible_to<std::int64_t>;
    { L::template make<Cpu>(d) } -> std::same_as<std::unique_ptr<RuntimeLayer<Cpu>>>;
};

namespace detail {
template <class L>
concept optional_members_well_typed =
    (!requires { L::geometry; } || requires { { L::geometry } -> std::convertible_to<LayerGeometry>; }) &&
    (!requires { L::parameter_prefix; } ||
     requires { { L::parameter_prefix } -> std::convertible_to<std::string_view>; }) &&
    (!requires { L::passes_input_through; } ||
     requires { { L::passes_input_through } -> std::convertible_to<bool>; }) &&
    (!requires { L::export_as; } || requires { { L::export_as } -> std::convertible_to<ExportSpec>; }) &&
    (!requires { L::encoder_pool; } || requires { { L::encoder_pool } -> std::convertible_to<bool>; }) &&
    (!requires { &L::inner_activation_elements; } ||
     requires(Dims d) { { L::inner_activation_elements(d) } -> std::convertible_to<std::int64_t>; }) &&
    (!requires { &L::skip_storage; } ||
     requires(Dims d, SkipDims s) { { L::skip_storage(d, s) } -> std::same_as<SkipStorage>; });
}  // namespace detail

/// Every layer: one of the two forms, and its optional members (if any) of the contract's types.
template <class L>
concept Layer = (PlainLayer<L> || PairedLayer<L>) && detail::optional_members_well_typed<L>;

/// A layer an Encoder can end with: plain, declaring a pooling geometry (window = down > 1), and
/// not opting out with `encoder_pool = false` (a pool that records no indices for an Unpool).
template <class L>
concept PoolingLayer = PlainLayer<L> && requires {
    requires L::geometry.down > 1 && L::geometry.window == L::geometry.down && L::geometry.up == 1;
} && (!requires { L::encoder_pool; } || bool(L::encoder_pool));

/// The optional members of a layer, with their defaults: the only place they are read.
template <Layer L>
struct layer_traits {
    static constexpr LayerGeometry geometry = [] {
        if constexpr (requires { L::geometry; }) return LayerGeometry(L::geometry);
        else return LayerGeometry{};
    }();
    static constexpr std::string_view parameter_prefix = [] {
        if constexpr (requires { L::parameter_prefix; }) return std::string_view(L::parameter_prefix);
        else return std::string_view{};
    }();
    static constexpr bool passes_input_through = [] {
        if constexpr (requires { L::passes_input_through; }) return bool(L::passes_input_through);
        else return false;
    }();
    static constexpr bool exportable = requires { L::export_as; };
    static constexpr ExportSpec export_as = [] {
        if constexpr (exportable) return ExportSpec(L::export_as);
        else return ExportSpec{};
    }();
    static constexpr SkipStorage skip_storage(Dims in, SkipDims skip) {
        if constexpr (requires { &L::skip_storage; }) return L::skip_storage(in, skip);
        else return {};
    }
    static constexpr std::int64_t inner_activation_elements(Dims in) {
        if constexpr (requires { &L::inner_activation_elements; }) return L::inner_activation_elements(in);
        else return 0;
    }
};

/// What the paired layer L needs its Encoder to keep (nothing for plain layers).
template <class L>
constexpr SkipStorage skip_storage_of(Dims in, SkipDims skip) {
    return layer_traits<L>::skip_storage(in, skip);
}

/// L's effect on the receptive field.
template <class L>
inline constexpr LayerGeometry geometry_of = layer_traits<L>::geometry;

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
