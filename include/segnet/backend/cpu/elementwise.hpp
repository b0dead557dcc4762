// segnet/backend/cpu/elementwise.hpp: ReLU and addition kernels.
//
//   segnet::cpu::relu_forward(x, y, size);           // y may alias x (ReLU in place)
//   segnet::cpu::relu_backward(y, dy, dx, size);     // uses the output: dx = dy where y > 0 (dx may alias dy)
//   segnet::cpu::add(a, b, y, size);                 // y = a + b (y may alias a or b)
#pragma once

#include <cstdint>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::cpu {

inline constexpr std::int64_t elementwise_chunk = 1 << 16;

inline void relu_forward(const float* x, float* y, std::int64_t size) {
    parallel_for(0, size, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t i = b; i < e; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
    }, elementwise_chunk);
}

inline void relu_backward(const float* y, const float* dy, float* dx, std::int64_t size) {
    parallel_for(0, size, [&](std::int64_t b, std::int64_t e, int) {
        // dy is read unconditionally so the loop is a vector blend, not a branch per element (a
        // mispredicted branch on the sign of every activation cost 3 ns per element).
        for (std::int64_t i = b; i < e; ++i) {
            const float d = dy[i];
            dx[i] = y[i] > 0.f ? d : 0.f;
        }
    }, elementwise_chunk);
}

inline void add(const float* a, const float* b_, float* y, std::int64_t size) {
    parallel_for(0, size, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t i = b; i < e; ++i) y[i] = a[i] + b_[i];
    }, elementwise_chunk);
}

/// y += x
inline void accumulate(const float* x, float* y, std::int64_t size) {
    parallel_for(0, size, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t i = b; i < e; ++i) y[i] += x[i];
    }, elementwise_chunk);
}

}  // namespace segnet::cpu
