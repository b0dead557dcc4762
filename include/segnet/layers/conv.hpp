// segnet/layers/conv.hpp: convolutions with same padding and stride 1, and the classifier.
//
//   Conv<64, 7>                      // 7x7, 64 outputs, bias (PyTorch's default)
//   Conv<64, 7, Bias::without>       // SegNet-Basic's decoder convs (the paper: no bias)
//   Conv<64, 7, Bias::without, 4>    // grouped; DepthwiseConv<7> keeps the channel count
//   Classifier<11>                   // 1x1 conv with bias to 11 logits, no activation
//
// Shape rule: {C, H, W} -> {OutC, H, W}. He/MSRA initialisation N(0, 2 / fan_in), fan_in =
// C / groups * K * K (Caffe's "msra" filler, PyTorch's kaiming_normal_), bias 0. Parameters:
// "weight" [OutC, C/groups, K, K] and "bias" [OutC].
//
// In Mode::eval a model runs a convolution followed by a BatchNorm (and a ReLU) as one step
// (forward_fused_into, AnyModel::set_eval_fusion): the batch norm's map is folded into the
// weights (scaled per output channel as the kernel reads them) and the bias, recomputed on every
// eval forward from the current parameters, and the ReLU is applied as the kernel stores. After
// an Unpool, the CPU's direct kernels also read the unpooling from the pooled values and indices
// (forward_unpooled_fused_into): the 3/4-zero unpooled map is never written; and an Encoder's
// last convolution max-pools its output band by band as it computes it
// (forward_pooled_fused_into): the full-size map is never written.
#pragma once

#include <cmath>
#include <memory>
#include <string_view>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/fusion.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

enum class Bias { with, without };

/// The run-time convolution every convolution type makes (stride 1, pad K/2, groups).
template <class Device>
class ConvLayer final : public RuntimeLayer<Device>, public EvalFusion<Device> {
public:
    ConvLayer(int in_c, int out_c, int k, int groups, Bias bias, std::string_view kind)
        : in_c_(in_c), out_c_(out_c), k_(k), groups_(groups), has_bias_(bias == Bias::with), kind_(kind) {
        weight_.resize({out_c, in_c / groups, k, k});
        weight_grad_.resize(weight_.extents());
        if (has_bias_) {
            bias_.resize(detail::vector_extents(out_c));
            bias_grad_.resize(bias_.extents());
        }
        folded_bias_.resize(detail::vector_extents(out_c));  // eval fusion: here, not in a forward
    }

    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        return forward_fused_into(x, {}, false, out);
    }
    /// conv(x) followed by `affine` and ReLU in one kernel pass: the weights are scaled by
    /// affine.scale as the kernel reads them and the bias becomes bias * scale + shift (folded
    /// now, from the affine map's current values), then max(., 0) when relu.
    const Tensor<Device>& forward_fused_into(const Tensor<Device>& x, const ChannelAffine<Device>& affine, bool relu,
                                             Tensor<Device>& out) override {
        x_ = &x;
        out.resize({x.n(), out_c_, x.h(), x.w()});
        const Tensor<Device>* bias = eval_bias(affine);
        backend::conv2d_forward(x, weight_, bias, out, geometry(x), affine.scale, relu);
        return out;
    }
    /// forward_fused_into on an unpooling that is never written: the kernel builds its input
    /// from the pooled values and indices (CPU direct kernels; elsewhere nullptr, see fusion.hpp).
    const Tensor<Device>* forward_unpooled_fused_into(const UnpooledInput<Device>& in,
                                                      const ChannelAffine<Device>& affine, bool relu,
                                                      Tensor<Device>& out) override {
        const Extents& e = in.extents;
        const backend::ConvGeometry g{in_c_, e.h, e.w, out_c_, e.h, e.w, k_, 1, k_ / 2, groups_};
        out.resize({e.n, out_c_, e.h, e.w});
        const Tensor<Device>* bias = eval_bias(affine);
        if (!backend::conv2d_forward_unpooled(*in.values, *in.indices, in.k, weight_, bias, out, g, affine.scale, relu))
            return nullptr;
        x_ = nullptr;  // no backward after an eval forward
        return &out;
    }
    bool fuses_unpooled_input() const override { return backend::fuses_unpooled_input(weight_, groups_); }
    /// forward_fused_into whose output is max-pooled as the kernel computes it: only the pooled
    /// values (into out) and indices are written (CPU direct kernels; elsewhere nullptr).
    const Tensor<Device>* forward_pooled_fused_into(const Tensor<Device>& x, const ChannelAffine<Device>& affine,
                                                    bool relu, EvalFusion<Device>& pool_layer,
                                                    Tensor<Device>& out) override {
        const PoolingOutput<Device> pool = pool_layer.eval_pooling({x.n(), out_c_, x.h(), x.w()});
        out.resize(pool.indices->extents());
        const Tensor<Device>* bias = eval_bias(affine);
        if (!backend::conv2d_forward_pooled(x, weight_, bias, out, *pool.indices, pool.k, geometry(x), affine.scale,
                                            relu))
            return nullptr;
        x_ = nullptr;  // no backward after an eval forward
        return &out;
    }
    bool fuses_pooled_output() const override { return backend::fuses_pooled_output(weight_, groups_); }
    FusionRole fusion_role() const override { return FusionRole::convolution; }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(x_->extents());
        const auto g = geometry(*x_);
        backend::conv2d_backward_data(dy, weight_, dx, g);
        backend::conv2d_backward_filter(*x_, dy, weight_grad_, has_bias_ ? &bias_grad_ : nullptr, g);
        return dx;
    }
    /// Backward reads x (for the weight gradient), not the output.
    TrainBufferUse train_buffer_use() const override { return {.pooled = true, .reads_output = false, .reads_feature = false}; }
    void initialize(Rng& rng) override {
        const float stddev = std::sqrt(2.f / float(in_c_ / groups_ * k_ * k_));
        std::vector<float> w(std::size_t(weight_.size()));
        for (auto& v : w) v = rng.normal(0.f, stddev);
        backend::upload(w, weight_);
        if (has_bias_) bias_.zero();
    }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        detail::add_param(out, prefix + "weight", weight_, &weight_grad_, {out_c_, in_c_ / groups_, k_, k_}, true);
        if (has_bias_) detail::add_param(out, prefix + "bias", bias_, &bias_grad_, {out_c_}, false);
    }
    std::string_view kind() const override { return kind_; }

private:
    /// The bias of a fused eval step: the layer's own (or none), with `affine` folded in when set
    /// (bias * scale + shift, into folded_bias_, from the affine map's current values).
    const Tensor<Device>* eval_bias(const ChannelAffine<Device>& affine) {
        const Tensor<Device>* bias = has_bias_ ? &bias_ : nullptr;
        if (!affine.scale) return bias;
        backend::fold_conv_bias(bias, *affine.scale, *affine.shift, folded_bias_);
        return &folded_bias_;
    }
    backend::ConvGeometry geometry(const Tensor<Device>& x) const {
        return {in_c_, x.h(), x.w(), out_c_, x.h(), x.w(), k_, 1, k_ / 2, groups_};
    }
    int in_c_, out_c_, k_, groups_;
    bool has_bias_;
    std::string_view kind_;
    Tensor<Device> weight_, weight_grad_, bias_, bias_grad_, folded_bias_, y_, dx_;
    const Tensor<Device>* x_ = nullptr;
};

namespace detail {
constexpr std::int64_t conv_flops(Dims in, int out_c, int k, int groups, bool bias) {
    if (!in.spatial_static()) return 0;
    return (2LL * (in.c / groups) * k * k + (bias ? 1 : 0)) * out_c * in.h * in.w;
}
constexpr ShapeResult conv_infer(Dims in, int out_c, int groups) {
    if (in.c % groups != 0) return ShapeResult::fail(Fault::groups_indivisible, groups, in.c);
    if (out_c % groups != 0) return ShapeResult::fail(Fault::groups_indivisible, groups, out_c);
    return ShapeResult::ok({out_c, in.h, in.w});
}
}  // namespace detail

/// K x K convolution to OutC channels, stride 1, same padding (K odd).
template <int OutC, int K, Bias B = Bias::with, int Groups = 1>
struct Conv {
    static_assert(OutC > 0, "Conv<OutC, K>: OutC (output channels) must be positive");
    static_assert(K > 0 && K % 2 == 1, "Conv<OutC, K>: K must be a positive odd size (same padding)");
    static_assert(Groups > 0 && OutC % Groups == 0, "Conv<OutC, K, B, Groups>: OutC must be divisible by Groups");
    static constexpr std::string_view name = "Conv";
    static constexpr int out_channels = OutC, kernel = K, groups = Groups;
    static constexpr bool has_bias = B == Bias::with;
    static constexpr LayerGeometry geometry{K, 1, 1};
    static constexpr ExportSpec export_as{.op = ExportOp::conv, .kernel = K, .groups = Groups, .bias = has_bias};

    static constexpr ShapeResult infer(Dims in) { return detail::conv_infer(in, OutC, Groups); }
    static constexpr std::int64_t parameter_count(Dims in) {
        return std::int64_t(OutC) * (in.c / Groups) * K * K + (has_bias ? OutC : 0);
    }
    static constexpr std::int64_t flops(Dims in) { return detail::conv_flops(in, OutC, K, Groups, has_bias); }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvLayer<Device>>(in.c, OutC, K, Groups, B, name);
    }
};

/// Depthwise (single-channel) K x K convolution: each channel convolves only its own map
/// (SegNet-Basic-SingleChannelDecoder). Keeps the channel count.
template <int K, Bias B = Bias::without>
struct DepthwiseConv {
    static_assert(K > 0 && K % 2 == 1, "DepthwiseConv<K>: K must be a positive odd size (same padding)");
    static constexpr std::string_view name = "DepthwiseConv";
    static constexpr int kernel = K;
    static constexpr bool has_bias = B == Bias::with;
    static constexpr LayerGeometry geometry{K, 1, 1};
    static constexpr ExportSpec export_as{.op = ExportOp::conv, .kernel = K, .groups = 0, .bias = has_bias};

    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims in) { return std::int64_t(in.c) * K * K + (has_bias ? in.c : 0); }
    static constexpr std::int64_t flops(Dims in) { return detail::conv_flops(in, in.c, K, in.c, has_bias); }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvLayer<Device>>(in.c, in.c, K, in.c, B, name);
    }
};

/// The per-pixel classifier: a KernelSize x KernelSize convolution with bias to Classes logits,
/// no activation (the softmax belongs to the loss). SegNet-Basic uses 1x1, SegNet 3x3.
template <int Classes, int KernelSize = 1>
struct Classifier {
    static_assert(Classes > 0, "Classifier<K>: the number of classes K must be at least 1");
    static_assert(KernelSize > 0 && KernelSize % 2 == 1, "Classifier<K, KernelSize>: KernelSize must be odd");
    static constexpr std::string_view name = "Classifier";
    static constexpr int classes = Classes;
    static constexpr LayerGeometry geometry{KernelSize, 1, 1};
    static constexpr ExportSpec export_as{.op = ExportOp::conv, .kernel = KernelSize, .bias = true};
    static constexpr std::string_view parameter_prefix = "classifier";  // alone as a stage: classifier.weight

    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok({Classes, in.h, in.w}); }
    static constexpr std::int64_t parameter_count(Dims in) {
        return std::int64_t(Classes) * in.c * KernelSize * KernelSize + Classes;
    }
    static constexpr std::int64_t flops(Dims in) { return detail::conv_flops(in, Classes, KernelSize, 1, true); }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvLayer<Device>>(in.c, Classes, KernelSize, 1, Bias::with, name);
    }
};

}  // namespace segnet
