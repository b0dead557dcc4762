// segnet/testing/gradient_check.hpp: a numerical gradient checker for any run-time layer or
// whole model on the CPU (dlib's test_layer, for segnet's RuntimeLayer interface).
//
//   auto conv = segnet::Conv<4, 3>::make<segnet::Cpu>({3, segnet::dyn, segnet::dyn});
//   segnet::testing::GradientCheckResult r = segnet::testing::check_gradients(*conv, x, segnet::Mode::train);
//   if (!r) std::cerr << r.summary() << "\n";   // names the worst tensor element and both values
//
// The loss is L = sum(R * forward(x)) for a fixed random tensor R (seeded segnet::Rng), so
// backward(R) is dL/dx and fills every parameter gradient. Each checked element e of the input
// and of every trainable tensor from collect() (or Model::parameters()) is compared with the
// central difference (L(e + h) - L(e - h)) / (2h). An element passes when
//   |analytic - numeric| <= abs_tol + rel_tol * max(|analytic|, |numeric|).
// Paired layers (Add, Unpool, upsamplers) read a SkipLink set up by the caller; extra inputs
// such as an Add's encoder feature map are checked through GradientCheckOptions::extra_inputs.
//
// The check leaves the layer or model as it found it (values, buffers such as batch-norm
// running statistics, and gradients are restored); only its cached forward state refers to the
// checker's copy of x afterwards, so run forward again before the next backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "segnet/compose/model.hpp"
#include "segnet/core/random.hpp"
#include "segnet/core/tensor.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet::testing {

/// A tensor the layer reads besides its input (e.g. the encoder feature an Add adds), checked
/// like the input: `value` is perturbed in place, `analytic` returns d loss / d value after a
/// backward (nullptr = no gradient reached it, i.e. zero).
struct ExtraInput {
    std::string name;
    Tensor<Cpu>* value = nullptr;
    std::function<const Tensor<Cpu>*()> analytic;
};

struct GradientCheckOptions {
    // Why h = 1e-2 by default: the forward runs in float32 (eps ~ 6e-8). The difference quotient
    // carries a rounding error of about eps * |affected outputs| / h and a truncation error of
    // about h^2 * |f'''| / 6. With activations of order 1, h = 1e-2 puts both near 1e-4, well
    // under the tolerance below; h = 1e-3 makes the rounding term ten times larger, and a
    // smaller step still drowns the quotient in float noise. The loss is summed in double and
    // the denominator is the step float32 actually took ((x + h) - (x - h) after rounding), so a
    // large x does not bias the quotient. Piecewise-linear layers (ReLU, max pooling) need
    // inputs at least h away from their kinks, or allow_kinks below.
    double step = 1e-2;
    double abs_tol = 1e-3;
    double rel_tol = 1e-2;
    /// At most this many randomly chosen elements per tensor (0 = every element).
    std::int64_t max_elements = 0;
    /// Seeds R and the element sampling.
    std::uint64_t seed = 1;
    bool check_input = true;
    /// false for modes whose backward does not produce parameter gradients (batch norm in eval).
    bool check_parameters = true;
    /// Whole networks with ReLU and max pooling cannot keep every unit h away from its kink. When
    /// true, an element whose central difference fails still passes if one one-sided difference
    /// (the side without the kink) matches, possibly at a smaller step (kink_refinements); such
    /// elements are counted in `kinks` and excluded from the error maxima.
    bool allow_kinks = false;
    /// With allow_kinks: how many times the step is halved, each time trying the central and
    /// both one-sided differences again, before an element fails. SegNet's unpooling makes a
    /// network discontinuous where a pooling window's two largest values swap (the value jumps
    /// to another pixel); a weight of the first encoder moves every pre-pool value at once, so a
    /// step of h can meet such a swap on both sides. Halving makes that rare; a wrong gradient
    /// still fails, since no estimate at any scale matches it.
    int kink_refinements = 3;
    std::vector<ExtraInput> extra_inputs;
    /// Called before every forward (e.g. to clear a SkipLink's feature gradient, as a Tap does).
    std::function<void()> before_forward;
};

struct GradientMismatch {
    std::string tensor;
    std::int64_t index = 0;
    double analytic = 0, numeric = 0;
};

struct GradientCheckResult {
    bool ok = true;
    double max_abs_error = 0;
    /// Over elements whose gradient is at least abs_tol in magnitude (below, the absolute error
    /// is what matters).
    double max_rel_error = 0;
    /// The worst |analytic - numeric| / tolerance (<= 1 passes) and where it was.
    double worst_ratio = 0;
    std::string worst_tensor;
    std::int64_t worst_index = -1;
    double worst_analytic = 0, worst_numeric = 0;
    std::int64_t checked = 0, failed = 0, kinks = 0;
    /// Names of the tensors checked ("input", "weight", ..., extra inputs).
    std::vector<std::string> tensors;
    /// The first few failures.
    std::vector<GradientMismatch> failures;

    explicit operator bool() const { return ok; }
    std::string summary() const {
        std::ostringstream s;
        s << "gradient check " << (ok ? "passed" : "FAILED") << ": " << checked << " elements of " << tensors.size()
          << " tensors, " << failed << " failed, " << kinks << " at kinks; max abs error " << max_abs_error
          << ", max rel error " << max_rel_error;
        if (worst_index >= 0)
            s << "; worst " << worst_tensor << "[" << worst_index << "]: analytic " << worst_analytic << ", numeric "
              << worst_numeric << " (" << worst_ratio << " x tolerance)";
        return s.str();
    }
};

namespace detail {

struct CheckTarget {
    std::string name;
    float* data = nullptr;
    std::int64_t size = 0;
    std::vector<double> analytic;
};

inline std::vector<double> to_double(const Tensor<Cpu>* t, std::int64_t size) {
    std::vector<double> v(std::size_t(size), 0.0);
    if (t)
        for (std::int64_t i = 0; i < size; ++i) v[std::size_t(i)] = t->data()[i];
    return v;
}

inline std::vector<std::int64_t> pick_elements(std::int64_t size, std::int64_t max_elements, Rng& rng) {
    std::vector<std::int64_t> idx(static_cast<std::size_t>(size));
    std::iota(idx.begin(), idx.end(), std::int64_t(0));
    if (max_elements <= 0 || size <= max_elements) return idx;
    for (std::int64_t i = 0; i < max_elements; ++i)  // partial Fisher-Yates
        std::swap(idx[std::size_t(i)], idx[std::size_t(i + std::int64_t(rng.below(std::uint64_t(size - i))))]);
    idx.resize(std::size_t(max_elements));
    std::sort(idx.begin(), idx.end());
    return idx;
}

/// The check shared by layers and models. forward(x) and backward(dy) run the thing under test;
/// state lists every tensor it owns (parameters with gradients, buffers without).
template <class Forward, class Backward>
GradientCheckResult run_gradient_check(Forward&& forward, Backward&& backward, std::vector<ParamRef<Cpu>> state,
                                       const Tensor<Cpu>& x, const GradientCheckOptions& opt) {
    GradientCheckResult res;
    Rng rng(opt.seed);

    // Snapshot values and gradients so the check changes nothing.
    std::vector<Tensor<Cpu>> saved_values, saved_grads;
    for (auto& p : state) {
        saved_values.push_back(*p.value);
        saved_grads.push_back(p.grad ? *p.grad : Tensor<Cpu>());
    }
    auto prepare = [&] {
        if (opt.before_forward) opt.before_forward();
    };

    Tensor<Cpu> xv = x;
    prepare();
    Tensor<Cpu> r(forward(xv).extents());
    for (std::int64_t i = 0; i < r.size(); ++i) r[i] = rng.uniform(-1.f, 1.f);
    auto loss = [&] {
        prepare();
        const Tensor<Cpu>& y = forward(xv);
        double s = 0;
        for (std::int64_t i = 0; i < y.size(); ++i) s += double(r[i]) * double(y[i]);
        return s;
    };

    // Analytic gradients: one forward and one backward from zeroed parameter gradients.
    for (auto& p : state)
        if (p.grad) p.grad->zero();
    const double base = loss();
    const Tensor<Cpu>& dx = backward(r);
    std::vector<CheckTarget> targets;
    if (opt.check_input) targets.push_back({"input", xv.data(), xv.size(), to_double(&dx, xv.size())});
    if (opt.check_parameters)
        for (auto& p : state)
            if (p.trainable()) targets.push_back({p.name, p.value->data(), p.value->size(), to_double(p.grad, p.value->size())});
    for (const auto& e : opt.extra_inputs)
        targets.push_back({e.name, e.value->data(), e.value->size(), to_double(e.analytic ? e.analytic() : nullptr, e.value->size())});

    auto tolerance = [&](double a, double n) { return opt.abs_tol + opt.rel_tol * std::max(std::abs(a), std::abs(n)); };
    for (auto& t : targets) {
        res.tensors.push_back(t.name);
        for (const std::int64_t i : pick_elements(t.size, opt.max_elements, rng)) {
            float& v = t.data[i];
            const float orig = v;
            v = float(double(orig) + opt.step);
            const double up_step = double(v) - double(orig);
            const double up = loss();
            v = float(double(orig) - opt.step);
            const double down_step = double(orig) - double(v);
            const double down = loss();
            v = orig;
            const double a = t.analytic[std::size_t(i)];
            const double n = (up - down) / (up_step + down_step);
            const double err = std::abs(a - n);
            const double ratio = err / tolerance(a, n);
            bool pass = ratio <= 1.0, at_kink = false;
            if (!pass && opt.allow_kinks) {
                // One-sided differences D(s) = a + b*s + O(s^2) carry a truncation error of order
                // s * f'' (large for a first-encoder weight under batch norm), so two steps s1 > s2
                // on one side are also extrapolated (Richardson): a = (s1*D(s2) - s2*D(s1)) / (s1 - s2).
                auto matches = [&](double estimate) { return std::abs(a - estimate) <= tolerance(a, estimate); };
                double up_l = up, down_l = down, up_s = up_step, down_s = down_step;
                double prev_right = 0, prev_left = 0, prev_up_s = 0, prev_down_s = 0;
                for (int level = 0; !at_kink && level <= opt.kink_refinements; ++level) {
                    if (level > 0) {  // halve the step: a kink or jump within reach becomes less likely
                        const double h = opt.step / double(1 << level);
                        v = float(double(orig) + h);
                        up_s = double(v) - double(orig);
                        up_l = loss();
                        v = float(double(orig) - h);
                        down_s = double(orig) - double(v);
                        down_l = loss();
                        v = orig;
                    }
                    const double right = (up_l - base) / up_s, left = (base - down_l) / down_s;
                    at_kink = matches((up_l - down_l) / (up_s + down_s)) || matches(right) || matches(left);
                    if (!at_kink && level > 0)
                        at_kink = matches((prev_up_s * right - up_s * prev_right) / (prev_up_s - up_s)) ||
                                  matches((prev_down_s * left - down_s * prev_left) / (prev_down_s - down_s));
                    prev_right = right;
                    prev_left = left;
                    prev_up_s = up_s;
                    prev_down_s = down_s;
                }
                pass = at_kink;
            }
            ++res.checked;
            if (at_kink) {
                ++res.kinks;  // the central difference straddles a kink: no measure of accuracy
            } else {
                res.max_abs_error = std::max(res.max_abs_error, err);
                if (std::max(std::abs(a), std::abs(n)) >= opt.abs_tol)
                    res.max_rel_error = std::max(res.max_rel_error, err / std::max(std::abs(a), std::abs(n)));
                if (ratio > res.worst_ratio || res.worst_index < 0) {
                    res.worst_ratio = ratio;
                    res.worst_tensor = t.name;
                    res.worst_index = i;
                    res.worst_analytic = a;
                    res.worst_numeric = n;
                }
            }
            if (!pass) {
                res.ok = false;
                ++res.failed;
                if (res.failures.size() < 10) res.failures.push_back({t.name, i, a, n});
            }
        }
    }

    for (std::size_t k = 0; k < state.size(); ++k) {
        *state[k].value = saved_values[k];
        if (state[k].grad) *state[k].grad = saved_grads[k];
    }
    return res;
}

}  // namespace detail

/// Checks d loss / d input and d loss / d every trainable tensor the layer collects.
inline GradientCheckResult check_gradients(RuntimeLayer<Cpu>& layer, const Tensor<Cpu>& x, Mode mode,
                                           const GradientCheckOptions& options = {}) {
    std::vector<ParamRef<Cpu>> state;
    layer.collect(state, "");
    return detail::run_gradient_check([&](const Tensor<Cpu>& in) -> const Tensor<Cpu>& { return layer.forward(in, mode); },
                                      [&](const Tensor<Cpu>& dy) -> const Tensor<Cpu>& { return layer.backward(dy); },
                                      std::move(state), x, options);
}

/// Checks a whole model: d loss / d input and every parameter (names as Model::parameters()).
/// Set options.max_elements to sample large tensors, and allow_kinks for ReLU / max pooling.
/// Through several float32 layers the rounding noise grows and kinks get denser: a small map
/// (e.g. 2x3x5x7), step 5e-3, abs_tol 2e-3 and rel_tol 2e-2 passed 50 of 50 seeds on a
/// one-encoder SegNet (tests/test_layers.cpp) while a wrong wiring still fails by far.
inline GradientCheckResult check_gradients(AnyModel<Cpu>& model, const Tensor<Cpu>& x, Mode mode,
                                           const GradientCheckOptions& options = {}) {
    return detail::run_gradient_check([&](const Tensor<Cpu>& in) -> const Tensor<Cpu>& { return model.forward(in, mode); },
                                      [&](const Tensor<Cpu>& dy) -> const Tensor<Cpu>& { return model.backward(dy); },
                                      model.state(), x, options);
}

}  // namespace segnet::testing
