// segnet-bench: times one network's inference or training step on the CPU and prints median and
// minimum milliseconds, images/s, achieved GFLOP/s and peak resident memory (or JSON).
//
//   segnet-bench --model segnet-basic --size 360x480 --batch 1 --mode infer --threads 2 --iters 10
//   segnet-bench --model segnet --mode train --batch 4 --json
//   segnet-bench --model segnet-basic --layers        # per-layer forward (and backward) times
//   segnet-bench --model segnet --mode infer --no-fusion   # eval without the [unpool+]conv+BN+ReLU[+pool] fusions
//   segnet-bench --model segnet-basic --precision bf16     # the convolutions in bf16 (FP32 accumulation)
//
// Train mode times one full step: forward(Mode::train), cross-entropy loss and its gradient
// (random labels), backward, SGD step and zero_grad. GFLOP/s counts the forward FLOPs only in
// inference and 3x the forward FLOPs in training (forward + backward-data + backward-filter),
// the usual convention. bench/compare_pytorch.py runs this program next to PyTorch. cpu_ms is
// the median process CPU time per iteration divided by the threads (all workers; the pool's
// workers sleep when idle), less disturbed by a busy machine than wall time. --no-fusion turns
// off the eval-mode fusions, [unpool +] conv + batch norm + ReLU [+ max pool] (set_eval_fusion(false)).
// --precision fp32|bf16|auto (default fp32) is the precision timed (Model::set_precision); the
// output names the one that ran, which is fp32 for bf16 on a CPU without BF16 units
// (programs::cli::resolve_precision, which says so on stderr).
//
// --device cuda: this file is also compiled by nvcc as segnet-bench-cuda (segnet_bench_cuda.cu
// includes it; SEGNET_PROGRAMS_CUDA is 1 there), which times Model<Net, Cuda> and synchronises
// the device before every timer read. The g++-built segnet-bench hands `--device cuda` to that
// twin when it sits next to it (programs::cli::exec_cuda_variant), like segnet-train. See docs/gpu.md.
#include <segnet/io/process.hpp>
#include <segnet/programs/cli.hpp>  // SEGNET_PROGRAMS_CUDA, require_device, exec_cuda_variant
#include <segnet/segnet.hpp>
#include <segnet/train/loss.hpp>
#include <segnet/train/optimizer.hpp>
#if SEGNET_PROGRAMS_CUDA
#include <segnet/backend/cuda/cuda.cuh>
#endif

#if __has_include(<segnet/models/registry.hpp>)
#include <segnet/models/registry.hpp>
#define SEGNET_BENCH_HAS_REGISTRY 1
#endif

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

using namespace segnet;

namespace {

#if SEGNET_PROGRAMS_CUDA
constexpr const char* program_name = "segnet-bench-cuda";
#else
constexpr const char* program_name = "segnet-bench";
#endif

struct Options {
    std::string model = "segnet-basic";
    int h = 360, w = 480, batch = 1, threads = 0, iters = 10, warmup = 2, classes = 11;
    bool train = false, json = false, layers = false, fusion = true;
    std::string precision = "fp32";  // as given: fp32, bf16 or auto; resolved in run()
    bool cuda = SEGNET_PROGRAMS_CUDA;  // --device cuda (the default of segnet-bench-cuda)
};

/// --device cuda cannot run here (no CUDA backend in this build, or no visible device): exit 1.
struct DeviceUnavailable : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr const char* usage =
#if SEGNET_PROGRAMS_CUDA
    "usage: segnet-bench-cuda [--device cuda] [--model NAME] [--size HxW] [--batch B] [--mode infer|train]\n"
    "                         [--threads T] [--iters N] [--warmup W] [--classes K] [--json] [--layers]\n"
    "                         [--precision fp32]\n"
    "segnet-bench on the GPU (Model<Net, Cuda>; the device is synchronised before every timer read):\n"
    "times inference or one training step and prints median/min ms, images/s, GFLOP/s, peak host\n"
    "RSS and the GPU memory the caching allocator reserved. For the CPU, run segnet-bench.\n"
    "--precision: fp32 (default) or auto; the CUDA kernels compute in FP32 only.\n"
#else
    "usage: segnet-bench [--model NAME] [--size HxW] [--batch B] [--mode infer|train]\n"
    "                    [--threads T] [--iters N] [--warmup W] [--classes K] [--json] [--layers]\n"
    "                    [--no-fusion] [--precision fp32|bf16|auto]\n"
    "Times inference (forward, eval mode) or one training step (forward, loss, backward, SGD)\n"
    "and prints median/min ms, images/s, GFLOP/s and peak resident memory. NAME: segnet-basic\n"
    "(default), segnet, or any model of segnet/models/registry.hpp; --classes 11 by default.\n"
    "--no-fusion: inference without the eval-mode fusions ([unpool +] conv + batch norm + ReLU [+ max pool]).\n"
    "--precision: the precision of the convolutions timed (default fp32; auto: bf16 where it beats\n"
    "fp32: AMX, or AVX512-BF16 on AMD; bf16 without BF16 units runs fp32); the output names the one that ran.\n"
    "--device cuda runs segnet-bench-cuda (built with -DSEGNET_CUDA=ON) with the same options.\n"
#endif
    ;

Options parse(int argc, char** argv) {
    programs::cli::Args args(argc, argv, program_name, usage);
    Options o;
    o.model = args.text("--model", o.model);
    if (const auto size = args.size("--size")) std::tie(o.h, o.w) = *size;
    o.batch = int(args.integer("--batch", o.batch, 1, 4096));
    o.threads = int(args.integer("--threads", o.threads, 1, 1024));
    o.iters = int(args.integer("--iters", o.iters, 1, 1 << 20));
    o.warmup = int(args.integer("--warmup", o.warmup, 0, 1 << 20));
    o.classes = int(args.integer("--classes", o.classes, 1, 255));
    o.train = args.choice("--mode", "infer", {"infer", "train"}) == "train";
    o.cuda = args.choice("--device", o.cuda ? "cuda" : "cpu", {"cpu", "cuda"}) == "cuda";
    o.json = args.flag("--json");
    o.layers = args.flag("--layers");
    o.fusion = !args.flag("--no-fusion");
    o.precision = programs::cli::precision_request(args, o.precision);
    args.finish();
    return o;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }
double process_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Per-layer accumulated times, in execution order.
struct LayerTimes {
    std::vector<std::string> names;
    std::vector<double> fwd, bwd;
};

/// What differs between the devices: waiting for queued work before a clock is read, and the
/// device memory report (the inputs, loss and optimiser are the library's, for any device).
template <class Device>
struct BenchDevice;

template <>
struct BenchDevice<Cpu> {
    static void synchronize() {}
    static double memory_mb() { return 0; }
};

#if SEGNET_PROGRAMS_CUDA
template <>
struct BenchDevice<Cuda> {
    /// GPU work is asynchronous: every timer read waits for the queued kernels first.
    static void synchronize() { backend::cuda::synchronize(); }
    /// Bytes the caching allocator holds from the driver (tensors, cached blocks, cuDNN workspaces).
    static double memory_mb() { return double(backend::cuda::allocator().stats().bytes_reserved) / 1048576.0; }
    static std::string name() {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, backend::cuda::Context::get().device()) != cudaSuccess) return "CUDA device";
        return p.name;
    }
};
#endif

template <class Net, class Device>
int bench(const Options& o, Precision precision) {
    using Dev = BenchDevice<Device>;
    constexpr bool on_gpu = !std::is_same_v<Device, Cpu>;
    Model<Net, Device> model(42);
    model.set_eval_fusion(o.fusion);
    model.set_precision(precision);
    // --layers calls the layers directly, past Model's own scope: the same precision for them.
    const PrecisionScope precision_scope(precision);
    Tensor<Cpu> x_host({o.batch, 3, o.h, o.w});
    std::mt19937 gen(7);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (float& v : x_host.span()) v = nd(gen);

    const Analysis an = Net::analyse(Dims{3, o.h, o.w});
    if (!an.ok()) throw std::invalid_argument("the network does not accept a 3x" + std::to_string(o.h) + "x" +
                                              std::to_string(o.w) + " input");
    const double flops_per_image = double(an.flops);

    Tensor<Cpu, std::uint8_t> labels_host({o.batch, 1, o.h, o.w});
    std::uniform_int_distribution<int> ud(0, o.classes - 1);
    for (auto& v : labels_host.span()) v = std::uint8_t(ud(gen));
    backend::Staging<Device> staging;
    const Tensor<Device>& x = staging.images(x_host);
    const Tensor<Device, std::uint8_t>& labels = staging.labels(labels_host);
    const CrossEntropyLoss loss;
    Tensor<Device> grad;
    std::unique_ptr<Optimizer> opt;
    if (o.train) opt = std::make_unique<Sgd<Device>>(model.parameters(), SgdOptions{.lr = 0.01, .momentum = 0.9});
    // Reads a clock started at t0 once the device has finished the work queued since.
    auto elapsed = [](Clock::time_point t0) {
        Dev::synchronize();
        return ms_since(t0);
    };

    auto& nodes = model.layers();
    LayerTimes lt;
    for (auto& n : nodes) lt.names.push_back(n.prefix + std::string(n.layer->kind()));
    lt.fwd.assign(nodes.size(), 0.0);
    lt.bwd.assign(nodes.size(), 0.0);
    bool record = false;

    // Model::forward / backward, or the same loop over the layers with a clock per layer.
    auto forward = [&](Mode mode) -> const Tensor<Device>& {
        if (!o.layers) return model.forward(x, mode);
        const Tensor<Device>* cur = &x;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            const auto t0 = Clock::now();
            cur = &nodes[i].layer->forward(*cur, mode);
            if (record) lt.fwd[i] += elapsed(t0);
        }
        return *cur;
    };
    auto backward = [&](const Tensor<Device>& g) {
        if (!o.layers) {
            model.backward(g);
            return;
        }
        const Tensor<Device>* cur = &g;
        for (std::size_t i = nodes.size(); i-- > 0;) {
            const auto t0 = Clock::now();
            cur = &nodes[i].layer->backward(*cur);
            if (record) lt.bwd[i] += elapsed(t0);
        }
    };
    double loss_ms = 0, opt_ms = 0;
    auto step = [&] {
        if (!o.train) {
            forward(Mode::eval);
            return;
        }
        const Tensor<Device>& logits = forward(Mode::train);
        auto t0 = Clock::now();  // (in --layers mode the forward has been waited for)
        grad.resize(logits.extents());
        loss.forward_backward(logits, labels, grad);
        if (record) loss_ms += elapsed(t0);
        backward(grad);
        t0 = Clock::now();
        opt->step();
        opt->zero_grad();
        if (record) opt_ms += elapsed(t0);
    };

    if (o.layers) model.forward(x, o.train ? Mode::train : Mode::eval);  // checks the input size once
    for (int i = 0; i < o.warmup; ++i) step();
    Dev::synchronize();
    std::vector<double> times, cpu_times;
    double device_mb = Dev::memory_mb();
    record = true;
    for (int i = 0; i < o.iters; ++i) {
        const auto t0 = Clock::now();
        const double c0 = process_cpu_ms();
        step();
        times.push_back(elapsed(t0));
        cpu_times.push_back((process_cpu_ms() - c0) / segnet::num_threads());
        device_mb = std::max(device_mb, Dev::memory_mb());
    }
    const double med = median(times), mn = *std::min_element(times.begin(), times.end());
    const double cpu_med = median(cpu_times);
    const double flops = flops_per_image * o.batch * (o.train ? 3.0 : 1.0);
    const double gflops = flops / (med * 1e6);
    const double ips = o.batch * 1000.0 / med;
    const double rss = peak_rss_bytes() / 1048576.0;
    if constexpr (on_gpu) {
#if SEGNET_PROGRAMS_CUDA
        // Same keys as the CPU's (peak_rss_mb is the host process), plus the device and the GPU
        // memory the caching allocator reserved (its peak: it frees nothing while the sizes repeat).
        const std::string gpu = Dev::name();
        if (o.json) {
            std::printf(
                "{\"model\": \"%s\", \"mode\": \"%s\", \"batch\": %d, \"height\": %d, \"width\": %d, \"threads\": %d, "
                "\"iters\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"images_per_s\": %.4f, \"gflops\": %.2f, "
                "\"forward_gflop_per_image\": %.3f, \"peak_rss_mb\": %.1f, \"device\": \"cuda\", \"gpu\": \"%s\", "
                "\"gpu_peak_mb\": %.1f, \"precision\": \"%s\"}\n",
                o.model.c_str(), o.train ? "train" : "infer", o.batch, o.h, o.w, segnet::num_threads(), o.iters, med, mn,
                ips, gflops, flops_per_image / 1e9, rss, gpu.c_str(), device_mb, to_string(precision));
        } else {
            std::printf("%s %s, batch %d, 3x%dx%d, on %s (cuda), precision %s, %d iterations (%d warm-up)\n",
                        o.model.c_str(), o.train ? "training step" : "inference", o.batch, o.h, o.w, gpu.c_str(),
                        to_string(precision), o.iters, o.warmup);
            std::printf("  median %.2f ms, min %.2f ms, %.3f images/s, %.1f GFLOP/s (%.2f GFLOP %s), peak RSS %.0f MB, "
                        "GPU memory %.0f MB (caching allocator)\n",
                        med, mn, ips, gflops, flops / 1e9, o.train ? "fwd+bwd" : "forward", rss, device_mb);
        }
#endif
    } else if (o.json) {
        std::printf(
            "{\"model\": \"%s\", \"mode\": \"%s\", \"batch\": %d, \"height\": %d, \"width\": %d, \"threads\": %d, "
            "\"iters\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"images_per_s\": %.4f, \"gflops\": %.2f, "
            "\"forward_gflop_per_image\": %.3f, \"peak_rss_mb\": %.1f, \"cpu_ms\": %.3f, \"fusion\": %s, "
            "\"precision\": \"%s\", \"bf16_units\": %s, \"bf16_kernels\": \"%s\"}\n",
            o.model.c_str(), o.train ? "train" : "infer", o.batch, o.h, o.w, segnet::num_threads(), o.iters, med, mn,
            ips, gflops, flops_per_image / 1e9, rss, cpu_med, o.fusion ? "true" : "false", to_string(precision),
            backend::cpu::bf16_units() ? "true" : "false", backend::cpu::bf16_units_name());
    } else {
        std::printf("%s %s, batch %d, 3x%dx%d, %d threads, precision %s%s%s%s, %d iterations (%d warm-up)\n",
                    o.model.c_str(), o.train ? "training step" : "inference", o.batch, o.h, o.w, segnet::num_threads(),
                    to_string(precision), precision == Precision::bf16 ? " (" : "",
                    precision == Precision::bf16 ? backend::cpu::bf16_units_name() : "",
                    precision == Precision::bf16 ? ")" : "", o.iters, o.warmup);
        std::printf("  median %.2f ms, min %.2f ms, %.3f images/s, %.1f GFLOP/s (%.2f GFLOP %s), peak RSS %.0f MB, "
                    "CPU time %.2f ms per thread%s\n",
                    med, mn, ips, gflops, flops / 1e9, o.train ? "fwd+bwd" : "forward", rss, cpu_med,
                    o.train || o.fusion ? "" : " (no fusion)");
    }
    if (o.layers) {
        std::FILE* out = o.json ? stderr : stdout;
        const double n = o.iters;
        double tf = 0, tb = 0;
        for (std::size_t i = 0; i < nodes.size(); ++i) tf += lt.fwd[i] / n, tb += lt.bwd[i] / n;
        std::fprintf(out, "\n  %-28s %10s %6s %10s %6s\n", "layer", "fwd ms", "%", o.train ? "bwd ms" : "", o.train ? "%" : "");
        const double total = tf + tb + (loss_ms + opt_ms) / n;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            if (nodes[i].layer->kind() == "Tap") continue;
            std::fprintf(out, "  %-28s %10.2f %6.1f", lt.names[i].c_str(), lt.fwd[i] / n, 100 * lt.fwd[i] / n / total);
            if (o.train) std::fprintf(out, " %10.2f %6.1f", lt.bwd[i] / n, 100 * lt.bwd[i] / n / total);
            std::fprintf(out, "\n");
        }
        // Totals per layer kind.
        std::map<std::string, std::pair<double, double>> kinds;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            auto& k = kinds[std::string(nodes[i].layer->kind())];
            k.first += lt.fwd[i] / n;
            k.second += lt.bwd[i] / n;
        }
        std::fprintf(out, "  by kind:\n");
        for (auto& [k, v] : kinds)
            std::fprintf(out, "  %-28s %10.2f %6.1f %10.2f %6.1f\n", k.c_str(), v.first, 100 * v.first / total, v.second,
                         100 * v.second / total);
        if (o.train)
            std::fprintf(out, "  %-28s %10.2f   loss, %.2f ms SGD step + zero_grad\n", "loss + optimizer",
                         loss_ms / n, opt_ms / n);
        std::fprintf(out, "  %-28s %10.2f        %10.2f   (sum %.2f ms)\n", "total", tf, tb, total);
    }
    return 0;
}

template <template <int> class Net, class Device>
int bench_named(const Options& o, Precision precision) {
    switch (o.classes) {
        case 11: return bench<Net<11>, Device>(o, precision);
        case 12: return bench<Net<12>, Device>(o, precision);
        case 21: return bench<Net<21>, Device>(o, precision);
        default: throw std::invalid_argument("--classes: this program is built for 11, 12 or 21 classes");
    }
}

template <class Device>
int run_on(const Options& o, Precision precision) {
#ifdef SEGNET_BENCH_HAS_REGISTRY
    // Every built-in model; the class counts compiled in are SEGNET_CLASS_COUNTS (bench/CMakeLists.txt).
    return models::with_model(o.model, o.classes, [&]<class Net>() -> int { return bench<Net, Device>(o, precision); });
#else
    if (o.model == "segnet-basic") return bench_named<models::SegNetBasic, Device>(o, precision);
    if (o.model == "segnet") return bench_named<models::SegNet, Device>(o, precision);
    throw std::invalid_argument("unknown model '" + o.model + "' (segnet-basic, segnet)");
#endif
}

int run(const Options& o) {
    if (o.threads > 0) segnet::set_num_threads(o.threads);
    // Before the device checks: bf16 with --device cuda is a usage error (exit 2) with or without a GPU.
    const Precision precision = programs::cli::resolve_precision(program_name, o.precision, o.cuda ? "cuda" : "cpu");
    // Only one device is compiled into each build, so each model is instantiated once: Cpu in
    // segnet-bench (g++, the program flags), Cuda in segnet-bench-cuda (nvcc).
#if SEGNET_PROGRAMS_CUDA
    if (!o.cuda)
        throw std::invalid_argument("--device cpu: segnet-bench-cuda times the GPU only; run segnet-bench "
                                    "(same options) for the CPU");
    try {
        programs::cli::require_device("segnet-bench", "cuda");  // "no CUDA device is visible" before any work
    } catch (const std::runtime_error& e) {
        throw DeviceUnavailable(e.what());
    }
    return run_on<Cuda>(o, precision);
#else
    if (o.cuda) throw DeviceUnavailable(programs::cli::cuda_unavailable("segnet-bench").what());
    return run_on<Cpu>(o, precision);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    // --device cuda: run segnet-bench-cuda (the nvcc-built twin) when it is installed next to this.
    programs::cli::exec_cuda_variant(argc, argv, "segnet-bench-cuda");
    try {
        return run(parse(argc, argv));
    } catch (const DeviceUnavailable& e) {
        std::fprintf(stderr, "%s: %s\n", program_name, e.what());
        return 1;
#if SEGNET_PROGRAMS_CUDA
    } catch (const backend::cuda::CudaError& e) {  // a failing CUDA/cuDNN call, named in the message
        std::fprintf(stderr, "%s: %s\n", program_name, e.what());
        return 1;
#endif
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", program_name, e.what());
        return 2;
    }
}
