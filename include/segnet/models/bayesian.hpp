// segnet/models/bayesian.hpp: Bayesian SegNet (Kendall, Badrinarayanan and Cipolla,
// arXiv:1511.02680): SegNet and SegNet-Basic with dropout (p = 0.5) after the central encoders
// and decoders, kept on at test time for Monte-Carlo sampling (compose/monte_carlo.hpp).
//
//   Model<models::BayesianSegNetBasic<11>, Cpu> model(42);
//   MonteCarloPrediction p = monte_carlo_predict(model, images, 40);
//
// Dropout sits where the authors' public definitions put it (alexgkendall/SegNet-Tutorial,
// Models/bayesian_segnet_basic_train.prototxt and Models/bayesian_segnet_train.prototxt, all
// dropout_ratio 0.5, the paper's "Bayesian SegNet Central Enc-Dec"):
//   SegNet-Basic: after pool3 and pool4 (encdrop3, encdrop4), and after the first two decoders'
//     batch norm, before the next unpooling (decdrop4, decdrop3);
//   SegNet: after pool3, pool4 and pool5 (encdrop3-5), and after the first three decoders' last
//     ReLU, before the next unpooling (decdrop5-3).
// An encoder's dropout acts on the pooled map only; the unpooling indices are the pool's. Dropout
// has no parameters, so the counts are SegNetBasic's and SegNet's. The Basic form follows this
// library's SegNetBasic (the paper's: no input LRN, no decoder bias), not the tutorial's Caffe
// form (SegNetBasicCaffe), so that it compares with the shipped SegNet-Basic.
#pragma once

#include <string_view>

#include "segnet/layers/dropout.hpp"
#include "segnet/models/segnet.hpp"
#include "segnet/models/segnet_basic.hpp"

namespace segnet::models {

/// SegNet-Basic's decoder stage followed by dropout (Bayesian SegNet-Basic's decdrop4/3).
using BayesianBasicDecoder = Decoder<Unpool<2>, Block<Conv<64, 7, Bias::without>, BatchNorm, Dropout<50>>>;

template <int Classes>
struct BayesianSegNetBasic
    : Network<Input<3, dyn, dyn>, BasicEncoder<>, BasicEncoder<>, BasicEncoder<>, Dropout<50>, BasicEncoder<>,
              Dropout<50>, BayesianBasicDecoder, BayesianBasicDecoder, BasicDecoder<>, BasicDecoder<>,
              Classifier<Classes>> {
    static constexpr std::string_view name = "bayesian-segnet-basic";
    static constexpr PaperFigures paper{};  // not in the SegNet paper (Kendall et al. 2015)
};

template <int Classes>
struct BayesianSegNet
    : Network<Input<3, dyn, dyn>,
              VggEncoder<64, 2>,
              VggEncoder<128, 2>,
              VggEncoder<256, 3>, Dropout<50>,
              VggEncoder<512, 3>, Dropout<50>,
              VggEncoder<512, 3>, Dropout<50>,
              Decoder<Unpool<2>, Vgg<512>, Vgg<512>, Vgg<512>, Dropout<50>>,
              Decoder<Unpool<2>, Vgg<512>, Vgg<512>, Vgg<256>, Dropout<50>>,
              Decoder<Unpool<2>, Vgg<256>, Vgg<256>, Vgg<128>, Dropout<50>>,
              Decoder<Unpool<2>, Vgg<128>, Vgg<64>>,
              Decoder<Unpool<2>, Vgg<64>>,
              Classifier<Classes, 3>> {
    static constexpr std::string_view name = "bayesian-segnet";
    static constexpr PaperFigures paper{};  // not in the SegNet paper (Kendall et al. 2015)
};

// Dropout adds no parameters: the counts are those of the networks they extend.
static_assert(parameter_count_v<BayesianSegNetBasic<11>> == 1'416'331,
              "models: BayesianSegNetBasic<11> must have SegNetBasic<11>'s 1,416,331 parameters");
static_assert(parameter_count_v<BayesianSegNet<11>> == 29'449'355,
              "models: BayesianSegNet<11> must have SegNet<11>'s 29,449,355 parameters");

}  // namespace segnet::models
