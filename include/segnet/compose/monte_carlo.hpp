// segnet/compose/monte_carlo.hpp: Monte-Carlo dropout inference (Bayesian SegNet, Kendall,
// Badrinarayanan and Cipolla, arXiv:1511.02680): dropout stays on at test time, the network is
// sampled T times, the mean softmax is the segmentation and the samples' spread an uncertainty.
//
//   Model<models::BayesianSegNetBasic<11>, Cpu> model(42);
//   MonteCarloPrediction p = monte_carlo_predict(model, images, 40);   // images {N, 3, H, W}
//   p.mean        // {N, K, H, W}: the mean of the 40 softmax samples (argmax: the labels)
//   p.entropy     // {N, 1, H, W}: predictive entropy of the mean, in nats (0 .. log K)
//   p.variance    // {N, 1, H, W}: the samples' variance per class, averaged over the classes
//
// Each image's T samples run as batches of up to `batch` copies of the image (sampling on), not
// T forwards of one image; a Dropout layer masks copy t as a single forward at sample t would, and
// each image restarts the sample counter, so the result depends only on the model's seed, T and
// the image (not on the batch size or the image's place in the list). The variance measure is the
// reference's (SegNet-Tutorial Scripts/test_bayesian_segnet.py: the mean over classes of the
// per-class variance of the softmax samples); the entropy is the usual predictive entropy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/compose/any_model.hpp"

namespace segnet {

/// The most samples monte_carlo_predict() takes: the paper saturates by about 40; 1000 is ample.
inline constexpr int max_monte_carlo_samples = 1000;

struct MonteCarloPrediction {
    Tensor<Cpu> mean;      ///< {N, K, H, W}: mean softmax over the samples
    Tensor<Cpu> entropy;   ///< {N, 1, H, W}: -sum_k mean_k log mean_k (nats)
    Tensor<Cpu> variance;  ///< {N, 1, H, W}: per-class variance of the samples, averaged over classes
};

/// The softmax over the channels of {N, K, H, W} logits: each pixel's K probabilities (summed in
/// double, so that they add up to 1 within float rounding).
inline Tensor<Cpu> softmax_channels(const Tensor<Cpu>& logits) {
    const Extents e = logits.extents();
    const std::int64_t plane = std::int64_t(e.h) * e.w;
    Tensor<Cpu> out({e.n, e.c, e.h, e.w});
    for (int n = 0; n < e.n; ++n) {
        const float* z = logits.data() + std::int64_t(n) * e.c * plane;
        float* p = out.data() + std::int64_t(n) * e.c * plane;
        for (std::int64_t i = 0; i < plane; ++i) {
            float top = z[i];
            for (int k = 1; k < e.c; ++k) top = std::max(top, z[k * plane + i]);
            double total = 0.0;
            for (int k = 0; k < e.c; ++k) total += std::exp(double(z[k * plane + i] - top));
            for (int k = 0; k < e.c; ++k) p[k * plane + i] = float(std::exp(double(z[k * plane + i] - top)) / total);
        }
    }
    return out;
}

/// Predictive entropy of per-pixel class probabilities {N, K, H, W}: -sum_k p_k log p_k, in nats
/// (0 .. log K), as {N, 1, H, W}.
inline Tensor<Cpu> predictive_entropy(const Tensor<Cpu>& probabilities) {
    const Extents e = probabilities.extents();
    const std::int64_t plane = std::int64_t(e.h) * e.w;
    Tensor<Cpu> entropy({e.n, 1, e.h, e.w});
    for (int n = 0; n < e.n; ++n) {
        const float* p = probabilities.data() + std::int64_t(n) * e.c * plane;
        for (std::int64_t i = 0; i < plane; ++i) {
            double h = 0.0;
            for (int k = 0; k < e.c; ++k)
                if (const double m = p[k * plane + i]; m > 0.0) h -= m * std::log(m);
            entropy.data()[n * plane + i] = float(h);
        }
    }
    return entropy;
}

/// Runs `samples` dropout samples of each image (in batches of at most `batch` copies; 0: all
/// samples in one batch) and returns their mean softmax and two uncertainties. Throws
/// std::invalid_argument for samples outside [1, max_monte_carlo_samples] or a model without
/// random layers (every sample would be the same), and Cancelled when the model's CancelToken
/// (AnyModel::set_cancel_token) is cancelled: checked before each batch and, by the forward,
/// before each layer. Leaves sampling off, even when it throws.
inline MonteCarloPrediction monte_carlo_predict(AnyModel<Cpu>& model, const Tensor<Cpu>& images, int samples,
                                                int batch = 0) {
    if (samples < 1 || samples > max_monte_carlo_samples)
        throw std::invalid_argument("segnet::monte_carlo_predict: samples must be in [1, " +
                                    std::to_string(max_monte_carlo_samples) + "], not " + std::to_string(samples));
    if (!model.has_random_layers())
        throw std::invalid_argument("segnet::monte_carlo_predict: model '" + std::string(model.name()) +
                                    "' has no dropout, so every sample is the same (use a Bayesian model)");
    if (batch < 0) throw std::invalid_argument("segnet::monte_carlo_predict: batch must be >= 0");
    if (batch == 0 || batch > samples) batch = samples;

    const Extents in = images.extents();
    const int classes = model.classes();
    const std::int64_t plane = std::int64_t(in.h) * in.w, image_size = std::int64_t(in.c) * plane;
    MonteCarloPrediction out{Tensor<Cpu>({in.n, classes, in.h, in.w}), Tensor<Cpu>(),  // entropy: from the mean, below
                             Tensor<Cpu>({in.n, 1, in.h, in.w})};
    struct SamplingOff {  // sampling must not outlive this call, even when a forward throws
        AnyModel<Cpu>& model;
        ~SamplingOff() { model.set_sampling(false); }
    } sampling_off{model};

    Tensor<Cpu> copies;
    std::vector<double> sum, sum_squares;
    for (int n = 0; n < in.n; ++n) {
        model.set_sampling(true);  // restarts the sample counter: image n draws samples 0 .. T-1
        sum.assign(std::size_t(classes) * plane, 0.0);
        sum_squares.assign(sum.size(), 0.0);
        for (int first = 0; first < samples; first += batch) {
            // Between batches too, so that a cancelled run stops before copying the next batch.
            if (const CancelToken* cancel = model.cancel_token()) cancel->throw_if_cancelled("the Monte-Carlo sampling");
            const int count = std::min(batch, samples - first);
            copies.resize({count, in.c, in.h, in.w});
            for (int t = 0; t < count; ++t)
                std::copy_n(images.data() + n * image_size, image_size, copies.data() + t * image_size);
            const Tensor<Cpu>& logits = model.forward(copies, Mode::eval);
            if (logits.c() != classes || logits.h() != in.h || logits.w() != in.w)
                throw std::logic_error("segnet::monte_carlo_predict: the model's output is not {K, H, W} of the input");
            const Tensor<Cpu> probabilities = softmax_channels(logits);
            for (int t = 0; t < count; ++t) {
                const float* q = probabilities.data() + std::int64_t(t) * classes * plane;
                for (std::int64_t k = 0; k < classes * plane; ++k) {
                    const double p = q[k];
                    sum[std::size_t(k)] += p;
                    sum_squares[std::size_t(k)] += p * p;
                }
            }
        }
        float* mean = out.mean.data() + std::int64_t(n) * classes * plane;
        for (std::int64_t i = 0; i < plane; ++i) {
            double variance = 0.0;
            for (int k = 0; k < classes; ++k) {
                const double m = sum[std::size_t(k * plane + i)] / samples;
                mean[k * plane + i] = float(m);
                variance += std::max(0.0, sum_squares[std::size_t(k * plane + i)] / samples - m * m);
            }
            out.variance.data()[n * plane + i] = float(variance / classes);
        }
    }
    out.entropy = predictive_entropy(out.mean);
    return out;
}

}  // namespace segnet
