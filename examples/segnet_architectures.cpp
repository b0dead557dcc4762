// segnet-architectures: every built-in model (models::BuiltinModels: the paper's Table 1
// variants, SegNet and the Caffe form of SegNet-Basic) side by side, every number computed by
// the compiler from the model types at 3x360x480: parameters, the paper's storage multiplier,
// forward GFLOPs, activation memory for inference (batch 1) and training (batch 4), and the
// classifier's receptive field, with the paper's figures (each model's `paper`) beside ours.
//
//   segnet-architectures            # Markdown table on stdout (quoted in docs/models.md; CTest
//                                   # docs_models_table checks that the page shows it as printed)
//   segnet-architectures --json     # the same numbers as a JSON array (scripts/run_experiments.py)
#include <segnet/segnet.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
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

std::string paper_params(const models::PaperFigures& p) {
    if (p.parameters == 0) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", double(p.parameters) / 1e6);
    std::string millions = text;  // as the paper prints it: 1.425, 0.65, 29.5
    while (millions.back() == '0') millions.pop_back();
    return millions;
}

std::string paper_storage(const models::PaperFigures& p) {
    switch (p.storage.kind) {
        case models::PaperStorage::Kind::multiplier: return std::to_string(p.storage.value);
        case models::PaperStorage::Kind::not_applicable: return "n/a";
        default: return "-";
    }
}

std::string storage_text(std::optional<int> s) { return s ? std::to_string(*s) : "n/a"; }

template <NetworkType Net>
void print_row() {
    constexpr Row r = row<Net>();  // every value computed by the compiler
    std::printf("| %-38s | %6.3f | %5s | %-3s | %5s | %7.1f | %9.1f | %10.1f | %4d | %dx%dx%d |\n",
                std::string(r.name).c_str(), double(r.params) / 1e6, paper_params(Net::paper).c_str(),
                storage_text(r.storage).c_str(), paper_storage(Net::paper).c_str(), r.gflops, r.inference_mib,
                r.training_mib, r.receptive_field, r.classes, r.height, r.width);
}

template <NetworkType Net>
void print_json_row(bool first) {
    constexpr Row r = row<Net>();
    const auto& paper = Net::paper;
    const std::string paper_storage_json = paper.storage.kind == models::PaperStorage::Kind::multiplier
                                               ? std::to_string(paper.storage.value)
                                               : paper.storage.kind == models::PaperStorage::Kind::not_applicable ? "\"n/a\""
                                                                                                                  : "null";
    std::printf("%s\n  {\"name\": \"%s\", \"parameters\": %lld, \"paper_parameters\": %lld, \"storage_multiplier\": %s, "
                "\"paper_storage_multiplier\": %s, \"gflops\": %.3f, \"inference_mib\": %.2f, \"training_mib\": %.2f, "
                "\"receptive_field\": %d, \"classes\": %d, \"height\": %d, \"width\": %d}",
                first ? "" : ",", std::string(r.name).c_str(), static_cast<long long>(r.params),
                static_cast<long long>(paper.parameters), r.storage ? std::to_string(*r.storage).c_str() : "\"n/a\"",
                paper_storage_json.c_str(), r.gflops, r.inference_mib, r.training_mib, r.receptive_field, r.classes,
                r.height, r.width);
}

/// One row per built-in model, in the registry's order (models/registry.hpp: the one list).
template <template <int> class... Models>
void print_rows(models::ModelList<Models...>) {
    (print_row<Models<11>>(), ...);
}

template <template <int> class... Models>
void print_json_rows(models::ModelList<Models...>) {
    bool first = true;
    ((print_json_row<Models<11>>(first), first = false), ...);
    std::printf("\n]\n");
}

}  // namespace

int main(int argc, char** argv) {
    const bool json = argc == 2 && std::strcmp(argv[1], "--json") == 0;
    if (argc > 2 || (argc == 2 && !json)) {
        std::fprintf(stderr, "segnet-architectures: unknown option '%s' (usage: segnet-architectures [--json])\n", argv[1]);
        return 2;
    }
    if (json) {
        std::printf("[");  // parameters 0 / storage null: not in the paper; "n/a" as the paper prints it
        print_json_rows(models::BuiltinModels{});
        return 0;
    }
    std::printf("SegNet family at 3x360x480, 11 classes (CamVid). Every number is a compile-time constant of\n"
                "the model's type; params and storage multiplier of the paper (Table 1) beside ours.\n\n");
    std::printf("| model | params (M) | paper (M) | storage | paper storage | GFLOPs | inference MiB (batch 1) "
                "| training MiB (batch %d) | receptive field (px) | output |\n",
                batch);
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    print_rows(models::BuiltinModels{});
    std::printf("\nstorage: what the encoders keep for the decoders, in units of SegNet-Basic's pooling indices\n"
                "(a kept map counts its channels; n/a as the paper prints it; -: not in the paper). GFLOPs:\n"
                "forward, one image. Inference: largest live set (a layer's input and output plus what encoders\n"
                "keep). Training: input, every layer's output and pooling indices kept for backward (no\n"
                "gradients, no weights).\n");
    return 0;
}
