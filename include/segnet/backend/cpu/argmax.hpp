// segnet/backend/cpu/argmax.hpp: the argmax over the class channels of {N, K, H, W} scores,
// the rule every prediction follows (evaluation, segment, the confusion matrix's add_logits).
//
//   segnet::backend::cpu::argmax_channels(logits.view(), labels.view());   // {N, 1, H, W} uint8 labels
//
// Ties go to the lowest class index (strict >); a NaN never replaces the current best.
// backend/cuda/ops.cuh has the same rule as a kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "segnet/core/tensor.hpp"

namespace segnet::backend::cpu {

/// Writes the argmax over channels of {N, K, H, W} scores into {N, 1, H, W} labels.
inline void argmax_channels(TensorView<Cpu, const float> scores, TensorView<Cpu, std::uint8_t> out) {
    const Extents e = scores.extents();
    if (out.extents() != Extents{e.n, 1, e.h, e.w} || e.c <= 0 || e.c > 256)
        throw std::invalid_argument("segnet::argmax_channels: scores " + to_string(e) +
                                    " need 1..256 channels and an output of {N, 1, H, W}; output is " +
                                    to_string(out.extents()));
    const std::int64_t plane = e.plane();
    std::vector<float> best(static_cast<std::size_t>(plane));
    for (int n = 0; n < e.n; ++n) {
        const float* s = scores.data() + std::int64_t(n) * e.c * plane;
        std::uint8_t* o = out.data() + std::int64_t(n) * plane;
        std::copy_n(s, plane, best.data());
        std::fill_n(o, plane, std::uint8_t(0));
        // Channel-outer keeps reads contiguous; strict > keeps the first maximum.
        for (int c = 1; c < e.c; ++c) {
            const float* sc = s + c * plane;
            for (std::int64_t i = 0; i < plane; ++i)
                if (sc[i] > best[i]) {
                    best[i] = sc[i];
                    o[i] = std::uint8_t(c);
                }
        }
    }
}

}  // namespace segnet::backend::cpu
