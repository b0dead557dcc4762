// segnet/compose/branches.hpp: composite layers, which run other layers inside them: parallel
// branches merged by a sum or a channel concatenation, the residual block, and a path resized
// back to its input's size (bilinear, as PyTorch's align_corners=False).
//
//   using Bottleneck = Residual<Block<Conv<64, 1, Bias::without>, BatchNorm, ReLU,
//                                     Conv<64, 3, Bias::without>, BatchNorm, ReLU,
//                                     Conv<256, 1, Bias::without>, BatchNorm>,
//                               Block<Conv<256, 1, Bias::without>, BatchNorm>>;   // projection
//   using Pyramid = Branches<Merge::concat, Identity,                                 // PSPNet's shape
//                            ResizedToInput<Block<MaxPool<2>, Conv<512, 1>, BatchNorm, ReLU>>, ...>;
//   using Net = Network<Input<3, dyn, dyn>, ResizedToInput<Block<...backbone..., Classifier<21>>>>;
//
// Each is a layer of the ONE contract (layers/layer.hpp): a Network, Block or path holds it like
// any layer, and it nests. Its static members come from its paths by the network's own walk
// (compose/analysis.hpp's Walker runs each path from the composite's input): shapes, parameter
// count, FLOPs, the maps its children keep (inner_activation_elements), the receptive field
// (the largest of the paths'). A path is a layer or a Block, never a paired layer (Unpool, Add:
// they read a Decoder's Encoder, which a path does not have). Faults name the branch:
// Fault::branch_channels (a summed branch's channels differ from the first branch's) and
// Fault::branch_size (a branch ends at another size), reported by branch_check
// (compose/diagnostics.hpp) with the stage, layer, branch (1-based) and the two numbers.
//
//   Branches<Merge::sum, P...>     y = P1(x) + P2(x) + ...; equal C, H, W
//   Branches<Merge::concat, P...>  y = [P1(x), P2(x), ...] along channels; equal H, W
//   Residual<Body, Shortcut = Identity>   y = ReLU(Body(x) + Shortcut(x)) (torchvision's Bottleneck
//                                  and BasicBlock put the ReLU after the add)
//   ResizedToInput<Path>           y = Path(x) resized bilinearly to x's height and width
//   CroppedToInput<Path>           y = Path(x)'s top-left x.h x x.w window (FCN's crop)
//   Identity                       y = x (a shortcut or a pyramid's pass-through branch)
//
// The run-time object owns its children's run-time objects and names their parameters under its
// own prefix: path i of Branches as "branch<i>.<j>." (j: the layer's position, Blocks
// flattened), a Residual's as "body.<j>." and "shortcut.<j>.", ResizedToInput's path as "<j>."
// (no level of its own), e.g. "stage3.2.branch1.0.weight". Forward runs the paths one after the
// other on the same input, each layer in its own buffers (train mode keeps them all for
// backward, which sends dy down every path and sums the input gradients). Every composite
// declares its paths (`path_list`, `path_name(i)`: the Composite concept) and an export_as naming
// its merge, from which export/onnx.hpp writes the paths and the merge (a path holding a layer
// without export_as is still a compile-time error naming that layer). Not yet: its children keep
// their maps in their own buffers in eval mode too (the model's buffer pool does not reuse them;
// the inference-memory query counts them), and make<Cuda> throws. The model reaches the layers
// inside through CompositeRuntime (a Dropout's RandomLayer switches).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/compose/analysis.hpp"
#include "segnet/compose/stages.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

enum class Merge { sum, concat };

/// The paths of a composite, in order (its `path_list`).
template <class... Paths>
struct PathList {};

/// A composite layer: its paths' types and the name each path's parameters go under ("" adds no
/// level: the path's layers are named as the composite's own).
template <class L>
concept Composite = requires(int i) {
    typename L::path_list;
    { L::path_name(i) } -> std::convertible_to<std::string>;
};

/// Calls f.template operator()<Path>(index) for each path of the composite L (index from 0).
template <Composite L, class F>
constexpr void each_path(F&& f) {
    [&]<class... Paths>(PathList<Paths...>) {
        int index = 0;
        (f.template operator()<Paths>(index++), ...);
    }(typename L::path_list{});
}

// --- the static side: each path walked by the network's per-layer rule ------------------------

namespace detail {

/// What one path (a layer or a Block) gives for an input: its result and its totals.
struct PathWalk {
    ShapeResult result{};
    std::int64_t parameters = 0, flops = 0, activations = 0;
};

template <class Path>
constexpr PathWalk walk_path(Dims in) {
    Walker<> w;
    w.cur = in;
    w.template element<Path>(nullptr, -1);
    if (w.failed()) return {ShapeResult::fail(w.a.diag.fault, w.a.diag.expected, w.a.diag.actual), 0, 0, 0};
    return {ShapeResult::ok(w.cur), w.a.parameters, w.a.flops, w.a.activation_elements};
}

/// A path's receptive field (rf input pixels, adjacent outputs jump pixels apart), by the rule the
/// network's walk applies per layer.
template <class E>
constexpr void path_geometry(int& rf, int& jump) {
    if constexpr (is_block_v<E>) E::each([&]<class L>() { path_geometry<L>(rf, jump); });
    else if constexpr (Layer<E>) apply_geometry(geometry_of<E>, rf, jump);
}

/// Paths merged by Merge: the shape rule and totals shared by Branches and Residual.
template <Merge M, class... Paths>
struct MergedPaths {
    static_assert(sizeof...(Paths) >= 1, "Branches<Merge, Paths...>: at least one path");
    static_assert((well_formed_v<Paths> && ...),
                  "Branches<Merge, Paths...> / Residual<Body, Shortcut> / ResizedToInput<Path>: every path is a "
                  "segnet layer or a Block<...> of layers");

    template <class F>
    static constexpr void each(F&& f) {
        int branch = 0;
        (f.template operator()<Paths>(++branch), ...);
    }
    /// The merged walk: the output and totals, or the first fault with its branch (1-based).
    static constexpr PathWalk walk(Dims in) {
        PathWalk merged{};
        each([&]<class P>(int branch) {
            if (merged.result.fault != Fault::none) return;
            const PathWalk p = walk_path<P>(in);
            const Dims o = p.result.out;
            ShapeResult& m = merged.result;
            if (p.result.fault != Fault::none) m = ShapeResult::fail(p.result.fault, p.result.expected, p.result.actual, branch);
            else if (branch > 1 && M == Merge::sum && o.c != m.out.c)
                m = ShapeResult::fail(Fault::branch_channels, m.out.c, o.c, branch);
            else if (branch > 1 && !extents_may_match(o.h, m.out.h)) m = ShapeResult::fail(Fault::branch_size, m.out.h, o.h, branch);
            else if (branch > 1 && !extents_may_match(o.w, m.out.w)) m = ShapeResult::fail(Fault::branch_size, m.out.w, o.w, branch);
            if (m.fault != Fault::none) return;
            if (branch == 1) m = p.result;
            else {
                if (M == Merge::concat) m.out.c += o.c;
                if (m.out.h == dyn) m.out.h = o.h;  // a static size wins over "not yet known"
                if (m.out.w == dyn) m.out.w = o.w;
            }
            merged.parameters += p.parameters;
            merged.flops += p.flops;
            merged.activations += p.activations;
        });
        // The merge itself: one add per value and extra branch (a concatenation copies).
        const Dims out = merged.result.out;
        if (M == Merge::sum && out.spatial_static()) merged.flops += (sizeof...(Paths) - 1) * out.elements();
        return merged;
    }
    /// The largest receptive field of the paths; their stride (equal sizes: equal strides).
    static constexpr LayerGeometry geometry = [] {
        LayerGeometry g{1, 1, 1};
        each([&]<class P>(int branch) {
            int rf = 1, jump = 1;
            path_geometry<P>(rf, jump);
            if (rf > g.window) g.window = rf;
            if (branch == 1) g.down = jump;
        });
        return g;
    }();
};

}  // namespace detail

// --- the run-time side ---------------------------------------------------------------------------

/// One path's run-time layers, applied in order (each in its own buffers).
template <class Device>
class LayerChain {
public:
    std::vector<std::unique_ptr<RuntimeLayer<Device>>> layers;

    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) {
        const Tensor<Device>* t = &x;
        for (auto& l : layers) t = &l->forward(*t, mode);
        return *t;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) {
        const Tensor<Device>* g = &dy;
        for (auto l = layers.rbegin(); l != layers.rend(); ++l) g = &(*l)->backward(*g);
        return *g;
    }
    void initialize(Rng& rng) {
        for (auto& l : layers) l->initialize(rng);
    }
    /// "<prefix><j>.weight" for the path's layer j.
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) {
        for (std::size_t j = 0; j < layers.size(); ++j) layers[j]->collect(out, prefix + std::to_string(j) + ".");
    }
};

namespace detail {
/// Makes a path's layers, each for its input size, in the network walk's order.
template <class Device>
struct ChainBuilder {
    LayerChain<Device>& chain;
    template <class L>
    void layer(Dims in, int, int, int) {
        chain.layers.push_back(L::template make<Device>(in));
    }
    void tap(int) {}
    void begin_stage(StageKind, int, int, bool) {}
};

template <class Path, class Device>
LayerChain<Device> make_chain(Dims in) {
    LayerChain<Device> chain;
    ChainBuilder<Device> builder{chain};
    Walker<ChainBuilder<Device>> w;
    w.visitor = &builder;
    w.cur = in;
    w.template element<Path>(nullptr, -1);
    return chain;
}

/// A composite's paths' run-time layers and the names their parameters go under.
template <class Device>
struct CompositePaths {
    std::vector<LayerChain<Device>> chains;
    std::vector<std::string> names;
};
template <class L, class Device>
CompositePaths<Device> make_paths(Dims in) {
    CompositePaths<Device> out;
    each_path<L>([&]<class P>(int index) {
        out.chains.push_back(make_chain<P, Device>(in));
        out.names.push_back(L::path_name(index));
    });
    return out;
}

[[noreturn]] inline void composite_not_on_cuda(std::string_view name) {
    throw std::runtime_error("segnet: " + std::string(name) +
                             " is not implemented on CUDA (no composite layers there yet); run this network on the CPU");
}
}  // namespace detail

/// What every composite's run-time object does with its paths: initialise them and name their
/// parameters (path i under prefix + names[i] + "."; an empty name adds no level).
template <class Device>
class CompositeLayer : public RuntimeLayer<Device>, public CompositeRuntime<Device> {
public:
    explicit CompositeLayer(detail::CompositePaths<Device> paths)
        : paths_(std::move(paths.chains)), names_(std::move(paths.names)) {}
    void each_child(const std::function<void(RuntimeLayer<Device>&)>& f) override {
        for (auto& p : paths_)
            for (auto& l : p.layers) f(*l);
    }
    void initialize(Rng& rng) override {
        for (auto& p : paths_) p.initialize(rng);
    }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        for (std::size_t i = 0; i < paths_.size(); ++i)
            paths_[i].collect(out, names_[i].empty() ? prefix : prefix + names_[i] + ".");
    }

protected:
    std::vector<LayerChain<Device>> paths_;
    std::vector<std::string> names_;
};

/// Branches and Residual at run time: the paths on one input, summed or concatenated, then (a
/// residual block) a ReLU.
template <class Device>
class MergeLayer final : public CompositeLayer<Device> {
public:
    MergeLayer(detail::CompositePaths<Device> paths, Merge merge, bool relu, std::string_view kind)
        : CompositeLayer<Device>(std::move(paths)), merge_(merge), relu_(relu), kind_(kind) {
        path_dy_.resize(this->paths_.size());
    }
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override {
        in_ = x.extents();
        // Each path's result stays in its last layer's buffer (or is x) while the others run.
        std::vector<const Tensor<Device>*> results;
        outs_.clear();
        for (auto& p : this->paths_) {
            results.push_back(&p.forward(x, mode));
            outs_.push_back(results.back()->extents());
        }
        const Extents first = outs_[0];
        int channels = 0;
        for (std::size_t i = 0; i < outs_.size(); ++i) {
            const Extents e = outs_[i];
            if (e.n != first.n || e.h != first.h || e.w != first.w || (merge_ == Merge::sum && e.c != first.c))
                throw std::invalid_argument("segnet::" + std::string(kind_) + ": branch " + std::to_string(i + 1) +
                                            " gives " + to_string(e) + ", branch 1 " + to_string(first) +
                                            (merge_ == Merge::sum ? " (a sum needs equal maps)" : " (sizes differ)"));
            channels += e.c;
        }
        Tensor<Device>& merged = relu_ ? sum_ : y_;
        if (merge_ == Merge::sum) {
            merged.resize(first);
            backend::copy(*results[0], merged);
            for (std::size_t i = 1; i < results.size(); ++i) backend::accumulate(*results[i], merged);
        } else {
            merged.resize({first.n, channels, first.h, first.w});
            int c0 = 0;
            for (std::size_t i = 0; i < results.size(); ++i) {
                backend::copy_channels(*results[i], 0, merged, c0, outs_[i].c);
                c0 += outs_[i].c;
            }
        }
        if (!relu_) return y_;
        y_.resize(sum_.extents());
        backend::relu_forward(sum_, y_);
        return y_;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override {
        const Tensor<Device>* d_merged = &dy;
        if (relu_) {
            d_sum_.resize(dy.extents());
            backend::relu_backward(y_, dy, d_sum_);
            d_merged = &d_sum_;
        }
        dx_.resize(in_);
        int c0 = 0;
        for (std::size_t i = 0; i < this->paths_.size(); ++i) {
            const Tensor<Device>* d_path = d_merged;
            if (merge_ == Merge::concat) {
                path_dy_[i].resize(outs_[i]);
                backend::copy_channels(*d_merged, c0, path_dy_[i], 0, outs_[i].c);
                c0 += outs_[i].c;
                d_path = &path_dy_[i];
            }
            const Tensor<Device>& g = this->paths_[i].backward(*d_path);
            if (i == 0) backend::copy(g, dx_);
            else backend::accumulate(g, dx_);
        }
        return dx_;
    }
    std::string_view kind() const override { return kind_; }

private:
    Merge merge_;
    bool relu_;
    std::string_view kind_;
    Extents in_{};
    std::vector<Extents> outs_;
    std::vector<Tensor<Device>> path_dy_;
    Tensor<Device> sum_, y_, d_sum_, dx_;
};

/// ResizedToInput at run time: the path, then its result resized bilinearly to the input's size.
template <class Device>
class ResizedLayer final : public CompositeLayer<Device> {
public:
    explicit ResizedLayer(detail::CompositePaths<Device> path) : CompositeLayer<Device>(std::move(path)) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override {
        const Tensor<Device>& t = this->paths_[0].forward(x, mode);
        path_out_ = t.extents();
        y_.resize({t.n(), t.c(), x.h(), x.w()});
        backend::bilinear_resize_forward(t, y_);
        return y_;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override {
        d_path_.resize(path_out_);
        backend::bilinear_resize_backward(dy, d_path_);
        return this->paths_[0].backward(d_path_);
    }
    std::string_view kind() const override { return "ResizedToInput"; }

private:
    Extents path_out_{};
    Tensor<Device> y_, d_path_;
};

/// CroppedToInput at run time: the path, then the top-left part of its result of the input's size.
template <class Device>
class CroppedLayer final : public CompositeLayer<Device> {
public:
    explicit CroppedLayer(detail::CompositePaths<Device> path) : CompositeLayer<Device>(std::move(path)) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override {
        const Tensor<Device>& t = this->paths_[0].forward(x, mode);
        path_out_ = t.extents();
        if (t.h() < x.h() || t.w() < x.w())
            throw std::invalid_argument("segnet::CroppedToInput: the path gives " + to_string(t.extents()) +
                                        ", smaller than its input " + to_string(x.extents()));
        y_.resize({t.n(), t.c(), x.h(), x.w()});
        copy_window(t, y_, false);
        return y_;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override {
        d_path_.resize(path_out_);
        d_path_.zero();  // the cropped-off rows and columns had no effect on the loss
        copy_window(dy, d_path_, true);
        return this->paths_[0].backward(d_path_);
    }
    std::string_view kind() const override { return "CroppedToInput"; }

private:
    /// Copies the top-left window the two maps share: from the large map (into the small), or
    /// into the large one (`into_large`).
    static void copy_window(const Tensor<Device>& from, Tensor<Device>& to, bool into_large) {
        const Extents& large = into_large ? to.extents() : from.extents();
        const Extents& small = into_large ? from.extents() : to.extents();
        for (int n = 0; n < small.n; ++n)
            for (int c = 0; c < small.c; ++c)
                for (int y = 0; y < small.h; ++y) {
                    const std::int64_t s_row = ((std::int64_t(n) * small.c + c) * small.h + y) * small.w;
                    const std::int64_t l_row = ((std::int64_t(n) * large.c + c) * large.h + y) * large.w;
                    const float* src = from.data() + (into_large ? s_row : l_row);
                    std::copy(src, src + small.w, to.data() + (into_large ? l_row : s_row));
                }
    }
    Extents path_out_{};
    Tensor<Device> y_, d_path_;
};

// --- the layer types -------------------------------------------------------------------------------

/// y = x: a residual block's identity shortcut, a pyramid's pass-through branch. No parameters.
template <class Device>
class IdentityLayer final : public RuntimeLayer<Device> {
public:
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode) override { return x; }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return dy; }
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return "Identity"; }
};

struct Identity {
    static constexpr std::string_view name = "Identity";
    static constexpr bool passes_input_through = true;
    static constexpr ExportSpec export_as{};
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims) { return 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<IdentityLayer<Device>>();
    }
};

/// Parallel paths on one input, merged by a sum (equal maps) or along channels (equal sizes).
template <Merge M, class... Paths>
struct Branches {
    using paths = detail::MergedPaths<M, Paths...>;
    using path_list = PathList<Paths...>;
    static constexpr std::string_view name = M == Merge::sum ? "Branches<sum>" : "Branches<concat>";
    static constexpr ExportSpec export_as{.op = M == Merge::sum ? ExportOp::merge_sum : ExportOp::merge_concat};
    static std::string path_name(int index) { return "branch" + std::to_string(index); }
    static constexpr LayerGeometry geometry = paths::geometry;
    static constexpr ShapeResult infer(Dims in) { return paths::walk(in).result; }
    static constexpr std::int64_t parameter_count(Dims in) { return paths::walk(in).parameters; }
    static constexpr std::int64_t flops(Dims in) { return paths::walk(in).flops; }
    static constexpr std::int64_t inner_activation_elements(Dims in) { return paths::walk(in).activations; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        if constexpr (!std::is_same_v<Device, Cpu>) detail::composite_not_on_cuda(name);
        else {
            return std::make_unique<MergeLayer<Device>>(detail::make_paths<Branches, Device>(in), M, false, name);
        }
    }
};

/// ReLU(Body(x) + Shortcut(x)): ResNet's residual block, with the identity or a projection (any
/// layer or Block: Block<Conv<C, 1, Bias::without>, BatchNorm>, strided when the body is) as
/// the shortcut. A fault in the body is branch 1, in the shortcut branch 2.
template <class Body, class Shortcut = Identity>
struct Residual {
    using paths = detail::MergedPaths<Merge::sum, Body, Shortcut>;
    using path_list = PathList<Body, Shortcut>;
    static constexpr std::string_view name = "Residual";
    static constexpr ExportSpec export_as{.op = ExportOp::residual};
    static std::string path_name(int index) { return index == 0 ? "body" : "shortcut"; }
    static constexpr LayerGeometry geometry = paths::geometry;
    static constexpr ShapeResult infer(Dims in) { return paths::walk(in).result; }
    static constexpr std::int64_t parameter_count(Dims in) { return paths::walk(in).parameters; }
    /// The paths, the add and the ReLU.
    static constexpr std::int64_t flops(Dims in) {
        const detail::PathWalk w = paths::walk(in);
        return w.flops + (w.result.out.spatial_static() ? w.result.out.elements() : 0);
    }
    /// The paths' maps and the sum before the ReLU (its backward reads the ReLU's output).
    static constexpr std::int64_t inner_activation_elements(Dims in) {
        const detail::PathWalk w = paths::walk(in);
        return w.activations + (w.result.out.spatial_static() ? w.result.out.elements() : 0);
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        if constexpr (!std::is_same_v<Device, Cpu>) detail::composite_not_on_cuda(name);
        else {
            return std::make_unique<MergeLayer<Device>>(detail::make_paths<Residual, Device>(in), Merge::sum, true, name);
        }
    }
};

/// Path(x) resized bilinearly (PyTorch's F.interpolate(..., mode="bilinear", align_corners=False))
/// to x's height and width: a pyramid's pooled branch back to the pyramid's input size, or a
/// whole network's body back to the network's input size (DeepLab's final upsampling).
template <class Path>
struct ResizedToInput {
    static_assert(well_formed_v<Path>, "ResizedToInput<Path>: Path is a segnet layer or a Block<...> of layers");
    using path_list = PathList<Path>;
    static constexpr std::string_view name = "ResizedToInput";
    static constexpr ExportSpec export_as{.op = ExportOp::resize_to_input};
    static std::string path_name(int) { return ""; }  // the path's layers are named as the composite's own: "<j>."
    /// The path's field, plus the two source values each output interpolates at its stride.
    static constexpr LayerGeometry geometry = [] {
        int rf = 1, jump = 1;
        detail::path_geometry<Path>(rf, jump);
        return LayerGeometry{rf + jump, 1, 1};
    }();
    static constexpr ShapeResult infer(Dims in) {
        const ShapeResult r = detail::walk_path<Path>(in).result;
        if (r.fault != Fault::none) return ShapeResult::fail(r.fault, r.expected, r.actual, 1);
        return ShapeResult::ok({r.out.c, in.h, in.w});
    }
    static constexpr std::int64_t parameter_count(Dims in) { return detail::walk_path<Path>(in).parameters; }
    /// The path, then 4 multiply-adds per output value.
    static constexpr std::int64_t flops(Dims in) {
        const detail::PathWalk w = detail::walk_path<Path>(in);
        return w.flops + (in.spatial_static() ? 8LL * w.result.out.c * in.h * in.w : 0);
    }
    static constexpr std::int64_t inner_activation_elements(Dims in) { return detail::walk_path<Path>(in).activations; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        if constexpr (!std::is_same_v<Device, Cpu>) detail::composite_not_on_cuda(name);
        else return std::make_unique<ResizedLayer<Device>>(detail::make_paths<ResizedToInput, Device>(in));
    }
};

/// Path(x) cropped to x's height and width, keeping the top-left rows and columns: FCN's crop
/// layers with offset 0 (a transposed convolution's 2 ceil(H / 2) rows back to the H of the map it
/// is added to). The path must give at least the input's size (Fault::crop_size).
template <class Path>
struct CroppedToInput {
    static_assert(well_formed_v<Path>, "CroppedToInput<Path>: Path is a segnet layer or a Block<...> of layers");
    using path_list = PathList<Path>;
    static constexpr std::string_view name = "CroppedToInput";
    static constexpr ExportSpec export_as{.op = ExportOp::crop_to_input};
    static std::string path_name(int) { return ""; }  // the path's layers are named as the composite's own: "<j>."
    static constexpr LayerGeometry geometry = [] {
        int rf = 1, jump = 1;
        detail::path_geometry<Path>(rf, jump);
        return LayerGeometry{rf, 1, 1};
    }();
    static constexpr ShapeResult infer(Dims in) {
        const ShapeResult r = detail::walk_path<Path>(in).result;
        if (r.fault != Fault::none) return ShapeResult::fail(r.fault, r.expected, r.actual, 1);
        if (in.h != dyn && r.out.h != dyn && r.out.h < in.h) return ShapeResult::fail(Fault::crop_size, in.h, r.out.h, 1);
        if (in.w != dyn && r.out.w != dyn && r.out.w < in.w) return ShapeResult::fail(Fault::crop_size, in.w, r.out.w, 1);
        return ShapeResult::ok({r.out.c, in.h, in.w});
    }
    static constexpr std::int64_t parameter_count(Dims in) { return detail::walk_path<Path>(in).parameters; }
    static constexpr std::int64_t flops(Dims in) { return detail::walk_path<Path>(in).flops; }
    static constexpr std::int64_t inner_activation_elements(Dims in) { return detail::walk_path<Path>(in).activations; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        if constexpr (!std::is_same_v<Device, Cpu>) detail::composite_not_on_cuda(name);
        else return std::make_unique<CroppedLayer<Device>>(detail::make_paths<CroppedToInput, Device>(in));
    }
};

}  // namespace segnet
