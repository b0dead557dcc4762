// segnet/metrics/confusion.hpp: the confusion matrix of a labelled set and the paper's pixel
// metrics from it: global accuracy G, class-average accuracy C, mean IoU, per-class values.
//
//   segnet::ConfusionMatrix cm(11);
//   cm.add_logits(logits, labels, /*ignore_label=*/11);   // or cm.add(predicted, labels, 11)
//   std::printf("G %.1f C %.1f mIoU %.1f\n", cm.global_accuracy(), cm.class_average_accuracy(), cm.mean_iou());
//
// Every result is in percent (0..100), as SEGNET.md and the paper's tables, so printed numbers
// compare directly with them. Counts are int64 (a CamVid split is ~6e7 pixels, more than int32
// sums safely). Rows are the truth, columns the prediction; pixels whose truth is the ignore
// label (void) are not counted, so void is excluded from G, C and mIoU.
//
// Classes that make a metric undefined:
// - class accuracy (recall) of c = TP / (TP + FN) is undefined when c is absent from the truth:
//   class_accuracy() gives NaN there and class_average_accuracy() averages over classes present
//   in the truth only (a class predicted but never true thus does not enter C; it lowers G and
//   the IoU of the classes it was mistaken for, and its own IoU is 0).
// - IoU of c = TP / (TP + FP + FN) is undefined when c is in neither truth nor prediction:
//   class_iou() gives NaN and mean_iou() averages over classes with TP + FP + FN > 0.
// - With no counted pixel at all, G, C and mIoU are 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/backend/cpu/argmax.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet {

class ConfusionMatrix {
public:
    explicit ConfusionMatrix(int num_classes) : classes_(num_classes) {
        if (num_classes <= 0 || num_classes > 256)
            throw std::invalid_argument("segnet::ConfusionMatrix: the number of classes must be in "
                                        "1..256 (uint8 labels), got " + std::to_string(num_classes));
        counts_.assign(std::size_t(num_classes) * num_classes, 0);
    }

    int num_classes() const { return classes_; }
    /// Pixels whose truth is `truth` and prediction `predicted`.
    std::int64_t count(int truth, int predicted) const {
        return counts_[std::size_t(truth) * classes_ + predicted];
    }
    /// Row-major K x K counts (row = truth).
    const std::vector<std::int64_t>& counts() const { return counts_; }

    /// Counts predicted vs true labels, both {N, 1, H, W} uint8. Pixels whose truth equals
    /// ignore_label (negative = none) are skipped. Throws std::invalid_argument, before
    /// counting anything, on mismatched extents, a truth value that is neither a class nor the
    /// ignore label, or a predicted value that is not a class.
    void add(TensorView<Cpu, const std::uint8_t> predicted, TensorView<Cpu, const std::uint8_t> truth,
             int ignore_label = -1) {
        const Extents e = truth.extents();
        if (e.c != 1 || predicted.extents() != e)
            throw std::invalid_argument("segnet::ConfusionMatrix::add: prediction and truth must both "
                                        "be {N, 1, H, W} with equal extents; prediction is " +
                                        to_string(predicted.extents()) + ", truth is " + to_string(e));
        const std::uint8_t* p = predicted.data();
        const std::uint8_t* t = truth.data();
        const std::int64_t n = truth.size();
        for (std::int64_t i = 0; i < n; ++i) {
            if (t[i] == ignore_label) continue;
            if (t[i] >= classes_) throw bad_label("truth", t[i], i, e, ignore_label);
            if (p[i] >= classes_) throw bad_label("prediction", p[i], i, e, -1);
        }
        for (std::int64_t i = 0; i < n; ++i)
            if (t[i] != ignore_label) ++counts_[std::size_t(t[i]) * classes_ + p[i]];
    }

    /// Counts argmax over the channels of {N, K, H, W} logits (or probabilities) against truth.
    /// Ties go to the lowest class index.
    void add_logits(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> truth,
                    int ignore_label = -1) {
        const Extents e = logits.extents();
        if (e.c != classes_)
            throw std::invalid_argument("segnet::ConfusionMatrix::add_logits: logits have " +
                                        std::to_string(e.c) + " channels, the matrix has " +
                                        std::to_string(classes_) + " classes");
        Tensor<Cpu, std::uint8_t> predicted({e.n, 1, e.h, e.w});
        argmax_channels(logits, predicted.view());
        add(predicted.view(), truth, ignore_label);
    }

    /// Adds another matrix's counts (e.g. from another thread or shard).
    ConfusionMatrix& operator+=(const ConfusionMatrix& other) {
        if (other.classes_ != classes_)
            throw std::invalid_argument("segnet::ConfusionMatrix::operator+=: " +
                                        std::to_string(other.classes_) + " classes added to " +
                                        std::to_string(classes_));
        for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
        return *this;
    }
    void reset() { std::fill(counts_.begin(), counts_.end(), 0); }
    /// The counts as doubles (exact below 2^53), to be summed across processes, and back.
    std::vector<double> totals() const { return {counts_.begin(), counts_.end()}; }
    void assign_totals(const double* totals) {
        for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] = std::int64_t(totals[i]);
    }

    std::int64_t total() const {
        std::int64_t s = 0;
        for (std::int64_t v : counts_) s += v;
        return s;
    }
    std::int64_t true_positives(int c) const { return count(c, c); }
    std::int64_t truth_pixels(int c) const {  // TP + FN: row sum
        std::int64_t s = 0;
        for (int j = 0; j < classes_; ++j) s += count(c, j);
        return s;
    }
    std::int64_t predicted_pixels(int c) const {  // TP + FP: column sum
        std::int64_t s = 0;
        for (int i = 0; i < classes_; ++i) s += count(i, c);
        return s;
    }

    /// G: correctly classified pixels / all counted pixels, in %.
    double global_accuracy() const {
        const std::int64_t all = total();
        std::int64_t correct = 0;
        for (int c = 0; c < classes_; ++c) correct += true_positives(c);
        return all > 0 ? 100.0 * double(correct) / double(all) : 0.0;
    }
    /// Per-class recall TP / (TP + FN) in %; NaN for a class absent from the truth.
    std::vector<double> class_accuracy() const { return per_class(&ConfusionMatrix::accuracy_of); }
    /// C: mean of class_accuracy() over classes present in the truth, in %.
    double class_average_accuracy() const { return mean_defined(&ConfusionMatrix::accuracy_of); }
    /// Per-class TP / (TP + FP + FN) in %; NaN for a class in neither truth nor prediction.
    std::vector<double> class_iou() const { return per_class(&ConfusionMatrix::iou_of); }
    /// mIoU: mean of class_iou() over classes with TP + FP + FN > 0, in %.
    double mean_iou() const { return mean_defined(&ConfusionMatrix::iou_of); }

    /// Writes the argmax over channels of {N, K, H, W} scores into {N, 1, H, W} labels
    /// (the backend's rule, backend/cpu/argmax.hpp: ties go to the lowest class).
    static void argmax_channels(TensorView<Cpu, const float> scores, TensorView<Cpu, std::uint8_t> out) {
        backend::cpu::argmax_channels(scores, out);
    }

private:
    using PerClassValue = double (ConfusionMatrix::*)(int) const;
    double accuracy_of(int c) const {
        const std::int64_t t = truth_pixels(c);
        return t > 0 ? 100.0 * double(true_positives(c)) / double(t) : std::numeric_limits<double>::quiet_NaN();
    }
    double iou_of(int c) const {
        const std::int64_t tp = true_positives(c);
        const std::int64_t uni = truth_pixels(c) + predicted_pixels(c) - tp;
        return uni > 0 ? 100.0 * double(tp) / double(uni) : std::numeric_limits<double>::quiet_NaN();
    }
    std::vector<double> per_class(PerClassValue value) const {
        std::vector<double> r(static_cast<std::size_t>(classes_));
        for (int c = 0; c < classes_; ++c) r[c] = (this->*value)(c);
        return r;
    }
    // Computed without a temporary vector: g++ 12 warns (-Wfree-nonheap-object, a false positive)
    // when the vector's destructor is inlined into the evaluator.
    double mean_defined(PerClassValue value) const {
        double sum = 0.0;
        int n = 0;
        for (int c = 0; c < classes_; ++c)
            if (const double v = (this->*value)(c); !std::isnan(v)) {
                sum += v;
                ++n;
            }
        return n > 0 ? sum / n : 0.0;
    }

    std::invalid_argument bad_label(const char* which, int value, std::int64_t index, const Extents& e,
                                    int ignore_label) const {
        const std::int64_t plane = e.plane();
        std::string msg = "segnet::ConfusionMatrix::add: " + std::string(which) + " label value " +
                          std::to_string(value) + " at (n=" + std::to_string(index / plane) +
                          ", y=" + std::to_string(index % plane / e.w) + ", x=" +
                          std::to_string(index % e.w) + ") is not a class (" +
                          std::to_string(classes_) + " classes)";
        if (ignore_label >= 0) msg += " and is not the ignore label (" + std::to_string(ignore_label) + ")";
        return std::invalid_argument(msg);
    }

    int classes_;
    std::vector<std::int64_t> counts_;
};

}  // namespace segnet
