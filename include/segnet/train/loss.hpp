// segnet/train/loss.hpp: per-pixel softmax cross-entropy on NCHW logits, the SegNet training loss.
//
//   segnet::CrossEntropyLoss loss({.class_weights = weights, .ignore_label = 11});
//   double value = loss.forward_backward(logits, labels, grad_logits);  // loss + d loss/d logits
//   double check = loss.forward(logits, labels);                         // loss only
//
// Logits are float {N, K, H, W} (K classes, no softmax applied: the classifier is a plain conv);
// labels are uint8 {N, 1, H, W}, one class index per pixel, or the ignore label (CamVid void =
// 11). The softmax is folded into the loss because softmax followed by log is unstable on its
// own, and because the fused gradient, w_y * (softmax - onehot(y)) / D, is one line.
//
// Normalisation (LossNormalization):
//   weighted_mean (default): L = sum_i w_{y_i} * nll_i / sum_i w_{y_i} over non-ignored pixels,
//       PyTorch's CrossEntropyLoss(weight=w, ignore_index=v, reduction='mean'). The default
//       because the loss and gradient scale do not change with image size or batch size, so a
//       learning rate carries over between crops and batch sizes.
//   sum: L = sum_i w_{y_i} * nll_i, the paper's "summed over the mini-batch" (Caffe
//       SoftmaxWithLoss with normalize: false). Its gradient grows with N*H*W: the paper's
//       learning rate 0.1 with this loss is not the same step as 0.1 with weighted_mean.
// When no pixel contributes (all ignored, or all their weights are 0) the loss and gradient
// are 0 rather than 0/0.
//
// One loss for every device: with Tensor<Device> arguments the work is backend::cross_entropy
// on the tensors' device (backend/cross_entropy.hpp: the shared checks and normalisation; the
// kernels in backend/cpu/loss.hpp and, in an nvcc translation unit, backend/cuda/loss.cuh).
//
//   double v = loss.forward_backward(gpu_logits, gpu_labels, gpu_grad);   // all Tensor<Cuda>
#pragma once

#include <cstdint>
#include <utility>

#include "segnet/backend/cross_entropy.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet {

class CrossEntropyLoss {
public:
    CrossEntropyLoss() = default;
    explicit CrossEntropyLoss(CrossEntropyOptions options) : options_(std::move(options)) {
        backend::loss::check_class_weights(options_.class_weights);
    }

    const CrossEntropyOptions& options() const { return options_; }

    /// The loss value; throws std::invalid_argument on mismatched extents or bad labels.
    double forward(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> labels) const {
        return backend::cross_entropy(logits, labels, options_, nullptr);
    }

    /// Writes d loss / d logits into `grad_logits` (same extents as `logits`), returns nothing:
    /// use forward_backward when the value is wanted too, it costs the same.
    void backward(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> labels,
                  TensorView<Cpu, float> grad_logits) const {
        backend::cross_entropy(logits, labels, options_, &grad_logits);
    }

    /// The loss value and its gradient in one pass over the logits.
    double forward_backward(TensorView<Cpu, const float> logits, TensorView<Cpu, const std::uint8_t> labels,
                            TensorView<Cpu, float> grad_logits) const {
        return backend::cross_entropy(logits, labels, options_, &grad_logits);
    }

    /// The same on tensors of any device (device logits, labels and gradient).
    template <class Device>
    double forward(const Tensor<Device>& logits, const Tensor<Device, std::uint8_t>& labels) const {
        return backend::cross_entropy(logits, labels, options_, nullptr);
    }
    template <class Device>
    double forward_backward(const Tensor<Device>& logits, const Tensor<Device, std::uint8_t>& labels,
                            Tensor<Device>& grad_logits) const {
        return backend::cross_entropy(logits, labels, options_, &grad_logits);
    }

private:
    CrossEntropyOptions options_{};
};

}  // namespace segnet
