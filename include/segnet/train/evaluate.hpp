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
// translation unit. One path for every device, over backend operations: the batch goes through
// backend::Staging<Device> (device copies kept across batches; nothing on the CPU) and the
// logits become host labels by backend::predict_labels (the argmax on the device, one small
// copy). Predictions always reach `on_batch` and the metrics as host labels. With
// labels_from_probabilities (segnet-evaluate --crf) the logits come to the host as probabilities
// and that function chooses the labels.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <type_traits>

#include "segnet/backend/ops.hpp"
#include "segnet/compose/model.hpp"
#include "segnet/compose/monte_carlo.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/metrics/evaluator.hpp"

namespace segnet {

struct EvaluationOptions {
    int batch_size = 1;
    int ignore_label = -1;
    int height = 0, width = 0;  ///< 0: each sample's own size
    bool boundary_f1 = true;
    bool mask_void_for_bf = false;
    int shard = 0, shards = 1;  ///< evaluate_share: this process's share of every batch
    int samples = 0;  ///< > 0: labels of the mean of that many dropout samples (monte_carlo_predict, CPU only)
    /// Set: the predictions are its labels of each batch's probabilities {N, K, H, W} (the softmax
    /// of the logits, or the samples' mean) and the batch's images, instead of their argmax
    /// (segnet-evaluate --crf: the dense CRF).
    std::function<Tensor<Cpu, std::uint8_t>(const Tensor<Cpu>& probabilities, const Tensor<Cpu>& images)>
        labels_from_probabilities{};
};

/// Runs `model` on `data` (or on this process's share of it: o.shard of o.shards, the positions
/// shard, shard + shards, ... of every batch) and adds it to an evaluator: data-parallel
/// validation sums the evaluators' totals() across processes.
template <class Device>
SegmentationEvaluator evaluate_share(AnyModel<Device>& model, const SegmentationDataset& data, const EvaluationOptions& o,
                                     const std::function<void(const Batch&, const Tensor<Cpu, std::uint8_t>&)>& on_batch = {}) {
    backend::Staging<Device> staging;
    SegmentationEvaluator evaluator(model.classes(), o.ignore_label, o.boundary_f1, o.mask_void_for_bf);
    LoaderOptions lo;
    lo.batch_size = o.batch_size;
    lo.shuffle = false;
    lo.resize_height = o.height;
    lo.resize_width = o.width;
    lo.shard = o.shard;
    lo.shards = o.shards;
    BatchLoader loader(data, lo);
    if (o.samples > 0 && !std::is_same_v<Device, Cpu>)
        throw std::invalid_argument("segnet::evaluate_model: Monte-Carlo samples run on the CPU only");
    while (auto batch = loader.next()) {
        if (batch->images.n() == 0) continue;  // a share of a last batch smaller than the processes
        Tensor<Cpu, std::uint8_t> predicted;
        if constexpr (std::is_same_v<Device, Cpu>)
            if (o.samples > 0) {  // batches of at most 10 copies, as segnet-segment --samples
                const Tensor<Cpu> mean = monte_carlo_predict(model, batch->images, o.samples, 10).mean;
                predicted = o.labels_from_probabilities ? o.labels_from_probabilities(mean, batch->images)
                                                        : backend::predict_labels(mean);
            }
        if (o.samples == 0) {
            const Tensor<Device>& logits = model.forward(staging.images(batch->images), Mode::eval);
            predicted = o.labels_from_probabilities
                            ? o.labels_from_probabilities(softmax_channels(backend::to_host(logits)), batch->images)
                            : backend::predict_labels(logits);
        }
        evaluator.add(predicted.view(), batch->labels.view());
        if (on_batch) on_batch(*batch, predicted);
    }
    return evaluator;
}

/// Scores `model` on `data`. `on_batch(batch, predictions)` sees every batch's predictions.
template <class Device>
SegmentationScores evaluate_model(AnyModel<Device>& model, const SegmentationDataset& data, const EvaluationOptions& o,
                                  const std::function<void(const Batch&, const Tensor<Cpu, std::uint8_t>&)>& on_batch = {}) {
    return evaluate_share(model, data, o, on_batch).scores();
}

}  // namespace segnet

