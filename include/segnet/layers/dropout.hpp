// segnet/layers/dropout.hpp: dropout whose masks a resumed run repeats exactly, with Monte-Carlo
// sampling at inference (Bayesian SegNet).
//
//   Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm, ReLU, Dropout<50>>>   // p = 0.5
//   model.set_sampling(true);             // eval forwards draw masks too (Monte-Carlo samples)
//   model.set_random_step(step);          // resume: the masks of the uninterrupted run
//
// Dropout<Percent>: in Mode::train each element is kept with probability 1 - Percent / 100 and
// scaled by 1 / (1 - Percent / 100), else zeroed (inverted dropout, as PyTorch's nn.Dropout); in
// Mode::eval it returns its input (no copy) unless sampling is on. A train forward's mask is a
// hash of (seed, step, element): the seed is drawn from the model's Rng at initialize(), the step
// counts train forwards from 0 (RandomLayer::set_random_step sets it). Eval samples have their own
// stream and counter, one count per image: image n of a sampling forward is masked as a single
// forward would be at counter + n (so T copies of an image in one batch are T single samples);
// set_sampling(true) restarts the counter, so sampling is reproducible from the model's seed.
// No parameters; shape identity. CPU only: make<Cuda> throws (no CUDA kernel yet).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <type_traits>

#include "segnet/backend/ops.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

template <class Device>
class DropoutLayer final : public RuntimeLayer<Device>, public RandomLayer {
public:
    explicit DropoutLayer(float keep) : keep_(keep) {}
    const Tensor<Device>& forward(const Tensor<Device>& x, Mode mode) override { return forward_into(x, mode, y_); }
    /// x itself when not drawing (eval without sampling); else the masked x in out (out may be x).
    const Tensor<Device>& forward_into(const Tensor<Device>& x, Mode mode, Tensor<Device>& out) override {
        active_ = mode == Mode::train || sampling_;
        if (!active_) return x;
        mask_.resize(x.extents());
        out.resize(x.extents());
        if (mode == Mode::train) backend::dropout_forward(x, keep_, seed_, step_++, mask_, out);
        else {  // its own stream, one counter per image: a batch of T samples equals T single forwards
            backend::dropout_sample_forward(x, keep_, ~seed_, sample_, mask_, out);
            sample_ += std::uint64_t(x.n());
        }
        return out;
    }
    const Tensor<Device>& backward(const Tensor<Device>& dy) override { return backward_into(dy, dx_); }
    const Tensor<Device>& backward_into(const Tensor<Device>& dy, Tensor<Device>& dx) override {
        if (!active_) return dy;
        dx.resize(dy.extents());
        backend::dropout_backward(mask_, dy, dx);
        return dx;
    }
    /// Backward reads only its mask; elementwise, so it may run in place.
    TrainBufferUse train_buffer_use() const override {
        return {.pooled = true, .reads_input = false, .reads_output = false, .reads_feature = false, .in_place = true};
    }
    void initialize(Rng& rng) override {
        seed_ = rng.next_u64();
        step_ = 0;
        sample_ = 0;
    }
    void set_random_step(std::uint64_t step) override { step_ = step; }
    void set_sampling(bool on) override {
        sampling_ = on;
        sample_ = 0;
    }
    std::string_view kind() const override { return "Dropout"; }

private:
    float keep_;
    std::uint64_t seed_ = 0, step_ = 0, sample_ = 0;
    bool sampling_ = false, active_ = false;
    Tensor<Device> mask_, y_, dx_;
};

/// Dropout with probability Percent / 100 (0 <= Percent < 100).
template <int Percent>
struct Dropout {
    static_assert(Percent >= 0 && Percent < 100, "Dropout<Percent>: Percent must be in [0, 100)");
    static constexpr std::string_view name = "Dropout";
    static constexpr ExportSpec export_as{};  // identity at inference
    static constexpr float keep = 1.f - float(Percent) / 100.f;
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims in) { return in.spatial_static() ? in.elements() : 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) {
        if constexpr (std::is_same_v<Device, Cpu>)
            return std::make_unique<DropoutLayer<Device>>(keep);
        else
            throw std::runtime_error("segnet: Dropout is not implemented on CUDA (no kernel yet); run this network "
                                     "on the CPU or leave Dropout out");
    }
};

}  // namespace segnet
