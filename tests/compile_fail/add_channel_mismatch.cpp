// Compile-fail test: an Add whose decoder map was reduced to 32 channels while the paired
// Encoder's feature map has 64. Positive control: the 1x1 conv keeps 64 channels.
#include <segnet/compose/network.hpp>
#include <segnet/layers/add.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int decoder_channels = 32;
#else
inline constexpr int decoder_channels = 64;
#endif

struct Net : Network<Input<3, 360, 480>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Conv<decoder_channels, 1>, Add, Block<Conv<64, 7>, BatchNorm>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<11>> {};

[[maybe_unused]] constexpr int classes_out = output_shape_t<Net, Shape<3, 360, 480>>::channels;
