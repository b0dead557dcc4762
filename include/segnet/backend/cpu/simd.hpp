// segnet/backend/cpu/simd.hpp: run-time CPU feature dispatch for the hand-vectorised kernels.
//
//   SEGNET_AVX512_TARGET void kernel(...);               // compiled for AVX-512 in any build
//   if (segnet::backend::cpu::simd::has_avx512()) kernel(...);     // called only where the CPU has it
//   SEGNET_AVX2_TARGET void kernel2(...);                // compiled for AVX2 + FMA in any build
//   if (segnet::backend::cpu::simd::has_avx2_fma()) kernel2(...);
//   SEGNET_AVX512_BF16_TARGET void kernel3(...);         // AVX-512 + AVX512-BF16 (vdpbf16ps)
//   if (segnet::backend::cpu::simd::has_avx512_bf16()) kernel3(...);
//   SEGNET_AMX_TARGET void kernel4(...);                 // AMX-BF16 tiles (and AVX512-BF16)
//   if (segnet::backend::cpu::simd::has_amx_bf16()) kernel4(...);   // asks Linux for AMX state once
//
// Kernels marked SEGNET_AVX512_TARGET / SEGNET_AVX2_TARGET are compiled for that ISA whatever
// -march says, so one binary runs everywhere and uses the widest vectors the CPU has.
// SEGNET_CONV in the environment overrides the choice for timing and testing in one binary:
// SEGNET_CONV=im2col switches all of them off (the portable path), SEGNET_CONV=avx2 switches
// AVX-512 off (an AVX-512 machine then runs as an AVX2-only one would), SEGNET_CONV=avx512
// switches AMX off (bf16 then runs on AVX512-BF16 dot products, as on AMD Zen 4/5).
//
// Kernels below the build's baseline are not compiled, as Highway skips the targets worse than
// its static one: a translation unit compiled for AVX-512 (-march=native on an AVX-512 CPU)
// only runs on CPUs with AVX-512, where its AVX2 kernel sets could only be reached through
// SEGNET_CONV=avx2, so it leaves them out (about a fifth of the kernels' compile time), and
// SEGNET_CONV=avx2 then runs the portable path. Define SEGNET_ALL_KERNEL_ISAS (the same in
// every translation unit of a program) to keep them: the tests and the benchmarks do, to run
// the AVX2 path on AVX-512 machines.
#pragma once

#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SEGNET_HAVE_AVX512_KERNELS 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    !defined(SEGNET_ALL_KERNEL_ISAS)
#define SEGNET_HAVE_AVX2_KERNELS 0
#else
#define SEGNET_HAVE_AVX2_KERNELS 1
#endif
#include <immintrin.h>
#define SEGNET_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx2")))
#define SEGNET_AVX2_TARGET __attribute__((target("avx2,fma")))
#define SEGNET_AVX512_BF16_TARGET \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")))
#define SEGNET_AMX_TARGET \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")))
#if defined(__linux__) && __has_include(<sys/syscall.h>)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define SEGNET_HAVE_AMX_KERNELS 1
#else
#define SEGNET_HAVE_AMX_KERNELS 0  // AMX state needs the OS's permission, asked for on Linux only
#endif
#else
#define SEGNET_HAVE_AMX_KERNELS 0
#define SEGNET_HAVE_AVX512_KERNELS 0
#define SEGNET_HAVE_AVX2_KERNELS 0
#endif

namespace segnet::backend::cpu::simd {

/// True when the environment variable SEGNET_CONV equals `value`.
inline bool conv_env_is(const char* value) {
    const char* env = std::getenv("SEGNET_CONV");
    return env && std::strcmp(env, value) == 0;
}

/// True when the CPU runs AVX-512F/BW/VL/DQ and SEGNET_CONV is neither "im2col" nor "avx2".
inline bool has_avx512() {
#if SEGNET_HAVE_AVX512_KERNELS
    static const bool ok = [] {
        __builtin_cpu_init();
        if (conv_env_is("im2col") || conv_env_is("avx2")) return false;
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }();
    return ok;
#else
    return false;
#endif
}

/// True when the CPU runs AVX2 and FMA and SEGNET_CONV is not "im2col".
inline bool has_avx2_fma() {
#if SEGNET_HAVE_AVX2_KERNELS
    static const bool ok = [] {
        __builtin_cpu_init();
        if (conv_env_is("im2col")) return false;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return ok;
#else
    return false;
#endif
}

/// True when the CPU has AVX512-BF16 dot products (vdpbf16ps) besides AVX-512F/BW/VL/DQ and
/// SEGNET_CONV allows AVX-512 (AMD Zen 4 and later, Intel Cooper Lake and later).
inline bool has_avx512_bf16() {
#if SEGNET_HAVE_AVX512_KERNELS
    static const bool ok = [] {
        __builtin_cpu_init();
        return has_avx512() && __builtin_cpu_supports("avx512bf16");
    }();
    return ok;
#else
    return false;
#endif
}

/// True when the CPU has AMX-BF16 tiles (Intel Sapphire Rapids and later) besides AVX512-BF16,
/// Linux granted this process the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM, asked for on
/// the first call; it holds for the whole process) and SEGNET_CONV is not avx512 (nor avx2 or
/// im2col, which switch AVX-512 off).
inline bool has_amx_bf16() {
#if SEGNET_HAVE_AMX_KERNELS
    static const bool ok = [] {
        __builtin_cpu_init();
        if (conv_env_is("avx512") || !has_avx512_bf16()) return false;
        // CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE (GCC 12's __builtin_cpu_supports
        // does not detect AMX).
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
        if (!(edx & (1u << 22)) || !(edx & (1u << 24))) return false;
        constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
        return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
    }();
    return ok;
#else
    return false;
#endif
}

}  // namespace segnet::backend::cpu::simd

namespace segnet::backend::cpu {

/// Whether this CPU computes Precision::bf16 convolutions on BF16 units; where it does not, they
/// run in FP32 (core/precision.hpp).
inline bool bf16_units() { return simd::has_avx512_bf16(); }

/// Whether bf16 convolutions beat FP32 on this CPU, the rule of the programs' `--precision auto`:
/// on AMX tiles, or on the AVX512-BF16 dot products of a CPU that is not Intel's (AMD Zen 4/5
/// issue vdpbf16ps at the FP32 FMA rate, doubling the multiply-adds per instruction). Intel cores
/// issue it at half that rate: without AMX (Cooper Lake, or a hypervisor that hides AMX) the
/// AVX512-BF16 kernels run 1.5-2x slower than FP32 (docs/performance.md 7.4), so FP32 it is.
inline bool bf16_beats_fp32() {
#if SEGNET_HAVE_AVX512_KERNELS
    if (simd::has_amx_bf16()) return true;
    __builtin_cpu_init();
    return simd::has_avx512_bf16() && !__builtin_cpu_is("intel");
#else
    return false;
#endif
}

/// The units Precision::bf16 convolutions run on: "AMX-BF16" (tiles; layers with fewer than 16
/// input or output channels on the AVX512-BF16 dot products), "AVX512-BF16", or "" (none: FP32).
inline const char* bf16_units_name() {
    return simd::has_amx_bf16() ? "AMX-BF16" : simd::has_avx512_bf16() ? "AVX512-BF16" : "";
}

}  // namespace segnet::backend::cpu
