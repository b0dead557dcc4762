// segnet/layers/batch_norm.hpp: spatial batch normalisation and ReLU.
//
//   Block<Conv<64, 7>, BatchNorm, ReLU>
//   model.forward(x, Mode::train);   // batch statistics; running averages updated
//   model.forward(x, Mode::eval);    // running statistics
//
// BatchNorm follows PyTorch's BatchNorm2d (eps 1e-5, momentum 0.1, unbiased running_var):
// parameters "weight" (gamma, 1) and "bias" (beta, 0); buffers "running_mean" (0) and
// "running_var" (1). Shape rule: identity. ReLU: y = max(x, 0), identity shape. BatchNorm's
// backward reads its input and the saved batch statistics, never its output, and ReLU's only
// the sign of its output, so in a model's train pass a ReLU after a BatchNorm runs in place.
// In a model's eval pass a BatchNorm (and a ReLU) after a convolution is folded into it
// (eval_affine(), layers/fusion.hpp; compose/eval_plan.hpp).
//
// Synchronized batch norm (data-parallel training, train/data_parallel.hpp): after
// synchronize(&communicator.statistics()) the train-mode statistics are those of the whole batch
// spread over the ranks (two sums across ranks in forward, one in backward), so N ranks compute
// what one process computes on the whole batch; CPU only. Without it each rank normalises with
// its own share's statistics (PyTorch DDP's default).
#pragma once

#include <memory>
#include <stdexcept>
#include <type_traits>

#include "segnet/backend/ops.hpp"
#include "segnet/core/communicator.hpp"
#include "segnet/layers/fusion.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

template <class Device>
class BatchNormLayer final : public RuntimeLayer<Device>, public EvalFusion<Device> {
public:
    BatchNormLayer(int channels, float eps, float momentum) : c_(channels), eps_(eps), momentum_(momentum) {
        for (auto* t : {&gamma_, &beta_, &gamma_grad_, &beta_grad_, &running_mean_, &running_var_, &saved_mean_,
                        &saved_invstd_})
            t->resize(detail::vector_extents(channels));
        eval_scale_.resize(detail::vector_extents(channels));
        eval_shift_.resize(detail::vector_extents(channels));
    }
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode mode, Tensor<Device>& out) override {
        x_ = &x;
        mode_ = mode;
        out.resize(x.extents());
        if (mode == Mode::train && sync_) {
            if constexpr (std::is_same_v<Device, Cpu>)
                synced_count_ = backend::batch_norm_train_synced(x, gamma_, beta_, eps_, momentum_, running_mean_,
                                                                 running_var_, out, saved_mean_, saved_invstd_, sum_across());
        } else if (mode == Mode::train)
            backend::batch_norm_train(x, gamma_, beta_, eps_, momentum_, running_mean_, running_var_, out, saved_mean_,
                                      saved_invstd_);
        else
            backend::batch_norm_eval(x, gamma_, beta_, running_mean_, running_var_, eps_, out);
        return out;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(dy.extents());
        if (mode_ == Mode::train && sync_) {
            if constexpr (std::is_same_v<Device, Cpu>)
                backend::batch_norm_backward_synced(*x_, dy, synced_count_, gamma_, saved_mean_, saved_invstd_, dx,
                                                    gamma_grad_, beta_grad_, sum_across());
        } else if (mode_ == Mode::train) {
            backend::batch_norm_backward(*x_, dy, gamma_, saved_mean_, saved_invstd_, dx, gamma_grad_, beta_grad_);
        } else {
            // Eval mode is a fixed affine map (frozen statistics): gamma and beta still learn.
            backend::batch_norm_eval_backward(*x_, dy, gamma_, running_mean_, running_var_, eps_, dx, gamma_grad_,
                                              beta_grad_);
        }
        return dx;
    }
    /// Backward reads x and the saved batch statistics, never its output: a ReLU after it may
    /// overwrite the output in place.
    TrainBufferUse train_buffer_use() const override { return {.pooled = true, .reads_output = false, .reads_feature = false}; }
    /// Eval mode is y = x * scale + shift per channel, from the running statistics: a model folds
    /// it into the convolution before (computed on every call: parameters and statistics may
    /// have changed since the last one).
    FusionRole fusion_role() const override { return FusionRole::channel_affine; }
    ChannelAffine<Device> eval_affine() override {
        backend::batch_norm_eval_affine(gamma_, beta_, running_mean_, running_var_, eps_, eval_scale_, eval_shift_);
        return {&eval_scale_, &eval_shift_};
    }
    void initialize(Rng&) override {
        backend::upload(std::vector<float>(std::size_t(c_), 1.f), gamma_);
        beta_.zero();
        running_mean_.zero();
        backend::upload(std::vector<float>(std::size_t(c_), 1.f), running_var_);
    }
    void collect(std::vector<ParamRef<Device>>& out, const std::string& prefix) override {
        detail::add_param(out, prefix + "weight", gamma_, &gamma_grad_, {c_}, false);
        detail::add_param(out, prefix + "bias", beta_, &beta_grad_, {c_}, false);
        detail::add_param(out, prefix + "running_mean", running_mean_, static_cast<Tensor<Device>*>(nullptr), {c_}, false);
        detail::add_param(out, prefix + "running_var", running_var_, static_cast<Tensor<Device>*>(nullptr), {c_}, false);
    }
    std::string_view kind() const override { return "BatchNorm"; }

    /// Train-mode statistics over every rank of `statistics` (nullptr: this process's batch only).
    void synchronize(Communicator* statistics) {
        if (statistics && !std::is_same_v<Device, Cpu>)
            throw std::invalid_argument("segnet: synchronized batch norm runs on the CPU only (not on " +
                                        std::string(Device::name) + ")");
        sync_ = statistics;
    }

private:
    auto sum_across() {
        return [this](double* values, std::size_t count) { sync_->sum(values, count); };
    }

    Communicator* sync_ = nullptr;
    double synced_count_ = 0;  // the whole batch's values per channel, from the last synced forward
    int c_;
    float eps_, momentum_;
    Mode mode_ = Mode::train;
    Tensor<Device> gamma_, beta_, gamma_grad_, beta_grad_, running_mean_, running_var_, saved_mean_, saved_invstd_, y_,
        dx_, eval_scale_, eval_shift_;
    const Tensor<Device>* x_ = nullptr;
};

struct BatchNorm {
    static constexpr std::string_view name = "BatchNorm";
    static constexpr float eps = 1e-5f, momentum = 0.1f;
    static constexpr ExportSpec export_as{.op = ExportOp::batch_norm, .epsilon = eps};
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims in) { return 2LL * in.c; }
    static constexpr std::int64_t flops(Dims in) { return in.spatial_static() ? 2LL * in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims in) {
        return std::make_unique<BatchNormLayer<Device>>(in.c, eps, momentum);
    }
};

/// ReLU. Its backward needs only the sign of the output, so the model may run it in place
/// (the output overwrites the input, the input gradient overwrites d loss / d output).
template <class Device>
class ReluLayer final : public RuntimeLayer<Device>, public EvalFusion<Device> {
public:
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode, Tensor<Device>& out) override {
        out.resize(x.extents());
        backend::relu_forward(x, out);  // elementwise: out may be x
        y_ref_ = &out;
        return out;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        dx.resize(dy.extents());
        backend::relu_backward(*y_ref_, dy, dx);  // elementwise: dx may be dy
        return dx;
    }
    TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = false, .reads_output = true, .reads_feature = false, .in_place = true};
    }
    FusionRole fusion_role() const override { return FusionRole::relu; }
    std::string_view kind() const override { return "ReLU"; }

private:
    Tensor<Device> y_, dx_;
    const Tensor<Device>* y_ref_ = &y_;  // the last forward's output (y_ or the model's buffer)
};

struct ReLU {
    static constexpr std::string_view name = "ReLU";
    static constexpr ExportSpec export_as{.op = ExportOp::relu};
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in) { return in.spatial_static() ? in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        return std::make_unique<ReluLayer<Device>>();
    }
};

}  // namespace segnet
