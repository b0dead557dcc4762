// segnet/backend/cpu/simd.hpp: run-time CPU feature dispatch for the hand-vectorised kernels.
//
//   SEGNET_AVX512_TARGET void kernel(...);               // compiled for AVX-512 in any build
//   if (segnet::cpu::simd::has_avx512()) kernel(...);     // called only where the CPU has it
//
// Kernels marked SEGNET_AVX512_TARGET are compiled for AVX-512 whatever -march says, so one
// binary runs everywhere and uses AVX-512 where present. SEGNET_CONV=eigen in the environment
// switches them off (the portable path), for timing the fallback in the same binary.
#pragma once

#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SEGNET_HAVE_AVX512_KERNELS 1
#include <immintrin.h>
#define SEGNET_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")))
#else
#define SEGNET_HAVE_AVX512_KERNELS 0
#endif

namespace segnet::cpu::simd {

/// True when the CPU runs AVX-512F/BW/VL/DQ and SEGNET_CONV is not "eigen".
inline bool has_avx512() {
#if SEGNET_HAVE_AVX512_KERNELS
    static const bool ok = [] {
        __builtin_cpu_init();
        const char* env = std::getenv("SEGNET_CONV");
        if (env && std::strcmp(env, "eigen") == 0) return false;
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }();
    return ok;
#else
    return false;
#endif
}

}  // namespace segnet::cpu::simd
