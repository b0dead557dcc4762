// Writes a SegNet-Basic checkpoint and, beside it, an input and the logits segnet computes for
// it in eval and train mode; check_pytorch.py loads both into PyTorch and compares.
//   export_reference OUT_DIR
#include <segnet/train/checkpoint.hpp>
#include <segnet/segnet.hpp>

#include <cstdio>
#include <filesystem>

using namespace segnet;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: export_reference OUT_DIR\n");
        return 2;
    }
    const std::filesystem::path out = argv[1];
    std::filesystem::create_directories(out);
    Model<models::SegNetBasic<11>, Cpu> model(7);
    // One training step's worth of batch-norm statistics, so eval mode is not the identity.
    Tensor<Cpu> warm({2, 3, 45, 61});
    Rng rng(3);
    for (float& v : warm.span()) v = rng.normal(0.2f, 1.5f);
    model.forward(warm, Mode::train);
    save_checkpoint(out / "segnet-basic.safetensors", model, {.model = "segnet-basic", .classes = 11, .ignore_label = 11});

    Tensor<Cpu> x({2, 3, 45, 61});
    for (float& v : x.span()) v = rng.normal();
    const Tensor<Cpu> eval_logits = model.forward(x, Mode::eval);
    const Tensor<Cpu> train_logits = model.forward(x, Mode::train);
    auto shape = [](const Tensor<Cpu>& t) { return std::vector<std::int64_t>{t.n(), t.c(), t.h(), t.w()}; };
    write_safetensors(out / "reference.safetensors",
                      {{"input", shape(x), x.data()},
                       {"eval_logits", shape(eval_logits), eval_logits.data()},
                       {"train_logits", shape(train_logits), train_logits.data()}});
    std::printf("wrote %s\n", out.string().c_str());
    return 0;
}
