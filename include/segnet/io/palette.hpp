// segnet/io/palette.hpp: colours for label maps: the CamVid palette, palette files, colour
// masks and overlays.
//
//   segnet::Palette p = segnet::Palette::camvid();                   // or Palette::load("p.txt")
//   segnet::ImageU8 mask = segnet::colorize(labels.image(0), p);      // RGB, one colour per class
//   segnet::ImageU8 blend = segnet::overlay(rgb, labels.image(0), p, 0.5f);
//
// The CamVid palette is SegNet-Tutorial's Scripts/camvid11.png (entries 0..10; void and every
// other value black). A palette file has one "R G B" line per class (0..255, `#` comments).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "segnet/io/files.hpp"
#include "segnet/io/image.hpp"

namespace segnet {

class Palette {
public:
    using Rgb = std::array<std::uint8_t, 3>;

    static Palette camvid() {
        Palette p;
        p.colors_ = {{128, 128, 128}, {128, 0, 0},   {192, 192, 128}, {128, 64, 128}, {60, 40, 222}, {128, 128, 0},
                     {192, 128, 128}, {64, 64, 128}, {64, 0, 128},    {64, 64, 0},    {0, 128, 192}};
        return p;
    }

    /// A palette for any class count: CamVid's colours first, then well-separated hues.
    static Palette for_classes(int classes) {
        Palette p = camvid();
        for (int i = int(p.colors_.size()); i < classes; ++i) {
            // Golden-ratio hue steps give distinct colours without a table.
            const double h = std::fmod(i * 0.618033988749895, 1.0) * 6.0;
            const int sector = int(h);
            const double f = h - sector;
            const auto v = std::uint8_t(230), lo = std::uint8_t(60), up = std::uint8_t(60 + 170 * f),
                       down = std::uint8_t(230 - 170 * f);
            const Rgb table[6] = {{v, up, lo}, {down, v, lo}, {lo, v, up}, {lo, down, v}, {up, lo, v}, {v, lo, down}};
            p.colors_.push_back(table[sector % 6]);
        }
        p.colors_.resize(std::size_t(std::max(classes, 0)));
        return p;
    }

    static Palette load(const std::filesystem::path& path) {
        require_regular_file(path, "read palette");
        std::ifstream in(path);
        if (!in) throw DataError("segnet: cannot read palette '" + shortened(path.string()) + "': file not found or unreadable");
        Palette p;
        std::string line;
        int number = 0;
        while (std::getline(in, line)) {
            ++number;
            if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
            std::istringstream s(line);
            int r, g, b;
            std::string junk;
            if (!(s >> r)) continue;  // blank line
            if (!(s >> g >> b) || (s >> junk) || r < 0 || r > 255 || g < 0 || g > 255 || b < 0 || b > 255)
                throw DataError("segnet: palette '" + path.string() + "':" + std::to_string(number) +
                                ": expected 'R G B' with values 0..255");
            p.colors_.push_back({std::uint8_t(r), std::uint8_t(g), std::uint8_t(b)});
        }
        if (p.colors_.empty()) throw DataError("segnet: palette '" + path.string() + "' has no colours");
        return p;
    }

    /// The colour of a label; labels past the palette (void) are black.
    Rgb operator[](int label) const {
        return label >= 0 && label < int(colors_.size()) ? colors_[std::size_t(label)] : Rgb{0, 0, 0};
    }
    std::size_t size() const { return colors_.size(); }

private:
    std::vector<Rgb> colors_;
};

/// A width x height RGB image, black.
inline ImageU8 rgb_image(int width, int height) {
    ImageU8 out;
    out.width = width;
    out.height = height;
    out.channels = 3;
    out.pixels.resize(std::size_t(width) * height * 3);
    return out;
}

/// An RGB image with each label's colour ({1, 1, H, W} labels).
inline ImageU8 colorize(TensorView<Cpu, const std::uint8_t> labels, const Palette& palette) {
    ImageU8 out = rgb_image(labels.w(), labels.h());
    for (int y = 0; y < out.height; ++y)
        for (int x = 0; x < out.width; ++x) {
            const auto c = palette[labels(0, 0, y, x)];
            std::copy(c.begin(), c.end(), out.pixels.begin() + (std::size_t(y) * out.width + x) * 3);
        }
    return out;
}

/// An RGB image of a {1, 1, H, W} map of values in [0, 1] (clamped) in the viridis colour map
/// (dark purple 0 -> yellow 1): perceptually uniform and readable in grey and by colour-blind
/// readers, so equal steps of uncertainty look equally far apart. Matplotlib's viridis at 0, 0.1,
/// ..., 1, interpolated linearly between.
inline ImageU8 viridis(TensorView<Cpu, const float> values) {
    static constexpr std::array<std::array<float, 3>, 11> stops{{{68, 1, 84},     {72, 36, 117},  {65, 68, 135},
                                                                 {53, 95, 141},   {42, 120, 142}, {33, 145, 140},
                                                                 {34, 168, 132},  {68, 191, 112}, {122, 209, 81},
                                                                 {189, 223, 38},  {253, 231, 37}}};
    ImageU8 out = rgb_image(values.w(), values.h());
    for (int y = 0; y < out.height; ++y)
        for (int x = 0; x < out.width; ++x) {
            const float raw = values(0, 0, y, x);
            const float v = (raw > 0.f ? std::min(raw, 1.f) : 0.f) * float(stops.size() - 1);  // NaN -> 0
            const std::size_t i = std::min(std::size_t(v), stops.size() - 2);
            const float t = v - float(i);
            for (int c = 0; c < 3; ++c)
                out.pixels[(std::size_t(y) * out.width + x) * 3 + std::size_t(c)] =
                    std::uint8_t(std::lround(stops[i][std::size_t(c)] * (1.f - t) + stops[i + 1][std::size_t(c)] * t));
        }
    return out;
}

/// The image with the colour mask blended on top (alpha = weight of the mask).
inline ImageU8 overlay(const ImageU8& rgb, TensorView<Cpu, const std::uint8_t> labels, const Palette& palette,
                       float alpha = 0.5f) {
    if (rgb.width != labels.w() || rgb.height != labels.h() || rgb.channels != 3)
        throw std::invalid_argument("segnet::overlay: the image (" + std::to_string(rgb.width) + "x" +
                                    std::to_string(rgb.height) + ") and the labels (" + std::to_string(labels.w()) +
                                    "x" + std::to_string(labels.h()) + ") differ in size");
    ImageU8 out = colorize(labels, palette);
    for (std::size_t i = 0; i < out.pixels.size(); ++i)
        out.pixels[i] = std::uint8_t(std::lround((1 - alpha) * rgb.pixels[i] + alpha * out.pixels[i]));
    return out;
}

}  // namespace segnet
