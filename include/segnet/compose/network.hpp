// segnet/compose/network.hpp: Network<Input, Stages...>, the type that is a segmentation
// network, and the compile-time queries on it.
//
//   using Net = Network<Input<3, dyn, dyn>, Encoder<...>, ..., Decoder<...>, Classifier<11>>;
//   static_assert(parameter_count_v<Net> == 1'416'331);
//   using Out = output_shape_t<Net, Shape<3, 360, 480>>;   // Out::channels == 11
//
// Instantiating a Network runs the analysis (compose/analysis.hpp) at compile time: channel
// counts always, heights and widths when they are static. A fault is a static_assert naming
// the stage, the layer and the numbers (compose/diagnostics.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>
#include <string_view>
#include <type_traits>

#include "segnet/compose/analysis.hpp"
#include "segnet/compose/diagnostics.hpp"
#include "segnet/compose/stages.hpp"

namespace segnet {

template <class In, class... Stages>
struct Network {
    static_assert(is_input_v<In>, "Network<Input<C, H, W>, Stages...>: the first argument must be Input<C, H, W>");
    // A non-layer where a layer belongs: one error naming the stage (compose/diagnostics.hpp).
    static constexpr int malformed_stage = first_malformed_stage<Stages...>();
    static_assert(sizeof(stage_check<malformed_stage, std::tuple_element_t<malformed_stage, std::tuple<void, Stages...>>>) > 0);
    static_assert(sizeof...(Stages) <= max_stages, "Network<...>: more than 64 stages");

    using network_tag = void;
    using input = In;
    static constexpr std::string_view name = "custom";

    /// The shape walk for an input size (compile time or run time).
    static constexpr Analysis analyse(Dims input) {
        if (first_malformed_stage<Stages...>() != 0) return Analysis{};  // reported by stage_check below
        return segnet::analyse<Stages...>(input);
    }
    /// The walk for the declared Input (dyn H/W stay dyn).
    static constexpr Analysis analysis = analyse(In::dims);
    // Instantiating shape_check reports a fault; sizeof keeps this line from adding a second error.
    static_assert(sizeof(shape_check<analysis.diag.fault, analysis.diag.stage, analysis.diag.layer,
                                     analysis.diag.expected, analysis.diag.actual>) > 0);
    static_assert(sizeof(branch_check<analysis.diag.fault, analysis.diag.stage, analysis.diag.layer,
                                      analysis.diag.branch, analysis.diag.expected, analysis.diag.actual>) > 0);

    /// Walks the stages in order, calling the visitor for every layer (used to build models).
    template <class Visitor>
    static void walk(Dims input, Visitor& visitor) {
        Walker<Visitor> w;
        w.visitor = &visitor;
        w.template run<Stages...>(input);
    }
};

template <class Net>
concept NetworkType = requires {
    typename Net::network_tag;
    typename Net::input;
    { Net::analysis } -> std::convertible_to<const Analysis&>;
};

/// Learnable parameters of a network (batch-norm running statistics are buffers, not counted).
template <NetworkType Net>
inline constexpr std::int64_t parameter_count_v = Net::analysis.parameters;

namespace detail {
template <NetworkType Net, class S>
struct output_shape_impl {
    static constexpr Fault input_fault =
        S::channels != Net::input::channels ? Fault::input_channels
        : (Net::input::height != dyn && S::height != Net::input::height) ||
                  (Net::input::width != dyn && S::width != Net::input::width)
            ? Fault::input_size
            : Fault::none;
    static_assert(sizeof(shape_check<input_fault, 0, 0,
                                     input_fault == Fault::input_channels ? Net::input::channels : Net::input::height,
                                     input_fault == Fault::input_channels ? S::channels : S::height>) > 0);
    static constexpr Analysis analysis = Net::analyse(S::dims);
    // Instantiating shape_check reports a fault; sizeof keeps this line from adding a second error.
    static_assert(sizeof(shape_check<analysis.diag.fault, analysis.diag.stage, analysis.diag.layer,
                                     analysis.diag.expected, analysis.diag.actual>) > 0);
    static_assert(sizeof(branch_check<analysis.diag.fault, analysis.diag.stage, analysis.diag.layer,
                                      analysis.diag.branch, analysis.diag.expected, analysis.diag.actual>) > 0);
    static constexpr Dims out = analysis.ok() && input_fault == Fault::none ? analysis.output : Dims{1, 1, 1};
    using type = Shape<out.c, out.h, out.w>;
};
}  // namespace detail

/// The output shape of Net for an input shape S (exposes channels, height, width).
template <NetworkType Net, class S>
using output_shape_t = typename detail::output_shape_impl<Net, S>::type;

/// The full analysis of Net for a static input shape S: FLOPs, activations, every stage.
template <NetworkType Net, class S>
inline constexpr Analysis analysis_v = detail::output_shape_impl<Net, S>::analysis;

/// Forward floating-point operations of Net for one image of shape S.
template <NetworkType Net, class S>
inline constexpr std::int64_t flops_v = analysis_v<Net, S>.flops;

/// The paper's storage multiplier (SegNet, Table 1): what the encoders keep for the decoders,
/// in units of SegNet-Basic's pooling indices. Per decoder, what its paired layers read:
/// pooling indices count 1 (Unpool), a kept map counts its channels (Add, Concat: the encoder's
/// channels; AddProjected<C, F>: C, since the reduced maps are what is stored), nothing counts
/// 0; indices kept beside full maps are not counted again (the larger wins: 2 bits per window
/// against 32 per value). The network's multiplier is the largest over its decoders.
/// std::nullopt (the paper's "n/a") when no decoder reads its encoder and some decoder works in
/// fewer channels than its encoder's map (FCN-Basic-NoAddition: nothing is kept, and the unit
/// itself, a map of the decoder's width paired with an encoder map, does not exist). A
/// decoder that keeps nothing at the encoder's width is 0 (FCN-Basic-NoAddition-NoDimReduction,
/// Bilinear-Interpolation). Reproduces the paper's column 0, 1, 64, 1, 11, n/a, 64, 0.
template <NetworkType Net>
inline constexpr std::optional<int> storage_multiplier_v =
    Net::analysis.storage_multiplier < 0 ? std::nullopt : std::optional<int>(Net::analysis.storage_multiplier);

/// Receptive field of one classifier output, in input pixels per axis (the theoretical one of
/// an unbounded input: kernels, pooling windows, upsampling kernels; skips take the larger).
template <NetworkType Net>
inline constexpr int receptive_field_v = Net::analysis.receptive_field;

/// Activation memory of inference, batch 1, input shape S: the largest over layers of its
/// input + output + what encoders keep for decoders at that point (the storage above: indices
/// as int32, maps as float32), in bytes. Parameters not included.
template <NetworkType Net, class S>
inline constexpr std::int64_t inference_activation_bytes_v = analysis_v<Net, S>.inference_peak_bytes;

/// Activation memory of training with batch Batch, input shape S: the input, every layer's
/// output and every pool's int32 indices, all kept for backward, in bytes (gradient buffers,
/// parameters and optimizer state not included).
template <NetworkType Net, class S, int Batch = 1>
inline constexpr std::int64_t training_activation_bytes_v = Batch * analysis_v<Net, S>.training_bytes_per_image;

}  // namespace segnet
