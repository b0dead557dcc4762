// Writes ONNX files for the runtimes' tests and the logits segnet computes, for them to compare:
//   onnx_reference OUT_DIR CHECKPOINT IMAGE...
// OUT_DIR/models/: every built-in network (11 classes, prepare() below) exported twice, with symbolic
// sizes (<name>.onnx) and static 45x61 (<name>.static.onnx), for the ONNX checker.
// OUT_DIR/cases.json lists what the runtimes run, each case an ONNX file, an input (raw float32
// NCHW) and segnet's eval logits for it (raw float32 NCHW): SegNet-Basic from CHECKPOINT with its
// normalisation in the graph (input: pixels 0..255) on each IMAGE at its own size, through the
// symbolic-size file and a static one; and SegNet (models/segnet.onnx, no normalisation
// in the graph: the input is normalised) on the first IMAGE resized to 180x240.
#include <segnet/export/onnx.hpp>
#include <segnet/io/image.hpp>
#include <segnet/segnet.hpp>
#include <segnet/train/checkpoint.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
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

template <template <int> class... M>
void export_all(models::ModelList<M...>, const fs::path& dir) {
    const auto one = [&]<class Net>() {
        Model<Net, Cpu> model;
        prepare(model);
        onnx::export_model(model, dir / (std::string(Net::name) + ".onnx"));
        onnx::export_model(model, dir / (std::string(Net::name) + ".static.onnx"), {.height = 45, .width = 61});
    };
    (one.template operator()<M<11>>(), ...);
}

Tensor<Cpu> normalised(const Tensor<Cpu>& pixels, const Normalization& norm) {
    Tensor<Cpu> x = pixels;
    const std::int64_t plane = x.extents().plane();
    for (int c = 0; c < 3; ++c)
        for (std::int64_t i = 0; i < plane; ++i) x.data()[c * plane + i] = norm.apply(x.data()[c * plane + i], c);
    return x;
}

/// Runs `model` on `pixels` normalised as `norm` and writes the graph's input (`graph_input`)
/// and segnet's logits as NAME.input.bin and NAME.logits.bin; returns the case's cases.json entry.
template <class Net>
std::string write_case(Model<Net, Cpu>& model, const std::string& name, const std::string& onnx_file,
                       const Tensor<Cpu>& pixels, const Normalization& norm, const Tensor<Cpu>& graph_input,
                       const fs::path& out) {
    const Tensor<Cpu>& logits = model.forward(normalised(pixels, norm), Mode::eval);
    write_raw(out / (name + ".input.bin"), graph_input);
    write_raw(out / (name + ".logits.bin"), logits);
    return "{\"name\": \"" + name + "\", \"onnx\": \"" + onnx_file + "\", \"shape\": [1, 3, " +
           std::to_string(pixels.h()) + ", " + std::to_string(pixels.w()) + "], \"classes\": " +
           std::to_string(logits.c()) + "}";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: onnx_reference OUT_DIR CHECKPOINT IMAGE...\n");
        return 2;
    }
    try {
        const fs::path out = argv[1];
        fs::create_directories(out / "models");
        export_all(models::BuiltinModels{}, out / "models");

        std::vector<std::string> cases;
        Model<models::SegNetBasic<11>, Cpu> basic;
        const CheckpointInfo info = load_checkpoint(argv[2], basic, "segnet-basic");
        onnx::export_model(basic, out / "segnet-basic-camvid.onnx", {.normalization = info.normalization});
        for (int i = 3; i < argc; ++i) {
            const std::string name = "segnet-basic-camvid." + fs::path(argv[i]).stem().string();
            const Tensor<Cpu> pixels = load_rgb_tensor(argv[i]);
            onnx::export_model(basic, out / (name + ".static.onnx"),
                               {.height = int(pixels.h()), .width = int(pixels.w()), .normalization = info.normalization});
            cases.push_back(write_case(basic, name, "segnet-basic-camvid.onnx", pixels, info.normalization, pixels, out));
            cases.push_back(write_case(basic, name + ".static", name + ".static.onnx", pixels, info.normalization, pixels, out));
        }
        Model<models::SegNet<11>, Cpu> segnet;
        prepare(segnet);  // the weights of models/segnet.onnx
        const Tensor<Cpu> small = resize_bilinear(load_rgb_tensor(argv[3]).view(), 180, 240);
        cases.push_back(write_case(segnet, "segnet.random", "models/segnet.onnx", small, info.normalization,
                                   normalised(small, info.normalization), out));

        std::ofstream json(out / "cases.json");
        json << "[\n";
        for (std::size_t i = 0; i < cases.size(); ++i) json << "  " << cases[i] << (i + 1 < cases.size() ? ",\n" : "\n");
        json << "]\n";
        std::printf("wrote %s: %zu models, %zu cases\n", out.string().c_str(), models::BuiltinModels::size, cases.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "onnx_reference: %s\n", e.what());
        return 1;
    }
}
