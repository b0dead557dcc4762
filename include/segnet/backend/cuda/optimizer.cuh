// segnet/backend/cuda/optimizer.cuh: SGD (momentum, Nesterov), Adam and AdamW updating a
// Model<Net, Cuda>'s parameters in device memory, term by term the updates of
// train/optimizer.hpp (torch.optim), behind the same segnet::Optimizer interface.
//
//   auto opt = segnet::cuda::make_optimizer("adam", model.parameters(), {.lr = 1e-3});
//   model.backward(grad); opt->step(); opt->zero_grad();
//   segnet::OptimizerState s = opt->state();   // host copies: checkpoints work as on the CPU
//
// One kernel launch per parameter tensor and step; state tensors live on the device and are
// created zero-filled on first use, as PyTorch does. state()/load_state() copy to and from the
// host with the CPU optimizers' names ("adam.exp_avg.<param>"), so a state saved by one device
// loads into the other.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "segnet/backend/cuda/kernels.cuh"
#include "segnet/backend/cuda/tensor.cuh"
#include "segnet/core/parameter.hpp"
#include "segnet/train/optimizer.hpp"

namespace segnet::cuda {

namespace kernels {
/// mode 0: no momentum; 1: first step (buf = d); 2: later steps.
SEGNET_KERNEL void sgd_step(float* w, const float* g, float* b, std::int64_t n, float lr, float mom, float damp, float wd,
                            int mode, bool nesterov) {
    SEGNET_GRID_STRIDE(j, n) {
        if (mode == 0) {
            w[j] -= lr * (g[j] + wd * w[j]);
            continue;
        }
        if (mode == 1) b[j] = g[j] + wd * w[j];
        else b[j] = mom * b[j] + damp * (g[j] + wd * w[j]);
        if (nesterov) w[j] -= lr * ((g[j] + wd * w[j]) + mom * b[j]);
        else w[j] -= lr * b[j];
    }
}
SEGNET_KERNEL void adam_step(float* w, const float* g, float* m, float* v, std::int64_t n, float step_size,
                             float bc2_sqrt, float b1, float c1, float b2, float c2, float eps, float wd, float shrink,
                             bool decoupled) {
    SEGNET_GRID_STRIDE(j, n) {
        float gj = g[j];
        if (decoupled) {
            if (wd != 0) w[j] *= shrink;
        } else {
            gj = gj + wd * w[j];
        }
        m[j] = m[j] * b1 + c1 * gj;
        v[j] = v[j] * b2 + (c2 * gj) * gj;
        w[j] += step_size * (m[j] / (sqrtf(v[j]) / bc2_sqrt + eps));
    }
}
}  // namespace kernels

/// Bookkeeping shared by the device optimizers (parameters, lr, step, state slots).
class DeviceOptimizer : public Optimizer {
public:
    double lr() const override { return lr_; }
    void set_lr(double lr) override {
        if (!(lr >= 0)) throw std::invalid_argument(prefix() + "lr must be >= 0, got " + std::to_string(lr));
        lr_ = lr;
    }
    std::int64_t step_count() const override { return step_; }
    std::string_view kind() const override { return kind_; }
    void zero_grad() override {
        for (auto& p : params_) p.grad->zero();
    }

    OptimizerState state() const override {
        OptimizerState s{kind_, step_, lr_, {}};
        for (std::size_t k = 0; k < slot_names_.size(); ++k)
            for (std::size_t i = 0; i < params_.size(); ++i)
                if (!slots_[k][i].empty()) s.tensors.emplace_back(name(k, i), to_host(slots_[k][i]));
        return s;
    }

    void load_state(const OptimizerState& s) override {
        const std::string where = prefix() + "load_state: ";
        if (s.kind != kind_)
            throw std::invalid_argument(where + "the state was saved by a '" + s.kind + "' optimizer, this one is '" +
                                        kind_ + "'; construct the same kind of optimizer to resume");
        if (s.step < 0) throw std::invalid_argument(where + "negative step count " + std::to_string(s.step));
        if (!(s.lr >= 0)) throw std::invalid_argument(where + "invalid learning rate " + std::to_string(s.lr));
        std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> index;
        for (std::size_t k = 0; k < slot_names_.size(); ++k)
            for (std::size_t i = 0; i < params_.size(); ++i) index.emplace(name(k, i), std::make_pair(k, i));
        std::vector<std::vector<const Tensor<Cpu>*>> found(slot_names_.size(),
                                                           std::vector<const Tensor<Cpu>*>(params_.size(), nullptr));
        for (const auto& [n, t] : s.tensors) {
            const auto it = index.find(n);
            if (it == index.end())
                throw std::invalid_argument(where + "unexpected state tensor '" + n + "' for this model and optimizer");
            const auto [k, i] = it->second;
            if (t.extents() != params_[i].value->extents())
                throw std::invalid_argument(where + "state tensor '" + n + "' is " + to_string(t.extents()) +
                                            " but parameter '" + params_[i].name + "' is " +
                                            to_string(params_[i].value->extents()));
            if (found[k][i]) throw std::invalid_argument(where + "state tensor '" + n + "' appears twice");
            found[k][i] = &t;
        }
        if (s.step > 0)
            for (std::size_t k = 0; k < slot_names_.size(); ++k)
                for (std::size_t i = 0; i < params_.size(); ++i)
                    if (!found[k][i] && params_[i].value->size() > 0)
                        throw std::invalid_argument(where + "state at step " + std::to_string(s.step) +
                                                    " lacks tensor '" + name(k, i) + "'");
        for (std::size_t k = 0; k < slot_names_.size(); ++k)
            for (std::size_t i = 0; i < params_.size(); ++i) {
                if (found[k][i]) copy_to_device(*found[k][i], slots_[k][i]);
                else slots_[k][i] = Tensor<Cuda>();
            }
        step_ = s.step;
        lr_ = s.lr;
    }

protected:
    DeviceOptimizer(std::vector<ParamRef<Cuda>> params, double lr, std::string kind, std::vector<std::string> slots)
        : lr_(lr), kind_(std::move(kind)), slot_names_(std::move(slots)) {
        set_lr(lr);
        std::unordered_map<std::string, int> seen;
        for (auto& p : params) {
            if (!p.trainable()) continue;
            if (p.grad->extents() != p.value->extents())
                throw std::invalid_argument(prefix() + "parameter '" + p.name + "' is " + to_string(p.value->extents()) +
                                            " but its gradient is " + to_string(p.grad->extents()));
            if (++seen[p.name] > 1) throw std::invalid_argument(prefix() + "two parameters are named '" + p.name + "'");
            params_.push_back(std::move(p));
        }
        slots_.assign(slot_names_.size(), std::vector<Tensor<Cuda>>(params_.size()));
    }
    std::string prefix() const { return "segnet::cuda::" + kind_ + ": "; }
    std::string name(std::size_t k, std::size_t i) const { return kind_ + "." + slot_names_[k] + "." + params_[i].name; }
    void check(const ParamRef<Cuda>& p) const {
        if (p.grad->extents() != p.value->extents())
            throw std::logic_error(prefix() + "gradient of '" + p.name + "' is " + to_string(p.grad->extents()) +
                                   ", the parameter is " + to_string(p.value->extents()));
    }
    /// Slot k of parameter i, zero-filled on first use; `created` says whether it was.
    Tensor<Cuda>& slot(std::size_t k, std::size_t i, bool& created) {
        Tensor<Cuda>& t = slots_[k][i];
        created = t.empty() && params_[i].value->size() > 0;
        if (created) {
            t.resize(params_[i].value->extents());
            t.zero();
        }
        return t;
    }
    static float decay(const ParamRef<Cuda>& p, double wd, bool all) { return (all || p.decay) ? float(wd) : 0.f; }

    std::vector<ParamRef<Cuda>> params_;
    double lr_;
    std::int64_t step_ = 0;
    std::string kind_;
    std::vector<std::string> slot_names_;
    std::vector<std::vector<Tensor<Cuda>>> slots_;
};

class Sgd final : public DeviceOptimizer {
public:
    explicit Sgd(std::vector<ParamRef<Cuda>> params, SgdOptions o = {})
        : DeviceOptimizer(std::move(params), o.lr, "sgd",
                          o.momentum == 0 ? std::vector<std::string>{} : std::vector<std::string>{"momentum"}),
          o_(o) {
        if (!(o.momentum >= 0) || !(o.weight_decay >= 0) || !(o.dampening >= 0))
            throw std::invalid_argument(prefix() + "momentum, weight_decay and dampening must be >= 0");
        if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
            throw std::invalid_argument(prefix() + "Nesterov momentum requires momentum > 0 and dampening == 0");
    }
    void step() override {
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const auto& p = params_[i];
            check(p);
            const std::int64_t n = p.value->size();
            if (n == 0) continue;
            int mode = 0;
            float* b = nullptr;
            if (o_.momentum != 0) {
                bool first = false;
                b = slot(0, i, first).data();
                mode = first ? 1 : 2;
            }
            SEGNET_CUDA_LAUNCH(kernels::sgd_step<<<kernels::grid_for(n), 256, 0, stream()>>>(
                p.value->data(), p.grad->data(), b, n, float(lr_), float(o_.momentum), float(1.0 - o_.dampening),
                decay(p, o_.weight_decay, o_.decay_all), mode, o_.nesterov));
        }
        ++step_;
    }

private:
    SgdOptions o_;
};

/// Adam (decoupled = false) and AdamW (decoupled = true).
class AdamFamily final : public DeviceOptimizer {
public:
    AdamFamily(std::vector<ParamRef<Cuda>> params, double lr, double beta1, double beta2, double eps, double wd,
               bool decay_all, bool decoupled)
        : DeviceOptimizer(std::move(params), lr, decoupled ? "adamw" : "adam", {"exp_avg", "exp_avg_sq"}),
          beta1_(beta1), beta2_(beta2), eps_(eps), wd_(wd), decay_all_(decay_all), decoupled_(decoupled) {
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
            throw std::invalid_argument(prefix() + "betas must lie in [0, 1)");
        if (!(eps >= 0) || !(wd >= 0)) throw std::invalid_argument(prefix() + "eps and weight_decay must be >= 0");
    }
    void step() override {
        ++step_;
        const double bc1 = 1.0 - std::pow(beta1_, double(step_));
        const double bc2 = 1.0 - std::pow(beta2_, double(step_));
        const float step_size = float(-(lr_ / bc1));
        const float bc2_sqrt = float(std::sqrt(bc2));
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const auto& p = params_[i];
            check(p);
            const std::int64_t n = p.value->size();
            if (n == 0) continue;
            bool created = false;
            float* m = slot(0, i, created).data();
            float* v = slot(1, i, created).data();
            const float wd = decay(p, wd_, decay_all_);
            SEGNET_CUDA_LAUNCH(kernels::adam_step<<<kernels::grid_for(n), 256, 0, stream()>>>(
                p.value->data(), p.grad->data(), m, v, n, step_size, bc2_sqrt, float(beta1_), float(1.0 - beta1_),
                float(beta2_), float(1.0 - beta2_), float(eps_), wd, float(1.0 - lr_ * double(wd)), decoupled_));
        }
    }

private:
    double beta1_, beta2_, eps_, wd_;
    bool decay_all_, decoupled_;
};

inline std::unique_ptr<Optimizer> make_adam(std::vector<ParamRef<Cuda>> params, AdamOptions o = {}) {
    return std::make_unique<AdamFamily>(std::move(params), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.decay_all,
                                        false);
}
inline std::unique_ptr<Optimizer> make_adamw(std::vector<ParamRef<Cuda>> params, AdamWOptions o = {}) {
    return std::make_unique<AdamFamily>(std::move(params), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.decay_all,
                                        true);
}

/// segnet::make_optimizer for device parameters: "sgd", "adam" or "adamw", the same options.
inline std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<ParamRef<Cuda>> params,
                                                 const OptimizerOptions& o = {}) {
    if (name == "sgd") {
        SgdOptions s;
        s.lr = o.lr.value_or(s.lr);
        s.weight_decay = o.weight_decay.value_or(s.weight_decay);
        s.momentum = o.momentum;
        s.dampening = o.dampening;
        s.nesterov = o.nesterov;
        s.decay_all = o.decay_all;
        return std::make_unique<Sgd>(std::move(params), s);
    }
    if (name == "adam" || name == "adamw") {
        const bool w = name == "adamw";
        return std::make_unique<AdamFamily>(std::move(params), o.lr.value_or(1e-3), o.beta1, o.beta2, o.eps,
                                            o.weight_decay.value_or(w ? 1e-2 : 0.0), o.decay_all, w);
    }
    throw std::invalid_argument("segnet::cuda::make_optimizer: unknown optimizer '" + std::string(name) +
                                "'; valid names: sgd, adam, adamw");
}

}  // namespace segnet::cuda
