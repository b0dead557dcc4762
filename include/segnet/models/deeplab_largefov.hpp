// segnet/models/deeplab_largefov.hpp: DeepLab v1 LargeFOV (Chen, Papandreou, Kokkinos, Murphy and
// Yuille, ICLR 2015), the SegNet paper's "DeepLab-LargeFOV" of Tables 3 and 6.
//
//   Model<models::DeepLabLargeFov<21>, Cpu> model(42);
//   static_assert(parameter_count_v<models::DeepLabLargeFov<21>> == 20'505'429);
//   using Out = output_shape_t<models::DeepLabLargeFov<11>, Shape<3, 360, 480>>;   // 11x360x480
//
// Written from the authors' Caffe definition (DeepLab-LargeFOV/train.prototxt, as PyTorch ports
// that cite it reproduce it): VGG16's 13 convolutions (3x3, bias, ReLU, no batch norm); pool1-3
// max 3x3 stride 2 pad 1 and pool4-5 max 3x3 stride 1 pad 1, all with Caffe's ceil rounding
// (PoolRounding::ceil: 360x480 -> 181x241 -> 91x121 -> 46x61, then kept); conv5 dilated 2; fc6 a
// 3x3 convolution of dilation 12 to 1024 maps, fc7 1x1 to 1024 (each ReLU + Dropout 0.5), fc8 1x1
// to K. v1 LargeFOV has no average pool after pool5 (DeepLab v2's "pool5a" is not here). The
// logits (output stride 8) are resized bilinearly to the input's size (ResizedToInput, PyTorch's
// align_corners=False; the authors interpolate at test time and shrink the labels for training:
// here the loss reads the full-size map, as the library's trainer does for every model).
// Any input size works (at least 1x1). Parameter count (3x3 convs: 9 in out + out):
//   VGG16 convs: 1,792 + 36,928 | 73,856 + 147,584 | 295,168 + 2 x 590,080
//                | 1,180,160 + 2 x 2,359,808 | 3 x 2,359,808                =  14,714,688
//   fc6: 9 * 512 * 1024 + 1024                                             =   4,719,616
//   fc7: 1024 * 1024 + 1024                                                =   1,049,600
//   fc8: 1024 K + K                                                        =   1,025 K
//   total: 20,483,904 + 1,025 K   (K = 21: 20,505,429; K = 11: 20,495,179)
// The published DeepLab-LargeFOV has "about 20.5M" parameters (K = 21): the same figure.
// Exports to ONNX (ResizedToInput: a Resize, export/onnx.hpp).
#pragma once

#include <string_view>
#include <type_traits>

#include "segnet/compose/branches.hpp"
#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"  // ReLU
#include "segnet/layers/conv.hpp"
#include "segnet/layers/dropout.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/models/paper.hpp"
#include "segnet/models/vgg.hpp"

namespace segnet::models {

/// DeepLab's max pooling: 3x3 window, padding 1, Caffe's ceil rounding.
template <int Stride>
using DeepLabPool = MaxPoolWindow<3, Stride, 1, PoolRounding::ceil>;

template <int Classes>
struct DeepLabLargeFov
    : Network<Input<3, dyn, dyn>,
              ResizedToInput<Block<
                  Vgg16Groups123<DeepLabPool<2>>,
                  VggConvRelu<512>, VggConvRelu<512>, VggConvRelu<512>, DeepLabPool<1>,
                  VggConvRelu<512, 2>, VggConvRelu<512, 2>,
                  VggConvRelu<512, 2>, DeepLabPool<1>,
                  Conv2d<1024, 3, ConvOptions{.dilation = 12}>, ReLU, Dropout<50>,  // fc6
                  Conv<1024, 1>, ReLU, Dropout<50>,                                 // fc7
                  Classifier<Classes>>>> {                                          // fc8
    static constexpr std::string_view name = "deeplab-largefov";
    static constexpr PaperFigures paper{};  // Table 6 gives its size in MB (83), not a count
};

static_assert(parameter_count_v<DeepLabLargeFov<11>> == 20'495'179, "DeepLab-LargeFOV: the count in the header comment");
static_assert(parameter_count_v<DeepLabLargeFov<21>> == 20'505'429, "DeepLab-LargeFOV: the count in the header comment");
static_assert(std::is_same_v<output_shape_t<DeepLabLargeFov<11>, Shape<3, 360, 480>>, Shape<11, 360, 480>>,
              "DeepLab-LargeFOV: the output is resized to the input's size");

}  // namespace segnet::models
