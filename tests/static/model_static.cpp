// Compile-time tests: compiled as part of the build, never run. Every line is a static_assert
// on something the compiler computes from a network type.
#include <segnet/segnet.hpp>

namespace {
using namespace segnet;

// --- SegNet-Basic (the paper's analysis network) ---------------------------------------------
// encoder convs 7x7 with bias: 3*64*49 + 64 = 9,472, then 3 x (64*64*49 + 64) = 3 x 200,768
// decoder convs 7x7, no bias:  4 x 64*64*49 = 4 x 200,704
// batch norm gamma+beta:       8 x 2*64 = 1,024
// classifier 1x1 with bias:    64*11 + 11 = 715
static_assert(parameter_count_v<models::SegNetBasic<11>> == 9'472 + 3 * 200'768 + 4 * 200'704 + 1'024 + 715);
static_assert(parameter_count_v<models::SegNetBasic<11>> == 1'416'331);  // paper: 1.425M (-0.6%)
// The Caffe tutorial form adds decoder biases (4 x 64); its LRN has no parameters.
static_assert(parameter_count_v<models::SegNetBasicCaffe<11>> == 1'416'331 + 4 * 64);
static_assert(parameter_count_v<models::SegNetBasic<2>> == 1'416'331 - 9 * 64 - 9);

using BasicOut = output_shape_t<models::SegNetBasic<11>, Shape<3, 360, 480>>;
static_assert(BasicOut::channels == 11 && BasicOut::height == 360 && BasicOut::width == 480);
// Odd sizes round-trip through ceil pooling and index unpooling: 45 -> 23 -> 12 -> 6 -> 3 -> back.
using OddOut = output_shape_t<models::SegNetBasic<11>, Shape<3, 45, 61>>;
static_assert(OddOut::height == 45 && OddOut::width == 61);

// The pooled sizes at 360x480, as SEGNET.md lists them: 180x240, 90x120, 45x60, 23x30.
constexpr Analysis basic = analysis_v<models::SegNetBasic<11>, Shape<3, 360, 480>>;
static_assert(basic.stages[0].out == Dims{64, 180, 240});
static_assert(basic.stages[2].out == Dims{64, 45, 60});
static_assert(basic.stages[3].out == Dims{64, 23, 30});
static_assert(basic.stages[4].out == Dims{64, 45, 60});   // first decoder restores 45, not 46
static_assert(basic.stages[4].pair == 4 && basic.stages[7].pair == 1);  // brackets: last encoder first
static_assert(basic.encoder_count == 4 && basic.decoder_count == 4);
// Forward FLOPs: 118.5 GFLOP (issue 5 quotes 118 GFLOP for PyTorch's count of the same net).
static_assert(flops_v<models::SegNetBasic<11>, Shape<3, 360, 480>> / 100'000'000 == 1184);

// --- SegNet (VGG16 encoder, mirrored decoder) ---------------------------------------------
// encoder: 3x3 conv weights 14,710,464 + biases 4,224 + BN 8,448
// decoder: 3x3 conv weights 14,708,736 + biases 3,712 + BN 7,424
// classifier 3x3 with bias: 64*11*9 + 11 = 6,347
static_assert(parameter_count_v<models::SegNet<11>> ==
              14'710'464 + 4'224 + 8'448 + 14'708'736 + 3'712 + 7'424 + 6'347);
static_assert(parameter_count_v<models::SegNet<11>> == 29'449'355);  // SEGNET.md: about 29.5M
using SegNetOut = output_shape_t<models::SegNet<11>, Shape<3, 360, 480>>;
static_assert(SegNetOut::channels == 11 && SegNetOut::height == 360 && SegNetOut::width == 480);
// Five poolings at 360x480: ..., 45x60 -> 23x30 -> 12x15 (ceil twice).
constexpr Analysis vgg = analysis_v<models::SegNet<11>, Shape<3, 360, 480>>;
static_assert(vgg.stages[4].out == Dims{512, 12, 15});
static_assert(vgg.stages[5].out == Dims{512, 23, 30});

// --- User-defined networks: dyn and static sizes, the same checks ---------------------------
using MyNet = Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<11>>;
static_assert(parameter_count_v<MyNet> == (3 * 64 * 49 + 64) + (64 * 64 * 49 + 64) + 2 * (64 * 64 * 49 + 64) + 4 * 128 + 715);
static_assert(MyNet::analysis.output == Dims{11, dyn, dyn});   // dyn stays dyn
static_assert(output_shape_t<MyNet, Shape<3, 7, 9>>::height == 7);

// Skip connections: an encoder-addition decoder has the same parameters as plain unpooling.
using WithAdd = Network<Input<3, 64, 64>,
    Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Add, Block<Conv<16, 3>, BatchNorm>>, Classifier<4>>;
using WithoutAdd = Network<Input<3, 64, 64>,
    Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<16, 3>, BatchNorm>>, Classifier<4>>;
static_assert(parameter_count_v<WithAdd> == parameter_count_v<WithoutAdd>);

// Learned and fixed upsampling produce the paired encoder's exact size (45 -> 23 -> 45).
using Deconv = Network<Input<3, 45, 60>,
    Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<TransposedConv<8, 4, 2>, Block<Conv<8, 3>, BatchNorm>>, Classifier<2>>;
static_assert(output_shape_t<Deconv, Shape<3, 45, 60>>::height == 45);
static_assert(parameter_count_v<Deconv> == (3 * 8 * 9 + 8) + 16 + 8 * 8 * 16 + (8 * 8 * 9 + 8) + 16 + (8 * 2 + 2));
using Bilinear = Network<Input<3, 45, 60>,
    Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<BilinearUpsample<2>, Block<DepthwiseConv<7>, BatchNorm>>, Classifier<2>>;
static_assert(output_shape_t<Bilinear, Shape<3, 45, 60>>::width == 60);
static_assert(parameter_count_v<Bilinear> == (3 * 8 * 9 + 8) + 16 + 8 * 49 + 16 + (8 * 2 + 2));

// Analyses are ordinary constexpr values: a fault is found without a compile error.
static_assert(analyse<Decoder<Unpool<2>, Conv<8, 3>>>({3, 8, 8}).diag.fault == Fault::decoder_without_encoder);
static_assert(analyse<Encoder<Conv<8, 3>, MaxPool<2>>>({3, 8, 8}).diag.fault == Fault::encoder_without_decoder);
static_assert(analyse<Encoder<Conv<8, 3>, MaxPool<2>>, Decoder<Unpool<2>>>({3, 1, 8}).diag.fault == Fault::too_small);

// Every layer meets the Layer concept.
static_assert(Layer<Conv<64, 7>> && Layer<DepthwiseConv<7>> && Layer<Classifier<11>> && Layer<BatchNorm> &&
              Layer<ReLU> && Layer<MaxPool<2>> && Layer<Unpool<2>> && Layer<BilinearUpsample<2>> &&
              Layer<TransposedConv<64, 4, 2>> && Layer<Add> && Layer<LRN<>>);
static_assert(PairedLayer<Unpool<2>> && !PairedLayer<Conv<64, 7>>);

// --- the struct form: a network named by a struct is queried like its Network ---------------
// (g++ then prints "TinyNet" in diagnostics, not the whole Network<...> type.)
struct TinyNet : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<8, 3>, BatchNorm>>,
    Classifier<5>> {};
static_assert(NetworkType<TinyNet>);
static_assert(parameter_count_v<TinyNet> == (8 * 3 * 9 + 8) + 16 + (8 * 8 * 9 + 8) + 16 + (8 * 5 + 5));
using TinyOut = output_shape_t<TinyNet, Shape<3, 45, 61>>;
static_assert(TinyOut::channels == 5 && TinyOut::height == 45 && TinyOut::width == 61);
static_assert(flops_v<TinyNet, Shape<3, 45, 61>> > 0 && receptive_field_v<TinyNet> == 6);  // 3x3, pool 2, unpool, 3x3
static_assert(std::is_same_v<Model<TinyNet, Cpu>::network, TinyNet>);
static_assert(Model<TinyNet, Cpu>::parameter_count == parameter_count_v<TinyNet>);

// --- the layer contract (layers/layer.hpp): required members, declared options ---------------
static_assert(PlainLayer<Conv<64, 7>> && PairedLayer<Unpool<2>> && Layer<Add> && !Layer<int>);
static_assert(PoolingLayer<MaxPool<2>> && !PoolingLayer<Conv<64, 3>> && !PoolingLayer<Unpool<2>>);
static_assert(geometry_of<MaxPool<3>>.window == 3 && geometry_of<MaxPool<3>>.down == 3);
static_assert(geometry_of<Unpool<2>>.up == 2 && geometry_of<ReLU>.window == 1);
static_assert(layer_traits<Classifier<11>>::parameter_prefix == "classifier");
static_assert(layer_traits<Conv<64, 3>>::parameter_prefix.empty());
static_assert(skip_storage_of<Unpool<2>>({64, 23, 30}, {}).indices && skip_storage_of<Add>({64, 23, 30}, {}).reads_feature);
static_assert(!skip_storage_of<Conv<64, 3>>({64, 23, 30}, {}).indices);

}  // namespace
