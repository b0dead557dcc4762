// segnet/compose/diagnostics.hpp: how a shape fault reads, at compile time and at run time.
//
//   static_assert(segnet::shape_check<a.diag.fault, a.diag.stage, a.diag.layer,
//                                     a.diag.expected, a.diag.actual>::ok);
//   throw std::invalid_argument(segnet::describe(a.diag));   // the run-time twin
//
// Each fault instantiates one small template whose name and arguments the compiler prints:
//   In instantiation of 'struct segnet::shape_check<segnet::Fault::unpool_channels, 6, 1, 64, 128>'
//   static assertion failed: segnet: an Unpool receives a different channel count (Actual) ...
// so a wiring mistake reads in a few lines with its numbers: stage and layer (1-based, after
// Input; Blocks flattened), then Expected and Actual.
#pragma once

#include <string>

#include "segnet/compose/analysis.hpp"

namespace segnet {

/// shape_check<Fault, Stage, Layer, Expected, Actual>: `ok` when Fault is none; otherwise a
/// static_assert explains the fault.
template <Fault F, int Stage, int Layer, int Expected, int Actual>
struct shape_check {
    static constexpr bool ok = true;
};

#define SEGNET_SHAPE_CHECK(FAULT, MESSAGE)                                    \
    template <int Stage, int Layer, int Expected, int Actual>                 \
    struct shape_check<Fault::FAULT, Stage, Layer, Expected, Actual> {        \
        static_assert(Stage < 0, "segnet: " MESSAGE                           \
                      " [shape_check<fault, stage, layer, expected, actual>]"); \
        static constexpr bool ok = false;                                     \
    }

SEGNET_SHAPE_CHECK(too_small, "a pooling window does not fit: the map (actual) is smaller than the window (expected); use a larger input or fewer encoders");
SEGNET_SHAPE_CHECK(groups_indivisible, "a grouped convolution's channels (actual) are not divisible by its groups (expected)");
SEGNET_SHAPE_CHECK(depthwise_channels, "a depthwise layer cannot change the channel count (expected, actual)");
SEGNET_SHAPE_CHECK(skip_outside_decoder, "Unpool, Add, BilinearUpsample and TransposedConv read a paired Encoder and must be inside a Decoder<...>");
SEGNET_SHAPE_CHECK(decoder_without_encoder, "a Decoder has no Encoder to pair with: decoders pair with encoders like brackets, so each Decoder needs an unpaired Encoder before it");
SEGNET_SHAPE_CHECK(encoder_without_decoder, "Encoders are left without a Decoder (actual = how many): a network needs as many Decoders as Encoders");
SEGNET_SHAPE_CHECK(unpool_channels, "an Unpool receives a different channel count (actual) than its paired Encoder pooled (expected)");
SEGNET_SHAPE_CHECK(unpool_factor, "Unpool<K> (actual) pairs with an Encoder whose pool has a different factor (expected)");
SEGNET_SHAPE_CHECK(upsample_size, "a decoder upsampler's input size (actual) is not its paired Encoder's pooled size (expected)");
SEGNET_SHAPE_CHECK(skip_channels, "Add: the decoder map's channels (actual) differ from the paired Encoder's feature map (expected); reduce them first (e.g. a 1x1 Conv)");
SEGNET_SHAPE_CHECK(skip_size, "Add: the decoder map's size (actual) differs from the paired Encoder's feature map (expected); upsample before adding");
SEGNET_SHAPE_CHECK(decoder_size, "a Decoder ends at a size (actual) other than its Encoder's input size (expected): it needs an upsampling layer (Unpool, BilinearUpsample, TransposedConv)");
SEGNET_SHAPE_CHECK(input_channels, "the input's channel count (actual) differs from the network's Input<C, ...> (expected)");
SEGNET_SHAPE_CHECK(input_size, "the input's height or width (actual) differs from the network's static Input<C, H, W> (expected)");
#undef SEGNET_SHAPE_CHECK

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
        case Fault::skip_channels: return "Add: channel counts differ";
        case Fault::skip_size: return "Add: sizes differ";
        case Fault::decoder_size: return "the Decoder does not restore its Encoder's size";
        case Fault::input_channels: return "the input's channel count differs from Input<C, ...>";
        case Fault::input_size: return "the input's size differs from the static Input<C, H, W>";
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
