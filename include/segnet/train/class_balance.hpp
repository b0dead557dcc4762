// segnet/train/class_balance.hpp: class weights for the loss: median-frequency balancing
// (computed while streaming over a dataset), natural balancing, or weights read from a file.
//
//   segnet::ClassFrequencyCounter counter(11, {.ignore_label = 11});
//   for (const auto& batch : train_set) counter.add(batch.labels);    // {N, 1, H, W} uint8
//   std::vector<float> w = counter.median_frequency_weights();         // feed CrossEntropyOptions
//
// Median-frequency balancing (Eigen & Fergus, ICCV 2015; SEGNET.md section 3):
//   freq(c)   = pixels of class c / total pixels of the images in which c is present
//   weight(c) = median over classes of freq / freq(c)
// - "Total pixels" are the image's non-void pixels by default (the CamVid README's main
//   columns); VoidPixels::counted puts void pixels in the denominators (its "void px counted"
//   columns). Void is never a class, so it never gets a frequency or a weight.
// - Each image of a batch is its own "image in which c is present": presence is per image.
// - The median is taken over the classes that appear at all (the mean of the two middle values
//   when their number is even, as Matlab/NumPy median). A class that never appears has no
//   frequency: its weight is 0, so it adds nothing to a weighted loss. That is deliberate: a
//   weight for a class the data never shows cannot be estimated, and 0 says so visibly.
//
// Natural balancing is "no weighting": natural_class_weights(K) gives K ones (an empty vector
// means the same to CrossEntropyLoss). Explicit weights (e.g. the Caffe model's published
// ones) come from a text file: read_class_weights(path, K).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <istream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "segnet/core/tensor.hpp"
#include "segnet/io/files.hpp"

namespace segnet {

/// Whether void (ignore-label) pixels count in the per-image totals of median-frequency balancing.
enum class VoidPixels { excluded, counted };

struct ClassFrequencyOptions {
    /// The void label (CamVid: 11); negative = every label must be a class.
    int ignore_label = -1;
    VoidPixels void_pixels = VoidPixels::excluded;
};

/// Streams over label maps and accumulates what median-frequency balancing needs.
class ClassFrequencyCounter {
public:
    explicit ClassFrequencyCounter(int num_classes, ClassFrequencyOptions options = {})
        : options_(options), class_pixels_(check_classes(num_classes)), present_image_pixels_(num_classes),
          images_containing_(num_classes) {}

    int num_classes() const { return int(class_pixels_.size()); }

    /// Adds every image of a {N, 1, H, W} label batch; throws std::invalid_argument (naming the
    /// value and its position) if a label is neither a class nor the ignore label.
    void add(TensorView<Cpu, const std::uint8_t> labels) {
        const Extents e = labels.extents();
        if (e.c != 1)
            throw std::invalid_argument("segnet::ClassFrequencyCounter::add: labels must be {N, 1, H, W}, got " +
                                        to_string(e));
        const std::int64_t plane = e.plane();
        for (int n = 0; n < e.n; ++n) {
            const std::uint8_t* y = labels.data() + std::int64_t(n) * plane;
            std::int64_t count[256] = {};
            for (std::int64_t i = 0; i < plane; ++i) ++count[y[i]];
            std::int64_t image_total = 0;
            for (int v = 0; v < 256; ++v) {
                if (count[v] == 0) continue;
                if (v == options_.ignore_label) {
                    if (options_.void_pixels == VoidPixels::counted) image_total += count[v];
                    continue;
                }
                if (v >= num_classes()) {
                    const std::int64_t at = std::find(y, y + plane, std::uint8_t(v)) - y;
                    throw std::invalid_argument(
                        "segnet::ClassFrequencyCounter::add: label value " + std::to_string(v) +
                        " at (n=" + std::to_string(n) + ", y=" + std::to_string(at / e.w) +
                        ", x=" + std::to_string(at % e.w) + ") is not a class (" +
                        std::to_string(num_classes()) + " classes) and is not the ignore label (" +
                        std::to_string(options_.ignore_label) + ")");
                }
                image_total += count[v];
            }
            for (int c = 0; c < num_classes(); ++c) {
                if (count[c] == 0) continue;
                class_pixels_[c] += count[c];
                present_image_pixels_[c] += image_total;
                ++images_containing_[c];
            }
            ++images_;
        }
    }

    std::int64_t images() const { return images_; }
    /// Pixels of class c over all images added.
    const std::vector<std::int64_t>& class_pixels() const { return class_pixels_; }
    /// Total pixels (void per VoidPixels) of the images in which class c is present.
    const std::vector<std::int64_t>& present_image_pixels() const { return present_image_pixels_; }
    /// Number of images in which class c is present.
    const std::vector<std::int64_t>& images_containing() const { return images_containing_; }

    /// freq(c) = class_pixels / present_image_pixels; 0 for a class never seen.
    std::vector<double> frequencies() const {
        std::vector<double> freq(num_classes(), 0.0);
        for (int c = 0; c < num_classes(); ++c)
            if (present_image_pixels_[c] > 0)
                freq[c] = double(class_pixels_[c]) / double(present_image_pixels_[c]);
        return freq;
    }

    /// median(freq) / freq(c) over the classes seen; 0 for a class never seen. Throws
    /// std::logic_error when no class was seen (nothing added, or only void).
    std::vector<float> median_frequency_weights() const {
        const std::vector<double> freq = frequencies();
        std::vector<double> seen;
        for (int c = 0; c < num_classes(); ++c)
            if (class_pixels_[c] > 0) seen.push_back(freq[c]);
        if (seen.empty())
            throw std::logic_error(
                "segnet::ClassFrequencyCounter::median_frequency_weights: no class pixel was added "
                "(add label maps first)");
        std::sort(seen.begin(), seen.end());
        const std::size_t m = seen.size();
        const double median = m % 2 ? seen[m / 2] : 0.5 * (seen[m / 2 - 1] + seen[m / 2]);
        std::vector<float> weights(num_classes(), 0.0f);
        for (int c = 0; c < num_classes(); ++c)
            if (class_pixels_[c] > 0) weights[c] = float(median / freq[c]);
        return weights;
    }

private:
    static std::size_t check_classes(int num_classes) {
        if (num_classes <= 0 || num_classes > 256)
            throw std::invalid_argument("segnet::ClassFrequencyCounter: the number of classes must be "
                                        "in 1..256 (uint8 labels), got " + std::to_string(num_classes));
        return std::size_t(num_classes);
    }

    ClassFrequencyOptions options_;
    std::vector<std::int64_t> class_pixels_, present_image_pixels_, images_containing_;
    std::int64_t images_ = 0;
};

/// Natural frequency balancing: every pixel counts once.
inline std::vector<float> natural_class_weights(int num_classes) {
    return std::vector<float>(std::size_t(std::max(num_classes, 0)), 1.0f);
}

/// Parses class weights: floats separated by whitespace or newlines, `#` starts a comment that
/// runs to the end of the line. `source` names the input in errors ("weights.txt:3: ...").
/// Throws std::invalid_argument for a token that is not a finite number, a negative weight, or
/// a count other than num_classes.
inline std::vector<float> parse_class_weights(std::istream& in, std::string_view source,
                                              int num_classes) {
    std::vector<float> weights;
    std::string line;
    int line_number = 0;
    const std::string where(source);
    while (std::getline(in, line)) {
        ++line_number;
        if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream tokens(line);
        std::string token;
        while (tokens >> token) {
            float value = 0.0f;
            const char* end = token.data() + token.size();
            // from_chars rejects a leading '+'; accept it, people write "+1.5" in hand-made files.
            const char* begin = token.data() + (token.size() > 1 && token[0] == '+' ? 1 : 0);
            const auto [ptr, ec] = std::from_chars(begin, end, value);
            const std::string at = where + ":" + std::to_string(line_number) + ": ";
            if (ec != std::errc() || ptr != end || !std::isfinite(value))
                throw std::invalid_argument(at + "'" + token + "' is not a number (class weight " +
                                            std::to_string(weights.size()) + ")");
            if (value < 0.0f)
                throw std::invalid_argument(at + "class weight " + std::to_string(weights.size()) +
                                            " is negative (" + token + "); weights must be >= 0");
            weights.push_back(value);
        }
    }
    if (in.bad()) throw std::runtime_error(where + ": read error");
    if (int(weights.size()) != num_classes)
        throw std::invalid_argument(where + ": found " + std::to_string(weights.size()) +
                                    " class weights, expected " + std::to_string(num_classes) +
                                    " (one per class)");
    return weights;
}

/// Reads class weights from a text file in the format of parse_class_weights.
inline std::vector<float> read_class_weights(const std::filesystem::path& path, int num_classes) {
    require_regular_file(path, "read class weights");
    std::ifstream in(path);
    if (!in)
        throw std::invalid_argument("segnet::read_class_weights: cannot open '" + path.string() + "'");
    return parse_class_weights(in, path.string(), num_classes);
}

/// Writes weights one per line with a comment header, in a form read_class_weights reads back.
inline void write_class_weights(std::ostream& out, const std::vector<float>& weights,
                                std::string_view comment = {}) {
    if (!comment.empty()) out << "# " << comment << '\n';
    const auto precision = out.precision(9);  // float round-trips with 9 significant digits
    for (std::size_t c = 0; c < weights.size(); ++c) out << weights[c] << "  # class " << c << '\n';
    out.precision(precision);
}

}  // namespace segnet
