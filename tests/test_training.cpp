// Training end to end: checkpoints, the trainer (learning, exact resume, divergence), evaluation.
#include <doctest/doctest.h>

#include <segnet/train/checkpoint.hpp>
#include <segnet/segnet.hpp>
#include <segnet/data/synthetic.hpp>
#include <segnet/train/trainer.hpp>

#include "tiny_training.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace segnet;
using testing_support::TinyNet;
using testing_support::tiny_options;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("segnet-test-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

template <class Net>
std::vector<float> all_values(Model<Net, Cpu>& m) {
    std::vector<float> v;
    for (auto& p : m.state()) v.insert(v.end(), p.value->data(), p.value->data() + p.value->size());
    return v;
}

}  // namespace

TEST_CASE("checkpoint: save and load restore every tensor and the metadata") {
    const fs::path dir = fresh_dir("ckpt");
    Model<TinyNet, Cpu> a(1), b(2);
    CheckpointInfo info{.model = "tiny", .classes = 4, .ignore_label = 255,
                        .normalization = Normalization::from({0.1f, 0.2f, 0.3f}, {0.5f, 0.6f, 0.7f}),
                        .class_weights = {1.f, 2.f, 3.f, 4.f}, .epoch = 5, .batch = 2, .seed = 9};
    save_checkpoint(dir / "a.safetensors", a, info);
    CHECK(all_values(a) != all_values(b));
    const CheckpointInfo back = load_checkpoint(dir / "a.safetensors", b, "tiny");
    CHECK(all_values(a) == all_values(b));
    CHECK(back.epoch == 5);
    CHECK(back.batch == 2);
    CHECK(back.seed == 9);
    CHECK(back.class_weights == std::vector<float>{1.f, 2.f, 3.f, 4.f});
    CHECK(back.normalization.mean[2] == doctest::Approx(0.3f));
    CHECK(back.normalization.stddev[1] == doctest::Approx(0.6f));
    // PyTorch names and layouts.
    const SafetensorsFile f = SafetensorsFile::load(dir / "a.safetensors");
    CHECK(f.info("encoder0.0.weight").shape == std::vector<std::int64_t>{16, 3, 3, 3});
    CHECK(f.info("encoder0.1.running_var").shape == std::vector<std::int64_t>{16});
    CHECK(f.info("classifier.bias").shape == std::vector<std::int64_t>{4});
    fs::remove_all(dir);
}

TEST_CASE("checkpoint: a checkpoint of another model or a damaged file is refused and leaves the model unchanged") {
    const fs::path dir = fresh_dir("ckpt-bad");
    Model<TinyNet, Cpu> tiny(1);
    Model<models::SegNetBasic<4>, Cpu> basic(1);
    save_checkpoint(dir / "basic.safetensors", basic, {.model = "segnet-basic", .classes = 4});
    const auto before = all_values(tiny);
    CHECK_THROWS_WITH_AS(load_checkpoint(dir / "basic.safetensors", tiny, "tiny"),
                         doctest::Contains("holds model 'segnet-basic', not 'tiny'"), DataError);
    // Without the name check, the first missing/misshapen tensor is named.
    CHECK_THROWS_AS(load_checkpoint(dir / "basic.safetensors", tiny), DataError);
    CHECK(all_values(tiny) == before);
    // Truncated: the reader names the file.
    const std::string bytes = read_bytes(dir / "basic.safetensors");
    std::ofstream(dir / "cut.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    CHECK_THROWS_WITH_AS(load_checkpoint(dir / "cut.safetensors", tiny),
                         doctest::Contains("cut.safetensors"), DataError);
    CHECK(all_values(tiny) == before);
    fs::remove_all(dir);
}

TEST_CASE("trainer: a small SegNet learns the committed shapes set (G >= 95% on its validation images)") {
    const fs::path data = fs::path(SEGNET_TEST_DATA_DIR) / "shapes";
    DatasetOptions d{.classes = 4, .ignore_label = 255, .normalization = Normalization::none()};
    const auto train_set = SegmentationDataset::from_list_file(data / "train" / "list.txt", d);
    const auto val_set = SegmentationDataset::from_list_file(data / "val" / "list.txt", d);
    const fs::path out = fresh_dir("learn");
    TrainOptions o = tiny_options(out);
    o.epochs = 40;
    o.optimizer = "adam";
    o.optimizer_options.lr = 0.01;
    o.optimizer_options.weight_decay = 0.0;
    o.augmentation.horizontal_flip = true;
    const auto t0 = std::chrono::steady_clock::now();
    const TrainResult r = train<TinyNet>(o, train_set, &val_set);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("40 epochs in " << seconds << " s; final val G " << r.epochs.back().validation->global_accuracy
                            << ", best " << r.best->global_accuracy);
    REQUIRE(r.status == TrainStatus::completed);
    CHECK(r.epochs.back().train_loss < r.epochs.front().train_loss);
    CHECK(r.best->global_accuracy >= 95.0);
    CHECK(fs::exists(out / "best.safetensors"));
    // The CSV has a header and one row per epoch.
    std::ifstream csv(out / "log.csv");
    std::string line;
    int rows = 0;
    while (std::getline(csv, line)) ++rows;
    CHECK(rows == 41);
    // The best checkpoint reproduces its validation score.
    Model<TinyNet, Cpu> reloaded(0);
    load_checkpoint(out / "best.safetensors", reloaded, "tiny");
    const SegmentationScores again = evaluate_model(reloaded, val_set, {.batch_size = 4, .ignore_label = 255, .boundary_f1 = false});
    CHECK(again.global_accuracy == doctest::Approx(r.best->global_accuracy));
    fs::remove_all(out);
}

// Trains Net twice on the same data: straight through, and stopped after 4 steps then resumed;
// both runs must end with the same weights, to the bit.
template <class Net>
void check_exact_resume(const std::string& name) {
    segnet::set_num_threads(1);
    const auto data = make_synthetic_dataset({.count = 10, .height = 32, .width = 32, .seed = 5},
                                             {.classes = 4, .ignore_label = 255});
    Augmentation aug{.horizontal_flip = true, .min_scale = 0.8f, .max_scale = 1.2f, .crop_height = 32, .crop_width = 32};

    const fs::path straight = fresh_dir(name + "-straight");
    TrainOptions a = tiny_options(straight);
    a.model_name = name;
    a.epochs = 2;
    a.augmentation = aug;
    REQUIRE(train<Net>(a, data).status == TrainStatus::completed);

    const fs::path split = fresh_dir(name + "-split");
    TrainOptions b = tiny_options(split);
    b.model_name = name;
    b.epochs = 2;
    b.augmentation = aug;
    b.stop_after_steps = 4;  // 3 batches per epoch: stops inside epoch 2
    REQUIRE(train<Net>(b, data).status == TrainStatus::interrupted);
    CHECK(read_checkpoint_info(split / "last.safetensors").epoch == 1);
    CHECK(read_checkpoint_info(split / "last.safetensors").batch == 1);
    b.stop_after_steps = -1;
    b.resume = split / "last.safetensors";
    REQUIRE(train<Net>(b, data).status == TrainStatus::completed);

    Model<Net, Cpu> ma(0), mb(0);
    load_checkpoint(straight / "last.safetensors", ma, name);
    load_checkpoint(split / "last.safetensors", mb, name);
    CHECK(all_values(ma) == all_values(mb));
    segnet::set_num_threads(backend::cpu::default_threads());
    fs::remove_all(straight);
    fs::remove_all(split);
}

// TinyNet with Dropout in a decoder: its masks depend on the step, which the trainer sets.
struct TinyDropoutNet : Network<Input<3, dyn, dyn>,
                                Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                                Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU, Dropout<50>>>,
                                Classifier<4>> {
    static constexpr std::string_view name = "tiny-dropout";
};

TEST_CASE("trainer: an interrupted and resumed run ends with the same weights as an uninterrupted one") {
    check_exact_resume<TinyNet>("tiny");
}

TEST_CASE("trainer: with Dropout, a resumed run draws the uninterrupted run's masks (same weights)") {
    check_exact_resume<TinyDropoutNet>("tiny-dropout");
}

TEST_CASE("trainer: a diverging run stops with a clear message and keeps the last good checkpoint") {
    const auto data = make_synthetic_dataset({.count = 8, .height = 32, .width = 32, .seed = 6},
                                             {.classes = 4, .ignore_label = 255});
    const fs::path out = fresh_dir("diverge");
    TrainOptions o = tiny_options(out);
    o.epochs = 1;
    REQUIRE(train<TinyNet>(o, data).status == TrainStatus::completed);
    const std::string good = read_bytes(out / "last.safetensors");
    o.epochs = 3;
    o.resume = out / "last.safetensors";
    o.optimizer_options.lr = 1e30;
    CHECK_THROWS_WITH_AS(train<TinyNet>(o, data), doctest::Contains("training diverged at epoch 2"), TrainingDiverged);
    CHECK(read_bytes(out / "last.safetensors") == good);
    fs::remove_all(out);
}

TEST_CASE("checkpoint: non-finite tensors are never written over a file that loads") {
    const fs::path dir = fresh_dir("ckpt-nonfinite");
    Model<TinyNet, Cpu> m(1);
    const CheckpointInfo info{.model = "tiny", .classes = 4};
    save_checkpoint(dir / "last.safetensors", m, info);
    const std::string good = read_bytes(dir / "last.safetensors");
    for (auto& p : m.state())
        if (p.name.ends_with("running_var")) p.value->data()[0] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(save_checkpoint(dir / "last.safetensors", m, info),
                         doctest::Contains("running_var' holds NaN or Inf"), NonFiniteTensor);
    CHECK(read_bytes(dir / "last.safetensors") == good);
    CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);  // no temporary left
    fs::remove_all(dir);
}

TEST_CASE("checkpoint: metadata that would garble every pixel or wrap a counter is refused on load") {
    const fs::path dir = fresh_dir("ckpt-meta");
    Model<TinyNet, Cpu> m(1);
    save_checkpoint(dir / "good.safetensors", m, {.model = "tiny", .classes = 4});
    const SafetensorsFile f = SafetensorsFile::load(dir / "good.safetensors");
    auto with = [&](const std::string& key, const std::string& value) {
        std::map<std::string, std::string> meta = f.metadata();
        meta[key] = value;
        std::vector<SafetensorsEntry> entries;
        std::vector<std::vector<float>> values;
        values.reserve(f.tensors().size());
        for (const auto& t : f.tensors()) {
            values.push_back(f.read(t.name, t.shape));
            entries.push_back({t.name, t.shape, values.back().data()});
        }
        write_safetensors(dir / "bad.safetensors", entries, meta);
        return dir / "bad.safetensors";
    };
    CHECK_THROWS_WITH_AS(read_checkpoint_info(with("normalization_std", "0.2,0,0.2")),
                         doctest::Contains("normalization std 1 is 0.000000, not a positive number"), DataError);
    CHECK_THROWS_WITH_AS(read_checkpoint_info(with("normalization_mean", "nan,0,0")),
                         doctest::Contains("normalization mean 0 is not a finite number"), DataError);
    CHECK_THROWS_WITH_AS(read_checkpoint_info(with("normalization_scale", "inf")),
                         doctest::Contains("normalization scale inf is not a positive number"), DataError);
    CHECK_THROWS_WITH_AS(read_checkpoint_info(with("epoch", "99999999999")),
                         doctest::Contains("metadata 'epoch' is 99999999999, outside 0..1000000"), DataError);
    CHECK_THROWS_WITH_AS(read_checkpoint_info(with("batch", "-1")),
                         doctest::Contains("metadata 'batch' is -1, outside"), DataError);
    fs::remove_all(dir);
}

TEST_CASE("checkpoint: a negative running variance is refused on load, the model unchanged") {
    const fs::path dir = fresh_dir("ckpt-var");
    Model<TinyNet, Cpu> m(1), other(2);
    for (auto& p : m.state())
        if (p.name == "encoder0.1.running_var") p.value->data()[3] = -1.f;
    save_checkpoint(dir / "neg.safetensors", m, {.model = "tiny", .classes = 4});
    const auto before = all_values(other);
    CHECK_THROWS_WITH_AS(load_checkpoint(dir / "neg.safetensors", other, "tiny"),
                         doctest::Contains("'encoder0.1.running_var' holds a negative variance"), DataError);
    CHECK(all_values(other) == before);
    fs::remove_all(dir);
}

TEST_CASE("resume_state: a crafted value names the file and the key") {
    CheckpointInfo info;
    info.extra = {{"epoch_loss_sum", "12.5"}, {"epoch_loss_count", "3"}};
    const ResumeState r = resume_state(info, "run/last.safetensors");
    CHECK(r.epoch_loss_sum == 12.5);
    CHECK(r.epoch_loss_count == 3);
    CHECK(r.best_value == -1);
    info.extra["epoch_loss_sum"] = "abc";
    CHECK_THROWS_WITH_AS(resume_state(info, "run/last.safetensors"),
                         doctest::Contains("checkpoint 'run/last.safetensors': metadata 'epoch_loss_sum' is not a finite number ('abc')"),
                         DataError);
    info.extra["epoch_loss_sum"] = "1";
    info.extra["epoch_loss_count"] = "nan";
    CHECK_THROWS_WITH_AS(resume_state(info, "x"), doctest::Contains("'epoch_loss_count' is not a finite number"), DataError);
    info.extra["epoch_loss_count"] = "-2";
    CHECK_THROWS_WITH_AS(resume_state(info, "x"), doctest::Contains("not a count of steps"), DataError);
}

TEST_CASE("keep_log_rows_through: drops the rows after the resumed epoch, keeps the header") {
    const fs::path dir = fresh_dir("log-rows");
    const std::string header = "epoch,lr,train_loss,val_global_accuracy,val_class_accuracy,val_mean_iou,val_bf,seconds\n";
    std::ofstream(dir / "log.csv") << header << "1,0.1,2,,,,,1\n2,0.1,1.5,,,,,1\n3,0.1,1.2,,,,,1\n";
    keep_log_rows_through(dir / "log.csv", 1);
    CHECK(read_bytes(dir / "log.csv") == header + "1,0.1,2,,,,,1\n");
    keep_log_rows_through(dir / "log.csv", 5);  // nothing later: unchanged
    CHECK(read_bytes(dir / "log.csv") == header + "1,0.1,2,,,,,1\n");
    fs::remove_all(dir);
}

TEST_CASE("trainer: a resumed run lists every epoch once in log.csv; a fresh run starts it anew") {
    const auto data = make_synthetic_dataset({.count = 4, .height = 16, .width = 16, .seed = 2},
                                             {.classes = 4, .ignore_label = 255});
    const fs::path out = fresh_dir("log-resume");
    TrainOptions o = tiny_options(out);
    o.epochs = 1;
    REQUIRE(train<TinyNet>(o, data).status == TrainStatus::completed);
    fs::copy_file(out / "last.safetensors", out / "epoch1.safetensors");
    o.epochs = 2;
    o.resume = out / "last.safetensors";
    REQUIRE(train<TinyNet>(o, data).status == TrainStatus::completed);
    o.resume = out / "epoch1.safetensors";  // back to epoch 1: its epoch 2 row goes
    REQUIRE(train<TinyNet>(o, data).status == TrainStatus::completed);
    std::istringstream rows(read_bytes(out / "log.csv"));
    std::string line;
    std::vector<char> epochs;
    while (std::getline(rows, line)) epochs.push_back(line[0]);
    CHECK(epochs == std::vector<char>{'e', '1', '2'});
    o.resume.clear();
    o.epochs = 1;
    REQUIRE(train<TinyNet>(o, data).status == TrainStatus::completed);
    const std::string fresh_log = read_bytes(out / "log.csv");
    CHECK(std::count(fresh_log.begin(), fresh_log.end(), '\n') == 2);
    fs::remove_all(out);
}

TEST_CASE("trainer: temporaries a killed save left in out_dir are removed by the next run") {
    const auto data = make_synthetic_dataset({.count = 4, .height = 16, .width = 16, .seed = 2},
                                             {.classes = 4, .ignore_label = 255});
    const fs::path out = fresh_dir("stale-tmp");
    std::ofstream(out / ".last.safetensors.tmp-999999999-0") << "half a checkpoint";
    TrainOptions o = tiny_options(out);
    REQUIRE(train<TinyNet>(o, data).status == TrainStatus::completed);
    CHECK(!fs::exists(out / ".last.safetensors.tmp-999999999-0"));
    CHECK(fs::exists(out / "last.safetensors"));
    fs::remove_all(out);
}

namespace {
// A communicator of one rank whose sums and broadcasts change nothing (one rank's sum is itself).
struct OneRank : Communicator {
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void sum(double*, std::size_t) override {}
    void start_sum(float*, std::size_t) override {}
    void wait_all() override {}
    void broadcast(void*, std::size_t, int) override {}
    Communicator& statistics() override { return *this; }
    [[noreturn]] void abort(int) override { std::abort(); }
};
}  // namespace

TEST_CASE("data parallel: gradient buckets start while backward is still running, one per bucket") {
    // Records, at each bucket's start, whether backward had already reached the first layer (its
    // weight gradient no longer zero).
    struct Recorder final : OneRank {
        const Tensor<Cpu>* first_layer_grad = nullptr;
        std::vector<bool> first_layer_done;
        void start_sum(float*, std::size_t) override {
            const float* g = first_layer_grad->data();
            first_layer_done.push_back(std::any_of(g, g + first_layer_grad->size(), [](float v) { return v != 0; }));
        }
    };
    const auto data = make_synthetic_dataset({.count = 2, .height = 16, .width = 16, .seed = 2}, {.ignore_label = 255});
    Tensor<Cpu> images({2, 3, 16, 16});
    Tensor<Cpu, std::uint8_t> labels({2, 1, 16, 16});
    for (int k = 0; k < 2; ++k) {
        const Sample s = data.load(std::size_t(k));
        std::copy_n(s.image.data(), s.image.size(), images.image(k).data());
        std::copy_n(s.label.data(), s.label.size(), labels.image(k).data());
    }
    for (const std::size_t bucket_bytes : {std::size_t(4096), DataParallelOptions{}.bucket_bytes}) {
        CAPTURE(bucket_bytes);
        Model<TinyNet, Cpu> m(3);
        Recorder recorder;
        for (auto& p : m.parameters())
            if (p.name == "encoder0.0.weight") recorder.first_layer_grad = p.grad;
        REQUIRE(recorder.first_layer_grad);
        DataParallel<Cpu> dp(m, recorder, {.bucket_bytes = bucket_bytes});
        const Tensor<Cpu>& logits = m.forward(images, Mode::train);
        Tensor<Cpu> grad(logits.extents());
        CrossEntropyLoss({.ignore_label = 255}).forward_backward(logits, labels, grad);
        m.zero_grad();
        m.backward(grad);
        dp.finish_gradients(0);
        // TinyNet's gradients are about 30 KB: several buckets of 4 KB, one of 25 MB.
        CHECK((dp.buckets() > 1) == (bucket_bytes == 4096));
        REQUIRE(recorder.first_layer_done.size() == dp.buckets());
        // The last bucket holds the first layer: it starts once backward has passed it.
        CHECK(recorder.first_layer_done.back());
        if (dp.buckets() > 1) CHECK_FALSE(recorder.first_layer_done.front());  // the others: before
    }
}

TEST_CASE("data parallel: a model on the CPU refuses a communicator that sums device memory (NCCL's)") {
    struct DeviceSums final : OneRank {
        bool sums_device_memory() const override { return true; }
    };
    Model<TinyNet, Cpu> m(3);
    DeviceSums nccl_like;
    CHECK_THROWS_WITH_AS(DataParallel<Cpu>(m, nccl_like), doctest::Contains("needs a communicator that sums host memory"),
                         std::invalid_argument);
    OneRank host;
    CHECK_NOTHROW(DataParallel<Cpu>(m, host));
}
