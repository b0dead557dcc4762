// pool-bench: the windowed and adaptive pooling kernels alone (backend/cpu/pool.hpp) on the maps
// DeepLab-LargeFOV, ResNet's stem and PSPNet pool, next to SegNet's 2x2 max pooling (the
// vectorised MaxPool<2> rows) on a map of the same size: median milliseconds per call.
//
//   pool-bench --threads 1 --iters 20
//   pool-bench --threads 2 --iters 20 --cpu-time   # CPU time per thread: robust to a busy machine
#include <segnet/backend/cpu/pool.hpp>
#include <segnet/programs/cli.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <time.h>
#include <vector>

using namespace segnet;
namespace cpu = segnet::backend::cpu;

constexpr const char* usage =
    "usage: pool-bench [--threads T] [--iters N] [--cpu-time]\n"
    "Times MaxPoolWindow, AvgPool (forward and backward) and AdaptiveAvgPool on DeepLab-LargeFOV,\n"
    "ResNet and PSPNet maps, and the 2x2 max pooling of SegNet on a map of the same size (median\n"
    "ms per call; --cpu-time: process CPU time divided by the threads).\n";

namespace {

bool cpu_time = false;

double now_ms() {
    timespec ts{};
    clock_gettime(cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec * 1e3 + ts.tv_nsec / 1e6) / (cpu_time ? segnet::num_threads() : 1);
}

template <class F>
double median_ms(int iters, F&& f) {
    f();
    std::vector<double> t;
    for (int i = 0; i < iters; ++i) {
        const double t0 = now_ms();
        f();
        t.push_back(now_ms() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

struct PoolCase {
    const char* name;
    int c, h, w;
    backend::PoolWindow window;  // window 0: adaptive to `bins`
    int bins;
};

}  // namespace

int run(int argc, char** argv) {
    programs::cli::Args args(argc, argv, "pool-bench", usage);
    const int threads = int(args.integer("--threads", 1, 1, 1024));
    const int iters = int(args.integer("--iters", 20, 1, 1 << 20));
    cpu_time = args.flag("--cpu-time");
    args.finish();
    segnet::set_num_threads(threads);
    const PoolCase cases[] = {
        {"deeplab pool4 3x3 s1 p1", 512, 46, 61, {3, 1, 1}, 0},
        {"deeplab pool1 3x3 s2 p1", 64, 360, 480, {3, 2, 1}, 0},
        {"resnet stem 3x3 s2 p1", 64, 180, 240, {3, 2, 1}, 0},
        {"pspnet adaptive 6", 2048, 46, 61, {0, 0, 0}, 6},
        {"pspnet adaptive 1", 2048, 46, 61, {0, 0, 0}, 1},
    };
    std::printf("threads %d, median ms per call%s\n", threads, cpu_time ? " (CPU time per thread)" : "");
    std::printf("%-26s %10s %10s %10s %10s\n", "map", "max fwd", "avg fwd", "avg bwd", "2x2 max");
    std::mt19937 gen(1);
    std::uniform_real_distribution<float> ud(-1.f, 1.f);
    for (const PoolCase& pc : cases) {
        std::vector<float> x(std::size_t(pc.c) * pc.h * pc.w);
        for (float& v : x) v = ud(gen);
        const backend::PoolSpans spans =
            pc.bins > 0 ? backend::adaptive_spans({pc.h, pc.w}, pc.bins)
                        : backend::window_spans({pc.h, pc.w}, pc.window,
                                                {backend::windowed_pool_extent(pc.h, pc.window.window, pc.window.stride,
                                                                               pc.window.pad, PoolRounding::ceil),
                                                 backend::windowed_pool_extent(pc.w, pc.window.window, pc.window.stride,
                                                                               pc.window.pad, PoolRounding::ceil)});
        const std::size_t out = std::size_t(pc.c) * spans.rows.size() * spans.cols.size();
        std::vector<float> y(out), dx(x.size());
        std::vector<std::int32_t> idx(out);
        const double max_fwd = pc.bins > 0 ? 0.0 : median_ms(iters, [&] {
            cpu::window_max_pool_forward(x.data(), 1, pc.c, pc.h, pc.w, spans, y.data(), idx.data());
        });
        const double avg_fwd = median_ms(iters, [&] { cpu::average_pool_forward(x.data(), 1, pc.c, pc.h, pc.w, spans, y.data()); });
        const double avg_bwd = median_ms(iters, [&] { cpu::average_pool_backward(y.data(), 1, pc.c, spans, dx.data(), pc.h, pc.w); });
        const int ph = (pc.h + 1) / 2, pw = (pc.w + 1) / 2;
        std::vector<float> y2(std::size_t(pc.c) * ph * pw);
        std::vector<std::int32_t> idx2(y2.size());
        const double max2 = median_ms(iters, [&] {
            cpu::max_pool_forward(x.data(), 1, pc.c, pc.h, pc.w, 2, y2.data(), ph, pw, idx2.data());
        });
        std::printf("%-26s %10.3f %10.3f %10.3f %10.3f\n", pc.name, max_fwd, avg_fwd, avg_bwd, max2);
    }
    return 0;
}

int main(int argc, char** argv) {
    return programs::cli::run_program("pool-bench", [&] { return run(argc, argv); });
}
