// segnet/backend/cuda/kernels.cuh: the CUDA kernels cuDNN has no equivalent for, each the
// exact rule of its CPU twin in backend/cpu/ (same layouts, same tie and rounding rules).
//
//   segnet::backend::cuda::launch::max_pool_forward(x, n, c, 45, 60, 2, y, 23, 30, indices);  // ceil, Caffe ties
//   segnet::backend::cuda::launch::max_unpool_forward(y, indices, n, c, 23, 30, up, 45, 60);
//   segnet::backend::cuda::launch::copy_channels(a, 64, 0, cat, 128, 0, 64, n, plane, false);
//
// Kernels take run-time sizes (one instantiation serves every shape) and raw device pointers;
// launch:: wraps each in a checked launch on segnet::backend::cuda::stream(). Float arithmetic follows
// the CPU code term by term (powf for std::pow, expf for std::exp), so results agree to a few
// ulp; only summation order differs where the GPU reduces in parallel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "segnet/backend/cuda/device.cuh"
#include "segnet/backend/cuda/error.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/backend/lrn_math.hpp"

namespace segnet::backend::cuda {

namespace kernels {

#define SEGNET_GRID_STRIDE(i, n)                                                                  \
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < (n);          \
         i += std::int64_t(blockDim.x) * gridDim.x)

SEGNET_KERNEL void relu_forward(const float* x, float* y, std::int64_t n) {
    SEGNET_GRID_STRIDE(i, n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
SEGNET_KERNEL void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n) {
    SEGNET_GRID_STRIDE(i, n) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}
SEGNET_KERNEL void add(const float* a, const float* b, float* y, std::int64_t n) {
    SEGNET_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
SEGNET_KERNEL void accumulate(const float* x, float* y, std::int64_t n) {
    SEGNET_GRID_STRIDE(i, n) y[i] += x[i];
}

SEGNET_KERNEL void copy_channels(const float* src, int src_c, int src_c0, float* dst, int dst_c, int dst_c0, int count,
                              std::int64_t plane, std::int64_t total, bool acc) {
    SEGNET_GRID_STRIDE(i, total) {
        const std::int64_t p = i % plane, nc = i / plane;
        const std::int64_t c = nc % count, n = nc / count;
        const float v = src[(n * src_c + src_c0 + c) * plane + p];
        float& d = dst[(n * dst_c + dst_c0 + c) * plane + p];
        d = acc ? d + v : v;
    }
}

/// One thread per output value: window = stride = k, partial windows at the bottom/right
/// (ceil rounding), first strictly greater value wins (Caffe), a NaN-only window keeps its
/// first cell.
SEGNET_KERNEL void max_pool_forward(const float* x, int h, int w, int k, float* y, int oh, int ow, std::int32_t* idx,
                                 std::int64_t total) {
    SEGNET_GRID_STRIDE(i, total) {
        const int ox = int(i % ow);
        const int oy = int(i / ow % oh);
        const std::int64_t nc = i / (std::int64_t(ow) * oh);
        const float* xp = x + nc * std::int64_t(h) * w;
        float best = -__int_as_float(0x7f800000);
        std::int32_t at = (oy * k) * w + ox * k;
        const int y1 = oy * k + k < h ? oy * k + k : h;
        const int x1 = ox * k + k < w ? ox * k + k : w;
        for (int iy = oy * k; iy < y1; ++iy)
            for (int ix = ox * k; ix < x1; ++ix) {
                const float v = xp[std::int64_t(iy) * w + ix];
                if (v > best) {
                    best = v;
                    at = iy * w + ix;
                }
            }
        y[i] = xp[at];
        idx[i] = at;
    }
}

/// dx[plane(i) + idx[i]] += dy[i] (dx zeroed before): pooling's backward and unpooling.
SEGNET_KERNEL void scatter_indices(const float* dy, const std::int32_t* idx, std::int64_t out_plane, float* dx,
                                std::int64_t in_plane, std::int64_t total) {
    SEGNET_GRID_STRIDE(i, total) atomicAdd(dx + (i / out_plane) * in_plane + idx[i], dy[i]);
}
/// dx[i] = dy[plane(i) + idx[i]]: unpooling's backward.
SEGNET_KERNEL void gather_indices(const float* dy, const std::int32_t* idx, std::int64_t out_plane, float* dx,
                               std::int64_t in_plane, std::int64_t total) {
    SEGNET_GRID_STRIDE(i, total) dx[i] = dy[(i / out_plane) * in_plane + idx[i]];
}

/// Caffe's across-channel LRN (backend/lrn_math.hpp), one thread per (image, pixel) walking the channels.
SEGNET_KERNEL void lrn_forward(const float* x, int c, std::int64_t plane, int size, float alpha, float beta, float k,
                            float* y, float* scale, std::int64_t total) {
    SEGNET_GRID_STRIDE(t, total) {
        const std::int64_t base = t / plane * c * plane + t % plane;
        backend::lrn::forward_pixel(x + base, c, plane, size, alpha, beta, k, y + base, scale + base);
    }
}
SEGNET_KERNEL void lrn_backward(const float* x, const float* y, const float* scale, const float* dy, int c,
                             std::int64_t plane, int size, float alpha, float beta, float* dx, std::int64_t total) {
    SEGNET_GRID_STRIDE(t, total) {
        const std::int64_t base = t / plane * c * plane + t % plane;
        backend::lrn::backward_pixel(x + base, y + base, scale + base, dy + base, c, plane, size, alpha, beta,
                                     dx + base);
    }
}

/// Eval-mode batch norm as a per-channel affine map (backend/cpu/batch_norm.hpp's
/// batch_norm_eval_channel): scale = gamma / sqrt(var + eps), shift = beta - mean * scale.
SEGNET_KERNEL void batch_norm_eval_affine(int c, const float* gamma, const float* beta, const float* running_mean,
                                          const float* running_var, float eps, float* scale, float* shift) {
    SEGNET_GRID_STRIDE(ch, c) {
        const float s = gamma[ch] / sqrtf(running_var[ch] + eps);
        scale[ch] = s;
        shift[ch] = beta[ch] - running_mean[ch] * s;
    }
}
/// A convolution's bias with a per-channel affine map folded in: bias * scale + shift (bias null: shift).
SEGNET_KERNEL void fold_conv_bias(int c, const float* bias, const float* scale, const float* shift, float* folded) {
    SEGNET_GRID_STRIDE(ch, c) folded[ch] = (bias ? bias[ch] * scale[ch] : 0.f) + shift[ch];
}
/// out[r][j] = w[r][j] * scale[r] for rows of `row` values (a convolution's weights per output channel).
SEGNET_KERNEL void scale_rows(const float* w, const float* scale, std::int64_t row, float* out, std::int64_t total) {
    SEGNET_GRID_STRIDE(i, total) out[i] = w[i] * scale[i / row];
}

/// Gradient of eval-mode batch norm (a fixed affine map per channel): dx = dy * gamma * invstd,
/// dgamma += sum dy * (x - mean) * invstd, dbeta += sum dy. One block per channel; sums in double.
SEGNET_KERNEL void batch_norm_eval_backward(const float* x, const float* dy, int n, int c, std::int64_t plane,
                                            const float* gamma, const float* running_mean, const float* running_var,
                                            float eps, float* dx, float* dgamma, float* dbeta) {
    const int ch = blockIdx.x;
    const float invstd = 1.f / sqrtf(running_var[ch] + eps);
    const float scale = gamma[ch] * invstd, mean = running_mean[ch];
    double sum_dy = 0, sum_dy_xhat = 0;
    const std::int64_t m = std::int64_t(n) * plane;
    for (std::int64_t t = threadIdx.x; t < m; t += blockDim.x) {
        const std::int64_t i = (t / plane * c + ch) * plane + t % plane;
        const float d = dy[i];
        dx[i] = d * scale;
        sum_dy += d;
        sum_dy_xhat += double(d) * (x[i] - mean) * invstd;
    }
    __shared__ double s_dy[256], s_xh[256];
    s_dy[threadIdx.x] = sum_dy;
    s_xh[threadIdx.x] = sum_dy_xhat;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (int(threadIdx.x) < half) {
            s_dy[threadIdx.x] += s_dy[threadIdx.x + half];
            s_xh[threadIdx.x] += s_xh[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        dgamma[ch] += float(s_xh[0]);
        dbeta[ch] += float(s_dy[0]);
    }
}

/// PyTorch's running statistics from the batch statistics cuDNN saved (mean, 1/sqrt(var + eps)):
/// running = (1 - m) * running + m * batch, with the unbiased batch variance.
SEGNET_KERNEL void batch_norm_running_update(const float* saved_mean, const float* saved_invstd, int c, double m_count,
                                          float eps, float momentum, float* running_mean, float* running_var) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    const double invstd = saved_invstd[ch];
    double var = 1.0 / (invstd * invstd) - double(eps);
    if (var < 0) var = 0;
    const double unbiased = m_count > 1 ? var * m_count / (m_count - 1) : var;
    running_mean[ch] = float((1.0 - momentum) * running_mean[ch] + double(momentum) * saved_mean[ch]);
    running_var[ch] = float((1.0 - momentum) * running_var[ch] + double(momentum) * unbiased);
}

/// Copies x [N*C, h, w] into xp [N*C, hp, wp] at offset (top, left), zeros elsewhere: explicit
/// padding for convolutions whose output size is not cuDNN's (transposed-conv cropping).
SEGNET_KERNEL void pad_planes(const float* x, int h, int w, float* xp, int hp, int wp, int top, int left,
                           std::int64_t total) {
    SEGNET_GRID_STRIDE(i, total) {
        const int px = int(i % wp), py = int(i / wp % hp);
        const std::int64_t nc = i / (std::int64_t(wp) * hp);
        const int sy = py - top, sx = px - left;
        xp[i] = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? x[(nc * h + sy) * w + sx] : 0.f;
    }
}
/// The inverse: x [N*C, h, w] = xp at offset (top, left).
SEGNET_KERNEL void crop_planes(const float* xp, int hp, int wp, int top, int left, float* x, int h, int w,
                            std::int64_t total) {
    SEGNET_GRID_STRIDE(i, total) {
        const int sx = int(i % w), sy = int(i / w % h);
        const std::int64_t nc = i / (std::int64_t(w) * h);
        const int py = sy + top, px = sx + left;  // rows/columns the padded map dropped read 0
        x[i] = (py < hp && px < wp) ? xp[(nc * hp + py) * wp + px] : 0.f;
    }
}

/// labels[n, 0, p] = the first channel with the largest value (backend/cpu/argmax.hpp's rule).
SEGNET_KERNEL void argmax_channels(const float* z, int classes, std::int64_t plane, std::int64_t pixels,
                                   std::uint8_t* labels) {
    SEGNET_GRID_STRIDE(p, pixels) {
        const float* zp = z + (p / plane) * classes * plane + p % plane;
        int best = 0;
        float bv = zp[0];
        for (int c = 1; c < classes; ++c)
            if (zp[c * plane] > bv) bv = zp[c * plane], best = c;
        labels[p] = std::uint8_t(best);
    }
}
SEGNET_KERNEL void count_nonfinite(const float* x, std::int64_t n, unsigned int* count) {
    SEGNET_GRID_STRIDE(i, n)
    if (!isfinite(x[i])) atomicAdd(count, 1u);
}

}  // namespace kernels

/// Checked launches on the segnet stream.
namespace launch {
using kernels::grid_for;
inline constexpr int threads = 256;

inline void relu_forward(const float* x, float* y, std::int64_t n) {
    if (n) SEGNET_CUDA_LAUNCH(kernels::relu_forward<<<grid_for(n), threads, 0, stream()>>>(x, y, n));
}
inline void relu_backward(const float* y, const float* dy, float* dx, std::int64_t n) {
    if (n) SEGNET_CUDA_LAUNCH(kernels::relu_backward<<<grid_for(n), threads, 0, stream()>>>(y, dy, dx, n));
}
inline void add(const float* a, const float* b, float* y, std::int64_t n) {
    if (n) SEGNET_CUDA_LAUNCH(kernels::add<<<grid_for(n), threads, 0, stream()>>>(a, b, y, n));
}
inline void accumulate(const float* x, float* y, std::int64_t n) {
    if (n) SEGNET_CUDA_LAUNCH(kernels::accumulate<<<grid_for(n), threads, 0, stream()>>>(x, y, n));
}
inline void copy_channels(const float* src, int src_c, int src_c0, float* dst, int dst_c, int dst_c0, int count,
                          int batch, std::int64_t plane, bool acc) {
    const std::int64_t total = std::int64_t(batch) * count * plane;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::copy_channels<<<grid_for(total), threads, 0, stream()>>>(
            src, src_c, src_c0, dst, dst_c, dst_c0, count, plane, total, acc));
}
inline void max_pool_forward(const float* x, int n, int c, int h, int w, int k, float* y, int oh, int ow,
                             std::int32_t* idx) {
    const std::int64_t total = std::int64_t(n) * c * oh * ow;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::max_pool_forward<<<grid_for(total), threads, 0, stream()>>>(x, h, w, k, y, oh, ow, idx, total));
}
/// dx (n, c, h, w) = scatter of dy (n, c, oh, ow) at the indices; dx is overwritten.
inline void max_pool_backward(const float* dy, const std::int32_t* idx, int n, int c, int oh, int ow, float* dx, int h,
                              int w) {
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    const std::int64_t total = std::int64_t(n) * c * out_plane;
    if (std::int64_t(n) * c * in_plane)
        SEGNET_CUDA_CHECK(cudaMemsetAsync(dx, 0, std::size_t(std::int64_t(n) * c * in_plane) * sizeof(float), stream()));
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::scatter_indices<<<grid_for(total), threads, 0, stream()>>>(dy, idx, out_plane, dx, in_plane, total));
}
inline void max_unpool_backward(const float* dy, const std::int32_t* idx, int n, int c, int oh, int ow, float* dx,
                                int h, int w) {
    const std::int64_t in_plane = std::int64_t(h) * w, out_plane = std::int64_t(oh) * ow;
    const std::int64_t total = std::int64_t(n) * c * out_plane;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::gather_indices<<<grid_for(total), threads, 0, stream()>>>(dy, idx, out_plane, dx, in_plane, total));
}
inline void lrn_forward(const float* x, int n, int c, std::int64_t plane, int size, float alpha, float beta, float k,
                        float* y, float* scale) {
    const std::int64_t total = std::int64_t(n) * plane;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::lrn_forward<<<grid_for(total), threads, 0, stream()>>>(x, c, plane, size, alpha, beta, k, y, scale, total));
}
inline void lrn_backward(const float* x, const float* y, const float* scale, const float* dy, int n, int c,
                         std::int64_t plane, int size, float alpha, float beta, float* dx) {
    const std::int64_t total = std::int64_t(n) * plane;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::lrn_backward<<<grid_for(total), threads, 0, stream()>>>(x, y, scale, dy, c, plane, size, alpha, beta, dx, total));
}
inline void batch_norm_eval_backward(const float* x, const float* dy, int n, int c, std::int64_t plane,
                                     const float* gamma, const float* running_mean, const float* running_var, float eps,
                                     float* dx, float* dgamma, float* dbeta) {
    if (c)
        SEGNET_CUDA_LAUNCH(kernels::batch_norm_eval_backward<<<c, 256, 0, stream()>>>(
            x, dy, n, c, plane, gamma, running_mean, running_var, eps, dx, dgamma, dbeta));
}
inline void batch_norm_eval_affine(int c, const float* gamma, const float* beta, const float* running_mean,
                                   const float* running_var, float eps, float* scale, float* shift) {
    if (c)
        SEGNET_CUDA_LAUNCH(kernels::batch_norm_eval_affine<<<grid_for(c), threads, 0, stream()>>>(
            c, gamma, beta, running_mean, running_var, eps, scale, shift));
}
inline void fold_conv_bias(int c, const float* bias, const float* scale, const float* shift, float* folded) {
    if (c) SEGNET_CUDA_LAUNCH(kernels::fold_conv_bias<<<grid_for(c), threads, 0, stream()>>>(c, bias, scale, shift, folded));
}
inline void scale_rows(const float* w, const float* scale, std::int64_t rows, std::int64_t row, float* out) {
    const std::int64_t total = rows * row;
    if (total) SEGNET_CUDA_LAUNCH(kernels::scale_rows<<<grid_for(total), threads, 0, stream()>>>(w, scale, row, out, total));
}
inline void batch_norm_running_update(const float* saved_mean, const float* saved_invstd, int c, std::int64_t m,
                                      float eps, float momentum, float* running_mean, float* running_var) {
    if (c)
        SEGNET_CUDA_LAUNCH(kernels::batch_norm_running_update<<<(c + 127) / 128, 128, 0, stream()>>>(
            saved_mean, saved_invstd, c, double(m), eps, momentum, running_mean, running_var));
}
inline void pad_planes(const float* x, std::int64_t planes, int h, int w, float* xp, int hp, int wp, int top, int left) {
    const std::int64_t total = planes * hp * wp;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::pad_planes<<<grid_for(total), threads, 0, stream()>>>(x, h, w, xp, hp, wp, top, left, total));
}
inline void crop_planes(const float* xp, std::int64_t planes, int hp, int wp, int top, int left, float* x, int h, int w) {
    const std::int64_t total = planes * h * w;
    if (total)
        SEGNET_CUDA_LAUNCH(kernels::crop_planes<<<grid_for(total), threads, 0, stream()>>>(xp, hp, wp, top, left, x, h, w, total));
}
inline void argmax_channels(const float* z, int n, int classes, std::int64_t plane, std::uint8_t* labels) {
    const std::int64_t pixels = std::int64_t(n) * plane;
    if (pixels && classes)
        SEGNET_CUDA_LAUNCH(kernels::argmax_channels<<<grid_for(pixels), threads, 0, stream()>>>(z, classes, plane, pixels, labels));
}
inline void count_nonfinite(const float* x, std::int64_t n, unsigned int* count) {
    if (n) SEGNET_CUDA_LAUNCH(kernels::count_nonfinite<<<grid_for(n), threads, 0, stream()>>>(x, n, count));
}
}  // namespace launch

}  // namespace segnet::backend::cuda
