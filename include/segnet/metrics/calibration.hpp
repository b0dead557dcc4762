// segnet/metrics/calibration.hpp: does the uncertainty mean something? Pixel accuracy against
// the network's uncertainty (Bayesian SegNet's check: accuracy should fall as uncertainty rises).
//
//   segnet::UncertaintyCalibration calibration;                  // uncertainties in [0, 1]
//   calibration.add(predicted, uncertainty, truth, /*ignore_label=*/11);
//   for (const auto& row : calibration.quantile_bins(10))        // deciles of the counted pixels
//       std::printf("%.3f-%.3f  %lld px  %.1f %%\n", row.lower, row.upper, (long long)row.pixels, row.accuracy);
//
// The uncertainty is the one segnet-segment --uncertainty draws: predictive entropy / log K, in
// [0, 1] (values outside are clamped). Pixels are counted into `resolution` equal-width bins of
// [0, 1]; quantile_bins() groups consecutive bins until each group holds its share of the pixels,
// so a decile's edges are exact to 1 / resolution and a group can hold more than its share when
// one fine bin does (many pixels at exactly 0). Pixels whose truth is the ignore label are not
// counted, as in the confusion matrix. Accuracy is in percent, as every metric of this library.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/core/tensor.hpp"

namespace segnet {

class UncertaintyCalibration {
public:
    struct Row {
        double lower = 0, upper = 0;  ///< the uncertainty range of the group
        std::int64_t pixels = 0;
        double accuracy = 0;          ///< percent of its pixels labelled right; 0 with no pixel
    };

    explicit UncertaintyCalibration(int resolution = 1000) : resolution_(resolution) {
        if (resolution < 1 || resolution > 1'000'000)
            throw std::invalid_argument("segnet::UncertaintyCalibration: resolution must be in 1..1000000, got " +
                                        std::to_string(resolution));
        pixels_.assign(std::size_t(resolution), 0);
        correct_.assign(std::size_t(resolution), 0);
    }

    /// Counts a batch: predicted and truth labels {N, 1, H, W} uint8, uncertainty {N, 1, H, W}.
    /// Throws std::invalid_argument, before counting anything, on mismatched extents.
    void add(TensorView<Cpu, const std::uint8_t> predicted, TensorView<Cpu, const float> uncertainty,
             TensorView<Cpu, const std::uint8_t> truth, int ignore_label = -1) {
        const Extents e = truth.extents();
        if (e.c != 1 || predicted.extents() != e || uncertainty.extents() != e)
            throw std::invalid_argument("segnet::UncertaintyCalibration::add: the predictions, the uncertainty and "
                                        "the truth must all be {N, 1, H, W} of one size");
        const std::int64_t n = truth.size();
        for (std::int64_t i = 0; i < n; ++i) {
            const int label = truth.data()[i];
            if (label == ignore_label) continue;
            const float raw = uncertainty.data()[i];
            const float u = raw > 0.f ? std::min(raw, 1.f) : 0.f;  // NaN counts as 0
            const auto bin = std::size_t(std::min(resolution_ - 1, int(u * float(resolution_))));
            ++pixels_[bin];
            if (predicted.data()[i] == label) ++correct_[bin];
        }
    }

    std::int64_t pixels() const { return sum(pixels_, 0, resolution_); }

    /// `count` groups of about equal pixel counts, in rising uncertainty (deciles: 10).
    std::vector<Row> quantile_bins(int count = 10) const {
        check_count(count);
        std::vector<Row> rows;
        const std::int64_t total = pixels();
        int begin = 0;
        std::int64_t so_far = 0;
        for (int g = 0; g < count; ++g) {
            const std::int64_t target = total * (g + 1) / count;
            int end = begin;
            while (end < resolution_ && (so_far < target || g == count - 1)) so_far += pixels_[std::size_t(end++)];
            rows.push_back(row(begin, end));
            begin = end;
        }
        return rows;
    }

    /// `count` groups of equal uncertainty width: [0, 1/count), [1/count, 2/count), ...
    std::vector<Row> equal_width_bins(int count = 10) const {
        check_count(count);
        if (resolution_ % count != 0)
            throw std::invalid_argument("segnet::UncertaintyCalibration::equal_width_bins: " + std::to_string(count) +
                                        " groups do not divide the resolution " + std::to_string(resolution_));
        std::vector<Row> rows;
        const int width = resolution_ / count;
        for (int g = 0; g < count; ++g) rows.push_back(row(g * width, (g + 1) * width));
        return rows;
    }

private:
    static std::int64_t sum(const std::vector<std::int64_t>& v, int begin, int end) {
        std::int64_t s = 0;
        for (int i = begin; i < end; ++i) s += v[std::size_t(i)];
        return s;
    }
    void check_count(int count) const {
        if (count < 1 || count > resolution_)
            throw std::invalid_argument("segnet::UncertaintyCalibration: the number of groups must be in 1.." +
                                        std::to_string(resolution_) + ", got " + std::to_string(count));
    }
    /// The fine bins [begin, end) as one row.
    Row row(int begin, int end) const {
        Row r;
        r.lower = double(begin) / resolution_;
        r.upper = double(end) / resolution_;
        r.pixels = sum(pixels_, begin, end);
        r.accuracy = r.pixels ? 100.0 * double(sum(correct_, begin, end)) / double(r.pixels) : 0.0;
        return r;
    }

    int resolution_;
    std::vector<std::int64_t> pixels_, correct_;
};

}  // namespace segnet
