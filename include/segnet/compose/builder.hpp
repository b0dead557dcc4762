// segnet/compose/builder.hpp: the model's node list and the visitors that build it from a
// network type, by the same walk that checks the type (compose/analysis.hpp).
//
//   std::vector<ModelNode<Cpu>> nodes; std::vector<std::unique_ptr<SkipLink<Cpu>>> links;
//   detail::ModelBuilder<Cpu> builder{nodes, links};
//   Net::walk(Net::input::dims, builder);   // one node per layer, a Tap per Encoder
//
// Parameter names: "encoder<i>.<j>.", "decoder<i>.<j>." (stages numbered by kind, layers by
// position with Blocks flattened), "stage<N>." for a layer alone as a stage, or the layer's
// declared parameter_prefix ("classifier.").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "segnet/compose/network.hpp"
#include "segnet/compose/tap.hpp"
#include "segnet/layers/fusion.hpp"

namespace segnet {

/// One run-time layer of a model, with what the buffer planners need to know about it.
template <class Device>
struct ModelNode {
    std::unique_ptr<RuntimeLayer<Device>> layer;
    std::string prefix;  // parameter name prefix, e.g. "encoder0.0."
    int stage = 0;
    int feature_until = -1;     // a Tap: the last node whose forward reads its map's values (-1: none)
    int feature_backward = -1;  // a Tap: the first node whose backward reads them (-1: none)
    TapLayer<Device>* tap = nullptr;  // the layer, when this node is a Tap

    /// The layer's eval-fusion capability (layers/fusion.hpp), or nullptr.
    EvalFusion<Device>* fusion() const { return eval_fusion_of(*layer); }
    FusionRole fusion_role() const { return fusion_role_of(*layer); }
};

/// The parameter names of the walk (the header comment): a visitor that names layers (the model
/// builder, the exporters) keeps one and calls begin_stage() and prefix<L>() in walk order.
struct ParameterNaming {
    std::string stage_prefix{};
    bool single = false;

    void begin_stage(StageKind kind, int stage_number, int ordinal, bool single_layer) {
        single = single_layer;
        if (kind == StageKind::encoder) stage_prefix = "encoder" + std::to_string(ordinal);
        else if (kind == StageKind::decoder) stage_prefix = "decoder" + std::to_string(ordinal);
        else stage_prefix = "stage" + std::to_string(stage_number);
    }
    /// "encoder0.2." for layer 3 of the first Encoder; a layer alone as a stage: "stage<N>." or
    /// its declared parameter_prefix ("classifier.").
    template <class L>
    std::string prefix(int layer_number) const {
        if (!single) return stage_prefix + "." + std::to_string(layer_number - 1) + ".";
        constexpr std::string_view own = layer_traits<L>::parameter_prefix;
        return own.empty() ? stage_prefix + "." : std::string(own) + ".";
    }
};

namespace detail {
template <class Device>
struct ModelBuilder {
    std::vector<ModelNode<Device>>& nodes;
    std::vector<std::unique_ptr<SkipLink<Device>>>& links;
    ParameterNaming naming{};
    int stage = 0;
    std::vector<std::size_t> tap_nodes{};  // per link, its Tap's node

    void begin_stage(StageKind kind, int stage_number, int ordinal, bool single_layer) {
        stage = stage_number;
        naming.begin_stage(kind, stage_number, ordinal, single_layer);
    }

    template <class L>
    void layer(Dims in, int, int layer_number, int link) {
        auto l = L::template make<Device>(in);
        if (link >= 0) l->connect(links[std::size_t(link)].get());
        if (link >= 0 && skip_storage_of<L>(in, SkipDims{}).reads_feature)
            nodes[tap_nodes[std::size_t(link)]].feature_until = int(nodes.size());
        if (link >= 0 && l->train_buffer_use().reads_feature) {
            int& first = nodes[tap_nodes[std::size_t(link)]].feature_backward;
            if (first < 0) first = int(nodes.size());  // backward runs in reverse: the first reader is the last to run
        }
        nodes.push_back({std::move(l), naming.prefix<L>(layer_number), stage});
    }
    void tap(int link) {
        links.push_back(std::make_unique<SkipLink<Device>>());
        tap_nodes.push_back(nodes.size());
        auto tap_layer = std::make_unique<TapLayer<Device>>(links[std::size_t(link)].get());
        TapLayer<Device>* tap_ptr = tap_layer.get();
        nodes.push_back({std::move(tap_layer), "", stage});
        nodes.back().tap = tap_ptr;
    }
};

/// Collects every node's input size, in the order ModelBuilder adds the nodes (a Tap: 0, its
/// input being the next layer's).
struct NodeInputs {
    std::vector<std::int64_t>& elements;  // per image
    template <class L>
    void layer(Dims in, int, int, int) {
        elements.push_back(in.elements());
    }
    void tap(int) { elements.push_back(0); }
    void begin_stage(StageKind, int, int, bool) {}
};
}  // namespace detail
}  // namespace segnet
