// Tests of the training loss, class balancing and the evaluation metrics (G, C, mIoU, BF).
// Expected values are computed by hand in the comments next to them, not by the code under test.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "segnet/metrics/boundary_f1.hpp"
#include "segnet/metrics/calibration.hpp"
#include "segnet/metrics/confusion.hpp"
#include "segnet/train/class_balance.hpp"
#include "segnet/train/loss.hpp"

using segnet::Cpu;
using segnet::Tensor;
using Labels = segnet::Tensor<segnet::Cpu, std::uint8_t>;
using segnet::UncertaintyCalibration;

namespace {

Labels make_labels(int n, int h, int w, std::initializer_list<int> values) {
    Labels y({n, 1, h, w});
    REQUIRE(std::int64_t(values.size()) == y.size());
    std::int64_t i = 0;
    for (int v : values) y[i++] = std::uint8_t(v);
    return y;
}

Tensor<Cpu> random_logits(int n, int k, int h, int w, unsigned seed, float scale = 2.0f) {
    Tensor<Cpu> z({n, k, h, w});
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, scale);
    for (auto& v : z.span()) v = normal(rng);
    return z;
}

// The loss by its textbook definition, in double: the reference the fused kernel must match.
double reference_loss(const Tensor<Cpu>& z, const Labels& y, const std::vector<float>& w, int ignore,
                      bool mean) {
    double num = 0.0, den = 0.0;
    for (int n = 0; n < z.n(); ++n)
        for (int h = 0; h < z.h(); ++h)
            for (int x = 0; x < z.w(); ++x) {
                const int label = y(n, 0, h, x);
                if (label == ignore) continue;
                double m = -1e300, s = 0.0;
                for (int c = 0; c < z.c(); ++c) m = std::max(m, double(z(n, c, h, x)));
                for (int c = 0; c < z.c(); ++c) s += std::exp(double(z(n, c, h, x)) - m);
                const double weight = w.empty() ? 1.0 : w[label];
                num += weight * (m + std::log(s) - z(n, label, h, x));
                den += weight;
            }
    return mean ? num / den : num;
}

}  // namespace

// ---------------------------------------------------------------- loss

TEST_CASE("loss: a single pixel with equal logits costs log K") {
    Tensor<Cpu> z({1, 4, 1, 1});  // all zero: softmax uniform, nll = log 4
    Labels y = make_labels(1, 1, 1, {2});
    CHECK(segnet::CrossEntropyLoss().forward(z, y) == doctest::Approx(std::log(4.0)).epsilon(1e-7));
}

TEST_CASE("loss: matches the textbook definition, both normalisations, with weights and ignore") {
    const Tensor<Cpu> z = random_logits(2, 5, 3, 7, 1);
    Labels y({2, 1, 3, 7});
    std::mt19937 rng(2);
    for (auto& v : y.span()) v = std::uint8_t(rng() % 6);  // 5 = ignore
    const std::vector<float> w{0.5f, 2.0f, 1.0f, 0.0f, 3.0f};
    for (bool mean : {true, false}) {
        const segnet::CrossEntropyLoss loss({.class_weights = w,
                                             .ignore_label = 5,
                                             .normalization = mean ? segnet::LossNormalization::weighted_mean
                                                                   : segnet::LossNormalization::sum});
        CHECK(loss.forward(z, y) == doctest::Approx(reference_loss(z, y, w, 5, mean)).epsilon(1e-6));
    }
}

TEST_CASE("loss: the weighted mean divides by the summed weights of counted pixels (hand values)") {
    // Pixel 0: logits (0, 0), label 0 -> nll = log 2, weight 3.
    // Pixel 1: logits (0, 0), label 1 -> nll = log 2, weight 1.
    // Pixel 2: label 2 = ignore.
    // weighted mean = (3 log2 + 1 log2) / (3 + 1) = log 2; sum = 4 log 2.
    Tensor<Cpu> z({1, 2, 1, 3});
    z(0, 0, 0, 2) = 50.0f;  // the ignored pixel's logits must not matter
    Labels y = make_labels(1, 1, 3, {0, 1, 2});
    const std::vector<float> w{3.0f, 1.0f};
    const segnet::CrossEntropyLoss mean({.class_weights = w, .ignore_label = 2});
    const segnet::CrossEntropyLoss sum(
        {.class_weights = w, .ignore_label = 2, .normalization = segnet::LossNormalization::sum});
    CHECK(mean.forward(z, y) == doctest::Approx(std::log(2.0)));
    CHECK(sum.forward(z, y) == doctest::Approx(4.0 * std::log(2.0)));
    // Gradient of the weighted mean at pixel 0: w0 * (softmax - onehot) / 4 = 3 * (0.5 - 1, 0.5) / 4.
    Tensor<Cpu> g({1, 2, 1, 3});
    mean.backward(z, y, g);
    CHECK(g(0, 0, 0, 0) == doctest::Approx(-0.375));
    CHECK(g(0, 1, 0, 0) == doctest::Approx(0.375));
    // Pixel 1: 1 * (0.5, 0.5 - 1) / 4.
    CHECK(g(0, 0, 0, 1) == doctest::Approx(0.125));
    CHECK(g(0, 1, 0, 1) == doctest::Approx(-0.125));
}

TEST_CASE("loss: gradient equals central finite differences of the loss") {
    Tensor<Cpu> z = random_logits(2, 4, 3, 5, 7);
    Labels y({2, 1, 3, 5});
    std::mt19937 rng(8);
    for (auto& v : y.span()) v = std::uint8_t(rng() % 5);  // 4 = ignore: some pixels ignored
    const std::vector<float> w{0.3f, 1.7f, 1.0f, 2.5f};
    for (auto norm : {segnet::LossNormalization::weighted_mean, segnet::LossNormalization::sum}) {
        CAPTURE(int(norm));
        const segnet::CrossEntropyLoss loss({.class_weights = w, .ignore_label = 4, .normalization = norm});
        Tensor<Cpu> g(z.extents());
        const double value = loss.forward_backward(z, y, g);
        CHECK(value == doctest::Approx(loss.forward(z, y)).epsilon(1e-12));
        double worst = 0.0;
        for (std::int64_t i = 0; i < z.size(); ++i) {
            const float saved = z[i];
            const float step = 1e-2f;
            z[i] = saved + step;
            const float up = z[i];
            const double l_up = loss.forward(z, y);
            z[i] = saved - step;
            const float down = z[i];
            const double l_down = loss.forward(z, y);
            z[i] = saved;
            const double numeric = (l_up - l_down) / (double(up) - double(down));
            worst = std::max(worst, std::abs(numeric - double(g[i])));
        }
        // Central differences err by O(step^2) ~ 1e-5 here; a wrong sign, scale or a missing
        // weight would be off by > 1e-2.
        CHECK(worst < 2e-4);
    }
}

TEST_CASE("loss: ignored pixels get zero gradient and do not change the loss") {
    Tensor<Cpu> z = random_logits(1, 3, 2, 4, 11);
    Labels y = make_labels(1, 2, 4, {0, 1, 2, 11, 11, 2, 1, 0});
    const segnet::CrossEntropyLoss loss({.ignore_label = 11});
    Tensor<Cpu> g(z.extents());
    const double before = loss.forward_backward(z, y, g);
    for (int c = 0; c < 3; ++c) {
        CHECK(g(0, c, 0, 3) == 0.0f);
        CHECK(g(0, c, 1, 0) == 0.0f);
        CHECK(g(0, c, 0, 0) != 0.0f);  // a counted pixel does get a gradient
    }
    z(0, 0, 0, 3) = 100.0f;  // move the ignored pixels' logits far away
    z(0, 2, 1, 0) = -100.0f;
    CHECK(loss.forward(z, y) == doctest::Approx(before).epsilon(1e-12));
    // ... and the loss is the mean over the 6 counted pixels alone.
    CHECK(before == doctest::Approx(reference_loss(z, y, {}, 11, true)).epsilon(1e-6));
}

TEST_CASE("loss: a class weight scales its pixels' loss and gradient") {
    Tensor<Cpu> z = random_logits(1, 3, 1, 2, 5);
    Labels y = make_labels(1, 1, 2, {0, 2});
    const segnet::CrossEntropyLoss plain({.normalization = segnet::LossNormalization::sum});
    const segnet::CrossEntropyLoss weighted(
        {.class_weights = {1.0f, 1.0f, 4.0f}, .normalization = segnet::LossNormalization::sum});
    Tensor<Cpu> g_plain(z.extents()), g_weighted(z.extents());
    plain.forward_backward(z, y, g_plain);
    weighted.forward_backward(z, y, g_weighted);
    for (int c = 0; c < 3; ++c) {
        CHECK(g_weighted(0, c, 0, 0) == doctest::Approx(g_plain(0, c, 0, 0)));        // class 0, w 1
        CHECK(g_weighted(0, c, 0, 1) == doctest::Approx(4.0 * g_plain(0, c, 0, 1)));  // class 2, w 4
    }
}

TEST_CASE("loss: all pixels ignored gives zero loss and zero gradient, not NaN") {
    Tensor<Cpu> z = random_logits(1, 2, 1, 3, 3);
    Labels y = make_labels(1, 1, 3, {9, 9, 9});
    Tensor<Cpu> g(z.extents());
    g.fill(7.0f);
    CHECK(segnet::CrossEntropyLoss({.ignore_label = 9}).forward_backward(z, y, g) == 0.0);
    for (float v : g.span()) CHECK(v == 0.0f);
}

TEST_CASE("loss: huge logits (1e4) give finite, exact results") {
    Tensor<Cpu> z({1, 3, 1, 2});
    // Pixel 0: (1e4, 0, -1e4), label 1 -> nll = 1e4 (softmax of class 0 is 1 to float precision).
    // Pixel 1: (1e4, 1e4, 1e4), label 2 -> nll = log 3.
    z(0, 0, 0, 0) = 1e4f;
    z(0, 2, 0, 0) = -1e4f;
    for (int c = 0; c < 3; ++c) z(0, c, 0, 1) = 1e4f;
    Labels y = make_labels(1, 1, 2, {1, 2});
    const segnet::CrossEntropyLoss loss({.normalization = segnet::LossNormalization::sum});
    Tensor<Cpu> g(z.extents());
    const double value = loss.forward_backward(z, y, g);
    REQUIRE(std::isfinite(value));
    CHECK(value == doctest::Approx(1e4 + std::log(3.0)).epsilon(1e-9));
    for (float v : g.span()) REQUIRE(std::isfinite(v));
    CHECK(g(0, 0, 0, 0) == doctest::Approx(1.0));
    CHECK(g(0, 1, 0, 0) == doctest::Approx(-1.0));
    CHECK(g(0, 2, 0, 1) == doctest::Approx(1.0 / 3.0 - 1.0));
}

TEST_CASE("loss: invalid inputs are rejected with messages that name the problem") {
    const Tensor<Cpu> z({2, 3, 4, 5});
    Tensor<Cpu> g(z.extents());
    const segnet::CrossEntropyLoss loss({.ignore_label = 11});
    CHECK_THROWS_WITH_AS(loss.forward(z, Labels({2, 1, 4, 6})), doctest::Contains("2x1x4x6"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(loss.forward(z, Labels({1, 1, 4, 5})), doctest::Contains("2x3x4x5"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(segnet::CrossEntropyLoss({.class_weights = {1.0f, 2.0f}}).forward(z, Labels({2, 1, 4, 5})),
                         doctest::Contains("2 class weights"), std::invalid_argument);
    CHECK_THROWS_AS(segnet::CrossEntropyLoss({.class_weights = {1.0f, -2.0f, 1.0f}}), std::invalid_argument);
    Labels y({2, 1, 4, 5});
    y(1, 0, 2, 3) = 7;  // neither a class (0..2) nor the ignore label
    CHECK_THROWS_WITH_AS(loss.forward(z, y), doctest::Contains("label value 7 at (n=1, y=2, x=3)"),
                         std::invalid_argument);
    y(1, 0, 2, 3) = 11;  // the ignore label is fine
    CHECK_NOTHROW(loss.forward(z, y));
    Tensor<Cpu> small({2, 3, 4, 4});
    CHECK_THROWS_WITH_AS(loss.backward(z, y, small), doctest::Contains("gradient extents"),
                         std::invalid_argument);
}

// ---------------------------------------------------------------- class balancing

TEST_CASE("class balance: median-frequency weights of a hand-made label set") {
    // K = 4 classes, void = 4; class 3 never appears. Three 2x2 images:
    //   A = {0, 0, 1, void}: 3 non-void px (4 with void)
    //   B = {0, 2, 2, 2}:    4 px
    //   C = {1, 1, 1, 1}:    4 px
    // void excluded: freq0 = 3/(3+4) = 3/7, freq1 = 5/(3+4) = 5/7, freq2 = 3/4
    //   median = 5/7 -> weights 5/3, 1, (5/7)/(3/4) = 20/21, class 3: 0
    // void counted:  freq0 = 3/8, freq1 = 5/8, freq2 = 3/4
    //   median = 5/8 -> weights 5/3, 1, 5/6, 0
    const Labels batch = make_labels(3, 2, 2, {0, 0, 1, 4, 0, 2, 2, 2, 1, 1, 1, 1});
    segnet::ClassFrequencyCounter excluded(4, {.ignore_label = 4});
    excluded.add(batch);
    const std::vector<float> w = excluded.median_frequency_weights();
    REQUIRE(w.size() == 4);
    CHECK(w[0] == doctest::Approx(5.0 / 3.0));
    CHECK(w[1] == doctest::Approx(1.0));
    CHECK(w[2] == doctest::Approx(20.0 / 21.0));
    CHECK(w[3] == 0.0f);
    CHECK(excluded.images() == 3);
    CHECK(excluded.images_containing() == std::vector<std::int64_t>{2, 2, 1, 0});

    segnet::ClassFrequencyCounter counted(4, {.ignore_label = 4, .void_pixels = segnet::VoidPixels::counted});
    for (int n = 0; n < 3; ++n) counted.add(batch.image(n));  // streaming one image at a time
    const std::vector<float> wc = counted.median_frequency_weights();
    CHECK(wc[0] == doctest::Approx(5.0 / 3.0));
    CHECK(wc[1] == doctest::Approx(1.0));
    CHECK(wc[2] == doctest::Approx(5.0 / 6.0));
    CHECK(wc[3] == 0.0f);
}

TEST_CASE("class balance: an even number of present classes takes the mean of the middle two") {
    // One image {0, 1, 1, 1}: freq0 = 1/4, freq1 = 3/4, median = 1/2 -> weights 2, 2/3.
    segnet::ClassFrequencyCounter counter(2);
    counter.add(make_labels(1, 2, 2, {0, 1, 1, 1}));
    const std::vector<float> w = counter.median_frequency_weights();
    CHECK(w[0] == doctest::Approx(2.0));
    CHECK(w[1] == doctest::Approx(2.0 / 3.0));
}

TEST_CASE("class balance: bad labels and empty counters are errors, natural weights are ones") {
    segnet::ClassFrequencyCounter counter(3, {.ignore_label = 11});
    CHECK_THROWS_AS(counter.median_frequency_weights(), std::logic_error);
    CHECK_THROWS_WITH_AS(counter.add(make_labels(1, 2, 2, {0, 1, 11, 5})),
                         doctest::Contains("label value 5 at (n=0, y=1, x=1)"), std::invalid_argument);
    CHECK(segnet::natural_class_weights(3) == std::vector<float>{1.0f, 1.0f, 1.0f});
}

TEST_CASE("class balance: weight files parse with comments and report errors by file and line") {
    std::istringstream good("# CamVid weights\n0.5 1.5   # two on a line\n\n  +2e-1\n");
    CHECK(segnet::parse_class_weights(good, "w.txt", 3) == std::vector<float>{0.5f, 1.5f, 0.2f});

    std::istringstream not_number("1.0\n0.5 abc\n");
    CHECK_THROWS_WITH_AS(segnet::parse_class_weights(not_number, "w.txt", 3),
                         doctest::Contains("w.txt:2: 'abc' is not a number"), std::invalid_argument);
    std::istringstream half_number("1.0 2.0x 3\n");
    CHECK_THROWS_WITH_AS(segnet::parse_class_weights(half_number, "w.txt", 3),
                         doctest::Contains("w.txt:1: '2.0x' is not a number"), std::invalid_argument);
    std::istringstream negative("1\n\n-0.5\n");
    CHECK_THROWS_WITH_AS(segnet::parse_class_weights(negative, "w.txt", 3),
                         doctest::Contains("w.txt:3: class weight 1 is negative"), std::invalid_argument);
    std::istringstream too_few("1 2 # only two\n");
    CHECK_THROWS_WITH_AS(segnet::parse_class_weights(too_few, "w.txt", 3),
                         doctest::Contains("w.txt: found 2 class weights, expected 3"), std::invalid_argument);
    std::istringstream nan("1 nan 2\n");
    CHECK_THROWS_AS(segnet::parse_class_weights(nan, "w.txt", 3), std::invalid_argument);
}

TEST_CASE("class balance: weights written to a file read back; a missing file is named") {
    const auto path = std::filesystem::temp_directory_path() / "segnet_test_class_weights.txt";
    const std::vector<float> weights{0.2794f, 0.2018f, 4.7889f};
    {
        std::ofstream out(path);
        segnet::write_class_weights(out, weights, "median frequency, CamVid train");
    }
    CHECK(segnet::read_class_weights(path, 3) == weights);
    CHECK_THROWS_WITH_AS(segnet::read_class_weights(path, 4), doctest::Contains(path.string().c_str()),
                         std::invalid_argument);
    std::filesystem::remove(path);
    const std::string missing = "cannot read class weights '" + path.string() + "': file not found";
    CHECK_THROWS_WITH_AS(segnet::read_class_weights(path, 3), doctest::Contains(missing.c_str()), segnet::DataError);
}

// ---------------------------------------------------------------- confusion matrix

TEST_CASE("confusion: G, C, mIoU and per-class values of a hand-counted matrix") {
    // K = 4, void = 9. 14 pixels:
    //   truth      0 0 0 0 1 1 1 1 9 9 0 1 0 9
    //   predicted  0 0 0 1 1 1 2 0 3 3 0 1 0 2
    // void pixels (3) are skipped, whatever was predicted there. Counted 11 pixels, rows truth /
    // cols prediction:
    //   truth 0 (6 px): pred 0 x5, pred 1 x1             -> row 0 = [5 1 0 0]
    //   truth 1 (5 px): pred 1 x3, pred 2 x1, pred 0 x1  -> row 1 = [1 3 1 0]
    // G = (5 + 3) / 11 = 72.73 %.
    // recall: class 0 5/6, class 1 3/5; classes 2, 3 absent from truth -> NaN, not in C.
    // C = (5/6 + 3/5) / 2 = 71.67 %.
    // IoU: class 0: 5 / (6 + 6 - 5) = 5/7; class 1: 3 / (5 + 4 - 3) = 1/2;
    //      class 2: 0 / (0 + 1 - 0) = 0 (predicted, never true); class 3: no TP+FP+FN -> NaN.
    // mIoU = (5/7 + 1/2 + 0) / 3 = 40.48 %.
    const Labels truth = make_labels(1, 2, 7, {0, 0, 0, 0, 1, 1, 1, 1, 9, 9, 0, 1, 0, 9});
    const Labels pred = make_labels(1, 2, 7, {0, 0, 0, 1, 1, 1, 2, 0, 3, 3, 0, 1, 0, 2});
    segnet::ConfusionMatrix cm(4);
    cm.add(pred, truth, 9);
    CHECK(cm.counts() == std::vector<std::int64_t>{5, 1, 0, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(cm.total() == 11);
    CHECK(cm.global_accuracy() == doctest::Approx(800.0 / 11.0));
    CHECK(cm.class_average_accuracy() == doctest::Approx(100.0 * (5.0 / 6.0 + 3.0 / 5.0) / 2.0));
    CHECK(cm.mean_iou() == doctest::Approx(100.0 * (5.0 / 7.0 + 0.5 + 0.0) / 3.0));
    const auto acc = cm.class_accuracy();
    CHECK(acc[0] == doctest::Approx(100.0 * 5.0 / 6.0));
    CHECK(std::isnan(acc[2]));
    const auto iou = cm.class_iou();
    CHECK(iou[1] == doctest::Approx(50.0));
    CHECK(iou[2] == 0.0);
    CHECK(std::isnan(iou[3]));
}

TEST_CASE("confusion: argmax of logits (ties to the lower class), merging, and label errors") {
    Tensor<Cpu> z({1, 3, 1, 3});
    // pixel 0: (0, 2, 1) -> 1; pixel 1: (5, 5, 0) tie -> 0; pixel 2: (-1, -2, -0.5) -> 2
    const float values[] = {0, 5, -1, 2, 5, -2, 1, 0, -0.5f};
    std::copy(values, values + 9, z.data());
    const Labels truth = make_labels(1, 1, 3, {1, 1, 2});
    segnet::ConfusionMatrix a(3), b(3);
    a.add_logits(z, truth);
    CHECK(a.count(1, 1) == 1);
    CHECK(a.count(1, 0) == 1);
    CHECK(a.count(2, 2) == 1);
    b.add(make_labels(1, 1, 1, {0}), make_labels(1, 1, 1, {0}));
    a += b;
    CHECK(a.count(0, 0) == 1);
    CHECK(a.total() == 4);
    CHECK(a.global_accuracy() == doctest::Approx(75.0));

    CHECK_THROWS_WITH_AS(a.add(make_labels(1, 1, 2, {0, 3}), make_labels(1, 1, 2, {0, 0})),
                         doctest::Contains("prediction label value 3 at (n=0, y=0, x=1)"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(a.add(make_labels(1, 1, 2, {0, 0}), make_labels(1, 1, 2, {0, 11}), 9),
                         doctest::Contains("truth label value 11"), std::invalid_argument);
    CHECK(a.total() == 4);  // a rejected batch adds nothing
    segnet::ConfusionMatrix other(4);
    CHECK_THROWS_AS(a += other, std::invalid_argument);
}

// ---------------------------------------------------------------- boundary F1

TEST_CASE("BF: seg2bdry boundary pixels, including the last row, last column and bottom-right") {
    segnet::BoundaryF1Evaluator bf(2);
    // A 2x2 square of class 1: a pixel is on the boundary when its 2x2 block (it at the top-left)
    // is not constant; last column/row compare with the pixel below/right only.
    const Labels square = make_labels(1, 4, 4, {0, 0, 0, 0,  //
                                                0, 1, 1, 0,  //
                                                0, 1, 1, 0,  //
                                                0, 0, 0, 0});
    const Labels expected_square = make_labels(1, 4, 4, {1, 1, 1, 0,  //
                                                         1, 0, 1, 0,  //
                                                         1, 1, 1, 0,  //
                                                         0, 0, 0, 0});
    CHECK(bf.class_boundary(square, 1).span()[5] == 0);
    for (int c = 0; c < 2; ++c) {  // both masks have the same boundary
        const auto map = bf.class_boundary(square, c);
        CHECK(std::equal(map.span().begin(), map.span().end(), expected_square.span().begin()));
    }
    // Only the bottom-right pixel differs: it is never a boundary pixel, its neighbours are.
    const auto corner = bf.class_boundary(make_labels(1, 2, 2, {0, 0, 0, 1}), 1);
    CHECK(corner.span()[0] == 1);
    CHECK(corner.span()[1] == 1);  // last column: compares with the pixel below
    CHECK(corner.span()[2] == 1);  // last row: compares with the pixel to the right
    CHECK(corner.span()[3] == 0);
}

namespace {
// A 360x480 two-class map split by a vertical line: class 0 left of `column`, class 1 from it.
Labels vertical_split(int column) {
    Labels y({1, 1, 360, 480});
    for (int h = 0; h < 360; ++h)
        for (int x = column; x < 480; ++x) y(0, 0, h, x) = 1;
    return y;
}
}  // namespace

TEST_CASE("BF: a boundary shifted within the tolerance matches, beyond it does not") {
    // 360x480: diagonal 600, tolerance 0.75 % = 4.5 px. Each boundary is one column of 360 px.
    const Labels truth = vertical_split(200);
    const auto within = segnet::boundary_f1(vertical_split(204), truth, 2);  // 4 px away
    CHECK(within.counted_classes == 2);
    CHECK(within.classes[0].matched == 360);
    CHECK(within.bf == doctest::Approx(100.0));
    const auto beyond = segnet::boundary_f1(vertical_split(205), truth, 2);  // 5 px away
    CHECK(beyond.classes[1].predicted == 360);
    CHECK(beyond.classes[1].matched == 0);
    CHECK(beyond.bf == 0.0);
    // A tolerance of exactly 5 px reaches it: the comparison is distance <= tolerance.
    const auto exact = segnet::boundary_f1(vertical_split(205), truth, 2, {.tolerance = 5.0 / 600.0});
    CHECK(exact.bf == doctest::Approx(100.0));
}

TEST_CASE("BF: matching is one-to-one (two predicted boundaries share one true boundary)") {
    // Truth: a step at column 200. Prediction: class 1 only in columns 200..201, so class 0 and 1
    // each have predicted boundaries at columns 199 and 201 (720 px) for 360 true px (column 199).
    // One-to-one: 360 matched, P = 50 %, R = 100 %, F1 = 2 * 50 * 100 / 150 = 66.67 %.
    Labels pred({1, 1, 360, 480});
    for (int h = 0; h < 360; ++h) pred(0, 0, h, 200) = pred(0, 0, h, 201) = 1;
    const auto r = segnet::boundary_f1(pred, vertical_split(200), 2);
    CHECK(r.classes[1].predicted == 720);
    CHECK(r.classes[1].truth == 360);
    CHECK(r.classes[1].matched == 360);
    CHECK(r.bf == doctest::Approx(200.0 / 3.0));
}

TEST_CASE("BF: predicted-but-absent class scores 0, a class absent from both is skipped") {
    // 8x8, K = 4; tolerance 0.75 % of 11.3 px = 0.085 px: only coincident pixels match.
    // Truth: class 0 in columns 0..3, class 1 in 4..7 -> both have boundary column 3 (8 px).
    // Prediction: the same plus a 2x2 block of class 2 at rows 2..3, columns 0..1, whose blocks
    // make (1,0) (1,1) (2,1) (3,0) (3,1) boundary pixels of classes 0 and 2.
    //   class 0: 13 predicted, 8 true, 8 matched: P = 8/13, R = 1, F1 = 16/21 = 76.19 %
    //   class 1: 8, 8, 8: F1 = 100 %
    //   class 2: 5 predicted, none true: F1 = 0, counted
    //   class 3: nowhere: skipped
    // BF = (1600/21 + 100 + 0) / 3.
    Labels truth({1, 1, 8, 8});
    for (int h = 0; h < 8; ++h)
        for (int x = 4; x < 8; ++x) truth(0, 0, h, x) = 1;
    Labels pred = truth;
    for (int h = 2; h < 4; ++h)
        for (int x = 0; x < 2; ++x) pred(0, 0, h, x) = 2;
    const auto r = segnet::boundary_f1(pred, truth, 4);
    CHECK(r.classes[0].predicted == 13);
    CHECK(r.classes[0].matched == 8);
    CHECK(r.classes[0].f1() == doctest::Approx(1600.0 / 21.0));
    CHECK(r.classes[2].predicted == 5);
    CHECK(r.classes[2].truth == 0);
    CHECK(r.classes[2].counted());
    CHECK(r.classes[2].f1() == 0.0);
    CHECK_FALSE(r.classes[3].counted());
    CHECK(r.counted_classes == 3);
    CHECK(r.bf == doctest::Approx((1600.0 / 21.0 + 100.0) / 3.0));

    // Dataset BF is the mean over images: this image and a perfect one.
    segnet::BoundaryF1Accumulator acc(4);
    acc.add(pred, truth);
    acc.add(truth, truth);
    CHECK(acc.images() == 2);
    CHECK(acc.mean() == doctest::Approx(((1600.0 / 21.0 + 100.0) / 3.0 + 100.0) / 2.0));
    CHECK(std::isnan(acc.class_mean_f1()[3]));
    CHECK(acc.class_mean_f1()[2] == 0.0);
}

TEST_CASE("BF: void is unmasked by default; mask_void removes void pixels from both maps") {
    // K = 2, void = 2. 8x8. Truth: class 0 in columns 0..3, void in column 4, class 1 in 5..7.
    // Prediction: class 0 in columns 0..4, class 1 in 5..7. Only coincident pixels match.
    // Unmasked: truth boundaries: class 0 at column 3, class 1 at column 4 (a void pixel next to
    //   class 1); predicted boundaries: column 4 for both. Class 0: F1 0; class 1: F1 100. BF 50.
    // Masked: column 4 is void in the truth and leaves both maps. Class 0: 0 predicted, 8 true:
    //   F1 0; class 1: nothing left, skipped. BF 0.
    Labels truth({1, 1, 8, 8}), pred({1, 1, 8, 8});
    for (int h = 0; h < 8; ++h) {
        truth(0, 0, h, 4) = 2;
        for (int x = 5; x < 8; ++x) truth(0, 0, h, x) = pred(0, 0, h, x) = 1;
    }
    const auto unmasked = segnet::boundary_f1(pred, truth, 2, {.ignore_label = 2});
    CHECK(unmasked.bf == doctest::Approx(50.0));
    const auto masked = segnet::boundary_f1(pred, truth, 2, {.ignore_label = 2, .mask_void = true});
    CHECK(masked.counted_classes == 1);
    CHECK(masked.classes[0].truth == 8);
    CHECK(masked.bf == 0.0);
    CHECK_THROWS_WITH_AS(segnet::boundary_f1(pred, truth, 2), doctest::Contains("truth label value 2"),
                         std::invalid_argument);
}

namespace {
// Kuhn's augmenting-path matching on an explicit graph: slow, obviously right.
std::int64_t brute_force_matching(const std::vector<std::int32_t>& pred, const std::vector<std::int32_t>& truth,
                                  int width, double radius) {
    std::vector<std::vector<int>> adj(pred.size());
    for (std::size_t i = 0; i < pred.size(); ++i)
        for (std::size_t j = 0; j < truth.size(); ++j) {
            const int dy = pred[i] / width - truth[j] / width, dx = pred[i] % width - truth[j] % width;
            if (dy * dy + dx * dx <= radius * radius) adj[i].push_back(int(j));
        }
    std::vector<int> match(truth.size(), -1);
    std::vector<char> seen;
    auto augment = [&](auto&& self, int u) -> bool {
        for (int v : adj[u]) {
            if (seen[v]) continue;
            seen[v] = 1;
            if (match[v] < 0 || self(self, match[v])) {
                match[v] = u;
                return true;
            }
        }
        return false;
    };
    std::int64_t count = 0;
    for (std::size_t u = 0; u < pred.size(); ++u) {
        seen.assign(truth.size(), 0);
        count += augment(augment, int(u));
    }
    return count;
}
}  // namespace

TEST_CASE("BF: the matching is maximum, not greedy") {
    // Radius 1. Truth at (0,0) and (0,2); predicted (0,1) is near both, (1,0) only near (0,0).
    // Nearest-first greedy pairs (0,1)-(0,0) and strands (1,0); the maximum matching is 2.
    segnet::BoundaryMatcher matcher;
    const int width = 5;
    const std::vector<std::int32_t> truth{0, 2}, pred{1, width};
    CHECK(matcher.max_matching(pred, truth, 3, width, 1.0) == 2);

    // Random scattered sets against Kuhn's algorithm.
    std::mt19937 rng(123);
    for (int trial = 0; trial < 30; ++trial) {
        const int h = 12, w = 15;
        std::vector<std::int32_t> p, t;
        for (int i = 0; i < h * w; ++i) {
            if (rng() % 4 == 0) p.push_back(i);
            if (rng() % 4 == 0) t.push_back(i);
        }
        const double radius = 0.5 + (trial % 4);
        CAPTURE(trial);
        CHECK(matcher.max_matching(p, t, h, w, radius) == brute_force_matching(p, t, w, radius));
    }
}

// --- uncertainty calibration: accuracy per uncertainty group ---

TEST_CASE("calibration: deciles split the counted pixels evenly and give each group's accuracy") {
    // 1000 counted pixels with uncertainties (i + 0.5) / 1000, right for the 500 least uncertain
    // and for every other pixel of the rest; 100 void pixels (all wrong) that must not count.
    Tensor<Cpu, std::uint8_t> predicted({1, 1, 1, 1100}), truth({1, 1, 1, 1100});
    Tensor<Cpu> uncertainty({1, 1, 1, 1100});
    for (int i = 0; i < 1100; ++i) {
        truth.data()[i] = i < 1000 ? 1 : 11;
        uncertainty.data()[i] = i < 1000 ? (float(i) + 0.5f) / 1000.f : 0.01f;
        predicted.data()[i] = (i < 500 || i % 2 == 0) && i < 1000 ? 1 : 2;
    }
    UncertaintyCalibration calibration;
    calibration.add(predicted.view(), uncertainty.view(), truth.view(), 11);
    CHECK(calibration.pixels() == 1000);
    const auto deciles = calibration.quantile_bins(10);
    REQUIRE(deciles.size() == 10);
    for (int g = 0; g < 10; ++g) {
        CAPTURE(g);
        CHECK(deciles[std::size_t(g)].pixels == 100);
        CHECK(deciles[std::size_t(g)].lower == doctest::Approx(g / 10.0));
        CHECK(deciles[std::size_t(g)].accuracy == doctest::Approx(g < 5 ? 100.0 : 50.0));
    }
    const auto halves = calibration.equal_width_bins(2);
    CHECK(halves[0].pixels == 500);
    CHECK(halves[1].accuracy == doctest::Approx(50.0));
}

TEST_CASE("calibration: out-of-range and NaN uncertainties are clamped; mismatched extents are refused") {
    Tensor<Cpu, std::uint8_t> labels({1, 1, 1, 3});
    Tensor<Cpu> uncertainty({1, 1, 1, 3});
    uncertainty.data()[0] = -1.f;
    uncertainty.data()[1] = 7.f;
    uncertainty.data()[2] = std::nanf("");
    UncertaintyCalibration calibration(10);
    calibration.add(labels.view(), uncertainty.view(), labels.view());
    const auto rows = calibration.equal_width_bins(10);
    CHECK(rows[0].pixels == 2);
    CHECK(rows[9].pixels == 1);
    Tensor<Cpu> wrong({1, 1, 1, 2});
    CHECK_THROWS_AS(calibration.add(labels.view(), wrong.view(), labels.view()), std::invalid_argument);
    CHECK(calibration.pixels() == 3);
    CHECK_THROWS_AS(calibration.equal_width_bins(3), std::invalid_argument);
}
