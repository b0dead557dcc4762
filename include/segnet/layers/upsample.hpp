// segnet/layers/upsample.hpp: decoder upsamplers other than unpooling: fixed bilinear
// interpolation and learned transposed convolution (FCN's "deconvolution").
//
//   Decoder<BilinearUpsample<2>, Block<DepthwiseConv<7>, BatchNorm>>       // Bilinear-Interpolation
//   Decoder<TransposedConv<64, 4, 2>, Add, Block<Conv<64, 7, Bias::without>, BatchNorm>>
//
// Both live in a Decoder and, like Unpool, produce exactly their paired Encoder's pre-pool
// size: a transposed convolution of a 23-row map gives 46 rows, cropped to the encoder's 45
// (FCN's crop layer). Kernel sizes: BilinearUpsample<F> is a fixed depthwise transposed
// convolution with FCN's bilinear kernel (size 2F - F%2, stride F, pad ceil((F-1)/2)).
// TransposedConv<OutC, K, S>: weight [C, OutC, K, K] (PyTorch ConvTranspose2d layout), pad
// ceil((K - S)/2), no bias; initialised bilinear (FCN: the kernel on the channel diagonal,
// zero elsewhere) or He.
//
// ConvTranspose2d<OutC, K, Stride, Pad> is the unpaired form (PyTorch's ConvTranspose2d, no bias):
// its output size follows from its input, (H - 1) Stride - 2 Pad + K, and it lives anywhere a
// layer does (FCN-8s's upscores, DeconvNet's 7x7 deconvolution of fc7).
#pragma once

#include <cmath>
#include <memory>
#include <stdexcept>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/layer.hpp"
#include "segnet/layers/pool.hpp"

namespace segnet {

enum class UpsampleInit { bilinear, he };

/// A transposed convolution's output extent: (in - 1) stride - 2 pad + k (no output padding).
constexpr int conv_transpose_extent(int in, int k, int stride, int pad) { return (in - 1) * stride - 2 * pad + k; }

namespace detail {
/// FCN's upsample_filt: the separable bilinear kernel of a given size.
inline std::vector<float> bilinear_kernel(int k) {
    const int factor = (k + 1) / 2;
    const double center = k % 2 == 1 ? factor - 1 : factor - 0.5;
    std::vector<float> f(std::size_t(k) * k);
    for (int y = 0; y < k; ++y)
        for (int x = 0; x < k; ++x)
            f[std::size_t(y) * k + x] =
                float((1 - std::abs(y - center) / factor) * (1 - std::abs(x - center) / factor));
    return f;
}

/// A transposed convolution's weight [in_c, out_c / groups, k, k]: FCN's bilinear kernel on the
/// channel diagonal (every channel when depthwise), zero elsewhere; or He, N(0, 2 / fan_in).
template <class Device>
void initialize_transposed_weight(Tensor<Device>& weight, int in_c, int out_c, int k, int groups, UpsampleInit init,
                                  Rng& rng) {
    std::vector<float> w(std::size_t(weight.size()), 0.f);
    const std::size_t kk = std::size_t(k) * k;
    const int per_group = out_c / groups;
    if (init == UpsampleInit::bilinear) {
        const auto f = bilinear_kernel(k);
        for (int i = 0; i < in_c; ++i)
            for (int o = 0; o < per_group; ++o)
                if (groups > 1 || i == o) std::copy(f.begin(), f.end(), w.begin() + (std::size_t(i) * per_group + o) * kk);
    } else {
        const float stddev = std::sqrt(2.f / float(in_c / groups * kk));
        for (auto& v : w) v = rng.normal(0.f, stddev);
    }
    backend::upload(w, weight);
}
}  // namespace detail

/// A transposed convolution whose output size is its paired Encoder's pre-pool size.
template <class Device>
class TransposedConvLayer final : public LinkedLayer<Device> {
public:
    TransposedConvLayer(int in_c, int out_c, int k, int stride, bool depthwise, bool learnable, UpsampleInit init,
                        std::string_view kind)
        : in_c_(in_c), out_c_(out_c), k_(k), stride_(stride), groups_(depthwise ? in_c : 1),
          learnable_(learnable), init_(init), kind_(kind) {
        weight_.resize({in_c, out_c / groups_, k, k});
        if (learnable_) weight_grad_.resize(weight_.extents());
    }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        if (!link_ || !link_->published())
            throw std::logic_error("segnet::" + std::string(kind_) + ": forward before its Encoder ran");
        x_ = &x;
        in_size_ = x.extents();
        const Extents target = link_->feature_size();  // only the size: the map may be gone
        out.resize({x.n(), out_c_, target.h, target.w});
        out_size_ = out.extents();
        backend::conv2d_backward_data(x, weight_, out, geometry());
        return out;
    }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(in_size_);
        const auto g = geometry();
        backend::conv2d_forward(dy, weight_, nullptr, dx, g);
        if (learnable_) backend::conv2d_backward_filter(dy, *x_, weight_grad_, nullptr, g);
        return dx;
    }
    /// Backward reads x for the weight gradient (learned kernels only), never the output.
    TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = learnable_, .reads_output = false, .reads_feature = false};
    }
    void initialize(Rng& rng) override { detail::initialize_transposed_weight(weight_, in_c_, out_c_, k_, groups_, init_, rng); }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        if (learnable_) detail::add_param(out, prefix + "weight", weight_, &weight_grad_, {in_c_, out_c_ / groups_, k_, k_}, true);
    }
    std::string_view kind() const override { return kind_; }

private:
    using LinkedLayer<Device>::link_;
    // A transposed convolution is the backward-data of the convolution that maps its output
    // (out_c, the encoder's pre-pool size) to its input (in_c, pooled size).
    // Sizes from the last forward.
    backend::ConvGeometry geometry() const {
        return {out_c_, out_size_.h, out_size_.w, in_c_, in_size_.h, in_size_.w, k_, stride_, (k_ - stride_ + 1) / 2,
                groups_};
    }
    int in_c_, out_c_, k_, stride_, groups_;
    bool learnable_;
    UpsampleInit init_;
    std::string_view kind_;
    Tensor<Device> weight_, weight_grad_;
    Extents in_size_{}, out_size_{};  // the last forward's
    const Tensor<Device>* x_ = nullptr;
};

/// Fixed (not learned) bilinear upsampling by Factor, per channel.
template <int Factor>
struct BilinearUpsample {
    static_assert(Factor >= 2, "BilinearUpsample<F>: F must be at least 2");
    static constexpr std::string_view name = "BilinearUpsample";
    static constexpr int factor = Factor, kernel = 2 * Factor - Factor % 2;
    static constexpr ExportSpec export_as{
        .op = ExportOp::transposed_conv, .kernel = kernel, .stride = Factor, .groups = 0, .fixed_bilinear = true};
    /// A kernel of size k with stride f reads ceil(k / f) inputs per axis.
    static constexpr LayerGeometry geometry{ceil_div(kernel, Factor), 1, Factor};
    static constexpr ShapeResult infer(Dims in, SkipDims skip) {
        if (auto r = detail::check_upsample_input(in, skip, Factor); r.fault != Fault::none) return r;
        return ShapeResult::ok({in.c, skip.feature.h, skip.feature.w});
    }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in, SkipDims skip) {
        return skip.feature.spatial_static() ? 2LL * in.c * kernel * kernel / (Factor * Factor) * skip.feature.h * skip.feature.w : 0;
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<TransposedConvLayer<Device>>(in.c, in.c, kernel, Factor, true, false,
                                                             UpsampleInit::bilinear, name);
    }
};

/// Learned K x K transposed convolution with stride Stride to OutC channels.
template <int OutC, int K, int Stride, UpsampleInit Init = UpsampleInit::bilinear>
struct TransposedConv {
    static_assert(OutC > 0, "TransposedConv<OutC, K, Stride>: OutC must be positive");
    static_assert(Stride >= 2 && K >= Stride, "TransposedConv<OutC, K, Stride>: need Stride >= 2 and K >= Stride");
    static constexpr std::string_view name = "TransposedConv";
    static constexpr ExportSpec export_as{.op = ExportOp::transposed_conv, .kernel = K, .stride = Stride};
    static constexpr int factor = Stride;
    static constexpr LayerGeometry geometry{ceil_div(K, Stride), 1, Stride};
    static constexpr ShapeResult infer(Dims in, SkipDims skip) {
        if (auto r = detail::check_upsample_input(in, skip, Stride); r.fault != Fault::none) return r;
        return ShapeResult::ok({OutC, skip.feature.h, skip.feature.w});
    }
    static constexpr std::int64_t parameter_count(Dims in) { return std::int64_t(in.c) * OutC * K * K; }
    static constexpr std::int64_t flops(Dims in, SkipDims skip) {
        return skip.feature.spatial_static() ? 2LL * in.c * OutC * K * K / (Stride * Stride) * skip.feature.h * skip.feature.w : 0;
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<TransposedConvLayer<Device>>(in.c, OutC, K, Stride, false, true, Init, name);
    }
};

// --- the unpaired transposed convolution ------------------------------------------------------

/// A transposed convolution whose output size follows from its input alone (PyTorch's
/// ConvTranspose2d without output_padding): no Encoder, no crop.
template <class Device>
class ConvTransposeLayer final : public RuntimeLayer<Device> {
public:
    ConvTransposeLayer(int in_c, int out_c, int k, int stride, int pad, UpsampleInit init)
        : in_c_(in_c), out_c_(out_c), k_(k), stride_(stride), pad_(pad), init_(init) {
        weight_.resize({in_c, out_c, k, k});
        weight_grad_.resize(weight_.extents());
    }
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        x_ = &x;
        out.resize({x.n(), out_c_, conv_transpose_extent(x.h(), k_, stride_, pad_),
                    conv_transpose_extent(x.w(), k_, stride_, pad_)});
        backend::conv2d_backward_data(x, weight_, out, geometry(x.extents(), out.extents()));
        return out;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(x_->extents());
        const auto g = geometry(x_->extents(), dy.extents());
        backend::conv2d_forward(dy, weight_, nullptr, dx, g);
        backend::conv2d_backward_filter(dy, *x_, weight_grad_, nullptr, g);
        return dx;
    }
    /// Backward reads x for the weight gradient, never the output.
    TrainBufferUse train_buffer_use() const override { return {.pooled = true, .reads_output = false, .reads_feature = false}; }
    void initialize(Rng& rng) override { detail::initialize_transposed_weight(weight_, in_c_, out_c_, k_, 1, init_, rng); }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        detail::add_param(out, prefix + "weight", weight_, &weight_grad_, {in_c_, out_c_, k_, k_}, true);
    }
    std::string_view kind() const override { return "ConvTranspose2d"; }

private:
    /// The convolution this layer is the transpose of: from the output (out_c) to the input (in_c).
    backend::ConvGeometry geometry(const Extents& in, const Extents& out) const {
        return {out_c_, out.h, out.w, in_c_, in.h, in.w, k_, stride_, pad_, 1};
    }
    int in_c_, out_c_, k_, stride_, pad_;
    UpsampleInit init_;
    Tensor<Device> weight_, weight_grad_, y_, dx_;
    const Tensor<Device>* x_ = nullptr;
};

/// K x K transposed convolution to OutC maps, stride Stride, Pad rows and columns taken off each
/// side, no bias: {C, H, W} -> {OutC, (H - 1) Stride - 2 Pad + K, ...} (PyTorch's
/// nn.ConvTranspose2d(C, OutC, K, Stride, Pad, bias=False)). Unlike TransposedConv it needs no
/// Encoder: FCN-8s's upscore layers (4x4 stride 2 pad 1: 2H; 16x16 stride 8 pad 4: 8H) and
/// DeconvNet's 7x7 deconvolution of fc7 (stride 1, pad 0: H + 6). Weight [C, OutC, K, K],
/// initialised bilinear (FCN, the kernel on the channel diagonal) or He. Without a bias: both
/// networks' transposed convolutions either have none (FCN) or feed a batch norm (DeconvNet).
template <int OutC, int K, int Stride = 1, int Pad = 0, UpsampleInit Init = UpsampleInit::he>
struct ConvTranspose2d {
    static_assert(OutC > 0 && K > 0 && Stride > 0, "ConvTranspose2d<OutC, K, Stride, Pad>: OutC, K and Stride must be positive");
    static_assert(Pad >= 0 && 2 * Pad < K, "ConvTranspose2d<OutC, K, Stride, Pad>: need 0 <= Pad and 2 Pad < K (the "
                                           "output must keep at least one row per input)");
    static constexpr std::string_view name = "ConvTranspose2d";
    static constexpr ExportSpec export_as{.op = ExportOp::conv_transpose, .kernel = K, .stride = Stride, .pad = Pad};
    /// Each output reads ceil(K / Stride) inputs per axis, and the map grows by Stride.
    static constexpr LayerGeometry geometry{ceil_div(K, Stride), 1, Stride};
    static constexpr ShapeResult infer(Dims in) {
        const auto extent = [](int e) { return e == dyn ? dyn : conv_transpose_extent(e, K, Stride, Pad); };
        return ShapeResult::ok({OutC, extent(in.h), extent(in.w)});
    }
    static constexpr std::int64_t parameter_count(Dims in) { return std::int64_t(in.c) * OutC * K * K; }
    static constexpr std::int64_t flops(Dims in) {
        return in.spatial_static() ? 2LL * in.c * OutC * K * K * in.h * in.w : 0;
    }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<ConvTransposeLayer<Device>>(in.c, OutC, K, Stride, Pad, Init);
    }
};

}  // namespace segnet
