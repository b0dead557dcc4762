// segnet/programs/cli.hpp: the small command-line parser the segnet programs share.
//
//   segnet::programs::cli::Args args(argc, argv, "segnet-train", usage_text);
//   int epochs = args.integer("--epochs", 1, 1, 1000000);
//   args.finish();   // rejects unknown options with a one-line message
//
// Every problem is a segnet::programs::cli::UsageError whose message names the option; programs print it
// as "<program>: <message>" and exit with status 2.
//
// --device cuda: a program compiled by nvcc (examples/segnet_*_cuda.cu, linked with segnet::cuda)
// runs models on the GPU (SEGNET_PROGRAMS_CUDA is 1 there). A g++-built program answers it with
// cuda_unavailable(); its main() may first hand the run to the nvcc-built twin installed next to
// it (exec_cuda_variant), which is how `segnet-train --device cuda` reaches `segnet-train-cuda`.
// Under `mpirun -np N`, exec_mpi_variant hands the run to the MPI-built twin the same way
// (`segnet-train` -> `segnet-train-mpi`, docs/distributed.md).
//
// --precision fp32|bf16|auto: the precision the model's convolutions compute in (core/precision.hpp),
// read by precision_request() and resolve_precision(); each program chooses its own default.
#pragma once

#if defined(__CUDACC__) && !defined(SEGNET_NO_CUDA)
#define SEGNET_PROGRAMS_CUDA 1
#include "segnet/backend/cuda/device.cuh"
#else
#define SEGNET_PROGRAMS_CUDA 0
#endif

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

#include "segnet/backend/cpu/simd.hpp"
#include "segnet/core/device.hpp"
#include "segnet/core/precision.hpp"

#include <filesystem>
#include <new>

#include "segnet/io/files.hpp"
#include "segnet/io/image.hpp"

namespace segnet::programs::cli {

/// The device `--device cuda` selects: Cuda in an nvcc-built program; Cpu (never reached:
/// require_device() refuses cuda first) in a g++-built one, so no Cuda code is instantiated there.
#if SEGNET_PROGRAMS_CUDA
using CudaDevice = Cuda;
#else
using CudaDevice = Cpu;
#endif

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Args {
public:
    Args(int argc, char** argv, std::string program, std::string usage)
        : program_(std::move(program)), usage_(std::move(usage)) {
        for (int i = 1; i < argc; ++i) items_.push_back({argv[i], false});
        if (flag("--help") || flag("-h")) {
            std::fputs(usage_.c_str(), stdout);
            std::exit(0);
        }
    }

    const std::string& program() const { return program_; }

    bool flag(const std::string& name) {
        bool found = false;
        for (auto& item : items_)
            if (!item.used && item.text == name) item.used = found = true;
        return found;
    }

    std::optional<std::string> text(const std::string& name) {
        std::optional<std::string> value;
        for (std::size_t i = 0; i < items_.size(); ++i) {
            if (items_[i].used || items_[i].text != name) continue;
            if (i + 1 >= items_.size() || items_[i + 1].used)
                throw UsageError(name + " needs a value (see --help)");
            if (value) throw UsageError(name + " is given more than once");
            items_[i].used = items_[i + 1].used = true;
            value = items_[i + 1].text;
        }
        return value;
    }
    std::string text(const std::string& name, const std::string& fallback) { return text(name).value_or(fallback); }
    /// A required option; when missing, finish() reports it (after unknown options, which
    /// usually explain the missing one: a misspelt name).
    std::string required(const std::string& name) {
        auto v = text(name);
        if (!v) missing_.push_back(name);
        return v.value_or("");
    }

    std::optional<long long> integer(const std::string& name, long long lo, long long hi) {
        const auto v = text(name);
        if (!v) return std::nullopt;
        char* end = nullptr;
        errno = 0;
        const long long x = std::strtoll(v->c_str(), &end, 10);
        if (v->empty() || *end != '\0' || errno == ERANGE)
            throw UsageError(name + ": expected an integer, got '" + *v + "'");
        if (x < lo || x > hi)
            throw UsageError(name + ": " + *v + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return x;
    }
    long long integer(const std::string& name, long long fallback, long long lo, long long hi) {
        return integer(name, lo, hi).value_or(fallback);
    }

    std::optional<double> real(const std::string& name, double lo, double hi) {
        const auto v = text(name);
        if (!v) return std::nullopt;
        char* end = nullptr;
        const double x = std::strtod(v->c_str(), &end);
        if (v->empty() || *end != '\0' || !(x == x)) throw UsageError(name + ": expected a number, got '" + *v + "'");
        if (x < lo || x > hi)
            throw UsageError(name + ": " + *v + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return x;
    }

    /// "HxW", e.g. "360x480".
    std::optional<std::pair<int, int>> size(const std::string& name) {
        const auto v = text(name);
        if (!v) return std::nullopt;
        return parse_size(name, *v);
    }

    /// `value` of option `name` as "HxW" with sizes 1..16384.
    static std::pair<int, int> parse_size(const std::string& name, const std::string& value) {
        const auto x = value.find('x');
        auto parse = [&](const std::string& s) {
            char* end = nullptr;
            const long n = std::strtol(s.c_str(), &end, 10);
            if (s.empty() || *end != '\0' || n < 1 || n > 16384)
                throw UsageError(name + ": expected HxW with sizes 1..16384 (e.g. 360x480), got '" + value + "'");
            return int(n);
        };
        if (x == std::string::npos) throw UsageError(name + ": expected HxW (e.g. 360x480), got '" + value + "'");
        return std::pair{parse(value.substr(0, x)), parse(value.substr(x + 1))};
    }

    /// One of `choices`.
    std::string choice(const std::string& name, const std::string& fallback, const std::vector<std::string>& choices) {
        const std::string v = text(name, fallback);
        for (const auto& c : choices)
            if (c == v) return v;
        std::string list;
        for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
        throw UsageError(name + ": '" + v + "' is not one of " + list);
    }

    /// Rejects whatever was not consumed, then missing required options.
    void finish() const {
        for (const auto& item : items_)
            if (!item.used)
                throw UsageError((item.text.rfind("-", 0) == 0 ? "unknown option '" : "unexpected argument '") +
                                 item.text + "' (see --help)");
        if (!missing_.empty()) throw UsageError(missing_.front() + " is required (see --help)");
    }

private:
    struct Item {
        std::string text;
        bool used;
    };
    std::string program_, usage_;
    std::vector<Item> items_;
    std::vector<std::string> missing_;
};

/// The error of `--device cuda` in a program built without the CUDA backend.
inline std::runtime_error cuda_unavailable(const std::string& program) {
    return std::runtime_error("--device cuda: this build of " + program + " has no CUDA backend; use --device cpu, "
                              "or " + program + "-cuda from a build with -DSEGNET_CUDA=ON (see docs/gpu.md)");
}

/// Checks that `device` ("cpu" or "cuda") can run here: throws cuda_unavailable() for cuda in a
/// g++ build, and a clear error when an nvcc build finds no CUDA device.
inline void require_device(const std::string& program, const std::string& device) {
    if (device != "cuda") return;
#if SEGNET_PROGRAMS_CUDA
    if (segnet::backend::cuda::device_count() == 0)
        throw std::runtime_error("--device cuda: no CUDA device is visible (driver missing, no GPU, or "
                                 "CUDA_VISIBLE_DEVICES); use --device cpu");
#else
    throw cuda_unavailable(program);
#endif
}

/// Replaces this process with `variant`, an executable next to this one, same arguments; returns
/// when there is none or exec fails.
inline void exec_twin(int argc, char** argv, const char* variant) {
    std::error_code ec;
    const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) return;
    const std::string twin = (self.parent_path() / variant).string();
    if (::access(twin.c_str(), X_OK) != 0) return;
    std::vector<char*> args(argv, argv + argc);
    args[0] = const_cast<char*>(twin.c_str());
    args.push_back(nullptr);
    ::execv(twin.c_str(), args.data());
}

/// For the main() of a g++-built program: when the arguments say `--device cuda` and `variant`
/// (e.g. "segnet-train-cuda", the nvcc-built twin) is an executable next to this one, replaces
/// this process with it, same arguments. Returns when there is nothing to do or exec fails (the
/// program then reports cuda_unavailable()). Does nothing in an nvcc-built program.
inline void exec_cuda_variant(int argc, char** argv, const char* variant) {
#if !SEGNET_PROGRAMS_CUDA
    bool cuda = false;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string_view(argv[i]) == "--device" && std::string_view(argv[i + 1]) == "cuda") cuda = true;
    if (cuda) exec_twin(argc, argv, variant);
#else
    (void)argc, (void)argv, (void)variant;
#endif
}

/// Whether this process is one of several an MPI launcher started (mpirun -np N with N > 1:
/// OpenMPI's OMPI_COMM_WORLD_SIZE, MPICH's PMI_SIZE).
inline bool launched_as_ranks() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
        if (const char* v = std::getenv(name); v && std::atoi(v) > 1) return true;
    return false;
}

/// For the main() of a program without MPI: under `mpirun -np N` (N > 1), hands the run to
/// `variant` (e.g. "segnet-train-mpi", built with segnet::mpi) next to it, so that
/// `mpirun -np 4 segnet-train ...` trains data-parallel; returns when there is no such program.
inline void exec_mpi_variant(int argc, char** argv, const char* variant) {
    if (launched_as_ranks()) exec_twin(argc, argv, variant);
}

/// Whether the CPU itself reports AVX512-BF16, whatever SEGNET_CONV says (bf16_units() also
/// needs the AVX-512 kernels allowed).
inline bool cpu_reports_avx512_bf16() {
#if SEGNET_HAVE_AVX512_KERNELS
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

/// The value of `--precision fp32|bf16|auto`, or nothing when it is absent; resolve_precision()
/// turns it into the precision a run computes in.
inline std::optional<std::string> precision_request(Args& args) {
    const auto value = args.text("--precision");
    if (value && *value != "fp32" && *value != "bf16" && *value != "auto")
        throw UsageError("--precision: '" + *value + "' is not one of fp32, bf16, auto");
    return value;
}
/// The value of `--precision`, `fallback` when it is absent.
inline std::string precision_request(Args& args, const std::string& fallback) {
    return precision_request(args).value_or(fallback);
}

/// The precision a run on `device` ("cpu" or "cuda") computes in, for the `--precision` value
/// `requested`:
///   auto  bf16 on a CPU where it beats FP32 (backend::cpu::bf16_beats_fp32(): AMX, or AVX512-BF16
///         on a CPU that is not Intel's), fp32 elsewhere and on cuda;
///   bf16  on a CPU without BF16 units: fp32, said in one line on stderr (the results are right,
///         the run is only not faster); on cuda: a UsageError (the CUDA kernels compute in FP32);
///   fp32  fp32.
/// Called after Args::finish(), so that a usage error is reported before the note.
inline Precision resolve_precision(const std::string& program, const std::string& requested, const std::string& device) {
    if (requested == "fp32") return Precision::fp32;
    const bool cpu_bf16 = device != "cuda" && backend::cpu::bf16_units();
    if (requested == "auto")
        return device != "cuda" && backend::cpu::bf16_beats_fp32() ? Precision::bf16 : Precision::fp32;
    if (device == "cuda")
        throw UsageError("--precision bf16: the CUDA kernels compute in FP32 only; use --precision fp32 (or auto) "
                         "with --device cuda");
    if (!cpu_bf16) {
        // The CPU has the units but bf16_units() says no: SEGNET_CONV switched the AVX-512 kernels off.
        const char* conv = std::getenv("SEGNET_CONV");
        const std::string why = cpu_reports_avx512_bf16() && conv
                                    ? "SEGNET_CONV=" + std::string(conv) + " turns the AVX-512 kernels off"
                                    : "this CPU has no AVX512-BF16 dot products";
        std::fprintf(stderr, "%s: --precision bf16 runs in FP32: %s\n", program.c_str(), why.c_str());
        return Precision::fp32;
    }
    return Precision::bf16;
}

/// The image size limit every program applies before decoding (--max-image-pixels N, default
/// 16 million pixels: a 4000x4000 image; SegNet-Basic needs about 1 GB per million pixels to
/// train). A hostile file declaring a huge size is refused without allocating.
inline constexpr long long default_max_image_pixels = 16'000'000;
inline ImageLimits image_limits(Args& args) {
    ImageLimits limits;
    limits.max_pixels = args.integer("--max-image-pixels", default_max_image_pixels, 1, 1'000'000'000);
    return limits;
}

/// Creates the output folder (and parents), or fails with one line naming it.
inline void create_output_folder(const std::filesystem::path& folder) {
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    if (ec || !std::filesystem::is_directory(folder))
        throw DataError("segnet: cannot create output folder '" + folder.string() + "': " +
                        (ec ? ec.message() : std::string("a file of that name exists")));
}

/// Fails unless `file` can be created: its folder exists (checked before long work).
inline void check_writable_file(const std::filesystem::path& file) {
    const auto folder = file.parent_path();
    if (!folder.empty() && !std::filesystem::is_directory(folder))
        throw DataError("segnet: cannot write '" + file.string() + "': folder '" + folder.string() + "' does not exist");
}

/// For regular_files_in(): tells the user in one line on stderr which folder entry `program`
/// skips and why ("segnet-segment: skipping 'in/loop.png': Too many levels of symbolic links").
inline auto skipped_entry_warning(const char* program) {
    return [program](const std::filesystem::path& entry, const std::string& why) {
        std::fprintf(stderr, "%s: skipping '%s': %s\n", program, shortened(entry.string()).c_str(), why.c_str());
    };
}

/// Runs a program body with the shared error policy: usage errors exit 2, others 1, one line each.
template <class F>
int run_program(const char* program, F&& body) {
    try {
        return body();
    } catch (const UsageError& e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "%s: out of memory: the images are too large for this machine; use --size HxW or a "
                     "smaller --max-image-pixels\n", program);
        return 1;
    } catch (const std::exception& e) {
        const std::string what = e.what();
        const std::string prefix = std::string(program) + ": ";
        std::fprintf(stderr, "%s%s\n", what.rfind(prefix, 0) == 0 ? "" : prefix.c_str(), what.c_str());
        return 1;
    }
}

}  // namespace segnet::programs::cli
