// segnet/train/evaluate.hpp: run a model over a dataset in eval mode and score it with the
// paper's metrics.
//
//   segnet::EvaluationOptions o{.batch_size = 4, .ignore_label = 11};
//   segnet::SegmentationScores s = segnet::evaluate_model(model, val_dataset, o);
//   std::printf("G %.1f C %.1f mIoU %.1f BF %.2f\n", s.global_accuracy, s.class_accuracy, s.mean_iou, s.bf);
//
// Samples are read by a background BatchLoader in list order (no shuffling, no augmentation),
// optionally resized to height x width (labels with nearest neighbour): the metrics are then
// computed at that resolution.
//
// The model may live on any device: `evaluate_model(AnyModel<Cuda>&, ...)` works in an nvcc
// translation unit (the device-specific steps are EvalDevice<Cuda>, backend/cuda/programs.cuh).
// Predictions always reach `on_batch` and the metrics as host labels.
#pragma once

#include <cstdint>
#include <functional>

#include "segnet/compose/model.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/metrics/evaluator.hpp"

namespace segnet {

struct EvaluationOptions {
    int batch_size = 1;
    int ignore_label = -1;
    int height = 0, width = 0;  ///< 0: each sample's own size
    bool boundary_f1 = true;
    bool mask_void_for_bf = false;
};

/// Argmax of {N, K, H, W} logits as {N, 1, H, W} labels.
inline Tensor<Cpu, std::uint8_t> predict_labels(const Tensor<Cpu>& logits) {
    Tensor<Cpu, std::uint8_t> out({logits.n(), 1, logits.h(), logits.w()});
    ConfusionMatrix::argmax_channels(logits.view(), out.view());
    return out;
}

/// The device-specific steps of evaluation and of the programs: where a batch's images go before
/// a forward pass, and how logits become host labels. Specialised for Cpu here, for Cuda in
/// backend/cuda/programs.cuh (included below in nvcc translation units).
template <class Device>
struct EvalDevice;
/// The device-specific steps of training (loss, optimizer, NaN check): train/trainer.hpp.
template <class Device>
struct TrainDevice;

template <>
struct EvalDevice<Cpu> {
    static constexpr const char* name = "cpu";
    /// Device copies of host inputs (none on the CPU: the host tensors are used as they are).
    struct Staging {
        const Tensor<Cpu>& images(const Tensor<Cpu>& host) { return host; }
        const Tensor<Cpu, std::uint8_t>& labels(const Tensor<Cpu, std::uint8_t>& host) { return host; }
    };
    static Tensor<Cpu, std::uint8_t> predict_labels(const Tensor<Cpu>& logits) { return segnet::predict_labels(logits); }
};

/// Scores `model` on `data`. `on_batch(batch, predictions)` sees every batch's predictions.
template <class Device>
SegmentationScores evaluate_model(AnyModel<Device>& model, const SegmentationDataset& data, const EvaluationOptions& o,
                                  const std::function<void(const Batch&, const Tensor<Cpu, std::uint8_t>&)>& on_batch = {}) {
    using Ops = EvalDevice<Device>;
    typename Ops::Staging staging;
    const int classes = model.classes();
    SegmentationEvaluator evaluator(classes, o.ignore_label, o.boundary_f1, o.mask_void_for_bf);
    LoaderOptions lo;
    lo.batch_size = o.batch_size;
    lo.shuffle = false;
    lo.resize_height = o.height;
    lo.resize_width = o.width;
    BatchLoader loader(data, lo);
    while (auto batch = loader.next()) {
        const Tensor<Device>& logits = model.forward(staging.images(batch->images), Mode::eval);
        const Tensor<Cpu, std::uint8_t> predicted = Ops::predict_labels(logits);
        evaluator.add(predicted.view(), batch->labels.view());
        if (on_batch) on_batch(*batch, predicted);
    }
    return evaluator.scores();
}

}  // namespace segnet

#if defined(__CUDACC__) && !defined(SEGNET_NO_CUDA)
#include "segnet/backend/cuda/programs.cuh"
#endif
