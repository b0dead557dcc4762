// segnet/backend/cuda/cudnn_adapter.cuh: every cuDNN call segnet makes, in one place.
//
//   segnet::cuda::cudnn::conv_forward(x, w, bias_or_null, y, batch, geometry);
//   segnet::cuda::cudnn::settings().workspace_limit = 512 << 20;   // bytes per convolution call
//   segnet::cuda::cudnn::settings().allow_tf32 = true;             // faster, ~1e-3 relative error
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

namespace segnet::cuda {
namespace detail {
inline void check_cudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
    if (status == CUDNN_STATUS_SUCCESS) return;
    throw CudaError(call, cudnnGetErrorString(status), file, line);
}
}  // namespace detail
}  // namespace segnet::cuda

#define SEGNET_CUDNN_CHECK(expr) ::segnet::cuda::detail::check_cudnn((expr), #expr, __FILE__, __LINE__)

namespace segnet::cuda::cudnn {

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

/// The process's cuDNN handle, bound to segnet::cuda::stream().
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

struct TensorDesc {
    cudnnTensorDescriptor_t d = nullptr;
    TensorDesc() { SEGNET_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
    TensorDesc(int n, int c, int h, int w) : TensorDesc() { set(n, c, h, w); }
    void set(int n, int c, int h, int w) {
        SEGNET_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
    }
    TensorDesc(const TensorDesc&) = delete;
    TensorDesc& operator=(const TensorDesc&) = delete;
    ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
};
struct FilterDesc {
    cudnnFilterDescriptor_t d = nullptr;
    FilterDesc(int o, int i, int kh, int kw) {
        SEGNET_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
        SEGNET_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, o, i, kh, kw));
    }
    FilterDesc(const FilterDesc&) = delete;
    FilterDesc& operator=(const FilterDesc&) = delete;
    ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
};
struct ConvDesc {
    cudnnConvolutionDescriptor_t d = nullptr;
    ConvDesc(int pad, int stride, int groups) {
        SEGNET_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
        // Cross-correlation, as PyTorch and the CPU kernels (no kernel flip).
        SEGNET_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                           CUDNN_DATA_FLOAT));
        SEGNET_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, groups));
    }
    ConvDesc(const ConvDesc&) = delete;
    ConvDesc& operator=(const ConvDesc&) = delete;
    ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
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
          hp(explicit_pad ? (g.out_h - 1) * g.stride + g.k : g.in_h),
          wp(explicit_pad ? (g.out_w - 1) * g.stride + g.k : g.in_w),
          x(batch, g.in_c, hp, wp), y(batch, g.out_c, g.out_h, g.out_w), bias(1, g.out_c, 1, 1),
          w(g.out_c, g.in_c_per_group(), g.k, g.k), conv(explicit_pad ? 0 : g.pad, g.stride, g.groups) {}

    static bool natural(const backend::ConvGeometry& g) {
        const int h = g.in_h + 2 * g.pad - g.k, w = g.in_w + 2 * g.pad - g.k;
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
    using Key = std::array<int, 11>;
    static std::map<Key, std::unique_ptr<ConvPlan>> cache;
    static std::mutex m;
    const Key key{batch, g.in_c, g.in_h, g.in_w, g.out_c, g.out_h, g.out_w, g.k, g.stride, g.pad, g.groups};
    std::lock_guard<std::mutex> lock(m);
    auto& p = cache[key];
    if (!p) p = std::make_unique<ConvPlan>(batch, g);
    return *p;
}

inline void set_math(ConvPlan& p, cudnnMathType_t math) { SEGNET_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv.d, math)); }

/// Chooses `choice`'s algorithm once: cuDNN's measured ranking (find) when benchmarking and it
/// succeeds, its heuristic ranking (get) otherwise; the first that meets the settings wins.
/// find(max, &n, perf) and get(max, &n, perf) call the direction's cuDNN functions; `get_name`
/// names the heuristic call in the error.
template <class Perf, int Max, class Algo, class Find, class Get>
void choose(ConvPlan& p, Choice<Algo>& choice, Find find, Get get, const char* get_name) {
    if (choice.chosen) return;
    set_math(p, settings().allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
    Perf perf[Max];
    int n = 0;
    if (settings().benchmark && find(Max, &n, perf) == CUDNN_STATUS_SUCCESS && pick(perf, n, choice)) return;
    ::segnet::cuda::detail::check_cudnn(get(Max, &n, perf), get_name, __FILE__, __LINE__);
    if (!pick(perf, n, choice))
        throw CudaError(get_name, "no algorithm meets the workspace/determinism/FP32 settings", __FILE__, __LINE__);
}

inline void choose_fwd(ConvPlan& p) {
    choose<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
        p, p.fwd,
        [&](int max, int* n, cudnnConvolutionFwdAlgoPerf_t* perf) {
            return cudnnFindConvolutionForwardAlgorithm(handle(), p.x.d, p.w.d, p.conv.d, p.y.d, max, n, perf);
        },
        [&](int max, int* n, cudnnConvolutionFwdAlgoPerf_t* perf) {
            return cudnnGetConvolutionForwardAlgorithm_v7(handle(), p.x.d, p.w.d, p.conv.d, p.y.d, max, n, perf);
        },
        "cudnnGetConvolutionForwardAlgorithm_v7");
}
inline void choose_bwd_data(ConvPlan& p) {
    choose<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
        p, p.bwd_data,
        [&](int max, int* n, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
            return cudnnFindConvolutionBackwardDataAlgorithm(handle(), p.w.d, p.y.d, p.conv.d, p.x.d, max, n, perf);
        },
        [&](int max, int* n, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
            return cudnnGetConvolutionBackwardDataAlgorithm_v7(handle(), p.w.d, p.y.d, p.conv.d, p.x.d, max, n, perf);
        },
        "cudnnGetConvolutionBackwardDataAlgorithm_v7");
}
inline void choose_bwd_filter(ConvPlan& p) {
    choose<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT>(
        p, p.bwd_filter,
        [&](int max, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
            return cudnnFindConvolutionBackwardFilterAlgorithm(handle(), p.x.d, p.y.d, p.conv.d, p.w.d, max, n, perf);
        },
        [&](int max, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
            return cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle(), p.x.d, p.y.d, p.conv.d, p.w.d, max, n, perf);
        },
        "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
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
    detail::choose_fwd(p);
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
    detail::choose_bwd_data(p);
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
    detail::choose_bwd_filter(p);
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

}  // namespace segnet::cuda::cudnn
