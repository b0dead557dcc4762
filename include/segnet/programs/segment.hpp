// segnet/programs/segment.hpp: the segnet-segment program as a function, segment_main(argc, argv),
// so that a program of your own (with your networks registered) is the same program.
// segnet-segment: segments images with a trained checkpoint: an 8-bit label PNG per input
// (same file name), optionally a colour mask and an overlay.
//
//   segnet-segment --weights models/segnet-basic-camvid.safetensors --input data/camvid/val --out out --color --overlay
#pragma once

#include "segnet/train/checkpoint.hpp"
#include "segnet/programs/cli.hpp"
#include "segnet/programs/crf.hpp"
#include "segnet/programs/preflight.hpp"
#include "segnet/io/palette.hpp"
#include "segnet/models/registry.hpp"
#include "segnet/segnet.hpp"
#include "segnet/train/evaluate.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

namespace segnet::programs {

/// The {1, 3, H, W} network input of an RGB image: normalised as the checkpoint says, resized to
/// `size` (HxW) when given.
inline Tensor<Cpu> network_input(const Normalization& normalization, const ImageU8& rgb,
                                 const std::optional<std::pair<int, int>>& size) {
    Tensor<Cpu> x = to_tensor(rgb);
    for (int c = 0; c < 3; ++c)
        for (std::int64_t i = 0; i < x.extents().plane(); ++i) {
            float& v = x.data()[c * x.extents().plane() + i];
            v = normalization.apply(v, c);
        }
    if (size) x = resize_bilinear(x.view(), size->first, size->second);
    return x;
}

/// The {1, 1, H, W} label map of one RGB image: normalised as the checkpoint says, run at
/// `size` (HxW) when given and the labels resized back to the image; with `crf`, the dense CRF's
/// labels of the softmax at the network's size. segnet-segment and segnet-serve both call it, so
/// that their label maps agree pixel for pixel.
template <class Device>
Tensor<Cpu, std::uint8_t> segment_image(AnyModel<Device>& model, backend::Staging<Device>& staging,
                                        const Normalization& normalization, const ImageU8& rgb,
                                        const std::optional<std::pair<int, int>>& size,
                                        const std::optional<refine::DenseCrfOptions>& crf = std::nullopt) {
    const Tensor<Cpu> x = network_input(normalization, rgb, size);
    const Tensor<Device>& logits = model.forward(staging.images(x), Mode::eval);
    Tensor<Cpu, std::uint8_t> labels = crf ? crf_labels(softmax_channels(backend::to_host(logits)), x, normalization, *crf)
                                           : backend::predict_labels(logits);
    if (size) labels = resize_nearest<std::uint8_t>(labels.view(), rgb.height, rgb.width);
    return labels;
}

/// Bayesian SegNet's answer for one image (monte_carlo_predict, CPU): the labels of the mean
/// softmax of `samples` dropout samples and the predictive entropy divided by log K (0: every
/// sample sure of one class, 1: the mean is uniform), both at the image's size; with `crf`, the
/// labels are the dense CRF's of the mean.
struct SampledSegmentation {
    Tensor<Cpu, std::uint8_t> labels;
    Tensor<Cpu> uncertainty;
};
inline SampledSegmentation segment_image_sampled(AnyModel<Cpu>& model, const Normalization& normalization,
                                                 const ImageU8& rgb, const std::optional<std::pair<int, int>>& size,
                                                 int samples,
                                                 const std::optional<refine::DenseCrfOptions>& crf = std::nullopt) {
    // Batches of at most 10 copies (the reference's inference batch), so that memory stays near a
    // batch-10 forward however many samples are asked for.
    const Tensor<Cpu> x = network_input(normalization, rgb, size);
    const MonteCarloPrediction p = monte_carlo_predict(model, x, samples, 10);
    SampledSegmentation out{crf ? crf_labels(p.mean, x, normalization, *crf) : backend::predict_labels(p.mean), p.entropy};
    const float log_classes = std::log(float(std::max(2, model.classes())));
    for (float& v : out.uncertainty.span()) v /= log_classes;
    if (size) {
        out.labels = resize_nearest<std::uint8_t>(out.labels.view(), rgb.height, rgb.width);
        out.uncertainty = resize_bilinear(out.uncertainty.view(), rgb.height, rgb.width);
    }
    return out;
}

namespace segment_detail {

namespace fs = std::filesystem;

inline constexpr const char* usage = R"(usage: segnet-segment --weights CKPT --input FILE|DIR|LIST --out DIR [options]

Writes DIR/<stem>.png (8-bit labels, the input's name with .png) for every input image.
Refused up front: an --out that is the input folder, two inputs that would write the same
output (a.png and a.jpg; s1/x.png and s2/x.png), an output that is an input, an image the
network cannot take or that needs more memory than is available.
  --weights CKPT     a checkpoint written by segnet-train (the model comes from it)
  --input PATH       an image (.png/.jpg), a folder of images, or a list file (first column
                     used: "image" or "image label" per line)
  --out DIR          output folder (created)
  --color            also write DIR/<stem>_color.png, the labels in the palette's colours
  --overlay          also write DIR/<stem>_overlay.png, the colours blended on the image
  --palette FILE     "R G B" per class (default: CamVid's for 11 classes)
  --size HxW         run the network at this size and resize the labels back (default: image size)
  --threads T        CPU threads (default: all)
  --device cpu|cuda  where to run the network (default cpu; cuda: segnet-segment-cuda, -DSEGNET_CUDA=ON)
  --precision P      fp32 | bf16 | auto (default auto: bf16 where it beats fp32: AMX, AMD's AVX512-BF16);
                     bf16 rounds the convolutions' inputs and weights to bfloat16, accumulates in FP32
  --max-image-pixels N  refuse larger images before decoding them (default 16000000)
  --max-memory N     memory the run may use, e.g. 4G (default: what the machine has available)
  --samples T        Bayesian SegNet (a model with dropout, e.g. bayesian-segnet-basic): label
                     each pixel by the mean softmax of T dropout samples (1-1000; CPU only)
  --crf              refine the labels with the dense CRF (Kraehenbuehl and Koltun 2011) on the
                     probabilities (with --samples: their mean) and the image at the network's size
                     (about a second of CPU per 360x480 image; docs/uncertainty.md)
  --crf-iterations N mean-field iterations (0-1000; default 10)
  --crf-appearance W,THETA_XY,THETA_RGB  appearance kernel: weight, widths in pixels and colour
                     levels (default 4,121,3)
  --crf-smoothness W,THETA_XY  smoothness kernel: weight, width in pixels (default 3,3)
  --uncertainty      with --samples: also write DIR/<stem>_uncertainty.png, the predictive
                     entropy / log K in the viridis colour map (dark: sure, yellow: unsure)
)";

inline bool is_image(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

inline std::vector<fs::path> collect_inputs(const fs::path& input) {
    std::vector<fs::path> files;
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
        files = regular_files_in(input, is_image, cli::skipped_entry_warning("segnet-segment"));
        if (files.empty()) throw DataError("segnet: '" + shortened(input.string()) + "' holds no .png/.jpg images");
    } else if (is_image(input)) {
        require_regular_file(input, "load");
        files.push_back(input);
    } else {  // a list file: "image" or "image label" per line
        const SampleList list = read_list_file(input, std::nullopt, ListLabels::optional);
        for (const auto& s : list.samples) {
            require_regular_file(s.image, "load");
            files.push_back(s.image);
        }
    }
    return files;
}

/// What segnet-segment writes besides the label maps.
struct Extras {
    bool color = false, overlay = false, uncertainty = false;
};

/// The files segmenting `image` writes into `out`: the label map, then the colour mask, the
/// overlay and the uncertainty map when asked, in that order.
inline std::vector<fs::path> outputs_of(const fs::path& image, const fs::path& out, const Extras& extras) {
    const std::string stem = image.stem().string();
    std::vector<fs::path> files{out / (stem + ".png")};
    if (extras.color) files.push_back(out / (stem + "_color.png"));
    if (extras.overlay) files.push_back(out / (stem + "_overlay.png"));
    if (extras.uncertainty) files.push_back(out / (stem + "_uncertainty.png"));
    return files;
}

/// A path in one spelling per file (symlinks and "..", "." resolved), to compare paths that may not exist yet.
inline fs::path identity(const fs::path& p) {
    std::error_code ec;
    const fs::path resolved = fs::weakly_canonical(p, ec);
    return ec ? fs::absolute(p).lexically_normal() : resolved;
}

/// Refuses, before anything is written, an --out that is the input folder, two inputs whose
/// outputs share a name, and an output that would replace one of the inputs.
inline void check_outputs(const fs::path& input, const std::vector<fs::path>& files, const fs::path& out,
                          const Extras& extras) {
    std::error_code ec;
    if (fs::is_directory(input, ec) && identity(input) == identity(out))
        throw cli::UsageError("--out '" + shortened(out.string()) + "' is the input folder: the label maps would "
                              "replace the images; choose another --out");
    std::map<fs::path, fs::path> inputs, writer;  // identity -> as given
    for (const fs::path& f : files) inputs.emplace(identity(f), f);
    for (const fs::path& f : files)
        for (const fs::path& o : outputs_of(f, out, extras)) {
            const fs::path key = identity(o);
            if (const auto it = inputs.find(key); it != inputs.end())
                throw DataError("segnet: '" + shortened(o.string()) + "', an output of '" + shortened(f.string()) +
                                "', is the input '" + shortened(it->second.string()) + "'; choose another --out");
            const auto [w, fresh] = writer.emplace(key, f);
            if (!fresh)
                throw DataError("segnet: '" + shortened(w->second.string()) + "' and '" + shortened(f.string()) +
                                "' would both write '" + shortened(o.string()) +
                                "'; rename one, or segment them into separate --out folders");
        }
}

/// Loads the checkpoint into a model on Device and writes the label PNGs (and colour/overlay/
/// uncertainty) of `files`; samples > 0: Monte-Carlo dropout (CPU only, checked by run()).
template <class Device>
void segment_on(const fs::path& weights, const CheckpointInfo& info, const std::vector<fs::path>& files,
                const fs::path& out, const std::optional<std::pair<int, int>>& size, const Palette& palette,
                const Extras& extras, int samples, const std::optional<refine::DenseCrfOptions>& crf,
                const ImageLimits& limits, Precision precision) {
    const auto model_ptr = models::make_model<Device>(info.model, info.classes);
    AnyModel<Device>& model = *model_ptr;
    load_checkpoint(weights, model, info.model);
    model.set_precision(precision);
    backend::Staging<Device> staging;
    for (const fs::path& file : files) {
        const ImageU8 rgb = load_rgb(file, limits);
        const std::vector<fs::path> written = outputs_of(file, out, extras);
        Tensor<Cpu, std::uint8_t> labels;
        if constexpr (std::is_same_v<Device, Cpu>) {
            if (samples > 0) {
                const SampledSegmentation sampled = segment_image_sampled(model, info.normalization, rgb, size, samples, crf);
                labels = sampled.labels;
                if (extras.uncertainty) write_rgb_png(written.back(), viridis(sampled.uncertainty.view()));
            }
        }
        if (samples == 0) labels = segment_image(model, staging, info.normalization, rgb, size, crf);
        write_label_png(written[0], labels.view());
        if (extras.color) write_rgb_png(written[1], colorize(labels.view(), palette));
        if (extras.overlay) write_rgb_png(written[extras.color ? 2 : 1], overlay(rgb, labels.view(), palette));
        std::printf("%s -> %s\n", file.string().c_str(), written[0].string().c_str());
    }
}

inline int run(int argc, char** argv) {
    cli::Args args(argc, argv, "segnet-segment", usage);
    const fs::path weights = args.required("--weights");
    const fs::path input = args.required("--input");
    const fs::path out = args.required("--out");
    Extras extras;
    extras.color = args.flag("--color");
    extras.overlay = args.flag("--overlay");
    extras.uncertainty = args.flag("--uncertainty");
    const int samples = int(args.integer("--samples", 0, 1, max_monte_carlo_samples));
    const std::optional<refine::DenseCrfOptions> crf = cli::crf_options(args);
    const auto palette_file = args.text("--palette");
    const auto size = args.size("--size");
    if (const auto t = args.integer("--threads", 1, 1024)) segnet::set_num_threads(int(*t));
    const std::string device = args.choice("--device", "cpu", {"cpu", "cuda"});
    // auto: segmenting images is where users want the speed, and a label map barely moves in bf16.
    const std::string precision_requested = cli::precision_request(args, "auto");
    const ImageLimits limits = cli::image_limits(args);
    const cli::MemoryBudget budget = cli::memory_budget(args);
    args.finish();
    if (extras.uncertainty && samples == 0)
        throw cli::UsageError("--uncertainty: needs --samples T (the spread of T dropout samples)");
    const Precision precision = cli::resolve_precision("segnet-segment", precision_requested, device);
    cli::require_device("segnet-segment", device);

    const CheckpointInfo info = read_checkpoint_info(weights);
    cli::require_sampling(samples, device, info.model, info.classes);
    const Palette palette = palette_file ? Palette::load(*palette_file) : Palette::for_classes(info.classes);
    const std::vector<fs::path> files = collect_inputs(input);
    check_outputs(input, files, out, extras);
    if (device == "cuda") cli::require_inference_fits<cli::CudaDevice>(info.model, info.classes, files, size, limits, budget);
    else cli::require_inference_fits<Cpu>(info.model, info.classes, files, size, limits, budget);
    cli::create_output_folder(out);

    if (device == "cuda")
        segment_on<cli::CudaDevice>(weights, info, files, out, size, palette, extras, samples, crf, limits, precision);
    else segment_on<Cpu>(weights, info, files, out, size, palette, extras, samples, crf, limits, precision);
    std::printf("segmented %zu image%s with %s on %s, precision %s\n", files.size(), files.size() == 1 ? "" : "s",
                info.model.c_str(), device.c_str(), to_string(precision));
    return 0;
}

}  // namespace segment_detail

/// The segnet-segment program: parses argv, runs, returns the exit status (0 success, 1 error, 2 usage,
/// 130 interrupted); errors are printed as one line on stderr.
inline int segment_main(int argc, char** argv) {
    return cli::run_program("segnet-segment", [&] { return segment_detail::run(argc, argv); });
}

}  // namespace segnet::programs
