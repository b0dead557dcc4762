// Compile-time tests of the paper's Table 1 variants, the skip policies and the architecture
// queries: compiled as part of the build, never run.
#include <segnet/segnet.hpp>

#include <optional>
#include <type_traits>

namespace {
using namespace segnet;
using namespace segnet::models;
using Camvid = Shape<3, 360, 480>;

/// |ours - paper| <= 3% of the paper's count.
constexpr bool within_3_percent(std::int64_t ours, std::int64_t paper) {
    const std::int64_t d = ours > paper ? ours - paper : paper - ours;
    return d * 100 <= paper * 3;
}

/// Our count within 3% of the paper's (each model's `paper`, models/paper.hpp), the storage
/// multiplier as the paper prints it (n/a: none), and an 11x360x480 output.
template <class Net>
constexpr bool matches_table_1() {
    constexpr models::PaperFigures paper = Net::paper;
    constexpr auto m = storage_multiplier_v<Net>;
    constexpr bool storage = paper.storage.kind == PaperStorage::Kind::not_applicable
                                 ? !m.has_value()
                                 : paper.storage.kind == PaperStorage::Kind::multiplier &&
                                       m == std::optional<int>(paper.storage.value);
    using Out = output_shape_t<Net, Camvid>;
    return within_3_percent(parameter_count_v<Net>, paper.parameters) && storage && Out::channels == 11 &&
           Out::height == 360 && Out::width == 480;
}

/// Every Table 1 variant in the registry: SegNet-Basic and those with a paper storage figure.
template <template <int> class... Models>
constexpr int table_1_rows_checked(ModelList<Models...>) {
    int rows = 0;
    ((rows += [] {
         using Net = Models<11>;
         if constexpr (Net::paper.storage.kind != PaperStorage::Kind::unpublished) {
             static_assert(matches_table_1<Net>(), "a Table 1 variant is off the paper's figures");
             return 1;
         } else {
             return 0;
         }
     }()),
     ...);
    return rows;
}

// --- Table 1: parameters within 3%, storage multipliers exact, 11x360x480 -----------------------
static_assert(table_1_rows_checked(BuiltinModels{}) == 8, "Table 1 has eight variants");
static_assert(BilinearInterpolation<11>::paper.parameters == 625'000 && FcnBasic<11>::paper.storage.value == 11);
// SegNet: about 29.5M in the text.
static_assert(within_3_percent(parameter_count_v<SegNet<11>>, SegNet<11>::paper.parameters));

// The exact counts derived beside each definition (models/variants.hpp).
constexpr std::int64_t encoder = 9'472 + 3 * 200'768 + 4 * 128;  // SegNet-Basic's, with BN
static_assert(encoder == 612'288);
static_assert(parameter_count_v<BilinearInterpolation<11>> == encoder + 4 * (64 * 49 + 128) + 715);
static_assert(parameter_count_v<BilinearInterpolation<11>> == 626'059);
static_assert(parameter_count_v<SegNetBasicSingleChannelDecoder<11>> == 626'059);
static_assert(parameter_count_v<SegNetBasicEncoderAddition<11>> == parameter_count_v<SegNetBasic<11>>);
static_assert(parameter_count_v<FcnBasic<11>> ==
              encoder + 715 + 3 * 11 * 11 * 16 + 4 * 64 * 11 + 4 * (11 * 11 * 49 + 22) + 11 * 11 + 11);
static_assert(parameter_count_v<FcnBasic<11>> == 645'563);
static_assert(parameter_count_v<FcnBasicNoAddition<11>> == 645'563 - 4 * 64 * 11);
static_assert(parameter_count_v<FcnBasicNoDimReduction<11>> == encoder + 3 * 64 * 64 * 16 + 4 * 200'832 + 715);
static_assert(parameter_count_v<FcnBasicNoDimReduction<11>> == 1'612'939);
static_assert(parameter_count_v<FcnBasicNoAdditionNoDimReduction<11>> == 1'612'939);

// SegNet (VGG16) and the Caffe form keep indices only.
static_assert(storage_multiplier_v<SegNet<11>> == 1 && storage_multiplier_v<SegNetBasicCaffe<11>> == 1);
static_assert(output_shape_t<SegNet<11>, Camvid>::channels == 11);

// --- Storage does not depend on the class count, except where the stored maps are the classes ---
static_assert(storage_multiplier_v<FcnBasic<21>> == 21);
static_assert(storage_multiplier_v<SegNetBasicEncoderAddition<2>> == 64);

// --- Receptive fields: 7x7 convs and 2x2 pools, then the decoders' kernels ------------------------
// Encoders: 7, +1 (pool) -> 8, +6*2 +1*2 -> 22, +6*4 +1*4 -> 50, +6*8 +1*8 -> 106 (jump 16);
// unpooling adds nothing, each decoder's 7x7 conv adds 6 * jump: 106 + 6 * (8 + 4 + 2 + 1) = 196.
static_assert(receptive_field_v<SegNetBasic<11>> == 196);
static_assert(receptive_field_v<SegNetBasicEncoderAddition<11>> == 196);  // skips see less, max wins
// A bilinear or 4x4 transposed upsampler reads 2 values per axis: + (8 + 4 + 2 + 1) = 211 + 15.
static_assert(receptive_field_v<BilinearInterpolation<11>> == 226);
static_assert(receptive_field_v<FcnBasic<11>> == 226);

// --- FLOPs: decoder convolutions dominate; depthwise decoders are ~4x cheaper than SegNet-Basic ---
static_assert(flops_v<SegNetBasic<11>, Camvid> > 4 * flops_v<SegNetBasicSingleChannelDecoder<11>, Camvid>);
static_assert(flops_v<SegNetBasicEncoderAddition<11>, Camvid> - flops_v<SegNetBasic<11>, Camvid> ==
              64LL * (360 * 480 + 180 * 240 + 90 * 120 + 45 * 60));  // one add per element of each skip

// --- Memory ------------------------------------------------------------------------------------
// Training memory is linear in the batch; a pass-through skip (NoSkip) adds no map.
static_assert(training_activation_bytes_v<SegNetBasic<11>, Camvid, 4> ==
              4 * training_activation_bytes_v<SegNetBasic<11>, Camvid, 1>);
static_assert(training_activation_bytes_v<FcnBasicNoAdditionNoDimReduction<11>, Camvid, 1> ==
              training_activation_bytes_v<BilinearInterpolation<11>, Camvid, 1>);
// Inference peak at the last decoder: its 64x360x480 input and output (float32), plus the first
// encoder's int32 indices (64x180x240) for SegNet-Basic, plus its whole map for EncoderAddition.
constexpr std::int64_t full_map = 4LL * 64 * 360 * 480, pooled_indices = 4LL * 64 * 180 * 240;
static_assert(inference_activation_bytes_v<SegNetBasic<11>, Camvid> == 2 * full_map + pooled_indices);
static_assert(inference_activation_bytes_v<SegNetBasicEncoderAddition<11>, Camvid> == 3 * full_map + pooled_indices);
static_assert(inference_activation_bytes_v<BilinearInterpolation<11>, Camvid> == 2 * full_map);

// --- Skip policies are layers like any other ---------------------------------------------------
static_assert(PairedLayer<NoSkip> && PairedLayer<AddProjected<11, 64>> && PairedLayer<Concat>);
static_assert(Layer<NoSkip> && Layer<AddProjected<11, 64>> && Layer<Concat>);
static_assert(Concat::infer({64, 45, 60}, {{32, 45, 60}, 2}).out == Dims{96, 45, 60});
static_assert(Concat::infer({64, 45, 60}, {{32, 46, 60}, 2}).fault == Fault::skip_size);
static_assert(AddProjected<11, 64>::infer({11, 45, 60}, {{64, 45, 60}, 2}).out == Dims{11, 45, 60});
static_assert(AddProjected<11, 64>::infer({11, 45, 60}, {{32, 45, 60}, 2}).fault == Fault::skip_channels);
static_assert(AddProjected<11, 64>::infer({12, 45, 60}, {{64, 45, 60}, 2}).fault == Fault::skip_channels);
static_assert(AddProjected<11, 64>::parameter_count({11, 45, 60}) == 704);
static_assert(analyse<Concat>({3, 8, 8}).diag.fault == Fault::skip_outside_decoder);

// A U-Net-like network from the same parts: concatenation doubles the decoder conv's input.
using TinyUNet = Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Encoder<Block<Conv<32, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<TransposedConv<32, 2, 2>, Concat, Block<Conv<16, 3>, BatchNorm, ReLU>>,
    Decoder<TransposedConv<16, 2, 2>, Concat, Block<Conv<16, 3>, BatchNorm, ReLU>>,
    Classifier<4>>;
static_assert(parameter_count_v<TinyUNet> ==
              (3 * 16 * 9 + 16 + 32) + (16 * 32 * 9 + 32 + 64) +       // encoders
              (32 * 32 * 4) + ((32 + 32) * 16 * 9 + 16 + 32) +         // decoder 1: 32 + 32 channels in
              (16 * 16 * 4) + ((16 + 16) * 16 * 9 + 16 + 32) +         // decoder 2: 16 + 16 channels in
              (16 * 4 + 4));
static_assert(storage_multiplier_v<TinyUNet> == 32);  // the widest kept map
static_assert(output_shape_t<TinyUNet, Shape<3, 45, 61>>::width == 61);

// A mistake is a constexpr fault: the upsampler forgot, the skip sees a smaller map.
static_assert(analyse<Encoder<Conv<8, 3>, MaxPool<2>>, Decoder<Concat>>({3, 8, 8}).diag.fault == Fault::skip_size);

// --- docs/experiments.md: the tutorial's networks, as written there ----------------------------
template <int Classes>
struct SegNetBasic5
    : Network<Input<3, dyn, dyn>,
              BasicEncoder<>, BasicEncoder<>, BasicEncoder<>, BasicEncoder<>, BasicEncoder<>,
              BasicDecoder<>, BasicDecoder<>, BasicDecoder<>, BasicDecoder<>, BasicDecoder<>,
              Classifier<Classes>> {
    static constexpr std::string_view name = "segnet-basic-5";
};
static_assert(parameter_count_v<SegNetBasic5<11>> ==
              parameter_count_v<SegNetBasic<11>> + (200'768 + 128) + (200'704 + 128));
static_assert(parameter_count_v<SegNetBasic5<11>> == 1'818'059);
static_assert(storage_multiplier_v<SegNetBasic5<11>> == 1);
using Out5 = output_shape_t<SegNetBasic5<11>, Shape<3, 360, 480>>;
static_assert(Out5::channels == 11 && Out5::height == 360 && Out5::width == 480);
static_assert(receptive_field_v<SegNetBasic<11>> == 196 && receptive_field_v<SegNetBasic5<11>> == 404);
static_assert(flops_v<SegNetBasic5<11>, Shape<3, 360, 480>> / 100'000'000 == 1190);

using UDecoder = Decoder<TransposedConv<64, 4, 2>, Concat, Block<Conv<64, 7, Bias::without>, BatchNorm>>;
template <int Classes>
struct SegNetBasicUNet : Network<Input<3, dyn, dyn>, BasicEncoder<>, BasicEncoder<>, BasicEncoder<>,
                                 BasicEncoder<>, UDecoder, UDecoder, UDecoder, UDecoder, Classifier<Classes>> {
    static constexpr std::string_view name = "segnet-basic-unet";
};
static_assert(parameter_count_v<SegNetBasicUNet<11>> == 612'288 + 4 * 467'072 + 715);
static_assert(parameter_count_v<SegNetBasicUNet<11>> == 2'481'291);
static_assert(storage_multiplier_v<SegNetBasicUNet<11>> == 64);
static_assert(inference_activation_bytes_v<SegNetBasicUNet<11>, Shape<3, 360, 480>> == 4LL * 64 * 360 * 480 * 4);
static_assert(flops_v<SegNetBasicUNet<11>, Shape<3, 360, 480>> / 1'000'000'000 == 218);
// The tutorial's broken network (no upsampler before Concat): stage 2, layer 1, 360 expected, 180 got.
constexpr Analysis broken = analyse<BasicEncoder<>, Decoder<Concat, Conv<64, 7>>, Classifier<11>>({3, 360, 480});
static_assert(broken.diag.fault == Fault::skip_size && broken.diag.stage == 2 && broken.diag.layer == 1 &&
              broken.diag.expected == 360 && broken.diag.actual == 180);
// Six encoders refuse a 32x32 input: the sixth pool meets a 1x1 map.
using SixEncoders = Network<Input<3, dyn, dyn>, BasicEncoder<>, BasicEncoder<>, BasicEncoder<>, BasicEncoder<>,
                            BasicEncoder<>, BasicEncoder<>, BasicDecoder<>, BasicDecoder<>, BasicDecoder<>,
                            BasicDecoder<>, BasicDecoder<>, BasicDecoder<>, Classifier<11>>;
static_assert(SixEncoders::analyse({3, 32, 32}).diag.fault == Fault::too_small);

// --- The registry ------------------------------------------------------------------------------
static_assert(model_names.size() == 18 && model_names[0] == "segnet" && is_model_name("fcn-basic") &&
              is_model_name("bayesian-segnet-basic") && is_model_name("unet") && is_model_name("deeplabv3") &&
              is_model_name("pspnet") && is_model_name("deeplab-largefov") && is_model_name("fcn-vgg16") &&
              is_model_name("deconvnet") &&
              !is_model_name("fcn"));
static_assert(is_supported_classes(11) && is_supported_classes(21) && !is_supported_classes(0) &&
              !is_supported_classes(40));

}  // namespace

// --- The registry finds a built-in model by its name at compile time ----------------------------
static_assert(std::is_same_v<model_named_t<"fcn-basic", 11>, FcnBasic<11>>);
static_assert(std::is_same_v<model_named_t<"segnet", 2>, SegNet<2>>);
