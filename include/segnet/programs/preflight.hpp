// segnet/programs/preflight.hpp: the size and memory checks the programs make before any long
// work, so that an image the network cannot take or one that needs more memory than there is
// is one line up front, not a failure (or an out-of-memory kill) in the middle of a run.
//
//   const programs::cli::MemoryBudget budget = programs::cli::memory_budget(args);          // --max-memory, else free memory
//   const Analysis a = programs::cli::require_input_size<Cpu>("segnet-basic", 11, 360, 480, "'a.png'");
//   programs::cli::require_memory(programs::cli::inference_bytes(a, 360, 480), budget, "'a.png' (360x480)", "use --size HxW");
//   programs::cli::require_inference_fits<Cpu>("segnet-basic", 11, files, size, limits, budget);  // segment, evaluate
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "segnet/io/image.hpp"
#include "segnet/io/process.hpp"
#include "segnet/models/registry.hpp"
#include "segnet/programs/cli.hpp"

namespace segnet::programs::cli {

/// The memory a run may use: --max-memory N (bytes, or with a K/M/G suffix, binary units), else
/// what the machine has available now (io/process.hpp; unknown: no limit).
struct MemoryBudget {
    std::int64_t bytes = -1;  ///< -1: unknown, nothing is refused
    bool from_flag = false;
};

/// Refuses --samples T (Monte-Carlo dropout) where it cannot run or would repeat one answer: on a
/// device other than the CPU (Dropout has no CUDA kernel yet) or with a model without dropout.
inline void require_sampling(int samples, const std::string& device, const std::string& model, int classes) {
    if (samples == 0) return;
    if (device != "cpu")
        throw UsageError("--samples: Monte-Carlo dropout runs on the CPU only (Dropout has no CUDA kernel yet)");
    if (!models::make_model<Cpu>(model, classes)->has_random_layers())
        throw UsageError("--samples: the model '" + model +
                         "' has no dropout, so every sample is the same; use a Bayesian model "
                         "(bayesian-segnet-basic, bayesian-segnet)");
}

inline MemoryBudget memory_budget(Args& args) {
    const auto text = args.text("--max-memory");
    if (!text) return {available_memory_bytes(), false};
    char* end = nullptr;
    const double number = std::strtod(text->c_str(), &end);
    const std::string unit = end ? std::string(end) : "";
    double scale = 0;
    if (unit.empty()) scale = 1;
    else if (unit == "K" || unit == "k") scale = 1024.0;
    else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
    else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
    const double bytes = number * scale;
    if (text->empty() || end == text->c_str() || scale == 0 || !(bytes >= 1) || bytes > 9.0e18)
        throw UsageError("--max-memory: expected a size such as 8G, 512M or 1000000 (bytes), got '" +
                         shortened(*text, 60) + "'");
    return {std::int64_t(bytes), true};
}

/// "1.5 GB", or "300 MB" below a gigabyte (binary units, as --max-memory reads them).
inline std::string memory_size(std::int64_t bytes) {
    char buf[32];
    const double mb = double(bytes) / (1024.0 * 1024);
    if (mb < 1024) std::snprintf(buf, sizeof buf, "%.0f MB", mb);
    else std::snprintf(buf, sizeof buf, "%.1f GB", mb / 1024);
    return buf;
}

/// The network's analysis for an HxW colour input. Throws Error (DataError for an image,
/// UsageError for --size) when the network cannot take that size: "<what> is 7x7, a size
/// segnet-basic cannot take: stage 1 (Encoder) ...".
template <class Device, class Error = DataError>
Analysis require_input_size(const std::string& model, int classes, int height, int width, const std::string& what) {
    const Analysis a = models::analyse_model<Device>(model, classes, Dims{3, height, width});
    if (!a.ok()) {
        std::string why = describe(a.diag);
        if (why.rfind("segnet: ", 0) == 0) why = why.substr(8);
        throw Error(std::string(std::is_same_v<Error, DataError> ? "segnet: " : "") + what + " is " +
                    std::to_string(width) + "x" + std::to_string(height) + ", a size " + model + " cannot take: " + why);
    }
    return a;
}

/// What segmenting one HxW image at the network's analysed size needs: the network's inference
/// peak (its largest layer input + output + what encoders keep) and the image in its three
/// forms (decoded bytes, float tensor, labels).
inline std::int64_t inference_bytes(const Analysis& network, int image_height, int image_width) {
    const std::int64_t pixels = std::int64_t(image_height) * image_width;
    return network.inference_peak_bytes + pixels * (3 + 3 * 4 + 1);
}

/// What training with `batch` images of the analysed size needs at least: every layer's output
/// and pool indices kept for backward (gradients reuse those buffers).
inline std::int64_t training_bytes(const Analysis& network, int batch) {
    return std::int64_t(batch) * network.training_bytes_per_image;
}

/// Throws DataError unless `needed` bytes fit the budget: "segnet: <what> needs about 9.1 GB,
/// over the 1.0 GB available (--max-memory); <remedy>".
inline void require_memory(std::int64_t needed, const MemoryBudget& budget, const std::string& what,
                           const std::string& remedy) {
    if (budget.bytes < 0 || needed <= budget.bytes) return;
    throw DataError("segnet: " + what + " needs about " + memory_size(needed) + " of memory, over the " +
                    memory_size(budget.bytes) + (budget.from_flag ? " of --max-memory" : " available") + "; " + remedy);
}

/// The check segnet-segment and segnet-evaluate make before running the network: reads every
/// image's header (refusing one over `limits` before it is decoded) and throws, before anything
/// is written, for an image the network cannot take at its run size (`size`, else its own; a
/// bad --size is a UsageError) or whose inference, `batch` images at a time, needs more memory
/// than the budget: "segnet: 'big.png' (4000x4000) needs about 9.6 GB of memory, over ...".
template <class Device>
void require_inference_fits(const std::string& model, int classes, const std::vector<std::filesystem::path>& images,
                            const std::optional<std::pair<int, int>>& size, const ImageLimits& limits,
                            const MemoryBudget& budget, int batch = 1) {
    std::map<std::pair<int, int>, Analysis> analysed;  // by run size: most folders hold one size
    for (const std::filesystem::path& file : images) {
        const ImageInfo image = read_image_info(file, limits);  // the header only; read_image_info does not apply the limits
        image_detail::check_limits(image, limits, file);
        const std::string what = "'" + shortened(file.string()) + "'";
        const auto run = size.value_or(std::pair{image.height, image.width});
        auto it = analysed.find(run);
        if (it == analysed.end() && size)
            it = analysed.emplace(run, require_input_size<Device, UsageError>(model, classes, run.first, run.second, "--size")).first;
        else if (it == analysed.end())
            it = analysed.emplace(run, require_input_size<Device>(model, classes, run.first, run.second, what)).first;
        require_memory(std::int64_t(batch) * inference_bytes(it->second, image.height, image.width), budget,
                       what + " (" + std::to_string(image.width) + "x" + std::to_string(image.height) + ")" +
                           (batch > 1 ? " in batches of " + std::to_string(batch) : ""),
                       std::string("use --size HxW to run the network smaller") + (batch > 1 ? ", a smaller --batch" : "") +
                           ", or a larger --max-memory");
    }
}

}  // namespace segnet::programs::cli
