// GPU twins of tests/test_layers.cpp: every layer (and a whole model) runs forward and backward
// on the CPU and the GPU from the same parameters and inputs, and the outputs, input gradients,
// parameter gradients, running statistics and pooling indices must agree (relative 1e-4; indices
// exactly). Also: the explicit-padding convolution path, Caffe's pooling ties, the caching
// allocator's steady state, and errors that name the failing call. Without a GPU every case is
// reported Skipped (main.cpp).
#include "common.cuh"

#include <memory>

using namespace segnet;
using namespace segnet::cuda_test;

namespace {

constexpr Dims any(int c) { return {c, dyn, dyn}; }

/// He initialisation, then biases, batch-norm gamma and transposed-conv weights away from their
/// trivial values (as init_layer in tests/test_layers.cpp).
void init_cpu(RuntimeLayer<Cpu>& layer, Rng& rng) {
    layer.initialize(rng);
    std::vector<ParamRef<Cpu>> ps;
    layer.collect(ps, "");
    for (auto& p : ps) {
        if (p.name == "bias") for (float& v : p.value->span()) v = rng.uniform(-0.5f, 0.5f);
        if (layer.kind() == "BatchNorm" && p.name == "weight") for (float& v : p.value->span()) v = rng.uniform(0.5f, 1.5f);
        if (layer.kind() == "BatchNorm" && p.name == "running_mean") for (float& v : p.value->span()) v = rng.uniform(-0.5f, 0.5f);
        if (layer.kind() == "BatchNorm" && p.name == "running_var") for (float& v : p.value->span()) v = rng.uniform(0.5f, 2.f);
        if (layer.kind() == "TransposedConv" && p.trainable()) for (float& v : p.value->span()) v = rng.uniform(-0.5f, 0.5f);
    }
}

/// Forward and backward of the twins on x (and a random output gradient); compares everything.
void run_twins(RuntimeLayer<Cpu>& c, RuntimeLayer<Cuda>& g, const Tensor<Cpu>& x, Mode mode, Rng& rng,
               const std::string& what) {
    const Tensor<Cuda> xg = backend::cuda::to_device(x);
    const Tensor<Cpu>& yc = c.forward(x, mode);
    const Tensor<Cuda>& yg = g.forward(xg, mode);
    check_close(yg, yc, what + " forward");
    const Tensor<Cpu> dy = random_tensor(yc.extents(), rng);
    const Tensor<Cuda> dyg = backend::cuda::to_device(dy);
    const Tensor<Cpu>& dxc = c.backward(dy);
    const Tensor<Cuda>& dxg = g.backward(dyg);
    check_close(dxg, dxc, what + " input gradient");
    compare_params(c, g, what);
}

template <class L>
void twin_plain(Dims in, Extents xe, Mode mode, Rng& rng, const std::string& what, float lo = -1.f, float hi = 1.f) {
    auto c = L::template make<Cpu>(in);
    auto g = L::template make<Cuda>(in);
    init_cpu(*c, rng);
    g->initialize(rng);
    mirror_params(*c, *g);
    run_twins(*c, *g, random_tensor(xe, rng, lo, hi), mode, rng, what);
}

/// The encoder side a paired layer reads: a feature map and its pool's indices, on both devices.
struct EncoderTwin {
    Tensor<Cpu> fc;
    Tensor<Cuda> fg;
    MaxPoolLayer<Cpu> pc;
    MaxPoolLayer<Cuda> pg;
    SkipLink<Cpu> lc;
    SkipLink<Cuda> lg;
    EncoderTwin(Extents e, int k, Rng& rng) : fc(random_tensor(e, rng)), fg(backend::cuda::to_device(fc)), pc(k), pg(k) {
        pc.forward(fc, Mode::train);
        pg.forward(fg, Mode::train);
        for (auto* l : {&lc}) l->feature = &fc, l->indices = &pc.indices(), l->pool = k;
        lg.feature = &fg;
        lg.indices = &pg.indices();
        lg.pool = k;
    }
    void reset() { lc.has_feature_grad = lg.has_feature_grad = false; }
};

template <class L>
void twin_paired(Dims in, Extents xe, EncoderTwin& enc, Rng& rng, const std::string& what) {
    auto c = L::template make<Cpu>(in);
    auto g = L::template make<Cuda>(in);
    init_cpu(*c, rng);
    g->initialize(rng);
    mirror_params(*c, *g);
    c->connect(&enc.lc);
    g->connect(&enc.lg);
    enc.reset();
    run_twins(*c, *g, random_tensor(xe, rng), Mode::train, rng, what);
    CHECK(enc.lc.has_feature_grad == enc.lg.has_feature_grad);
    if (enc.lc.has_feature_grad) check_close(enc.lg.feature_grad, enc.lc.feature_grad, what + " encoder-feature gradient");
}

// A small encoder-decoder with every skip policy that reads the encoder (Unpool indices, Add).
struct TinyAddNet : Network<Input<3, dyn, dyn>, Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                            Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                            Decoder<Unpool<2>, Add, Block<Conv<8, 3, Bias::without>, BatchNorm, ReLU>>,
                            Decoder<Unpool<2>, Block<Conv<8, 3, Bias::without>, BatchNorm>>, Classifier<4>> {
    static constexpr std::string_view name = "tiny-add";
};

}  // namespace

TEST_CASE("cuda twins: Conv with and without bias - K 1 3 7 - grouped") {
    Rng rng(10);
    twin_plain<Conv<4, 1>>(any(3), {2, 3, 7, 9}, Mode::train, rng, "Conv<4, 1>");
    twin_plain<Conv<5, 3, Bias::without>>(any(3), {2, 3, 7, 9}, Mode::train, rng, "Conv<5, 3, without>");
    twin_plain<Conv<4, 7>>(any(3), {2, 3, 7, 9}, Mode::train, rng, "Conv<4, 7>");
    twin_plain<Conv<6, 3, Bias::with, 2>>(any(4), {2, 4, 7, 9}, Mode::train, rng, "Conv<6, 3, with, 2>");
    twin_plain<Conv<3, 5, Bias::without, 3>>(any(6), {2, 6, 7, 9}, Mode::train, rng, "Conv<3, 5, without, 3>");
    twin_plain<Conv<64, 7>>(any(64), {2, 64, 45, 60}, Mode::train, rng, "Conv<64, 7> at SegNet-Basic's 45x60");
}

TEST_CASE("cuda twins: DepthwiseConv and Classifier") {
    Rng rng(11);
    twin_plain<DepthwiseConv<3>>(any(5), {2, 5, 7, 9}, Mode::train, rng, "DepthwiseConv<3>");
    twin_plain<DepthwiseConv<7, Bias::with>>(any(3), {2, 3, 7, 9}, Mode::train, rng, "DepthwiseConv<7, with>");
    twin_plain<Classifier<3>>(any(4), {2, 4, 7, 9}, Mode::train, rng, "Classifier<3>");
    twin_plain<Classifier<5, 3>>(any(4), {2, 4, 7, 9}, Mode::train, rng, "Classifier<5, 3>");
}

TEST_CASE("cuda twins: BatchNorm train mode (output - running statistics - gradients) and eval mode") {
    Rng rng(12);
    twin_plain<BatchNorm>(any(3), {2, 3, 5, 7}, Mode::train, rng, "BatchNorm train");
    twin_plain<BatchNorm>(any(3), {2, 3, 5, 7}, Mode::eval, rng, "BatchNorm eval");
    // A large mean: the running variance must stay unbiased and precise (PyTorch's rule).
    twin_plain<BatchNorm>(any(4), {3, 4, 6, 5}, Mode::train, rng, "BatchNorm train, mean 10", 9.f, 11.f);
}

TEST_CASE("cuda twins: ReLU") {
    Rng rng(13);
    twin_plain<ReLU>(any(3), {2, 3, 7, 9}, Mode::train, rng, "ReLU");
}

TEST_CASE("cuda twins: MaxPool 2 and 3 on odd sizes - identical indices") {
    Rng rng(14);
    auto pool_twin = [&](int k, Extents e) {
        MaxPoolLayer<Cpu> c(k);
        MaxPoolLayer<Cuda> g(k);
        run_twins(c, g, random_tensor(e, rng), Mode::train, rng, "MaxPool<" + std::to_string(k) + ">");
        const Tensor<Cpu, std::int32_t> ig = backend::cuda::to_host(g.indices());
        REQUIRE(ig.extents() == c.indices().extents());
        CHECK(std::equal(ig.span().begin(), ig.span().end(), c.indices().span().begin()));
    };
    pool_twin(2, {2, 3, 7, 9});
    pool_twin(3, {2, 3, 8, 7});
    pool_twin(2, {1, 4, 45, 60});
}

TEST_CASE("cuda twins: max pooling ties go to the first maximum (Caffe) as on the CPU") {
    Tensor<Cpu> x({1, 2, 5, 5});
    for (std::int64_t i = 0; i < x.size(); ++i) x[i] = float(i % 3 == 0);  // many equal maxima
    MaxPoolLayer<Cpu> c(2);
    MaxPoolLayer<Cuda> g(2);
    c.forward(x, Mode::eval);
    const Tensor<Cuda> xg = backend::cuda::to_device(x);
    g.forward(xg, Mode::eval);
    const Tensor<Cpu, std::int32_t> ig = backend::cuda::to_host(g.indices());
    CHECK(std::equal(ig.span().begin(), ig.span().end(), c.indices().span().begin()));
}

TEST_CASE("cuda twins: paired upsamplers Unpool - BilinearUpsample - TransposedConv") {
    Rng rng(15);
    {
        EncoderTwin enc({2, 3, 7, 9}, 2, rng);
        twin_paired<Unpool<2>>(any(3), {2, 3, 4, 5}, enc, rng, "Unpool<2> 4x5 -> 7x9");
        twin_paired<BilinearUpsample<2>>(any(3), {2, 3, 4, 5}, enc, rng, "BilinearUpsample<2> 4x5 -> 7x9");
        twin_paired<TransposedConv<5, 4, 2>>(any(3), {2, 3, 4, 5}, enc, rng, "TransposedConv<5, 4, 2>");
    }
    {
        EncoderTwin enc({2, 2, 8, 7}, 3, rng);
        twin_paired<TransposedConv<4, 3, 3, UpsampleInit::he>>(any(2), {2, 2, 3, 3}, enc, rng,
                                                                "TransposedConv<4, 3, 3> 3x3 -> 8x7");
    }
    {
        EncoderTwin enc({1, 4, 45, 60}, 2, rng);
        twin_paired<Unpool<2>>(any(4), {1, 4, 23, 30}, enc, rng, "Unpool<2> 23x30 -> 45x60");
    }
}

TEST_CASE("cuda twins: skip policies Add - AddProjected - Concat - NoSkip") {
    Rng rng(16);
    EncoderTwin enc({2, 4, 7, 9}, 2, rng);
    twin_paired<Add>(any(4), {2, 4, 7, 9}, enc, rng, "Add");
    twin_paired<AddProjected<3, 4>>(any(3), {2, 3, 7, 9}, enc, rng, "AddProjected<3, 4>");
    twin_paired<Concat>(any(5), {2, 5, 7, 9}, enc, rng, "Concat");
    twin_paired<NoSkip>(any(5), {2, 5, 7, 9}, enc, rng, "NoSkip");
}

TEST_CASE("cuda twins: LRN (default - strong alpha and beta)") {
    Rng rng(17);
    twin_plain<LRN<>>(any(7), {2, 7, 5, 6}, Mode::train, rng, "LRN<5, 1e-4, 0.75>", -2.f, 2.f);
    twin_plain<LRN<3, 500000, 75>>(any(7), {2, 7, 5, 6}, Mode::train, rng, "LRN<3, 0.5, 0.75>", -2.f, 2.f);
    twin_plain<LRN<5, 1000000, 150>>(any(7), {2, 7, 5, 6}, Mode::train, rng, "LRN<5, 1.0, 1.5>", -2.f, 2.f);
}

TEST_CASE("cuda twins: conv ops with an output size not derived from the input (explicit padding)") {
    Rng rng(18);
    // Stride 2, 4x4 kernel, pad 1: 7x9 gives 3x4 by cuDNN's rule, the geometry asks 4x5 (a
    // transposed conv's crop); and an output smaller than cuDNN's (rows the CPU never reads).
    for (const backend::ConvGeometry g : {backend::ConvGeometry{3, 7, 9, 5, 4, 5, 4, 2, 1, 1},
                                          backend::ConvGeometry{4, 13, 11, 6, 10, 9, 3, 1, 1, 2}}) {
        const int n = 2;
        const Tensor<Cpu> x = random_tensor({n, g.in_c, g.in_h, g.in_w}, rng);
        const Tensor<Cpu> w = random_tensor({g.out_c, g.in_c_per_group(), g.k, g.k}, rng);
        const Tensor<Cpu> b = random_tensor({1, g.out_c, 1, 1}, rng);
        const Tensor<Cpu> dy = random_tensor({n, g.out_c, g.out_h, g.out_w}, rng);
        Tensor<Cpu> y({n, g.out_c, g.out_h, g.out_w}), dx({n, g.in_c, g.in_h, g.in_w}), dw(w.extents()), db(b.extents());
        backend::conv2d_forward(x, w, &b, y, g);
        backend::conv2d_backward_data(dy, w, dx, g);
        backend::conv2d_backward_filter(x, dy, dw, &db, g);
        const Tensor<Cuda> xg = backend::cuda::to_device(x), wg = backend::cuda::to_device(w), bg = backend::cuda::to_device(b),
                           dyg = backend::cuda::to_device(dy);
        Tensor<Cuda> yg(y.extents()), dxg(dx.extents()), dwg(dw.extents()), dbg(db.extents());
        backend::conv2d_forward(xg, wg, &bg, yg, g);
        backend::conv2d_backward_data(dyg, wg, dxg, g);
        backend::conv2d_backward_filter(xg, dyg, dwg, &dbg, g);
        check_close(yg, y, "explicit-padding forward");
        check_close(dxg, dx, "explicit-padding backward-data");
        check_close(dwg, dw, "explicit-padding backward-filter");
        check_close(dbg, db, "explicit-padding bias gradient");
    }
}

TEST_CASE("cuda twins: a whole model (Unpool + Add skips) forward and backward from the same weights") {
    Rng rng(19);
    Model<TinyAddNet, Cpu> mc(7);
    Model<TinyAddNet, Cuda> mg(0);
    copy_state(mc, mg);
    const Tensor<Cpu> x = random_tensor({2, 3, 13, 11}, rng);
    const Tensor<Cuda> xg = backend::cuda::to_device(x);
    for (Mode mode : {Mode::train, Mode::eval}) {
        mc.zero_grad();
        mg.zero_grad();
        const Tensor<Cpu>& yc = mc.forward(x, mode);
        const Tensor<Cuda>& yg = mg.forward(xg, mode);
        check_close(yg, yc, "model logits");
        if (mode == Mode::eval) continue;  // no backward after an eval forward (it is an error)
        const Tensor<Cpu> dy = random_tensor(yc.extents(), rng);
        const Tensor<Cuda> dyg = backend::cuda::to_device(dy);
        check_close(mg.backward(dyg), mc.backward(dy), "model input gradient");
        auto sc = mc.state();
        auto sg = mg.state();
        REQUIRE(sc.size() == sg.size());
        for (std::size_t i = 0; i < sc.size(); ++i) {
            check_close(*sg[i].value, *sc[i].value, sc[i].name);
            if (sc[i].grad) check_close(*sg[i].grad, *sc[i].grad, "grad " + sc[i].name);
        }
    }
}

TEST_CASE("cuda twins: eval fusion (conv + BN folded, ReLU after the cuDNN conv) against the CPU's unfused layers") {
    Rng rng(23);
    Model<TinyAddNet, Cpu> mc(7);
    Model<TinyAddNet, Cuda> mg(0);
    for (auto& n : mc.layers())
        if (n.layer->kind() == "BatchNorm") init_cpu(*n.layer, rng);  // non-trivial statistics, gamma, beta
    copy_state(mc, mg);
    const Tensor<Cpu> x = random_tensor({2, 3, 13, 11}, rng);
    const Tensor<Cuda> xg = backend::cuda::to_device(x);
    mc.set_eval_fusion(false);
    const Tensor<Cpu> reference = mc.forward(x, Mode::eval);
    CHECK(mg.eval_fused_nodes() == 2 + 2 + 2 + 1);
    for (bool fusion : {true, false}) {
        CAPTURE(fusion);
        mg.set_eval_fusion(fusion);
        check_close(mg.forward(xg, Mode::eval), reference, fusion ? "fused eval logits" : "unfused eval logits");
    }
}

TEST_CASE("cuda: the caching allocator makes no cudaMalloc once a training step's shapes are known") {
    Rng rng(20);
    Model<TinyAddNet, Cuda> m(3);
    const Tensor<Cuda> x = backend::cuda::to_device(random_tensor({2, 3, 32, 32}, rng));
    auto step = [&] {
        const Tensor<Cuda>& y = m.forward(x, Mode::train);
        Tensor<Cuda> dy(y.extents());
        dy.fill(0.01f);
        m.backward(dy);
        backend::cuda::synchronize();
    };
    step();
    step();  // cuDNN plans and workspaces are made by now
    const std::int64_t before = backend::cuda::allocator().stats().mallocs;
    for (int i = 0; i < 3; ++i) step();
    CHECK(backend::cuda::allocator().stats().mallocs == before);
    CHECK(backend::cuda::CachingAllocator::bucket(1000) == 1024);
    CHECK(backend::cuda::CachingAllocator::bucket((1 << 20) + 1) == (1 << 20) + (1 << 18));
}

TEST_CASE("cuda: a failing CUDA call throws CudaError naming the call") {
    try {
        SEGNET_CUDA_CHECK(cudaSetDevice(9999));
        FAIL("cudaSetDevice(9999) succeeded");
    } catch (const backend::cuda::CudaError& e) {
        CHECK(e.call() == "cudaSetDevice(9999)");
        CHECK(std::string(e.what()).find("cudaSetDevice(9999) failed") != std::string::npos);
    }
    // A geometry cuDNN rejects is reported with the cuDNN call and the reason.
    Tensor<Cuda> x({1, 3, 8, 8}), w({4, 3, 3, 3}), y({1, 4, 8, 8});
    CHECK_THROWS_AS(backend::conv2d_forward(x, w, nullptr, y, backend::ConvGeometry{3, 8, 8, 4, 8, 8, 3, 1, 1, 2}),
                    std::invalid_argument);  // 3 channels in 2 groups: refused before cuDNN
}
