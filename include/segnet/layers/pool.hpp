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
#pragma once

#include <memory>
#include <stdexcept>

#include "segnet/backend/ops.hpp"
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
    static constexpr ExportSpec export_as{.op = ExportOp::max_pool, .kernel = K, .stride = K};
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
