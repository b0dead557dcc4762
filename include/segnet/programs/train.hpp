// segnet/programs/train.hpp: the segnet-train program as a function, train_main(argc, argv),
// so that a program of your own (with your networks registered) is the same program.
// segnet-train: trains any model of the library on a CamVid-style dataset (list files of
// "image label" lines), with validation, CSV log, last/best checkpoints and exact resume.
//
//   segnet-train --model segnet-basic --train train.txt --val val.txt --classes 11 --ignore 11
//                --balance median --epochs 100 --batch 4 --lr 0.1 --out runs/basic
//   segnet-train --resume runs/basic/last.safetensors --train train.txt --val val.txt --epochs 200 --out runs/basic
//   mpirun -np 4 segnet-train --model segnet-basic ... --batch 16 --sync-bn   # data-parallel, 4 ranks
//
// Data-parallel (train_main with a Communicator: segnet-train-mpi, which `segnet-train` becomes
// under mpirun): --batch is the whole batch, split across the ranks; rank 0 alone writes --out
// and prints; a failure any rank meets before training (a bad list or image) is agreed, so
// every rank exits with rank 0's one line; docs/distributed.md. With --device cuda the ranks are
// segnet-train-mpi-cuda, one GPU each, summing gradients with NCCL (distributed/nccl.hpp).
#pragma once

#include "segnet/models/registry.hpp"
#include "segnet/programs/cli.hpp"
#include "segnet/programs/preflight.hpp"
#include "segnet/segnet.hpp"
#include "segnet/train/class_balance.hpp"
#include "segnet/train/trainer.hpp"

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>

namespace segnet::programs {

namespace train_detail {

namespace fs = std::filesystem;

inline constexpr const char* usage = R"(usage: segnet-train --model NAME --train LIST [--val LIST] --out DIR [options]

Trains a segmentation model; writes DIR/log.csv, DIR/last.safetensors, DIR/best.safetensors.

data
  --train LIST           training list file ("image label" per line)
  --val LIST             validation list file (metrics each epoch; best checkpoint)
  --root DIR             folder the list paths are relative to (default: the list's folder)
  --classes K            number of classes (default 11)
  --ignore V             label value to ignore, e.g. void (default 11; -1: none)
  --size HxW             resize every sample (e.g. 180x240); default: the images' own size
  --val-size HxW|native  validate at this size instead (native: the images' own size), e.g. to
                         train small and select the checkpoint at the size it will run at
  --augment              random horizontal flip and scale (0.75..1.25) with a crop back to size
  --crop HxW             train on random HxW crops (after --size and --augment's scaling; the
                         network is fully convolutional: train on crops, validate on whole images)
  --normalize MODE       meanstd (per-channel, from the training set; default) | none ([0,1])
                         | raw (0..255, for segnet-basic-caffe, whose LRN normalises its input)
model and loss
  --model NAME           segnet, segnet-basic, ... (see segnet-architectures); from the checkpoint with --resume
  --balance MODE         median (median-frequency balancing, default) | natural | FILE (one weight per class)
optimisation
  --epochs N             total epochs (a resumed run continues up to N; default 1)
  --stop-after E         end this run after epoch E, on the schedule of --epochs; a --resume
                         continues (train in stages, e.g. small images first, then full size)
  --batch B              batch size (default 4)
  --optimizer NAME       sgd (default) | adam | adamw
  --lr X                 learning rate (default: sgd 0.1, adam/adamw 0.001)
  --momentum X           sgd momentum (default 0.9)
  --weight-decay X       default: sgd 5e-4, adam 0, adamw 0.01
  --schedule NAME        constant (default) | step | poly | cosine (per step)
  --best METRIC          g (global accuracy, the paper's choice; default) | miou
  --no-bf                skip the boundary F1 in validation (faster)
  --val-every N          validate after every N-th epoch and after the run's last (default 1);
                         best.safetensors is chosen among the validated epochs
run
  --out DIR              output folder (created); one that holds another run is refused
  --overwrite            start afresh in an --out that holds a run (replaces its last.safetensors
                         and log.csv, removes its best.safetensors)
  --resume CKPT          continue from a checkpoint written by segnet-train
  --threads T            CPU threads (default: all)
  --seed S               initialisation, data order and augmentation seed (default 0)
  --device cpu|cuda      where to train (default cpu; cuda: segnet-train-cuda, built with -DSEGNET_CUDA=ON)
  --precision P          fp32 (default: the paper's reproduction) | bf16 | auto (bf16 where it beats
                         fp32: AMX, or AVX512-BF16 on AMD): bf16 rounds the convolutions' operands to bfloat16
                         and accumulates in FP32; weights, gradients and the optimiser stay FP32
  --max-image-pixels N  refuse larger images before decoding them (default 16000000)
  --max-memory N         memory the run may use, e.g. 8G (default: what the machine has available)
data-parallel (under mpirun -np N; docs/distributed.md)
  --sync-bn              batch norm with the whole batch's statistics, summed across ranks (CPU only);
                         default: each rank's own share's (as PyTorch DDP)
  --bucket-mb X          gradient megabytes per all-reduce, started as backward runs (default 25)
Ctrl-C saves DIR/last.safetensors at the next batch and exits; --resume continues exactly.
)";

/// Data-parallel: runs `work` on every rank; a failure on any stops all of them with the lowest
/// failing rank's message and status (a UsageError stays one). Without a communicator: work().
template <class F>
void on_every_rank_of(Communicator* comm, F&& work) {
    if (!comm) return work();
    std::string failure;  // "2" or "1", then the message
    try {
        work();
    } catch (const cli::UsageError& e) {
        failure = std::string("2") + e.what();
    } catch (const std::exception& e) {
        failure = std::string("1") + e.what();
    }
    try {
        agree_step(*comm, 0, false, failure);
    } catch (const RanksStopped& e) {
        const std::string m = e.what();
        if (m[0] == '2') throw cli::UsageError(m.substr(1));
        throw RanksStopped(m.substr(1));
    }
}

inline void on_interrupt(int) { request_training_stop(); }

/// Refuses an --out that holds a training run (last.safetensors, best.safetensors or log.csv),
/// unless this run resumes a checkpoint of that folder or --overwrite says to start afresh
/// (which removes the old best.safetensors, so that it is not taken for the new run's).
inline void check_output_run(const fs::path& out, const std::optional<std::string>& resume, bool overwrite) {
    std::error_code ec;
    std::string found;
    for (const char* name : {"last.safetensors", "best.safetensors", "log.csv"})
        if (fs::exists(out / name, ec)) found += (found.empty() ? "" : ", ") + std::string(name);
    if (found.empty()) return;
    if (resume && fs::equivalent(fs::path(*resume).parent_path().empty() ? "." : fs::path(*resume).parent_path(), out, ec))
        return;
    if (!overwrite)
        throw cli::UsageError("--out '" + shortened(out.string()) + "' holds a training run (" + found +
                              "); continue it with --resume " + shortened((out / "last.safetensors").string()) +
                              ", choose another --out, or give --overwrite to replace it");
    if (!resume) fs::remove(out / "best.safetensors", ec);
}

/// Refuses, before training starts, a set whose images the network cannot take at the run size
/// (height x width, 0: their own), mixed image sizes in batches of more than one at their own
/// size, and a batch that needs more memory than the budget (training set only: `budget` null
/// for validation).
template <class Device>
void check_sample_sizes(const SegmentationDataset& set, int height, int width, const TrainOptions& o,
                        const cli::MemoryBudget* budget) {
    std::map<std::pair<int, int>, std::size_t> sizes;  // run size -> its first sample
    for (std::size_t i = 0; i < set.size() && !set.in_memory(); ++i) {
        const ImageInfo image = read_image_info(set.list().samples[i].image);
        const std::pair run = height ? std::pair{height, width} : std::pair{image.height, image.width};
        sizes.emplace(run, i);
    }
    if (sizes.size() > 1 && o.batch_size > 1) {
        const auto& [a, b] = std::pair{*sizes.begin(), *std::next(sizes.begin())};
        throw cli::UsageError(set.where(b.second) + ": image is " + std::to_string(b.first.second) + "x" +
                              std::to_string(b.first.first) + " but " + set.where(a.second) + " is " +
                              std::to_string(a.first.second) + "x" + std::to_string(a.first.first) +
                              "; a batch needs one size: give --size HxW, or --batch 1");
    }
    for (const auto& [run, first] : sizes) {
        const Analysis a = cli::require_input_size<Device>(o.model_name, o.classes, run.first, run.second, set.where(first));
        if (budget)
            cli::require_memory(cli::training_bytes(a, o.batch_size), *budget,
                                "training " + o.model_name + " on " + std::to_string(run.second) + "x" +
                                    std::to_string(run.first) + " images in batches of " + std::to_string(o.batch_size),
                                "use a smaller --batch or --size, or a larger --max-memory");
    }
}

/// Builds the model on Device (initialised with o.seed, or restored by train() from o.resume) and
/// trains it with its convolutions in `precision`.
template <class Device>
TrainResult train_on(const TrainOptions& o, Precision precision, const SegmentationDataset& train_set,
                     const SegmentationDataset* val_set) {
    const auto model = models::make_model<Device>(o.model_name, o.classes, o.seed);
    model->set_precision(precision);  // train() records it in the checkpoints' metadata
    return train(*model, o, train_set, val_set);
}

inline int run(int argc, char** argv, Communicator* comm) {
    cli::Args args(argc, argv, "segnet-train", usage);
    TrainOptions o;
    const auto resume = args.text("--resume");
    const auto model_arg = args.text("--model");
    const std::string train_list = args.required("--train");
    const auto val_list = args.text("--val");
    const auto root = args.text("--root");
    o.classes = int(args.integer("--classes", 11, 1, 255));
    o.ignore_label = int(args.integer("--ignore", 11, -1, 255));
    const std::string balance = args.text("--balance", "median");
    o.epochs = int(args.integer("--epochs", 1, 1, 1000000));
    o.stop_after_epoch = int(args.integer("--stop-after", 0, 1, 1000000));
    o.batch_size = int(args.integer("--batch", 4, 1, 4096));
    o.optimizer = args.choice("--optimizer", "sgd", {"sgd", "adam", "adamw"});
    o.optimizer_options.lr = args.real("--lr", 0, 100);
    o.optimizer_options.momentum = args.real("--momentum", 0, 1).value_or(0.9);
    o.optimizer_options.weight_decay = args.real("--weight-decay", 0, 10);
    o.schedule = args.choice("--schedule", "constant", {"constant", "step", "poly", "cosine"});
    if (o.schedule == "step") o.schedule_options.step_size = 1;  // per step: decay every step would be odd
    if (const auto size = args.size("--size")) std::tie(o.height, o.width) = *size;
    if (const auto size = args.text("--val-size"))
        std::tie(o.validation_height, o.validation_width) =
            *size == "native" ? std::pair{0, 0} : cli::Args::parse_size("--val-size", *size);
    const bool augment = args.flag("--augment");
    const auto crop = args.size("--crop");
    const std::string normalize = args.choice("--normalize", "meanstd", {"meanstd", "none", "raw"});
    o.out_dir = args.required("--out");
    o.seed = std::uint64_t(args.integer("--seed", 0, 0, (1LL << 62)));
    if (const auto t = args.integer("--threads", 1, 1024)) segnet::set_num_threads(int(*t));
    const std::string device = args.choice("--device", "cpu", {"cpu", "cuda"});
    // fp32: the paper's reproduction trains in FP32; bf16 is the user's choice.
    const std::string precision_requested = cli::precision_request(args, "fp32");
    o.best = args.choice("--best", "g", {"g", "miou"}) == "g" ? BestMetric::global_accuracy : BestMetric::mean_iou;
    o.boundary_f1 = !args.flag("--no-bf");
    o.validate_every = int(args.integer("--val-every", 1, 1, 1000000));
    const ImageLimits limits = cli::image_limits(args);
    const cli::MemoryBudget budget = cli::memory_budget(args);
    const bool overwrite = args.flag("--overwrite");
    o.data_parallel.synchronized_batch_norm = args.flag("--sync-bn");
    const auto bucket_mb = args.real("--bucket-mb", 0.001, 4096);
    if (bucket_mb) o.data_parallel.bucket_bytes = std::size_t(*bucket_mb * (1 << 20));
    args.finish();
    if (!comm && (o.data_parallel.synchronized_batch_norm || bucket_mb))
        throw cli::UsageError(std::string(o.data_parallel.synchronized_batch_norm ? "--sync-bn" : "--bucket-mb") +
                              " is for data-parallel training: run under mpirun -np N (segnet-train-mpi)");
    // The communicator decides the device: segnet-train-mpi sums host memory (CPU), the nvcc-built
    // segnet-train-mpi-cuda device memory through NCCL (segnet-train-mpi hands --device cuda to it).
    if (comm && (device == "cuda") != comm->sums_device_memory())
        throw cli::UsageError(device == "cuda"
                                  ? "--device cuda: data-parallel training on GPUs is segnet-train-mpi-cuda (NCCL), "
                                    "built with -DSEGNET_CUDA=ON where NCCL is found; it is not next to this program"
                                  : "--device " + device + ": segnet-train-mpi-cuda trains on GPUs only: give "
                                    "--device cuda (segnet-train-mpi trains on CPUs)");
    if (comm && device == "cuda" && o.data_parallel.synchronized_batch_norm)
        throw cli::UsageError("--sync-bn: synchronized batch norm runs on the CPU only (the CUDA batch norm does not "
                              "sum its statistics across ranks); leave it out with --device cuda");
    o.communicator = comm;
    const bool writer = !comm || comm->rank() == 0;
    const Precision precision = cli::resolve_precision("segnet-train", precision_requested, device);
    cli::require_device("segnet-train", device);

    std::string resumed_precision_note;  // printed with the banner, so that a refusal stays one line
    if (resume) {
        const CheckpointInfo saved = read_checkpoint_info(*resume);
        (void)resume_state(saved, *resume);  // a bad value is one line now, not a failure after the banner
        if (model_arg && *model_arg != saved.model)
            throw cli::UsageError("--model " + *model_arg + " differs from the checkpoint's model '" + saved.model + "'");
        if (saved.epoch >= o.epochs)
            throw cli::UsageError("--epochs " + std::to_string(o.epochs) + ": '" + shortened(*resume) + "' has " +
                                  std::to_string(saved.epoch) + " epochs done already; give a larger --epochs");
        if (o.stop_after_epoch > 0 && saved.epoch >= o.stop_after_epoch)
            throw cli::UsageError("--stop-after " + std::to_string(o.stop_after_epoch) + ": '" + shortened(*resume) +
                                  "' has " + std::to_string(saved.epoch) + " epochs done already");
        o.model_name = saved.model;
        o.classes = saved.classes;
        o.ignore_label = saved.ignore_label;
        o.resume = *resume;
        if (const auto it = saved.extra.find("precision"); it != saved.extra.end() && it->second != to_string(precision))
            resumed_precision_note = "segnet-train: note: '" + shortened(*resume) + "' was trained in " + it->second +
                                     "; continuing in " + to_string(precision) + " (--precision)\n";
    } else {
        if (!model_arg) throw cli::UsageError("--model is required (or --resume a checkpoint)");
        o.model_name = *model_arg;
    }
    if (o.ignore_label >= 0 && o.ignore_label < o.classes)
        throw cli::UsageError("--ignore " + std::to_string(o.ignore_label) + " is a class (0.." +
                                     std::to_string(o.classes - 1) + "); use a value >= --classes or -1");
    // a clear error before reading any data
    if (device == "cuda") models::check_model<cli::CudaDevice>(o.model_name, o.classes);
    else models::check_model<Cpu>(o.model_name, o.classes);
    if (o.height && device == "cuda")
        cli::require_input_size<cli::CudaDevice, cli::UsageError>(o.model_name, o.classes, o.height, o.width, "--size");
    else if (o.height)
        cli::require_input_size<Cpu, cli::UsageError>(o.model_name, o.classes, o.height, o.width, "--size");
    if (crop && device == "cuda")
        cli::require_input_size<cli::CudaDevice, cli::UsageError>(o.model_name, o.classes, crop->first, crop->second, "--crop");
    else if (crop)
        cli::require_input_size<Cpu, cli::UsageError>(o.model_name, o.classes, crop->first, crop->second, "--crop");
    if (o.validation_height > 0 && device == "cuda")
        cli::require_input_size<cli::CudaDevice, cli::UsageError>(o.model_name, o.classes, o.validation_height,
                                                                  o.validation_width, "--val-size");
    else if (o.validation_height > 0)
        cli::require_input_size<Cpu, cli::UsageError>(o.model_name, o.classes, o.validation_height,
                                                       o.validation_width, "--val-size");

    on_every_rank_of(comm, [&] {
        if (!writer) return;  // rank 0 alone writes --out
        check_output_run(o.out_dir, resume, overwrite);
        cli::create_output_folder(o.out_dir);
    });
    DatasetOptions dopt;
    dopt.classes = o.classes;
    dopt.ignore_label = o.ignore_label < 0 ? 255 : o.ignore_label;
    dopt.validation = Validation::up_front;
    dopt.limits = limits;
    std::optional<SegmentationDataset> train_data;
    std::optional<SegmentationDataset> val_set;
    on_every_rank_of(comm, [&] {  // every rank reads the lists and checks every image up front
        train_data.emplace(SegmentationDataset::from_list_file(train_list, dopt, root));
        SegmentationDataset& train_set = *train_data;
        if (normalize == "meanstd") o.normalization = compute_normalization(train_set);
        else if (normalize == "raw") o.normalization = Normalization::raw();
        else o.normalization = Normalization::none();
        train_set.set_normalization(o.normalization);
        if (val_list) {
            DatasetOptions vopt = dopt;
            vopt.normalization = o.normalization;
            val_set.emplace(SegmentationDataset::from_list_file(*val_list, vopt, root));
        }
        // what the network is trained on: the crop, else the (resized) images
        const int train_height = crop ? crop->first : o.height, train_width = crop ? crop->second : o.width;
        const int val_height = o.validation_height >= 0 ? o.validation_height : o.height;
        const int val_width = o.validation_width >= 0 ? o.validation_width : o.width;
        if (device == "cuda") {
            check_sample_sizes<cli::CudaDevice>(train_set, train_height, train_width, o, &budget);
            if (val_set) check_sample_sizes<cli::CudaDevice>(*val_set, val_height, val_width, o, nullptr);
        } else {
            check_sample_sizes<Cpu>(train_set, train_height, train_width, o, &budget);
            if (val_set) check_sample_sizes<Cpu>(*val_set, val_height, val_width, o, nullptr);
        }

        if (balance == "median") {
            ClassFrequencyCounter counter(o.classes, {.ignore_label = o.ignore_label, .void_pixels = VoidPixels::excluded});
            for (std::size_t i = 0; i < train_set.size(); ++i) counter.add(train_set.load_raw(i).label.view());
            const auto w = counter.median_frequency_weights();
            o.class_weights.assign(w.begin(), w.end());
        } else if (balance != "natural") {
            o.class_weights = read_class_weights(balance, o.classes);
        }
        if (augment) {
            o.augmentation.horizontal_flip = true;
            o.augmentation.min_scale = 0.75f;
            o.augmentation.max_scale = 1.25f;
            const auto first = train_set.load_raw(0);
            o.augmentation.crop_height = o.height ? o.height : first.label.h();
            o.augmentation.crop_width = o.width ? o.width : first.label.w();
        }
        if (crop) std::tie(o.augmentation.crop_height, o.augmentation.crop_width) = *crop;
    });
    const SegmentationDataset& train_set = *train_data;
    o.on_start = [&] {
        std::cerr << "segnet-train: " << o.model_name << ", " << train_set.size() << " training images"
                  << (val_set ? ", " + std::to_string(val_set->size()) + " validation images" : std::string())
                  << (device == "cuda" ? std::string(", on the GPU (cuda)") : ", " + std::to_string(segnet::num_threads()) + " threads");
        std::cerr << ", precision " << to_string(precision);
        if (o.augmentation.crop_height)
            std::cerr << ", " << o.augmentation.crop_width << "x" << o.augmentation.crop_height << " crops";
        if (!o.class_weights.empty()) {
            std::cerr << ", class weights";
            for (float w : o.class_weights) std::fprintf(stderr, " %.4f", w);
        }
        std::cerr << "\n" << resumed_precision_note;
    };

    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    const SegmentationDataset* val = val_set ? &*val_set : nullptr;
    const TrainResult r = device == "cuda" ? train_on<cli::CudaDevice>(o, precision, train_set, val)
                                           : train_on<Cpu>(o, precision, train_set, val);
    if (r.status == TrainStatus::interrupted) return 130;
    if (!writer) return 0;
    if (r.best)
        std::printf("best: G %.2f C %.2f mIoU %.2f BF %.2f (%s)\n", r.best->global_accuracy, r.best->class_accuracy,
                    r.best->mean_iou, r.best->bf, r.best_checkpoint.string().c_str());
    std::printf("last checkpoint: %s\n", r.last_checkpoint.string().c_str());
    return 0;
}

}  // namespace train_detail

/// The segnet-train program: parses argv, runs, returns the exit status (0 success, 1 error, 2 usage,
/// 130 interrupted); errors are printed as one line on stderr.
/// With a communicator (segnet-train-mpi): data-parallel across its ranks; rank 0 prints the one
/// line of an error every rank met (agreed), any other rank nothing; an error only this rank met
/// is printed with its rank and ends every rank (Communicator::abort), as one rank cannot leave
/// the others waiting for it.
inline int train_main(int argc, char** argv, Communicator* comm = nullptr) {
    if (!comm) return cli::run_program("segnet-train", [&] { return train_detail::run(argc, argv, nullptr); });
    const bool rank0 = comm->rank() == 0;
    const std::string program = rank0 ? "segnet-train" : "segnet-train (rank " + std::to_string(comm->rank()) + ")";
    bool agreed = true;
    const int status = cli::run_program(program.c_str(), [&]() -> int {
        try {
            return train_detail::run(argc, argv, comm);
        } catch (const cli::UsageError&) {  // from the arguments or agreed: the same on every rank
            if (!rank0) return 2;
            throw;
        } catch (const RanksStopped&) {  // agreed
            if (!rank0) return 1;
            throw;
        } catch (const TrainingDiverged&) {  // every rank sees the same summed loss and weights
            if (!rank0) return 1;
            throw;
        } catch (...) {
            agreed = false;
            throw;
        }
    });
    if (!agreed) comm->abort(status);
    return status;
}

}  // namespace segnet::programs
