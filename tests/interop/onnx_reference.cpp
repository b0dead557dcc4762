// Writes ONNX files for the runtimes' tests and the logits segnet computes, for them to compare:
//   onnx_reference OUT_DIR CHECKPOINT IMAGE...
// OUT_DIR/models/: every built-in network (11 classes, prepare() below) exported twice, with symbolic
// sizes (<name>.onnx; not PSPNet, whose 2, 3 and 6 bin pyramid pooling has an ONNX form only at a
// static size) and static 45x61 (<name>.static.onnx), for the ONNX checker; each runs on the
// first IMAGE resized to 45x61 (normalised) as a case of cases.json. Also conv-geometry.static.onnx:
// strided, dilated and valid convolutions (ConvGeometryProbe), for the checker only;
// conv-transpose(.static).onnx, DeconvNet's and FCN's ConvTranspose2d (ConvTransposeProbe), a case;
// and composites.static.onnx, every composite layer and AdaptiveAvgPool's three forms in a small
// network (CompositeProbe), a case whose logits must agree closely. Not every built-in network:
// exported_here() names the one left out, and why.
// OUT_DIR/cases.json lists what the runtimes run, each case an ONNX file, an input (raw float32
// NCHW) and segnet's eval logits for it (raw float32 NCHW): SegNet-Basic from CHECKPOINT with its
// normalisation in the graph (input: pixels 0..255) on each IMAGE at its own size, through the
// symbolic-size file and a static one, and on the first IMAGE resized to 352x480 (static); and
// SegNet (the weights of models/segnet.onnx, no normalisation in the graph: the input is
// normalised) on the first IMAGE resized to 192x256, static and symbolic.
#include <segnet/export/onnx.hpp>
#include <segnet/io/image.hpp>
#include <segnet/segnet.hpp>
#include <segnet/train/checkpoint.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace segnet;
namespace fs = std::filesystem;

namespace {

void write_raw(const fs::path& path, const Tensor<Cpu>& t) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(t.data()), std::streamsize(t.size() * sizeof(float)));
    if (!f) throw std::runtime_error("cannot write " + path.string());
}

/// Seed 1, and batch-norm statistics from one train forward: eval mode is then not the identity
/// on every batch norm, and a random network's logits are less tied.
template <class Net>
void prepare(Model<Net, Cpu>& model) {
    model.initialize(1);
    Tensor<Cpu> warm({2, 3, 64, 64});
    Rng rng(3);
    for (float& v : warm.span()) v = rng.normal(0.2f, 1.5f);
    model.forward(warm, Mode::train);
}

Tensor<Cpu> normalised(const Tensor<Cpu>& pixels, const Normalization& norm) {
    Tensor<Cpu> x = pixels;
    const std::int64_t plane = x.extents().plane();
    for (int c = 0; c < 3; ++c)
        for (std::int64_t i = 0; i < plane; ++i) x.data()[c * plane + i] = norm.apply(x.data()[c * plane + i], c);
    return x;
}

/// Runs `model` on `pixels` normalised as `norm` and writes the graph's input (`graph_input`)
/// and segnet's logits as NAME.input.bin and NAME.logits.bin; returns the case's cases.json entry
/// (min_agreement: the share of pixels whose argmax the runtimes must reproduce).
/// max_relative > 0: the runtimes' largest logit difference must also stay below that share of the
/// largest logit.
template <class Net>
std::string write_case(Model<Net, Cpu>& model, const std::string& name, const std::string& onnx_file,
                       const Tensor<Cpu>& pixels, const Normalization& norm, const Tensor<Cpu>& graph_input,
                       double min_agreement, const fs::path& out, double max_relative = 0) {
    const Tensor<Cpu>& logits = model.forward(normalised(pixels, norm), Mode::eval);
    write_raw(out / (name + ".input.bin"), graph_input);
    write_raw(out / (name + ".logits.bin"), logits);
    return "{\"name\": \"" + name + "\", \"onnx\": \"" + onnx_file + "\", \"shape\": [1, 3, " +
           std::to_string(pixels.h()) + ", " + std::to_string(pixels.w()) + "], \"classes\": " +
           std::to_string(logits.c()) + ", \"pools\": " + std::to_string(Net::analysis.encoder_count) +
           ", \"min_agreement\": " + std::to_string(min_agreement) +
           (max_relative > 0 ? ", \"max_relative\": " + std::to_string(max_relative) : std::string()) + "}";
}

/// The built-in network not exported here: DeconvNet exports (its ConvTranspose2d is
/// ConvTranspose), but needs at least 193x193 (not 45x61) and its files would be 1 GB each:
/// ConvTransposeProbe below exports the same layers.
constexpr bool exported_here(std::string_view name) { return name != "deconvnet"; }

/// Every built-in network exported here: its files in models/ and a case that runs the
/// symbolic-size one on `input` (normalised; random weights, so the argmax bar is 99.5% as for
/// SegNet below).
template <template <int> class... M>
void export_all(models::ModelList<M...>, const fs::path& out, const Tensor<Cpu>& input, std::vector<std::string>& cases) {
    const auto one = [&]<class Net>() {
        static_assert(onnx::exportable_v<Net>, "every built-in network has an ONNX form (issue 21)");
        if constexpr (exported_here(Net::name)) {
            Model<Net, Cpu> model;
            prepare(model);
            const std::string file = "models/" + std::string(Net::name);
            onnx::export_model(model, out / (file + ".static.onnx"), {.height = 45, .width = 61});
            std::string runs = file + ".onnx";
            try {
                onnx::export_model(model, out / runs);
            } catch (const onnx::StaticSizeRequired&) {  // PSPNet's pyramid: the static file runs
                runs = file + ".static.onnx";
            }
            cases.push_back(write_case(model, file, runs, input, Normalization::raw(), input, 0.995, out));
        }
    };
    (one.template operator()<M<11>>(), ...);
}

/// Conv2d's geometries (stride, dilation, valid and explicit padding, groups, an even kernel):
/// 45x61 -> 23x31 -> 23x31 -> 10x14 -> 9x13. Written static only (the logits are smaller than the
/// image), for the checker: shape inference must derive the sizes segnet's shape rule declares.
using ConvGeometryProbe = Network<
    Input<3, dyn, dyn>, Block<Conv2d<8, 7, ConvOptions{.stride = 2, .padding = Padding::explicit_(3)}>, BatchNorm, ReLU>,
    Block<Conv2d<8, 3, ConvOptions{.dilation = 3}>, BatchNorm, ReLU>,
    Conv2d<6, 3, ConvOptions{.stride = 2, .dilation = 2, .padding = Padding::valid, .groups = 2, .bias = Bias::without}>,
    Conv2d<6, 4, ConvOptions{.padding = Padding::explicit_(1)}>, Classifier<11>>;


/// DeconvNet's and FCN-8s's layers at 45x61 (ConvTranspose2d: FCN's stride-2 upscore with padding,
/// and DeconvNet's stride-1 valid 7x7 that restores a pooled map's size before its Unpool):
/// 45x61 -> 23x31 (pool) -> 46x62 -> 23x31 -> 17x25 -> 23x31 -> 45x61 (unpool); any size works.
/// A case: the runtimes compare its logits.
using ConvTransposeProbe = Network<
    Input<3, dyn, dyn>, Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>,
    ConvTranspose2d<8, 4, 2, 1, UpsampleInit::bilinear>, Conv2d<16, 4, ConvOptions{.stride = 2, .padding = Padding::explicit_(1)}>, ReLU,
    Conv2d<16, 7, ConvOptions{.padding = Padding::valid}>, BatchNorm, ReLU, ConvTranspose2d<8, 7>, BatchNorm, ReLU,
    Decoder<Unpool<2>, Block<Conv<8, 3>, BatchNorm, ReLU>>, Classifier<11>>;

/// Every composite layer and AdaptiveAvgPool's three ONNX forms at 45x61: a Residual block
/// (Relu after Add), a concat pyramid (Identity, a 1-bin pool -> GlobalAveragePool, a 3-bin one
/// on 45x61 -> MatMuls, a 5-bin one on 45x61 -> MatMuls, a pooled path resized back), a crop of a
/// 2x transposed convolution (23x31 -> 46x62 -> 45x61), a sum of three branches (Sum) and of two
/// (Add). Static only (the 3-bin pool needs the size); a case whose logits must match closely.
using CompositeProbe = Network<
    Input<3, dyn, dyn>, Block<Conv<8, 3>, BatchNorm, ReLU>,
    Residual<Block<Conv<8, 3, Bias::without>, BatchNorm, ReLU, Conv<8, 3, Bias::without>, BatchNorm>>,
    Branches<Merge::concat, Identity, ResizedToInput<Block<AdaptiveAvgPool<1>, Conv<4, 1>, ReLU>>,
             ResizedToInput<Block<AdaptiveAvgPool<3>, Conv<4, 1>, ReLU>>,
             ResizedToInput<Block<AdaptiveAvgPool<5>, Conv<4, 1>, ReLU>>,
             ResizedToInput<Block<MaxPool<2>, Conv<4, 3>, ReLU>>>,
    Residual<Block<Conv<16, 3, Bias::without>, BatchNorm>, Block<Conv<16, 1, Bias::without>, BatchNorm>>,
    Branches<Merge::sum, Conv<16, 1>, Identity, CroppedToInput<Block<MaxPool<2>, ConvTranspose2d<16, 4, 2, 1>>>>,
    Branches<Merge::sum, Conv<8, 3>, Conv<8, 1>>, Classifier<11>>;

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: onnx_reference OUT_DIR CHECKPOINT IMAGE...\n");
        return 2;
    }
    try {
        const fs::path out = argv[1];
        fs::create_directories(out / "models");
        std::vector<std::string> cases;
        Model<models::SegNetBasic<11>, Cpu> basic;
        const CheckpointInfo info = load_checkpoint(argv[2], basic, "segnet-basic");
        export_all(models::BuiltinModels{}, out,
                   normalised(resize_bilinear(load_rgb_tensor(argv[3]).view(), 45, 61), info.normalization), cases);
        onnx::export_model(basic, out / "segnet-basic-camvid.onnx", {.normalization = info.normalization});
        Model<ConvGeometryProbe, Cpu> conv_geometry;
        prepare(conv_geometry);
        onnx::export_model(conv_geometry, out / "models/conv-geometry.static.onnx", {.height = 45, .width = 61});
        {
            Model<ConvTransposeProbe, Cpu> probe;
            prepare(probe);
            const std::string file = "models/conv-transpose";
            onnx::export_model(probe, out / (file + ".onnx"));
            onnx::export_model(probe, out / (file + ".static.onnx"), {.height = 45, .width = 61});
            const Tensor<Cpu> pixels = normalised(resize_bilinear(load_rgb_tensor(argv[3]).view(), 45, 61), info.normalization);
            cases.push_back(write_case(probe, file, file + ".onnx", pixels, Normalization::raw(), pixels, 0.995, out));
        }
        {
            Model<CompositeProbe, Cpu> probe;
            prepare(probe);
            const std::string file = "models/composites";
            onnx::export_model(probe, out / (file + ".static.onnx"), {.height = 45, .width = 61});
            const Tensor<Cpu> pixels = normalised(resize_bilinear(load_rgb_tensor(argv[3]).view(), 45, 61), info.normalization);
            cases.push_back(write_case(probe, file, file + ".static.onnx", pixels, Normalization::raw(), pixels, 0.999,
                                       out, 1e-4));
        }
        const auto static_export = [&](auto& model, const std::string& file, const Tensor<Cpu>& pixels,
                                       std::optional<Normalization> norm) {
            onnx::export_model(model, out / file, {.height = int(pixels.h()), .width = int(pixels.w()), .normalization = norm});
            return file;
        };
        // The trained network: its argmax must agree on 99.9% of the pixels (the bar).
        for (int i = 3; i < argc; ++i) {
            const std::string name = "segnet-basic-camvid." + fs::path(argv[i]).stem().string();
            const Tensor<Cpu> pixels = load_rgb_tensor(argv[i]);
            const std::string file = static_export(basic, name + ".static.onnx", pixels, info.normalization);
            cases.push_back(write_case(basic, name, "segnet-basic-camvid.onnx", pixels, info.normalization, pixels, 0.999, out));
            cases.push_back(write_case(basic, name + ".static", file, pixels, info.normalization, pixels, 0.999, out));
        }
        // A size that divides evenly at every pool, which OpenCV 4.6 needs (check_opencv.py).
        const Tensor<Cpu> even = resize_bilinear(load_rgb_tensor(argv[3]).view(), 352, 480);
        const std::string even_file = static_export(basic, "segnet-basic-camvid.352x480.static.onnx", even, info.normalization);
        cases.push_back(write_case(basic, "segnet-basic-camvid.352x480", even_file, even, info.normalization, even, 0.999, out));
        // SegNet has no trained checkpoint here: random weights (those of models/segnet.onnx) give
        // near-tied logits, on which segnet's own two eval paths (fused and unfused) already
        // disagree on about 0.1% of the pixels; 99.5% is the bar there. No normalisation in this
        // graph: its input is normalised.
        Model<models::SegNet<11>, Cpu> segnet;
        prepare(segnet);
        const Tensor<Cpu> small = resize_bilinear(load_rgb_tensor(argv[3]).view(), 192, 256);
        const std::string segnet_file = static_export(segnet, "segnet.random.192x256.static.onnx", small, std::nullopt);
        cases.push_back(write_case(segnet, "segnet.random", segnet_file, small, info.normalization,
                                   normalised(small, info.normalization), 0.995, out));
        cases.push_back(write_case(segnet, "segnet.random.dynamic", "models/segnet.onnx", small, info.normalization,
                                   normalised(small, info.normalization), 0.995, out));

        std::ofstream json(out / "cases.json");
        json << "[\n";
        for (std::size_t i = 0; i < cases.size(); ++i) json << "  " << cases[i] << (i + 1 < cases.size() ? ",\n" : "\n");
        json << "]\n";
        std::printf("wrote %s: %zu cases\n", out.string().c_str(), cases.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "onnx_reference: %s\n", e.what());
        return 1;
    }
}
