// segnet/core/shape_rule.hpp: the result type of every layer's compile-time shape rule.
//
//   static constexpr ShapeResult infer(Dims in) {             // a layer's rule
//       if (in.h != dyn && in.h < 2) return ShapeResult::fail(Fault::too_small, 2, in.h);
//       return ShapeResult::ok({64, in.h, in.w}); }
//
// A rule returns a value, not a type, so one constexpr function serves the compile-time check
// (static H/W) and the run-time check (dyn H/W, run once when the model meets an input size).
#pragma once

#include <string_view>

#include "segnet/core/shape.hpp"

namespace segnet {

/// Why a network's shapes do not fit together. Each fault has one compile-time message
/// (compose/diagnostics.hpp) and one run-time message (describe()).
enum class Fault : int {
    none = 0,
    too_small,                 // a pooling window does not fit (expected: min size, actual: size)
    groups_indivisible,        // channels not divisible by groups (expected: groups, actual: channels)
    depthwise_channels,        // depthwise conv/upsample changes channels (expected, actual)
    skip_outside_decoder,      // Unpool/Add/... used outside a Decoder
    decoder_without_encoder,   // more decoders than encoders
    encoder_without_decoder,   // encoders left unpaired at the end (actual: how many)
    unpool_channels,           // unpool input channels differ from the paired pool's channels
    unpool_factor,             // Unpool<K> pairs with MaxPool<P>, K != P
    upsample_size,             // the decoder input is not the paired pool's output size
    skip_channels,             // a skip join (Add, Concat): channel counts differ
    skip_size,                 // a skip join (Add, Concat): spatial sizes differ
    decoder_size,              // a decoder does not restore its encoder's size (no upsampling)
    input_channels,            // the input tensor's channels differ from Input<C, ...>
    input_size,                // the input tensor's H/W differ from a static Input<C, H, W>
    conv_window,               // a convolution's dilated window does not fit in the padded map
                               // (expected: the least input size, actual: size)
    branch_channels,           // Branches<Merge::sum, ...>: a branch's channels differ from branch 1's
    branch_size,               // Branches: a branch's height or width differs from branch 1's
    crop_size,                 // CroppedToInput: the path's output is smaller than its input
                               // (expected: the input's extent, actual: the path's)
};

struct ShapeResult {
    Dims out{};
    Fault fault = Fault::none;
    int expected = 0;
    int actual = 0;
    int branch = 0;  // a composite (compose/branches.hpp): the 1-based branch the fault is in; 0: none
    static constexpr ShapeResult ok(Dims d) { return {d, Fault::none, 0, 0, 0}; }
    static constexpr ShapeResult fail(Fault f, int expected, int actual, int branch = 0) {
        return {{}, f, expected, actual, branch};
    }
};

/// What a Decoder's paired layers know about their Encoder: the feature map the encoder pooled
/// (its pre-pool shape, the size unpooling restores) and the pooling factor.
struct SkipDims {
    Dims feature{};
    int pool = 0;
};

/// Equal, or not yet known.
constexpr bool extents_may_match(int a, int b) { return a == dyn || b == dyn || a == b; }

}  // namespace segnet
