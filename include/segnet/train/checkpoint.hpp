// segnet/train/checkpoint.hpp: a model, its training state and what it was trained with, in one
// safetensors file (PyTorch-style names and layouts, float32), written atomically.
//
//   segnet::save_checkpoint("out/last.safetensors", model, info, optimizer.get());
//   segnet::CheckpointInfo meta = segnet::read_checkpoint_info("out/last.safetensors");
//   segnet::load_checkpoint("out/last.safetensors", model, &info, optimizer.get());
//
// Tensors: every entry of model.state() under its own name ("encoder0.0.weight" [64, 3, 7, 7],
// "encoder0.1.running_mean" [64], ...), then the optimizer's state under "optimizer.<name>"
// (e.g. "optimizer.sgd.momentum.encoder0.0.weight"). Metadata (strings): format, model,
// classes, ignore_label, normalization (mean, std, scale), class_weights, epoch and batch of
// the next training step, seed, and free-form extras (best metric, image size). Loading checks
// that the file is a checkpoint of the same model and class count, and that every tensor is
// present with its shape; it never half-loads a model (tensors are read before any is set).
// The model may live on any device with backend::upload/download (Model<Net, Cuda> in nvcc
// translation units): the file is the same.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <charconv>
#include <limits>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "segnet/backend/ops.hpp"
#include "segnet/core/parameter.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/io/safetensors.hpp"
#include "segnet/train/optimizer.hpp"

namespace segnet {

inline constexpr const char* checkpoint_format = "segnet-checkpoint-1";
/// The largest epoch a checkpoint may record (segnet-train's --epochs limit).
inline constexpr int max_checkpoint_epoch = 1'000'000;

/// save_checkpoint() refused to write: `tensor` holds NaN or Inf (training diverged). The file
/// it would have replaced is left as it was.
struct NonFiniteTensor : DataError {
    NonFiniteTensor(const std::string& message, std::string tensor_name)
        : DataError(message), tensor(std::move(tensor_name)) {}
    std::string tensor;
};

struct CheckpointInfo {
    std::string model;  ///< registry name, e.g. "segnet-basic"
    int classes = 0;
    int ignore_label = -1;
    Normalization normalization{};
    std::vector<float> class_weights{};
    int epoch = 0;            ///< the epoch training continues with
    std::size_t batch = 0;    ///< the batch within that epoch training continues with
    std::uint64_t seed = 0;   ///< the run's seed (with epoch and batch: the data order and augmentation)
    std::map<std::string, std::string> extra{};
};

namespace checkpoint_detail {

inline std::string join(const float* v, std::size_t n) {
    std::ostringstream s;
    s.precision(9);
    for (std::size_t i = 0; i < n; ++i) s << (i ? "," : "") << v[i];
    return s.str();
}

inline std::vector<float> split_floats(const std::string& text, const std::string& key, const std::string& file) {
    std::vector<float> out;
    if (text.empty()) return out;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, end - start);
        try {
            std::size_t used = 0;
            out.push_back(std::stof(item, &used));
            if (used != item.size()) throw std::invalid_argument("junk");
        } catch (const std::exception&) {
            throw DataError("segnet: checkpoint '" + file + "': metadata '" + key + "' is not a list of numbers");
        }
        start = end + 1;
    }
    return out;
}

inline long long parse_int(const std::map<std::string, std::string>& meta, const std::string& key,
                           const std::string& file, bool required = true, long long fallback = 0) {
    const auto it = meta.find(key);
    if (it == meta.end()) {
        if (required) throw DataError("segnet: checkpoint '" + file + "': metadata '" + key + "' is missing");
        return fallback;
    }
    long long v = 0;
    const auto* b = it->second.data();
    const auto [p, ec] = std::from_chars(b, b + it->second.size(), v);
    if (ec != std::errc() || p != b + it->second.size())
        throw DataError("segnet: checkpoint '" + file + "': metadata '" + key + "' is not an integer ('" +
                        it->second + "')");
    return v;
}

/// parse_int within [lo, hi]: a crafted file must not wrap an int or go negative.
inline long long parse_int_in(const std::map<std::string, std::string>& meta, const std::string& key,
                              const std::string& file, long long lo, long long hi, long long fallback) {
    const long long v = parse_int(meta, key, file, false, fallback);
    if (v < lo || v > hi)
        throw DataError("segnet: checkpoint '" + file + "': metadata '" + key + "' is " + std::to_string(v) +
                        ", outside " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
}

inline std::vector<std::int64_t> shape_of(const std::vector<int>& s) { return {s.begin(), s.end()}; }
inline std::vector<std::int64_t> shape_of(const Extents& e) { return {e.n, e.c, e.h, e.w}; }

}  // namespace checkpoint_detail

/// The metadata of a checkpoint, without loading its tensors into anything.
inline CheckpointInfo checkpoint_info_from(const SafetensorsFile& f) {
    using namespace checkpoint_detail;
    const auto& meta = f.metadata();
    const std::string& file = f.source();
    const auto format = meta.find("format");
    if (format == meta.end() || format->second != checkpoint_format)
        throw DataError("segnet: '" + file + "' is not a segnet checkpoint (metadata 'format' is " +
                        (format == meta.end() ? std::string("missing") : "'" + format->second + "'") + ", expected '" +
                        checkpoint_format + "')");
    CheckpointInfo info;
    const auto model = meta.find("model");
    if (model == meta.end() || model->second.empty())
        throw DataError("segnet: checkpoint '" + file + "': metadata 'model' is missing");
    info.model = model->second;
    info.classes = int(parse_int(meta, "classes", file));
    if (info.classes < 1 || info.classes > 255)
        throw DataError("segnet: checkpoint '" + file + "': 'classes' must be 1..255, got " +
                        std::to_string(info.classes));
    info.ignore_label = int(parse_int_in(meta, "ignore_label", file, -1, 255, -1));
    info.epoch = int(parse_int_in(meta, "epoch", file, 0, max_checkpoint_epoch, 0));
    info.batch = std::size_t(parse_int_in(meta, "batch", file, 0, std::numeric_limits<int>::max(), 0));
    info.seed = std::uint64_t(parse_int_in(meta, "seed", file, 0, std::numeric_limits<long long>::max(), 0));
    auto floats = [&](const char* key) {
        const auto it = meta.find(key);
        return it == meta.end() ? std::vector<float>{} : split_floats(it->second, key, file);
    };
    const auto mean = floats("normalization_mean"), stddev = floats("normalization_std"),
               scale = floats("normalization_scale");
    if (!mean.empty() || !stddev.empty()) {
        if (mean.size() != 3 || stddev.size() != 3 || scale.size() != 1)
            throw DataError("segnet: checkpoint '" + file + "': normalization needs 3 means, 3 stds and 1 scale");
        info.normalization = {{mean[0], mean[1], mean[2]}, {stddev[0], stddev[1], stddev[2]}, scale[0]};
        if (const std::string problem = info.normalization.problem(); !problem.empty())
            throw DataError("segnet: checkpoint '" + file + "': normalization " + problem +
                            " (every pixel would come out garbled)");
    }
    info.class_weights = floats("class_weights");
    if (!info.class_weights.empty() && int(info.class_weights.size()) != info.classes)
        throw DataError("segnet: checkpoint '" + file + "': " + std::to_string(info.class_weights.size()) +
                        " class weights for " + std::to_string(info.classes) + " classes");
    static const char* known[] = {"format", "model", "classes", "ignore_label", "epoch", "batch", "seed",
                                  "normalization_mean", "normalization_std", "normalization_scale", "class_weights"};
    for (const auto& [k, v] : meta)
        if (std::find(std::begin(known), std::end(known), k) == std::end(known)) info.extra[k] = v;
    return info;
}

/// A number a training run stored in a checkpoint's extras (epoch_loss_sum, best_value, ...),
/// or `fallback` when the key is absent. Throws DataError naming the file and the key unless the
/// whole text is one finite number.
inline double checkpoint_extra_number(const CheckpointInfo& info, const std::string& key, double fallback,
                                      const std::string& file) {
    const auto it = info.extra.find(key);
    if (it == info.extra.end()) return fallback;
    double v = 0;
    const char* b = it->second.data();
    const auto [p, ec] = std::from_chars(b, b + it->second.size(), v);
    if (ec != std::errc() || p != b + it->second.size() || !std::isfinite(v))
        throw DataError("segnet: checkpoint '" + shortened(file) + "': metadata '" + key + "' is not a finite number ('" +
                        shortened(it->second, 60) + "')");
    return v;
}

inline CheckpointInfo read_checkpoint_info(const std::filesystem::path& path) {
    return checkpoint_info_from(SafetensorsFile::load(path));
}

/// Writes model state (+ optimizer state when given) atomically: an interrupted write leaves
/// the previous file intact. Throws NonFiniteTensor, writing nothing, when a tensor holds NaN
/// or Inf: such a file would be refused by load_checkpoint, so it must never replace one that loads.
template <class M>
void save_checkpoint(const std::filesystem::path& path, M& model, const CheckpointInfo& info,
                     const Optimizer* optimizer = nullptr) {
    using namespace checkpoint_detail;
    std::vector<SafetensorsEntry> entries;
    const auto state = model.state();
    std::vector<std::vector<float>> staged;  // host copies of device tensors (the writer reads host memory)
    staged.reserve(state.size());
    for (const auto& p : state) {
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(*p.value)>, Tensor<Cpu>>) {
            entries.push_back({p.name, shape_of(p.shape), p.value->data()});
        } else {
            staged.push_back(backend::download(*p.value));
            entries.push_back({p.name, shape_of(p.shape), staged.back().data()});
        }
    }
    std::vector<std::pair<std::string, Tensor<Cpu>>> opt;
    if (optimizer) opt = to_named_tensors(optimizer->state());
    for (auto& [name, t] : opt) entries.push_back({"optimizer." + name, shape_of(t.extents()), t.data()});
    for (const SafetensorsEntry& e : entries) {
        std::int64_t count = 1;
        for (std::int64_t d : e.shape) count *= d;
        if (!std::all_of(e.data, e.data + count, [](float v) { return std::isfinite(v); }))
            throw NonFiniteTensor("segnet: not writing '" + shortened(path.string()) + "': tensor '" + e.name +
                                  "' holds NaN or Inf", e.name);
    }
    std::map<std::string, std::string> meta = info.extra;
    meta["format"] = checkpoint_format;
    meta["model"] = info.model;
    meta["classes"] = std::to_string(info.classes);
    meta["ignore_label"] = std::to_string(info.ignore_label);
    meta["epoch"] = std::to_string(info.epoch);
    meta["batch"] = std::to_string(info.batch);
    meta["seed"] = std::to_string(info.seed);
    meta["normalization_mean"] = join(info.normalization.mean.data(), 3);
    meta["normalization_std"] = join(info.normalization.stddev.data(), 3);
    meta["normalization_scale"] = join(&info.normalization.scale, 1);
    if (!info.class_weights.empty()) meta["class_weights"] = join(info.class_weights.data(), info.class_weights.size());
    write_safetensors(path, entries, meta);
}

/// Loads a checkpoint into `model` (and `optimizer` when given and the file has its state).
/// `expected_model` (e.g. M's registry name) is checked against the file's metadata when not
/// empty. Returns the metadata. Throws DataError naming the file on any mismatch.
template <class M>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, M& model, std::string_view expected_model = {},
                               Optimizer* optimizer = nullptr) {
    using namespace checkpoint_detail;
    const SafetensorsFile f = SafetensorsFile::load(path);
    CheckpointInfo info = checkpoint_info_from(f);
    const std::string file = f.source();
    if (!expected_model.empty() && info.model != expected_model)
        throw DataError("segnet: checkpoint '" + file + "' holds model '" + info.model + "', not '" +
                        std::string(expected_model) + "'");
    // Read everything first, so that a bad file leaves the model untouched.
    auto state = model.state();
    std::vector<std::vector<float>> values;
    values.reserve(state.size());
    for (const auto& p : state) {
        if (!f.contains(p.name))
            throw DataError("segnet: checkpoint '" + file + "' has no tensor '" + p.name + "' (is it a checkpoint of " +
                            "another model? it says '" + info.model + "')");
        values.push_back(f.read(p.name, shape_of(p.shape)));
        for (float v : values.back())
            if (!std::isfinite(v))
                throw DataError("segnet: checkpoint '" + file + "': tensor '" + p.name + "' holds NaN or Inf");
        // A variance below zero makes batch norm divide by the root of a negative number.
        if (p.name.ends_with("running_var") &&
            std::any_of(values.back().begin(), values.back().end(), [](float v) { return v < 0.f; }))
            throw DataError("segnet: checkpoint '" + file + "': tensor '" + p.name + "' holds a negative variance");
    }
    std::optional<OptimizerState> opt_state;
    if (optimizer) {
        std::vector<std::pair<std::string, Tensor<Cpu>>> tensors;
        for (const auto& t : f.tensors()) {
            if (t.name.rfind("optimizer.", 0) != 0) continue;
            if (t.shape.size() != 4)
                throw DataError("segnet: checkpoint '" + file + "': optimizer tensor '" + t.name + "' is not 4-D");
            Tensor<Cpu> v(Extents{int(t.shape[0]), int(t.shape[1]), int(t.shape[2]), int(t.shape[3])});
            f.read_into(t.name, v.span(), t.shape);
            if (!std::all_of(v.span().begin(), v.span().end(), [](float x) { return std::isfinite(x); }))
                throw DataError("segnet: checkpoint '" + file + "': tensor '" + t.name + "' holds NaN or Inf");
            tensors.emplace_back(t.name.substr(10), std::move(v));
        }
        if (!tensors.empty()) {
            try {
                opt_state = from_named_tensors(std::move(tensors));
            } catch (const std::invalid_argument& e) {
                throw DataError("segnet: checkpoint '" + file + "': " + e.what());
            }
        }
    }
    if (optimizer && opt_state) {
        try {
            optimizer->load_state(*opt_state);
        } catch (const std::invalid_argument& e) {
            throw DataError("segnet: checkpoint '" + file + "': " + e.what());
        }
    }
    for (std::size_t i = 0; i < state.size(); ++i) backend::upload(values[i], *state[i].value);
    return info;
}

}  // namespace segnet
