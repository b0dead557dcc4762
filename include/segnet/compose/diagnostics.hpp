// segnet/compose/diagnostics.hpp: how a shape fault reads, at compile time and at run time.
//
//   static_assert(segnet::shape_check<a.diag.fault, a.diag.stage, a.diag.layer,
//                                     a.diag.expected, a.diag.actual>::ok);
//   throw std::invalid_argument(segnet::describe(a.diag));   // the run-time twin
//
// Each fault instantiates one small template whose name and labelled arguments the compiler
// prints:
//   In instantiation of 'struct segnet::shape_check<segnet::Fault::unpool_channels,
//       segnet::label::stage{6}, segnet::label::layer{1}, segnet::label::expected{64}, segnet::label::got{128}>'
//   static assertion failed: segnet: an Unpool receives a different channel count (got) ...
// so a wiring mistake reads in a few lines with its numbers: stage and layer (1-based, after
// Input; Blocks flattened), then what was expected and what it got.
#pragma once

#include <string>

#include "segnet/compose/analysis.hpp"

namespace segnet {

/// The numbers of a fault, labelled so that the compiler prints them with their meaning
/// (label::stage{4}); each converts from an int.
namespace label {
// Four distinct types on purpose: the compiler prints each one's name beside its number.
struct stage { int value; constexpr stage(int v) : value(v) {} };
struct layer { int value; constexpr layer(int v) : value(v) {} };
struct expected { int value; constexpr expected(int v) : value(v) {} };
struct got { int value; constexpr got(int v) : value(v) {} };
struct branch { int value; constexpr branch(int v) : value(v) {} };
}  // namespace label

/// shape_check<Fault, stage, layer, expected, got>: `ok` when Fault is none; otherwise a
/// static_assert explains the fault.
template <Fault F, label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check {
    static constexpr bool ok = true;
};

/// False for every stage: a static_assert on it fires only when its fault is instantiated, and
/// g++ prints nothing more than the message (no "comparison reduces to" note).
template <int Stage>
inline constexpr bool shape_fault_at_stage = false;

// One explicit specialisation per fault (no macro: g++ would add "in expansion of" notes).

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::too_small, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a pooling window does not fit: the map (got) is smaller than the window (expected); use a larger input or fewer encoders");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::groups_indivisible, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a grouped convolution's channels (got) are not divisible by its groups (expected)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::depthwise_channels, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a depthwise layer cannot change the channel count (expected, got)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::skip_outside_decoder, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: Unpool, Add, BilinearUpsample and TransposedConv read a paired Encoder and must be inside a Decoder<...>");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::decoder_without_encoder, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a Decoder has no Encoder to pair with: decoders pair with encoders like brackets, so each Decoder needs an unpaired Encoder before it");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::encoder_without_decoder, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: Encoders are left without a Decoder (got = how many): a network needs as many Decoders as Encoders");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::unpool_channels, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: an Unpool receives a different channel count (got) than its paired Encoder pooled (expected)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::unpool_factor, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: Unpool<K> (got) pairs with an Encoder whose pool has a different factor (expected)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::upsample_size, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a decoder upsampler's input size (got) is not its paired Encoder's pooled size (expected)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::skip_channels, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a skip join (Add or Concat, at the stage and layer given): its channels (got) differ from the ones it needs (expected: Add, the paired Encoder's feature map; Concat, its declared counts); e.g. a 1x1 Conv first");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::skip_size, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a skip join (Add or Concat, at the stage and layer given): the decoder map's size (got) differs from the paired Encoder's feature map (expected); upsample before joining them");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::decoder_size, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a Decoder ends at a size (got) other than its Encoder's input size (expected): it needs an upsampling layer (Unpool, BilinearUpsample, TransposedConv)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::input_channels, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: the input's channel count (got) differs from the network's Input<C, ...> (expected)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::input_size, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: the input's height or width (got) differs from the network's static Input<C, H, W> (expected)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::expected Expected, label::got Actual>
struct shape_check<Fault::conv_window, Stage, Layer, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: a convolution's window does not fit: the map (got) is smaller than its dilated window less the padding, dilation (K - 1) + 1 - 2 pad (expected); use a larger input, less dilation or more padding");
    static constexpr bool ok = false;
};

/// branch_check<Fault, stage, layer, branch, expected, got>: the faults of a composite's branches
/// (compose/branches.hpp), which also name the branch (1-based); shape_check lets them pass so
/// that each fault is reported once.
template <Fault F, label::stage Stage, label::layer Layer, label::branch Branch, label::expected Expected,
          label::got Actual>
struct branch_check {
    static constexpr bool ok = true;
};

template <label::stage Stage, label::layer Layer, label::branch Branch, label::expected Expected, label::got Actual>
struct branch_check<Fault::branch_channels, Stage, Layer, Branch, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: Branches<Merge::sum, ...> or Residual: this branch's channels (got) differ from the first branch's (expected); a sum needs equal channels (a projection shortcut: Block<Conv<C, 1>, BatchNorm>)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::branch Branch, label::expected Expected, label::got Actual>
struct branch_check<Fault::branch_size, Stage, Layer, Branch, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: Branches or Residual: this branch's height or width (got) differs from the first branch's (expected); every branch must end at one size (ResizedToInput<Path> brings a branch back to the input's)");
    static constexpr bool ok = false;
};

template <label::stage Stage, label::layer Layer, label::branch Branch, label::expected Expected, label::got Actual>
struct branch_check<Fault::crop_size, Stage, Layer, Branch, Expected, Actual> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: CroppedToInput<Path>: the path's height or width (got) is smaller than its input's (expected); a crop only removes rows and columns (ResizedToInput<Path> resizes)");
    static constexpr bool ok = false;
};

/// stage_check<stage, S>: reports the first stage S (at position `stage`) that holds a type that is
/// not a layer where a layer belongs (well_formed_v), once, before the shape walk.
template <label::stage Stage, class S>
struct stage_check {
    static constexpr bool ok = true;
};
template <label::stage Stage, class S>
    requires(Stage.value > 0)
struct stage_check<Stage, S> {
    static_assert(shape_fault_at_stage<Stage.value>, "segnet: this stage holds a type that is not a segnet layer where a layer belongs: a Block's or Decoder's elements and an Encoder's body are layers (Conv, BatchNorm, ReLU, ...) or Blocks; an Encoder ends with a pooling layer an Unpool pairs with (MaxPool<K>; not MaxPoolWindow, AvgPool or AdaptiveAvgPool); a Decoder is not empty; a stage is an Encoder<...>, a Decoder<...>, a layer or a Block<...>");
    static constexpr bool ok = false;
};

inline std::string_view fault_summary(Fault f) {
    switch (f) {
        case Fault::none: return "no fault";
        case Fault::too_small: return "the map is smaller than the pooling window";
        case Fault::groups_indivisible: return "channels are not divisible by the groups";
        case Fault::depthwise_channels: return "a depthwise layer cannot change the channel count";
        case Fault::skip_outside_decoder: return "this layer reads a paired Encoder and must be inside a Decoder";
        case Fault::decoder_without_encoder: return "this Decoder has no Encoder to pair with";
        case Fault::encoder_without_decoder: return "Encoders are left without a Decoder";
        case Fault::unpool_channels: return "the Unpool's input channels differ from the channels its Encoder pooled";
        case Fault::unpool_factor: return "the Unpool's factor differs from its Encoder's pool";
        case Fault::upsample_size: return "the upsampler's input is not its Encoder's pooled size";
        case Fault::skip_channels: return "a skip join (Add, Concat): channel counts differ";
        case Fault::skip_size: return "a skip join (Add, Concat): sizes differ";
        case Fault::decoder_size: return "the Decoder does not restore its Encoder's size";
        case Fault::input_channels: return "the input's channel count differs from Input<C, ...>";
        case Fault::input_size: return "the input's size differs from the static Input<C, H, W>";
        case Fault::conv_window: return "the map is smaller than the convolution's dilated window less its padding";
        case Fault::branch_channels: return "a summed branch's channels differ from the first branch's";
        case Fault::branch_size: return "a branch's size differs from the first branch's";
        case Fault::crop_size: return "CroppedToInput: the path's output is smaller than its input";
    }
    return "unknown fault";
}

/// One line: where (stage, its kind and pairing, layer) and what (expected vs actual).
inline std::string describe(const Diagnosis& d) {
    std::string s = "segnet: ";
    if (d.stage > 0) {
        s += "stage " + std::to_string(d.stage);
        if (d.kind == StageKind::encoder) s += " (Encoder)";
        if (d.kind == StageKind::decoder)
            s += d.encoder > 0 ? " (Decoder paired with the Encoder at stage " + std::to_string(d.encoder) + ")"
                               : " (Decoder)";
        if (d.layer > 0) s += ", layer " + std::to_string(d.layer) + " (" + std::string(d.layer_name) + ")";
        if (d.branch > 0) s += ", branch " + std::to_string(d.branch);
        s += ": ";
    }
    s += std::string(fault_summary(d.fault));
    switch (d.fault) {
        case Fault::none:
        case Fault::skip_outside_decoder:
        case Fault::decoder_without_encoder: break;
        case Fault::encoder_without_decoder: s += " (" + std::to_string(d.actual) + " unpaired)"; break;
        default: s += " (expected " + std::to_string(d.expected) + ", got " + std::to_string(d.actual) + ")";
    }
    return s;
}

}  // namespace segnet
