// segnet/models/deeplabv3.hpp: DeepLab v3 (Chen et al. 2017, "Rethinking Atrous Convolution for
// Semantic Image Segmentation") with the structure of torchvision's deeplabv3_resnet50
// (aux_loss=False: without the auxiliary FCN head on layer3).
//
//   Model<models::DeepLabV3<21>, Cpu> model(42);
//   using Out = output_shape_t<models::DeepLabV3<21>, Shape<3, 360, 480>>;   // 21x360x480
//
// The backbone is models::DilatedResNet50 (models/resnet.hpp: output stride 8), then torchvision's
// DeepLabHead: ASPP on the 2048 maps with five parallel branches of 256 maps each (a 1x1 conv;
// three 3x3 convs of dilation 12, 24, 36; image pooling: global average pool, 1x1 conv, resized
// back bilinearly), every conv without bias and followed by batch norm and ReLU, concatenated
// (1280 maps) and projected by 1x1 conv to 256 + batch norm + ReLU + Dropout(0.5); then 3x3 conv
// to 256 + batch norm + ReLU and a 1x1 classifier with bias. The logits are resized bilinearly
// (align_corners=False, as torchvision) to the input's size: any input size works.
// CPU only for now (composites throw in make<Cuda>). Exports to ONNX at any size (export/onnx.hpp).
// Parameter count (convs without bias: in * out * k * k; batch norm: 2 per map):
//   backbone (models/resnet.hpp)                                 = 23,508,032
//   ASPP 1x1 branch: 2048 * 256 + 512                            =    524,800
//   ASPP 3x3 branches: 3 * (2048 * 256 * 9 + 512)                = 14,157,312
//   ASPP image pooling: 2048 * 256 + 512                         =    524,800
//   ASPP projection: 1280 * 256 + 512                            =    328,192
//   head 3x3 conv: 256 * 256 * 9 + 512                           =    590,336
//   classifier: 256 * K + K                                      =        257 K
//   total: 39,633,472 + 257 K  (K = 11: 39,636,299; K = 21: 39,638,869)
// torchvision's deeplabv3_resnet50 has 42,004,074 parameters with its auxiliary head (K = 21); the
// head, FCNHead(1024, 21), holds 1024 * 256 * 9 + 512 + 256 * 21 + 21 = 2,365,205, which leaves
// 39,638,869: our count.
#pragma once

#include <string_view>
#include <type_traits>

#include "segnet/compose/branches.hpp"
#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/dropout.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/models/paper.hpp"
#include "segnet/models/resnet.hpp"

namespace segnet::models {

/// An ASPP branch: a K x K convolution of that dilation to 256 maps, batch norm, ReLU.
template <int K, int Dilation>
using AsppConv = Block<Conv2d<256, K, ConvOptions{.dilation = Dilation, .bias = Bias::without}>, BatchNorm, ReLU>;

/// ASPP's image-level branch: the global average, 1x1 conv to 256 maps, batch norm, ReLU,
/// resized (a broadcast) back to the input's size.
using AsppPooling = ResizedToInput<Block<AdaptiveAvgPool<1>, Conv<256, 1, Bias::without>, BatchNorm, ReLU>>;

/// Atrous spatial pyramid pooling with torchvision's rates (12, 24, 36) and its 1x1 projection.
using Aspp = Block<Branches<Merge::concat, AsppConv<1, 1>, AsppConv<3, 12>, AsppConv<3, 24>, AsppConv<3, 36>, AsppPooling>,
                   Conv<256, 1, Bias::without>, BatchNorm, ReLU, Dropout<50>>;

/// torchvision's DeepLabHead: ASPP, 3x3 conv to 256 + batch norm + ReLU, 1x1 classifier.
template <int Classes>
using DeepLabHead = Block<Aspp, Conv<256, 3, Bias::without>, BatchNorm, ReLU, Classifier<Classes>>;

/// DeepLab v3 with torchvision's deeplabv3_resnet50 structure (aux_loss=False) as the reference.
template <int Classes>
struct DeepLabV3 : Network<Input<3, dyn, dyn>, ResizedToInput<Block<DilatedResNet50, DeepLabHead<Classes>>>> {
    static constexpr std::string_view name = "deeplabv3";
    static constexpr PaperFigures paper{};  // not in the SegNet paper
};

static_assert(parameter_count_v<DeepLabV3<11>> == 39'636'299, "DeepLabV3: the count in the header comment");
static_assert(parameter_count_v<DeepLabV3<21>> == 39'638'869, "DeepLabV3: the count in the header comment");
static_assert(std::is_same_v<output_shape_t<DeepLabV3<21>, Shape<3, 360, 480>>, Shape<21, 360, 480>>,
              "DeepLabV3: logits at the input's size");

}  // namespace segnet::models
