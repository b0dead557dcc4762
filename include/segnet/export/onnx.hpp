// segnet/export/onnx.hpp: writes a model as an ONNX file (standard operators, opset 13) that
// onnxruntime, OpenCV's DNN module and other runtimes run without segnet.
//
//   Model<models::SegNetBasic<11>, Cpu> model;
//   const CheckpointInfo info = load_checkpoint("models/segnet-basic-camvid.safetensors", model);
//   onnx::export_model(model, "segnet-basic.onnx", {.normalization = info.normalization});
//
// The graph is written from the network's type by the same walk that builds the model
// (compose/analysis.hpp): each layer declares what it computes (its `export_as`, the layer
// contract in layers/layer.hpp) and a layer without one is a compile-time error naming it
// (export_check below), before anything is written. Operators: Conv (groups for depthwise), BatchNormalization, Relu,
// MaxPool (an Encoder's with its Indices output feeding MaxUnpool with output_shape, the
// encoder's pre-pool size, so 45 -> 23 -> 45 round-trips), AveragePool (count_include_pad=1),
// GlobalAveragePool (AdaptiveAvgPool<1>; AdaptiveAvgPool<B> only at a static size: an
// AveragePool when the size divides by B, else MatMuls with constant averaging matrices; a
// symbolic export throws StaticSizeRequired), Add, Concat, ConvTranspose + Slice (the crop to the
// encoder's size), LRN; Dropout, NoSkip and Identity write nothing. Composites
// (compose/branches.hpp) write each path from their input, then Add/Sum or Concat (Branches),
// Add + Relu (Residual), Resize (ResizedToInput: linear, half_pixel = align_corners=False) or
// Slice (CroppedToInput). Tensors are initializers under the checkpoint's names
// (encoder0.0.weight, stage1.20.branch3.0.1.weight, ...); node outputs are named by the layer
// (encoder0.0, encoder0.3.indices); the graph's input is "image", its output "logits".
//
// Input contract: float32 NCHW RGB. With ExportOptions::normalization the graph takes pixel
// values 0..255 and normalises them itself ((x * scale - mean) / std per channel: Mul, Sub, Div,
// as segnet-segment does); without, it takes normalised values. Either way the metadata
// (segnet.input, normalization_mean/_std/_scale) says which. Sizes: batch, height and width
// are symbolic ("batch", "height", "width") unless ExportOptions gives a static height and
// width, which fixes the batch to 1 and writes every shape as a constant (for runtimes that
// need a static graph).
//
// Why a hand-written writer: the file is a protobuf message (export/protobuf.hpp) of which
// this writer needs ten message types; the field numbers below are onnx.proto's (onnx 1.12).
// The tests check every file with the ONNX project's own checker and shape inference.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/backend/pool_geometry.hpp"
#include "segnet/compose/branches.hpp"
#include "segnet/compose/builder.hpp"
#include "segnet/compose/model.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/export/protobuf.hpp"
#include "segnet/io/files.hpp"
#include "segnet/layers/upsample.hpp"
#include "segnet/version.hpp"

namespace segnet::onnx {

/// The operator set the files use (onnx's default domain); the IR version that goes with it.
inline constexpr int opset_version = 13;
inline constexpr int ir_version = 7;

struct ExportOptions {
    /// A static input size (both or neither): batch 1 and every shape a constant. dyn: symbolic.
    int height = dyn, width = dyn;
    /// The checkpoint's input normalisation, written into the graph (it then takes 0..255
    /// pixels); nullopt: the graph takes normalised values.
    std::optional<Normalization> normalization{};
    /// Written to the metadata (segnet.model); empty: the network's name.
    std::string model_name{};
};

/// Thrown by to_onnx for a symbolic-size export of a layer whose exact ONNX form needs the size
/// (AdaptiveAvgPool with more than one bin; symbolic_exportable_v below says so from the type),
/// naming it, e.g. "stage1.20.branch3.0.0 (AdaptiveAvgPool<2>)"; a static ExportOptions height
/// and width export it.
struct StaticSizeRequired : std::invalid_argument {
    StaticSizeRequired(const std::string& layer, const std::string& why)
        : std::invalid_argument("segnet::onnx: " + layer + " " + why + "; export with a static height and width") {}
};

namespace detail {

// Field numbers of onnx.proto (https://github.com/onnx/onnx/blob/v1.12.0/onnx/onnx.proto).
namespace field {
inline constexpr int model_ir_version = 1, model_producer_name = 2, model_producer_version = 3, model_doc_string = 6,
                     model_graph = 7, model_opset_import = 8, model_metadata_props = 14;
inline constexpr int opset_domain = 1, opset_version = 2;            // OperatorSetIdProto
inline constexpr int entry_key = 1, entry_value = 2;                 // StringStringEntryProto
inline constexpr int graph_node = 1, graph_name = 2, graph_initializer = 5, graph_input = 11, graph_output = 12,
                     graph_value_info = 13;
inline constexpr int node_input = 1, node_output = 2, node_name = 3, node_op_type = 4, node_attribute = 5;
inline constexpr int attribute_name = 1, attribute_f = 2, attribute_i = 3, attribute_s = 4, attribute_ints = 8,
                     attribute_type = 20;
inline constexpr int attribute_type_float = 1, attribute_type_int = 2, attribute_type_string = 3,
                     attribute_type_ints = 7;  // AttributeType
inline constexpr int tensor_dims = 1, tensor_data_type = 2, tensor_name = 8, tensor_raw_data = 9;
inline constexpr int data_type_float = 1, data_type_int64 = 7;      // TensorProto.DataType
inline constexpr int value_info_name = 1, value_info_type = 2;      // ValueInfoProto
inline constexpr int type_tensor_type = 1;                           // TypeProto
inline constexpr int tensor_type_elem_type = 1, tensor_type_shape = 2;  // TypeProto.Tensor
inline constexpr int shape_dim = 1, dim_value = 1, dim_param = 2;     // TensorShapeProto(.Dimension)
}  // namespace field

inline proto::Message int_attribute(std::string_view name, std::int64_t value) {
    proto::Message a;
    a.bytes(field::attribute_name, name).integer(field::attribute_i, value);
    a.varint(field::attribute_type, field::attribute_type_int);
    return a;
}
inline proto::Message ints_attribute(std::string_view name, std::initializer_list<std::int64_t> values) {
    proto::Message a;
    a.bytes(field::attribute_name, name);
    for (std::int64_t v : values) a.integer(field::attribute_ints, v);
    a.varint(field::attribute_type, field::attribute_type_ints);
    return a;
}
inline proto::Message string_attribute(std::string_view name, std::string_view value) {
    proto::Message a;
    a.bytes(field::attribute_name, name).bytes(field::attribute_s, value);
    a.varint(field::attribute_type, field::attribute_type_string);
    return a;
}
inline proto::Message float_attribute(std::string_view name, float value) {
    proto::Message a;
    a.bytes(field::attribute_name, name).float32(field::attribute_f, value);
    a.varint(field::attribute_type, field::attribute_type_float);
    return a;
}

/// One dimension of a value: a number, or for dyn a name (symbolic) or nothing (unknown).
struct Dimension {
    std::int64_t value = dyn;
    std::string_view symbol{};
};

/// A GraphProto being written: nodes in order, initializers, the input and the output.
class GraphWriter {
public:
    void node(std::string_view op, std::initializer_list<std::string_view> inputs,
              std::initializer_list<std::string_view> outputs, std::string_view name,
              std::initializer_list<proto::Message> attributes = {}) {
        node(op, std::vector<std::string_view>(inputs), outputs, name, attributes);
    }
    /// A node with as many inputs as a composite has paths.
    void node(std::string_view op, const std::vector<std::string_view>& inputs,
              std::initializer_list<std::string_view> outputs, std::string_view name,
              std::initializer_list<proto::Message> attributes = {}) {
        proto::Message n;
        for (std::string_view in : inputs) n.bytes(field::node_input, in);
        for (std::string_view out : outputs) n.bytes(field::node_output, out);
        n.bytes(field::node_name, name).bytes(field::node_op_type, op);
        for (const proto::Message& a : attributes) n.message(field::node_attribute, a);
        graph_.message(field::graph_node, n);
    }
    void initializer(std::string_view name, const std::vector<std::int64_t>& dims, const std::vector<float>& values) {
        write_initializer(name, dims, field::data_type_float, values.data(), values.size() * sizeof(float));
    }
    void initializer(std::string_view name, const std::vector<std::int64_t>& dims, const std::vector<std::int64_t>& values) {
        write_initializer(name, dims, field::data_type_int64, values.data(), values.size() * sizeof(std::int64_t));
    }
    /// An int64 vector constant under `name`, written once however often it is asked for.
    std::string_view constant(const std::string& name, const std::vector<std::int64_t>& values) {
        if (constants_.emplace(name).second) initializer(name, {std::int64_t(values.size())}, values);
        return *constants_.find(name);
    }
    void input(std::string_view name, const std::vector<Dimension>& dims) { write_value_info(field::graph_input, name, dims); }
    void output(std::string_view name, const std::vector<Dimension>& dims) { write_value_info(field::graph_output, name, dims); }
    /// The type and shape of an inner value (float32); unknown sizes are left unnamed.
    void value_info(std::string_view name, const std::vector<Dimension>& dims) {
        write_value_info(field::graph_value_info, name, dims);
    }
    proto::Message finish(std::string_view name) {
        graph_.bytes(field::graph_name, name);
        return std::move(graph_);
    }

private:
    void write_initializer(std::string_view name, const std::vector<std::int64_t>& dims, int type, const void* data,
                           std::size_t bytes) {
        proto::Message t;
        for (std::int64_t d : dims) t.integer(field::tensor_dims, d);
        t.varint(field::tensor_data_type, std::uint64_t(type)).bytes(field::tensor_name, name);
        t.bytes(field::tensor_raw_data, std::string_view(static_cast<const char*>(data), bytes));
        graph_.message(field::graph_initializer, t);
    }
    void write_value_info(int which, std::string_view name, const std::vector<Dimension>& dims) {
        proto::Message shape;
        for (const Dimension& d : dims) {
            proto::Message dim;
            if (d.value != dyn) dim.integer(field::dim_value, d.value);
            else if (!d.symbol.empty()) dim.bytes(field::dim_param, d.symbol);
            shape.message(field::shape_dim, dim);
        }
        proto::Message tensor_type;
        tensor_type.varint(field::tensor_type_elem_type, field::data_type_float).message(field::tensor_type_shape, shape);
        proto::Message type;
        type.message(field::type_tensor_type, tensor_type);
        proto::Message info;
        info.bytes(field::value_info_name, name).message(field::value_info_type, type);
        graph_.message(which, info);
    }
    proto::Message graph_;
    std::set<std::string, std::less<>> constants_;
};

/// Instantiated for the network's first layer without `export_as` (void: none): the error names
/// the layer in its instantiation line, above the message.
template <class L>
struct export_check {
    static_assert(layer_traits<L>::exportable,
                  "segnet::onnx::export_model: this layer (the template argument of export_check) declares no "
                  "export_as, so it cannot be written as ONNX; declare `static constexpr ExportSpec export_as` "
                  "(layers/layer.hpp) or leave the layer out of the exported network");
};
template <>
struct export_check<void> {};

/// The first of T... that is not void (void: none).
template <class... T>
struct first_non_void {
    using type = void;
};
template <class T, class... Rest>
struct first_non_void<T, Rest...> {
    using type = std::conditional_t<std::is_void_v<T>, typename first_non_void<Rest...>::type, T>;
};
/// Whether a layer's ONNX form depends on the map's size, so that only a static export has it:
/// AdaptiveAvgPool with more than one bin (one bin is a GlobalAveragePool).
constexpr bool needs_static_size(const ExportSpec& op) { return op.op == ExportOp::adaptive_average_pool && op.kernel > 1; }

template <class L>
struct lacks_export_as : std::bool_constant<!layer_traits<L>::exportable> {};
template <class L>
struct static_size_only : std::bool_constant<needs_static_size(layer_traits<L>::export_as)> {};

/// The first layer of a stage or element for which Pred<layer>::value holds (Blocks, Encoders,
/// Decoders and composites' paths searched in order; a composite's own export_as names only its
/// merge), or void.
template <template <class> class Pred, class E>
struct first_layer_where {
    using type = std::conditional_t<Pred<E>::value, E, void>;
};
template <template <class> class Pred, class... E>
struct first_layer_where<Pred, Block<E...>> : first_non_void<typename first_layer_where<Pred, E>::type...> {};
template <template <class> class Pred, class... E>
struct first_layer_where<Pred, Decoder<E...>> : first_non_void<typename first_layer_where<Pred, E>::type...> {};
template <template <class> class Pred, class Body, class Pool>
struct first_layer_where<Pred, Encoder<Body, Pool>>
    : first_non_void<typename first_layer_where<Pred, Body>::type, typename first_layer_where<Pred, Pool>::type> {};
template <template <class> class Pred, class... P>
struct first_layer_where<Pred, PathList<P...>> : first_non_void<typename first_layer_where<Pred, P>::type...> {};
template <template <class> class Pred, Composite E>
struct first_layer_where<Pred, E> : first_layer_where<Pred, typename E::path_list> {};
/// The network's first such layer (as a pointer type: void* for none). Takes the Network base of
/// a named network (models::SegNet<11> derives from Network<...>).
template <template <class> class Pred, class In, class... Stages>
auto first_layer_in(const Network<In, Stages...>*)
    -> typename first_non_void<typename first_layer_where<Pred, Stages>::type...>::type*;
template <template <class> class Pred, NetworkType Net>
using first_layer_in_t = std::remove_pointer_t<decltype(first_layer_in<Pred>(static_cast<const Net*>(nullptr)))>;

/// What an Encoder leaves for its Decoder in the graph: the names of its pre-pool map and of its
/// pool's indices, and the map's size.
struct EncoderValues {
    std::string stage;    // "encoder0"
    std::string feature;  // the pre-pool map's value
    std::string indices;  // the pool's Indices output
    Dims size{};          // the pre-pool map's (dyn in a symbolic graph)
    int pool = 0;         // the pool's factor
};

/// The walk's visitor (compose/analysis.hpp): one or a few nodes per layer.
template <class Device>
class GraphBuilder {
public:
    GraphBuilder(GraphWriter& g, std::vector<ParamRef<Device>> state, std::string input, Dimension batch)
        : g_(g), current_(std::move(input)), batch_(batch), static_size_(batch.value != dyn) {
        for (ParamRef<Device>& p : state) tensors_.emplace(p.name, std::move(p));
    }
    void begin_stage(StageKind kind, int stage_number, int ordinal, bool single_layer) {
        naming_.begin_stage(kind, stage_number, ordinal, single_layer);
    }
    void tap(int) { encoders_.push_back({naming_.stage_prefix, current_, "", {}}); }

    template <class L>
    void layer(Dims in, int, int layer_number, int link) {
        if constexpr (layer_traits<L>::exportable) {  // else to_onnx has reported it (export_check)
            EncoderValues* encoder = link >= 0 ? &encoders_[std::size_t(link)] : nullptr;
            const bool encoder_pool = encoder && encoder->size.c == 0;  // the first layer after the Tap
            if (encoder_pool) {
                encoder->size = in;
                encoder->pool = geometry_of<L>.down;
            }
            emit<L>(in, naming_.prefix<L>(layer_number), encoder, encoder_pool);
        }
    }
    const std::string& output() const { return current_; }
    /// Tensors of the model no layer wrote (none for a correct export).
    std::vector<std::string> unused_tensors() const {
        std::vector<std::string> out;
        for (const auto& [name, p] : tensors_)
            if (!used_.contains(name)) out.push_back(name);
        return out;
    }

private:
    /// Walks a composite's path (compose/analysis.hpp's Walker, as make_chain builds it): its layer
    /// j is named "<prefix><j>.", as the composite's run-time object names its parameters.
    struct PathVisitor {
        GraphBuilder& builder;
        std::string prefix;
        template <class L>
        void layer(Dims in, int, int layer_number, int) {
            builder.template emit<L>(in, prefix + std::to_string(layer_number - 1) + ".", nullptr, false);
        }
        void tap(int) {}
        void begin_stage(StageKind, int, int, bool) {}
    };

    /// The layer's nodes from the current value; its output value is named by `prefix` ("encoder0.0").
    template <class L>
    void emit(Dims in, const std::string& prefix, EncoderValues* encoder, bool encoder_pool) {
        const std::string name = prefix.substr(0, prefix.size() - 1);
        if constexpr (Composite<L>) write_composite<L>(in, prefix, name);
        else write(layer_traits<L>::export_as, in, prefix, name, encoder, encoder_pool, L::name);
        if (current_ != name) return;  // identity: no new value
        // The value's shape, so that shape inference checks it and runtimes can plan with it.
        ShapeResult out{};
        if constexpr (PairedLayer<L>) out = L::infer(in, SkipDims{encoder->size, encoder->pool});
        else out = L::infer(in);
        g_.value_info(name, {batch_, Dimension{out.out.c}, Dimension{out.out.h}, Dimension{out.out.w}});
    }

    /// A composite: each path from the composite's input (the current value), then the merge.
    template <class L>
    void write_composite(Dims in, const std::string& prefix, const std::string& name) {
        const std::string input = current_;
        std::vector<std::string> results;
        each_path<L>([&]<class P>(int index) {
            current_ = input;
            const std::string path_name = L::path_name(index);
            PathVisitor visitor{*this, path_name.empty() ? prefix : prefix + path_name + "."};
            Walker<PathVisitor> walk;
            walk.visitor = &visitor;
            walk.cur = in;
            walk.template element<P>(nullptr, -1);
            results.push_back(current_);
        });
        const std::vector<std::string_view> merged(results.begin(), results.end());
        switch (layer_traits<L>::export_as.op) {
        case ExportOp::merge_sum: g_.node(merged.size() == 2 ? "Add" : "Sum", merged, {name}, name); break;
        case ExportOp::merge_concat: g_.node("Concat", merged, {name}, name, {int_attribute("axis", 1)}); break;
        case ExportOp::residual: {
            const std::string sum = name + ".sum";
            g_.node("Add", merged, {sum}, sum);
            g_.node("Relu", {sum}, {name}, name);
            break;
        }
        case ExportOp::resize_to_input: {
            // half_pixel is PyTorch's align_corners=False (core/bilinear.hpp: s = (o + 0.5) in / out
            // - 0.5, clamped at 0, as onnxruntime clamps); "pytorch_half_pixel" would differ only
            // for an output of one pixel. Sizes [N, C, H, W]: the path's N and C, the input's H and W.
            const std::string sizes = name + ".sizes";
            if (static_size_) {
                g_.constant(sizes, {1, L::infer(in).out.c, in.h, in.w});
            } else {
                const std::string batch_channels = results[0] + ".batch_channels";
                g_.node("Slice", {shape_of(results[0]), g_.constant("zero", {0}), g_.constant("two", {2})},
                        {batch_channels}, batch_channels);
                g_.node("Concat", {batch_channels, spatial_size_of(input, in)}, {sizes}, sizes, {int_attribute("axis", 0)});
            }
            g_.node("Resize", {results[0], "", "", sizes}, {name}, name,
                    {string_attribute("mode", "linear"), string_attribute("coordinate_transformation_mode", "half_pixel")});
            break;
        }
        case ExportOp::crop_to_input:
            g_.node("Slice", {results[0], g_.constant("zeros.2", {0, 0}), spatial_size_of(input, in),
                              g_.constant("axes.height_width", {2, 3})},
                    {name}, name);
            break;
        default:
            throw std::logic_error("segnet::onnx::export_model: " + name + " (" + std::string(L::name) +
                                   ") is a composite whose export_as names no merge");
        }
        current_ = name;
    }

    void write(const ExportSpec& op, Dims in, const std::string& prefix, const std::string& name, EncoderValues* encoder,
               bool encoder_pool, std::string_view kind) {
        const std::int64_t k = op.kernel, s = op.stride;
        switch (op.op) {
        case ExportOp::identity: return;
        case ExportOp::conv: {
            const std::string weight = tensor(prefix + "weight");
            const std::int64_t groups = op.groups == 0 ? in.c : op.groups;
            const std::int64_t p = op.pad, d = op.dilation;
            const proto::Message attributes[] = {ints_attribute("kernel_shape", {k, k}),
                                                 ints_attribute("pads", {p, p, p, p}),
                                                 ints_attribute("strides", {s, s}), ints_attribute("dilations", {d, d}),
                                                 int_attribute("group", groups)};
            if (op.bias) {
                const std::string bias = tensor(prefix + "bias");
                g_.node("Conv", {current_, weight, bias}, {name}, name,
                        {attributes[0], attributes[1], attributes[2], attributes[3], attributes[4]});
            } else {
                g_.node("Conv", {current_, weight}, {name}, name,
                        {attributes[0], attributes[1], attributes[2], attributes[3], attributes[4]});
            }
            break;
        }
        case ExportOp::batch_norm:
            g_.node("BatchNormalization",
                    {current_, tensor(prefix + "weight"), tensor(prefix + "bias"), tensor(prefix + "running_mean"),
                     tensor(prefix + "running_var")},
                    {name}, name, {float_attribute("epsilon", op.epsilon)});
            break;
        case ExportOp::relu: g_.node("Relu", {current_}, {name}, name); break;
        case ExportOp::max_pool: {
            check_onnx_ceil_rule(op, in, name);
            const proto::Message attributes[] = {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                                                 ints_attribute("pads", {op.pad, op.pad, op.pad, op.pad}),
                                                 int_attribute("ceil_mode", op.ceil_mode ? 1 : 0)};
            if (encoder_pool) {  // its Indices output feeds the Decoder's MaxUnpool
                encoder->indices = name + ".indices";
                g_.node("MaxPool", {current_}, {name, encoder->indices}, name,
                        {attributes[0], attributes[1], attributes[2], attributes[3]});
            } else {
                g_.node("MaxPool", {current_}, {name}, name, {attributes[0], attributes[1], attributes[2], attributes[3]});
            }
            break;
        }
        case ExportOp::average_pool:
            check_onnx_ceil_rule(op, in, name);
            g_.node("AveragePool", {current_}, {name}, name,
                    {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                     ints_attribute("pads", {op.pad, op.pad, op.pad, op.pad}),
                     int_attribute("ceil_mode", op.ceil_mode ? 1 : 0), int_attribute("count_include_pad", 1)});
            break;
        case ExportOp::adaptive_average_pool: {
            if (!needs_static_size(op)) {  // one bin
                g_.node("GlobalAveragePool", {current_}, {name}, name);
                break;
            }
            // ONNX has no adaptive pooling; its bins depend on the size, so only a static graph has them.
            if (!in.spatial_static())
                throw StaticSizeRequired(name + " (" + std::string(kind) + "<" + std::to_string(k) + ">)",
                                         "has an exact ONNX form only at a static size (its bins depend on the map's)");
            if (in.h % k == 0 && in.w % k == 0) {  // the bins tile the map: an AveragePool
                const std::int64_t bh = in.h / k, bw = in.w / k;
                g_.node("AveragePool", {current_}, {name}, name,
                        {ints_attribute("kernel_shape", {bh, bw}), ints_attribute("strides", {bh, bw})});
                break;
            }
            // Y = P_h X P_w^T: row i of P_h (k x H) averages bin i's rows (backend::adaptive_spans,
            // the kernel's bins), P_w^T (W x k) bin j's columns; MatMul broadcasts over N and C. The
            // constants are MatMul's second input (OpenCV 4.6 refuses a constant first input), so the
            // rows are pooled as (X P_w^T)^T P_h^T, transposed back.
            const backend::PoolSpans spans = backend::adaptive_spans({in.h, in.w}, int(k));
            std::vector<float> rows_t(std::size_t(in.h * k), 0.f), columns_t(std::size_t(in.w * k), 0.f);
            for (std::int64_t i = 0; i < k; ++i) {
                const backend::PoolSpan r = spans.rows[std::size_t(i)], c = spans.cols[std::size_t(i)];
                for (int y = r.begin; y < r.end; ++y) rows_t[std::size_t(y * k + i)] = 1.f / float(r.count);
                for (int x = c.begin; x < c.end; ++x) columns_t[std::size_t(x * k + i)] = 1.f / float(c.count);
            }
            const std::string rows_name = prefix + "bin_rows", columns_name = prefix + "bin_columns";
            g_.initializer(rows_name, {in.h, k}, rows_t);
            g_.initializer(columns_name, {in.w, k}, columns_t);
            const std::string columns_pooled = name + ".columns", transposed = name + ".transposed",
                              pooled_t = name + ".pooled_transposed";
            const proto::Message swap_height_width = ints_attribute("perm", {0, 1, 3, 2});
            g_.node("MatMul", {current_, columns_name}, {columns_pooled}, columns_pooled);  // N C H k
            g_.node("Transpose", {columns_pooled}, {transposed}, transposed, {swap_height_width});  // N C k H
            g_.node("MatMul", {transposed, rows_name}, {pooled_t}, pooled_t);  // N C k(columns) k(rows)
            g_.node("Transpose", {pooled_t}, {name}, name, {swap_height_width});
            break;
        }
        case ExportOp::unpool: {
            // output_shape is the encoder's map (45 rows for 23 pooled: ceil mode). Runtimes check
            // that it is at least (in - 1) * s + k - pads, so the end pads are the rows a ceil-mode
            // pool covered that the map did not have: known in a static graph (none when the map
            // divides evenly, which OpenCV needs), at most k - 1 in a symbolic one; the indices
            // place the values either way.
            const std::int64_t pad_h = static_size_ ? (in.h - 1) * s + k - encoder->size.h : k - 1;
            const std::int64_t pad_w = static_size_ ? (in.w - 1) * s + k - encoder->size.w : k - 1;
            const proto::Message kernel = ints_attribute("kernel_shape", {k, k}), strides = ints_attribute("strides", {s, s});
            const std::string shape = static_size_
                ? std::string(g_.constant(encoder->stage + ".shape", {1, encoder->size.c, encoder->size.h, encoder->size.w}))
                : shape_of(encoder->feature);
            if (pad_h == 0 && pad_w == 0)
                g_.node("MaxUnpool", {current_, encoder->indices, shape}, {name}, name, {kernel, strides});
            else
                g_.node("MaxUnpool", {current_, encoder->indices, shape}, {name}, name,
                        {kernel, strides, ints_attribute("pads", {0, 0, pad_h, pad_w})});
            break;
        }
        case ExportOp::add_skip: g_.node("Add", {current_, encoder->feature}, {name}, name); break;
        case ExportOp::add_projected_skip: {
            const std::string projection = name + ".projection";
            g_.node("Conv", {encoder->feature, tensor(prefix + "weight")}, {projection}, projection,
                    {ints_attribute("kernel_shape", {1, 1})});
            g_.node("Add", {current_, projection}, {name}, name);
            break;
        }
        case ExportOp::concat_skip: g_.node("Concat", {current_, encoder->feature}, {name}, name, {int_attribute("axis", 1)}); break;
        case ExportOp::transposed_conv: {
            // segnet's transposed convolution is pad p on both sides, then only the encoder's
            // size kept (FCN's crop): ConvTranspose with pads p, then Slice to that size.
            const std::int64_t pad = (k - s + 1) / 2, groups = op.groups == 0 ? in.c : op.groups;
            std::string weight;
            if (op.fixed_bilinear) {
                weight = prefix + "bilinear_kernel";  // not a parameter: FCN's fixed kernel, one per channel
                const std::vector<float> kernel = segnet::detail::bilinear_kernel(int(k));
                std::vector<float> w;
                for (int c = 0; c < in.c; ++c) w.insert(w.end(), kernel.begin(), kernel.end());
                g_.initializer(weight, {in.c, 1, k, k}, w);
            } else {
                weight = tensor(prefix + "weight");
            }
            const std::string full = name + ".uncropped";
            g_.node("ConvTranspose", {current_, weight}, {full}, full,
                    {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                     ints_attribute("pads", {pad, pad, pad, pad}), int_attribute("group", groups)});
            g_.node("Slice", {full, g_.constant("zeros.2", {0, 0}), spatial_size_of(encoder->feature, encoder->size),
                              g_.constant("axes.height_width", {2, 3})},
                    {name}, name);
            break;
        }
        case ExportOp::conv_transpose: {
            const std::int64_t pad = op.pad;
            g_.node("ConvTranspose", {current_, tensor(prefix + "weight")}, {name}, name,
                    {ints_attribute("kernel_shape", {k, k}), ints_attribute("strides", {s, s}),
                     ints_attribute("pads", {pad, pad, pad, pad})});
            break;
        }
        case ExportOp::merge_sum:
        case ExportOp::merge_concat:
        case ExportOp::residual:
        case ExportOp::resize_to_input:
        case ExportOp::crop_to_input:
            throw std::logic_error("segnet::onnx::export_model: " + name + " (" + std::string(kind) +
                                   ") declares a composite's export_as but no path_list (compose/branches.hpp)");
        case ExportOp::lrn:
            g_.node("LRN", {current_}, {name}, name,
                    {int_attribute("size", k), float_attribute("alpha", op.alpha), float_attribute("beta", op.beta),
                     float_attribute("bias", op.k)});
            break;
        }
        current_ = name;
    }

    /// ONNX's ceil_mode (opset 13) counts a last window that would start in the right padding;
    /// PyTorch and segnet drop it. A static export where that happens is refused (a symbolic one
    /// cannot know: docs/interop.md).
    static void check_onnx_ceil_rule(const ExportSpec& op, Dims in, const std::string& name) {
        if (!op.ceil_mode || op.pad == 0) return;
        for (int extent : {in.h, in.w}) {
            if (extent == dyn) continue;
            const int segnet_out = backend::windowed_pool_extent(extent, op.kernel, op.stride, op.pad, PoolRounding::ceil);
            if (ceil_div(extent + 2 * op.pad - op.kernel, op.stride) + 1 != segnet_out)
                throw std::invalid_argument("segnet::onnx: " + name + " (a ceil-mode pooling with padding) on " +
                                            std::to_string(extent) + " would give ONNX one more output than segnet's " +
                                            std::to_string(segnet_out) + " (its last window starts in the padding); "
                                            "export at another size");
        }
    }
    /// The model's tensor `name` as an initializer (written once), or std::logic_error.
    std::string tensor(const std::string& name) {
        const auto it = tensors_.find(name);
        if (it == tensors_.end())
            throw std::logic_error("segnet::onnx::export_model: the model has no tensor '" + name + "'");
        if (used_.insert(name).second) {
            const ParamRef<Device>& p = it->second;
            g_.initializer(name, {p.shape.begin(), p.shape.end()}, backend::download(*p.value));
        }
        return name;
    }
    /// The value's [N, C, H, W] (a symbolic graph): a Shape node, written once.
    std::string shape_of(const std::string& value) {
        const std::string name = value + ".shape";
        if (shape_nodes_.insert(name).second) g_.node("Shape", {value}, {name}, name);
        return name;
    }
    /// The value's [H, W] (`size` its sizes): a constant in a static graph, else sliced from its Shape.
    std::string spatial_size_of(const std::string& value, Dims size) {
        const std::string name = value + ".size";
        if (static_size_) return std::string(g_.constant(name, {size.h, size.w}));
        if (shape_nodes_.insert(name).second)
            g_.node("Slice", {shape_of(value), g_.constant("two", {2}), g_.constant("four", {4})}, {name}, name);
        return name;
    }

    GraphWriter& g_;
    std::map<std::string, ParamRef<Device>, std::less<>> tensors_;
    std::set<std::string, std::less<>> used_, shape_nodes_;
    std::vector<EncoderValues> encoders_;
    ParameterNaming naming_;
    std::string current_;
    Dimension batch_;
    bool static_size_;
};

inline proto::Message metadata(std::string_view key, std::string_view value) {
    proto::Message entry;
    entry.bytes(field::entry_key, key).bytes(field::entry_value, value);
    return entry;
}

}  // namespace detail

/// The first layer of Net that declares no export_as (void: none, so to_onnx compiles for Net),
/// composites' paths included.
template <NetworkType Net>
using first_unexportable_t = detail::first_layer_in_t<detail::lacks_export_as, Net>;
/// Whether export_model compiles for Net (programs choosing a model at run time refuse the others).
template <NetworkType Net>
inline constexpr bool exportable_v = std::is_void_v<first_unexportable_t<Net>>;
/// The first layer of Net whose ONNX form needs a static export size (void: none), e.g. PSPNet's
/// AdaptiveAvgPool<2>: a symbolic export of Net throws StaticSizeRequired.
template <NetworkType Net>
using first_static_size_only_t = detail::first_layer_in_t<detail::static_size_only, Net>;
/// Whether export_model writes Net with symbolic sizes (else only with a static height and width).
template <NetworkType Net>
inline constexpr bool symbolic_exportable_v = exportable_v<Net> && std::is_void_v<first_static_size_only_t<Net>>;

/// The ONNX file of `model` (its current weights), as bytes. Throws std::invalid_argument for a
/// static size the network cannot take or a normalisation that does not fit its input.
template <NetworkType Net, class Device>
std::string to_onnx(Model<Net, Device>& model, const ExportOptions& options = {}) {
    using namespace detail;
    // A layer without an ONNX form: one error naming it (sizeof keeps this line from adding a second).
    static_assert(sizeof(export_check<first_unexportable_t<Net>>) > 0);
    const bool static_size = options.height != dyn || options.width != dyn;
    if (static_size && (options.height < 1 || options.width < 1))
        throw std::invalid_argument("segnet::onnx: a static size needs a positive height and width (got " +
                                    std::to_string(options.height) + "x" + std::to_string(options.width) + ")");
    const int channels = Net::input::channels;
    const Dims input{channels, static_size ? options.height : Net::input::height,
                     static_size ? options.width : Net::input::width};
    const Analysis analysis = Net::analyse(input);
    if (!analysis.ok())
        throw std::invalid_argument(describe(analysis.diag) + " for an input of " + std::to_string(input.h) + "x" +
                                    std::to_string(input.w));
    if (options.normalization) {
        if (channels != 3)
            throw std::invalid_argument("segnet::onnx: the normalisation is per RGB channel; this network takes " +
                                        std::to_string(channels) + " channels");
        if (const std::string problem = options.normalization->problem(); !problem.empty())
            throw std::invalid_argument("segnet::onnx: the normalisation's " + problem);
    }

    GraphWriter g;
    std::string first = "image";
    if (const auto& n = options.normalization) {  // (x * scale - mean) / std, as segnet-segment
        g.initializer("normalization.scale", {1}, std::vector<float>{n->scale});
        g.initializer("normalization.mean", {1, 3, 1, 1}, std::vector<float>(n->mean.begin(), n->mean.end()));
        g.initializer("normalization.std", {1, 3, 1, 1}, std::vector<float>(n->stddev.begin(), n->stddev.end()));
        g.node("Mul", {"image", "normalization.scale"}, {"normalization.scaled"}, "normalization.scaled");
        g.node("Sub", {"normalization.scaled", "normalization.mean"}, {"normalization.centred"}, "normalization.centred");
        g.node("Div", {"normalization.centred", "normalization.std"}, {"normalized"}, "normalized");
        first = "normalized";
    }
    const Dimension batch = static_size ? Dimension{1} : Dimension{dyn, "batch"};
    GraphBuilder<Device> builder(g, model.state(), first, batch);
    Net::walk(input, builder);
    if (const auto unused = builder.unused_tensors(); !unused.empty())
        throw std::logic_error("segnet::onnx::export_model: no layer wrote the model's tensor '" + unused.front() + "'");
    g.node("Identity", {builder.output()}, {"logits"}, "logits");

    const Dimension height = input.h == dyn ? Dimension{dyn, "height"} : Dimension{input.h};
    const Dimension width = input.w == dyn ? Dimension{dyn, "width"} : Dimension{input.w};
    g.input("image", {batch, Dimension{channels}, height, width});
    // The output's size: the input's (same-padded convolutions; decoders restore their encoders'
    // sizes, which the walk checks), or at a static size the one a strided or valid convolution
    // leaves. A symbolic export declares the input's symbols: size-changing networks need a static size.
    const auto output_extent = [](int in, int out, Dimension same) { return out == in ? same : Dimension{out}; };
    g.output("logits", {batch, Dimension{analysis.output.c}, output_extent(input.h, analysis.output.h, height),
                        output_extent(input.w, analysis.output.w, width)});

    proto::Message opset;
    opset.bytes(field::opset_domain, "").integer(field::opset_version, opset_version);
    proto::Message m;
    m.integer(field::model_ir_version, ir_version)
        .bytes(field::model_producer_name, "segnet")
        .bytes(field::model_producer_version, version_string)
        .bytes(field::model_doc_string, "segnet network '" + std::string(model.name()) + "' exported by segnet " +
                                            version_string)
        .message(field::model_graph, g.finish(options.model_name.empty() ? model.name() : options.model_name))
        .message(field::model_opset_import, opset);
    const std::string input_contract = options.normalization
        ? "image: float32 NCHW RGB, pixel values 0..255; the graph normalises them ((x * scale - mean) / std)"
        : "image: float32 NCHW RGB, already normalised as in training";
    m.message(field::model_metadata_props, metadata("segnet.model", options.model_name.empty() ? model.name() : options.model_name));
    m.message(field::model_metadata_props, metadata("segnet.classes", std::to_string(analysis.output.c)));
    m.message(field::model_metadata_props, metadata("segnet.input", input_contract));
    if (const auto& n = options.normalization) {
        const auto join = [](std::initializer_list<float> v) {  // as the checkpoint writes them
            std::ostringstream s;
            s.precision(9);
            for (float x : v) s << (s.tellp() > 0 ? "," : "") << x;
            return s.str();
        };
        m.message(field::model_metadata_props, metadata("normalization_mean", join({n->mean[0], n->mean[1], n->mean[2]})));
        m.message(field::model_metadata_props, metadata("normalization_std", join({n->stddev[0], n->stddev[1], n->stddev[2]})));
        m.message(field::model_metadata_props, metadata("normalization_scale", join({n->scale})));
    }
    return m.encoded();
}

/// Writes `model` as an ONNX file at `path` (atomically: a temporary file, then a rename; an
/// existing file is replaced only by a complete one). Throws as to_onnx, and DataError for I/O.
template <NetworkType Net, class Device>
void export_model(Model<Net, Device>& model, const std::filesystem::path& path, const ExportOptions& options = {}) {
    const std::string bytes = to_onnx(model, options);
    write_file_atomically(path, [&](FileSink& f) { f.write(bytes); });
}

}  // namespace segnet::onnx
