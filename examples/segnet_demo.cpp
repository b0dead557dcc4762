// segnet-demo: builds SegNet-Basic and SegNet from their types, runs them on a bundled CamVid
// image, and prints what the compiler and the run produced: shapes, parameter counts, FLOPs,
// loss, time and peak memory.
//
//   segnet-demo                                   # bundled image, all threads
//   segnet-demo --image photo.png --label l.png --threads 2 --no-segnet
#include <segnet/io/image.hpp>
#include <segnet/io/process.hpp>
#include <segnet/programs/cli.hpp>
#include <segnet/segnet.hpp>
#include <segnet/train/loss.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#ifndef SEGNET_DATA_DIR
#define SEGNET_DATA_DIR "data"
#endif

using namespace segnet;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool all_finite(const Tensor<Cpu>& t) {
    for (float v : t.span())
        if (!std::isfinite(v)) return false;
    return true;
}

template <class Net>
void print_architecture(const char* name) {
    using Out = output_shape_t<Net, Shape<3, 360, 480>>;
    std::printf("  %-13s %10.3f M parameters, 3x360x480 -> %dx%dx%d, %6.1f GFLOP forward\n", name,
                parameter_count_v<Net> / 1e6, Out::channels, Out::height, Out::width,
                flops_v<Net, Shape<3, 360, 480>> / 1e9);
}

struct Options {
    std::string image = std::string(SEGNET_DATA_DIR) + "/camvid/val/0016E5_07959.png";
    std::string label = std::string(SEGNET_DATA_DIR) + "/camvid/valannot/0016E5_07959.png";
    int threads = 0;
    bool segnet = true;
};

constexpr const char* usage =
    "usage: segnet-demo [--image FILE] [--label FILE] [--threads T] [--no-segnet]\n"
    "Builds SegNet-Basic (forward + backward, batch 2) and SegNet (forward) on an image\n"
    "(default: a bundled CamVid validation image) and prints shapes, parameters, time, memory.\n";

Options parse(int argc, char** argv) {
    programs::cli::Args args(argc, argv, "segnet-demo", usage);
    Options o;
    o.image = args.text("--image", o.image);
    o.label = args.text("--label", o.label);
    o.threads = int(args.integer("--threads", 0, 1, 1024));
    o.segnet = !args.flag("--no-segnet");
    args.finish();
    return o;
}

int run(const Options& opt) {
    if (opt.threads > 0) segnet::set_num_threads(opt.threads);
    std::printf("segnet demo: %d CPU threads\n\nCompile-time facts (computed by the compiler from the types):\n",
                segnet::num_threads());
    print_architecture<models::SegNetBasic<11>>("SegNet-Basic");
    print_architecture<models::SegNet<11>>("SegNet");

    // The image, scaled to [0, 1] and centred; the label map for a loss.
    Tensor<Cpu> image = load_rgb_tensor(opt.image);
    const Tensor<Cpu, std::uint8_t> label = load_label(opt.label);
    if (label.h() != image.h() || label.w() != image.w())
        throw std::invalid_argument("'" + opt.label + "': label size " + std::to_string(label.w()) + "x" +
                                    std::to_string(label.h()) + " differs from the image's " +
                                    std::to_string(image.w()) + "x" + std::to_string(image.h()));
    for (float& v : image.span()) v = v / 255.f - 0.5f;
    std::printf("\nInput: %s (%dx%d)\n", opt.image.c_str(), image.w(), image.h());

    // A batch of two: the image and its mirror image.
    Tensor<Cpu> batch({2, 3, image.h(), image.w()});
    Tensor<Cpu, std::uint8_t> labels({2, 1, image.h(), image.w()});
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < image.h(); ++y)
            for (int x = 0; x < image.w(); ++x) {
                batch(0, c, y, x) = image(0, c, y, x);
                batch(1, c, y, x) = image(0, c, y, image.w() - 1 - x);
            }
    for (int y = 0; y < image.h(); ++y)
        for (int x = 0; x < image.w(); ++x) {
            labels(0, 0, y, x) = label(0, 0, y, x);
            labels(1, 0, y, x) = label(0, 0, y, image.w() - 1 - x);
        }

    Model<models::SegNetBasic<11>, Cpu> basic(/*seed*/ 42);
    CrossEntropyLoss loss({.class_weights = {}, .ignore_label = 11});
    auto t0 = std::chrono::steady_clock::now();
    const Tensor<Cpu>& logits = basic.forward(batch, Mode::train);
    const double t_forward = seconds_since(t0);
    Tensor<Cpu> grad(logits.extents());
    const double value = loss.forward_backward(logits, labels, grad);
    t0 = std::chrono::steady_clock::now();
    const Tensor<Cpu>& grad_input = basic.backward(grad);
    const double t_backward = seconds_since(t0);
    bool grads_finite = true;
    for (auto& p : basic.parameters()) grads_finite = grads_finite && all_finite(*p.grad);
    std::printf("\nSegNet-Basic, batch 2, train mode (seed 42):\n");
    std::printf("  input %s -> logits %s, finite: %s\n", to_string(batch.extents()).c_str(),
                to_string(logits.extents()).c_str(), all_finite(logits) ? "yes" : "NO");
    std::printf("  cross-entropy loss %.4f (untrained; ln 11 = %.4f)\n", value, std::log(11.0));
    std::printf("  backward: d loss/d input %s, %zu parameter gradients, finite: %s\n",
                to_string(grad_input.extents()).c_str(), basic.parameters().size(), grads_finite ? "yes" : "NO");
    std::printf("  forward %.2f s, backward %.2f s, peak memory %.0f MB\n", t_forward, t_backward,
                peak_rss_bytes() / 1048576.0);

    if (opt.segnet) {
        Model<models::SegNet<11>, Cpu> vgg(42);
        t0 = std::chrono::steady_clock::now();
        const Tensor<Cpu>& out = vgg.forward(image, Mode::eval);
        const double t_vgg = seconds_since(t0);
        std::printf("\nSegNet (VGG16), batch 1, eval mode:\n  input %s -> logits %s, finite: %s\n",
                    to_string(image.extents()).c_str(), to_string(out.extents()).c_str(),
                    all_finite(out) ? "yes" : "NO");
        std::printf("  forward %.2f s, peak memory %.0f MB\n", t_vgg, peak_rss_bytes() / 1048576.0);
    }
    return all_finite(logits) && grads_finite ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    return programs::cli::run_program("segnet-demo", [&] { return run(parse(argc, argv)); });
}
