// segnet/backend/cpu/elementwise.hpp: ReLU, addition and dropout kernels.
//
//   segnet::backend::cpu::relu_forward(x, y, size);           // y may alias x (ReLU in place)
//   segnet::backend::cpu::relu_backward(y, dy, dx, size);     // uses the output: dx = dy where y > 0 (dx may alias dy)
//   segnet::backend::cpu::add(a, b, y, size);                 // y = a + b (y may alias a or b)
//   segnet::backend::cpu::dropout_forward(x, mask, y, size, keep, key);   // y = x * mask (y may alias x)
#pragma once

#include <cstdint>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::backend::cpu {

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

/// splitmix64's finaliser: a well-mixed 64-bit hash of z.
constexpr std::uint64_t dropout_hash(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// Inverted dropout: element i is kept (mask 1 / keep) when 24 bits of a hash of (key, i) fall
/// below keep, else dropped (mask 0); y = x * mask (y may alias x). The mask depends only on key
/// and i, not on the thread count or the order.
inline void dropout_forward(const float* x, float* mask, float* y, std::int64_t size, float keep, std::uint64_t key) {
    const std::uint64_t threshold = std::uint64_t(double(keep) * 16777216.0);
    const float scale = 1.f / keep;
    parallel_for(0, size, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t i = b; i < e; ++i) {
            const float m = (dropout_hash(key + std::uint64_t(i) * 0x9E3779B97F4A7C15ull) >> 40) < threshold ? scale : 0.f;
            mask[i] = m;
            y[i] = x[i] * m;
        }
    }, elementwise_chunk);
}

/// dx = dy * mask (dx may alias dy).
inline void dropout_backward(const float* mask, const float* dy, float* dx, std::int64_t size) {
    parallel_for(0, size, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t i = b; i < e; ++i) dx[i] = dy[i] * mask[i];
    }, elementwise_chunk);
}

}  // namespace segnet::backend::cpu
