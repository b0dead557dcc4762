// segnet/models/unet.hpp: U-Net (Ronneberger, Fischer and Brox, MICCAI 2015) with same padding.
//
//   Model<models::UNet<2>, Cpu> model(42);
//   static_assert(parameter_count_v<models::UNet<2>> == 31'030'850);
//   using Out = output_shape_t<models::UNet<2>, Shape<3, 256, 256>>;   // 2x256x256
//
// The paper's network: per level two 3x3 convolutions with ReLU (64, 128, 256, 512 maps, then
// 1024 at the bottom), 2x2 max pooling between levels; on the way up a 2x2 up-convolution
// (transposed convolution, stride 2) that halves the maps, concatenation with the encoder's map of
// that level (up-convolved first, then the encoder's: [x, feature]), two 3x3 convolutions with
// ReLU, and a 1x1 classifier. No batch norm, as the paper. Where this differs from the paper, and
// why:
//   - same padding (the choice) instead of valid convolutions with cropped skips, so the
//     output is the input's size. Any input size works: pooling rounds up (ceil) and each
//     up-convolution's output is cropped to its encoder's size, so sizes divisible by 16 (no
//     rounding at any level) give exactly the paper's arithmetic;
//   - the up-convolutions have no bias (the library's TransposedConv); the next convolution's bias
//     absorbs a constant per channel everywhere but at the borders: 960 parameters fewer than
//     implementations with one;
//   - no dropout at the end of the contracting path (the paper's data augmentation detail); add
//     Dropout<50> after UNetLevel<512> for it.
// Parameter count (3x3 convs with bias: 9 * in * out + out; up-convs 4 * in * out):
//   contracting path: 38,720 + 221,440 + 885,248 + 3,539,968          =  4,685,376
//   bottom (512 -> 1024 -> 1024): 4,719,616 + 9,438,208               = 14,157,824
//   up-convolutions: 2,097,152 + 524,288 + 131,072 + 32,768           =  2,785,280
//   expanding path: 7,078,912 + 1,769,984 + 442,624 + 110,720         =  9,402,240
//   classifier: 64 * K + K                                            =  65 K
//   total: 31,030,720 + 65 K  (K = 2: 31,030,850; K = 11: 31,031,435; K = 21: 31,032,085)
// (the paper gives no count; PyTorch ports with bias on the up-convolutions and no batch norm
// report 31,031,810 for K = 2, the 960 biases more.)
#pragma once

#include <string_view>

#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/layers/skip.hpp"
#include "segnet/layers/upsample.hpp"
#include "segnet/models/paper.hpp"

namespace segnet::models {

/// One U-Net level: two 3x3 convolutions to C maps, each followed by ReLU.
template <int C>
using UNetLevel = Block<Conv<C, 3>, ReLU, Conv<C, 3>, ReLU>;

/// Up one level: 2x2 up-convolution to C maps, [x, the encoder's map], then a U-Net level.
template <int C>
using UNetUp = Decoder<TransposedConv<C, 2, 2, UpsampleInit::he>, Concat, UNetLevel<C>>;

template <int Classes>
struct UNet
    : Network<Input<3, dyn, dyn>,
              Encoder<UNetLevel<64>, MaxPool<2>>,
              Encoder<UNetLevel<128>, MaxPool<2>>,
              Encoder<UNetLevel<256>, MaxPool<2>>,
              Encoder<UNetLevel<512>, MaxPool<2>>,
              UNetLevel<1024>,
              UNetUp<512>,
              UNetUp<256>,
              UNetUp<128>,
              UNetUp<64>,
              Classifier<Classes>> {
    static constexpr std::string_view name = "unet";
    static constexpr PaperFigures paper{};  // not in the SegNet paper
};

static_assert(parameter_count_v<UNet<2>> == 31'030'850, "U-Net: the count in the header comment");
static_assert(parameter_count_v<UNet<11>> == 31'031'435, "U-Net: the count in the header comment");
static_assert(parameter_count_v<UNet<21>> == 31'032'085, "U-Net: the count in the header comment");

}  // namespace segnet::models
