// Helpers of the GPU twin tests: random host tensors, host<->device copies of a layer's
// parameters, and the comparison rule |gpu - cpu| <= rtol * (|cpu| + max|cpu|) (a relative
// tolerance of the element and of the tensor's scale, so near-zero entries are not over-judged).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <segnet/segnet.hpp>
#include <segnet/backend/cuda/cuda.cuh>

namespace segnet::cuda_test {

inline constexpr double rtol = 1e-4;

inline Tensor<Cpu> random_tensor(Extents e, Rng& rng, float lo = -1.f, float hi = 1.f) {
    Tensor<Cpu> t(e);
    for (std::int64_t i = 0; i < t.size(); ++i) t[i] = rng.uniform(lo, hi);
    return t;
}

/// Worst |a - b| / (|b| + max|b|) over the elements; fails the check above rtol.
inline void check_close(const Tensor<Cuda>& gpu, const Tensor<Cpu>& cpu, const std::string& what, double tol = rtol) {
    const Tensor<Cpu> g = backend::cuda::to_host(gpu);
    REQUIRE_MESSAGE(g.extents() == cpu.extents(), what << ": " << to_string(g.extents()) << " vs " << to_string(cpu.extents()));
    double scale = 0;
    for (std::int64_t i = 0; i < cpu.size(); ++i) scale = std::max(scale, double(std::abs(cpu[i])));
    double worst = 0;
    std::int64_t at = 0;
    for (std::int64_t i = 0; i < cpu.size(); ++i) {
        const double err = std::abs(double(g[i]) - double(cpu[i])) / (std::abs(double(cpu[i])) + scale + 1e-30);
        if (!(err <= worst)) worst = err, at = i;  // NaN counts as worst
    }
    CHECK_MESSAGE(worst <= tol, what << ": worst relative difference " << worst << " at " << at << " (gpu "
                                     << (cpu.size() ? g[at] : 0.f) << ", cpu " << (cpu.size() ? cpu[at] : 0.f) << ")");
}

/// Copies every tensor a layer collects (values) from its CPU twin; zeroes both gradients.
inline void mirror_params(RuntimeLayer<Cpu>& cpu, RuntimeLayer<Cuda>& gpu) {
    std::vector<ParamRef<Cpu>> pc;
    std::vector<ParamRef<Cuda>> pg;
    cpu.collect(pc, "");
    gpu.collect(pg, "");
    REQUIRE(pc.size() == pg.size());
    for (std::size_t i = 0; i < pc.size(); ++i) {
        REQUIRE(pc[i].name == pg[i].name);
        backend::cuda::copy_to_device(*pc[i].value, *pg[i].value);
        if (pc[i].grad) {
            pc[i].grad->zero();
            pg[i].grad->zero();
        }
    }
}

/// Compares every collected tensor (values: running statistics; gradients) of the twins.
inline void compare_params(RuntimeLayer<Cpu>& cpu, RuntimeLayer<Cuda>& gpu, const std::string& what) {
    std::vector<ParamRef<Cpu>> pc;
    std::vector<ParamRef<Cuda>> pg;
    cpu.collect(pc, "");
    gpu.collect(pg, "");
    for (std::size_t i = 0; i < pc.size(); ++i) {
        check_close(*pg[i].value, *pc[i].value, what + " " + pc[i].name);
        if (pc[i].grad) check_close(*pg[i].grad, *pc[i].grad, what + " grad " + pc[i].name);
    }
}

}  // namespace segnet::cuda_test
