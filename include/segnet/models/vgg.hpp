// segnet/models/vgg.hpp: VGG16's convolution groups (Simonyan and Zisserman 2015), the backbone
// SegNet, DeconvNet, DeepLab-LargeFOV and FCN-8s share.
//
//   Vgg<64>                 3x3 conv (bias) + batch norm + ReLU: SegNet's and DeconvNet's layers
//   VggEncoder<64, 2>       an Encoder of 2 such layers and a 2x2 max pool with indices
//   VggConvRelu<512>        3x3 conv (bias) + ReLU, no batch norm: the original VGG16's layers
//   VggConvRelu<512, 2>     the same, dilated 2 (DeepLab's conv5)
//   Vgg16Groups123<Pool>    VGG16's conv1_1 .. conv3_3 without batch norm, each group ending in Pool
#pragma once

#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"

namespace segnet::models {

/// 3x3 convolution with bias to C maps, batch norm, ReLU.
template <int C>
using Vgg = Block<Conv<C, 3>, BatchNorm, ReLU>;

namespace detail {
template <int C, int Layers>
struct VggLayers;
template <int C>
struct VggLayers<C, 2> {
    using type = Block<Vgg<C>, Vgg<C>>;
};
template <int C>
struct VggLayers<C, 3> {
    using type = Block<Vgg<C>, Vgg<C>, Vgg<C>>;
};
}  // namespace detail

/// One VGG16 group with batch norm as an Encoder: `Layers` (2 or 3) Vgg<C> layers, then a 2x2 max
/// pool whose indices its paired Decoder's Unpool reads.
template <int C, int Layers>
using VggEncoder = Encoder<typename detail::VggLayers<C, Layers>::type, MaxPool<2>>;

/// A plain VGG16 convolution: 3x3 with bias, then ReLU (no batch norm); Dilation > 1: atrous
/// (DeepLab's conv5). An int, not a ConvOptions parameter: nvcc 13 cannot compile an alias
/// template whose parameter is of class type.
template <int C, int Dilation = 1>
using VggConvRelu = Block<Conv2d<C, 3, ConvOptions{.dilation = Dilation}>, ReLU>;

/// VGG16's first three groups without batch norm (64, 64 | 128, 128 | 256 x 3), each followed by
/// the pooling layer Pool (FCN: 2x2 stride 2; DeepLab: 3x3 stride 2 pad 1).
template <class Pool>
using Vgg16Groups123 = Block<VggConvRelu<64>, VggConvRelu<64>, Pool,
                             VggConvRelu<128>, VggConvRelu<128>, Pool,
                             VggConvRelu<256>, VggConvRelu<256>, VggConvRelu<256>, Pool>;

}  // namespace segnet::models
