// segnet/compose/analysis.hpp: the one walk over a network's type list that computes every
// shape, counts parameters and FLOPs, pairs decoders with encoders and finds the first fault.
//
//   constexpr segnet::Analysis a = segnet::analyse<Stages...>({3, 360, 480});
//   static_assert(a.ok() && a.output == segnet::Dims{11, 360, 480});
//   segnet::Analysis r = segnet::analyse<Stages...>({3, h, w});   // the same walk, at run time
//
// It is a constexpr function over Dims values, so the same code gives the compile-time check
// (static H/W: a fault becomes a static_assert, see diagnostics.hpp) and the run-time check
// (dyn H/W: run once when the model meets an input size). A Walker takes a Visitor so that
// building the run-time model (compose/builder.hpp) follows exactly the same order.
#pragma once

#include <cstdint>
#include <string_view>

#include "segnet/compose/stages.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

inline constexpr int max_stages = 64;
inline constexpr int max_encoders = 32;
/// Layers whose live memory is tracked for the inference-memory query (more are analysed, but
/// the inference peak then only covers the first max_tracked_layers).
inline constexpr int max_tracked_layers = 512;

struct Diagnosis {
    Fault fault = Fault::none;
    int stage = 0;    // 1-based position after Input
    int layer = 0;    // 1-based position of the layer within the stage (Blocks flattened)
    int expected = 0;
    int actual = 0;
    int encoder = 0;  // for decoders: the stage number of the paired Encoder
    StageKind kind = StageKind::other;
    std::string_view layer_name{};
    int branch = 0;   // the fault is in this branch (1-based) of the layer, a composite; 0: none
};

struct StageInfo {
    StageKind kind = StageKind::other;
    Dims in{}, out{};
    int pair = 0;  // decoders: stage number of the paired encoder; encoders: of the decoder
    int layers = 0;
};

struct Analysis {
    Dims input{}, output{};
    Diagnosis diag{};
    int stage_count = 0, encoder_count = 0, decoder_count = 0, layer_count = 0;
    std::int64_t parameters = 0;
    std::int64_t flops = 0;               // forward, per image; 0 contributions from dyn sizes
    std::int64_t activation_elements = 0; // sum of every layer's output, per image
    std::int64_t peak_live_elements = 0;  // inference: largest (layer input + output + kept skips)
    std::int64_t skip_elements = 0;       // what encoders keep for decoders (maps or indices)
    // --- architecture queries (compose/network.hpp: storage_multiplier_v, receptive_field_v,
    // inference_activation_bytes_v, training_activation_bytes_v) ---
    std::int64_t index_elements = 0;      // pooling indices (int32) of every pool, per image
    /// The paper's storage multiplier (see storage_multiplier_v): the largest, over decoders,
    /// of what a decoder reads from its encoder in maps (indices count 1); -1 = n/a.
    int storage_multiplier = 0;
    bool reads_encoder = false;           // some decoder reads encoder values or indices
    bool narrow_decoder = false;          // some decoder ends with fewer channels than its encoder's map
    /// Receptive field of one output value (the classifier's), in input pixels per axis.
    int receptive_field = 1;
    /// Inference, one image: the largest (layer input + output + what encoders keep for their
    /// decoders) over the layers, in bytes (float32 maps, int32 indices). Static sizes only.
    std::int64_t inference_peak_bytes = 0;
    /// Training, per image: the input, every layer's output and every pool's indices, all kept
    /// for backward, in bytes. Static sizes only.
    std::int64_t training_bytes_per_image = 0;
    StageInfo stages[max_stages]{};
    constexpr bool ok() const { return diag.fault == Fault::none; }
};

/// The receptive-field rule of one layer: a field of `rf` input pixels whose adjacent values are
/// `jump` input pixels apart grows by the layer's window and strides by its down/up factors.
constexpr void apply_geometry(LayerGeometry geo, int& rf, int& jump) {
    rf += (geo.window - 1) * jump;
    jump *= geo.down;
    if (geo.up > 1) jump = jump / geo.up > 0 ? jump / geo.up : 1;
}

/// Does nothing at each step: the analysis alone.
struct NoVisitor {
    template <class L>
    constexpr void layer(Dims, int /*stage*/, int /*layer*/, int /*link*/) {}
    constexpr void tap(int /*link*/) {}
    constexpr void begin_stage(StageKind, int /*stage*/, int /*ordinal*/, bool /*single_layer*/) {}
};

template <class Visitor = NoVisitor>
struct Walker {
    Analysis a{};
    Visitor* visitor = nullptr;
    Dims cur{};
    SkipDims stack[max_encoders]{};
    int stack_stage[max_encoders]{};
    int stack_link[max_encoders]{};
    int depth = 0, stage = 0, layer = 0, links = 0;
    // Receptive field: size (input pixels) and jump (input pixels between adjacent values).
    int rf = 1, jump = 1;
    int stack_rf[max_encoders]{};
    int stack_layer[max_encoders]{};        // a.layer_count when the encoder published its map
    std::int64_t live[max_tracked_layers]{};  // per layer: input + output (+ kept skips), bytes
    SkipStorage decoder_storage{};            // what the decoder being walked reads

    constexpr bool failed() const { return a.diag.fault != Fault::none; }
    constexpr void fail(Fault f, int expected, int actual, std::string_view name, int branch = 0) {
        if (failed()) return;
        a.diag = {f, stage, layer, expected, actual, a.stages[stage > 0 ? stage - 1 : 0].pair,
                  a.stages[stage > 0 ? stage - 1 : 0].kind, name, branch};
    }

    /// link < 0: the layer is outside a Decoder.
    template <class E>
    constexpr void element(const SkipDims* skip, int link) {
        if constexpr (is_block_v<E>) {
            E::each([&]<class L>() { element<L>(skip, link); });
        } else if constexpr (!Layer<E>) {
            // Not a layer: the Network has reported it (stage_check, one error).
        } else {
            if (failed()) return;
            ++layer;
            ++a.layer_count;
            const Dims in = cur;
            ShapeResult r{};
            if constexpr (PairedLayer<E>) {
                if (!skip) return fail(Fault::skip_outside_decoder, 0, 0, E::name);
                r = E::infer(in, *skip);
                if (r.fault == Fault::none) a.flops += E::flops(in, *skip);
            } else {
                r = E::infer(in);
                if (r.fault == Fault::none) a.flops += E::flops(in);
            }
            if (r.fault != Fault::none) return fail(r.fault, r.expected, r.actual, E::name, r.branch);
            a.parameters += E::parameter_count(in);
            if constexpr (PairedLayer<E>) {
                const SkipStorage s = skip_storage_of<E>(in, *skip);
                decoder_storage.indices = decoder_storage.indices || s.indices;
                decoder_storage.reads_feature = decoder_storage.reads_feature || s.reads_feature;
                if (s.channels > decoder_storage.channels) decoder_storage.channels = s.channels;
                if (s.reads_feature && stack_rf[depth] > rf) rf = stack_rf[depth];
            }
            apply_geometry(geometry_of<E>, rf, jump);
            cur = r.out;
            if (cur.spatial_static()) {
                // A pass-through layer (NoSkip) returns its input: no new map.
                if constexpr (!layer_traits<E>::passes_input_through) a.activation_elements += cur.elements();
                // A composite's children keep their maps in their own buffers, in eval mode too.
                const std::int64_t inner = layer_traits<E>::inner_activation_elements(in);
                a.activation_elements += inner;
                const std::int64_t live =
                    (in.spatial_static() ? in.elements() : 0) + cur.elements() + inner + a.skip_elements;
                if (live > a.peak_live_elements) a.peak_live_elements = live;
                if (a.layer_count <= max_tracked_layers)
                    live_at(a.layer_count) = 4 * ((in.spatial_static() ? in.elements() : 0) + cur.elements() + inner);
            }
            if (visitor) visitor->template layer<E>(in, stage, layer, link);
        }
    }

    template <class S>
    constexpr void stage_step() {
        if constexpr (!well_formed_v<S>) return;  // reported once by the Network (stage_check)
        if (failed()) return;
        ++stage;
        layer = 0;
        StageInfo& info = a.stages[stage - 1];
        info.in = cur;
        if constexpr (is_encoder_v<S>) {
            info.kind = StageKind::encoder;
            if (visitor) visitor->begin_stage(StageKind::encoder, stage, a.encoder_count, false);
            ++a.encoder_count;
            element<typename S::body>(nullptr, -1);
            if (failed()) return;
            const int link = links++;
            if (visitor) visitor->tap(link);
            stack[depth] = {cur, geometry_of<typename S::pool>.down};
            stack_stage[depth] = stage;
            stack_link[depth] = link;
            ++depth;
            // A pool's indices are what SegNet keeps (2 bits per window in the paper); counted
            // here as one element per pooled value.
            stack_rf[depth - 1] = rf;
            stack_layer[depth - 1] = a.layer_count;
            element<typename S::pool>(nullptr, link);
            if (cur.spatial_static()) {
                a.skip_elements += cur.elements();
                a.index_elements += cur.elements();
            }
        } else if constexpr (is_decoder_v<S>) {
            info.kind = StageKind::decoder;
            if (depth == 0) {
                layer = 1;
                return fail(Fault::decoder_without_encoder, 0, 0, "Decoder");
            }
            --depth;
            const SkipDims skip = stack[depth];
            info.pair = stack_stage[depth];
            a.stages[info.pair - 1].pair = stage;
            if (visitor) visitor->begin_stage(StageKind::decoder, stage, a.decoder_count, false);
            ++a.decoder_count;
            decoder_storage = {};
            S::each([&]<class E>() { element<E>(&skip, stack_link[depth]); });
            if (failed()) return;
            end_decoder(skip);
            if (!extents_may_match(cur.h, skip.feature.h))
                return fail(Fault::decoder_size, skip.feature.h, cur.h, "Decoder");
            if (!extents_may_match(cur.w, skip.feature.w))
                return fail(Fault::decoder_size, skip.feature.w, cur.w, "Decoder");
            const Dims pooled{skip.feature.c, pooled_extent(skip.feature.h, skip.pool),
                              pooled_extent(skip.feature.w, skip.pool)};
            if (pooled.spatial_static()) a.skip_elements -= pooled.elements();
        } else {
            info.kind = StageKind::other;
            if (visitor) visitor->begin_stage(StageKind::other, stage, stage - 1, !is_block_v<S>);
            element<S>(nullptr, -1);
        }
        info.out = cur;
        info.layers = layer;
    }

    constexpr std::int64_t& live_at(int layer_number) { return live[layer_number - 1]; }

    /// After a decoder: its storage unit for the multiplier, and what its encoder kept (from the
    /// pool to the decoder's last layer) added to the live memory of every layer in between.
    constexpr void end_decoder(SkipDims skip) {
        const SkipStorage s = decoder_storage;
        const int unit = s.channels > 0 ? s.channels : (s.indices ? 1 : 0);
        if (unit > a.storage_multiplier) a.storage_multiplier = unit;
        if (s.indices || s.reads_feature) a.reads_encoder = true;
        if (cur.c < skip.feature.c) a.narrow_decoder = true;
        if (!skip.feature.spatial_static()) return;
        const Dims pooled{skip.feature.c, pooled_extent(skip.feature.h, skip.pool),
                          pooled_extent(skip.feature.w, skip.pool)};
        const std::int64_t kept = 4 * ((s.indices ? pooled.elements() : 0) +
                                       std::int64_t(s.channels) * skip.feature.h * skip.feature.w);
        for (int l = stack_layer[depth] + 1; l <= a.layer_count && l <= max_tracked_layers; ++l) live_at(l) += kept;
    }

    template <class... Stages>
    constexpr void run(Dims input) {
        a.input = input;
        cur = input;
        (stage_step<Stages>(), ...);
        a.stage_count = stage;
        a.output = cur;
        a.receptive_field = rf;
        // The paper prints n/a (not 0) for a decoder that keeps nothing *and* works in fewer
        // channels than its encoder (FCN-Basic-NoAddition); see storage_multiplier_v.
        if (!a.reads_encoder && a.narrow_decoder) a.storage_multiplier = -1;
        if (input.spatial_static() && cur.spatial_static()) {
            for (int l = 1; l <= a.layer_count && l <= max_tracked_layers; ++l)
                if (live_at(l) > a.inference_peak_bytes) a.inference_peak_bytes = live_at(l);
            a.training_bytes_per_image = 4 * (input.elements() + a.activation_elements + a.index_elements);
        }
        if (!failed() && depth != 0) {
            layer = 0;
            stage = stack_stage[depth - 1];
            fail(Fault::encoder_without_decoder, 0, depth, "Encoder");
        }
    }
};

template <class... Stages>
constexpr Analysis analyse(Dims input) {
    Walker<> w;
    w.template run<Stages...>(input);
    return w.a;
}

}  // namespace segnet
