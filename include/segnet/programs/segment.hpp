// segnet/programs/segment.hpp: the segnet-segment program as a function, segment_main(argc, argv),
// so that a program of your own (with your networks registered) is the same program.
// segnet-segment: segments images with a trained checkpoint: an 8-bit label PNG per input
// (same file name), optionally a colour mask and an overlay.
//
//   segnet-segment --weights models/segnet-basic-camvid.safetensors --input data/camvid/val --out out --color --overlay
#pragma once

#include "segnet/train/checkpoint.hpp"
#include "segnet/programs/cli.hpp"
#include "segnet/io/palette.hpp"
#include "segnet/models/registry.hpp"
#include "segnet/segnet.hpp"
#include "segnet/train/evaluate.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>



namespace segnet::programs {

namespace segment_detail {

namespace fs = std::filesystem;

inline constexpr const char* usage = R"(usage: segnet-segment --weights CKPT --input FILE|DIR|LIST --out DIR [options]

Writes DIR/<name>.png (8-bit labels, same file name as the input) for every input image.
  --weights CKPT     a checkpoint written by segnet-train (the model comes from it)
  --input PATH       an image (.png/.jpg), a folder of images, or a list file (first column)
  --out DIR          output folder (created)
  --color            also write DIR/<stem>_color.png, the labels in the palette's colours
  --overlay          also write DIR/<stem>_overlay.png, the colours blended on the image
  --palette FILE     "R G B" per class (default: CamVid's for 11 classes)
  --size HxW         run the network at this size and resize the labels back (default: image size)
  --threads T        CPU threads (default: all)
  --device cpu|cuda  where to run the network (default cpu; cuda: segnet-segment-cuda, -DSEGNET_CUDA=ON)
  --max-image-pixels N  refuse larger images before decoding them (default 16000000)
)";

inline bool is_image(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

inline std::vector<fs::path> collect_inputs(const fs::path& input) {
    std::vector<fs::path> files;
    if (fs::is_directory(input)) {
        for (const auto& e : fs::directory_iterator(input))
            if (e.is_regular_file() && is_image(e.path())) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        if (files.empty()) throw DataError("segnet: '" + input.string() + "' holds no .png/.jpg images");
    } else if (!fs::exists(input)) {
        throw DataError("segnet: cannot read '" + input.string() + "': file not found");
    } else if (is_image(input)) {
        files.push_back(input);
    } else {  // a list file: "image label" per line
        const SampleList list = read_list_file(input);
        for (const auto& s : list.samples) files.push_back(s.image);
    }
    return files;
}

/// Loads the checkpoint into a model on Device and writes the label PNGs (and colour/overlay) of `files`.
template <class Device>
void segment_on(const fs::path& weights, const CheckpointInfo& info, const std::vector<fs::path>& files,
                const fs::path& out, const std::optional<std::pair<int, int>>& size, const Palette& palette, bool color,
                bool with_overlay, const ImageLimits& limits) {
    const auto model_ptr = models::make_model<Device>(info.model, info.classes);
    AnyModel<Device>& model = *model_ptr;
    load_checkpoint(weights, model, info.model);
    backend::Staging<Device> staging;
    for (const fs::path& file : files) {
        const ImageU8 rgb = load_rgb(file, limits);
        Tensor<Cpu> x = to_tensor(rgb);
        for (int c = 0; c < 3; ++c)
            for (std::int64_t i = 0; i < x.extents().plane(); ++i) {
                float& v = x.data()[c * x.extents().plane() + i];
                v = info.normalization.apply(v, c);
            }
        if (size) x = resize_bilinear(x.view(), size->first, size->second);
        Tensor<Cpu, std::uint8_t> labels =
            backend::predict_labels(model.forward(staging.images(x), Mode::eval));
        if (size) labels = resize_nearest<std::uint8_t>(labels.view(), rgb.height, rgb.width);
        const fs::path stem = out / file.stem();
        write_label_png(out / (file.stem().string() + ".png"), labels.view());
        if (color) write_rgb_png(stem.string() + "_color.png", colorize(labels.view(), palette));
        if (with_overlay) write_rgb_png(stem.string() + "_overlay.png", overlay(rgb, labels.view(), palette));
        std::printf("%s -> %s\n", file.string().c_str(), (out / (file.stem().string() + ".png")).string().c_str());
    }
}

inline int run(int argc, char** argv) {
    cli::Args args(argc, argv, "segnet-segment", usage);
    const fs::path weights = args.required("--weights");
    const fs::path input = args.required("--input");
    const fs::path out = args.required("--out");
    const bool color = args.flag("--color"), with_overlay = args.flag("--overlay");
    const auto palette_file = args.text("--palette");
    const auto size = args.size("--size");
    if (const auto t = args.integer("--threads", 1, 1024)) cpu::set_num_threads(int(*t));
    const std::string device = args.choice("--device", "cpu", {"cpu", "cuda"});
    const ImageLimits limits = cli::image_limits(args);
    args.finish();
    cli::require_device("segnet-segment", device);

    const CheckpointInfo info = read_checkpoint_info(weights);
    const Palette palette = palette_file ? Palette::load(*palette_file) : Palette::for_classes(info.classes);
    const std::vector<fs::path> files = collect_inputs(input);
    cli::create_output_folder(out);

    if (device == "cuda") segment_on<cli::CudaDevice>(weights, info, files, out, size, palette, color, with_overlay, limits);
    else segment_on<Cpu>(weights, info, files, out, size, palette, color, with_overlay, limits);
    return 0;
}

}  // namespace segment_detail

/// The segnet-segment program: parses argv, runs, returns the exit status (0 success, 1 error, 2 usage,
/// 130 interrupted); errors are printed as one line on stderr.
inline int segment_main(int argc, char** argv) {
    return cli::run_program("segnet-segment", [&] { return segment_detail::run(argc, argv); });
}

}  // namespace segnet::programs
