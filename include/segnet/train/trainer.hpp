// segnet/train/trainer.hpp: the training loop: epochs over shuffled batches, validation with
// the paper's metrics, a CSV log, `last` and `best` checkpoints, exact resume, clean stop.
//
//   segnet::TrainOptions o{.model_name = "segnet-basic", .classes = 11, .ignore_label = 11,
//                          .epochs = 100, .batch_size = 4, .out_dir = "runs/basic"};
//   segnet::TrainResult r = segnet::train<segnet::models::SegNetBasic<11>>(o, train_set, &val_set);
//   segnet::TrainResult s = segnet::train(any_model, o, train_set, &val_set);   // AnyModel<Device>&
//
// The model may live on any device: train(AnyModel<Cuda>&, ...) works in an nvcc translation
// unit. The loop is written once over the device: the batch is staged by backend::Staging, the
// loss (CrossEntropyLoss) and the optimizer (make_optimizer: Sgd/Adam/AdamW<Device>) run on the
// model's device through backend operations, and so does the NaN check of the weights
// (backend::first_nonfinite). Checkpoints are device-independent files (the weights are copied
// to the host to be written).
//
// Each step: forward (train mode), weighted cross-entropy with the ignore label, backward,
// optimizer step; the learning rate follows the schedule per step (t = global step, total =
// epochs x batches per epoch). After each epoch: validation (G, C, mIoU, BF; every
// `validate_every`-th epoch and always the last one of a run), one CSV row in out_dir/log.csv
// (empty metric columns where it did not validate), out_dir/last.safetensors, and
// out_dir/best.safetensors when the chosen metric (val G as in the paper, or mIoU) improves.
//
// Resume (`resume` = a checkpoint) restores weights, batch-norm statistics, optimizer state,
// epoch and batch position; the data order and augmentation depend only on (seed, epoch,
// position), so a resumed run continues exactly as if it had not stopped. A stop request
// (request_training_stop(), e.g. from a SIGINT handler) is honoured at the next batch: the
// state is saved to last.safetensors and train() returns `interrupted`. A NaN/Inf loss, weight,
// batch-norm statistic, optimizer state or loss sum stops the run with TrainingDiverged before
// anything is written: the last good checkpoint stays, and the message names it.
//
// log.csv: a fresh run starts it anew; a resumed run keeps the rows up to the resumed epoch and
// drops later ones (written after the checkpoint was), so no epoch is listed twice. A run also
// removes the temporaries a killed save left in out_dir (io/files.hpp remove_stale_temporaries).
//
// Data-parallel (o.communicator set: an MpiCommunicator, distributed/mpi.hpp, or on GPUs an NcclCommunicator, every
// rank calling train() with the same options): batch_size is the whole batch; rank r trains on
// the positions r, r + N, ... of every batch of the shared shuffled order, the gradients are
// summed across ranks as backward runs (train/data_parallel.hpp), every rank makes the same
// optimiser step. Rank 0 alone writes out_dir (checkpoints, log.csv) and prints; validation is
// split across the ranks and their metrics' totals summed. Before each step the ranks agree on
// one small sum: a stop request on any rank stops all of them at the same step (rank 0 saves),
// and a rank that fails (a bad file) stops every rank with its message (RanksStopped, a
// DataError). A checkpoint holds the global position, so a run resumes with any number of ranks.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "segnet/compose/model.hpp"
#include "segnet/core/communicator.hpp"
#include "segnet/data/dataset.hpp"
#include "segnet/train/checkpoint.hpp"
#include "segnet/train/data_parallel.hpp"
#include "segnet/train/evaluate.hpp"
#include "segnet/train/loss.hpp"
#include "segnet/train/optimizer.hpp"
#include "segnet/train/schedule.hpp"

namespace segnet {

/// The loss became NaN or Inf; nothing was saved for the failing step.
struct TrainingDiverged : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline std::atomic<bool>& training_stop_flag() {
    static std::atomic<bool> flag{false};
    return flag;
}
/// Async-signal-safe: asks a running train() to save and return at the next batch.
inline void request_training_stop() { training_stop_flag().store(true, std::memory_order_relaxed); }

enum class BestMetric { global_accuracy, mean_iou };
enum class ProgressStyle { automatic, bar, lines, none };

struct TrainOptions {
    std::string model_name;  ///< stored in checkpoints; checked on resume
    int classes = 11;
    int ignore_label = 11;
    int epochs = 1;
    int batch_size = 4;
    std::string optimizer = "sgd";
    OptimizerOptions optimizer_options{};
    std::string schedule = "constant";
    ScheduleOptions schedule_options{};  ///< base_lr is taken from the optimizer's lr
    std::vector<float> class_weights{};  ///< empty: natural frequency (no weighting)
    LossNormalization loss_normalization = LossNormalization::weighted_mean;
    Augmentation augmentation{};
    int height = 0, width = 0;  ///< resize training and validation samples (0: own size)
    /// Validation size when it differs from training's (progressive resizing trains small and
    /// validates at the size the model will run at): -1 the training size, 0 the images' own size.
    int validation_height = -1, validation_width = -1;
    std::filesystem::path out_dir = "segnet-run";
    std::uint64_t seed = 0;
    std::filesystem::path resume{};  ///< empty: start from He initialisation
    BestMetric best = BestMetric::global_accuracy;
    bool boundary_f1 = true;  ///< compute BF in validation (costs a few ms per image)
    /// Validate after every N-th epoch (epoch numbers divisible by N) and after the last epoch of
    /// the run (`epochs` or `stop_after_epoch`): validating whole images after every short crop
    /// epoch can cost as much as the epoch. `best.safetensors` is chosen among validated epochs.
    int validate_every = 1;
    Normalization normalization{};  ///< stored in checkpoints for segment/evaluate
    std::int64_t stop_after_steps = -1;  ///< behave as if interrupted after this many steps (tests)
    /// End this run after that epoch (0: run to `epochs`), with its checkpoints written as at any
    /// epoch's end; a resumed run continues towards `epochs` on the same schedule. Runs in stages
    /// (progressive resizing: small images first) change their options between such runs.
    int stop_after_epoch = 0;
    ProgressStyle progress = ProgressStyle::automatic;
    std::ostream* log = nullptr;  ///< progress and messages (default std::cerr)
    int prefetch = 2;
    /// Called once everything train() checks up front has passed (the resumed checkpoint loaded,
    /// its position fits the data), before log.csv is touched: a program prints its banner here,
    /// so that a refusal is the only line it prints.
    std::function<void()> on_start{};
    /// Data-parallel training across the communicator's ranks (nullptr: this process alone).
    Communicator* communicator = nullptr;
    DataParallelOptions data_parallel{};
};

struct EpochRecord {
    int epoch = 0;  ///< 1-based
    double lr = 0, train_loss = 0, seconds = 0, images_per_second = 0;
    double allreduce_wait_seconds_per_step = 0;  ///< data-parallel: all-reduce time backward did not hide
    std::optional<SegmentationScores> validation;
};

enum class TrainStatus { completed, interrupted };

struct TrainResult {
    TrainStatus status = TrainStatus::completed;
    std::vector<EpochRecord> epochs;  ///< the epochs completed in this call
    std::optional<SegmentationScores> best;
    std::filesystem::path last_checkpoint, best_checkpoint;
};

namespace trainer_detail {

inline std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "--:--";
    const long s = long(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
    return buf;
}

inline std::string number(double v, int precision = 4) {
    if (!std::isfinite(v)) return "";
    std::ostringstream s;
    s << std::fixed << std::setprecision(precision) << v;
    return s.str();
}

}  // namespace trainer_detail

/// The running statistics of an epoch in progress, as a checkpoint carries them for resume.
struct ResumeState {
    double epoch_loss_sum = 0;
    std::int64_t epoch_loss_count = 0;
    double epoch_seconds = 0;
    double best_value = -1;  ///< the best validation metric so far (-1: none yet)
};

/// The resume state in a checkpoint's metadata; throws DataError naming `file` and the key for a
/// value that is not a finite number or a count that is not a whole number >= 0.
inline ResumeState resume_state(const CheckpointInfo& saved, const std::string& file) {
    ResumeState r;
    r.epoch_loss_sum = checkpoint_extra_number(saved, "epoch_loss_sum", 0, file);
    const double count = checkpoint_extra_number(saved, "epoch_loss_count", 0, file);
    if (count < 0 || count > 1e15 || count != std::floor(count))
        throw DataError("segnet: checkpoint '" + shortened(file) + "': metadata 'epoch_loss_count' is " +
                        std::to_string(count) + ", not a count of steps");
    r.epoch_loss_count = std::int64_t(count);
    r.epoch_seconds = checkpoint_extra_number(saved, "epoch_seconds", 0, file);
    r.best_value = checkpoint_extra_number(saved, "best_value", -1, file);
    return r;
}

/// Keeps log.csv's header and its rows up to `epoch` (the epochs a resumed checkpoint had
/// completed), dropping the rows of epochs run after that checkpoint was written, so that the
/// resumed run does not list them twice. Rewrites the file atomically, only when it changes.
inline void keep_log_rows_through(const std::filesystem::path& csv_path, int epoch) {
    std::ifstream in(csv_path);
    if (!in) return;
    std::string line, kept;
    bool dropped = false, header = true;
    while (std::getline(in, line)) {
        if (!header) {
            char* end = nullptr;
            const long row_epoch = std::strtol(line.c_str(), &end, 10);
            if (end == line.c_str() || row_epoch > epoch) {
                dropped = true;
                continue;
            }
        }
        header = false;
        kept += line + "\n";
    }
    in.close();
    if (dropped) write_file_atomically(csv_path, [&](FileSink& f) { f.write(kept); });
}

/// The loss weight of a batch's labels (weighted_mean's denominator): sum of w_y over its counted
/// pixels; throws for a label that is neither a class nor the ignore label.
inline double label_weight_sum(const Tensor<Cpu, std::uint8_t>& labels, int classes, const CrossEntropyOptions& o) {
    std::int64_t count[256] = {};
    for (std::int64_t i = 0; i < labels.size(); ++i) ++count[labels.data()[i]];
    return backend::loss::weight_sum(count, classes, o, [](int) { return std::string(); });
}

/// Trains `model` (as initialised by the caller, or as restored from o.resume).
template <class Device>
TrainResult train(AnyModel<Device>& model, const TrainOptions& o, const SegmentationDataset& train_set,
                  const SegmentationDataset* val_set = nullptr) {
    using namespace trainer_detail;
    using Clock = std::chrono::steady_clock;
    std::optional<DataParallel<Device>> dp;
    if (o.communicator) dp.emplace(model, *o.communicator, o.data_parallel);
    const bool writer = !dp || dp->rank() == 0;  // rank 0 alone writes out_dir and prints
    std::ostream silent(nullptr);
    std::ostream& log = !writer ? silent : o.log ? *o.log : std::cerr;
    // Work only rank 0 does, whose failure must stop every rank: the ranks agree on it.
    auto on_writer = [&](const std::function<void()>& work) {
        if (!dp) return work();
        on_every_rank(*o.communicator, [&] {
            if (writer) work();
        });
    };
    if (o.epochs < 1 || o.batch_size < 1 || o.validate_every < 1)
        throw std::invalid_argument("segnet::train: epochs, batch size and validate_every must be >= 1");
    if (o.classes != model.classes())
        throw std::invalid_argument("segnet::train: the model has " + std::to_string(model.classes()) +
                                    " classes, the options say " + std::to_string(o.classes));
    if (train_set.size() == 0) throw std::invalid_argument("segnet::train: the training set is empty");
    const auto last_path = o.out_dir / "last.safetensors", best_path = o.out_dir / "best.safetensors",
               csv_path = o.out_dir / "log.csv";
    on_writer([&] {
        std::error_code ec;
        std::filesystem::create_directories(o.out_dir, ec);
        if (ec || !std::filesystem::is_directory(o.out_dir))
            throw DataError("segnet: cannot create output folder '" + o.out_dir.string() + "': " +
                            (ec ? ec.message() : std::string("a file of that name exists")));
        for (const char* name : {"last.safetensors", "best.safetensors", "log.csv"}) remove_stale_temporaries(o.out_dir, name);
    });

    auto optimizer = make_optimizer(o.optimizer, model.parameters(), o.optimizer_options);
    ScheduleOptions so = o.schedule_options;
    so.base_lr = optimizer->lr();
    const Schedule schedule = make_schedule(o.schedule, so);
    const CrossEntropyLoss loss({o.class_weights, o.ignore_label, o.loss_normalization});

    CheckpointInfo info;
    info.model = o.model_name;
    info.classes = o.classes;
    info.ignore_label = o.ignore_label;
    info.normalization = o.normalization;
    info.class_weights = o.class_weights;
    info.seed = o.seed;
    // The precision the convolutions computed in, for whoever reads the checkpoint later (a
    // resumed run may continue in another; old checkpoints without it load as before).
    info.extra["precision"] = to_string(model.precision());
    LoaderPosition start{};
    double epoch_loss_sum = 0, epoch_seconds = 0, best_value = -1;
    std::int64_t epoch_loss_count = 0;
    std::ostringstream resume_notes;  // printed after the checks, so that a refusal stays one line
    if (!o.resume.empty()) {
        const CheckpointInfo saved = load_checkpoint(o.resume, model, o.model_name, optimizer.get());
        if (saved.seed != o.seed)
            resume_notes << "segnet-train: note: continuing with the checkpoint's seed " << saved.seed << " (not "
                         << o.seed << ") so that the data order continues exactly\n";
        info.seed = saved.seed;
        start = {saved.epoch, saved.batch};
        const ResumeState r = resume_state(saved, o.resume.string());
        epoch_loss_sum = r.epoch_loss_sum;
        epoch_loss_count = r.epoch_loss_count;
        epoch_seconds = r.epoch_seconds;
        best_value = r.best_value;
        resume_notes << "segnet-train: resuming '" << o.resume.string() << "' at epoch " << start.epoch + 1
                     << ", batch " << start.batch + 1 << "\n";
    }

    LoaderOptions lo;
    lo.batch_size = o.batch_size;
    lo.shuffle = true;
    lo.seed = info.seed;
    lo.augmentation = o.augmentation;
    lo.resize_height = o.height;
    lo.resize_width = o.width;
    lo.prefetch = o.prefetch;
    if (dp) {
        lo.shard = dp->rank();
        lo.shards = dp->size();
        dp->broadcast_state();  // the same start on every rank, whatever each initialised
    }
    BatchLoader loader(train_set, lo, start);
    const std::int64_t per_epoch = std::int64_t(loader.batches_per_epoch());
    const std::int64_t total_steps = per_epoch * o.epochs;
    if (std::int64_t(start.batch) >= per_epoch)
        throw DataError("segnet: checkpoint '" + shortened(o.resume.string()) + "' continues at batch " +
                        std::to_string(start.batch + 1) + ", but an epoch has " + std::to_string(per_epoch) +
                        " batches (" + std::to_string(train_set.size()) + " images, --batch " +
                        std::to_string(o.batch_size) + "); resume with the list and --batch it was trained with");

    const bool bar = o.progress == ProgressStyle::bar ||
                     (o.progress == ProgressStyle::automatic && &log == &std::cerr && isatty(STDERR_FILENO));
    const bool lines = o.progress == ProgressStyle::lines || (o.progress == ProgressStyle::automatic && !bar);

    if (o.on_start && writer) o.on_start();
    log << resume_notes.str();
    std::ofstream csv;  // rank 0's; the other ranks write to a closed stream, which drops it
    on_writer([&] {
        if (!o.resume.empty()) keep_log_rows_through(csv_path, start.epoch);
        const bool new_log = o.resume.empty() || !std::filesystem::exists(csv_path);
        csv.open(csv_path, new_log ? std::ios::trunc : std::ios::app);
        if (!csv) throw std::runtime_error("segnet-train: cannot write '" + csv_path.string() + "'");
        if (new_log) csv << "epoch,lr,train_loss,val_global_accuracy,val_class_accuracy,val_mean_iou,val_bf,seconds\n";
    });

    TrainResult result;
    result.last_checkpoint = last_path;
    result.best_checkpoint = best_path;
    // The checkpoint a diverged run leaves to continue from: this run's last save, else the one it resumed.
    bool saved_last = false;
    auto at_step = [](int epoch, std::size_t batch) {
        return "at epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(batch + 1);
    };
    auto diverged = [&](const std::string& when, const std::string& what) {
        if (bar) log << "\n";
        const std::filesystem::path good = saved_last ? last_path : o.resume;
        return TrainingDiverged("segnet-train: training diverged " + when + ": " + what + "; stopped without saving, " +
                                (good.empty() ? std::string("no checkpoint was written")
                                              : "the last good checkpoint is '" + good.string() + "'") +
                                " (try a lower learning rate)");
    };
    auto check_loss = [&](double value, int epoch, std::size_t batch) {
        if (!std::isfinite(value))
            throw diverged(at_step(epoch, batch), std::string("the loss is ") + (std::isnan(value) ? "NaN" : "Inf"));
    };
    // Every saved tensor and statistic must be finite (else the file would not load): a run that
    // reaches a NaN or Inf has diverged, and the file it would replace stays.
    auto save_checked = [&](const std::filesystem::path& path, const Optimizer* opt, const std::string& when) {
        if (!std::isfinite(epoch_loss_sum) || !std::isfinite(best_value))
            throw diverged(when, "the epoch's loss sum is " + std::to_string(epoch_loss_sum));
        try {
            save_checkpoint(path, model, info, opt);
        } catch (const NonFiniteTensor& e) {
            throw diverged(when, "tensor '" + e.tensor + "' holds NaN or Inf");
        }
    };
    // (epoch, batch): the step training continues with; `when` names it in a divergence message.
    auto save_last = [&](int epoch, std::size_t batch, const std::string& when) {
        info.epoch = epoch;
        info.batch = batch;
        info.extra["epoch_loss_sum"] = number(epoch_loss_sum, 17);
        info.extra["epoch_loss_count"] = std::to_string(epoch_loss_count);
        info.extra["epoch_seconds"] = number(epoch_seconds, 3);
        info.extra["best_value"] = number(best_value, 17);
        info.extra["best_metric"] = o.best == BestMetric::global_accuracy ? "global_accuracy" : "mean_iou";
        if (dp) dp->average_running_statistics();
        if (writer) save_checked(last_path, optimizer.get(), when);
        saved_last = true;
    };

    Tensor<Device> grad;
    backend::Staging<Device> staging;  // the batch on the device (the CPU uses it in place)
    const std::vector<ParamRef<Device>> trainable = model.parameters();
    std::int64_t steps_this_run = 0;
    training_stop_flag().store(false);
    for (int epoch = start.epoch; epoch < o.epochs; ++epoch) {
        auto epoch_start = Clock::now();
        std::int64_t images = 0;
        if (dp) dp->reset_timing();
        for (;;) {
            std::optional<Batch> batch;
            auto stop_requested = [&] {
                return training_stop_flag().load() || (o.stop_after_steps >= 0 && steps_this_run >= o.stop_after_steps);
            };
            bool stop = false;
            double share_weight = 0;  // data-parallel: this rank's loss weight, for the whole batch's
            if (!dp) {
                batch = loader.next();
                if (!batch) break;
                stop = stop_requested();
            } else {
                // A failure on one rank (a bad file) must stop every rank: agreed before the step.
                std::string failure;
                try {
                    batch = loader.next();
                    if (batch) share_weight = label_weight_sum(batch->labels, o.classes, loss.options());
                } catch (const std::exception& e) {
                    failure = e.what();
                }
                if (failure.empty() && !batch) break;  // the epoch's end: the same batch on every rank
                const StepAgreement a = agree_step(*o.communicator, share_weight, stop_requested(), failure);
                stop = a.stop;
                share_weight = a.weight_sum;
            }
            if (stop) {
                epoch_seconds += std::chrono::duration<double>(Clock::now() - epoch_start).count();
                save_last(epoch, batch->batch, at_step(epoch, batch->batch));
                if (bar) log << "\n";
                log << "segnet-train: stopped at epoch " << epoch + 1 << ", batch " << batch->batch + 1
                    << "; state saved to '" << last_path.string() << "' (resume with --resume)\n";
                result.status = TrainStatus::interrupted;
                return result;
            }
            const std::int64_t step = std::int64_t(epoch) * per_epoch + std::int64_t(batch->batch);
            optimizer->set_lr(schedule(step, total_steps));
            model.set_random_step(std::uint64_t(step));  // Dropout masks: a resumed run draws what an uninterrupted one drew
            double value = 0;
            if (!dp) {
                const Tensor<Device>& logits = model.forward(staging.images(batch->images), Mode::train);
                grad.resize(logits.extents());
                value = loss.forward_backward(logits, staging.labels(batch->labels), grad);
                check_loss(value, epoch, batch->batch);
                model.zero_grad();
                model.backward(grad);
            } else {
                // Every rank's loss divided by the whole batch's weight: the ranks' gradients add up
                // to the whole batch's.
                if (batch->images.n() > 0) {
                    const Tensor<Device>& logits = model.forward(staging.images(batch->images), Mode::train);
                    grad.resize(logits.extents());
                    CrossEntropyOptions share = loss.options();
                    share.batch_weight_sum = share_weight;
                    value = CrossEntropyLoss(share).forward_backward(logits, staging.labels(batch->labels), grad);
                    model.zero_grad();
                    model.backward(grad);
                } else {
                    dp->contribute_nothing();
                }
                value = dp->finish_gradients(value);
                check_loss(value, epoch, batch->batch);
            }
            optimizer->step();
            // A finite loss can still end in an update that overflows: never save such weights.
            if (const auto* p = backend::first_nonfinite(trainable))
                throw diverged(at_step(epoch, batch->batch), "parameter '" + p->name + "' became NaN or Inf after the update");
            ++steps_this_run;
            epoch_loss_sum += value;
            ++epoch_loss_count;
            // data-parallel: the whole batch's images (this rank's share is batch->images)
            const std::size_t first = batch->batch * std::size_t(o.batch_size);
            images += dp ? std::int64_t(std::min(std::size_t(o.batch_size), train_set.size() - first)) : batch->images.n();
            const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
            const double rate = images / std::max(elapsed, 1e-9);
            const std::int64_t done = std::int64_t(batch->batch) + 1;
            const double eta = (per_epoch - done) * (elapsed / std::max<std::int64_t>(1, done - std::int64_t(start.epoch == epoch ? start.batch : 0)));
            if (bar) {
                const int width = 24, filled = int(width * done / per_epoch);
                log << "\repoch " << epoch + 1 << "/" << o.epochs << " [" << std::string(filled, '#')
                    << std::string(width - filled, '.') << "] " << done << "/" << per_epoch << " loss "
                    << number(epoch_loss_sum / epoch_loss_count) << "  " << number(rate, 1) << " img/s  ETA "
                    << format_duration(eta) << "   " << std::flush;
            } else if (lines && (done == per_epoch || done % std::max<std::int64_t>(1, per_epoch / 4) == 0)) {
                log << "epoch " << epoch + 1 << "/" << o.epochs << " batch " << done << "/" << per_epoch << " loss "
                    << number(epoch_loss_sum / epoch_loss_count) << " " << number(rate, 1) << " img/s ETA "
                    << format_duration(eta) << "\n";
            }
        }
        if (bar) log << "\n";
        EpochRecord record;
        record.epoch = epoch + 1;
        record.lr = optimizer->lr();
        record.train_loss = epoch_loss_count ? epoch_loss_sum / double(epoch_loss_count) : 0;
        const double train_seconds = epoch_seconds + std::chrono::duration<double>(Clock::now() - epoch_start).count();
        record.images_per_second = images / std::max(1e-9, std::chrono::duration<double>(Clock::now() - epoch_start).count());
        const bool run_ends = epoch + 1 == o.epochs || (o.stop_after_epoch > 0 && epoch + 1 >= o.stop_after_epoch);
        if (val_set && val_set->size() > 0 && ((epoch + 1) % o.validate_every == 0 || run_ends)) {
            EvaluationOptions eo;
            eo.batch_size = o.batch_size;
            eo.ignore_label = o.ignore_label;
            eo.height = o.validation_height >= 0 ? o.validation_height : o.height;
            eo.width = o.validation_width >= 0 ? o.validation_width : o.width;
            eo.boundary_f1 = o.boundary_f1;
            if (!dp) {
                record.validation = evaluate_model(model, *val_set, eo);
            } else {  // each rank scores its share; the totals summed score the whole set
                dp->average_running_statistics();
                eo.shard = dp->rank();
                eo.shards = dp->size();
                SegmentationEvaluator share = evaluate_share(model, *val_set, eo);
                std::vector<double> totals = share.totals();
                o.communicator->sum(totals.data(), totals.size());
                share.assign_totals(totals);
                record.validation = share.scores();
            }
        }
        record.seconds = epoch_seconds + std::chrono::duration<double>(Clock::now() - epoch_start).count();
        if (dp && dp->steps() > 0) record.allreduce_wait_seconds_per_step = dp->wait_seconds() / double(dp->steps());
        const auto& v = record.validation;
        csv << record.epoch << "," << record.lr << "," << number(record.train_loss, 6) << ","
            << (v ? number(v->global_accuracy, 3) : "") << "," << (v ? number(v->class_accuracy, 3) : "") << ","
            << (v ? number(v->mean_iou, 3) : "") << "," << (v && o.boundary_f1 ? number(v->bf, 3) : "") << ","
            << number(record.seconds, 1) << "\n"
            << std::flush;
        log << "epoch " << record.epoch << "/" << o.epochs << ": loss " << number(record.train_loss) << ", "
            << number(record.images_per_second, 2) << " img/s, " << number(train_seconds, 1) << " s";
        if (v)
            log << "; val G " << number(v->global_accuracy, 2) << " C " << number(v->class_accuracy, 2) << " mIoU "
                << number(v->mean_iou, 2) << (o.boundary_f1 ? " BF " + number(v->bf, 2) : "");
        if (dp)
            log << "; " << dp->size() << " ranks, all-reduce wait " << number(record.allreduce_wait_seconds_per_step * 1e3, 1)
                << " ms/step";
        log << "\n";
        // The epoch's statistics are folded into the record; the next epoch starts from zero.
        epoch_loss_sum = 0;
        epoch_loss_count = 0;
        epoch_seconds = 0;
        bool improved = false;
        if (v) {
            const double value = o.best == BestMetric::global_accuracy ? v->global_accuracy : v->mean_iou;
            if (value > best_value) {
                best_value = value;
                improved = true;
                result.best = v;
            }
        }
        const std::string epoch_end = "at the end of epoch " + std::to_string(epoch + 1);
        save_last(epoch + 1, 0, epoch_end);
        if (improved) {
            info.extra["best_epoch"] = std::to_string(record.epoch);
            if (writer) save_checked(best_path, nullptr, epoch_end);
        }
        result.epochs.push_back(std::move(record));
        if (o.stop_after_epoch > 0 && epoch + 1 >= o.stop_after_epoch) break;
    }
    return result;
}

/// Builds Model<Net, Device> with o.seed and trains it.
template <NetworkType Net, class Device = Cpu>
TrainResult train(const TrainOptions& o, const SegmentationDataset& train_set, const SegmentationDataset* val_set = nullptr) {
    Model<Net, Device> model(o.seed);
    return train<Device>(model, o, train_set, val_set);
}

}  // namespace segnet
