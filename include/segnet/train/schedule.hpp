// segnet/train/schedule.hpp: learning-rate schedules as pure functions of (t, total).
//
//   segnet::Schedule sched = segnet::Schedule::poly(0.01, 0.9);   // or make_schedule("poly", {...})
//   for (int epoch = 0; epoch < epochs; ++epoch) {
//       opt.set_lr(sched(epoch, epochs));  /* train one epoch */ }
//
// A schedule holds no state: the rate at t depends only on (t, total), so resuming from a
// checkpoint needs nothing but the epoch (or iteration) number. t counts from 0 and may be
// epochs or iterations; total is the number of them in the whole run. The paper's recipe is
// constant (SGD at 0.1); step, poly (DeepLab) and cosine are there for comparison runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <iterator>
#include <numbers>
#include <stdexcept>
#include <string>
#include <string_view>

namespace segnet {

/// Parameters for make_schedule(); each kind reads the fields it documents.
struct ScheduleOptions {
    double base_lr = 0.1;          ///< all kinds: the rate at t = 0 (after warmup for cosine)
    double gamma = 0.1;            ///< step: factor applied every step_size
    std::int64_t step_size = 30;   ///< step: t units between drops
    double power = 0.9;            ///< poly: exponent of (1 - t/total), DeepLab's 0.9
    double min_lr = 0;             ///< cosine: the rate reached at t = total
    std::int64_t warmup = 0;       ///< cosine: linear warmup length in t units (0 = none)
};

enum class ScheduleKind { constant, step, poly, cosine };

inline constexpr std::string_view schedule_names[] = {"constant", "step", "poly", "cosine"};

/// A learning-rate schedule value: call it with (t, total).
class Schedule {
public:
    /// base_lr for every t.
    static Schedule constant(double base_lr) { return Schedule(ScheduleKind::constant, {.base_lr = base_lr}); }
    /// base_lr * gamma^floor(t / step_size), as torch.optim.lr_scheduler.StepLR.
    static Schedule step(double base_lr, std::int64_t step_size, double gamma = 0.1) {
        return Schedule(ScheduleKind::step, {.base_lr = base_lr, .gamma = gamma, .step_size = step_size});
    }
    /// base_lr * (1 - t/total)^power (DeepLab's "poly"); 0 at t >= total.
    static Schedule poly(double base_lr, double power = 0.9) {
        return Schedule(ScheduleKind::poly, {.base_lr = base_lr, .power = power});
    }
    /// Linear warmup base_lr*(t+1)/warmup for t < warmup, then half a cosine from base_lr down
    /// to min_lr over the remaining total - warmup (torch's CosineAnnealingLR closed form with
    /// T_max = total - warmup); min_lr at t >= total.
    static Schedule cosine(double base_lr, double min_lr = 0, std::int64_t warmup = 0) {
        return Schedule(ScheduleKind::cosine, {.base_lr = base_lr, .min_lr = min_lr, .warmup = warmup});
    }

    Schedule(ScheduleKind kind, const ScheduleOptions& o) : kind_(kind), o_(o) {
        const std::string where = "segnet::Schedule(" + std::string(name()) + "): ";
        if (!(o.base_lr >= 0)) throw std::invalid_argument(where + "base_lr must be >= 0");
        if (kind == ScheduleKind::step) {
            if (o.step_size <= 0)
                throw std::invalid_argument(where + "step_size must be > 0, got " + std::to_string(o.step_size));
            if (!(o.gamma >= 0)) throw std::invalid_argument(where + "gamma must be >= 0");
        }
        if (kind == ScheduleKind::poly && !(o.power >= 0))
            throw std::invalid_argument(where + "power must be >= 0");
        if (kind == ScheduleKind::cosine) {
            if (!(o.min_lr >= 0 && o.min_lr <= o.base_lr))
                throw std::invalid_argument(where + "min_lr must lie in [0, base_lr]");
            if (o.warmup < 0) throw std::invalid_argument(where + "warmup must be >= 0");
        } else if (o.warmup != 0) {
            // Refuse rather than ignore, so a warmup asked for is never silently dropped.
            throw std::invalid_argument(where + "warmup is only supported by the 'cosine' schedule");
        }
    }

    /// The learning rate at t (0-based epoch or iteration) of a run of `total` such units.
    double operator()(std::int64_t t, std::int64_t total) const {
        if (t < 0) throw std::invalid_argument("segnet::Schedule: t must be >= 0, got " + std::to_string(t));
        switch (kind_) {
            case ScheduleKind::constant:
                return o_.base_lr;
            case ScheduleKind::step:
                return o_.base_lr * std::pow(o_.gamma, double(t / o_.step_size));
            case ScheduleKind::poly:
                check_total(total);
                if (t >= total) return 0.0;
                return o_.base_lr * std::pow(1.0 - double(t) / double(total), o_.power);
            case ScheduleKind::cosine: {
                check_total(total);
                if (o_.warmup >= total)
                    throw std::invalid_argument("segnet::Schedule(cosine): warmup (" + std::to_string(o_.warmup) +
                                                ") must be shorter than total (" + std::to_string(total) + ")");
                // (t+1): the first warmup step already trains, so it does not start at zero.
                if (t < o_.warmup) return o_.base_lr * double(t + 1) / double(o_.warmup);
                if (t >= total) return o_.min_lr;
                const double progress = double(t - o_.warmup) / double(total - o_.warmup);
                return o_.min_lr + (o_.base_lr - o_.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
            }
        }
        return o_.base_lr;
    }

    ScheduleKind kind() const { return kind_; }
    std::string_view name() const { return schedule_names[int(kind_)]; }
    const ScheduleOptions& options() const { return o_; }

private:
    static void check_total(std::int64_t total) {
        if (total <= 0)
            throw std::invalid_argument("segnet::Schedule: total must be > 0, got " + std::to_string(total));
    }
    ScheduleKind kind_;
    ScheduleOptions o_;
};

/// Builds a schedule from its name ("constant", "step", "poly", "cosine"), e.g. from a
/// command line.
inline Schedule make_schedule(std::string_view name, const ScheduleOptions& o = {}) {
    for (int k = 0; k < int(std::size(schedule_names)); ++k)
        if (name == schedule_names[k]) return Schedule(ScheduleKind(k), o);
    std::string valid;
    for (std::string_view n : schedule_names) valid += (valid.empty() ? "" : ", ") + std::string(n);
    throw std::invalid_argument("segnet::make_schedule: unknown schedule '" + std::string(name) +
                                "'; valid names: " + valid);
}

}  // namespace segnet
