// segnet/layers/pool.hpp: max pooling that remembers where each maximum was, and SegNet's
// unpooling that puts values back there.
//
//   Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>   // 45x60 -> 23x30 (ceil)
//   Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>          // 23x30 -> 45x60 (stored size)
//
// MaxPool<K>: window K x K, stride K, ceil rounding (Caffe): {C, H, W} -> {C, ceil(H/K),
// ceil(W/K)}; the input must be at least K x K. Unpool<K> only lives in a Decoder: it takes its
// output size and indices from its paired Encoder's pool, so odd sizes round-trip exactly; its
// input must have the pool's channels and the pool's output size.
//
// Windowed and adaptive pooling, as PyTorch (DeepLab, ResNet, PSPNet):
//   MaxPoolWindow<3, 2, 1>        // ResNet's stem pool: 360x480 -> 180x240
//   MaxPoolWindow<3, 1, 1>        // DeepLab-LargeFOV's pool4/pool5: size kept
//   AvgPool<3, 1, 1>              // DeepLab's pool5a
//   AdaptiveAvgPool<6>            // one PSPNet pyramid level: {C, H, W} -> {C, 6, 6}
// MaxPoolWindow<Window, Stride = Window, Pad = 0, Rounding = PoolRounding::floor> and
// AvgPool<...> (the same parameters): output floor((H + 2 Pad - Window) / Stride) + 1, or
// PoolRounding::ceil (backend/pool_geometry.hpp has the exact rule); the padded map must hold a
// window, and Pad <= Window / 2 (PyTorch's rule). Max pooling pads with -inf; AvgPool divides by
// the window's cells including the padding (PyTorch's count_include_pad=True default).
// AdaptiveAvgPool<B>: a B x B grid of bins, bin i reading [floor(i H / B), ceil((i + 1) H / B)).
// None of them is an Encoder's pool (`encoder_pool = false`): Unpool needs MaxPool<K>'s
// window = stride, no padding and indices published to its Decoder. AdaptiveAvgPool declares no
// geometry (its window depends on the input size): the receptive field counts it as pointwise.
// CPU only: make<Cuda> throws (no CUDA kernels yet).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "segnet/backend/ops.hpp"
#include "segnet/backend/pool_geometry.hpp"
#include "segnet/layers/fusion.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

template <class Device>
class MaxPoolLayer final : public LinkedLayer<Device>, public EvalFusion<Device> {
public:
    explicit MaxPoolLayer(int k) : k_(k) {}
    /// The indices stay the layer's own (its Decoder reads them), whichever buffer gets y.
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& y) override {
        eval_pooling(x.extents());
        y.resize(indices_.extents());
        backend::max_pool_forward(x, k_, y, indices_);
        return y;
    }
    /// What forward records for an input of extents `in` (its size; the indices, sized, published
    /// to the link) without pooling: a convolution fused with this pool writes the indices.
    PoolingOutput<Device> eval_pooling(const Extents& in) override {
        in_ = in;
        indices_.resize({in.n, in.c, pooled_extent(in.h, k_), pooled_extent(in.w, k_)});
        if (link_) {
            link_->indices = &indices_;
            link_->pool = k_;
        }
        return {&indices_, k_};
    }
    FusionRole fusion_role() const override { return FusionRole::max_pool; }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(in_);
        backend::max_pool_backward(dy, indices_, dx);
        return dx;
    }
    /// Backward reads only the indices and the input's size.
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return "MaxPool"; }
    const Tensor<Device, std::int32_t>& indices() const { return indices_; }

private:
    using LinkedLayer<Device>::link_;  // an Encoder's pool publishes its indices to its Decoder
    int k_;
    Extents in_{};
    Tensor<Device, std::int32_t> indices_;
};

template <int K>
struct MaxPool {
    static_assert(K >= 2, "MaxPool<K>: K (window and stride) must be at least 2");
    static constexpr std::string_view name = "MaxPool";
    static constexpr ExportSpec export_as{.op = ExportOp::max_pool, .kernel = K, .stride = K, .ceil_mode = true};
    static constexpr int factor = K;
    static constexpr LayerGeometry geometry{K, K, 1};  // window = stride: an Encoder's pool
    static constexpr ShapeResult infer(Dims in) {
        if (in.h != dyn && in.h < K) return ShapeResult::fail(Fault::too_small, K, in.h);
        if (in.w != dyn && in.w < K) return ShapeResult::fail(Fault::too_small, K, in.w);
        return ShapeResult::ok({in.c, pooled_extent(in.h, K), pooled_extent(in.w, K)});
    }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in) { return in.spatial_static() ? in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<MaxPoolLayer<Device>>(K);
    }
};

/// What a windowed or adaptive pooling layer computes per output: a window, or (bins > 0) a
/// bins x bins grid.
struct PoolingSpec {
    backend::PoolWindow window{};
    PoolRounding rounding = PoolRounding::floor;
    int bins = 0;

    backend::PlaneSize output(backend::PlaneSize in) const {
        if (bins > 0) return {bins, bins};
        const auto extent = [&](int e) {
            return backend::windowed_pool_extent(e, window.window, window.stride, window.pad, rounding);
        };
        return {extent(in.h), extent(in.w)};
    }
    backend::PoolSpans spans(backend::PlaneSize in) const {
        return bins > 0 ? backend::adaptive_spans(in, bins) : backend::window_spans(in, window, output(in));
    }
};

enum class PoolOp { max, average };

/// MaxPoolWindow, AvgPool and AdaptiveAvgPool at run time: the spans are recomputed only when the
/// input's size changes; backward reads only them, the max pool's indices and the input's size.
template <class Device>
class SpanPoolLayer final : public RuntimeLayer<Device> {
public:
    SpanPoolLayer(PoolOp op, PoolingSpec spec, std::string_view kind) : op_(op), spec_(spec), kind_(kind) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& y) override {
        if (x.h() != in_.h || x.w() != in_.w) spans_ = spec_.spans({x.h(), x.w()});
        in_ = x.extents();
        y.resize({x.n(), x.c(), int(spans_.rows.size()), int(spans_.cols.size())});
        if (op_ == PoolOp::max) {
            indices_.resize(y.extents());
            backend::window_max_pool_forward(x, spans_, y, indices_);
        } else {
            backend::average_pool_forward(x, spans_, y);
        }
        return y;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(in_);
        if (op_ == PoolOp::max) backend::max_pool_backward(dy, indices_, dx);
        else backend::average_pool_backward(dy, spans_, dx);
        return dx;
    }
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return kind_; }

private:
    PoolOp op_;
    PoolingSpec spec_;
    std::string_view kind_;
    Extents in_{};
    backend::PoolSpans spans_;
    Tensor<Device, std::int32_t> indices_;
    Tensor<Device> y_, dx_;
};

namespace detail {
/// The shape rule of a sliding pooling window: the padded map must hold one window.
constexpr ShapeResult windowed_pool_shape(Dims in, int window, int stride, int pad, PoolRounding rounding) {
    if (in.h != dyn && in.h + 2 * pad < window) return ShapeResult::fail(Fault::too_small, window, in.h + 2 * pad);
    if (in.w != dyn && in.w + 2 * pad < window) return ShapeResult::fail(Fault::too_small, window, in.w + 2 * pad);
    return ShapeResult::ok({in.c, backend::windowed_pool_extent(in.h, window, stride, pad, rounding),
                            backend::windowed_pool_extent(in.w, window, stride, pad, rounding)});
}
/// make<Device> of a pooling layer with CPU kernels only.
template <class Device>
std::unique_ptr<RuntimeLayer<Device>> make_span_pool(PoolOp op, PoolingSpec spec, std::string_view kind) {
    if constexpr (std::is_same_v<Device, Cpu>)
        return std::make_unique<SpanPoolLayer<Device>>(op, spec, kind);
    else
        throw std::runtime_error("segnet: " + std::string(kind) +
                                 " is not implemented on CUDA (no kernel yet); run this network on the CPU");
}

/// What MaxPoolWindow and AvgPool share: the parameters' rules, the shape rule, the counts, the
/// geometry, and that neither is an Encoder's pool.
template <int Window, int Stride, int Pad, PoolRounding Rounding>
struct SlidingPool {
    static_assert(Window >= 1 && Stride >= 1 && Pad >= 0,
                  "MaxPoolWindow / AvgPool<Window, Stride, Pad>: Window and Stride must be positive and Pad not negative");
    static_assert(2 * Pad <= Window, "MaxPoolWindow / AvgPool<Window, Stride, Pad>: Pad must be at most Window / 2 (as "
                                     "PyTorch: no window may lie in the padding alone)");
    static constexpr LayerGeometry geometry{Window, Stride, 1};
    static constexpr bool encoder_pool = false;
    static constexpr ExportSpec export_spec(ExportOp op) {
        return {.op = op, .kernel = Window, .stride = Stride, .pad = Pad, .ceil_mode = Rounding == PoolRounding::ceil};
    }
    static constexpr PoolingSpec spec{{Window, Stride, Pad}, Rounding};
    static constexpr ShapeResult infer(Dims in) { return windowed_pool_shape(in, Window, Stride, Pad, Rounding); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in) {
        return in.spatial_static() ? infer(in).out.elements() * Window * Window : 0;
    }
};
}  // namespace detail

/// Max pooling with any window, stride and padding (PyTorch's nn.MaxPool2d; floor rounding unless
/// PoolRounding::ceil). Not an Encoder's pool: MaxPool<K> is the one Unpool pairs with.
template <int Window, int Stride = Window, int Pad = 0, PoolRounding Rounding = PoolRounding::floor>
struct MaxPoolWindow : detail::SlidingPool<Window, Stride, Pad, Rounding> {
    static constexpr std::string_view name = "MaxPoolWindow";
    static constexpr ExportSpec export_as = MaxPoolWindow::export_spec(ExportOp::max_pool);
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return detail::make_span_pool<Device>(PoolOp::max, MaxPoolWindow::spec, name);
    }
};

/// Average pooling (PyTorch's nn.AvgPool2d with count_include_pad=True: the divisor counts the
/// padded cells a window covers, not the cells ceil rounding adds past the padding).
template <int Window, int Stride = Window, int Pad = 0, PoolRounding Rounding = PoolRounding::floor>
struct AvgPool : detail::SlidingPool<Window, Stride, Pad, Rounding> {
    static constexpr std::string_view name = "AvgPool";
    static constexpr ExportSpec export_as = AvgPool::export_spec(ExportOp::average_pool);
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return detail::make_span_pool<Device>(PoolOp::average, AvgPool::spec, name);
    }
};

/// Average pooling to a Bins x Bins grid (PyTorch's nn.AdaptiveAvgPool2d): PSPNet's pyramid
/// levels (1, 2, 3, 6), DeepLabV3's image pooling (1). Any input size, smaller than the grid
/// included (bins then overlap, as PyTorch). ONNX: GlobalAveragePool for Bins = 1; at a static
/// export size an AveragePool (divisible by Bins) or averaging MatMuls; a symbolic export of
/// Bins > 1 is refused (export/onnx.hpp).
template <int Bins>
struct AdaptiveAvgPool {
    static_assert(Bins >= 1, "AdaptiveAvgPool<Bins>: Bins (the output grid's side) must be at least 1");
    static constexpr std::string_view name = "AdaptiveAvgPool";
    static constexpr ExportSpec export_as{.op = ExportOp::adaptive_average_pool, .kernel = Bins};
    static constexpr bool encoder_pool = false;
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok({in.c, Bins, Bins}); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    /// Each input summed into its bins (about once; bins overlap by at most a row), one division per output.
    static constexpr std::int64_t flops(Dims in) {
        return in.spatial_static() ? in.elements() + std::int64_t(in.c) * Bins * Bins : 0;
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return detail::make_span_pool<Device>(PoolOp::average, {.bins = Bins}, name);
    }
};

template <class Device>
class UnpoolLayer final : public LinkedLayer<Device>, public EvalFusion<Device> {
public:
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& y) override {
        const UnpooledInput<Device> u = eval_unpooled(x);
        in_ = x.extents();
        y.resize(u.extents);
        backend::max_unpool_forward(x, *u.indices, y);
        return y;
    }
    /// The unpooling of x, described: the paired pool's indices, its factor and the size.
    UnpooledInput<Device> eval_unpooled(const Tensor<Device>& x) override {
        if (!link_ || !link_->indices || !link_->published())
            throw std::logic_error("segnet::Unpool: forward before its Encoder ran (no pooling indices)");
        const Extents& pooled = link_->indices->extents();
        if (x.extents() != pooled)
            throw std::invalid_argument("segnet::Unpool: input " + to_string(x.extents()) +
                                        " differs from its paired pool's output " + to_string(pooled));
        const Extents target = link_->feature_size();  // only the size: the map may be gone
        return {&x, link_->indices, link_->pool, {x.n(), x.c(), target.h, target.w}};
    }
    FusionRole fusion_role() const override { return FusionRole::unpool; }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(in_);
        backend::max_unpool_backward(dy, *link_->indices, dx);
        return dx;
    }
    /// Backward reads only its pool's indices and the input's size.
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return "Unpool"; }

private:
    using LinkedLayer<Device>::link_;
    Extents in_{};
};

namespace detail {
/// The rule shared by every decoder upsampler: its input is the paired pool's output.
constexpr ShapeResult check_upsample_input(Dims in, SkipDims skip, int factor) {
    if (!extents_may_match(in.h, pooled_extent(skip.feature.h, factor)))
        return ShapeResult::fail(Fault::upsample_size, pooled_extent(skip.feature.h, factor), in.h);
    if (!extents_may_match(in.w, pooled_extent(skip.feature.w, factor)))
        return ShapeResult::fail(Fault::upsample_size, pooled_extent(skip.feature.w, factor), in.w);
    return ShapeResult::ok(in);
}
}  // namespace detail

template <int K>
struct Unpool {
    static_assert(K >= 2, "Unpool<K>: K must be at least 2 (and equal to its paired MaxPool's)");
    static constexpr std::string_view name = "Unpool";
    static constexpr ExportSpec export_as{.op = ExportOp::unpool, .kernel = K, .stride = K};
    static constexpr int factor = K;
    static constexpr LayerGeometry geometry{1, 1, K};  // one pooled value per output
    /// It reads only its Encoder's pooling indices (and the map's size).
    static constexpr SkipStorage skip_storage(Dims, SkipDims) { return {true, 0, false}; }
    static constexpr ShapeResult infer(Dims in, SkipDims skip) {
        if (skip.pool != K) return ShapeResult::fail(Fault::unpool_factor, skip.pool, K);
        if (in.c != skip.feature.c) return ShapeResult::fail(Fault::unpool_channels, skip.feature.c, in.c);
        if (auto r = detail::check_upsample_input(in, skip, K); r.fault != Fault::none) return r;
        return ShapeResult::ok({in.c, skip.feature.h, skip.feature.w});
    }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims, SkipDims) { return 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<UnpoolLayer<Device>>();
    }
};

}  // namespace segnet
