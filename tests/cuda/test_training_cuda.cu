// The training code on device tensors against the same code on host tensors: the one
// CrossEntropyLoss, the one Sgd/Adam/AdamW family, backend::predict_labels and copy_state, a few
// identical training steps on both devices, and the end-to-end learning test (a small SegNet
// learns the committed shapes set on the GPU, G >= 95%).
// Without a GPU every case is reported Skipped (main.cpp).
#include "common.cuh"

#include <segnet/data/dataset.hpp>
#include <segnet/metrics/confusion.hpp>
#include <segnet/train/loss.hpp>
#include <segnet/train/optimizer.hpp>

#include <chrono>
#include <filesystem>

using namespace segnet;
using namespace segnet::cuda_test;
namespace fs = std::filesystem;

namespace {

// tests/test_training.cpp's TinyNet.
struct TinyNet : Network<Input<3, dyn, dyn>, Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                         Encoder<Block<Conv<16, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                         Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>,
                         Decoder<Unpool<2>, Block<Conv<16, 3, Bias::without>, BatchNorm, ReLU>>, Classifier<4>> {
    static constexpr std::string_view name = "tiny";
};

Tensor<Cpu, std::uint8_t> random_labels(Extents e, int classes, int ignore, Rng& rng) {
    Tensor<Cpu, std::uint8_t> y(e);
    for (std::int64_t i = 0; i < y.size(); ++i) {
        const int v = int(rng.uniform(0.f, float(classes) + 0.5f));
        y[i] = std::uint8_t(v >= classes ? ignore : v);
    }
    return y;
}

}  // namespace

TEST_CASE("cuda twins: weighted cross-entropy with ignore label (weighted_mean and sum)") {
    Rng rng(30);
    const Tensor<Cpu> z = random_tensor({2, 5, 7, 9}, rng, -4.f, 4.f);
    const Tensor<Cpu, std::uint8_t> y = random_labels({2, 1, 7, 9}, 5, 11, rng);
    for (LossNormalization norm : {LossNormalization::weighted_mean, LossNormalization::sum}) {
        const CrossEntropyOptions o{.class_weights = {0.5f, 1.f, 2.f, 0.f, 1.5f}, .ignore_label = 11, .normalization = norm};
        Tensor<Cpu> gc(z.extents());
        const double lc = CrossEntropyLoss(o).forward_backward(z.view(), y.view(), gc.view());
        const Tensor<Cuda> zg = backend::cuda::to_device(z);
        const Tensor<Cuda, std::uint8_t> yg = backend::cuda::to_device(y);
        Tensor<Cuda> gg(z.extents());
        const double lg = CrossEntropyLoss(o).forward_backward(zg, yg, gg);
        CHECK(lg == doctest::Approx(lc).epsilon(1e-5));
        check_close(gg, gc, "loss gradient");
        CHECK(CrossEntropyLoss(o).forward(zg, yg) == doctest::Approx(lc).epsilon(1e-5));
    }
    // A label that is neither a class nor the ignore label is refused, as on the CPU.
    Tensor<Cpu, std::uint8_t> bad = y;
    bad[3] = 7;
    Tensor<Cuda> gg(z.extents());
    CHECK_THROWS_AS(CrossEntropyLoss({.ignore_label = 11}).forward_backward(backend::cuda::to_device(z), backend::cuda::to_device(bad), gg),
                    std::invalid_argument);
}

TEST_CASE("cuda twins: SGD (momentum - Nesterov - weight decay) Adam and AdamW updates") {
    Rng rng(31);
    for (const char* kind : {"sgd", "sgd-nesterov", "adam", "adamw"}) {
        Model<TinyNet, Cpu> mc(5);
        Model<TinyNet, Cuda> mg(0);
        copy_state(mc, mg);
        OptimizerOptions o;
        o.lr = 0.05;
        o.weight_decay = 1e-3;
        o.nesterov = std::string(kind) == "sgd-nesterov";
        const std::string name = o.nesterov ? "sgd" : kind;
        auto oc = make_optimizer(name, mc.parameters(), o);
        auto og = make_optimizer(name, mg.parameters(), o);
        // The same fixed gradients on both devices, three steps.
        for (int s = 0; s < 3; ++s) {
            auto pc = mc.parameters();
            auto pg = mg.parameters();
            for (std::size_t i = 0; i < pc.size(); ++i) {
                *pc[i].grad = random_tensor(pc[i].value->extents(), rng);
                backend::cuda::copy_to_device(*pc[i].grad, *pg[i].grad);
            }
            oc->step();
            og->step();
        }
        auto pc = mc.parameters();
        auto pg = mg.parameters();
        for (std::size_t i = 0; i < pc.size(); ++i) check_close(*pg[i].value, *pc[i].value, std::string(kind) + " " + pc[i].name);
        // The state crosses devices under the CPU names.
        const OptimizerState sg = og->state();
        const OptimizerState sc = oc->state();
        REQUIRE(sg.tensors.size() == sc.tensors.size());
        for (std::size_t i = 0; i < sc.tensors.size(); ++i) CHECK(sg.tensors[i].first == sc.tensors[i].first);
        oc->load_state(sg);
        og->load_state(sc);
        CHECK(og->step_count() == 3);
    }
}

TEST_CASE("cuda twins: predicted labels and the confusion matrix from device logits equal the CPU's") {
    Rng rng(32);
    Tensor<Cpu> z = random_tensor({2, 4, 9, 7}, rng);
    z[5] = z[5 + 63];  // a tie: the lowest class wins on both devices
    const Tensor<Cpu, std::uint8_t> y = random_labels({2, 1, 9, 7}, 4, 255, rng);
    const Tensor<Cpu, std::uint8_t> pc = backend::predict_labels(z);
    const Tensor<Cpu, std::uint8_t> pg = backend::predict_labels(backend::cuda::to_device(z));
    REQUIRE(pg.extents() == pc.extents());
    CHECK(std::equal(pc.span().begin(), pc.span().end(), pg.span().begin()));
    ConfusionMatrix cc(4), cg(4);
    cc.add_logits(z.view(), y.view(), 255);
    cg.add(pg.view(), y.view(), 255);
    CHECK(cg.counts() == cc.counts());
}

TEST_CASE("cuda twins: three training steps (loss - backward - Adam) match the CPU step for step") {
    Rng rng(33);
    Model<TinyNet, Cpu> mc(9);
    Model<TinyNet, Cuda> mg(0);
    copy_state(mc, mg);
    const Tensor<Cpu> x = random_tensor({2, 3, 24, 20}, rng);
    const Tensor<Cpu, std::uint8_t> y = random_labels({2, 1, 24, 20}, 4, 255, rng);
    const Tensor<Cuda> xg = backend::cuda::to_device(x);
    const Tensor<Cuda, std::uint8_t> yg = backend::cuda::to_device(y);
    const CrossEntropyOptions lo{.ignore_label = 255};
    OptimizerOptions oo;
    oo.lr = 0.01;
    oo.weight_decay = 0.0;
    auto oc = make_optimizer("adam", mc.parameters(), oo);
    auto og = make_optimizer("adam", mg.parameters(), oo);
    Tensor<Cpu> gc;
    Tensor<Cuda> gg;
    for (int step = 0; step < 3; ++step) {
        const Tensor<Cpu>& zc = mc.forward(x, Mode::train);
        const Tensor<Cuda>& zg = mg.forward(xg, Mode::train);
        gc.resize(zc.extents());
        gg.resize(zg.extents());
        const double lc = CrossEntropyLoss(lo).forward_backward(zc.view(), y.view(), gc.view());
        const double lg = CrossEntropyLoss(lo).forward_backward(zg, yg, gg);
        // Adam normalises the step size, so differences grow a little per step: 1e-4, then 1e-3.
        CHECK_MESSAGE(lg == doctest::Approx(lc).epsilon(step == 0 ? 1e-4 : 1e-3), "step " << step);
        mc.backward(gc);
        mg.backward(gg);
        oc->step();
        og->step();
        oc->zero_grad();
        og->zero_grad();
    }
    auto sc = mc.state();
    auto sg = mg.state();
    for (std::size_t i = 0; i < sc.size(); ++i) check_close(*sg[i].value, *sc[i].value, sc[i].name, 1e-3);
}

TEST_CASE("cuda: a small SegNet learns the committed shapes set on the GPU (G >= 95% on its validation images)") {
    const fs::path data = fs::path(SEGNET_TEST_DATA_DIR) / "shapes";
    DatasetOptions d{.classes = 4, .ignore_label = 255, .normalization = Normalization::none()};
    const auto train_set = SegmentationDataset::from_list_file(data / "train" / "list.txt", d);
    const auto val_set = SegmentationDataset::from_list_file(data / "val" / "list.txt", d);
    Model<TinyNet, Cuda> model(3);
    OptimizerOptions oo;
    oo.lr = 0.01;
    oo.weight_decay = 0.0;
    auto opt = make_optimizer("adam", model.parameters(), oo);
    const CrossEntropyLoss loss({.ignore_label = 255});
    LoaderOptions lo{.batch_size = 4, .shuffle = true, .seed = 3};
    lo.augmentation.horizontal_flip = true;
    BatchLoader loader(train_set, lo);
    Tensor<Cuda> x, grad;
    Tensor<Cuda, std::uint8_t> y;
    double first = 0, last = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int epoch = 0; epoch < 40; ++epoch) {
        double sum = 0;
        int count = 0;
        while (auto b = loader.next()) {
            backend::cuda::copy_to_device(b->images, x);
            backend::cuda::copy_to_device(b->labels, y);
            const Tensor<Cuda>& z = model.forward(x, Mode::train);
            grad.resize(z.extents());
            sum += loss.forward_backward(z, y, grad);
            ++count;
            model.backward(grad);
            opt->step();
            opt->zero_grad();
        }
        (epoch == 0 ? first : last) = sum / count;
    }
    ConfusionMatrix cm(4);
    BatchLoader val(val_set, {.batch_size = 4, .shuffle = false});
    while (auto b = val.next()) {
        backend::cuda::copy_to_device(b->images, x);
        cm.add(backend::predict_labels(model.forward(x, Mode::eval)).view(), b->labels.view(), 255);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("40 epochs on the GPU in " << seconds << " s; loss " << first << " -> " << last << "; val G "
                                       << cm.global_accuracy());
    CHECK(last < first);
    CHECK(cm.global_accuracy() >= 95.0);
}
