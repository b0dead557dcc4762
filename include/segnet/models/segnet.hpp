// segnet/models/segnet.hpp: SegNet with the VGG16 encoder and its mirrored decoder.
//
//   Model<models::SegNet<11>, Cpu> model(42);
//   static_assert(parameter_count_v<models::SegNet<11>> == 29'449'355);
//   using Out = output_shape_t<models::SegNet<11>, Shape<3, 360, 480>>;   // 11x360x480
//
// As the public Caffe model: 13 encoder convs (3x3, bias, BN, ReLU) in VGG16's five groups
// 64,64 | 128,128 | 256x3 | 512x3 | 512x3, each group ending in 2x2 max pooling; decoders
// unpool with the paired indices, then 512,512,512 | 512,512,256 | 256,256,128 | 128,64 | 64
// (3x3, bias, BN, ReLU), and a 3x3 classifier with bias (no BN/ReLU). Parameter count:
//   encoder: conv weights 14,710,464 + biases 4,224 + BN 8,448             = 14,723,136
//   decoder: conv weights 14,708,736 + biases 3,712 + BN 7,424             = 14,719,872
//   classifier: 64*11*9 + 11                                               =      6,347
//   total                                                                  = 29,449,355
// (SEGNET.md: about 29.5M; Table 6's 117 MB model is 29.4M float32 values.)
#pragma once

#include <string_view>

#include "segnet/compose/network.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/models/paper.hpp"
#include "segnet/models/vgg.hpp"

namespace segnet::models {

template <int Classes>
struct SegNet
    : Network<Input<3, dyn, dyn>,
              VggEncoder<64, 2>, VggEncoder<128, 2>, VggEncoder<256, 3>, VggEncoder<512, 3>, VggEncoder<512, 3>,
              Decoder<Unpool<2>, Vgg<512>, Vgg<512>, Vgg<512>>,
              Decoder<Unpool<2>, Vgg<512>, Vgg<512>, Vgg<256>>,
              Decoder<Unpool<2>, Vgg<256>, Vgg<256>, Vgg<128>>,
              Decoder<Unpool<2>, Vgg<128>, Vgg<64>>,
              Decoder<Unpool<2>, Vgg<64>>,
              Classifier<Classes, 3>> {
    static constexpr std::string_view name = "segnet";
    static constexpr PaperFigures paper{29'500'000};  // the text (about 29.5M); no storage figure
};

}  // namespace segnet::models
