// Training end to end: checkpoints, the trainer (learning, exact resume, divergence), evaluation.
#include <doctest/doctest.h>

#include <segnet/train/checkpoint.hpp>
#include <segnet/segnet.hpp>
#include <segnet/data/synthetic.hpp>
#include <segnet/train/trainer.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace segnet;
namespace fs = std::filesystem;

namespace {

// A small SegNet: two encoders of 16 channels, index unpooling, 4 shape classes.
struct TinyNet : Network<Input<3, dyn, dyn>,
                         Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                         Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                         Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>,
                         Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>,
                         Classifier<4>> {
    static constexpr std::string_view name = "tiny";
};

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

std::vector<float> all_values(Model<TinyNet, Cpu>& m) {
    std::vector<float> v;
    for (auto& p : m.state()) v.insert(v.end(), p.value->data(), p.value->data() + p.value->size());
    return v;
}

TrainOptions tiny_options(const fs::path& out) {
    TrainOptions o;
    o.model_name = "tiny";
    o.classes = 4;
    o.ignore_label = 255;
    o.batch_size = 4;
    o.optimizer = "sgd";
    o.optimizer_options.lr = 0.05;
    o.out_dir = out;
    o.seed = 3;
    o.boundary_f1 = false;
    o.progress = ProgressStyle::none;
    static std::ostringstream sink;
    o.log = &sink;
    return o;
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

TEST_CASE("trainer: an interrupted and resumed run ends with the same weights as an uninterrupted one") {
    cpu::set_num_threads(1);
    const auto data = make_synthetic_dataset({.count = 10, .height = 32, .width = 32, .seed = 5},
                                             {.classes = 4, .ignore_label = 255});
    Augmentation aug{.horizontal_flip = true, .min_scale = 0.8f, .max_scale = 1.2f, .crop_height = 32, .crop_width = 32};

    const fs::path straight = fresh_dir("straight");
    TrainOptions a = tiny_options(straight);
    a.epochs = 2;
    a.augmentation = aug;
    REQUIRE(train<TinyNet>(a, data).status == TrainStatus::completed);

    const fs::path split = fresh_dir("split");
    TrainOptions b = tiny_options(split);
    b.epochs = 2;
    b.augmentation = aug;
    b.stop_after_steps = 4;  // 3 batches per epoch: stops inside epoch 2
    REQUIRE(train<TinyNet>(b, data).status == TrainStatus::interrupted);
    CHECK(read_checkpoint_info(split / "last.safetensors").epoch == 1);
    CHECK(read_checkpoint_info(split / "last.safetensors").batch == 1);
    b.stop_after_steps = -1;
    b.resume = split / "last.safetensors";
    REQUIRE(train<TinyNet>(b, data).status == TrainStatus::completed);

    Model<TinyNet, Cpu> ma(0), mb(0);
    load_checkpoint(straight / "last.safetensors", ma, "tiny");
    load_checkpoint(split / "last.safetensors", mb, "tiny");
    CHECK(all_values(ma) == all_values(mb));
    cpu::set_num_threads(cpu::default_threads());
    fs::remove_all(straight);
    fs::remove_all(split);
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
