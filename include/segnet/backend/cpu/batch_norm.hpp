// segnet/backend/cpu/batch_norm.hpp: spatial batch normalisation kernels (per channel over
// N, H, W), PyTorch conventions: biased variance to normalise, unbiased for running_var,
// running = (1 - momentum) * running + momentum * batch.
//
//   segnet::backend::cpu::batch_norm_train(x, n, c, plane, gamma, beta, eps, momentum,
//                                 running_mean, running_var, y, saved_mean, saved_invstd);
//   segnet::backend::cpu::batch_norm_backward(x, dy, n, c, plane, gamma, saved_mean, saved_invstd, dx, dgamma, dbeta);
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::backend::cpu {

namespace bn_detail {
// Channel statistics over planes of up to hundreds of thousands of values: 16 independent float
// lanes per chunk of 4096 values (the compiler vectorises them; a single double accumulator is
// latency-bound), chunk totals summed in double.
inline constexpr std::int64_t chunk = 4096;

template <class F>
double lane_sum(std::int64_t count, F&& term) {
    double total = 0;
    for (std::int64_t c0 = 0; c0 < count; c0 += chunk) {
        const std::int64_t c1 = c0 + chunk < count ? c0 + chunk : count;
        float lanes[16] = {};
        std::int64_t i = c0;
        for (; i + 16 <= c1; i += 16)
            for (int j = 0; j < 16; ++j) lanes[j] += term(i + j);
        for (; i < c1; ++i) lanes[0] += term(i);
        for (float v : lanes) total += v;
    }
    return total;
}

/// One channel's sum over the batch, and its sum of squared deviations from `mean` (the second
/// of batch_norm_train's two passes: no cancellation for large means).
inline double channel_sum(const float* x, int n, int c, std::int64_t ch, std::int64_t plane) {
    double sum = 0;
    for (int i = 0; i < n; ++i) {
        const float* p = x + (std::int64_t(i) * c + ch) * plane;
        sum += lane_sum(plane, [p](std::int64_t j) { return p[j]; });
    }
    return sum;
}
inline double channel_squared_deviation(const float* x, int n, int c, std::int64_t ch, std::int64_t plane, float mean) {
    double sq = 0;
    for (int i = 0; i < n; ++i) {
        const float* p = x + (std::int64_t(i) * c + ch) * plane;
        sq += lane_sum(plane, [p, mean](std::int64_t j) {
            const float d = p[j] - mean;
            return d * d;
        });
    }
    return sq;
}
/// Normalises one channel with the statistics of `m` values (sum of squared deviations `sq`),
/// saves them for backward and updates the running averages.
inline void normalize_channel(const float* x, int n, int c, std::int64_t ch, std::int64_t plane, double m, double mean,
                              double sq, const float* gamma, const float* beta, float eps, float momentum,
                              float* running_mean, float* running_var, float* y, float* saved_mean,
                              float* saved_invstd) {
    const double var = sq / m;
    const float invstd = float(1.0 / std::sqrt(var + eps));
    saved_mean[ch] = float(mean);
    saved_invstd[ch] = invstd;
    const float scale = gamma[ch] * invstd, shift = beta[ch] - float(mean) * scale;
    for (int i = 0; i < n; ++i) {
        const float* p = x + (std::int64_t(i) * c + ch) * plane;
        float* q = y + (std::int64_t(i) * c + ch) * plane;
        for (std::int64_t j = 0; j < plane; ++j) q[j] = p[j] * scale + shift;
    }
    const double unbiased = m > 1 ? sq / (m - 1) : var;
    running_mean[ch] = float((1.0 - momentum) * running_mean[ch] + momentum * mean);
    running_var[ch] = float((1.0 - momentum) * running_var[ch] + momentum * unbiased);
}
/// One channel's sum of dy and of dy * (x - mean).
inline void channel_gradient_sums(const float* x, const float* dy, int n, int c, std::int64_t ch, std::int64_t plane,
                                  float mean, double& sum_dy, double& sum_dy_xc) {
    sum_dy = 0;
    sum_dy_xc = 0;
    for (int i = 0; i < n; ++i) {
        const float* p = x + (std::int64_t(i) * c + ch) * plane;
        const float* d = dy + (std::int64_t(i) * c + ch) * plane;
        sum_dy += lane_sum(plane, [d](std::int64_t j) { return d[j]; });
        sum_dy_xc += lane_sum(plane, [p, d, mean](std::int64_t j) { return d[j] * (p[j] - mean); });
    }
}
/// dx of one channel from the batch's gradient sums over `m` values.
inline void channel_input_gradient(const float* x, const float* dy, int n, int c, std::int64_t ch, std::int64_t plane,
                                   double m, float gamma, float mean, float invstd, double sum_dy, double sum_dy_xhat,
                                   float* dx) {
    const float k = gamma * invstd;
    const float mean_dy = float(sum_dy / m), mean_dy_xhat = float(sum_dy_xhat / m);
    for (int i = 0; i < n; ++i) {
        const float* p = x + (std::int64_t(i) * c + ch) * plane;
        const float* d = dy + (std::int64_t(i) * c + ch) * plane;
        float* q = dx + (std::int64_t(i) * c + ch) * plane;
        for (std::int64_t j = 0; j < plane; ++j) q[j] = k * (d[j] - mean_dy - (p[j] - mean) * invstd * mean_dy_xhat);
    }
}
}  // namespace bn_detail

inline void batch_norm_train(const float* x, int n, int c, std::int64_t plane, const float* gamma, const float* beta,
                             float eps, float momentum, float* running_mean, float* running_var, float* y,
                             float* saved_mean, float* saved_invstd) {
    const double m = double(std::int64_t(n) * plane);
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch) {
            const double mean = bn_detail::channel_sum(x, n, c, ch, plane) / m;
            const double sq = bn_detail::channel_squared_deviation(x, n, c, ch, plane, float(mean));
            bn_detail::normalize_channel(x, n, c, ch, plane, m, mean, sq, gamma, beta, eps, momentum, running_mean,
                                         running_var, y, saved_mean, saved_invstd);
        }
    });
}

/// batch_norm_train over a batch spread across processes (synchronized batch norm in
/// data-parallel training): `sum(values, count)` replaces doubles by their sum over every
/// process. The same two passes, each summed across processes: the batch's sums and its size,
/// then the squared deviations from the batch's mean. Returns the batch's size (values per
/// channel) for the backward. A process with no images (n = 0) still takes part.
template <class Sum>
double batch_norm_train_synced(const float* x, int n, int c, std::int64_t plane, const float* gamma, const float* beta,
                               float eps, float momentum, float* running_mean, float* running_var, float* y,
                               float* saved_mean, float* saved_invstd, Sum&& sum) {
    std::vector<double> totals(static_cast<std::size_t>(c) + 1);
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch) totals[std::size_t(ch)] = bn_detail::channel_sum(x, n, c, ch, plane);
    });
    totals[std::size_t(c)] = double(std::int64_t(n) * plane);
    sum(totals.data(), totals.size());
    const double m = totals[std::size_t(c)];
    std::vector<double> squares(static_cast<std::size_t>(c));
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch)
            squares[std::size_t(ch)] =
                bn_detail::channel_squared_deviation(x, n, c, ch, plane, float(totals[std::size_t(ch)] / m));
    });
    sum(squares.data(), squares.size());
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch)
            bn_detail::normalize_channel(x, n, c, ch, plane, m, totals[std::size_t(ch)] / m, squares[std::size_t(ch)],
                                         gamma, beta, eps, momentum, running_mean, running_var, y, saved_mean,
                                         saved_invstd);
    });
    return m;
}

/// Eval-mode batch norm of one channel as the affine map y = x * scale + shift (running
/// statistics): scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale.
/// batch_norm_eval and the convolution folding below both use it.
inline void batch_norm_eval_channel(float gamma, float beta, float running_mean, float running_var, float eps,
                                    float& scale, float& shift) {
    scale = gamma / std::sqrt(running_var + eps);
    shift = beta - running_mean * scale;
}

inline void batch_norm_eval(const float* x, int n, int c, std::int64_t plane, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y) {
    parallel_for(0, std::int64_t(n) * c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t nc = b; nc < e; ++nc) {
            const std::int64_t ch = nc % c;
            float scale, shift;
            batch_norm_eval_channel(gamma[ch], beta[ch], running_mean[ch], running_var[ch], eps, scale, shift);
            const float* p = x + nc * plane;
            float* q = y + nc * plane;
            for (std::int64_t j = 0; j < plane; ++j) q[j] = p[j] * scale + shift;
        }
    });
}

/// The eval-mode map of every channel: scale[c], shift[c] (batch_norm_eval_channel), for folding
/// the batch norm into the convolution before it.
inline void batch_norm_eval_affine(int c, const float* gamma, const float* beta, const float* running_mean,
                                   const float* running_var, float eps, float* scale, float* shift) {
    for (int ch = 0; ch < c; ++ch)
        batch_norm_eval_channel(gamma[ch], beta[ch], running_mean[ch], running_var[ch], eps, scale[ch], shift[ch]);
}

/// The bias of a convolution with a batch norm folded in: conv(x, w * scale) + folded equals
/// batch_norm(conv(x, w) + bias), folded[c] = bias[c] * scale[c] + shift[c] (bias may be null:
/// none), i.e. (bias - running_mean) * scale + beta.
inline void fold_conv_bias(int c, const float* bias, const float* scale, const float* shift, float* folded) {
    for (int ch = 0; ch < c; ++ch) folded[ch] = (bias ? bias[ch] * scale[ch] : 0.f) + shift[ch];
}

/// dx is overwritten; dgamma and dbeta are accumulated. Uses the batch statistics saved by
/// batch_norm_train (the gradient of train-mode normalisation).
inline void batch_norm_backward(const float* x, const float* dy, int n, int c, std::int64_t plane,
                                const float* gamma, const float* saved_mean, const float* saved_invstd, float* dx,
                                float* dgamma, float* dbeta) {
    const double m = double(std::int64_t(n) * plane);
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch) {
            double sum_dy, sum_dy_xc;
            bn_detail::channel_gradient_sums(x, dy, n, c, ch, plane, saved_mean[ch], sum_dy, sum_dy_xc);
            const double sum_dy_xhat = sum_dy_xc * saved_invstd[ch];
            dgamma[ch] += float(sum_dy_xhat);
            dbeta[ch] += float(sum_dy);
            bn_detail::channel_input_gradient(x, dy, n, c, ch, plane, m, gamma[ch], saved_mean[ch], saved_invstd[ch],
                                              sum_dy, sum_dy_xhat, dx);
        }
    });
}

/// batch_norm_backward of batch_norm_train_synced, `m` the batch's size it returned: dx from
/// the gradient sums over every process, dgamma and dbeta from this process's share only (the
/// trainer sums parameter gradients across processes afterwards, as every other gradient).
template <class Sum>
void batch_norm_backward_synced(const float* x, const float* dy, int n, int c, std::int64_t plane, double m,
                                const float* gamma, const float* saved_mean, const float* saved_invstd, float* dx,
                                float* dgamma, float* dbeta, Sum&& sum) {
    std::vector<double> sums(2 * std::size_t(c));  // per channel: sum dy, sum dy * xhat
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch) {
            double sum_dy, sum_dy_xc;
            bn_detail::channel_gradient_sums(x, dy, n, c, ch, plane, saved_mean[ch], sum_dy, sum_dy_xc);
            sums[2 * std::size_t(ch)] = sum_dy;
            sums[2 * std::size_t(ch) + 1] = sum_dy_xc * saved_invstd[ch];
            dgamma[ch] += float(sums[2 * std::size_t(ch) + 1]);
            dbeta[ch] += float(sum_dy);
        }
    });
    sum(sums.data(), sums.size());
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch)
            bn_detail::channel_input_gradient(x, dy, n, c, ch, plane, m, gamma[ch], saved_mean[ch], saved_invstd[ch],
                                              sums[2 * std::size_t(ch)], sums[2 * std::size_t(ch) + 1], dx);
    });
}

/// Gradient of eval-mode normalisation (a fixed affine map per channel).
/// Gradient of eval-mode normalisation, a fixed affine map per channel with frozen statistics
/// (fine-tuning with frozen batch norm): dx is overwritten, dgamma and dbeta accumulated.
inline void batch_norm_eval_backward(const float* x, const float* dy, int n, int c, std::int64_t plane,
                                     const float* gamma, const float* running_mean, const float* running_var,
                                     float eps, float* dx, float* dgamma, float* dbeta) {
    parallel_for(0, c, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t ch = b; ch < e; ++ch) {
            const float invstd = 1.f / std::sqrt(running_var[ch] + eps);
            const float scale = gamma[ch] * invstd, mean = running_mean[ch];
            double sum_dy = 0, sum_dy_xhat = 0;
            for (int i = 0; i < n; ++i) {
                const std::int64_t base = (std::int64_t(i) * c + ch) * plane;
                for (std::int64_t j = 0; j < plane; ++j) {
                    const float d = dy[base + j];
                    dx[base + j] = d * scale;
                    sum_dy += d;
                    sum_dy_xhat += double(d) * (x[base + j] - mean) * invstd;
                }
            }
            dgamma[ch] += float(sum_dy_xhat);
            dbeta[ch] += float(sum_dy);
        }
    });
}

}  // namespace segnet::backend::cpu
