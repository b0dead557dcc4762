// segnet/programs/crf.hpp: `--crf` in segnet-segment and segnet-evaluate: the dense CRF
// (refine/dense_crf.hpp) on the network's probabilities (the softmax, or the mean of the dropout
// samples with --samples) and the image the network saw, at the network's resolution.
//
//   std::optional<refine::DenseCrfOptions> crf = cli::crf_options(args);   // --crf, --crf-*
//   Tensor<Cpu, std::uint8_t> labels = crf_labels(probabilities, network_images, normalization, *crf);
#pragma once

#include "segnet/core/tensor.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/programs/cli.hpp"
#include "segnet/refine/dense_crf.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace segnet::programs {

/// Image n of normalised {N, 3, H, W} network inputs back as H x W x 3 RGB bytes (the inverse of
/// Normalization::apply, rounded): the colours the CRF's appearance kernel compares.
inline std::vector<std::uint8_t> network_rgb(const Tensor<Cpu>& images, int n, const Normalization& normalization) {
    const std::int64_t plane = std::int64_t(images.h()) * images.w();
    std::vector<std::uint8_t> rgb(std::size_t(plane) * 3);
    for (int c = 0; c < 3; ++c) {
        const float* x = images.data() + (std::int64_t(n) * images.c() + c) * plane;
        const float mean = normalization.mean[std::size_t(c)], stddev = normalization.stddev[std::size_t(c)];
        for (std::int64_t i = 0; i < plane; ++i) {
            const float pixel = (x[i] * stddev + mean) / normalization.scale;
            rgb[std::size_t(i) * 3 + std::size_t(c)] = std::uint8_t(std::clamp(std::lround(pixel), 0L, 255L));
        }
    }
    return rgb;
}

/// The dense CRF's labels {N, 1, H, W} of a batch: `probabilities` {N, K, H, W} (a softmax),
/// `images` the {N, 3, H, W} normalised inputs the network ran on.
inline Tensor<Cpu, std::uint8_t> crf_labels(const Tensor<Cpu>& probabilities, const Tensor<Cpu>& images,
                                            const Normalization& normalization, const refine::DenseCrfOptions& options) {
    const int classes = probabilities.c(), height = probabilities.h(), width = probabilities.w();
    const std::int64_t plane = std::int64_t(height) * width;
    Tensor<Cpu, std::uint8_t> labels({probabilities.n(), 1, height, width});
    for (int n = 0; n < probabilities.n(); ++n) {
        const std::vector<std::uint8_t> rgb = network_rgb(images, n, normalization);
        const std::vector<std::uint8_t> refined = refine::dense_crf(
            probabilities.data() + std::int64_t(n) * classes * plane, classes, height, width, rgb.data(), options);
        std::copy(refined.begin(), refined.end(), labels.data() + std::int64_t(n) * plane);
    }
    return labels;
}

namespace cli {

/// --crf and its parameters (--crf-iterations N, --crf-appearance W,THETA_XY,THETA_RGB,
/// --crf-smoothness W,THETA_XY); nullopt without --crf. A parameter without --crf, or a value that
/// is not a list of that many numbers in range, is a UsageError naming the flag.
inline std::optional<refine::DenseCrfOptions> crf_options(Args& args) {
    const bool crf = args.flag("--crf");
    const auto iterations = args.integer("--crf-iterations", 0, 1000);
    const auto appearance = args.text("--crf-appearance"), smoothness = args.text("--crf-smoothness");
    if (!crf) {
        if (iterations) throw UsageError("--crf-iterations: needs --crf");
        if (appearance) throw UsageError("--crf-appearance: needs --crf");
        if (smoothness) throw UsageError("--crf-smoothness: needs --crf");
        return std::nullopt;
    }
    // "W,THETA..." as numbers: the weight finite and >= 0, the widths finite and > 0.
    auto parse = [](const std::string& flag, const std::string& value, const std::vector<const char*>& names) {
        std::vector<float> numbers;
        std::size_t start = 0;
        for (std::size_t i = 0; i < names.size(); ++i) {
            const std::size_t comma = value.find(',', start);
            const bool last = i + 1 == names.size();
            if (last != (comma == std::string::npos) || (last && start > value.size()))
                throw UsageError(flag + ": expected " + std::to_string(names.size()) + " comma-separated numbers, got '" +
                                 value + "'");
            const std::string part = value.substr(start, last ? std::string::npos : comma - start);
            char* end = nullptr;
            const double x = part.empty() ? NAN : std::strtod(part.c_str(), &end);
            const bool weight = i == 0;
            if (!std::isfinite(x) || *end != '\0' || (weight ? x < 0 : x <= 0) || x > 1e6)
                throw UsageError(flag + ": " + names[i] + " must be a number " + (weight ? ">= 0" : "> 0") +
                                 " (at most 1e6), got '" + part + "'");
            numbers.push_back(float(x));
            start = comma + 1;
        }
        return numbers;
    };
    refine::DenseCrfOptions o;
    if (iterations) o.iterations = int(*iterations);
    if (appearance) {
        const auto v = parse("--crf-appearance", *appearance, {"the weight", "theta_xy", "theta_rgb"});
        o.appearance_weight = v[0], o.appearance_xy = v[1], o.appearance_rgb = v[2];
    }
    if (smoothness) {
        const auto v = parse("--crf-smoothness", *smoothness, {"the weight", "theta_xy"});
        o.smoothness_weight = v[0], o.smoothness_xy = v[1];
    }
    return o;
}

}  // namespace cli

}  // namespace segnet::programs
