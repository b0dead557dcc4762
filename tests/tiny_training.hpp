// The small network and the training options the training tests share (tests/test_training.cpp,
// tests/distributed/test_distributed.cpp): seconds per run on synthetic 16x16..64x64 images.
#pragma once

#include <segnet/segnet.hpp>
#include <segnet/train/trainer.hpp>

#include <filesystem>
#include <sstream>

namespace segnet::testing_support {

// A small SegNet: two encoders of 16 channels, index unpooling, 4 shape classes.
struct TinyNet : Network<Input<3, dyn, dyn>,
                         Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                         Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                         Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>,
                         Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>,
                         Classifier<4>> {
    static constexpr std::string_view name = "tiny";
};

inline TrainOptions tiny_options(const std::filesystem::path& out) {
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

}  // namespace segnet::testing_support
