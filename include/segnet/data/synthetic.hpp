// segnet/data/synthetic.hpp: a deterministic toy segmentation set (discs, squares, triangles).
//
//   segnet::SyntheticOptions opt{.count = 64, .height = 64, .width = 64, .seed = 3};
//   segnet::SegmentationDataset ds = segnet::make_synthetic_dataset(opt);     // in memory, 4 classes
//   segnet::SampleList files = segnet::write_synthetic_dataset("/tmp/shapes", opt);  // PNGs + list.txt
//
// For end-to-end tests and demos that must learn something real in seconds without CamVid:
// each image has a striped, noisy background (class 0) and 1..max_shapes shapes of class
// 1 disc, 2 square, 3 triangle, each class with its own colour family plus jitter and noise, so
// both colour and shape carry the label. Sample i depends only on (seed, i), not on `count`.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "segnet/core/random.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/data/list_file.hpp"
#include "segnet/io/image.hpp"

namespace segnet {

inline constexpr int synthetic_classes = 4;
inline constexpr std::array<const char*, synthetic_classes> synthetic_class_names{"background", "disc", "square",
                                                                                  "triangle"};

struct SyntheticOptions {
    int count = 32;
    int height = 64;
    int width = 64;
    std::uint64_t seed = 1;
    int max_shapes = 3;   ///< shapes per image, drawn uniformly in 1..max_shapes
    float noise = 12.f;   ///< per-pixel Gaussian noise, standard deviation in 0..255 units
};

/// Sample `index` of the synthetic set: an RGB image and its {1, 1, H, W} label map.
inline RawSample make_synthetic_sample(const SyntheticOptions& opt, std::size_t index) {
    if (opt.height < 4 || opt.width < 4)
        throw std::invalid_argument("segnet::make_synthetic_sample: images must be at least 4x4");
    Rng rng(loader_detail::mix(opt.seed ^ 0x5E6D0A7Aull, index));
    const int H = opt.height, W = opt.width;
    RawSample s;
    s.image.width = W;
    s.image.height = H;
    s.image.channels = 3;
    s.image.pixels.assign(std::size_t(W) * std::size_t(H) * 3, 0);
    s.label = Tensor<Cpu, std::uint8_t>({1, 1, H, W});

    // Float canvas first, so noise and stripes are added before one rounding at the end.
    std::vector<float> rgb(std::size_t(W) * std::size_t(H) * 3);
    std::array<float, 3> base{};
    const float grey = rng.uniform(90.f, 170.f);
    for (float& b : base) b = grey + rng.uniform(-15.f, 15.f);
    const float angle = rng.uniform(0.f, 3.14159265f);
    const float period = rng.uniform(6.f, 16.f);
    const float amplitude = rng.uniform(8.f, 25.f);
    const float ca = std::cos(angle), sa = std::sin(angle);
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            const float stripe = amplitude * std::sin(6.2831853f * (ca * float(x) + sa * float(y)) / period);
            for (int c = 0; c < 3; ++c) rgb[(std::size_t(y) * W + x) * 3 + c] = base[std::size_t(c)] + stripe;
        }

    // Colour families: red discs, green squares, blue triangles.
    static constexpr float palette[synthetic_classes][3] = {{0, 0, 0}, {205, 60, 55}, {60, 185, 70}, {60, 80, 210}};
    const int shapes = 1 + int(rng.below(std::uint64_t(std::max(1, opt.max_shapes))));
    const float min_side = float(std::min(H, W));
    for (int k = 0; k < shapes; ++k) {
        const int cls = 1 + int(rng.below(3));
        const float r = rng.uniform(0.12f, 0.28f) * min_side;
        const float cx = rng.uniform(0.f, float(W)), cy = rng.uniform(0.f, float(H));
        std::array<float, 3> colour{};
        for (int c = 0; c < 3; ++c) colour[std::size_t(c)] = palette[cls][c] + rng.uniform(-25.f, 25.f);
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const float px = float(x) + 0.5f - cx, py = float(y) + 0.5f - cy;
                bool inside = false;
                if (cls == 1) inside = px * px + py * py <= r * r;
                else if (cls == 2) inside = std::abs(px) <= 0.85f * r && std::abs(py) <= 0.85f * r;
                else inside = py >= -r && py <= r && std::abs(px) <= (py + r) * 0.6f;  // apex up
                if (!inside) continue;
                s.label(0, 0, y, x) = std::uint8_t(cls);
                for (int c = 0; c < 3; ++c) rgb[(std::size_t(y) * W + x) * 3 + c] = colour[std::size_t(c)];
            }
    }
    for (std::size_t i = 0; i < rgb.size(); ++i) {
        const float v = rgb[i] + (opt.noise > 0.f ? rng.normal(0.f, opt.noise) : 0.f);
        s.image.pixels[i] = std::uint8_t(std::clamp(std::lround(v), 0L, 255L));
    }
    return s;
}

inline std::vector<RawSample> make_synthetic_samples(const SyntheticOptions& opt) {
    std::vector<RawSample> out;
    out.reserve(std::size_t(std::max(0, opt.count)));
    for (int i = 0; i < opt.count; ++i) out.push_back(make_synthetic_sample(opt, std::size_t(i)));
    return out;
}

/// The synthetic set as an in-memory dataset (classes set to 4; other options kept).
inline SegmentationDataset make_synthetic_dataset(const SyntheticOptions& opt, DatasetOptions options = {}) {
    options.classes = synthetic_classes;
    return SegmentationDataset(make_synthetic_samples(opt), options, "synthetic dataset");
}

/// Writes images/NNNN.png, labels/NNNN.png and `list_name` (CamVid list format) under `folder`,
/// creating it if needed, and returns the list as read back.
inline SampleList write_synthetic_dataset(const std::filesystem::path& folder, const SyntheticOptions& opt,
                                          const std::string& list_name = "list.txt") {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(folder / "images", ec);
    fs::create_directories(folder / "labels", ec);
    if (ec) throw DataError("segnet: cannot create " + io_detail::quoted(folder) + ": " + ec.message());
    std::string list = "# synthetic shapes: 0 background, 1 disc, 2 square, 3 triangle\n";
    for (int i = 0; i < opt.count; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "%04d.png", i);
        const RawSample s = make_synthetic_sample(opt, std::size_t(i));
        write_rgb_png(folder / "images" / name, s.image);
        write_label_png(folder / "labels" / name, s.label);
        list += std::string("images/") + name + " labels/" + name + "\n";
    }
    write_file_atomically(folder / list_name, [&](FileSink& f) { f.write(list); });
    return read_list_file(folder / list_name);
}

}  // namespace segnet
