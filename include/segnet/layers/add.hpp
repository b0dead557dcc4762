// segnet/layers/add.hpp: adds the paired Encoder's feature map onto the decoder's map
// (SegNet-Basic-EncoderAddition, FCN's skip connections).
//
//   Decoder<Unpool<2>, Add, Block<Conv<64, 7, Bias::without>, BatchNorm>>
//
// Lives in a Decoder, after the upsampler: both maps must have the same channels and size
// (checked at compile time when sizes are static). Its backward sends the same gradient to
// the decoder path and, through the SkipLink, to the encoder's feature map. No silent fixes:
// mismatched maps are an error, never zero-padded.
#pragma once

#include <memory>
#include <stdexcept>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

template <class Device>
class AddLayer final : public LinkedLayer<Device> {
public:
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& y) override {
        if (!link_ || !link_->feature) throw std::logic_error("segnet::Add: forward before its Encoder ran");
        if (x.extents() != link_->feature->extents())
            throw std::invalid_argument("segnet::Add: decoder map " + to_string(x.extents()) +
                                        " differs from the encoder map " + to_string(link_->feature->extents()));
        y.resize(x.extents());
        backend::add(x, *link_->feature, y);
        return y;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override {
        link_->send_feature_grad(dy.extents(), [&](Tensor<Device>& grad, bool add) {
            if (add) backend::accumulate(dy, grad);
            else backend::copy(dy, grad);
        });
        return dy;
    }
    /// Backward reads nothing of the forward pass (d loss / d input is dy itself).
    TrainBufferUse train_buffer_use() const override { return TrainBufferUse::sizes_only(); }
    std::string_view kind() const override { return "Add"; }

private:
    using LinkedLayer<Device>::link_;
};

struct Add {
    static constexpr std::string_view name = "Add";
    static constexpr ExportSpec export_as{.op = ExportOp::add_skip};
    /// It reads the Encoder's whole feature map.
    static constexpr SkipStorage skip_storage(Dims, SkipDims skip) { return {false, skip.feature.c, true}; }
    static constexpr ShapeResult infer(Dims in, SkipDims skip) {
        if (in.c != skip.feature.c) return ShapeResult::fail(Fault::skip_channels, skip.feature.c, in.c);
        if (!extents_may_match(in.h, skip.feature.h)) return ShapeResult::fail(Fault::skip_size, skip.feature.h, in.h);
        if (!extents_may_match(in.w, skip.feature.w)) return ShapeResult::fail(Fault::skip_size, skip.feature.w, in.w);
        return ShapeResult::ok(in);
    }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in, SkipDims) { return in.spatial_static() ? in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<AddLayer<Device>>();
    }
};

}  // namespace segnet
