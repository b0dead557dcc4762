// segnet/compose/tap.hpp: the Tap, the run-time node an Encoder puts before its pool: it
// publishes the pre-pool map to the Encoder's SkipLink and adds the skip's gradient back.
//
//   TapLayer<Cpu> tap(&link);
//   tap.forward(x, Mode::train);   // link.feature == &x; returns x
//   tap.backward(dy);              // dy + link.feature_grad when a skip layer sent one
#pragma once

#include <string_view>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

/// Where an Encoder's pre-pool map is published for its Decoder, and where the skip's gradient
/// joins the encoder's own.
template <class Device>
class TapLayer final : public RuntimeLayer<Device> {
public:
    explicit TapLayer(SkipLink<Device>* link) : link_(link) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode) override {
        link_->feature = &x;
        link_->feature_extents = x.extents();
        link_->feature_extents_of = &x;
        link_->size_only = false;
        link_->has_feature_grad = false;
        return x;
    }
    /// An eval step that pools the map as it computes it (the map never exists): publishes only
    /// its size, all an Unpool or other size-reading upsampler takes from the link.
    void publish_size_only(const Extents& map) {
        link_->feature = nullptr;
        link_->feature_extents = map;
        link_->feature_extents_of = nullptr;
        link_->size_only = true;
        link_->has_feature_grad = false;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, sum_); }
    /// dy plus the gradient the Decoder's skip layers sent, when they sent one; else dy itself.
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& out) override {
        if (!link_->has_feature_grad) return dy;
        out.resize(dy.extents());
        backend::add(dy, link_->feature_grad, out);  // elementwise: out may be dy
        link_->has_feature_grad = false;
        return out;
    }
    /// Passes x through; what its skip readers need of the map the model pins (ModelNode).
    TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = false, .reads_output = false, .reads_feature = false, .in_place = true};
    }
    std::string_view kind() const override { return "Tap"; }

private:
    SkipLink<Device>* link_;
    Tensor<Device> sum_;
};

}  // namespace segnet
