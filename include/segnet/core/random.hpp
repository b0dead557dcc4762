// segnet/core/random.hpp: a small, portable, seeded random generator.
//
//   segnet::Rng rng(42);
//   float u = rng.uniform();          // [0, 1)
//   float g = rng.normal(0.f, 0.1f);  // same sequence on every platform and compiler
//
// std::normal_distribution differs between standard libraries, so initialisation would not be
// reproducible across them; this generator (SplitMix64 seeding a xoshiro256**, Box-Muller)
// gives bit-identical draws everywhere. Depends on nothing.
#pragma once

#include <cmath>
#include <cstdint>

namespace segnet {

class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

    void reseed(std::uint64_t seed) {
        std::uint64_t z = seed;
        for (auto& s : state_) s = splitmix(z);
        has_spare_ = false;
    }

    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    float uniform() { return float(next_u64() >> 40) * (1.0f / 16777216.0f); }
    float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
    /// Uniform integer in [0, n).
    std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

    /// Gaussian draw by the Box-Muller transform, computed in double for portability.
    float normal(float mean = 0.f, float stddev = 1.f) {
        if (has_spare_) {
            has_spare_ = false;
            return mean + stddev * float(spare_);
        }
        double u1 = 0.0;
        do u1 = double(next_u64() >> 11) * (1.0 / 9007199254740992.0); while (u1 <= 0.0);
        const double u2 = double(next_u64() >> 11) * (1.0 / 9007199254740992.0);
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double two_pi = 6.283185307179586476925;
        spare_ = r * std::sin(two_pi * u2);
        has_spare_ = true;
        return mean + stddev * float(r * std::cos(two_pi * u2));
    }

    /// The full state, for checkpoints that resume exactly.
    struct State {
        std::uint64_t s[4];
        double spare;
        bool has_spare;
    };
    State state() const { return {{state_[0], state_[1], state_[2], state_[3]}, spare_, has_spare_}; }
    void set_state(const State& st) {
        for (int i = 0; i < 4; ++i) state_[i] = st.s[i];
        spare_ = st.spare;
        has_spare_ = st.has_spare;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix(std::uint64_t& z) {
        std::uint64_t r = (z += 0x9E3779B97F4A7C15ull);
        r = (r ^ (r >> 30)) * 0xBF58476D1CE4E5B9ull;
        r = (r ^ (r >> 27)) * 0x94D049BB133111EBull;
        return r ^ (r >> 31);
    }
    std::uint64_t state_[4]{};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace segnet
