// segnet/programs/evaluate.hpp: the segnet-evaluate program as a function, evaluate_main(argc, argv),
// so that a program of your own (with your networks registered) is the same program.
// segnet-evaluate: the paper's metrics (G, C, mIoU, BF) and a per-class table, either for
// predicted label PNGs against ground truth, or for a checkpoint run over a list file.
//
//   segnet-evaluate --pred out/ --gt data/camvid/valannot
//   segnet-evaluate --weights models/segnet-basic-camvid.safetensors --list data/camvid/val.txt --json scores.json
#pragma once

#include "segnet/train/checkpoint.hpp"
#include "segnet/programs/cli.hpp"
#include "segnet/metrics/calibration.hpp"
#include "segnet/programs/crf.hpp"
#include "segnet/programs/preflight.hpp"
#include "segnet/models/registry.hpp"
#include "segnet/segnet.hpp"
#include "segnet/train/evaluate.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>



namespace segnet::programs {

namespace evaluate_detail {

namespace fs = std::filesystem;

inline constexpr const char* usage = R"(usage: segnet-evaluate --pred DIR --gt DIR [options]
       segnet-evaluate --weights CKPT --list LIST [--root DIR] [options]

Prints global accuracy G, class-average accuracy C, mIoU and boundary F1 (BF), all in %, and a
per-class table. Void (--ignore) pixels are excluded from G, C and mIoU; BF follows the paper's
script (void not masked) unless --mask-void-bf.
  --pred DIR         predicted 8-bit label PNGs; each is compared with the file of the same name in --gt
  --gt DIR           ground-truth label PNGs; every one needs a prediction (else an error)
  --allow-missing    score the predictions there are, when some ground-truth files have none
  --classes K        number of classes with --pred/--gt (default 11; with --weights: the checkpoint's)
  --ignore V         void label (default 11, or the checkpoint's; -1: none)
  --weights CKPT     a checkpoint written by segnet-train
  --list LIST        "image label" list file to run the checkpoint on
  --root DIR         folder the list paths are relative to (default: the list's folder)
  --size HxW         run the network at this size (metrics at that size); default: image size
  --batch B          images per forward pass (default 1)
  --samples T        Bayesian SegNet (a model with dropout): score the labels of the mean softmax
                     of T dropout samples (1-1000; CPU only; docs/uncertainty.md)
  --crf              refine the labels with the dense CRF (Kraehenbuehl and Koltun 2011) on the
                     probabilities (with --samples: their mean) and the image at the network's size
  --crf-iterations N mean-field iterations (0-1000; default 10)
  --crf-appearance W,THETA_XY,THETA_RGB  appearance kernel: weight, widths in pixels and colour
                     levels (default 4,121,3)
  --crf-smoothness W,THETA_XY  smoothness kernel: weight, width in pixels (default 3,3)
  --calibration FILE with --weights: pixel accuracy per decile of the uncertainty (predictive
                     entropy / log K of the probabilities, with --samples of their mean), printed
                     and written to FILE as JSON (docs/uncertainty.md)
  --mask-void-bf     remove void pixels from the boundary maps before BF
  --no-bf            skip BF
  --json FILE        also write the results as JSON
  --threads T        CPU threads (default: all)
  --device cpu|cuda  where to run the network (default cpu; cuda: segnet-evaluate-cuda, -DSEGNET_CUDA=ON)
  --precision P      with --weights: fp32 | bf16 | auto (bf16 where it beats fp32: AMX, AMD's AVX512-BF16);
                     default fp32, so that the metrics are reproducible on any machine
  --max-image-pixels N  refuse larger images before decoding them (default 16000000)
  --max-memory N     memory the run may use, e.g. 4G (default: what the machine has available);
                     with --weights, an image whose network run needs more is refused up front
)";

inline constexpr const char* camvid_names[] = {"Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                              "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"};

inline std::string class_name(int c, int classes) {
    return classes == 11 ? camvid_names[c] : "class " + std::to_string(c);
}

inline std::string json_number(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", v);
    return buf;
}

inline void report(const SegmentationScores& s, int classes, bool bf, const std::optional<std::string>& json) {
    std::printf("images %lld, pixels %lld (void excluded)\n", (long long)s.images, (long long)s.pixels);
    std::printf("G %.2f  C %.2f  mIoU %.2f", s.global_accuracy, s.class_accuracy, s.mean_iou);
    if (bf) std::printf("  BF %.2f", s.bf);
    std::printf("\n\n| class | accuracy | IoU |%s\n|---|---:|---:|%s\n", bf ? " BF |" : "", bf ? "---:|" : "");
    auto cell = [](double v) { return std::isfinite(v) ? json_number(v).substr(0, json_number(v).size() - 2) : std::string("-"); };
    for (int c = 0; c < classes; ++c)
        std::printf("| %s | %s | %s |%s\n", class_name(c, classes).c_str(), cell(s.per_class_accuracy[c]).c_str(),
                    cell(s.per_class_iou[c]).c_str(), bf ? (" " + cell(s.per_class_bf[c]) + " |").c_str() : "");
    if (!json) return;
    std::ostringstream j;
    j << "{\n  \"global_accuracy\": " << json_number(s.global_accuracy) << ",\n  \"class_accuracy\": "
      << json_number(s.class_accuracy) << ",\n  \"mean_iou\": " << json_number(s.mean_iou) << ",\n  \"bf\": "
      << (bf ? json_number(s.bf) : "null") << ",\n  \"images\": " << s.images << ",\n  \"pixels\": " << s.pixels
      << ",\n  \"per_class\": [\n";
    for (int c = 0; c < classes; ++c)
        j << "    {\"id\": " << c << ", \"name\": \"" << class_name(c, classes) << "\", \"accuracy\": "
          << json_number(s.per_class_accuracy[c]) << ", \"iou\": " << json_number(s.per_class_iou[c])
          << ", \"bf\": " << (bf ? json_number(s.per_class_bf[c]) : "null") << "}" << (c + 1 < classes ? "," : "")
          << "\n";
    j << "  ]\n}\n";
    const std::string text = j.str();
    write_file_atomically(*json, [&](FileSink& sink) { sink.write(text); });
}

/// Loads the checkpoint into a model on Device and scores it.
template <class Device>
SegmentationScores evaluate_on(const std::string& weights, const CheckpointInfo& info, const SegmentationDataset& data,
                               const EvaluationOptions& eo, Precision precision,
                               const std::function<void(const Batch&, const Tensor<Cpu, std::uint8_t>&)>& on_batch) {
    const auto model = models::make_model<Device>(info.model, info.classes);
    load_checkpoint(weights, *model, info.model);
    model->set_precision(precision);
    return evaluate_model(*model, data, eo, on_batch);
}

/// --calibration: the deciles printed as a table and written to `file` as JSON (atomically).
inline void report_calibration(const UncertaintyCalibration& calibration, const std::string& file) {
    const auto deciles = calibration.quantile_bins(10);
    std::printf("\ncalibration: pixel accuracy per decile of the uncertainty (predictive entropy / log K)\n\n"
                "| decile | uncertainty | pixels | accuracy |\n|---:|---|---:|---:|\n");
    std::ostringstream j;
    j << "{\n  \"measure\": \"predictive entropy / log K\",\n  \"pixels\": " << calibration.pixels()
      << ",\n  \"deciles\": [\n";
    for (std::size_t d = 0; d < deciles.size(); ++d) {
        const auto& r = deciles[d];
        std::printf("| %zu | %.3f-%.3f | %lld | %.2f |\n", d + 1, r.lower, r.upper, (long long)r.pixels, r.accuracy);
        j << "    {\"lower\": " << json_number(r.lower) << ", \"upper\": " << json_number(r.upper) << ", \"pixels\": "
          << r.pixels << ", \"accuracy\": " << json_number(r.accuracy) << "}" << (d + 1 < deciles.size() ? "," : "") << "\n";
    }
    j << "  ]\n}\n";
    const std::string text = j.str();
    write_file_atomically(file, [&](FileSink& sink) { sink.write(text); });
}

inline int run(int argc, char** argv) {
    cli::Args args(argc, argv, "segnet-evaluate", usage);
    const auto pred = args.text("--pred"), gt = args.text("--gt");
    const auto weights = args.text("--weights"), list = args.text("--list"), root = args.text("--root");
    auto classes = args.integer("--classes", 1, 255);
    auto ignore = args.integer("--ignore", -1, 255);
    const auto size = args.size("--size");
    const int batch = int(args.integer("--batch", 1, 1, 256));
    const int samples = int(args.integer("--samples", 0, 1, max_monte_carlo_samples));
    const std::optional<refine::DenseCrfOptions> crf = cli::crf_options(args);
    const bool mask_void = args.flag("--mask-void-bf"), bf = !args.flag("--no-bf");
    const bool allow_missing = args.flag("--allow-missing");
    const auto json = args.text("--json");
    const auto calibration_file = args.text("--calibration");
    const ImageLimits limits = cli::image_limits(args);
    const cli::MemoryBudget budget = cli::memory_budget(args);
    if (const auto t = args.integer("--threads", 1, 1024)) segnet::set_num_threads(int(*t));
    const std::string device = args.choice("--device", "cpu", {"cpu", "cuda"});
    // fp32: published and compared metrics must not depend on the machine's BF16 units.
    const std::optional<std::string> precision_requested = cli::precision_request(args);
    args.finish();
    cli::require_device("segnet-evaluate", device);
    if (json) cli::check_writable_file(*json);

    if (pred || gt) {
        if (!pred || !gt) throw cli::UsageError("--pred and --gt go together");
        if (weights || list) throw cli::UsageError("use either --pred/--gt or --weights/--list");
        if (samples > 0) throw cli::UsageError("--samples applies to running a checkpoint (--weights/--list), not to --pred/--gt");
        if (crf) throw cli::UsageError("--crf applies to running a checkpoint (--weights/--list), not to --pred/--gt");
        if (calibration_file)
            throw cli::UsageError("--calibration needs the network's probabilities: --weights/--list, not --pred/--gt");
        if (precision_requested)
            throw cli::UsageError("--precision applies to running a checkpoint (--weights/--list), not to --pred/--gt");
        const int k = int(classes.value_or(11)), void_label = int(ignore.value_or(11));
        SegmentationEvaluator eval(k, void_label, bf, mask_void);
        if (!fs::is_directory(*pred)) throw DataError("segnet: --pred '" + shortened(*pred) + "' is not a folder");
        if (!fs::is_directory(*gt)) throw DataError("segnet: --gt '" + shortened(*gt) + "' is not a folder");
        auto is_png = [](const fs::path& p) { return p.extension() == ".png"; };
        const auto skip = cli::skipped_entry_warning("segnet-evaluate");
        const std::vector<fs::path> files = regular_files_in(*pred, is_png, skip);
        if (files.empty()) throw DataError("segnet: --pred '" + shortened(*pred) + "' holds no .png label files");
        std::size_t unmatched = 0, truths = 0;
        fs::path first_unmatched;
        for (const fs::path& truth : regular_files_in(*gt, is_png, skip)) {
            ++truths;
            std::error_code ec;
            if (fs::exists(fs::path(*pred) / truth.filename(), ec)) continue;
            if (unmatched++ == 0) first_unmatched = truth;
        }
        if (unmatched > 0 && !allow_missing)
            throw DataError("segnet: --pred '" + shortened(*pred) + "' has no prediction for " + std::to_string(unmatched) +
                            " of the " + std::to_string(truths) + " ground-truth files in '" + shortened(*gt) +
                            "' (first: '" + shortened(first_unmatched.filename().string()) +
                            "'); segment them all, or --allow-missing to score only those present");
        for (const auto& p : files) {
            const fs::path truth_file = fs::path(*gt) / p.filename();
            if (!fs::exists(truth_file))
                throw DataError("segnet: cannot read '" + truth_file.string() + "': no ground truth for '" + p.string() + "'");
            const auto predicted = load_label(p, limits), truth = load_label(truth_file, limits);
            if (predicted.extents() != truth.extents())
                throw DataError("segnet: '" + p.string() + "' is " + std::to_string(predicted.w()) + "x" +
                                std::to_string(predicted.h()) + " but '" + truth_file.string() + "' is " +
                                std::to_string(truth.w()) + "x" + std::to_string(truth.h()));
            try {
                eval.add(predicted.view(), truth.view());
            } catch (const std::invalid_argument& e) {
                throw DataError("segnet: '" + p.string() + "' / '" + truth_file.string() + "': " + e.what());
            }
        }
        if (unmatched > 0)
            std::printf("note: %zu of the %zu ground-truth files have no prediction and are not scored (--allow-missing)\n",
                        unmatched, truths);
        report(eval.scores(), k, bf, json);
        return 0;
    }
    if (!weights || !list) throw cli::UsageError("give --pred DIR --gt DIR, or --weights CKPT --list LIST (see --help)");
    const Precision precision = cli::resolve_precision("segnet-evaluate", precision_requested.value_or("fp32"), device);
    const CheckpointInfo info = read_checkpoint_info(*weights);
    cli::require_sampling(samples, device, info.model, info.classes);
    if (classes && *classes != info.classes)
        throw cli::UsageError("--classes " + std::to_string(*classes) + " differs from the checkpoint's " +
                                     std::to_string(info.classes));
    const int void_label = int(ignore.value_or(info.ignore_label));
    DatasetOptions dopt;
    dopt.classes = info.classes;
    dopt.ignore_label = void_label < 0 ? 255 : void_label;
    dopt.normalization = info.normalization;
    dopt.limits = limits;
    const SegmentationDataset data = SegmentationDataset::from_list_file(*list, dopt, root);
    std::vector<fs::path> images;
    for (const ListEntry& e : data.list().samples) images.push_back(e.image);
    if (device == "cuda") cli::require_inference_fits<cli::CudaDevice>(info.model, info.classes, images, size, limits, budget, batch);
    else cli::require_inference_fits<Cpu>(info.model, info.classes, images, size, limits, budget, batch);
    EvaluationOptions eo;
    eo.batch_size = batch;
    eo.ignore_label = void_label;
    if (size) std::tie(eo.height, eo.width) = *size;
    eo.boundary_f1 = bf;
    eo.mask_void_for_bf = mask_void;
    eo.samples = samples;
    if (crf)
        eo.labels_from_probabilities = [&](const Tensor<Cpu>& probabilities, const Tensor<Cpu>& images) {
            return crf_labels(probabilities, images, info.normalization, *crf);
        };
    // --calibration: the labelling step keeps each batch's uncertainty, which on_batch, called next
    // for the same batch, counts with the labels and the truth.
    UncertaintyCalibration calibration;
    Tensor<Cpu> batch_uncertainty;
    std::function<void(const Batch&, const Tensor<Cpu, std::uint8_t>&)> on_batch;
    if (calibration_file) {
        auto labels_of = eo.labels_from_probabilities;
        const float log_classes = std::log(float(std::max(2, info.classes)));
        eo.labels_from_probabilities = [&batch_uncertainty, labels_of, log_classes](const Tensor<Cpu>& probabilities,
                                                                                    const Tensor<Cpu>& images) {
            batch_uncertainty = predictive_entropy(probabilities);
            for (float& v : batch_uncertainty.span()) v /= log_classes;
            return labels_of ? labels_of(probabilities, images) : backend::predict_labels(probabilities);
        };
        on_batch = [&](const Batch& b, const Tensor<Cpu, std::uint8_t>& predicted) {
            calibration.add(predicted.view(), batch_uncertainty.view(), b.labels.view(), void_label);
        };
    }
    const SegmentationScores s = device == "cuda"
                                     ? evaluate_on<cli::CudaDevice>(*weights, info, data, eo, precision, on_batch)
                                     : evaluate_on<Cpu>(*weights, info, data, eo, precision, on_batch);
    std::printf("model %s (%s), precision %s\n", info.model.c_str(), weights->c_str(), to_string(precision));
    report(s, info.classes, bf, json);
    if (calibration_file) report_calibration(calibration, *calibration_file);
    return 0;
}

}  // namespace evaluate_detail

/// The segnet-evaluate program: parses argv, runs, returns the exit status (0 success, 1 error, 2 usage,
/// 130 interrupted); errors are printed as one line on stderr.
inline int evaluate_main(int argc, char** argv) {
    return cli::run_program("segnet-evaluate", [&] { return evaluate_detail::run(argc, argv); });
}

}  // namespace segnet::programs
