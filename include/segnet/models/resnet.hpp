// segnet/models/resnet.hpp: ResNet-50's convolutional body (He et al. 2016) as torchvision builds
// it, at output stride 32, 16 or 8 (the segmentation backbone of DeepLabV3 and PSPNet).
//
//   using Backbone = models::ResNet50Body<8>;   // resnet50(replace_stride_with_dilation=[False, True, True])
//   struct Net : Network<Input<3, dyn, dyn>, ResizedToInput<Block<Backbone, Conv<21, 1>>>> {};
//
// torchvision's Bottleneck (ResNet v1.5): 1x1 conv to Width maps, 3x3 conv (the block's stride and
// dilation, padding = dilation), 1x1 conv to 4 Width maps, each without bias and followed by batch
// norm, ReLU after the first two and after the add; the first block of each layer projects its
// shortcut (1x1 conv with the block's stride, batch norm). The stem: 7x7 conv stride 2 padding 3,
// batch norm, ReLU, 3x3 max pool stride 2 padding 1. A dilated layer follows torchvision's
// _make_layer: its stride becomes 1, the running dilation doubles, and its FIRST block keeps the
// previous dilation (so at output stride 8, layer3's blocks have dilation 1, 2, 2, ... and layer4's
// 2, 4, 4).
// Parameters (no count changes with stride or dilation): stem 9,408 + 128 (bn); layer1 215,808;
// layer2 1,219,584; layer3 7,098,368; layer4 14,964,736: 23,508,032 (torchvision's resnet50,
// 25,557,032, less its fc: 2048 * 1000 + 1000 = 2,049,000).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "segnet/compose/branches.hpp"
#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"

namespace segnet::models {

/// torchvision's Bottleneck: Width maps inside, 4 Width out; the 3x3 conv has the block's stride
/// and dilation; a projecting block's shortcut is 1x1 conv (same stride) + batch norm.
template <int Width, int Stride, int Dilation, bool Projecting>
using Bottleneck =
    Residual<Block<Conv<Width, 1, Bias::without>, BatchNorm, ReLU,
                   Conv2d<Width, 3, ConvOptions{.stride = Stride, .dilation = Dilation, .bias = Bias::without}>,
                   BatchNorm, ReLU, Conv<4 * Width, 1, Bias::without>, BatchNorm>,
             std::conditional_t<Projecting,
                                Block<Conv2d<4 * Width, 1, ConvOptions{.stride = Stride, .bias = Bias::without}>, BatchNorm>,
                                Identity>>;

namespace detail {
template <class T, std::size_t>
using repeated = T;
template <class First, class Rest, class Indices>
struct ResNetLayerOf;
template <class First, class Rest, std::size_t... I>
struct ResNetLayerOf<First, Rest, std::index_sequence<I...>> {
    using type = Block<First, repeated<Rest, I>...>;
};
}  // namespace detail

/// One of ResNet's four layers: Blocks bottlenecks, the first with the layer's stride, the
/// previous dilation and a projection (its input has other maps), the others at Dilation.
template <int Width, int Blocks, int Stride, int FirstDilation, int Dilation>
using ResNetLayer = typename detail::ResNetLayerOf<Bottleneck<Width, Stride, FirstDilation, true>,
                                                   Bottleneck<Width, 1, Dilation, false>,
                                                   std::make_index_sequence<Blocks - 1>>::type;

/// ResNet's stem: 7x7 conv to 64 maps at stride 2, batch norm, ReLU, 3x3 max pool at stride 2.
using ResNetStem = Block<Conv2d<64, 7, ConvOptions{.stride = 2, .padding = Padding::explicit_(3), .bias = Bias::without}>,
                         BatchNorm, ReLU, MaxPoolWindow<3, 2, 1>>;

namespace detail {
/// torchvision's replace_stride_with_dilation for layer3 and layer4: each dilated layer keeps
/// stride 1 and doubles the running dilation.
struct ResNetStrides {
    int stride3, first_dilation3, dilation3, stride4, first_dilation4, dilation4;
};
constexpr ResNetStrides resnet_strides(int output_stride) {
    const bool dilate3 = output_stride <= 8, dilate4 = output_stride <= 16;
    const int dilation3 = dilate3 ? 2 : 1;
    return {dilate3 ? 1 : 2, 1, dilation3, dilate4 ? 1 : 2, dilation3, dilate4 ? 2 * dilation3 : dilation3};
}

template <int OutputStride>
struct ResNet50BodyOf {
    static_assert(OutputStride == 8 || OutputStride == 16 || OutputStride == 32,
                  "models::ResNet50Body<OutputStride>: OutputStride must be 32 (ImageNet's), 16 or 8 (dilated layer4, "
                  "then layer3 too)");
    static constexpr ResNetStrides s = resnet_strides(OutputStride);
    using type = Block<ResNetStem, ResNetLayer<64, 3, 1, 1, 1>, ResNetLayer<128, 4, 2, 1, 1>,
                       ResNetLayer<256, 6, s.stride3, s.first_dilation3, s.dilation3>,
                       ResNetLayer<512, 3, s.stride4, s.first_dilation4, s.dilation4>>;
};
}  // namespace detail

/// ResNet-50 without its pooling and fc: 2048 maps at 1 / OutputStride of the input's size
/// (rounded up at each stride-2 step). OutputStride 32: ImageNet's network; 16 and 8: layer4, then
/// layer3 too, dilated instead of strided.
template <int OutputStride>
using ResNet50Body = typename detail::ResNet50BodyOf<OutputStride>::type;

/// The segmentation backbone of DeepLabV3 and PSPNet: torchvision's
/// resnet50(replace_stride_with_dilation=[False, True, True]).
using DilatedResNet50 = ResNet50Body<8>;

}  // namespace segnet::models
