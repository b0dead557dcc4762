// segnet/layers/lrn.hpp: Caffe's cross-channel local response normalisation, the input
// normalisation of the public SegNet-Basic model.
//
//   Network<Input<3, dyn, dyn>, LRN<>, Encoder<...>, ...>          // size 5, alpha 1e-4, beta 0.75
//
// y_c = x_c / (k + alpha/size * sum over the `size` channels around c of x^2)^beta, k = 1.
// Shape rule: identity. No parameters.
#pragma once

#include <memory>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

template <class Device>
class LrnLayer final : public RuntimeLayer<Device> {
public:
    LrnLayer(int size, float alpha, float beta, float k) : size_(size), alpha_(alpha), beta_(beta), k_(k) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        x_ = &x;
        y_ref_ = &out;
        out.resize(x.extents());
        scale_.resize(x.extents());
        backend::lrn_forward(x, size_, alpha_, beta_, k_, out, scale_);
        return out;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(dy.extents());
        backend::lrn_backward(*x_, *y_ref_, scale_, dy, size_, alpha_, beta_, dx);
        return dx;
    }
    /// Backward reads x, its output and the saved scale (its own).
    TrainBufferUse train_buffer_use() const override { return {.pooled = true, .reads_feature = false}; }
    std::string_view kind() const override { return "LRN"; }

private:
    int size_;
    float alpha_, beta_, k_;
    Tensor<Device> y_, scale_, dx_;
    const Tensor<Device>* x_ = nullptr;
    const Tensor<Device>* y_ref_ = &y_;  // the last forward's output (y_ or the model's buffer)
};

/// Alpha and Beta are given in millionths / hundredths (1e-4 = 100, 0.75 = 75) so that the
/// type stays an integer-parameterised template.
template <int Size = 5, int AlphaMicro = 100, int BetaCenti = 75>
struct LRN {
    static_assert(Size > 0 && Size % 2 == 1, "LRN<Size>: Size must be a positive odd number");
    static constexpr std::string_view name = "LRN";
    static constexpr ExportSpec export_as{
        .op = ExportOp::lrn, .kernel = Size, .alpha = AlphaMicro * 1e-6f, .beta = BetaCenti * 1e-2f, .k = 1.f};
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in) { return in.spatial_static() ? (2LL * Size + 4) * in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<LrnLayer<Device>>(Size, export_as.alpha, export_as.beta, export_as.k);
    }
};

}  // namespace segnet
