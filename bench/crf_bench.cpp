// crf-bench: the dense CRF (refine/dense_crf.hpp) on one image, 1 thread against N threads in
// alternating rounds (a busy machine slows both alike), medians printed. The probabilities are
// random (the CRF's cost does not depend on their values); the image sets the lattice's size.
//
//   crf-bench --image data/camvid/val/0016E5_07959.png --threads 2 --rounds 5
#include <segnet/backend/cpu/thread_pool.hpp>
#include <segnet/io/image.hpp>
#include <segnet/programs/cli.hpp>
#include <segnet/refine/dense_crf.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

using namespace segnet;

constexpr const char* usage =
    "usage: crf-bench --image PNG [--threads T] [--rounds R] [--classes K] [--iterations N]\n"
    "Times the dense CRF (default options, 11 classes) on the image with 1 thread and with T\n"
    "threads (default: all), R alternating rounds each (default 5); prints the medians in ms.\n";

int main(int argc, char** argv) {
    return programs::cli::run_program("crf-bench", [&] {
        programs::cli::Args args(argc, argv, "crf-bench", usage);
        const std::string image = args.required("--image");
        const int threads = int(args.integer("--threads", std::thread::hardware_concurrency(), 1, 1024));
        const int rounds = int(args.integer("--rounds", 5, 1, 1000));
        const int classes = int(args.integer("--classes", 11, 2, 255));
        refine::DenseCrfOptions options;
        options.iterations = int(args.integer("--iterations", options.iterations, 0, 1000));
        args.finish();
        const ImageU8 rgb = load_rgb(image);
        const std::size_t pixels = std::size_t(rgb.height) * rgb.width;
        std::vector<float> probabilities(pixels * classes);
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> uniform(0.01f, 1.0f);
        for (std::size_t i = 0; i < pixels; ++i) {
            float sum = 0;
            for (int k = 0; k < classes; ++k) sum += probabilities[k * pixels + i] = uniform(rng);
            for (int k = 0; k < classes; ++k) probabilities[k * pixels + i] /= sum;
        }
        auto time_ms = [&](int t) {
            set_num_threads(t);
            const auto start = std::chrono::steady_clock::now();
            const auto labels = refine::dense_crf(probabilities.data(), classes, rgb.height, rgb.width, rgb.pixels.data(), options);
            const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
            return labels.empty() ? -1.0 : ms;
        };
        std::vector<double> one, many;
        for (int r = 0; r < rounds; ++r) {
            one.push_back(time_ms(1));
            many.push_back(time_ms(threads));
        }
        auto median = [](std::vector<double> v) {
            std::sort(v.begin(), v.end());
            return v[v.size() / 2];
        };
        std::printf("%dx%d, %d classes, %d iterations: 1 thread %.0f ms, %d threads %.0f ms (medians of %d alternating rounds)\n",
                    rgb.width, rgb.height, classes, options.iterations, median(one), threads, median(many), rounds);
        return 0;
    });
}
