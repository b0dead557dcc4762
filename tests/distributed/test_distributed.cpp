// Data-parallel training over MPI (train/data_parallel.hpp, distributed/mpi.hpp), run by CTest as
// `mpirun -np 2 --oversubscribe test_distributed` with one thread per rank. Every test case runs
// on both ranks; the single-process references are computed by rank 0 alone, in the same process.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <segnet/data/synthetic.hpp>
#include <segnet/distributed/mpi.hpp>
#include <segnet/segnet.hpp>
#include <segnet/train/trainer.hpp>

#include "../tiny_training.hpp"
#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace segnet;
using testing_support::max_relative_difference;
using testing_support::TinyNet;
using testing_support::run_tests_on_every_rank;
using testing_support::tiny_options;
namespace fs = std::filesystem;

namespace {

MpiCommunicator* world = nullptr;

// One folder for both ranks (rank 0's process id, broadcast), emptied by rank 0.
fs::path shared_dir(const std::string& name) {
    double id = double(::getpid());
    world->broadcast(&id, sizeof id, 0);
    const fs::path dir = fs::temp_directory_path() / ("segnet-mpi-" + name + "-" + std::to_string(long(id)));
    if (world->rank() == 0) {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    double done = 0;
    world->sum(&done, 1);  // the folder exists before any rank uses it
    return dir;
}

std::vector<float> state_of(AnyModel<Cpu>& m) {
    std::vector<float> v;
    for (auto& p : m.state()) v.insert(v.end(), p.value->data(), p.value->data() + p.value->size());
    return v;
}

std::vector<float> checkpoint_state(const fs::path& file) {
    Model<TinyNet, Cpu> m(0);
    load_checkpoint(file, m, "tiny");
    return state_of(m);
}

// Float sums in another order (per rank, then across ranks) over three SGD steps: measured
// differences are about 1e-7 (2026-12-03); a wrong gradient or statistic is off by 1e-2 or more.
constexpr double same_weights = 1e-4;

// The sum over ranks of a value: every rank ends with the same state when the sum of each is
// N times rank 0's.
bool every_rank_has(const std::vector<float>& mine) {
    double checksum = 0;
    for (std::size_t i = 0; i < mine.size(); ++i) checksum += double(mine[i]) * double(i % 7 + 1);
    std::vector<double> v{checksum, checksum * checksum};
    world->sum(v.data(), v.size());
    const double n = world->size(), mean = v[0] / n;
    return std::abs(v[1] / n - mean * mean) <= 1e-9 * std::max(1.0, mean * mean);
}

// Trains `data` with synchronized batch norm on the 2 ranks and, on rank 0, alone; checks that
// every rank ends with the same state and that it is one process's. Returns the run's folder.
fs::path check_sync_bn_matches_one_process(const SegmentationDataset& data, const std::string& name,
                                            std::size_t bucket_bytes) {
    const fs::path dir = shared_dir(name);
    std::vector<float> single;
    if (world->rank() == 0) {
        Model<TinyNet, Cpu> m(3);
        REQUIRE(train(m, tiny_options(dir / "single"), data).status == TrainStatus::completed);
        single = state_of(m);
    }
    TrainOptions o = tiny_options(dir / "ranks");
    o.communicator = world;
    o.data_parallel.synchronized_batch_norm = true;
    o.data_parallel.bucket_bytes = bucket_bytes;
    Model<TinyNet, Cpu> m(world->rank() == 0 ? 3 : 100);  // rank 1 starts elsewhere: rank 0's state is broadcast
    REQUIRE(train(m, o, data).status == TrainStatus::completed);
    CHECK(every_rank_has(state_of(m)));
    if (world->rank() == 0) {
        CHECK(max_relative_difference(state_of(m), single) <= same_weights);
        CHECK(state_of(m) == checkpoint_state(dir / "ranks" / "last.safetensors"));
    }
    return dir;
}

}  // namespace

TEST_CASE("synchronized batch norm: 2 ranks x 2 images train the weights 1 process x 4 images trains") {
    const auto data = make_synthetic_dataset({.count = 12, .height = 16, .width = 16, .seed = 4},
                                             {.ignore_label = 255});  // 3 steps of 4 images
    // Buckets of 4 KB: several, started as backward goes.
    const fs::path dir = check_sync_bn_matches_one_process(data, "sync", 4096);
    if (world->rank() == 0) CHECK(fs::exists(dir / "ranks" / "log.csv"));
}

TEST_CASE("synchronized batch norm: a last batch of 1 image (rank 1's share empty) still matches 1 process") {
    const auto data = make_synthetic_dataset({.count = 9, .height = 16, .width = 16, .seed = 8}, {.ignore_label = 255});
    check_sync_bn_matches_one_process(data, "tail", DataParallelOptions{}.bucket_bytes);
}

TEST_CASE("per-rank batch norm: a step is the mean of the halves' gradients, each normalised by its own statistics") {
    const auto data = make_synthetic_dataset({.count = 4, .height = 16, .width = 16, .seed = 5}, {.ignore_label = 255});
    const fs::path dir = shared_dir("per-rank");
    TrainOptions o = tiny_options(dir / "ranks");
    o.communicator = world;
    Model<TinyNet, Cpu> m(3);
    REQUIRE(train(m, o, data).status == TrainStatus::completed);  // one step of 4 images
    CHECK(every_rank_has(state_of(m)));
    if (world->rank() != 0) return;
    // The documented difference, computed by hand: rank r's half is the positions r, r + 2 of
    // the shuffled order; each half's gradient uses its own batch statistics (images of equal
    // size, no ignored pixel: the whole batch's gradient is the halves' mean); the running
    // statistics are the halves' mean.
    const auto order = BatchLoader::epoch_order(data.size(), o.seed, 0, true);
    Model<TinyNet, Cpu> half[2] = {Model<TinyNet, Cpu>(3), Model<TinyNet, Cpu>(3)};
    const CrossEntropyLoss loss({.ignore_label = 255});
    for (int r = 0; r < 2; ++r) {
        Tensor<Cpu> images({2, 3, 16, 16});
        Tensor<Cpu, std::uint8_t> labels({2, 1, 16, 16});
        for (int k = 0; k < 2; ++k) {
            const Sample s = data.load(order[std::size_t(r + 2 * k)]);
            std::copy_n(s.image.data(), s.image.size(), images.image(k).data());
            std::copy_n(s.label.data(), s.label.size(), labels.image(k).data());
        }
        const Tensor<Cpu>& logits = half[r].forward(images, Mode::train);
        Tensor<Cpu> grad(logits.extents());
        loss.forward_backward(logits, labels, grad);
        half[r].zero_grad();
        half[r].backward(grad);
    }
    auto a = half[0].state();
    auto b = half[1].state();
    for (std::size_t i = 0; i < a.size(); ++i) {
        Tensor<Cpu>* into = a[i].grad ? a[i].grad : a[i].value;  // gradients; running statistics
        const Tensor<Cpu>* other = b[i].grad ? b[i].grad : b[i].value;
        for (std::int64_t j = 0; j < into->size(); ++j) into->data()[j] = 0.5f * (into->data()[j] + other->data()[j]);
    }
    OptimizerOptions opt;
    opt.lr = 0.05;
    make_optimizer("sgd", half[0].parameters(), opt)->step();
    CHECK(max_relative_difference(state_of(m), state_of(half[0])) <= same_weights);
    // ... which is not one process's step on the 4 images: the statistics differ.
    Model<TinyNet, Cpu> single(3);
    REQUIRE(train(single, tiny_options(dir / "single"), data).status == TrainStatus::completed);
    CHECK(max_relative_difference(state_of(m), state_of(single)) > 10 * same_weights);
}

TEST_CASE("a bad file on one rank stops every rank with its message") {
    const fs::path dir = shared_dir("bad-file");
    const SyntheticOptions so{.count = 8, .height = 16, .width = 16, .seed = 6};
    TrainOptions o = tiny_options(dir / "run");
    // Position 5 of the first epoch's order is rank 1's (positions 1, 3, 5, 7): rank 0 never reads it.
    const std::size_t bad = BatchLoader::epoch_order(8, o.seed, 0, true)[5];
    char name[32];
    std::snprintf(name, sizeof name, "%04zu.png", bad);
    if (world->rank() == 0) {
        write_synthetic_dataset(dir / "data", so);
        std::ofstream(dir / "data" / "images" / name, std::ios::trunc) << "not a png";
    }
    double done = 0;
    world->sum(&done, 1);
    const auto data = SegmentationDataset::from_list_file(dir / "data" / "list.txt", {.classes = 4, .ignore_label = 255});
    o.communicator = world;
    Model<TinyNet, Cpu> m(3);
    CHECK_THROWS_WITH_AS(train(m, o, data), doctest::Contains(name), RanksStopped);
    // Stopped before the step that needed the file: the run's first step was the only one.
    if (world->rank() == 0) CHECK_FALSE(fs::exists(dir / "run" / "last.safetensors"));
}

TEST_CASE("a run of 2 ranks, stopped, resumed by 1 process continues where it stopped") {
    const auto data = make_synthetic_dataset({.count = 12, .height = 16, .width = 16, .seed = 7}, {.ignore_label = 255});
    const fs::path dir = shared_dir("resume");
    TrainOptions o = tiny_options(dir / "run");
    o.epochs = 2;  // 6 steps
    o.communicator = world;
    o.data_parallel.synchronized_batch_norm = true;
    o.stop_after_steps = 4;  // stops at epoch 2, batch 2
    Model<TinyNet, Cpu> m(3);
    REQUIRE(train(m, o, data).status == TrainStatus::interrupted);
    if (world->rank() != 0) return;
    const CheckpointInfo saved = read_checkpoint_info(dir / "run" / "last.safetensors");
    CHECK(saved.epoch == 1);
    CHECK(saved.batch == 1);
    TrainOptions alone = tiny_options(dir / "run");
    alone.epochs = 2;
    alone.resume = dir / "run" / "last.safetensors";
    Model<TinyNet, Cpu> resumed(0);
    REQUIRE(train(resumed, alone, data).status == TrainStatus::completed);
    TrainOptions whole = tiny_options(dir / "whole");
    whole.epochs = 2;
    Model<TinyNet, Cpu> uninterrupted(3);
    REQUIRE(train(uninterrupted, whole, data).status == TrainStatus::completed);
    CHECK(max_relative_difference(state_of(resumed), state_of(uninterrupted)) <= same_weights);
}

int main(int argc, char** argv) {
    MpiSession mpi(argc, argv);
    MpiCommunicator communicator;
    world = &communicator;
    if (communicator.size() != 2) {
        std::fprintf(stderr, "test_distributed: run it with mpirun -np 2 (got %d ranks)\n", communicator.size());
        return 1;
    }
    segnet::set_num_threads(1);
    return run_tests_on_every_rank(communicator, argc, argv);
}
