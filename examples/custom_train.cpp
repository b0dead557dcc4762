// custom-train: segnet-train with two networks of your own added to its --model choices.
// The whole program is the registration and one call: the trainer, the options, the
// checkpoints and the metrics are segnet-train's (include/segnet/programs/train.hpp).
//
//   custom-train --model segnet-basic-5 --train camvid/train.txt --val camvid/val.txt --out runs/b5
//   custom-train --model tiny-segnet --classes 4 --ignore -1 --train shapes/list.txt --out runs/tiny
// Evaluate or segment with their checkpoints the same way: register the same networks and call
// segnet::programs::evaluate_main / segment_main.
#include <segnet/programs/train.hpp>

using namespace segnet;

/// SegNet-Basic with a fifth encoder/decoder pair (docs/experiments.md).
struct SegNetBasic5
    : Network<Input<3, dyn, dyn>, models::BasicEncoder<>, models::BasicEncoder<>, models::BasicEncoder<>,
              models::BasicEncoder<>, models::BasicEncoder<>, models::BasicDecoder<>, models::BasicDecoder<>,
              models::BasicDecoder<>, models::BasicDecoder<>, models::BasicDecoder<>, Classifier<11>> {
    static constexpr std::string_view name = "segnet-basic-5";
};
static_assert(parameter_count_v<SegNetBasic5> == parameter_count_v<models::SegNetBasic<11>> + 200'768 + 128 + 200'832);

/// A small SegNet for 4 classes: two 16-channel encoders, index unpooling.
struct TinySegNet : Network<Input<3, dyn, dyn>,
                            Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                            Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                            Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>,
                            Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>, Classifier<4>> {
    static constexpr std::string_view name = "tiny-segnet";
};

int main(int argc, char** argv) {
    models::register_network<SegNetBasic5>();
    models::register_network<TinySegNet>();
    return programs::train_main(argc, argv);
}
