// segnet/backend/cpu/ops.hpp: the CPU backend's operations on Tensor<Cpu>, the calls layers make.
//
//   segnet::backend::conv2d_forward(x, weight, bias_or_nullptr, y, geometry);
//   segnet::backend::relu_forward(x, y);
//
// Layers are written once against these overloads; backend/cuda provides the same names for
// Tensor<Cuda>. This file only adapts tensors to the raw kernels and checks sizes.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>

#include "segnet/backend/cpu/batch_norm.hpp"
#include "segnet/backend/cpu/channels.hpp"
#include "segnet/backend/cpu/conv.hpp"
#include "segnet/backend/cpu/elementwise.hpp"
#include "segnet/backend/cpu/lrn.hpp"
#include "segnet/backend/cpu/pool.hpp"
#include "segnet/backend/cpu/resize.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet::backend {

using CpuTensor = Tensor<Cpu>;
using CpuIndices = Tensor<Cpu, std::int32_t>;

/// y = conv(x, w) + bias. The eval-mode fusion (compose/model.hpp) passes weight_scale, per output
/// channel ({1, out_c, 1, 1}: the weights are multiplied by it as the kernel reads them, a batch norm
/// folded in; the bias is then fold_conv_bias's) and relu (max(., 0) in the kernel's store).
inline void conv2d_forward(const CpuTensor& x, const CpuTensor& w, const CpuTensor* bias, CpuTensor& y,
                           const backend::ConvGeometry& g, const CpuTensor* weight_scale = nullptr,
                           bool relu = false) {
    cpu::conv2d_forward(x.data(), w.data(), bias ? bias->data() : nullptr, y.data(), x.n(), g,
                        weight_scale ? weight_scale->data() : nullptr, relu);
}
/// conv2d_forward on the max-unpooling of (values, indices) by k to y's size, without writing
/// that map (the eval-mode fusion of an Unpool and the convolution after it; g describes the
/// convolution of the unpooled map). Returns false, and writes nothing, where this CPU has no
/// direct kernel for g: the caller then unpools and convolves separately.
inline bool conv2d_forward_unpooled(const CpuTensor& values, const CpuIndices& indices, int k, const CpuTensor& w,
                                    const CpuTensor* bias, CpuTensor& y, const backend::ConvGeometry& g,
                                    const CpuTensor* weight_scale = nullptr, bool relu = false) {
    if (values.extents() != indices.extents() || values.c() != g.in_c || y.n() != values.n())
        throw std::invalid_argument("segnet::backend::conv2d_forward_unpooled: values " + to_string(values.extents()) +
                                    ", indices " + to_string(indices.extents()) + " and output " +
                                    to_string(y.extents()) + " do not match");
    const cpu::direct::Unpooled u{values.data(), indices.data(), values.h(), values.w(), k};
    return cpu::conv2d_forward_unpooled(u, w.data(), bias ? bias->data() : nullptr, y.data(), values.n(), g,
                                        weight_scale ? weight_scale->data() : nullptr, relu);
}
/// conv2d_forward followed by a max pooling by k (window = stride, ceil rounding) into values
/// and indices, without writing the full-size map (the eval-mode fusion of an Encoder's last
/// convolution and its MaxPool; g describes the convolution). Returns false, and writes nothing,
/// where this CPU has no direct kernel for g: the caller then convolves and pools separately.
inline bool conv2d_forward_pooled(const CpuTensor& x, const CpuTensor& w, const CpuTensor* bias, CpuTensor& values,
                                  CpuIndices& indices, int k, const backend::ConvGeometry& g,
                                  const CpuTensor* weight_scale = nullptr, bool relu = false) {
    const Extents pooled{x.n(), g.out_c, pooled_extent(g.out_h, std::max(k, 1)), pooled_extent(g.out_w, std::max(k, 1))};
    if (values.extents() != pooled || indices.extents() != pooled || x.c() != g.in_c || x.h() != g.in_h ||
        x.w() != g.in_w)
        throw std::invalid_argument("segnet::backend::conv2d_forward_pooled: input " + to_string(x.extents()) +
                                    ", values " + to_string(values.extents()) + " and indices " +
                                    to_string(indices.extents()) + " are not the " + std::to_string(k) +
                                    "x pooling of this convolution's output");
    return cpu::conv2d_forward_pooled(x.data(), w.data(), bias ? bias->data() : nullptr, x.n(), g, k, values.data(),
                                      indices.data(), weight_scale ? weight_scale->data() : nullptr, relu);
}
/// Whether conv2d_forward_unpooled / conv2d_forward_pooled exist on this device for a
/// convolution with these weights ({out_c, in_c / groups, k, k}) and groups: the direct kernels
/// take ungrouped convolutions with an odd kernel (same padding). They may still decline at run
/// time, on a CPU without AVX2 + FMA.
inline bool fuses_unpooled_input(const CpuTensor& w, int groups) { return groups == 1 && w.h() % 2 == 1; }
inline bool fuses_pooled_output(const CpuTensor& w, int groups) { return fuses_unpooled_input(w, groups); }
inline void conv2d_backward_data(const CpuTensor& dy, const CpuTensor& w, CpuTensor& dx, const backend::ConvGeometry& g) {
    cpu::conv2d_backward_data(dy.data(), w.data(), dx.data(), dy.n(), g);
}
inline void conv2d_backward_filter(const CpuTensor& x, const CpuTensor& dy, CpuTensor& dw, CpuTensor* dbias,
                                   const backend::ConvGeometry& g) {
    cpu::conv2d_backward_filter(x.data(), dy.data(), dw.data(), dbias ? dbias->data() : nullptr, x.n(), g);
}

inline void relu_forward(const CpuTensor& x, CpuTensor& y) { cpu::relu_forward(x.data(), y.data(), x.size()); }
inline void relu_backward(const CpuTensor& y, const CpuTensor& dy, CpuTensor& dx) {
    cpu::relu_backward(y.data(), dy.data(), dx.data(), y.size());
}
inline void add(const CpuTensor& a, const CpuTensor& b, CpuTensor& y) { cpu::add(a.data(), b.data(), y.data(), a.size()); }
inline void accumulate(const CpuTensor& x, CpuTensor& y) { cpu::accumulate(x.data(), y.data(), x.size()); }
/// Inverted dropout keeping each element with probability keep: mask (1 / keep or 0) from a hash
/// of (seed, counter, element), y = x * mask (y may be x).
inline void dropout_forward(const CpuTensor& x, float keep, std::uint64_t seed, std::uint64_t counter, CpuTensor& mask,
                            CpuTensor& y) {
    const std::uint64_t key = cpu::dropout_hash(seed ^ cpu::dropout_hash(counter));
    cpu::dropout_forward(x.data(), mask.data(), y.data(), x.size(), keep, key);
}
/// Monte-Carlo samples: image n of the batch is masked as dropout_forward masks a batch of one
/// at counter first_counter + n, so T images in one batch draw what T single forwards draw.
inline void dropout_sample_forward(const CpuTensor& x, float keep, std::uint64_t seed, std::uint64_t first_counter,
                                   CpuTensor& mask, CpuTensor& y) {
    const std::int64_t per_image = x.n() > 0 ? x.size() / x.n() : 0;
    for (std::int64_t n = 0; n < x.n(); ++n) {
        const std::uint64_t key = cpu::dropout_hash(seed ^ cpu::dropout_hash(first_counter + std::uint64_t(n)));
        const std::int64_t offset = n * per_image;
        cpu::dropout_forward(x.data() + offset, mask.data() + offset, y.data() + offset, per_image, keep, key);
    }
}
inline void dropout_backward(const CpuTensor& mask, const CpuTensor& dy, CpuTensor& dx) {
    cpu::dropout_backward(mask.data(), dy.data(), dx.data(), dy.size());
}
inline void copy(const CpuTensor& x, CpuTensor& y) { std::copy_n(x.data(), x.size(), y.data()); }
/// dst[:, dst_c0 : dst_c0 + count] = (or += when accumulate) src[:, src_c0 : src_c0 + count].
inline void copy_channels(const CpuTensor& src, int src_c0, CpuTensor& dst, int dst_c0, int count,
                          bool accumulate = false) {
    if (src.n() != dst.n() || src.h() != dst.h() || src.w() != dst.w() || src_c0 < 0 || dst_c0 < 0 ||
        src_c0 + count > src.c() || dst_c0 + count > dst.c())
        throw std::invalid_argument("segnet::backend::copy_channels: " + std::to_string(count) + " channels from " +
                                    to_string(src.extents()) + " at " + std::to_string(src_c0) + " do not fit " +
                                    to_string(dst.extents()) + " at " + std::to_string(dst_c0));
    cpu::copy_channels(src.data(), src.c(), src_c0, dst.data(), dst.c(), dst_c0, count, src.n(),
                       src.extents().plane(), accumulate);
}

/// y = x resized bilinearly to y's height and width (PyTorch's align_corners=False); y sized by the caller.
inline void bilinear_resize_forward(const CpuTensor& x, CpuTensor& y) {
    if (x.n() != y.n() || x.c() != y.c())
        throw std::invalid_argument("segnet::backend::bilinear_resize_forward: " + to_string(x.extents()) + " to " +
                                    to_string(y.extents()) + " changes the batch or channels");
    cpu::bilinear_resize_forward(x.data(), std::int64_t(x.n()) * x.c(), x.h(), x.w(), y.data(), y.h(), y.w());
}
/// dx (sized by the caller to the forward's input) = the resize's transpose applied to dy.
inline void bilinear_resize_backward(const CpuTensor& dy, CpuTensor& dx) {
    if (dx.n() != dy.n() || dx.c() != dy.c())
        throw std::invalid_argument("segnet::backend::bilinear_resize_backward: " + to_string(dy.extents()) + " to " +
                                    to_string(dx.extents()) + " changes the batch or channels");
    cpu::bilinear_resize_backward(dy.data(), std::int64_t(dy.n()) * dy.c(), dy.h(), dy.w(), dx.data(), dx.h(), dx.w());
}

inline void batch_norm_train(const CpuTensor& x, const CpuTensor& gamma, const CpuTensor& beta, float eps,
                             float momentum, CpuTensor& running_mean, CpuTensor& running_var, CpuTensor& y,
                             CpuTensor& saved_mean, CpuTensor& saved_invstd) {
    cpu::batch_norm_train(x.data(), x.n(), x.c(), x.extents().plane(), gamma.data(), beta.data(), eps, momentum,
                          running_mean.data(), running_var.data(), y.data(), saved_mean.data(), saved_invstd.data());
}
/// batch_norm_train over a batch spread across processes (cpu::batch_norm_train_synced):
/// `sum(values, count)` sums doubles over them; returns the batch's values per channel.
template <class Sum>
double batch_norm_train_synced(const CpuTensor& x, const CpuTensor& gamma, const CpuTensor& beta, float eps,
                               float momentum, CpuTensor& running_mean, CpuTensor& running_var, CpuTensor& y,
                               CpuTensor& saved_mean, CpuTensor& saved_invstd, Sum&& sum) {
    return cpu::batch_norm_train_synced(x.data(), x.n(), int(gamma.size()), x.extents().plane(), gamma.data(),
                                        beta.data(), eps, momentum, running_mean.data(), running_var.data(), y.data(),
                                        saved_mean.data(), saved_invstd.data(), sum);
}
template <class Sum>
void batch_norm_backward_synced(const CpuTensor& x, const CpuTensor& dy, double m, const CpuTensor& gamma,
                                const CpuTensor& saved_mean, const CpuTensor& saved_invstd, CpuTensor& dx,
                                CpuTensor& dgamma, CpuTensor& dbeta, Sum&& sum) {
    cpu::batch_norm_backward_synced(x.data(), dy.data(), x.n(), int(gamma.size()), x.extents().plane(), m,
                                    gamma.data(), saved_mean.data(), saved_invstd.data(), dx.data(), dgamma.data(),
                                    dbeta.data(), sum);
}
inline void batch_norm_eval(const CpuTensor& x, const CpuTensor& gamma, const CpuTensor& beta,
                            const CpuTensor& running_mean, const CpuTensor& running_var, float eps, CpuTensor& y) {
    cpu::batch_norm_eval(x.data(), x.n(), x.c(), x.extents().plane(), gamma.data(), beta.data(), running_mean.data(),
                         running_var.data(), eps, y.data());
}
/// Eval-mode batch norm as a per-channel affine map: y = x * scale + shift ({1, C, 1, 1} each).
inline void batch_norm_eval_affine(const CpuTensor& gamma, const CpuTensor& beta, const CpuTensor& running_mean,
                                   const CpuTensor& running_var, float eps, CpuTensor& scale, CpuTensor& shift) {
    cpu::batch_norm_eval_affine(int(gamma.size()), gamma.data(), beta.data(), running_mean.data(), running_var.data(),
                                eps, scale.data(), shift.data());
}
/// The bias of a convolution with a following per-channel affine map folded in: bias * scale +
/// shift (bias null: shift), so conv(x, w * scale) + folded = conv(x, w) * scale + bias * scale + shift.
inline void fold_conv_bias(const CpuTensor* bias, const CpuTensor& scale, const CpuTensor& shift, CpuTensor& folded) {
    if (scale.size() != folded.size() || shift.size() != folded.size() || (bias && bias->size() != folded.size()))
        throw std::invalid_argument("segnet::backend::fold_conv_bias: a per-channel map of " +
                                    std::to_string(scale.size()) + " channels for a convolution with " +
                                    std::to_string(folded.size()) + " outputs");
    cpu::fold_conv_bias(int(scale.size()), bias ? bias->data() : nullptr, scale.data(), shift.data(), folded.data());
}
inline void batch_norm_backward(const CpuTensor& x, const CpuTensor& dy, const CpuTensor& gamma,
                                const CpuTensor& saved_mean, const CpuTensor& saved_invstd, CpuTensor& dx,
                                CpuTensor& dgamma, CpuTensor& dbeta) {
    cpu::batch_norm_backward(x.data(), dy.data(), x.n(), x.c(), x.extents().plane(), gamma.data(), saved_mean.data(),
                             saved_invstd.data(), dx.data(), dgamma.data(), dbeta.data());
}
inline void batch_norm_eval_backward(const CpuTensor& x, const CpuTensor& dy, const CpuTensor& gamma,
                                     const CpuTensor& running_mean, const CpuTensor& running_var, float eps,
                                     CpuTensor& dx, CpuTensor& dgamma, CpuTensor& dbeta) {
    cpu::batch_norm_eval_backward(x.data(), dy.data(), dy.n(), dy.c(), dy.extents().plane(), gamma.data(),
                                  running_mean.data(), running_var.data(), eps, dx.data(), dgamma.data(),
                                  dbeta.data());
}

inline void max_pool_forward(const CpuTensor& x, int k, CpuTensor& y, CpuIndices& indices) {
    cpu::max_pool_forward(x.data(), x.n(), x.c(), x.h(), x.w(), k, y.data(), y.h(), y.w(), indices.data());
}
inline void max_pool_backward(const CpuTensor& dy, const CpuIndices& indices, CpuTensor& dx) {
    cpu::max_pool_backward(dy.data(), indices.data(), dy.n(), dy.c(), dy.h(), dy.w(), dx.data(), dx.h(), dx.w());
}
/// Windowed / adaptive pooling over `spans` (pool_geometry.hpp); y and indices sized by the caller
/// to {n, c, rows, cols}. The max pool's backward is max_pool_backward (its indices).
inline void window_max_pool_forward(const CpuTensor& x, const PoolSpans& spans, CpuTensor& y, CpuIndices& indices) {
    cpu::window_max_pool_forward(x.data(), x.n(), x.c(), x.h(), x.w(), spans, y.data(), indices.data());
}
inline void average_pool_forward(const CpuTensor& x, const PoolSpans& spans, CpuTensor& y) {
    cpu::average_pool_forward(x.data(), x.n(), x.c(), x.h(), x.w(), spans, y.data());
}
inline void average_pool_backward(const CpuTensor& dy, const PoolSpans& spans, CpuTensor& dx) {
    cpu::average_pool_backward(dy.data(), dy.n(), dy.c(), spans, dx.data(), dx.h(), dx.w());
}
inline void max_unpool_forward(const CpuTensor& x, const CpuIndices& indices, CpuTensor& y) {
    cpu::max_unpool_forward(x.data(), indices.data(), x.n(), x.c(), x.h(), x.w(), y.data(), y.h(), y.w());
}
inline void max_unpool_backward(const CpuTensor& dy, const CpuIndices& indices, CpuTensor& dx) {
    cpu::max_unpool_backward(dy.data(), indices.data(), dx.n(), dx.c(), dx.h(), dx.w(), dx.data(), dy.h(), dy.w());
}

inline void lrn_forward(const CpuTensor& x, int size, float alpha, float beta, float k, CpuTensor& y,
                        CpuTensor& scale) {
    cpu::lrn_forward(x.data(), x.n(), x.c(), x.extents().plane(), size, alpha, beta, k, y.data(), scale.data());
}
inline void lrn_backward(const CpuTensor& x, const CpuTensor& y, const CpuTensor& scale, const CpuTensor& dy,
                         int size, float alpha, float beta, CpuTensor& dx) {
    cpu::lrn_backward(x.data(), y.data(), scale.data(), dy.data(), x.n(), x.c(), x.extents().plane(), size, alpha,
                      beta, dx.data());
}

}  // namespace segnet::backend
