// segnet/data/dataset.hpp: segmentation samples from a list file, augmentation, batch loading.
//
//   segnet::SegmentationDataset train = segnet::SegmentationDataset::from_list_file("camvid/train.txt");
//   segnet::BatchLoader loader(train, {.batch_size = 4, .seed = 7, .augmentation = {.horizontal_flip = true}});
//   while (std::optional<segnet::Batch> b = loader.next()) model.train_step(b->images, b->labels);
//
// A sample is an RGB image and a label map of the same size. Images come out as float
// {1, 3, H, W} tensors normalised per channel as (x/255 - mean)/std; labels as uint8 {1, 1, H, W}
// class indices, with `ignore_label` (CamVid: 11, void) allowed and passed through.
// Every sample is checked when it is loaded (or all of them at construction, if asked): files
// exist and decode, image and label sizes agree, label values are classes or ignore. Messages
// name the list line and the file ("segnet: train.txt:4: label 'b.png' has value 14 at row 3,
// column 7; expected 0..10 or 11 (ignore)").
//
// Reproducibility: an epoch's order depends only on (seed, epoch), and each sample's
// augmentation only on (seed, epoch, position in the epoch). So the loader's whole random state
// is LoaderPosition {epoch, batch} plus the seed: save it with a checkpoint and training resumes
// with exactly the batches it would have seen, whatever the prefetch depth or thread timing.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "segnet/core/bilinear.hpp"
#include "segnet/core/random.hpp"
#include "segnet/core/tensor.hpp"
#include "segnet/data/list_file.hpp"
#include "segnet/io/image.hpp"

namespace segnet {

// ---------------------------------------------------------------------------------------------
// Normalisation

/// Input normalisation: x -> (x * scale - mean[c]) / stddev[c], with x the 0..255 pixel value.
struct Normalization {
    std::array<float, 3> mean{0.f, 0.f, 0.f};
    std::array<float, 3> stddev{1.f, 1.f, 1.f};
    float scale = 1.f / 255.f;

    /// No per-channel normalisation: pixels scaled to [0, 1].
    static Normalization none() { return {}; }
    /// Pixels kept as 0..255 (the original Caffe SegNet input, which normalises with LRN instead).
    static Normalization raw() { return {{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}, 1.f}; }
    static Normalization from(std::array<float, 3> mean, std::array<float, 3> stddev) {
        return {mean, stddev, 1.f / 255.f};
    }
    float apply(float pixel, int channel) const { return (pixel * scale - mean[channel]) / stddev[channel]; }

    /// Why these values would garble every pixel (a std that is not a positive finite number, a
    /// mean that is not finite, a scale that is not a positive finite number), or "" when usable.
    std::string problem() const {
        for (int c = 0; c < 3; ++c) {
            if (!std::isfinite(mean[std::size_t(c)])) return "mean " + std::to_string(c) + " is not a finite number";
            if (!(std::isfinite(stddev[std::size_t(c)]) && stddev[std::size_t(c)] > 0.f))
                return "std " + std::to_string(c) + " is " + std::to_string(stddev[std::size_t(c)]) + ", not a positive number";
        }
        if (!(std::isfinite(scale) && scale > 0.f)) return "scale " + std::to_string(scale) + " is not a positive number";
        return {};
    }
};

// ---------------------------------------------------------------------------------------------
// Geometry on tensors (images float {1, C, H, W}, labels uint8 {1, 1, H, W})

/// Mirrors every image of the view left to right, in place.
template <class T>
void flip_horizontal(TensorView<Cpu, T> t) {
    for (int n = 0; n < t.n(); ++n)
        for (int c = 0; c < t.c(); ++c)
            for (int y = 0; y < t.h(); ++y) {
                T* row = &t(n, c, y, 0);
                std::reverse(row, row + t.w());
            }
}

/// Bilinear resize with pixel centres aligned (PyTorch align_corners=false, OpenCV INTER_LINEAR).
inline Tensor<Cpu> resize_bilinear(TensorView<Cpu, const float> in, int height, int width) {
    Tensor<Cpu> out({in.n(), in.c(), height, width});
    // Serial: the batch loader's thread calls it while the model's forward holds the thread pool.
    const auto ty = bilinear_taps(in.h(), height), tx = bilinear_taps(in.w(), width);
    for (int n = 0; n < in.n(); ++n)
        for (int c = 0; c < in.c(); ++c)
            for (int y = 0; y < height; ++y) {
                const BilinearTap& a = ty[std::size_t(y)];
                const float* r0 = &in(n, c, a.i0, 0);
                const float* r1 = &in(n, c, a.i1, 0);
                for (int x = 0; x < width; ++x) {
                    const BilinearTap& b = tx[std::size_t(x)];
                    const float top = r0[b.i0] + (r0[b.i1] - r0[b.i0]) * b.w1;
                    const float bottom = r1[b.i0] + (r1[b.i1] - r1[b.i0]) * b.w1;
                    out(n, c, y, x) = top + (bottom - top) * a.w1;
                }
            }
    return out;
}

/// Nearest-neighbour resize (pixel-centre exact), for labels: never invents a class value.
template <class T>
Tensor<Cpu, T> resize_nearest(TensorView<Cpu, const T> in, int height, int width) {
    Tensor<Cpu, T> out({in.n(), in.c(), height, width});
    auto src = [](int o, int out_size, int in_size) {
        return std::min(int((std::int64_t(o) * 2 + 1) * in_size / (std::int64_t(out_size) * 2)), in_size - 1);
    };
    for (int n = 0; n < in.n(); ++n)
        for (int c = 0; c < in.c(); ++c)
            for (int y = 0; y < height; ++y) {
                const int sy = src(y, height, in.h());
                for (int x = 0; x < width; ++x) out(n, c, y, x) = in(n, c, sy, src(x, width, in.w()));
            }
    return out;
}

/// The window [top, top + height) x [left, left + width) of `in`; parts outside are `fill`.
/// Negative top/left place the image inside a larger canvas (padding).
template <class T>
Tensor<Cpu, T> crop_or_pad(TensorView<Cpu, const T> in, int top, int left, int height, int width, T fill) {
    Tensor<Cpu, T> out({in.n(), in.c(), height, width});
    out.fill(fill);
    const int y0 = std::max(0, -top), y1 = std::min(height, in.h() - top);
    const int x0 = std::max(0, -left), x1 = std::min(width, in.w() - left);
    for (int n = 0; n < in.n(); ++n)
        for (int c = 0; c < in.c(); ++c)
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) out(n, c, y, x) = in(n, c, y + top, x + left);
    return out;
}

/// Training-time augmentation. Defaults do nothing.
struct Augmentation {
    bool horizontal_flip = false;  ///< flip with probability 1/2
    float min_scale = 1.f;         ///< random scale factor drawn uniformly in [min_scale, max_scale]
    float max_scale = 1.f;
    int crop_height = 0;  ///< random crop to crop_height x crop_width (0: no crop); a smaller
    int crop_width = 0;   ///< image is padded (image 0 after normalisation, label ignore)
};

/// Applies `aug` to a normalised image and its label. The draws happen in a fixed order (flip,
/// scale, crop top, crop left), and only for enabled steps, so a seed gives the same result.
inline void augment(Tensor<Cpu>& image, Tensor<Cpu, std::uint8_t>& label, const Augmentation& aug, Rng& rng,
                    std::uint8_t ignore_label) {
    if (aug.horizontal_flip && rng.uniform() < 0.5f) {
        flip_horizontal(image.view());
        flip_horizontal(label.view());
    }
    if (aug.min_scale != 1.f || aug.max_scale != 1.f) {
        const float s = aug.min_scale == aug.max_scale ? aug.min_scale : rng.uniform(aug.min_scale, aug.max_scale);
        const int h = std::max(1, int(std::lround(float(image.h()) * s)));
        const int w = std::max(1, int(std::lround(float(image.w()) * s)));
        if (h != image.h() || w != image.w()) {
            image = resize_bilinear(image, h, w);
            label = resize_nearest<std::uint8_t>(label, h, w);
        }
    }
    if (aug.crop_height > 0 && aug.crop_width > 0) {
        // Larger image: random window inside it. Smaller: image at a random place in the canvas.
        auto offset = [&](int size, int crop) {
            const int slack = size - crop;
            const int r = int(rng.below(std::uint64_t(std::abs(slack)) + 1));
            return slack >= 0 ? r : -r;
        };
        const int top = offset(image.h(), aug.crop_height);
        const int left = offset(image.w(), aug.crop_width);
        image = crop_or_pad<float>(image, top, left, aug.crop_height, aug.crop_width, 0.f);
        label = crop_or_pad<std::uint8_t>(label, top, left, aug.crop_height, aug.crop_width, ignore_label);
    }
}

// ---------------------------------------------------------------------------------------------
// The dataset

/// A sample as stored: 8-bit RGB image (HWC) and its {1, 1, H, W} label map.
struct RawSample {
    ImageU8 image;
    Tensor<Cpu, std::uint8_t> label;
};

/// A sample ready for a model: normalised float {1, 3, H, W} image and uint8 {1, 1, H, W} label.
struct Sample {
    Tensor<Cpu> image;
    Tensor<Cpu, std::uint8_t> label;
};

enum class Validation {
    on_load,   ///< files must exist at construction; decoding and contents checked per load
    up_front,  ///< every sample decoded and checked at construction (slower start, early errors)
};

struct DatasetOptions {
    int classes = 11;       ///< valid labels are 0 .. classes-1
    int ignore_label = 11;  ///< also allowed (void); used to pad labels. 0..255
    Normalization normalization = Normalization::none();
    ImageLimits limits{};
    Validation validation = Validation::on_load;
};

class SegmentationDataset {
public:
    /// Samples named by a parsed list file.
    explicit SegmentationDataset(SampleList list, DatasetOptions options = {})
        : options_(std::move(options)), list_(std::move(list)) {
        check_options();
        check_list_files_exist(list_);
        if (options_.validation == Validation::up_front) validate_all();
    }
    /// Samples held in memory (synthetic data, tests). `name` prefixes messages.
    explicit SegmentationDataset(std::vector<RawSample> samples, DatasetOptions options = {},
                                 std::string name = "in-memory dataset")
        : options_(std::move(options)), memory_(std::move(samples)) {
        list_.source = std::move(name);
        check_options();
        if (options_.validation == Validation::up_front) validate_all();
    }
    static SegmentationDataset from_list_file(const std::filesystem::path& list_file, DatasetOptions options = {},
                                              const std::optional<std::filesystem::path>& root = std::nullopt) {
        return SegmentationDataset(read_list_file(list_file, root), std::move(options));
    }

    std::size_t size() const { return in_memory() ? memory_.size() : list_.size(); }
    bool in_memory() const { return list_.samples.empty() && !memory_.empty(); }
    const DatasetOptions& options() const { return options_; }
    const SampleList& list() const { return list_; }
    void set_normalization(const Normalization& n) { options_.normalization = n; }

    /// "train.txt:17" for list samples, "in-memory dataset: sample 3" otherwise.
    std::string where(std::size_t i) const {
        return in_memory() ? list_.source + ": sample " + std::to_string(i) : list_.where(list_.samples.at(i));
    }

    /// Loads and checks sample i without normalisation. Thread-safe (const, no shared state).
    RawSample load_raw(std::size_t i) const {
        if (i >= size())
            throw std::out_of_range("segnet::SegmentationDataset: sample " + std::to_string(i) + " of " +
                                    std::to_string(size()));
        RawSample s;
        std::string image_name = "image", label_name = "label";
        if (in_memory()) {
            s.image = memory_[i].image;
            s.label = memory_[i].label;
        } else {
            const ListEntry& e = list_.samples[i];
            image_name = "image " + io_detail::quoted(e.image);
            label_name = "label " + io_detail::quoted(e.label);
            try {
                s.image = load_rgb(e.image, options_.limits);
                s.label = load_label(e.label, options_.limits);
            } catch (const DataError& err) {
                // Add the list line: the file alone does not say which list to fix.
                std::string msg = err.what();
                const std::string prefix = "segnet: ";
                if (msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
                throw DataError("segnet: " + where(i) + ": " + msg);
            }
        }
        check_sample(s, i, image_name, label_name);
        return s;
    }

    /// Sample i, normalised, at its own size, or resized to height x width (evaluation).
    Sample load(std::size_t i, int height = 0, int width = 0) const {
        Sample s = normalise(load_raw(i));
        if (height > 0 && width > 0 && (height != s.image.h() || width != s.image.w())) {
            s.image = resize_bilinear(s.image, height, width);
            s.label = resize_nearest<std::uint8_t>(s.label, height, width);
        }
        return s;
    }

    /// Sample i, normalised and augmented with draws from `rng`.
    Sample load_augmented(std::size_t i, const Augmentation& aug, Rng& rng) const {
        Sample s = normalise(load_raw(i));
        augment(s.image, s.label, aug, rng, std::uint8_t(options_.ignore_label));
        return s;
    }

    /// Loads and checks every sample; throws DataError for the first bad one.
    void validate_all() const {
        for (std::size_t i = 0; i < size(); ++i) (void)load_raw(i);
    }

    Sample normalise(const RawSample& raw) const {
        Sample s;
        s.image = Tensor<Cpu>({1, 3, raw.image.height, raw.image.width});
        const std::int64_t plane = std::int64_t(raw.image.height) * raw.image.width;
        const Normalization& nz = options_.normalization;
        for (int c = 0; c < 3; ++c) {
            float* dst = s.image.data() + c * plane;
            for (std::int64_t p = 0; p < plane; ++p) dst[p] = nz.apply(float(raw.image.pixels[std::size_t(p * 3 + c)]), c);
        }
        s.label = raw.label;
        return s;
    }

private:
    void check_options() const {
        if (options_.classes < 1 || options_.classes > 256)
            throw std::invalid_argument("segnet::DatasetOptions: classes must be 1..256, got " +
                                        std::to_string(options_.classes));
        if (options_.ignore_label < 0 || options_.ignore_label > 255)
            throw std::invalid_argument("segnet::DatasetOptions: ignore_label must be 0..255, got " +
                                        std::to_string(options_.ignore_label));
        if (const std::string problem = options_.normalization.problem(); !problem.empty())
            throw std::invalid_argument("segnet::Normalization: " + problem);
    }

    void check_sample(const RawSample& s, std::size_t i, const std::string& image_name,
                      const std::string& label_name) const {
        const std::string head = "segnet: " + where(i) + ": ";
        if (s.image.channels != 3 || s.image.pixels.size() != std::size_t(s.image.width) * s.image.height * 3)
            throw DataError(head + image_name + " is not a 3-channel RGB image");
        if (s.label.n() != 1 || s.label.c() != 1)
            throw DataError(head + label_name + " must be 1x1xHxW, got " + to_string(s.label.extents()));
        if (s.image.width != s.label.w() || s.image.height != s.label.h())
            throw DataError(head + image_name + " is " + std::to_string(s.image.width) + "x" +
                            std::to_string(s.image.height) + " but " + label_name + " is " +
                            std::to_string(s.label.w()) + "x" + std::to_string(s.label.h()) + " (width x height)");
        const std::uint8_t* px = s.label.data();
        for (std::int64_t p = 0; p < s.label.size(); ++p) {
            const int v = px[p];
            if (v >= options_.classes && v != options_.ignore_label)
                throw DataError(head + label_name + " has value " + std::to_string(v) + " at row " +
                                std::to_string(p / s.label.w()) + ", column " + std::to_string(p % s.label.w()) +
                                "; expected 0.." + std::to_string(options_.classes - 1) + " or " +
                                std::to_string(options_.ignore_label) + " (ignore)");
        }
    }

    DatasetOptions options_;
    SampleList list_;
    std::vector<RawSample> memory_;
};

/// Per-channel mean and standard deviation of x/255 over every pixel of every image (use the
/// training split only, then pass the result to the validation and test sets too).
inline Normalization compute_normalization(const SegmentationDataset& ds) {
    std::array<double, 3> sum{}, sum_sq{};
    double count = 0;
    for (std::size_t i = 0; i < ds.size(); ++i) {
        const RawSample s = ds.load_raw(i);
        const std::size_t pixels = std::size_t(s.image.width) * s.image.height;
        for (std::size_t p = 0; p < pixels; ++p)
            for (int c = 0; c < 3; ++c) {
                const double x = s.image.pixels[p * 3 + std::size_t(c)] / 255.0;
                sum[std::size_t(c)] += x;
                sum_sq[std::size_t(c)] += x * x;
            }
        count += double(pixels);
    }
    Normalization n;
    if (count == 0) return n;
    for (std::size_t c = 0; c < 3; ++c) {
        const double mean = sum[c] / count;
        const double var = std::max(0.0, sum_sq[c] / count - mean * mean);
        n.mean[c] = float(mean);
        // A constant channel would divide by zero; leave it unscaled instead.
        n.stddev[c] = var > 1e-12 ? float(std::sqrt(var)) : 1.f;
    }
    return n;
}

// ---------------------------------------------------------------------------------------------
// Batches

/// A mini-batch: images float {N, 3, H, W}, labels uint8 {N, 1, H, W}.
struct Batch {
    Tensor<Cpu> images;
    Tensor<Cpu, std::uint8_t> labels;
    std::vector<std::size_t> indices;  ///< dataset index of each image
    int epoch = 0;
    std::size_t batch = 0;  ///< index of this batch within its epoch
};

struct LoaderOptions {
    int batch_size = 4;
    bool shuffle = true;
    bool drop_last = false;  ///< drop a final batch smaller than batch_size
    std::uint64_t seed = 0;
    Augmentation augmentation{};  ///< training augmentation (default: none)
    int resize_height = 0;  ///< resize every sample first (evaluation "--size"); 0 keeps its size
    int resize_width = 0;
    int prefetch = 2;  ///< batches prepared ahead of the consumer
    /// Data-parallel training: this process's share of every batch, the positions shard,
    /// shard + shards, ... of it (batch_size is the whole batch's). A share may be empty (a last
    /// batch smaller than `shards`): next() then returns a batch of no images.
    int shard = 0, shards = 1;
};

/// Where a loader continues: the next batch next() will return. With the seed, the loader's
/// entire random state.
struct LoaderPosition {
    int epoch = 0;
    std::size_t batch = 0;
    bool operator==(const LoaderPosition&) const = default;
};

namespace loader_detail {
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
    std::uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace loader_detail

/// Prepares batches on a background thread while the model computes.
///
/// next() returns the batches of the current epoch, then std::nullopt once at its end, then the
/// next epoch's batches (reshuffled). The dataset must outlive the loader. Destroying the loader
/// at any point stops and joins the worker. An exception in the worker (a corrupt file) is
/// rethrown by next() after the batches completed before it, and again by every later call.
class BatchLoader {
public:
    BatchLoader(const SegmentationDataset& dataset, LoaderOptions options, LoaderPosition start = {})
        : dataset_(dataset), options_(std::move(options)), start_(start), position_(start) {
        if (options_.batch_size < 1)
            throw std::invalid_argument("segnet::BatchLoader: batch_size must be >= 1, got " +
                                        std::to_string(options_.batch_size));
        if (options_.shards < 1 || options_.shard < 0 || options_.shard >= options_.shards)
            throw std::invalid_argument("segnet::BatchLoader: shard " + std::to_string(options_.shard) + " of " +
                                        std::to_string(options_.shards) + " does not exist");
        options_.prefetch = std::max(1, options_.prefetch);
        worker_ = std::thread([this] { run(); });
    }
    ~BatchLoader() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        changed_.notify_all();
        worker_.join();
    }
    BatchLoader(const BatchLoader&) = delete;
    BatchLoader& operator=(const BatchLoader&) = delete;

    /// The next batch of the current epoch, or std::nullopt at its end.
    std::optional<Batch> next() {
        std::unique_lock<std::mutex> lock(mutex_);
        // Batches finished before a failure are still delivered, so where an error surfaces
        // does not depend on thread timing.
        changed_.wait(lock, [&] { return !queue_.empty() || error_; });
        if (queue_.empty()) std::rethrow_exception(error_);
        Item item = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        changed_.notify_all();
        if (!item.batch) {
            position_ = {position_.epoch + 1, 0};
            return std::nullopt;
        }
        position_ = {item.batch->epoch, item.batch->batch + 1};
        return std::move(item.batch);
    }

    /// Where the next call continues; store it (and the seed) to resume exactly.
    LoaderPosition position() const { return position_; }

    std::size_t batches_per_epoch() const { return batches_per_epoch(dataset_.size(), options_); }
    static std::size_t batches_per_epoch(std::size_t samples, const LoaderOptions& o) {
        const std::size_t b = std::size_t(o.batch_size);
        return o.drop_last ? samples / b : (samples + b - 1) / b;
    }

    /// Dataset indices in the order epoch `epoch` visits them: a pure function of its arguments.
    static std::vector<std::size_t> epoch_order(std::size_t samples, std::uint64_t seed, int epoch, bool shuffle) {
        std::vector<std::size_t> order(samples);
        std::iota(order.begin(), order.end(), std::size_t(0));
        if (!shuffle) return order;
        Rng rng(loader_detail::mix(seed, std::uint64_t(std::int64_t(epoch))));
        for (std::size_t i = samples; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
        return order;
    }

    /// The generator that augments the sample at `position` of epoch `epoch`.
    static Rng sample_rng(std::uint64_t seed, int epoch, std::size_t position) {
        return Rng(loader_detail::mix(loader_detail::mix(~seed, std::uint64_t(std::int64_t(epoch))), position));
    }

private:
    struct Item {
        std::optional<Batch> batch;  // empty: end of epoch
    };

    void run() {
        try {
            LoaderPosition at = start_;
            const std::size_t per_epoch = batches_per_epoch();
            for (;;) {
                const auto order = epoch_order(dataset_.size(), options_.seed, at.epoch, options_.shuffle);
                for (std::size_t b = at.batch; b < per_epoch; ++b) {
                    std::optional<Batch> batch = make_batch(order, at.epoch, b);
                    if (!batch || !push(Item{std::move(batch)})) return;
                }
                if (!push(Item{})) return;
                at = {at.epoch + 1, 0};
            }
        } catch (...) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                error_ = std::current_exception();
            }
            changed_.notify_all();
        }
    }

    /// Waits for room; false when the loader is shutting down.
    bool push(Item item) {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || int(queue_.size()) < options_.prefetch; });
        if (stop_) return false;
        queue_.push_back(std::move(item));
        lock.unlock();
        changed_.notify_all();
        return true;
    }

    bool stopping() {
        std::lock_guard<std::mutex> lock(mutex_);
        return stop_;
    }

    std::optional<Batch> make_batch(const std::vector<std::size_t>& order, int epoch, std::size_t b) {
        const std::size_t first = b * std::size_t(options_.batch_size);
        const std::size_t whole = std::min(std::size_t(options_.batch_size), order.size() - first);
        const std::size_t shard = std::size_t(options_.shard), shards = std::size_t(options_.shards);
        const std::size_t count = whole > shard ? (whole - shard + shards - 1) / shards : 0;
        Batch batch;
        batch.epoch = epoch;
        batch.batch = b;
        for (std::size_t k = 0; k < count; ++k) {
            if (stopping()) return std::nullopt;  // do not keep decoding for a consumer that left
            const std::size_t position = first + shard + k * shards;
            const std::size_t index = order[position];
            Sample s = dataset_.load(index, options_.resize_height, options_.resize_width);
            Rng rng = sample_rng(options_.seed, epoch, position);
            augment(s.image, s.label, options_.augmentation, rng, std::uint8_t(dataset_.options().ignore_label));
            if (k == 0) {
                batch.images.resize({int(count), s.image.c(), s.image.h(), s.image.w()});
                batch.labels.resize({int(count), 1, s.label.h(), s.label.w()});
            } else if (s.image.h() != batch.images.h() || s.image.w() != batch.images.w()) {
                throw DataError("segnet: " + dataset_.where(index) + ": image is " + std::to_string(s.image.w()) +
                                "x" + std::to_string(s.image.h()) + " but earlier images in its batch are " +
                                std::to_string(batch.images.w()) + "x" + std::to_string(batch.images.h()) +
                                "; set a crop or resize size so that batches have one size");
            }
            std::copy_n(s.image.data(), s.image.size(), batch.images.image(int(k)).data());
            std::copy_n(s.label.data(), s.label.size(), batch.labels.image(int(k)).data());
            batch.indices.push_back(index);
        }
        return batch;
    }

    const SegmentationDataset& dataset_;
    LoaderOptions options_;
    const LoaderPosition start_;  // worker side
    LoaderPosition position_;     // consumer side
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Item> queue_;
    std::exception_ptr error_;
    bool stop_ = false;
    std::thread worker_;
};

}  // namespace segnet
