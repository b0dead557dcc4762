// segnet/models/fcn_vgg16.hpp: FCN-8s (Long, Shelhamer and Darrell, CVPR 2015) on VGG16, the SegNet
// paper's "FCN (learnt deconv)" of Tables 3 and 6.
//
//   Model<models::FcnVgg16<21>, Cpu> model(42);
//   static_assert(parameter_count_v<models::FcnVgg16<21>> == 134'489'759);
//   using Out = output_shape_t<models::FcnVgg16<11>, Shape<3, 360, 480>>;   // 11x360x480
//
// As the authors' voc-fcn8s: VGG16's 13 convolutions (3x3, bias, ReLU, no batch norm) with 2x2
// max pools (Caffe's ceil rounding); fc6 a 7x7 convolution to 4096 maps and fc7 1x1 to 4096, each
// ReLU + Dropout 0.5; score_fr 1x1 to K; upscore2 (4x4 stride 2 transposed convolution) added to
// score_pool4 (1x1 to K on pool4's OUTPUT); upscore_pool4 (4x4 stride 2) added to score_pool3 (on
// pool3's output); upscore8 (16x16 stride 8) to the input's size. The three transposed
// convolutions are learnt, bilinear-initialised and without bias (ConvTranspose2d, the paper's
// "learnt deconv"; voc-fcn8s's net.py, as we recall it, freezes them with lr_mult 0: not checked here). Where this differs from Caffe, and why:
//   - Caffe's FCN pads conv1_1 by 100 and crops each sum and the output back (offsets 5, 9, 31):
//     an artefact of fitting any input through the valid 7x7 fc6. Here fc6 is same-padded (pad
//     3) and each crop keeps the top-left rows and columns (CroppedToInput, offset 0): each 2x
//     upscore gives 2 ceil(H / 2) rows, cropped to the H of the pooled map it is added to, and
//     upscore8 gives 8 ceil(H / 8), cropped to the input's. Any input size works (1x1 and up).
//   - The skips are written as nested sums, not Encoder/Decoder pairs: a Decoder restores and
//     reads its Encoder's PRE-pool map, so pairing with pool5's Encoder would add conv5_3's map
//     (the right size, the wrong map) where FCN adds pool4's output, and no Encoder boundary can
//     make pool4's output a pre-pool map without pooling it once more before conv5. Branches
//     <Merge::sum, score_pool4, CroppedToInput<Block<conv5 ... score_fr, upscore2>>> on pool4's
//     output is exactly FCN's fuse_pool4 (and likewise one level up for fuse_pool3).
// Parameter count (3x3 convs 9 in out + out; transposed convs in out kernel^2, no bias):
//   VGG16 convs (as DeepLab-LargeFOV's)                                    =  14,714,688
//   fc6: 49 * 512 * 4096 + 4096                                            = 102,764,544
//   fc7: 4096 * 4096 + 4096                                                =  16,781,312
//   score_fr, score_pool4, score_pool3: (4096 + 512 + 256) K + 3 K          =   4,867 K
//   upscore2, upscore_pool4: 2 x 16 K^2; upscore8: 256 K^2                 =     288 K^2
//   total: 134,260,544 + 4,867 K + 288 K^2   (K = 21: 134,489,759; K = 11: 134,348,929)
// At K = 21 these take 538 MB as float32, the 539 MB of the SegNet paper's Table 6. (A figure of
// 134,270,278 quoted for voc-fcn8s does not decompose into these layers: 9,734 more than the
// convolutions and fc layers alone, far fewer than the score and upscore layers' 229,215.)
// Exports to ONNX (Branches: Add; CroppedToInput: Slice; export/onnx.hpp).
#pragma once

#include <string_view>
#include <type_traits>

#include "segnet/compose/branches.hpp"
#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"  // ReLU
#include "segnet/layers/conv.hpp"
#include "segnet/layers/dropout.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/layers/upsample.hpp"
#include "segnet/models/vgg.hpp"
#include "segnet/models/paper.hpp"

namespace segnet::models {

/// FCN's max pooling: 2x2, stride 2, Caffe's ceil rounding.
using FcnPool = MaxPoolWindow<2, 2, 0, PoolRounding::ceil>;

/// FCN's learnt upsampling by Factor (kernel 2 Factor, pad Factor / 2: exactly Factor H), bilinear-initialised.
template <int C, int Factor>
using FcnUpscore = ConvTranspose2d<C, 2 * Factor, Factor, Factor / 2, UpsampleInit::bilinear>;

/// FCN's score layer: 1x1 convolution with bias to C maps.
template <int C>
using FcnScore = Conv<C, 1>;

template <int Classes>
struct FcnVgg16
    : Network<Input<3, dyn, dyn>,
              CroppedToInput<Block<                                                             // score
                  Vgg16Groups123<FcnPool>,                                                      // .. pool3
                  Branches<Merge::sum,                                                          // fuse_pool3
                           FcnScore<Classes>,                                                   // score_pool3
                           CroppedToInput<Block<                                                // score_pool3c's crop
                               VggConvRelu<512>, VggConvRelu<512>, VggConvRelu<512>, FcnPool,   // pool4
                               Branches<Merge::sum,                                             // fuse_pool4
                                        FcnScore<Classes>,                                      // score_pool4
                                        CroppedToInput<Block<                                   // score_pool4c's crop
                                            VggConvRelu<512>, VggConvRelu<512>, VggConvRelu<512>, FcnPool,
                                            Conv<4096, 7>, ReLU, Dropout<50>,                   // fc6
                                            Conv<4096, 1>, ReLU, Dropout<50>,                   // fc7
                                            FcnScore<Classes>,                                  // score_fr
                                            FcnUpscore<Classes, 2>>>>,                          // upscore2
                               FcnUpscore<Classes, 2>>>>,                                       // upscore_pool4
                  FcnUpscore<Classes, 8>>>> {                                                   // upscore8
    static constexpr std::string_view name = "fcn-vgg16";
    static constexpr PaperFigures paper{};  // Table 6 gives its size in MB (539), not a count
};

static_assert(parameter_count_v<FcnVgg16<11>> == 134'348'929, "FCN-8s: the count in the header comment");
static_assert(parameter_count_v<FcnVgg16<21>> == 134'489'759, "FCN-8s: the count in the header comment");
static_assert(std::is_same_v<output_shape_t<FcnVgg16<11>, Shape<3, 360, 480>>, Shape<11, 360, 480>>,
              "FCN-8s: the crops bring every sum and the output to their input's size");

}  // namespace segnet::models
