// segnet/train/optimizer.hpp: SGD (momentum, Nesterov), Adam and AdamW over a model's parameters.
//
//   segnet::Sgd opt(model.parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4});
//   model.backward(...); opt.step(); opt.zero_grad();   // once per mini-batch
//   segnet::OptimizerState s = opt.state();              // save with the checkpoint; load_state(s) resumes
//
// The updates reproduce torch.optim.SGD / Adam / AdamW (PyTorch 1.13+, single-tensor path) term
// by term and in the same float32 order, so a run can be checked against a PyTorch reference and
// PyTorch users get the hyper-parameter meanings they expect. Entries without a gradient
// (batch-norm running statistics) are skipped. One learning rate for all parameters: schedules
// (train/schedule.hpp) call set_lr() once per epoch or iteration.
//
// One family for every device: Sgd<Device>, Adam<Device>, AdamW<Device> (the device is deduced
// from the parameters, `segnet::Sgd opt(gpu_model.parameters())`) keep the bookkeeping here and
// call backend::sgd_update / backend::adam_update on the parameters' device
// (backend/optimizer_update.hpp: the per-element rules, one text for the CPU loops and the CUDA
// kernels). state() holds host tensors whatever the device, so a state saved on one device
// loads on the other.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/backend/optimizer_update.hpp"
#include "segnet/core/parameter.hpp"
#include "segnet/core/tensor.hpp"

namespace segnet {

/// Everything an optimizer needs to continue exactly where it stopped. Tensor names are
/// "<kind>.<slot>.<param name>" ("sgd.momentum.encoder0.0.weight", "adam.exp_avg.…",
/// "adam.exp_avg_sq.…", "adamw.exp_avg.…"), laid out like the parameter.
struct OptimizerState {
    std::string kind;        ///< "sgd", "adam" or "adamw": a state only loads into its own kind.
    std::int64_t step = 0;   ///< Number of step() calls so far (Adam's bias correction needs it).
    double lr = 0;           ///< The learning rate in force when saved (a schedule may have moved it).
    std::vector<std::pair<std::string, Tensor<Cpu>>> tensors;
};

/// The interface every optimizer implements; make_optimizer() returns one.
class Optimizer {
public:
    virtual ~Optimizer() = default;
    /// Applies one update from the current gradients.
    virtual void step() = 0;
    /// Sets every gradient to zero (gradients accumulate across backward calls).
    virtual void zero_grad() = 0;
    virtual double lr() const = 0;
    virtual void set_lr(double lr) = 0;
    /// "sgd", "adam" or "adamw".
    virtual std::string_view kind() const = 0;
    virtual std::int64_t step_count() const = 0;
    /// A deep copy of the optimizer's state.
    virtual OptimizerState state() const = 0;
    /// Replaces the state (and the learning rate) with a saved one. Validates the kind, every
    /// tensor name and extent, and completeness; throws std::invalid_argument and leaves the
    /// optimizer unchanged on any mismatch.
    virtual void load_state(const OptimizerState& state) = 0;
};

namespace detail {

/// Bookkeeping shared by the optimizers: the trainable parameters, learning rate, step count,
/// and per-parameter state slots (on the parameters' device) stored by parameter index.
template <class Device>
class OptimizerBase : public Optimizer {
public:
    double lr() const override { return lr_; }
    void set_lr(double lr) override {
        check_non_negative("lr", lr);
        lr_ = lr;
    }
    std::int64_t step_count() const override { return step_; }
    std::string_view kind() const override { return kind_; }
    const std::vector<ParamRef<Device>>& params() const { return params_; }

    void zero_grad() override {
        for (ParamRef<Device>& p : params_) p.grad->zero();
    }

    OptimizerState state() const override {
        OptimizerState s{kind_, step_, lr_, {}};
        for (std::size_t slot = 0; slot < slot_names_.size(); ++slot)
            for (std::size_t i = 0; i < params_.size(); ++i)
                if (!slots_[slot][i].empty())
                    s.tensors.emplace_back(tensor_name(slot, i), backend::to_host(slots_[slot][i]));
        return s;
    }

    void load_state(const OptimizerState& s) override {
        const std::string where = "segnet::" + std::string(class_name_) + "::load_state: ";
        if (s.kind != kind_)
            throw std::invalid_argument(where + "the state was saved by a '" + s.kind +
                                        "' optimizer, this one is '" + kind_ +
                                        "'; construct the same kind of optimizer to resume");
        if (s.step < 0)
            throw std::invalid_argument(where + "negative step count " + std::to_string(s.step));
        if (!(s.lr >= 0))
            throw std::invalid_argument(where + "invalid learning rate " + std::to_string(s.lr));

        std::unordered_map<std::string, std::size_t> index;
        for (std::size_t i = 0; i < params_.size(); ++i) index.emplace(params_[i].name, i);

        // Build into a copy so a bad state leaves the optimizer untouched.
        std::vector<std::vector<Tensor<Device>>> fresh(slot_names_.size(),
                                                       std::vector<Tensor<Device>>(params_.size()));
        for (const auto& [name, t] : s.tensors) {
            std::size_t slot = slot_names_.size();
            std::string param;
            for (std::size_t k = 0; k < slot_names_.size(); ++k) {
                const std::string prefix = kind_ + "." + slot_names_[k] + ".";
                if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) {
                    slot = k;
                    param = name.substr(prefix.size());
                    break;
                }
            }
            if (slot == slot_names_.size())
                throw std::invalid_argument(where + "unexpected state tensor '" + name +
                                            "'; expected names " + expected_names());
            const auto it = index.find(param);
            if (it == index.end())
                throw std::invalid_argument(where + "state tensor '" + name +
                                            "' names no trainable parameter '" + param +
                                            "' of this model");
            const Extents want = params_[it->second].value->extents();
            if (t.extents() != want)
                throw std::invalid_argument(where + "state tensor '" + name + "' is " +
                                            to_string(t.extents()) + " but parameter '" + param +
                                            "' is " + to_string(want));
            Tensor<Device>& dst = fresh[slot][it->second];
            if (!dst.empty())
                throw std::invalid_argument(where + "state tensor '" + name + "' appears twice");
            backend::copy_across(t, dst);
        }
        // After the first step every slot of every parameter exists; a partial state would
        // silently restart some parameters from zero momentum, so refuse it.
        if (s.step > 0 && slots_in_use())
            for (std::size_t k = 0; k < slot_names_.size(); ++k)
                for (std::size_t i = 0; i < params_.size(); ++i)
                    if (fresh[k][i].empty() && params_[i].value->size() > 0)
                        throw std::invalid_argument(
                            where + "state at step " + std::to_string(s.step) +
                            " lacks tensor '" + tensor_name(k, i) + "'");
        slots_ = std::move(fresh);
        step_ = s.step;
        lr_ = s.lr;
    }

protected:
    OptimizerBase(std::vector<ParamRef<Device>> params, double lr, std::string kind,
                  std::string_view class_name, std::vector<std::string> slot_names)
        : lr_(lr), kind_(std::move(kind)), class_name_(class_name), slot_names_(std::move(slot_names)) {
        check_non_negative("lr", lr);
        std::unordered_map<std::string, int> seen;
        for (ParamRef<Device>& p : params) {
            if (!p.trainable()) continue;  // buffers (BN running statistics) are not optimised
            if (!p.value)
                throw std::invalid_argument(prefix() + "parameter '" + p.name + "' has no value tensor");
            if (p.grad->extents() != p.value->extents())
                throw std::invalid_argument(prefix() + "parameter '" + p.name + "' is " +
                                            to_string(p.value->extents()) + " but its gradient is " +
                                            to_string(p.grad->extents()));
            // State is keyed by name for checkpoints, so names must identify parameters.
            if (++seen[p.name] > 1)
                throw std::invalid_argument(prefix() + "two parameters are named '" + p.name + "'");
            params_.push_back(std::move(p));
        }
        slots_.assign(slot_names_.size(), std::vector<Tensor<Device>>(params_.size()));
    }

    /// Whether the subclass keeps per-parameter state at all (SGD without momentum does not).
    virtual bool slots_in_use() const { return true; }

    std::string prefix() const { return "segnet::" + std::string(class_name_) + ": "; }

    void check_non_negative(const char* what, double v) const {
        if (!(v >= 0))  // also rejects NaN
            throw std::invalid_argument(prefix() + what + " must be >= 0, got " + std::to_string(v));
    }

    /// The gradient is checked each step because layers may resize their tensors after the
    /// optimizer was built; one comparison per parameter, not per element.
    void check_grad(const ParamRef<Device>& p) const {
        if (p.grad->extents() != p.value->extents())
            throw std::logic_error(prefix() + "gradient of '" + p.name + "' is " +
                                   to_string(p.grad->extents()) + ", the parameter is " +
                                   to_string(p.value->extents()));
    }

    /// Slot k of parameter i, created zero-filled on first use (as PyTorch does lazily).
    Tensor<Device>& slot(std::size_t k, std::size_t i, bool& created) {
        Tensor<Device>& t = slots_[k][i];
        created = t.empty() && params_[i].value->size() > 0;
        if (created) {
            t.resize(params_[i].value->extents());
            t.zero();
        }
        return t;
    }

    std::string tensor_name(std::size_t k, std::size_t i) const {
        return kind_ + "." + slot_names_[k] + "." + params_[i].name;
    }

    std::string expected_names() const {
        std::string r;
        for (std::size_t k = 0; k < slot_names_.size(); ++k)
            r += (k ? ", '" : "'") + kind_ + "." + slot_names_[k] + ".<param name>'";
        return r.empty() ? "(none: this optimizer keeps no tensors)" : r;
    }

    std::vector<ParamRef<Device>> params_;
    double lr_;
    std::int64_t step_ = 0;
    std::string kind_;
    std::string_view class_name_;
    std::vector<std::string> slot_names_;
    std::vector<std::vector<Tensor<Device>>> slots_;  // [slot][param]
};

/// Weight decay of parameter p: decay_all ignores the per-parameter flag (Caffe applies
/// decay to every blob unless decay_mult says otherwise).
template <class Device>
float decay_for(const ParamRef<Device>& p, double wd, bool decay_all) {
    return (decay_all || p.decay) ? float(wd) : 0.0f;
}

}  // namespace detail

/// Options of Sgd; the defaults are SegNet's CamVid recipe (SEGNET.md section 3).
struct SgdOptions {
    double lr = 0.1;
    double momentum = 0.9;
    double weight_decay = 5e-4;  ///< L2 penalty added to the gradient (coupled), as PyTorch.
    double dampening = 0;        ///< Scales the new gradient in the momentum update by (1 - dampening).
    bool nesterov = false;       ///< Requires momentum > 0 and dampening == 0 (PyTorch's rule).
    bool decay_all = false;      ///< Decay every parameter, ignoring ParamRef::decay (Caffe).
};

/// torch.optim.SGD:  d = g + wd*w;  buf = momentum*buf + (1-dampening)*d  (buf = d on the
/// first step);  d = nesterov ? d + momentum*buf : buf;  w -= lr*d.
template <class Device = Cpu>
class Sgd final : public detail::OptimizerBase<Device> {
    using Base = detail::OptimizerBase<Device>;

public:
    explicit Sgd(std::vector<ParamRef<Device>> params, SgdOptions o = {})
        : Base(std::move(params), o.lr, "sgd", "Sgd", slot_names_for(o)), o_(o) {
        this->check_non_negative("momentum", o.momentum);
        this->check_non_negative("weight_decay", o.weight_decay);
        this->check_non_negative("dampening", o.dampening);
        if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
            throw std::invalid_argument(this->prefix() +
                                        "Nesterov momentum requires momentum > 0 and dampening == 0");
    }

    const SgdOptions& options() const { return o_; }

    void step() override {
        backend::SgdStep s;
        s.lr = float(this->lr_);
        s.momentum = float(o_.momentum);
        s.dampening_keep = float(1.0 - o_.dampening);
        s.nesterov = o_.nesterov;
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const ParamRef<Device>& p = this->params_[i];
            this->check_grad(p);
            s.weight_decay = detail::decay_for(p, o_.weight_decay, o_.decay_all);
            if (o_.momentum == 0) {
                backend::sgd_update(*p.value, *p.grad, nullptr, s, backend::SgdBuffer::none);
                continue;
            }
            bool first = false;
            Tensor<Device>& buffer = this->slot(0, i, first);
            backend::sgd_update(*p.value, *p.grad, &buffer, s,
                                first ? backend::SgdBuffer::first : backend::SgdBuffer::later);
        }
        ++this->step_;
    }

private:
    static std::vector<std::string> slot_names_for(const SgdOptions& o) {
        if (o.momentum == 0) return {};
        return {"momentum"};
    }
    bool slots_in_use() const override { return o_.momentum != 0; }
    SgdOptions o_;
};

/// Options of Adam (torch.optim.Adam defaults).
struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0;  ///< L2 penalty added to the gradient (coupled).
    bool decay_all = false;   ///< Decay every parameter, ignoring ParamRef::decay.
};

/// Options of AdamW (torch.optim.AdamW defaults).
struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;  ///< Decoupled: w *= 1 - lr*wd before the Adam step.
    bool decay_all = false;
};

namespace detail {

/// Adam and AdamW share everything except where weight decay enters.
template <class Device>
class AdamBase : public OptimizerBase<Device> {
    using Base = OptimizerBase<Device>;

public:
    void step() override {
        ++this->step_;
        const backend::AdamStep s = backend::AdamStep::at(this->lr_, beta1_, beta2_, eps_, this->step_, decoupled_);
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const ParamRef<Device>& p = this->params_[i];
            this->check_grad(p);
            bool created = false;
            Tensor<Device>& m = this->slot(0, i, created);
            Tensor<Device>& v = this->slot(1, i, created);
            backend::adam_update(*p.value, *p.grad, m, v, s.with_decay(decay_for(p, wd_, decay_all_), this->lr_));
        }
    }

protected:
    template <class Options>
    AdamBase(std::vector<ParamRef<Device>> params, const Options& o, std::string kind,
             std::string_view class_name, bool decoupled)
        : Base(std::move(params), o.lr, std::move(kind), class_name, {"exp_avg", "exp_avg_sq"}),
          beta1_(o.beta1), beta2_(o.beta2), eps_(o.eps), wd_(o.weight_decay),
          decay_all_(o.decay_all), decoupled_(decoupled) {
        if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
            throw std::invalid_argument(this->prefix() + "betas must lie in [0, 1), got (" +
                                        std::to_string(o.beta1) + ", " + std::to_string(o.beta2) + ")");
        this->check_non_negative("eps", o.eps);
        this->check_non_negative("weight_decay", o.weight_decay);
    }

private:
    double beta1_, beta2_, eps_, wd_;
    bool decay_all_, decoupled_;
};

}  // namespace detail

/// torch.optim.Adam: g += wd*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
/// w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
template <class Device = Cpu>
class Adam final : public detail::AdamBase<Device> {
public:
    explicit Adam(std::vector<ParamRef<Device>> params, AdamOptions o = {})
        : detail::AdamBase<Device>(std::move(params), o, "adam", "Adam", false), o_(o) {}
    const AdamOptions& options() const { return o_; }

private:
    AdamOptions o_;
};

/// torch.optim.AdamW: w *= 1 - lr*wd, then the Adam step on the raw gradient.
template <class Device = Cpu>
class AdamW final : public detail::AdamBase<Device> {
public:
    explicit AdamW(std::vector<ParamRef<Device>> params, AdamWOptions o = {})
        : detail::AdamBase<Device>(std::move(params), o, "adamw", "AdamW", true), o_(o) {}
    const AdamWOptions& options() const { return o_; }

private:
    AdamWOptions o_;
};

/// Options for make_optimizer(): fields an optimizer does not use are ignored; lr and
/// weight_decay left empty take that optimizer's default (SGD 0.1 / 5e-4, Adam 1e-3 / 0,
/// AdamW 1e-3 / 1e-2).
struct OptimizerOptions {
    std::optional<double> lr{};
    std::optional<double> weight_decay{};
    bool decay_all = false;
    double momentum = 0.9;  // sgd
    double dampening = 0;   // sgd
    bool nesterov = false;  // sgd
    double beta1 = 0.9;     // adam, adamw
    double beta2 = 0.999;   // adam, adamw
    double eps = 1e-8;      // adam, adamw
};

inline constexpr std::string_view optimizer_names[] = {"sgd", "adam", "adamw"};

/// Builds an optimizer from its name ("sgd", "adam", "adamw"), e.g. from a command line, on the
/// parameters' device.
template <class Device>
std::unique_ptr<Optimizer> make_optimizer(std::string_view name, std::vector<ParamRef<Device>> params,
                                          const OptimizerOptions& o = {}) {
    if (name == "sgd") {
        SgdOptions s;
        s.lr = o.lr.value_or(s.lr);
        s.weight_decay = o.weight_decay.value_or(s.weight_decay);
        s.momentum = o.momentum;
        s.dampening = o.dampening;
        s.nesterov = o.nesterov;
        s.decay_all = o.decay_all;
        return std::make_unique<Sgd<Device>>(std::move(params), s);
    }
    auto fill = [&](auto a) {
        a.lr = o.lr.value_or(a.lr);
        a.weight_decay = o.weight_decay.value_or(a.weight_decay);
        a.beta1 = o.beta1;
        a.beta2 = o.beta2;
        a.eps = o.eps;
        a.decay_all = o.decay_all;
        return a;
    };
    if (name == "adam") return std::make_unique<Adam<Device>>(std::move(params), fill(AdamOptions{}));
    if (name == "adamw") return std::make_unique<AdamW<Device>>(std::move(params), fill(AdamWOptions{}));
    std::string valid;
    for (std::string_view n : optimizer_names) valid += (valid.empty() ? "" : ", ") + std::string(n);
    throw std::invalid_argument("segnet::make_optimizer: unknown optimizer '" + std::string(name) +
                                "'; valid names: " + valid);
}

namespace detail {
// Integers up to 2^24 are exact in float32; split larger ones (and doubles) into parts that are.
inline constexpr double float_exact = 16777216.0;  // 2^24
}  // namespace detail

/// Flattens a state into named tensors only, for checkpoint formats that hold nothing else:
/// adds "<kind>.step" ({1,2,1,1}: step mod 2^24, step div 2^24, exact to 2^48 steps) and
/// "<kind>.lr" ({1,2,1,1}: float hi + float lo, ~48 bits of the double).
inline std::vector<std::pair<std::string, Tensor<Cpu>>> to_named_tensors(const OptimizerState& s) {
    std::vector<std::pair<std::string, Tensor<Cpu>>> out = s.tensors;
    Tensor<Cpu> step({1, 2, 1, 1});
    step[0] = float(s.step % std::int64_t(detail::float_exact));
    step[1] = float(s.step / std::int64_t(detail::float_exact));
    Tensor<Cpu> lr({1, 2, 1, 1});
    lr[0] = float(s.lr);
    lr[1] = float(s.lr - double(lr[0]));
    out.emplace_back(s.kind + ".step", std::move(step));
    out.emplace_back(s.kind + ".lr", std::move(lr));
    return out;
}

/// The inverse of to_named_tensors(); the kind comes from the "<kind>.step" entry.
inline OptimizerState from_named_tensors(std::vector<std::pair<std::string, Tensor<Cpu>>> tensors) {
    OptimizerState s;
    bool have_step = false, have_lr = false;
    std::vector<std::pair<std::string, Tensor<Cpu>>> rest;
    for (auto& [name, t] : tensors) {
        const bool is_step = name.size() > 5 && name.ends_with(".step") &&
                             name.find('.') == name.size() - 5;
        const bool is_lr = name.size() > 3 && name.ends_with(".lr") && name.find('.') == name.size() - 3;
        if (!is_step && !is_lr) {
            rest.emplace_back(std::move(name), std::move(t));
            continue;
        }
        if (t.size() != 2)
            throw std::invalid_argument("segnet::from_named_tensors: '" + name +
                                        "' must hold 2 values, has " + std::to_string(t.size()));
        const std::string kind = name.substr(0, name.find('.'));
        if (!s.kind.empty() && s.kind != kind)
            throw std::invalid_argument("segnet::from_named_tensors: entries of two optimizers ('" +
                                        s.kind + "' and '" + kind + "')");
        s.kind = kind;
        if (is_step) {
            s.step = std::int64_t(t[0]) + std::int64_t(t[1]) * std::int64_t(detail::float_exact);
            have_step = true;
        } else {
            s.lr = double(t[0]) + double(t[1]);
            have_lr = true;
        }
    }
    if (!have_step || !have_lr)
        throw std::invalid_argument(
            "segnet::from_named_tensors: missing '<kind>.step' or '<kind>.lr' entry; "
            "was the list written by segnet::to_named_tensors?");
    s.tensors = std::move(rest);
    return s;
}

}  // namespace segnet
