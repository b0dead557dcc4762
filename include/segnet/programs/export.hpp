// segnet/programs/export.hpp: the segnet-export program as a function, export_main(argc, argv).
// segnet-export: writes a checkpoint's model as an ONNX file (export/onnx.hpp) for onnxruntime,
// OpenCV's DNN module and other runtimes.
//
//   segnet-export --weights models/segnet-basic-camvid.safetensors --onnx segnet-basic.onnx
//   segnet-export --weights runs/basic/best.safetensors --onnx basic-360x480.onnx --size 360x480
#pragma once

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "segnet/export/onnx.hpp"
#include "segnet/models/registry.hpp"
#include "segnet/programs/cli.hpp"
#include "segnet/train/checkpoint.hpp"

namespace segnet::programs {

namespace export_detail {

namespace fs = std::filesystem;

inline constexpr const char* usage = R"(usage: segnet-export --weights CKPT --onnx OUT.onnx [--size HxW | --dynamic]

Writes the checkpoint's model as an ONNX file (opset 13, standard operators; docs/interop.md).
The graph takes float32 NCHW RGB images with pixel values 0..255 and applies the checkpoint's
input normalisation itself; its output "logits" is N x classes x H x W.
  --weights CKPT   a checkpoint written by segnet-train (the model comes from it)
  --onnx OUT       the file to write (replaced only by a complete file)
  --size HxW       a static graph: batch 1, this height and width, every shape a constant
  --dynamic        symbolic batch, height and width (the default)
)";

inline int run(int argc, char** argv) {
    cli::Args args(argc, argv, "segnet-export", usage);
    const fs::path weights = args.required("--weights");
    const fs::path out = args.required("--onnx");
    const auto size = args.size("--size");
    const bool dynamic = args.flag("--dynamic");
    args.finish();
    if (size && dynamic) throw cli::UsageError("--size and --dynamic exclude each other: choose one");
    std::error_code ec;
    if (fs::equivalent(weights, out, ec))
        throw cli::UsageError("--onnx '" + shortened(out.string()) + "' is the checkpoint: it would be replaced; "
                              "choose another --onnx");
    cli::check_writable_file(out);

    const CheckpointInfo info = read_checkpoint_info(weights);
    onnx::ExportOptions options{.normalization = info.normalization, .model_name = info.model};
    if (size) {
        const Analysis a = models::analyse_model(info.model, info.classes, {3, size->first, size->second});
        if (!a.ok()) throw cli::UsageError("--size " + std::to_string(size->first) + "x" + std::to_string(size->second) +
                                           ": " + describe(a.diag));
        options.height = size->first;
        options.width = size->second;
    }
    models::with_model(info.model, info.classes, [&]<class Net>() {
        if constexpr (!onnx::exportable_v<Net>) {
            throw cli::UsageError("--weights '" + shortened(weights.string()) + "': model '" + info.model +
                                  "' has no ONNX form yet (its " + std::string(onnx::first_unexportable_t<Net>::name) +
                                  " layer declares no export_as; docs/interop.md)");
        } else {
            if constexpr (!onnx::symbolic_exportable_v<Net>) {
                using StaticOnly = onnx::first_static_size_only_t<Net>;
                if (!size)
                    throw cli::UsageError("--weights '" + shortened(weights.string()) + "': model '" + info.model +
                                          "' has an ONNX form only at a static size (its " + std::string(StaticOnly::name) +
                                          "<" + std::to_string(layer_traits<StaticOnly>::export_as.kernel) +
                                          "> layer's bins depend on the map's size; docs/interop.md): give --size HxW");
            }
            Model<Net, Cpu> model;
            load_checkpoint(weights, model, info.model);
            onnx::export_model(model, out, options);
        }
    });
    std::printf("wrote %s: %s, %d classes, opset %d, input %s\n", out.string().c_str(), info.model.c_str(),
                info.classes, onnx::opset_version,
                size ? ("1x3x" + std::to_string(size->first) + "x" + std::to_string(size->second)).c_str()
                     : "batch x 3 x height x width");
    return 0;
}

}  // namespace export_detail

/// The segnet-export program: parses argv, runs, returns the exit status (0 success, 1 error,
/// 2 usage); errors are printed as one line on stderr.
inline int export_main(int argc, char** argv) {
    return cli::run_program("segnet-export", [&] { return export_detail::run(argc, argv); });
}

}  // namespace segnet::programs
