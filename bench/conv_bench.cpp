// conv-bench: the convolution kernels alone, the dispatched (fast) path against the im2col path,
// on the shapes SegNet-Basic and SegNet use, with the largest difference between the two.
// --precision bf16 runs the dispatched path under Precision::bf16 (the bf16 kernels where the CPU
// has BF16 units, FP32 where it does not: the header line says which); the im2col path stays
// FP32, so the difference column is then the bf16 rounding error. --no-im2col skips it.
//
//   conv-bench --threads 2 --iters 5                 # every shape
//   conv-bench --shape 64x64x180x240k7 --threads 1 --cpu-time   # CPU time: robust to a busy machine
//   conv-bench --shape 512x1024x46x61k3d12 --cpu-time  # a dilated (atrous) shape: DeepLab-LargeFOV's fc6
//   conv-bench --batch 4 --threads 2                  # the training batch (default 1)
//   conv-bench --winograd compare --cpu-time          # 3x3 shapes: Winograd against direct, alternating
//   conv-bench --winograd off                         # the dispatched path without Winograd
//   conv-bench --precision bf16 --no-im2col --cpu-time # bf16 kernels; compare with --precision fp32
#include <segnet/backend/cpu/conv.hpp>
#include <segnet/programs/cli.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <time.h>
#include <vector>

using namespace segnet;
using Clock = std::chrono::steady_clock;

struct ConvShape {
    int cin, cout, h, w, k, batch;
    int dilation = 1;  // same padding: dilation (k - 1) / 2
};

constexpr const char* usage =
    "usage: conv-bench [--threads T] [--iters N] [--batch B] [--shape CINxCOUTxHxWkK[dD]] [--cpu-time]\n"
    "                  [--winograd auto|on|off|compare] [--precision fp32|bf16] [--no-im2col]\n"
    "Times the dispatched convolution kernels against the im2col path on SegNet's shapes\n"
    "(forward, backward-data, backward-filter) in alternating rounds (medians) and prints the\n"
    "largest difference between them. The shapes include DeepLab-LargeFOV's dilated 3x3 ones\n"
    "(suffix dD: dilation D, padding D).\n"
    "--winograd on/off forces Winograd F(4x4, 3x3) on or off in the dispatched path (auto: the\n"
    "rule in conv_winograd.hpp); compare times, on the 3x3 shapes, Winograd against the direct\n"
    "kernels (forward and backward-data, alternating rounds, medians) instead.\n"
    "--precision bf16: the dispatched kernels under Precision::bf16 (the im2col path stays FP32;\n"
    "Winograd is FP32 only). --no-im2col: time the dispatched kernels only.\n";

bool cpu_time = false;  // --cpu-time: process CPU time / threads instead of wall time

double process_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double elapsed_ms(Clock::time_point t0, double c0) {
    return cpu_time ? (process_cpu_ms() - c0) / segnet::num_threads()
                    : std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> t) {
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

template <class F>
double time_ms(int iters, F&& f) {
    f();
    std::vector<double> t;
    for (int i = 0; i < iters; ++i) {
        const auto t0 = Clock::now();
        const double c0 = process_cpu_ms();
        f();
        t.push_back(elapsed_ms(t0, c0));
    }
    return median(t);
}

/// The medians of a() and b() timed in alternating rounds (a busy machine slows both alike).
template <class A, class B>
std::pair<double, double> time_alternating_ms(int iters, A&& a, B&& b) {
    a();
    b();
    std::vector<double> ta, tb;
    for (int i = 0; i < iters; ++i) {
        auto t0 = Clock::now();
        double c0 = process_cpu_ms();
        a();
        ta.push_back(elapsed_ms(t0, c0));
        t0 = Clock::now();
        c0 = process_cpu_ms();
        b();
        tb.push_back(elapsed_ms(t0, c0));
    }
    return {median(ta), median(tb)};
}

/// "512x1024x46x61k3d12": --shape's spelling (no d suffix at dilation 1).
std::string shape_name(const ConvShape& s) {
    std::string name = std::to_string(s.cin) + "x" + std::to_string(s.cout) + "x" + std::to_string(s.h) + "x" +
                       std::to_string(s.w) + "k" + std::to_string(s.k);
    return s.dilation == 1 ? name : name + "d" + std::to_string(s.dilation);
}

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0, scale = 1e-6;
    for (std::size_t i = 0; i < a.size(); ++i) scale = std::max(scale, double(std::abs(b[i])));
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::abs(a[i] - b[i])));
    return m / scale;
}

/// Winograd (forced on) against the direct kernels (Winograd off) on one 3x3 shape: forward and
/// backward-data through the dispatched entry points, alternating rounds.
void compare_winograd(const char* name, const backend::ConvGeometry& g, int batch, int iters, std::mt19937& gen) {
    namespace cpu = backend::cpu;
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<float> x(std::size_t(batch) * g.in_c * g.in_plane()), w(std::size_t(g.weight_size())),
        bias(std::size_t(g.out_c)), y(std::size_t(batch) * g.out_c * g.out_plane()), y2(y.size()), dx(x.size()),
        dx2(x.size());
    for (auto& v : x) v = std::max(0.f, nd(gen));  // a ReLU's output
    for (auto& v : w) v = nd(gen) * std::sqrt(2.f / float(g.in_c * 9));  // He
    for (auto& v : bias) v = nd(gen) * 0.1f;
    const auto with = [](cpu::winograd::Mode m, auto f) {
        return [m, f] {
            cpu::winograd::set_mode(m);
            f();
        };
    };
    using cpu::winograd::Mode;
    const auto fwd = [&](std::vector<float>& out) {
        return [&] { cpu::conv2d_forward(x.data(), w.data(), bias.data(), out.data(), batch, g); };
    };
    const auto bwd = [&](std::vector<float>& out) {
        return [&] { cpu::conv2d_backward_data(y.data(), w.data(), out.data(), batch, g); };
    };
    const auto [fw, fd] = time_alternating_ms(iters, with(Mode::on, fwd(y)), with(Mode::off, fwd(y2)));
    const auto [bw, bd] = time_alternating_ms(iters, with(Mode::on, bwd(dx)), with(Mode::off, bwd(dx2)));
    cpu::winograd::set_mode(Mode::automatic);
    const double gflop = 2.0 * g.in_c * 9 * g.out_c * g.out_plane() * batch / 1e9;
    std::printf("%-22s %8.2f | %9.2f %9.2f %7.2f | %9.2f %9.2f %7.2f | %-4s  max rel diff %.1e %.1e\n", name, gflop, fd,
                fw, fd / fw, bd, bw, bd / bw, cpu::winograd::chosen(g, batch) ? "yes" : "no", max_rel(y, y2), max_rel(dx, dx2));
}

int run(int argc, char** argv) {
    programs::cli::Args args(argc, argv, "conv-bench", usage);
    const int threads = int(args.integer("--threads", 2, 1, 1024));
    const int iters = int(args.integer("--iters", 5, 1, 1 << 20));
    const int batch = int(args.integer("--batch", 1, 1, 4096));
    const std::string only = args.text("--shape", "");
    cpu_time = args.flag("--cpu-time");
    const std::string winograd = args.text("--winograd", "auto");
    const Precision precision = *parse_precision(args.choice("--precision", "fp32", {"fp32", "bf16"}));
    const bool im2col = !args.flag("--no-im2col");
    args.finish();
    using backend::cpu::winograd::Mode;
    if (winograd == "on") backend::cpu::winograd::set_mode(Mode::on);
    else if (winograd == "off") backend::cpu::winograd::set_mode(Mode::off);
    else if (winograd != "auto" && winograd != "compare")
        throw std::invalid_argument("conv-bench: --winograd takes auto, on, off or compare, not " + winograd);
    segnet::set_num_threads(threads);
    std::vector<ConvShape> shapes = {
        {3, 64, 360, 480, 7, 1},   {64, 64, 360, 480, 7, 1}, {64, 64, 180, 240, 7, 1}, {64, 64, 90, 120, 7, 1},
        {64, 64, 45, 60, 7, 1},    {64, 11, 360, 480, 1, 1}, {3, 64, 360, 480, 3, 1},  {64, 64, 360, 480, 3, 1},
        {128, 128, 180, 240, 3, 1}, {256, 256, 90, 120, 3, 1}, {512, 512, 45, 60, 3, 1}, {512, 512, 23, 30, 3, 1},
        // DeepLab-LargeFOV at 360x480 (output stride 8: 46x61): conv5 (dilation 2) and fc6 (12)
        {512, 512, 46, 61, 3, 1, 2}, {512, 1024, 46, 61, 3, 1, 12},
    };
    for (ConvShape& s : shapes) s.batch = batch;
    {
        const char* isa = backend::cpu::direct_conv_isa({64, 45, 60, 64, 45, 60, 3, 1, 1, 1});
        const bool bf16 = precision == Precision::bf16 && backend::cpu::bf16_units() && *isa;
        std::printf("threads %d, batch %d, precision %s, fast kernels %s%s%s\n", threads, batch, to_string(precision),
                    *isa ? isa : "off", bf16 ? " with " : "",
                    bf16 ? backend::cpu::bf16_units_name() : precision == Precision::bf16 ? " (no BF16 units: FP32)" : "");
    }
    std::mt19937 gen(1);
    if (winograd == "compare") {
        std::printf("%-22s %8s | %9s %9s %7s | %9s %9s %7s | %s\n", "shape (3x3 only)", "GFLOP", "fwd dir", "winograd",
                    "speedup", "bwd-d dir", "winograd", "speedup", "auto");
        for (const ConvShape& s : shapes) {
            const std::string name = shape_name(s);
            if (s.k != 3 || s.dilation != 1 || (!only.empty() && only != name)) continue;
            compare_winograd(name.c_str(), {s.cin, s.h, s.w, s.cout, s.h, s.w, 3, 1, 1, 1}, s.batch, iters, gen);
        }
        return 0;
    }
    std::printf("%-22s %8s | %9s %9s %7s | %9s %9s %7s | %9s %9s %7s\n", "shape", "GFLOP", "fwd ms", "im2col", "GF/s",
                "bwd-d ms", "im2col", "GF/s", "bwd-w ms", "im2col", "GF/s");
    std::normal_distribution<float> nd(0.f, 1.f);
    for (const ConvShape& s : shapes) {
        const std::string name = shape_name(s);
        if (!only.empty() && only != name) continue;
        const backend::ConvGeometry g{s.cin, s.h, s.w, s.cout, s.h, s.w, s.k, 1, s.dilation * (s.k / 2), 1, s.dilation};
        std::vector<float> x(std::size_t(s.batch) * s.cin * s.h * s.w), w(std::size_t(g.weight_size())),
            bias(std::size_t(s.cout)), y(std::size_t(s.batch) * s.cout * s.h * s.w), y2(y.size()), dx(x.size()),
            dx2(x.size()), dw(w.size()), dw2(w.size());
        for (auto& v : x) v = nd(gen);
        for (auto& v : w) v = nd(gen) * 0.05f;
        for (auto& v : bias) v = nd(gen);
        const double gflop = 2.0 * s.cin * s.k * s.k * s.cout * s.h * s.w * s.batch / 1e9;
        // The dispatched kernels and the im2col path in alternating rounds (a busy machine slows
        // both alike), or the dispatched ones alone with --no-im2col (NaN prints as "nan").
        PrecisionScope scope(precision);  // the dispatched kernels; the *_im2col ones ignore it
        const auto timed = [&](auto&& fast, auto&& portable) {
            return im2col ? time_alternating_ms(iters, fast, portable) : std::pair{time_ms(iters, fast), double(NAN)};
        };
        const auto [f, fe] = timed([&] { backend::cpu::conv2d_forward(x.data(), w.data(), bias.data(), y.data(), s.batch, g); },
                                   [&] { backend::cpu::conv2d_forward_im2col(x.data(), w.data(), bias.data(), y2.data(), s.batch, g); });
        const auto [d, de] = timed([&] { backend::cpu::conv2d_backward_data(y.data(), w.data(), dx.data(), s.batch, g); },
                                   [&] { backend::cpu::conv2d_backward_data_im2col(y.data(), w.data(), dx2.data(), s.batch, g); });
        // dw accumulates over the rounds: compare the sums of equally many calls of each.
        std::fill(dw.begin(), dw.end(), 0.f);
        std::fill(dw2.begin(), dw2.end(), 0.f);
        const auto [b, be] = timed([&] { backend::cpu::conv2d_backward_filter(x.data(), y.data(), dw.data(), nullptr, s.batch, g); },
                                   [&] { backend::cpu::conv2d_backward_filter_im2col(x.data(), y.data(), dw2.data(), nullptr, s.batch, g); });
        std::printf("%-22s %8.2f | %9.2f %9.2f %7.0f | %9.2f %9.2f %7.0f | %9.2f %9.2f %7.0f   max rel diff %.1e %.1e %.1e\n",
                    name.c_str(), gflop, f, fe, gflop / f * 1e3, d, de, gflop / d * 1e3, b, be, gflop / b * 1e3,
                    im2col ? max_rel(y, y2) : NAN, im2col ? max_rel(dx, dx2) : NAN, im2col ? max_rel(dw, dw2) : NAN);
    }
    return 0;
}

int main(int argc, char** argv) {
    return programs::cli::run_program("conv-bench", [&] { return run(argc, argv); });
}
