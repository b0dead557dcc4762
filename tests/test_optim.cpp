// Optimizers (train/optimizer.hpp) against PyTorch reference values, state export/import for
// exact resume, and learning-rate schedules (train/schedule.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "segnet/train/optimizer.hpp"
#include "segnet/train/schedule.hpp"

using namespace segnet;

namespace {

// A toy model: w (2x3, decayed), b (3, not decayed), and a BN-like buffer without gradient
// that every optimizer must leave alone. Values and gradients are multiples of 1/8 or 1/4,
// exact in float32, so PyTorch and this test start from bit-identical inputs.
struct Toy {
    Tensor<Cpu> w{2, 3, 1, 1}, gw{2, 3, 1, 1};
    Tensor<Cpu> b{1, 3, 1, 1}, gb{1, 3, 1, 1};
    Tensor<Cpu> running_mean{1, 3, 1, 1};

    Toy() {
        for (int j = 0; j < 6; ++j) w[j] = float((j * 5) % 9 - 4) * 0.25f;
        for (int j = 0; j < 3; ++j) b[j] = float((j * 5 + 1) % 9 - 4) * 0.25f;
        running_mean.fill(0.5f);
    }
    std::vector<ParamRef<Cpu>> parameters() {
        return {{"layer.weight", &w, &gw, {2, 3}, true},
                {"layer.running_mean", &running_mean, nullptr, {3}, false},
                {"layer.bias", &b, &gb, {3}, false}};
    }
    void set_grads(int t) {
        for (int j = 0; j < 6; ++j) gw[j] = float((j * 7 + t * 3) % 11 - 5) * 0.125f;
        for (int j = 0; j < 3; ++j) gb[j] = float((j * 7 + 6 * 7 + t * 3) % 11 - 5) * 0.125f;
    }
    std::vector<float> values() const {
        std::vector<float> v(w.data(), w.data() + 6);
        v.insert(v.end(), b.data(), b.data() + 3);
        return v;
    }
};

// Runs 3 steps; before the third, the learning rate is changed to lr2 when given.
void run3(Toy& toy, Optimizer& opt, double lr2 = -1) {
    for (int t = 0; t < 3; ++t) {
        if (t == 2 && lr2 >= 0) opt.set_lr(lr2);
        opt.zero_grad();
        toy.set_grads(t);
        opt.step();
    }
}

// Same float32 formulas in the same order as PyTorch; GCC may fuse a multiply-add where
// PyTorch's kernel does not, so allow a few ulp rather than demanding bit equality.
void check_close(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i << ": got " << got[i] << ", PyTorch " << want[i]);
        CHECK(std::fabs(got[i] - want[i]) <= 1e-6f * std::max(1.0f, std::fabs(want[i])));
    }
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

// Expected values: /usr/bin/python3 with Debian's python3-torch 1.13.1, torch.optim.SGD /
// Adam / AdamW (foreach=False), param groups {w: weight_decay=wd} and {b: weight_decay=0, or wd
// for decay_all}, the same initial values and per-step gradients as Toy, 3 steps, printed with
// "%.9g". Generator (one case shown; the others change the optimizer line):
//   import torch
//   w = torch.tensor([((j*5)%9-4)*0.25 for j in range(6)]).reshape(2,3).requires_grad_()
//   b = torch.tensor([((j*5+1)%9-4)*0.25 for j in range(3)]).requires_grad_()
//   opt = torch.optim.SGD([{'params':[w],'weight_decay':5e-4}, {'params':[b],'weight_decay':0.0}],
//                         lr=0.1, momentum=0.9, foreach=False)
//   for t in range(3):   # (for the "lr changed" cases: before t == 2, set every group's 'lr')
//       w.grad = torch.tensor([((j*7+t*3)%11-5)*0.125 for j in range(6)]).reshape(2,3)
//       b.grad = torch.tensor([((j*7+42+t*3)%11-5)*0.125 for j in range(3)])
//       opt.step()
//   print(", ".join("%.9gf" % v for v in w.flatten().tolist() + b.tolist()))

TEST_CASE("Sgd matches torch.optim.SGD") {
    SUBCASE("paper defaults: lr 0.1, momentum 0.9, weight decay 5e-4 on decay-flagged params") {
        Toy toy;
        Sgd opt(toy.parameters());
        CHECK(opt.lr() == 0.1);
        CHECK(opt.options().momentum == 0.9);
        CHECK(opt.options().weight_decay == 5e-4);
        run3(toy, opt);
        check_close(toy.values(), {-0.795357645f, 0.100937769f, -0.755793691f, 0.401744783f, -0.578729868f,
                                   0.813907444f, -0.777999997f, 0.491250008f, -0.365749985f});
        CHECK(opt.step_count() == 3);
    }
    SUBCASE("Nesterov, decay_all") {
        Toy toy;
        Sgd opt(toy.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true,
                                   .decay_all = true});
        run3(toy, opt);
        check_close(toy.values(), {-0.866693616f, 0.157065481f, -0.768487275f, 0.441460252f, -0.539655924f,
                                   0.775744021f, -0.753250659f, 0.506585836f, -0.418966949f});
    }
    SUBCASE("dampening, learning rate changed before step 3") {
        Toy toy;
        Sgd opt(toy.parameters(), {.lr = 0.1, .momentum = 0.5, .weight_decay = 1e-2, .dampening = 0.1});
        run3(toy, opt, 0.02);
        CHECK(opt.lr() == 0.02);
        check_close(toy.values(), {-0.877989233f, 0.155486971f, -0.730615556f, 0.438963354f, -0.558491886f,
                                   0.799288869f, -0.775750041f, 0.474124998f, -0.414624989f});
    }
    SUBCASE("no momentum keeps no state") {
        Toy toy;
        Sgd opt(toy.parameters(), {.lr = 0.1, .momentum = 0, .weight_decay = 1e-2});
        run3(toy, opt);
        check_close(toy.values(), {-0.922152936f, 0.199363217f, -0.785289705f, 0.473588943f, -0.510926545f,
                                   0.747677326f, -0.737500012f, 0.525000036f, -0.462500006f});
        CHECK(opt.state().tensors.empty());
    }
}

TEST_CASE("Sgd step 1 by hand") {
    // First step: buf = g + wd*w, w -= lr*buf. w[0] = -1, g[0] = -5/8, decay 5e-4:
    // buf = -0.625 - 0.0005 = -0.6255; w = -1 + 0.06255 = -0.93745.
    // b[0] = -0.75 (no decay), g = ((42)%11-5)/8 = 0.5: w = -0.75 - 0.05 = -0.8.
    Toy toy;
    Sgd opt(toy.parameters());
    toy.set_grads(0);
    opt.step();
    CHECK(toy.w[0] == doctest::Approx(-0.93745).epsilon(1e-7));
    CHECK(toy.b[0] == doctest::Approx(-0.8).epsilon(1e-7));
    CHECK(toy.running_mean[0] == 0.5f);
}

TEST_CASE("Adam and AdamW match torch.optim") {
    SUBCASE("Adam, coupled L2 on decay-flagged params") {
        Toy toy;
        Adam opt(toy.parameters(), {.lr = 0.01, .weight_decay = 1e-2});
        run3(toy, opt);
        check_close(toy.values(), {-0.975161254f, 0.227314159f, -0.741382837f, 0.486400604f, -0.519143581f,
                                   0.765439093f, -0.7579602f, 0.495078743f, -0.478708535f});
    }
    SUBCASE("Adam, custom betas and eps, decay_all, lr changed before step 3") {
        Toy toy;
        Adam opt(toy.parameters(),
                 {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-3, .weight_decay = 0.1, .decay_all = true});
        run3(toy, opt, 0.005);
        check_close(toy.values(), {-0.977780402f, 0.228843778f, -0.73674953f, 0.48673135f, -0.517891645f,
                                   0.762054503f, -0.755535483f, 0.482717395f, -0.47997731f});
    }
    SUBCASE("AdamW, decoupled decay on decay-flagged params") {
        Toy toy;
        AdamW opt(toy.parameters(), {.lr = 0.01, .weight_decay = 0.1});
        run3(toy, opt);
        check_close(toy.values(), {-0.972384632f, 0.226648435f, -0.739684939f, 0.485128164f, -0.517772496f,
                                   0.763567448f, -0.7579602f, 0.495078743f, -0.478708535f});
    }
    SUBCASE("AdamW defaults, decay_all") {
        Toy toy;
        AdamW opt(toy.parameters(), {.decay_all = true});
        CHECK(opt.lr() == 1e-3);
        CHECK(opt.options().weight_decay == 1e-2);
        run3(toy, opt);
        check_close(toy.values(), {-0.997505188f, 0.247729346f, -0.749168515f, 0.498645455f, -0.501914918f,
                                   0.751561642f, -0.750773489f, 0.499492854f, -0.497855872f});
    }
    SUBCASE("Adam step 1 by hand") {
        // m = 0.1g, v = 0.001g^2; bias-corrected: m^ = g, v^ = g^2, so the first step moves
        // every weight by -lr * g / (|g| + eps) = -lr * sign(g) (up to eps).
        Toy toy;
        Adam opt(toy.parameters(), {.lr = 0.01});
        toy.set_grads(0);
        opt.step();
        CHECK(toy.w[0] == doctest::Approx(-1.0 + 0.01).epsilon(1e-6));  // g[0] = -0.625
        CHECK(toy.b[0] == doctest::Approx(-0.75 - 0.01).epsilon(1e-6));  // g = +0.5
        CHECK(toy.running_mean[0] == 0.5f);
    }
}

TEST_CASE("state export/import resumes exactly") {
    auto check_resume = [](auto make) {
        // Reference: 4 uninterrupted steps.
        Toy ref;
        auto ref_opt = make(ref);
        for (int t = 0; t < 4; ++t) {
            ref.set_grads(t);
            ref_opt->step();
        }
        // Interrupted: 2 steps, save weights + state, rebuild everything, load, 2 more steps.
        Toy a;
        auto a_opt = make(a);
        for (int t = 0; t < 2; ++t) {
            a.set_grads(t);
            a_opt->step();
        }
        a_opt->set_lr(a_opt->lr());  // no-op, but states must carry the lr in force
        const OptimizerState saved = a_opt->state();
        const auto flat = to_named_tensors(saved);
        Toy b;
        b.w = a.w;
        b.b = a.b;
        auto b_opt = make(b);
        b_opt->load_state(from_named_tensors(flat));
        CHECK(b_opt->step_count() == 2);
        for (int t = 2; t < 4; ++t) {
            b.set_grads(t);
            b_opt->step();
        }
        CHECK(bit_equal(b.values(), ref.values()));
    };
    SUBCASE("sgd") {
        check_resume([](Toy& t) { return make_optimizer("sgd", t.parameters()); });
    }
    SUBCASE("sgd nesterov") {
        check_resume([](Toy& t) { return make_optimizer("sgd", t.parameters(), {.nesterov = true}); });
    }
    SUBCASE("adam") {
        check_resume([](Toy& t) { return make_optimizer("adam", t.parameters(), {.lr = 0.01}); });
    }
    SUBCASE("adamw") {
        check_resume([](Toy& t) { return make_optimizer("adamw", t.parameters(), {.lr = 0.01}); });
    }
}

TEST_CASE("state names, step count and learning rate") {
    Toy toy;
    Adam opt(toy.parameters(), {.lr = 0.01});
    CHECK(opt.state().tensors.empty());  // like PyTorch: state appears on the first step
    toy.set_grads(0);
    opt.step();
    opt.set_lr(0.003);
    const OptimizerState s = opt.state();
    CHECK(s.kind == "adam");
    CHECK(s.step == 1);
    CHECK(s.lr == 0.003);
    std::vector<std::string> names;
    for (const auto& [n, t] : s.tensors) names.push_back(n);
    CHECK(names == std::vector<std::string>{"adam.exp_avg.layer.weight", "adam.exp_avg.layer.bias",
                                            "adam.exp_avg_sq.layer.weight", "adam.exp_avg_sq.layer.bias"});
    // exp_avg after one step is (1 - beta1) * g.
    CHECK(s.tensors[0].second[0] == doctest::Approx(0.1 * -0.625));

    Sgd sgd(toy.parameters());
    toy.set_grads(0);
    sgd.step();
    REQUIRE(sgd.state().tensors.size() == 2);
    CHECK(sgd.state().tensors[0].first == "sgd.momentum.layer.weight");

    // Step counts past 2^24 survive the float-only flattening exactly.
    OptimizerState big = s;
    big.step = (std::int64_t(1) << 40) + 12345;
    big.lr = 0.1;
    const OptimizerState back = from_named_tensors(to_named_tensors(big));
    CHECK(back.step == big.step);
    CHECK(back.lr == doctest::Approx(0.1).epsilon(1e-14));
    CHECK(back.kind == "adam");
    CHECK(back.tensors.size() == s.tensors.size());
}

TEST_CASE("load_state rejects mismatched states and leaves the optimizer unchanged") {
    Toy toy;
    Adam opt(toy.parameters());
    toy.set_grads(0);
    opt.step();
    const OptimizerState good = opt.state();

    auto rejects = [&](const OptimizerState& s, const std::string& needle) {
        Toy other;
        Adam o2(other.parameters());
        try {
            o2.load_state(s);
            FAIL("load_state accepted a bad state; expected an error containing '" << needle << "'");
        } catch (const std::invalid_argument& e) {
            const std::string msg = e.what();
            INFO("message: " << msg);
            CHECK(msg.find(needle) != std::string::npos);
        }
        CHECK(o2.step_count() == 0);
        CHECK(o2.state().tensors.empty());
    };

    OptimizerState s = good;
    s.kind = "sgd";
    rejects(s, "saved by a 'sgd' optimizer");

    s = good;
    s.tensors[1].first = "adam.exp_avg.layer.nonexistent";
    rejects(s, "names no trainable parameter 'layer.nonexistent'");

    s = good;
    s.tensors[0].first = "adam.momentum.layer.weight";
    rejects(s, "unexpected state tensor 'adam.momentum.layer.weight'");

    s = good;
    s.tensors[0].second = Tensor<Cpu>({3, 2, 1, 1});
    rejects(s, "is 3x2x1x1 but parameter 'layer.weight' is 2x3x1x1");

    s = good;
    s.tensors.pop_back();
    rejects(s, "lacks tensor 'adam.exp_avg_sq.layer.bias'");

    s = good;
    s.tensors.push_back(s.tensors[0]);
    rejects(s, "appears twice");

    s = good;
    s.tensors[0].first = "adam.exp_avg.layer.running_mean";  // a buffer, not optimised
    rejects(s, "names no trainable parameter 'layer.running_mean'");

    // Importing AdamW state into Adam is refused too (different kinds).
    Toy t3;
    AdamW aw(t3.parameters());
    t3.set_grads(0);
    aw.step();
    rejects(aw.state(), "saved by a 'adamw' optimizer");
}

TEST_CASE("construction checks") {
    Toy toy;
    CHECK_THROWS_AS(Sgd(toy.parameters(), {.lr = -1}), std::invalid_argument);
    CHECK_THROWS_WITH_AS(Sgd(toy.parameters(), {.momentum = 0, .nesterov = true}),
                         doctest::Contains("Nesterov momentum requires momentum > 0"), std::invalid_argument);
    CHECK_THROWS_AS(Adam(toy.parameters(), {.beta1 = 1.0}), std::invalid_argument);
    auto dup = toy.parameters();
    dup[2].name = "layer.weight";
    CHECK_THROWS_WITH_AS(Sgd(dup, {}), doctest::Contains("two parameters are named 'layer.weight'"),
                         std::invalid_argument);
    auto bad = toy.parameters();
    Tensor<Cpu> wrong({1, 6, 1, 1});
    bad[0].grad = &wrong;
    CHECK_THROWS_WITH_AS(Sgd(bad, {}), doctest::Contains("its gradient is 1x6x1x1"), std::invalid_argument);
    Sgd opt(toy.parameters());
    CHECK(opt.params().size() == 2);  // the buffer is skipped
    CHECK_THROWS_AS(opt.set_lr(-0.1), std::invalid_argument);
}

TEST_CASE("make_optimizer") {
    Toy toy;
    auto sgd = make_optimizer("sgd", toy.parameters());
    CHECK(sgd->kind() == "sgd");
    CHECK(sgd->lr() == 0.1);
    CHECK(dynamic_cast<Sgd<Cpu>&>(*sgd).options().weight_decay == 5e-4);
    auto adam = make_optimizer("adam", toy.parameters(), {.lr = 0.02});
    CHECK(adam->kind() == "adam");
    CHECK(adam->lr() == 0.02);
    CHECK(dynamic_cast<Adam<Cpu>&>(*adam).options().weight_decay == 0);
    auto adamw = make_optimizer("adamw", toy.parameters(), {.weight_decay = 0.05});
    CHECK(adamw->kind() == "adamw");
    CHECK(dynamic_cast<AdamW<Cpu>&>(*adamw).options().weight_decay == 0.05);
    CHECK_THROWS_WITH_AS(make_optimizer("rmsprop", toy.parameters()),
                         "segnet::make_optimizer: unknown optimizer 'rmsprop'; valid names: sgd, adam, adamw",
                         std::invalid_argument);
    CHECK_THROWS_AS(make_optimizer("SGD", toy.parameters()), std::invalid_argument);
}

TEST_CASE("schedules") {
    SUBCASE("constant") {
        const Schedule s = Schedule::constant(0.1);
        CHECK(s(0, 100) == 0.1);
        CHECK(s(99, 100) == 0.1);
        CHECK(s(1000, 100) == 0.1);
    }
    SUBCASE("step: base * gamma^floor(t / step_size)") {
        const Schedule s = Schedule::step(0.1, 30, 0.1);
        CHECK(s(0, 100) == doctest::Approx(0.1));
        CHECK(s(29, 100) == doctest::Approx(0.1));
        CHECK(s(30, 100) == doctest::Approx(0.01));
        CHECK(s(59, 100) == doctest::Approx(0.01));
        CHECK(s(60, 100) == doctest::Approx(0.001));
    }
    SUBCASE("poly: base * (1 - t/total)^0.9") {
        const Schedule s = Schedule::poly(0.01);
        CHECK(s.options().power == 0.9);
        CHECK(s(0, 100) == doctest::Approx(0.01));
        // 0.5^0.9 = 0.535886731...
        CHECK(s(50, 100) == doctest::Approx(0.01 * 0.5358867312681466));
        CHECK(s(100, 100) == 0.0);
        CHECK(s(150, 100) == 0.0);
        CHECK(Schedule::poly(1.0, 1.0)(25, 100) == doctest::Approx(0.75));
    }
    SUBCASE("cosine without warmup") {
        const Schedule s = Schedule::cosine(0.1, 0.001);
        CHECK(s(0, 100) == doctest::Approx(0.1));
        CHECK(s(50, 100) == doctest::Approx(0.0505));  // midpoint: (base + min) / 2
        CHECK(s(25, 100) == doctest::Approx(0.001 + 0.099 * 0.5 * (1 + std::sqrt(0.5))));
        CHECK(s(100, 100) == doctest::Approx(0.001));
        CHECK(s(200, 100) == doctest::Approx(0.001));
    }
    SUBCASE("cosine with warmup") {
        const Schedule s = Schedule::cosine(0.1, 0.0, 10);
        CHECK(s(0, 110) == doctest::Approx(0.01));
        CHECK(s(4, 110) == doctest::Approx(0.05));
        CHECK(s(9, 110) == doctest::Approx(0.1));
        CHECK(s(10, 110) == doctest::Approx(0.1));
        CHECK(s(60, 110) == doctest::Approx(0.05));
        CHECK(s(110, 110) == doctest::Approx(0.0));
        CHECK_THROWS_AS(s(0, 10), std::invalid_argument);  // warmup must be shorter than the run
    }
    SUBCASE("factory and errors") {
        CHECK(make_schedule("constant", {.base_lr = 0.3})(7, 10) == 0.3);
        CHECK(make_schedule("step", {.base_lr = 1.0, .gamma = 0.5, .step_size = 2})(5, 10) ==
              doctest::Approx(0.25));
        CHECK(make_schedule("poly", {.base_lr = 1.0})(0, 10) == doctest::Approx(1.0));
        CHECK(make_schedule("cosine", {.base_lr = 1.0, .warmup = 2})(0, 10) == doctest::Approx(0.5));
        CHECK(make_schedule("cosine").name() == "cosine");
        CHECK_THROWS_WITH_AS(make_schedule("exponential"),
                             "segnet::make_schedule: unknown schedule 'exponential'; valid names: constant, "
                             "step, poly, cosine",
                             std::invalid_argument);
        CHECK_THROWS_WITH_AS(make_schedule("poly", {.warmup = 5}),
                             doctest::Contains("warmup is only supported by the 'cosine' schedule"),
                             std::invalid_argument);
        CHECK_THROWS_AS(make_schedule("step", {.step_size = 0}), std::invalid_argument);
        CHECK_THROWS_AS(Schedule::poly(0.1)(5, 0), std::invalid_argument);
        CHECK_THROWS_AS(Schedule::constant(0.1)(-1, 10), std::invalid_argument);
        CHECK_THROWS_AS(Schedule::cosine(0.1, 0.2), std::invalid_argument);  // min_lr > base_lr
    }
    SUBCASE("drives an optimizer") {
        Toy toy;
        Sgd opt(toy.parameters());
        const Schedule s = Schedule::poly(0.1);
        for (int e = 0; e < 3; ++e) opt.set_lr(s(e, 10));
        CHECK(opt.lr() == doctest::Approx(0.1 * std::pow(0.8, 0.9)));
    }
}
