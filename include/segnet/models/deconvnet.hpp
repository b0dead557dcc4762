// segnet/models/deconvnet.hpp: DeconvNet (Noh, Hong and Han, ICCV 2015), the SegNet paper's
// "DeconvNet" of Tables 3 and 6.
//
//   Model<models::DeconvNet<21>, Cpu> model(42);
//   static_assert(parameter_count_v<models::DeconvNet<21>> == 251'805'653);
//   using Out = output_shape_t<models::DeconvNet<21>, Shape<3, 224, 224>>;   // 21x224x224
//
// As the authors' model: VGG16 with batch norm (13 convolutions 3x3 with bias, BN, ReLU, 2x2 max
// pools keeping their indices: SegNet's encoder); fc6 a VALID 7x7 convolution to 4096 maps and
// fc7 1x1 to 4096 (each + BN + ReLU); a 7x7 deconvolution (ConvTranspose2d, stride 1, no padding)
// back to 512 maps (+ BN + ReLU); then the mirrored deconvolution network: unpooling by the
// stored indices, 3x3 deconvolutions (a stride-1 transposed convolution with same padding is a
// 3x3 convolution with same padding; written as one) with bias, BN and ReLU in the mirrored
// channel counts 512,512,512 | 512,512,256 | 256,256,128 | 128,64 | 64,64, and a 1x1 classifier.
// The 7x7 deconvolution has no bias (the batch norm after it absorbs one: 512 fewer than Caffe).
// Input sizes: the valid fc6 needs pool5 (ceil(H / 32)) at least 7 in each direction, so H and W
// are at least 193; 224x224 (the paper's) gives pool5 7x7, fc6/fc7 1x1, and the 7x7
// deconvolution 7x7 again; at 360x480 pool5 is 12x15, fc6 6x9 and the deconvolution 12x15: it
// restores pool5's size at every size (H - 6 + 6), so unpool5's input always fits.
// Parameter count (3x3 convs 9 in out + out; BN 2 per map):
//   encoder (SegNet's): convs 14,714,688 + BN 8,448                        =  14,723,136
//   fc6: 49 * 512 * 4096 + 4096 + BN 8,192                                 = 102,772,736
//   fc7: 4096 * 4096 + 4096 + BN 8,192                                     =  16,789,504
//   deconv-fc6: 4096 * 512 * 49 + BN 1,024                                 = 102,761,472
//   decoder convs: 7,079,424 + 5,899,520 + 1,475,200 + 221,376 + 73,856
//                  = 14,749,376, + BN 7,552                                =  14,756,928
//   classifier: 64 K + K                                                   =      65 K
//   total: 251,803,776 + 65 K   (K = 21: 251,805,141; K = 11: 251,804,491)
// The SegNet paper quotes about 252M parameters for DeconvNet: the same figure (its Table 6's
// 877 MB is less than the 1,007 MB these take as float32; the paper does not say how it measured).
#pragma once

#include <string_view>
#include <type_traits>

#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/layers/upsample.hpp"
#include "segnet/models/paper.hpp"
#include "segnet/models/segnet.hpp"

namespace segnet::models {

template <int Classes>
struct DeconvNet
    : Network<Input<3, dyn, dyn>,
              VggEncoder<64, 2>, VggEncoder<128, 2>, VggEncoder<256, 3>, VggEncoder<512, 3>, VggEncoder<512, 3>,
              Block<Conv2d<4096, 7, ConvOptions{.padding = Padding::valid}>, BatchNorm, ReLU,  // fc6
                    Conv<4096, 1>, BatchNorm, ReLU,                                          // fc7
                    ConvTranspose2d<512, 7>, BatchNorm, ReLU>,                               // deconv-fc6
              Decoder<Unpool<2>, Vgg<512>, Vgg<512>, Vgg<512>>,
              Decoder<Unpool<2>, Vgg<512>, Vgg<512>, Vgg<256>>,
              Decoder<Unpool<2>, Vgg<256>, Vgg<256>, Vgg<128>>,
              Decoder<Unpool<2>, Vgg<128>, Vgg<64>>,
              Decoder<Unpool<2>, Vgg<64>, Vgg<64>>,
              Classifier<Classes>> {
    static constexpr std::string_view name = "deconvnet";
    static constexpr PaperFigures paper{};  // the text's "252M"; Table 6 gives 877 MB
    /// The smallest input it takes: pool5 must hold fc6's 7x7 window.
    static constexpr Dims smallest_input{3, 193, 193};
};

static_assert(parameter_count_v<DeconvNet<11>> == 251'804'491, "DeconvNet: the count in the header comment");
static_assert(parameter_count_v<DeconvNet<21>> == 251'805'141, "DeconvNet: the count in the header comment");
static_assert(std::is_same_v<output_shape_t<DeconvNet<21>, Shape<3, 224, 224>>, Shape<21, 224, 224>>,
              "DeconvNet: the paper's 224x224");
static_assert(std::is_same_v<output_shape_t<DeconvNet<11>, Shape<3, 360, 480>>, Shape<11, 360, 480>>,
              "DeconvNet: 360x480 (pool5 12x15, fc6 6x9, deconvolution 12x15)");

}  // namespace segnet::models
