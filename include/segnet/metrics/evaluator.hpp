// segnet/metrics/evaluator.hpp: the paper's four numbers (G, C, mIoU, BF) and the per-class
// table, accumulated over a dataset.
//
//   segnet::SegmentationEvaluator eval(11, /*ignore*/ 11);
//   eval.add(predicted_labels, true_labels);          // {N, 1, H, W} uint8, any number of times
//   segnet::SegmentationScores s = eval.scores();     // s.global_accuracy, s.mean_iou, ... in %
//
// G, C and mIoU come from one confusion matrix over the whole set, void excluded; BF is the mean
// over images of the per-image boundary F1 (metrics/boundary_f1.hpp), with void unmasked as in
// the paper's script unless `mask_void_for_bf` is set.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/metrics/boundary_f1.hpp"
#include "segnet/metrics/confusion.hpp"

namespace segnet {

struct SegmentationScores {
    double global_accuracy = 0, class_accuracy = 0, mean_iou = 0, bf = 0;  // %
    std::vector<double> per_class_accuracy, per_class_iou, per_class_bf;  // %, NaN when undefined
    std::int64_t pixels = 0;  // non-void pixels counted
    std::int64_t images = 0;
};

class SegmentationEvaluator {
public:
    SegmentationEvaluator(int classes, int ignore_label, bool boundary_f1 = true, bool mask_void_for_bf = false)
        : ignore_(ignore_label), confusion_(classes), bf_enabled_(boundary_f1),
          bf_(classes, BoundaryF1Options{.tolerance = 0.0075, .ignore_label = ignore_label, .mask_void = mask_void_for_bf}) {}

    void add(TensorView<Cpu, const std::uint8_t> predicted, TensorView<Cpu, const std::uint8_t> truth) {
        confusion_.add(predicted, truth, ignore_);
        if (bf_enabled_) bf_.add(predicted, truth);
        images_ += truth.n();
    }

    SegmentationScores scores() const {
        SegmentationScores s;
        s.global_accuracy = confusion_.global_accuracy();
        s.class_accuracy = confusion_.class_average_accuracy();
        s.mean_iou = confusion_.mean_iou();
        s.per_class_accuracy = confusion_.class_accuracy();
        s.per_class_iou = confusion_.class_iou();
        if (bf_enabled_) {
            s.bf = bf_.mean();
            s.per_class_bf = bf_.class_mean_f1();
        }
        s.pixels = confusion_.total();
        s.images = images_;
        return s;
    }
    /// Everything scores() reads, as doubles: summed over the processes that each scored a share
    /// of a dataset (data-parallel validation) and assigned back, it scores the whole dataset.
    std::vector<double> totals() const {
        std::vector<double> t = confusion_.totals();
        const std::vector<double> bf = bf_.totals();
        t.insert(t.end(), bf.begin(), bf.end());
        t.push_back(double(images_));
        return t;
    }
    void assign_totals(const std::vector<double>& t) {
        if (t.size() != totals().size())
            throw std::invalid_argument("segnet::SegmentationEvaluator::assign_totals: " + std::to_string(t.size()) +
                                        " totals for an evaluator of " + std::to_string(totals().size()));
        const std::size_t k = confusion_.totals().size();
        confusion_.assign_totals(t.data());
        bf_.assign_totals(t.data() + k);
        images_ = std::int64_t(t.back());
    }
    const ConfusionMatrix& confusion() const { return confusion_; }
    bool boundary_f1_enabled() const { return bf_enabled_; }

private:
    int ignore_;
    ConfusionMatrix confusion_;
    bool bf_enabled_;
    BoundaryF1Accumulator bf_;
    std::int64_t images_ = 0;
};

}  // namespace segnet
