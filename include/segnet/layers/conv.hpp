// segnet/layers/conv.hpp: convolutions (any stride, dilation and padding policy), the depthwise
// convolution and the classifier.
//
//   Conv<64, 7>                      // 7x7, 64 outputs, bias (PyTorch's default), stride 1, same padding
//   Conv<64, 7, Bias::without>       // SegNet-Basic's decoder convs (the paper: no bias)
//   Conv<64, 7, Bias::without, 4>    // grouped; DepthwiseConv<7> keeps the channel count
//   Conv2d<1024, 3, ConvOptions{.dilation = 12}>                              // DeepLab's atrous fc6
//   Conv2d<64, 7, ConvOptions{.stride = 2, .padding = Padding::explicit_(3)}> // ResNet's stem
//   Conv2d<4096, 7, ConvOptions{.padding = Padding::valid}>                   // FCN's fc6
//   Classifier<11>                   // 1x1 conv with bias to 11 logits, no activation
//
// Conv<OutC, K, B, Groups> is Conv2d<OutC, K, ConvOptions{.groups = Groups, .bias = B}>: one
// layer. Shape rule, PyTorch's nn.Conv2d arithmetic per axis: {C, H, W} -> {OutC, H', W'} with
// H' = floor((H + 2 pad - dilation (K - 1) - 1) / stride) + 1, where pad is dilation (K - 1) / 2
// for Padding::same (K odd; H' = H at stride 1, ceil(H / stride) otherwise), 0 for
// Padding::valid and p for Padding::explicit_(p). A map smaller than the dilated window less the
// padding is a shape fault (Fault::conv_window). He/MSRA initialisation N(0, 2 / fan_in), fan_in
// = C / groups * K * K (Caffe's "msra" filler, PyTorch's kaiming_normal_), bias 0. Parameters:
// "weight" [OutC, C/groups, K, K] and "bias" [OutC].
//
// Kernels: stride-1, undilated, same-padded convolutions (every SegNet layer) run the CPU's
// direct, Winograd and bf16 kernels; the others run the im2col + GEMM path (backend/cpu/conv.hpp).
// On CUDA, cuDNN takes stride, padding and dilation in its convolution descriptor.
//
// In Mode::eval a model runs a convolution followed by a BatchNorm (and a ReLU) as one step
// (forward_fused_into, AnyModel::set_eval_fusion): the batch norm's map is folded into the
// weights (scaled per output channel as the kernel reads them) and the bias, recomputed on every
// eval forward from the current parameters, and the ReLU is applied as the kernel stores. After
// an Unpool, the CPU's direct kernels also read the unpooling from the pooled values and indices
// (forward_unpooled_fused_into): the 3/4-zero unpooled map is never written; and an Encoder's
// last convolution max-pools its output band by band as it computes it
// (forward_pooled_fused_into): the full-size map is never written. These two fusions take only
// size-keeping convolutions (stride 1, no dilation, same padding).
#pragma once

#include <cmath>
#include <memory>
#include <string_view>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/fusion.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

enum class Bias { with, without };

/// The run-time convolution every convolution type makes: `kernel` gives its channels, K,
/// stride, pad, dilation and groups (its map sizes are the input's, set on every call).
template <class Device>
class ConvLayer final : public RuntimeLayer<Device>, public EvalFusion<Device> {
public:
    ConvLayer(const backend::ConvGeometry& kernel, Bias bias, std::string_view kind)
        : kernel_(kernel), has_bias_(bias == Bias::with), kind_(kind) {
        weight_.resize({kernel_.out_c, kernel_.in_c_per_group(), kernel_.k, kernel_.k});
        weight_grad_.resize(weight_.extents());
        if (has_bias_) {
            bias_.resize(detail::vector_extents(kernel_.out_c));
            bias_grad_.resize(bias_.extents());
        }
        folded_bias_.resize(detail::vector_extents(kernel_.out_c));  // eval fusion: here, not in a forward
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
        const backend::ConvGeometry g = geometry(x.h(), x.w());
        out.resize({x.n(), kernel_.out_c, g.out_h, g.out_w});
        const Tensor<Device>* bias = eval_bias(affine);
        backend::conv2d_forward(x, weight_, bias, out, g, affine.scale, relu);
        return out;
    }
    /// forward_fused_into on an unpooling that is never written: the kernel builds its input
    /// from the pooled values and indices (CPU direct kernels; elsewhere nullptr, see fusion.hpp).
    const Tensor<Device>* forward_unpooled_fused_into(const UnpooledInput<Device>& in,
                                                      const ChannelAffine<Device>& affine, bool relu,
                                                      Tensor<Device>& out) override {
        const Extents& e = in.extents;
        const backend::ConvGeometry g = geometry(e.h, e.w);
        out.resize({e.n, kernel_.out_c, g.out_h, g.out_w});
        const Tensor<Device>* bias = eval_bias(affine);
        if (!backend::conv2d_forward_unpooled(*in.values, *in.indices, in.k, weight_, bias, out, g, affine.scale, relu))
            return nullptr;
        x_ = nullptr;  // no backward after an eval forward
        return &out;
    }
    bool fuses_unpooled_input() const override {
        return keeps_size() && backend::fuses_unpooled_input(weight_, kernel_.groups);
    }
    /// forward_fused_into whose output is max-pooled as the kernel computes it: only the pooled
    /// values (into out) and indices are written (CPU direct kernels; elsewhere nullptr).
    const Tensor<Device>* forward_pooled_fused_into(const Tensor<Device>& x, const ChannelAffine<Device>& affine,
                                                    bool relu, EvalFusion<Device>& pool_layer,
                                                    Tensor<Device>& out) override {
        const backend::ConvGeometry g = geometry(x.h(), x.w());
        const PoolingOutput<Device> pool = pool_layer.eval_pooling({x.n(), kernel_.out_c, g.out_h, g.out_w});
        out.resize(pool.indices->extents());
        const Tensor<Device>* bias = eval_bias(affine);
        if (!backend::conv2d_forward_pooled(x, weight_, bias, out, *pool.indices, pool.k, g, affine.scale, relu))
            return nullptr;
        x_ = nullptr;  // no backward after an eval forward
        return &out;
    }
    bool fuses_pooled_output() const override {
        return keeps_size() && backend::fuses_pooled_output(weight_, kernel_.groups);
    }
    FusionRole fusion_role() const override { return FusionRole::convolution; }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(x_->extents());
        const backend::ConvGeometry g = geometry(x_->h(), x_->w());
        backend::conv2d_backward_data(dy, weight_, dx, g);
        backend::conv2d_backward_filter(*x_, dy, weight_grad_, has_bias_ ? &bias_grad_ : nullptr, g);
        return dx;
    }
    /// Backward reads x (for the weight gradient), not the output.
    TrainBufferUse train_buffer_use() const override { return {.pooled = true, .reads_output = false, .reads_feature = false}; }
    void initialize(Rng& rng) override {
        const float stddev = std::sqrt(2.f / float(kernel_.in_c_per_group() * kernel_.k * kernel_.k));
        std::vector<float> w(std::size_t(weight_.size()));
        for (auto& v : w) v = rng.normal(0.f, stddev);
        backend::upload(w, weight_);
        if (has_bias_) bias_.zero();
    }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        detail::add_param(out, prefix + "weight", weight_, &weight_grad_,
                          {kernel_.out_c, kernel_.in_c_per_group(), kernel_.k, kernel_.k}, true);
        if (has_bias_) detail::add_param(out, prefix + "bias", bias_, &bias_grad_, {kernel_.out_c}, false);
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
    /// The geometry on an in_h x in_w input (the output size by the shape rule's arithmetic).
    backend::ConvGeometry geometry(int in_h, int in_w) const {
        backend::ConvGeometry g = kernel_;
        g.in_h = in_h;
        g.in_w = in_w;
        g.out_h = backend::conv_output_extent(in_h, g.k, g.stride, g.pad, g.dilation);
        g.out_w = backend::conv_output_extent(in_w, g.k, g.stride, g.pad, g.dilation);
        return g;
    }
    /// Stride 1, no dilation, same padding: the output has the input's size (the fusions that
    /// read or write a pooled map need it).
    bool keeps_size() const { return kernel_.stride == 1 && kernel_.dilation == 1 && 2 * kernel_.pad == kernel_.k - 1; }
    backend::ConvGeometry kernel_;
    bool has_bias_;
    std::string_view kind_;
    Tensor<Device> weight_, weight_grad_, bias_, bias_grad_, folded_bias_, y_, dx_;
    const Tensor<Device>* x_ = nullptr;
};

/// How a convolution pads its input, the same on all four sides.
struct Padding {
    enum class Policy { same, valid, explicit_pixels };
    Policy policy = Policy::same;
    int pixels = 0;  // Policy::explicit_pixels: zero rows and columns on each side

    static const Padding same;   // dilation (K - 1) / 2 (K odd): the input's size at stride 1
    static const Padding valid;  // none: only windows wholly inside the map
    static constexpr Padding explicit_(int pixels) { return {Policy::explicit_pixels, pixels}; }

    /// Zero rows and columns on each side for a K x K kernel of that dilation.
    constexpr int per_side(int k, int dilation) const {
        return policy == Policy::same ? dilation * (k - 1) / 2 : policy == Policy::valid ? 0 : pixels;
    }
};
inline constexpr Padding Padding::same{Padding::Policy::same, 0};
inline constexpr Padding Padding::valid{Padding::Policy::valid, 0};

/// The settings of Conv2d beyond its outputs and kernel size, named at the use site
/// (ConvOptions{.stride = 2, .padding = Padding::valid}); the defaults are Conv's.
struct ConvOptions {
    int stride = 1;
    int dilation = 1;  // atrous convolution: taps `dilation` pixels apart
    Padding padding = Padding::same;
    int groups = 1;
    Bias bias = Bias::with;
};

namespace detail {
constexpr std::int64_t conv_flops(Dims out, int in_c, int k, int groups, bool bias) {
    if (!out.spatial_static()) return 0;
    return (2LL * (in_c / groups) * k * k + (bias ? 1 : 0)) * out.c * out.h * out.w;
}
/// One axis of the shape rule: the output extent, dyn for dyn.
constexpr int conv_extent(int in, int k, const ConvOptions& o) {
    if (in == dyn) return dyn;
    return backend::conv_output_extent(in, k, o.stride, o.padding.per_side(k, o.dilation), o.dilation);
}
constexpr ShapeResult conv_infer(Dims in, int out_c, int k, const ConvOptions& o) {
    if (in.c % o.groups != 0) return ShapeResult::fail(Fault::groups_indivisible, o.groups, in.c);
    if (out_c % o.groups != 0) return ShapeResult::fail(Fault::groups_indivisible, o.groups, out_c);
    const int least = o.dilation * (k - 1) + 1 - 2 * o.padding.per_side(k, o.dilation);  // input extent with one output
    if (in.h != dyn && in.h < least) return ShapeResult::fail(Fault::conv_window, least, in.h);
    if (in.w != dyn && in.w < least) return ShapeResult::fail(Fault::conv_window, least, in.w);
    return ShapeResult::ok({out_c, conv_extent(in.h, k, o), conv_extent(in.w, k, o)});
}
/// The run-time layer's kernel description: channels, K and options, map sizes unset.
constexpr backend::ConvGeometry conv_kernel(int in_c, int out_c, int k, const ConvOptions& o) {
    backend::ConvGeometry g{};
    g.in_c = in_c;
    g.out_c = out_c;
    g.k = k;
    g.stride = o.stride;
    g.pad = o.padding.per_side(k, o.dilation);
    g.groups = o.groups;
    g.dilation = o.dilation;
    return g;
}
}  // namespace detail

/// K x K convolution to OutC channels with the stride, dilation, padding, groups and bias of
/// Options (see the header comment for the shape rule).
template <int OutC, int K, ConvOptions Options = ConvOptions{}>
struct Conv2d {
    static_assert(OutC > 0, "Conv2d<OutC, K, Options> (Conv<OutC, K>): OutC (output channels) must be positive");
    static_assert(K > 0, "Conv2d<OutC, K, Options> (Conv<OutC, K>): K (kernel size) must be positive");
    static_assert(Options.stride > 0, "Conv2d<OutC, K, Options>: Options.stride must be positive");
    static_assert(Options.dilation > 0, "Conv2d<OutC, K, Options>: Options.dilation must be positive");
    static_assert(Options.padding.policy != Padding::Policy::same || K % 2 == 1,
                  "Conv2d<OutC, K, Options> (Conv<OutC, K>): Padding::same needs an odd K (dilation (K - 1) / 2 on "
                  "each side); use Padding::explicit_(p) or Padding::valid for an even K");
    static_assert(Options.padding.pixels >= 0, "Conv2d<OutC, K, Options>: Padding::explicit_(p) needs p >= 0");
    static_assert(Options.groups > 0 && OutC % Options.groups == 0,
                  "Conv2d<OutC, K, Options> (Conv<OutC, K, B, Groups>): OutC must be divisible by the groups");
    static constexpr std::string_view name = "Conv";
    static constexpr int out_channels = OutC, kernel = K, groups = Options.groups;
    static constexpr int stride = Options.stride, dilation = Options.dilation;
    static constexpr int pad = Options.padding.per_side(K, Options.dilation);
    static constexpr bool has_bias = Options.bias == Bias::with;
    static constexpr LayerGeometry geometry{Options.dilation * (K - 1) + 1, Options.stride, 1};
    static constexpr bool encoder_pool = false;  // a strided conv is no pool an Unpool can pair with
    static constexpr ExportSpec export_as{.op = ExportOp::conv, .kernel = K, .stride = stride, .pad = pad,
                                          .dilation = dilation, .groups = groups, .bias = has_bias};

    static constexpr ShapeResult infer(Dims in) { return detail::conv_infer(in, OutC, K, Options); }
    static constexpr std::int64_t parameter_count(Dims in) {
        return std::int64_t(OutC) * (in.c / groups) * K * K + (has_bias ? OutC : 0);
    }
    static constexpr std::int64_t flops(Dims in) {
        const ShapeResult r = infer(in);
        return r.fault == Fault::none ? detail::conv_flops(r.out, in.c, K, groups, has_bias) : 0;
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvLayer<Device>>(detail::conv_kernel(in.c, OutC, K, Options), Options.bias, name);
    }
};

/// K x K convolution to OutC channels, stride 1, same padding (K odd): Conv2d with its defaults.
template <int OutC, int K, Bias B = Bias::with, int Groups = 1>
using Conv = Conv2d<OutC, K, ConvOptions{.groups = Groups, .bias = B}>;

/// Depthwise (single-channel) K x K convolution: each channel convolves only its own map
/// (SegNet-Basic-SingleChannelDecoder). Keeps the channel count.
template <int K, Bias B = Bias::without>
struct DepthwiseConv {
    static_assert(K > 0 && K % 2 == 1, "DepthwiseConv<K>: K must be a positive odd size (same padding)");
    static constexpr std::string_view name = "DepthwiseConv";
    static constexpr int kernel = K;
    static constexpr bool has_bias = B == Bias::with;
    static constexpr LayerGeometry geometry{K, 1, 1};
    static constexpr ExportSpec export_as{
        .op = ExportOp::conv, .kernel = K, .pad = K / 2, .groups = 0, .bias = has_bias};

    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims in) { return std::int64_t(in.c) * K * K + (has_bias ? in.c : 0); }
    static constexpr std::int64_t flops(Dims in) { return detail::conv_flops(in, in.c, K, in.c, has_bias); }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvLayer<Device>>(detail::conv_kernel(in.c, in.c, K, {.groups = in.c}), B, name);
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
    static constexpr ExportSpec export_as{
        .op = ExportOp::conv, .kernel = KernelSize, .pad = KernelSize / 2, .bias = true};
    static constexpr std::string_view parameter_prefix = "classifier";  // alone as a stage: classifier.weight

    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok({Classes, in.h, in.w}); }
    static constexpr std::int64_t parameter_count(Dims in) {
        return std::int64_t(Classes) * in.c * KernelSize * KernelSize + Classes;
    }
    static constexpr std::int64_t flops(Dims in) {
        return detail::conv_flops({Classes, in.h, in.w}, in.c, KernelSize, 1, true);
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvLayer<Device>>(detail::conv_kernel(in.c, Classes, KernelSize, {}), Bias::with,
                                                   name);
    }
};

}  // namespace segnet
