// segnet-architectures: the SegNet family (the paper's Table 1 variants, SegNet and the Caffe
// form of SegNet-Basic) side by side, every number computed by the compiler from the model
// types at 3x360x480: parameters, the paper's storage multiplier, forward GFLOPs, activation
// memory for inference (batch 1) and training (batch 4), and the classifier's receptive field,
// with the paper's parameters and storage multiplier beside ours.
//
//   segnet-architectures            # Markdown table on stdout (quoted in docs/architectures.md)
#include <segnet/segnet.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

using namespace segnet;

namespace {

using Camvid = Shape<3, 360, 480>;
constexpr int batch = 4;

/// A row, every value a compile-time constant of the type.
struct Row {
    std::string_view name;
    std::int64_t params;
    std::optional<int> storage;
    double gflops;
    double inference_mib, training_mib;
    int receptive_field;
    int classes, height, width;
};

template <NetworkType Net>
constexpr Row row() {
    using Out = output_shape_t<Net, Camvid>;
    constexpr std::int64_t mib = 1 << 20;
    return {Net::name,
            parameter_count_v<Net>,
            storage_multiplier_v<Net>,
            double(flops_v<Net, Camvid>) / 1e9,
            double(inference_activation_bytes_v<Net, Camvid>) / mib,
            double(training_activation_bytes_v<Net, Camvid, batch>) / mib,
            receptive_field_v<Net>,
            Out::channels,
            Out::height,
            Out::width};
}

/// The paper's Table 1 (SegNet-Basic variants); SegNet from SEGNET.md (about 29.5M).
struct Paper {
    const char* params;
    const char* storage;
};

std::string storage_text(std::optional<int> s) { return s ? std::to_string(*s) : "n/a"; }

void print(const Row& r, Paper p) {
    std::printf("| %-38s | %6.3f | %5s | %-3s | %5s | %7.1f | %9.1f | %10.1f | %4d | %dx%dx%d |\n",
                std::string(r.name).c_str(), double(r.params) / 1e6, p.params, storage_text(r.storage).c_str(),
                p.storage, r.gflops, r.inference_mib, r.training_mib, r.receptive_field, r.classes, r.height,
                r.width);
}

}  // namespace

int main() {
    using namespace segnet::models;
    // Computed at compile time: a constexpr table of the ten models.
    constexpr Row rows[] = {
        row<BilinearInterpolation<11>>(),          row<SegNetBasic<11>>(),
        row<SegNetBasicEncoderAddition<11>>(),     row<SegNetBasicSingleChannelDecoder<11>>(),
        row<FcnBasic<11>>(),                       row<FcnBasicNoAddition<11>>(),
        row<FcnBasicNoDimReduction<11>>(),         row<FcnBasicNoAdditionNoDimReduction<11>>(),
        row<SegNetBasicCaffe<11>>(),               row<SegNet<11>>(),
    };
    constexpr Paper paper[] = {{"0.625", "0"}, {"1.425", "1"},  {"1.425", "64"}, {"0.625", "1"}, {"0.65", "11"},
                               {"0.65", "n/a"}, {"1.625", "64"}, {"1.625", "0"},  {"-", "1"},    {"29.5", "1"}};
    static_assert(sizeof(rows) / sizeof(rows[0]) == sizeof(paper) / sizeof(paper[0]));

    std::printf("SegNet family at 3x360x480, 11 classes (CamVid). Every number is a compile-time constant of\n"
                "the model's type; params and storage multiplier of the paper (Table 1) beside ours.\n\n");
    std::printf("| model | params (M) | paper (M) | storage | paper storage | GFLOPs | inference MiB (batch 1) "
                "| training MiB (batch %d) | receptive field (px) | output |\n",
                batch);
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (std::size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); ++i) print(rows[i], paper[i]);
    std::printf("\nstorage: what the encoders keep for the decoders, in units of SegNet-Basic's pooling indices\n"
                "(a kept map counts its channels; n/a as the paper prints it). GFLOPs: forward, one image.\n"
                "Inference: largest live set (a layer's input and output plus what encoders keep). Training:\n"
                "input, every layer's output and pooling indices kept for backward (no gradients, no weights).\n");
    return 0;
}
