// segnet/layers/skip.hpp: skip policies, what a Decoder takes from its Encoder besides the size.
//
//   Decoder<Unpool<2>, Block<Conv<64, 7, Bias::without>, BatchNorm>>                // indices only (SegNet)
//   Decoder<Unpool<2>, Add, Block<...>>                                             // + encoder maps (EncoderAddition)
//   Decoder<TransposedConv<11, 4, 2>, AddProjected<11, 64>, Block<...>>             // + 1x1-reduced maps (FCN)
//   Decoder<TransposedConv<64, 4, 2>, NoSkip, Block<...>>                           // nothing (FCN-NoAddition)
//   Decoder<TransposedConv<64, 4, 2>, Concat, Block<Conv<64, 3>, BatchNorm, ReLU>>  // U-Net: 64 + 64 channels
//
// Each policy is a paired layer placed after the decoder's upsampler (Unpool, BilinearUpsample,
// TransposedConv), so a network's type says which one each decoder uses, and the analysis
// (compose/analysis.hpp) knows what each keeps: storage multiplier, memory, receptive field.
// Indices-only is Unpool itself; Add lives in layers/add.hpp. Mismatched maps are compile-time
// errors (static sizes) or one run-time error, never padded or cropped.
//
//   AddProjected<C, F>  y = x + W * feature, W a learned 1x1 convolution F -> C without bias
//                       (FCN's score_pool layers); x has C channels, the feature F. Parameter
//                       "weight" [C, F, 1, 1], He initialised. Backward: dx = dy, dW += dy *
//                       feature^T, and W^T * dy to the encoder's map through the SkipLink.
//   Concat              y = [x, feature] along channels (x first): C + F channels; backward
//                       splits dy. No parameters.
//   NoSkip              y = x: states in the type that the decoder reads nothing.
#pragma once

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

namespace detail {
/// Both maps must have the same size (the upsampler restored the encoder's); the rule shared by
/// the policies that read the encoder's values.
constexpr ShapeResult check_skip_size(Dims in, SkipDims skip) {
    if (!extents_may_match(in.h, skip.feature.h)) return ShapeResult::fail(Fault::skip_size, skip.feature.h, in.h);
    if (!extents_may_match(in.w, skip.feature.w)) return ShapeResult::fail(Fault::skip_size, skip.feature.w, in.w);
    return ShapeResult::ok(in);
}

template <class Device>
const Tensor<Device>& require_feature(SkipLink<Device>* link, std::string_view kind) {
    if (!link || !link->feature)
        throw std::logic_error("segnet::" + std::string(kind) + ": forward before its Encoder ran");
    return *link->feature;
}
}  // namespace detail

// --- NoSkip -----------------------------------------------------------------------------------

template <class Device>
class NoSkipLayer final : public RuntimeLayer<Device> {
public:
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode) override { return x; }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return dy; }
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return "NoSkip"; }
};

/// The decoder reads nothing from its Encoder (besides the size its upsampler restores).
struct NoSkip {
    static constexpr std::string_view name = "NoSkip";
    static constexpr ExportSpec export_as{};
    static constexpr bool passes_input_through = true;  // its output is its input: no new map
    static constexpr ShapeResult infer(Dims in, SkipDims) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims, SkipDims) { return 0; }
    static constexpr SkipStorage skip_storage(Dims, SkipDims) { return {}; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<NoSkipLayer<Device>>();
    }
};

// --- AddProjected -----------------------------------------------------------------------------

template <class Device>
class AddProjectedLayer final : public LinkedLayer<Device> {
public:
    AddProjectedLayer(int channels, int feature_channels) : c_(channels), f_(feature_channels) {
        weight_.resize({c_, f_, 1, 1});
        weight_grad_.resize(weight_.extents());
    }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        const Tensor<Device>& feature = detail::require_feature(link_, kind());
        const Extents& fe = feature.extents();
        if (x.c() != c_ || fe.c != f_ || x.n() != fe.n || x.h() != fe.h || x.w() != fe.w)
            throw std::invalid_argument("segnet::AddProjected: decoder map " + to_string(x.extents()) +
                                        " and encoder map " + to_string(fe) + " do not fit a projection " +
                                        std::to_string(f_) + " -> " + std::to_string(c_) + " channels");
        out.resize(x.extents());
        backend::conv2d_forward(feature, weight_, nullptr, out, geometry(x));  // the projection...
        backend::add(x, out, out);                                            // ...plus x, in place
        return out;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override {
        const Tensor<Device>& feature = *link_->feature;
        const auto g = geometry(dy);
        backend::conv2d_backward_filter(feature, dy, weight_grad_, nullptr, g);
        link_->send_feature_grad(feature.extents(), [&](Tensor<Device>& grad, bool add) {
            if (!add) return backend::conv2d_backward_data(dy, weight_, grad, g);
            feature_grad_.resize(feature.extents());  // W^T * dy here, then added
            backend::conv2d_backward_data(dy, weight_, feature_grad_, g);
            backend::accumulate(feature_grad_, grad);
        });
        return dy;
    }
    /// Backward reads the encoder's map (the projection's weight gradient), not x or the output;
    /// d loss / d input is dy itself.
    TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = false, .reads_output = false, .reads_feature = true};
    }
    void initialize(Rng& rng) override {
        const float stddev = std::sqrt(2.f / float(f_));
        std::vector<float> w(std::size_t(weight_.size()));
        for (auto& v : w) v = rng.normal(0.f, stddev);
        backend::upload(w, weight_);
    }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        detail::add_param(out, prefix + "weight", weight_, &weight_grad_, {c_, f_, 1, 1}, true);
    }
    std::string_view kind() const override { return "AddProjected"; }

private:
    using LinkedLayer<Device>::link_;
    backend::ConvGeometry geometry(const Tensor<Device>& x) const {
        return {f_, x.h(), x.w(), c_, x.h(), x.w(), 1, 1, 0, 1};
    }
    int c_, f_;
    Tensor<Device> weight_, weight_grad_, feature_grad_;
};

/// Adds the paired Encoder's FeatureC-channel map, reduced to C channels by a learned 1x1
/// convolution (FCN's skip). FeatureC is part of the type because the weight's shape must be
/// known when the model is built; a different encoder width is a compile-time error.
template <int C, int FeatureC>
struct AddProjected {
    static_assert(C > 0 && FeatureC > 0, "AddProjected<C, FeatureC>: both channel counts must be positive");
    static constexpr std::string_view name = "AddProjected";
    static constexpr ExportSpec export_as{.op = ExportOp::add_projected_skip};
    static constexpr int channels = C, feature_channels = FeatureC;
    static constexpr ShapeResult infer(Dims in, SkipDims skip) {
        if (skip.feature.c != FeatureC) return ShapeResult::fail(Fault::skip_channels, FeatureC, skip.feature.c);
        if (in.c != C) return ShapeResult::fail(Fault::skip_channels, C, in.c);
        return detail::check_skip_size(in, skip);
    }
    static constexpr std::int64_t parameter_count(Dims) { return std::int64_t(C) * FeatureC; }
    static constexpr std::int64_t flops(Dims in, SkipDims) {
        return in.spatial_static() ? (2LL * FeatureC + 1) * C * in.h * in.w : 0;
    }
    /// FCN keeps the reduced maps (the projection can run when the encoder does): C channels.
    static constexpr SkipStorage skip_storage(Dims, SkipDims) { return {false, C, true}; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<AddProjectedLayer<Device>>(C, FeatureC);
    }
};

// --- Concat -----------------------------------------------------------------------------------

template <class Device>
class ConcatLayer final : public LinkedLayer<Device> {
public:
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        const Tensor<Device>& feature = detail::require_feature(link_, kind());
        const Extents& fe = feature.extents();
        if (x.n() != fe.n || x.h() != fe.h || x.w() != fe.w)
            throw std::invalid_argument("segnet::Concat: decoder map " + to_string(x.extents()) +
                                        " and encoder map " + to_string(fe) + " differ in size");
        in_ = x.extents();
        out.resize({x.n(), x.c() + fe.c, x.h(), x.w()});
        backend::copy_channels(x, 0, out, 0, x.c());
        backend::copy_channels(feature, 0, out, x.c(), fe.c);
        return out;
    }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(in_);
        backend::copy_channels(dy, 0, dx, 0, in_.c);
        const Extents fe = link_->feature_size();  // only the size: the map's buffer may be reused
        link_->send_feature_grad(fe, [&](Tensor<Device>& grad, bool add) {
            backend::copy_channels(dy, in_.c, grad, 0, fe.c, add);
        });
        return dx;
    }
    /// Backward only splits dy: it reads the sizes it recorded, no values of the forward pass.
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return "Concat"; }

private:
    using LinkedLayer<Device>::link_;
    Extents in_{};
};

/// Appends the paired Encoder's map to the decoder's along channels (U-Net): {C, H, W} and an
/// encoder map {F, H, W} give {C + F, H, W}.
struct Concat {
    static constexpr std::string_view name = "Concat";
    static constexpr ExportSpec export_as{.op = ExportOp::concat_skip};
    static constexpr ShapeResult infer(Dims in, SkipDims skip) {
        if (auto r = detail::check_skip_size(in, skip); r.fault != Fault::none) return r;
        return ShapeResult::ok({in.c + skip.feature.c, in.h, in.w});
    }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims, SkipDims) { return 0; }
    static constexpr SkipStorage skip_storage(Dims, SkipDims skip) { return {false, skip.feature.c, true}; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<ConcatLayer<Device>>();
    }
};

}  // namespace segnet
