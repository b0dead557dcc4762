// segnet/backend/cuda/cudnn_adapter.cuh: every cuDNN call segnet makes, in one place.
//
//   segnet::backend::cuda::cudnn::conv_forward(x, w, bias_or_null, y, batch, geometry);
//   segnet::backend::cuda::cudnn::settings().workspace_limit = 512 << 20;   // bytes per convolution call
//   segnet::backend::cuda::cudnn::settings().allow_tf32 = true;             // faster, ~1e-3 relative error
//
// cuDNN 9 marks the legacy convolution and batch-norm entry points used here deprecated; they are
// still the documented, supported path, and a later move to the graph API (cudnn_frontend)
// replaces this file only: nothing else includes cudnn.h. Build this code without
// -Werror=deprecated-declarations (CMake's segnet::cuda target does; cuDNN only warns with
// CUDNN_WARN_DEPRECATED defined anyway).
//
// Convolutions: descriptors and algorithms are planned once per (batch, geometry) and cached.
// Algorithms are chosen by cudnnFind* (benchmarked on first use of a shape), falling back to the
// cudnnGet*_v7 heuristics, among those whose workspace fits settings().workspace_limit, that are
// deterministic (settings().deterministic), and that keep full FP32 math (no TF32 unless
// settings().allow_tf32), so GPU results match the CPU backend to about 1e-5. The geometry's
// output size is given, not derived (transposed convolutions cropped to an encoder's size): when
// it differs from cuDNN's (in + 2p - k) / s + 1, the input is zero-padded explicitly into a map
// whose natural output is the requested one, exactly the CPU rule.
//
// Batch norm: CUDNN_BATCHNORM_SPATIAL forward-training, inference and backward. The running
// statistics are not left to cuDNN's conventions: cuDNN is called with averaging factor 0 and
// kernels.cuh applies PyTorch's update (momentum 0.1, unbiased running variance) from the batch
// mean and inverse standard deviation cuDNN saved.
#pragma once

#include <cudnn.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "segnet/backend/conv_geometry.hpp"
#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/error.cuh"
#include "segnet/backend/cuda/kernels.cuh"

namespace segnet::backend::cuda {
namespace detail {
inline void check_cudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
    if (status == CUDNN_STATUS_SUCCESS) return;
    throw CudaError(call, cudnnGetErrorString(status), file, line);
}
}  // namespace detail
}  // namespace segnet::backend::cuda

#define SEGNET_CUDNN_CHECK(expr) ::segnet::backend::cuda::detail::check_cudnn((expr), #expr, __FILE__, __LINE__)

namespace segnet::backend::cuda::cudnn {

struct Settings {
    std::size_t workspace_limit = std::size_t(256) << 20;  ///< bytes of workspace one conv call may use
    bool benchmark = true;      ///< time the candidates (cudnnFind*) on a shape's first use
    bool deterministic = true;  ///< only algorithms that give bitwise-reproducible results
    bool allow_tf32 = false;    ///< permit TF32 tensor-core math for FP32 (Ampere+): ~1e-3 error
};
inline Settings& settings() {
    static Settings s;
    return s;
}

/// The process's cuDNN handle, bound to segnet::backend::cuda::stream().
inline cudnnHandle_t handle() {
    static cudnnHandle_t h = [] {
        cudnnHandle_t x = nullptr;
        SEGNET_CUDNN_CHECK(cudnnCreate(&x));
        SEGNET_CUDNN_CHECK(cudnnSetStream(x, stream()));
        return x;
    }();
    return h;
}

namespace detail {

/// A cuDNN descriptor that lives as long as the object: Create at construction, Destroy at
/// destruction; not copyable (the descriptors below add how they are set).
template <class Handle, cudnnStatus_t (*Create)(Handle*), cudnnStatus_t (*Destroy)(Handle)>
struct Descriptor {
    Handle d = nullptr;
    Descriptor() { SEGNET_CUDNN_CHECK(Create(&d)); }
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    ~Descriptor() { Destroy(d); }
};

struct TensorDesc : Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor> {
    TensorDesc() = default;
    TensorDesc(int n, int c, int h, int w) { set(n, c, h, w); }
    void set(int n, int c, int h, int w) {
        SEGNET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
    }
};
struct FilterDesc : Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor> {
    FilterDesc(int o, int i, int kh, int kw) {
        SEGNET_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, o, i, kh, kw));
    }
};
struct ConvDesc
    : Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor> {
    ConvDesc(int pad, int stride, int dilation, int groups) {
        // Cross-correlation, as PyTorch and the CPU kernels (no kernel flip).
        SEGNET_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, dilation, dilation,
                                                           CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        SEGNET_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, groups));
    }
};

template <class Algo>
struct Choice {
    Algo algo{};
    std::size_t workspace = 0;
    cudnnMathType_t math = CUDNN_FMA_MATH;
    bool chosen = false;
};

/// Picks the first (fastest, as cuDNN orders them) result that succeeded and meets the settings.
template <class Perf, class Algo>
bool pick(const Perf* perf, int count, Choice<Algo>& out) {
    const Settings& s = settings();
    for (int i = 0; i < count; ++i) {
        const Perf& p = perf[i];
        if (p.status != CUDNN_STATUS_SUCCESS || p.memory > s.workspace_limit) continue;
        if (s.deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
        if (!s.allow_tf32 && p.mathType != CUDNN_FMA_MATH) continue;
        out.algo = p.algo;
        out.workspace = p.memory;
        out.math = p.mathType;
        out.chosen = true;
        return true;
    }
    return false;
}

/// Descriptors and algorithms for one (batch, geometry).
struct ConvPlan {
    ConvPlan(int batch, const backend::ConvGeometry& g)
        : explicit_pad(!natural(g)),
          hp(explicit_pad ? (g.out_h - 1) * g.stride + window(g) : g.in_h),
          wp(explicit_pad ? (g.out_w - 1) * g.stride + window(g) : g.in_w),
          x(batch, g.in_c, hp, wp), y(batch, g.out_c, g.out_h, g.out_w), bias(1, g.out_c, 1, 1),
          w(g.out_c, g.in_c_per_group(), g.k, g.k), conv(explicit_pad ? 0 : g.pad, g.stride, g.dilation, g.groups) {}

    /// The input rows one output row reads (dilated kernel).
    static int window(const backend::ConvGeometry& g) { return g.dilation * (g.k - 1) + 1; }
    static bool natural(const backend::ConvGeometry& g) {
        const int h = g.in_h + 2 * g.pad - window(g), w = g.in_w + 2 * g.pad - window(g);
        return h >= 0 && w >= 0 && h / g.stride + 1 == g.out_h && w / g.stride + 1 == g.out_w;
    }

    bool explicit_pad;
    int hp, wp;  // the input map cuDNN sees (padded copy when explicit_pad)
    TensorDesc x, y, bias;
    FilterDesc w;
    ConvDesc conv;
    Choice<cudnnConvolutionFwdAlgo_t> fwd;
    Choice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
    Choice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
};

inline ConvPlan& plan(int batch, const backend::ConvGeometry& g) {
    using Key = std::array<int, 12>;
    static std::map<Key, std::unique_ptr<ConvPlan>> cache;
    static std::mutex m;
    const Key key{batch, g.in_c, g.in_h, g.in_w, g.out_c, g.out_h, g.out_w, g.k, g.stride, g.pad, g.groups, g.dilation};
    std::lock_guard<std::mutex> lock(m);
    auto& p = cache[key];
    if (!p) p = std::make_unique<ConvPlan>(batch, g);
    return *p;
}

inline void set_math(ConvPlan& p, cudnnMathType_t math) { SEGNET_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.d, math)); }

/// Chooses `choice`'s algorithm once: cuDNN's measured ranking (find) when benchmarking and it
/// succeeds, its heuristic ranking (get) otherwise; the first that meets the settings wins.
/// find and get are one direction's two cuDNN functions, which take the same arguments: the
/// handle, the direction's descriptors a, b, the convolution's, c, then room for Max results;
/// `get_name` names the heuristic call in the error.
template <int Max, class A, class B, class C, class Perf, class Algo>
void choose(ConvPlan& p, Choice<Algo>& choice, A a, B b, C c,
            cudnnStatus_t (*find)(cudnnHandle_t, A, B, cudnnConvolutionDescriptor_t, C, int, int*, Perf*),
            cudnnStatus_t (*get)(cudnnHandle_t, A, B, cudnnConvolutionDescriptor_t, C, int, int*, Perf*),
            const char* get_name) {
    if (choice.chosen) return;
    set_math(p, settings().allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
    Perf perf[Max];
    int n = 0;
    if (settings().benchmark && find(handle(), a, b, p.conv.d, c, Max, &n, perf) == CUDNN_STATUS_SUCCESS &&
        pick(perf, n, choice))
        return;
    ::segnet::backend::cuda::detail::check_cudnn(get(handle(), a, b, p.conv.d, c, Max, &n, perf), get_name, __FILE__, __LINE__);
    if (!pick(perf, n, choice))
        throw CudaError(get_name, "no algorithm meets the workspace/determinism/FP32 settings", __FILE__, __LINE__);
}

/// The input as cuDNN sees it: x itself, or its zero-padded copy.
inline const float* padded_input(const ConvPlan& p, const float* x, int batch, const backend::ConvGeometry& g,
                                 DeviceBuffer& scratch) {
    if (!p.explicit_pad) return x;
    scratch = DeviceBuffer(std::size_t(batch) * g.in_c * p.hp * p.wp * sizeof(float));
    launch::pad_planes(x, std::int64_t(batch) * g.in_c, g.in_h, g.in_w, scratch.as<float>(), p.hp, p.wp, g.pad, g.pad);
    return scratch.as<float>();
}

}  // namespace detail

/// y = conv(x, w) (+ bias); y is overwritten. Layouts and geometry as backend/cpu/conv.hpp.
inline void conv_forward(const float* x, const float* w, const float* bias, float* y, int batch,
                         const backend::ConvGeometry& g) {
    g.validate();
    auto& p = detail::plan(batch, g);
    detail::choose<CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(p, p.fwd, p.x.d, p.w.d, p.y.d, cudnnFindConvolutionForwardAlgorithm,
                                                    cudnnGetConvolutionForwardAlgorithm_v7,
                                                    "cudnnGetConvolutionForwardAlgorithm_v7");
    DeviceBuffer padded;
    const float* xin = detail::padded_input(p, x, batch, g, padded);
    DeviceBuffer ws(p.fwd.workspace);
    const float one = 1.f, zero = 0.f;
    detail::set_math(p, p.fwd.math);
    SEGNET_CUDNN_CHECK(cudnnConvolutionForward(handle(), &one, p.x.d, xin, p.w.d, w, p.conv.d, p.fwd.algo, ws.get(),
                                               p.fwd.workspace, &zero, p.y.d, y));
    if (bias) SEGNET_CUDNN_CHECK(cudnnAddTensor(handle(), &one, p.bias.d, bias, &one, p.y.d, y));
}

/// dx = the input gradient of conv(x, w) for output gradient dy; dx is overwritten. Also the
/// forward of a transposed convolution.
inline void conv_backward_data(const float* dy, const float* w, float* dx, int batch, const backend::ConvGeometry& g) {
    g.validate();
    auto& p = detail::plan(batch, g);
    detail::choose<CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(p, p.bwd_data, p.w.d, p.y.d, p.x.d,
                                                         cudnnFindConvolutionBackwardDataAlgorithm,
                                                         cudnnGetConvolutionBackwardDataAlgorithm_v7,
                                                         "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    DeviceBuffer padded;
    float* out = dx;
    if (p.explicit_pad) {
        padded = DeviceBuffer(std::size_t(batch) * g.in_c * p.hp * p.wp * sizeof(float));
        out = padded.as<float>();
    }
    DeviceBuffer ws(p.bwd_data.workspace);
    const float one = 1.f, zero = 0.f;
    detail::set_math(p, p.bwd_data.math);
    SEGNET_CUDNN_CHECK(cudnnConvolutionBackwardData(handle(), &one, p.w.d, w, p.y.d, dy, p.conv.d, p.bwd_data.algo,
                                                    ws.get(), p.bwd_data.workspace, &zero, p.x.d, out));
    if (p.explicit_pad)
        launch::crop_planes(out, std::int64_t(batch) * g.in_c, p.hp, p.wp, g.pad, g.pad, dx, g.in_h, g.in_w);
}

/// dw += the weight gradient, dbias += the per-channel sum of dy (when dbias != nullptr).
inline void conv_backward_filter(const float* x, const float* dy, float* dw, float* dbias, int batch,
                                 const backend::ConvGeometry& g) {
    g.validate();
    auto& p = detail::plan(batch, g);
    detail::choose<CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(p, p.bwd_filter, p.x.d, p.y.d, p.w.d,
                                                           cudnnFindConvolutionBackwardFilterAlgorithm,
                                                           cudnnGetConvolutionBackwardFilterAlgorithm_v7,
                                                           "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    DeviceBuffer padded;
    const float* xin = detail::padded_input(p, x, batch, g, padded);
    DeviceBuffer ws(p.bwd_filter.workspace);
    const float one = 1.f;
    detail::set_math(p, p.bwd_filter.math);
    SEGNET_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle(), &one, p.x.d, xin, p.y.d, dy, p.conv.d,
                                                      p.bwd_filter.algo, ws.get(), p.bwd_filter.workspace, &one,
                                                      p.w.d, dw));
    if (dbias) SEGNET_CUDNN_CHECK(cudnnConvolutionBackwardBias(handle(), &one, p.y.d, dy, &one, p.bias.d, dbias));
}

// --- batch normalisation (spatial: per channel over N, H, W) ---------------------------------

namespace detail {
struct BnDescs {
    TensorDesc x, stats;
    BnDescs(int n, int c, int h, int w) : x(n, c, h, w) {
        SEGNET_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(stats.d, x.d, CUDNN_BATCHNORM_SPATIAL));
    }
};
inline BnDescs& bn_descs(int n, int c, int h, int w) {
    static std::map<std::array<int, 4>, std::unique_ptr<BnDescs>> cache;
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    auto& d = cache[{n, c, h, w}];
    if (!d) d = std::make_unique<BnDescs>(n, c, h, w);
    return *d;
}
}  // namespace detail

/// Train mode: y from the batch statistics; saved_mean / saved_invstd (1 / sqrt(var + eps),
/// biased var) for backward; running statistics updated with PyTorch's rule.
inline void batch_norm_train(const float* x, int n, int c, int h, int w, const float* gamma, const float* beta,
                             float eps, float momentum, float* running_mean, float* running_var, float* y,
                             float* saved_mean, float* saved_invstd) {
    auto& d = detail::bn_descs(n, c, h, w);
    const float one = 1.f, zero = 0.f;
    SEGNET_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x.d, x,
                                                              d.x.d, y, d.stats.d, gamma, beta, /*factor*/ 0.0,
                                                              running_mean, running_var, double(eps), saved_mean,
                                                              saved_invstd));
    launch::batch_norm_running_update(saved_mean, saved_invstd, c, std::int64_t(n) * h * w, eps, momentum, running_mean,
                                      running_var);
}

/// Eval mode: y from the running statistics.
inline void batch_norm_eval(const float* x, int n, int c, int h, int w, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y) {
    auto& d = detail::bn_descs(n, c, h, w);
    const float one = 1.f, zero = 0.f;
    SEGNET_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x.d, x,
                                                               d.x.d, y, d.stats.d, gamma, beta, running_mean,
                                                               running_var, double(eps)));
}

/// The gradient of train-mode normalisation: dx overwritten, dgamma and dbeta accumulated.
inline void batch_norm_backward(const float* x, const float* dy, int n, int c, int h, int w, const float* gamma,
                                const float* saved_mean, const float* saved_invstd, float eps, float* dx, float* dgamma,
                                float* dbeta) {
    auto& d = detail::bn_descs(n, c, h, w);
    const float one = 1.f, zero = 0.f;
    SEGNET_CUDNN_CHECK(cudnnBatchNormalizationBackward(handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &one, d.x.d,
                                                       x, d.x.d, dy, d.x.d, dx, d.stats.d, gamma, dgamma, dbeta,
                                                       double(eps), saved_mean, saved_invstd));
}

}  // namespace segnet::backend::cuda::cudnn
