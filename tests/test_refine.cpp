// The dense CRF of refine/: the permutohedral lattice against brute-force Gaussian filtering,
// mean-field inference lowering its free energy, and what the CRF is for (noisy labels cleaned
// along the image's edges).
#include <segnet/refine/dense_crf.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

using segnet::refine::DenseCrf;
using segnet::refine::DenseCrfOptions;
using segnet::refine::PermutohedralLattice;

namespace {

constexpr int height = 24, width = 32, pixels = height * width;

/// A test image: left half dark, right half bright, with per-pixel colour noise.
std::vector<std::uint8_t> two_region_image(unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> noise(0, 29);
    std::vector<std::uint8_t> rgb(pixels * 3);
    for (int i = 0; i < pixels; ++i)
        for (int c = 0; c < 3; ++c) rgb[i * 3 + c] = std::uint8_t((i % width < width / 2 ? 60 : 180) + noise(rng));
    return rgb;
}

/// Features (x, y) / xy, and (r, g, b) / rgb when rgb > 0: one row per pixel.
std::vector<float> features(const std::vector<std::uint8_t>& image, float xy, float rgb) {
    std::vector<float> f;
    for (int i = 0; i < pixels; ++i) {
        f.push_back(float(i % width) / xy);
        f.push_back(float(i / width) / xy);
        if (rgb > 0)
            for (int c = 0; c < 3; ++c) f.push_back(float(image[i * 3 + c]) / rgb);
    }
    return f;
}

/// Relative L2 error of the lattice's normalised filter (weighted average) of a smooth field
/// against the exact sum_j exp(-|f_i - f_j|^2 / 2) v_j / sum_j exp(...).
double normalised_filter_error(const std::vector<float>& f, int dims) {
    std::vector<float> v(pixels), ones(pixels, 1.0f), out(pixels), norm(pixels);
    for (int i = 0; i < pixels; ++i) v[i] = 0.5f + 0.5f * std::sin(float(i % width) / 5.0f) * std::cos(float(i / width) / 7.0f);
    const PermutohedralLattice lattice(f.data(), dims, pixels);
    lattice.filter(v.data(), out.data(), 1);
    lattice.filter(ones.data(), norm.data(), 1);
    double error = 0, size = 0;
    for (int i = 0; i < pixels; ++i) {
        double sum = 0, weight = 0;
        for (int j = 0; j < pixels; ++j) {
            double d2 = 0;
            for (int k = 0; k < dims; ++k) d2 += double(f[i * dims + k] - f[j * dims + k]) * (f[i * dims + k] - f[j * dims + k]);
            sum += std::exp(-d2 / 2) * v[j];
            weight += std::exp(-d2 / 2);
        }
        const double exact = sum / weight, approximate = double(out[i]) / norm[i];
        error += (approximate - exact) * (approximate - exact);
        size += exact * exact;
    }
    return std::sqrt(error / size);
}

/// Probabilities of 2 classes: class 0 on the left half, 1 on the right, with every pixel's
/// confidence drawn at random and a quarter of the pixels flipped to the wrong class.
std::vector<float> noisy_probabilities(unsigned seed, std::vector<std::uint8_t>& truth) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> confidence(0.55f, 0.9f), u(0, 1);
    std::vector<float> p(2 * pixels);
    truth.resize(pixels);
    for (int i = 0; i < pixels; ++i) {
        truth[i] = i % width < width / 2 ? 0 : 1;
        const int said = u(rng) < 0.25f ? 1 - truth[i] : truth[i];
        const float c = confidence(rng);
        p[said * pixels + i] = c;
        p[(1 - said) * pixels + i] = 1 - c;
    }
    return p;
}

int accuracy(const std::vector<std::uint8_t>& labels, const std::vector<std::uint8_t>& truth) {
    int right = 0;
    for (int i = 0; i < pixels; ++i) right += labels[i] == truth[i];
    return right;
}

}  // namespace

TEST_CASE("permutohedral lattice: normalised filtering agrees with the brute-force Gaussian within 5%") {
    const auto image = two_region_image(5);
    for (float xy : {3.0f, 10.0f}) {
        CAPTURE(xy);
        CHECK(normalised_filter_error(features(image, xy, 0), 2) < 0.05);     // smoothness kernel: measured 0.8-2.0%
        CHECK(normalised_filter_error(features(image, xy, 10.0f), 5) < 0.05); // appearance kernel: measured 2.2-2.8%
    }
}

TEST_CASE("permutohedral lattice: a point far from all others keeps its own value") {
    // Two clusters 100 standard deviations apart do not exchange anything.
    const std::vector<float> f = {0, 0, 0.1f, 0, 100, 100};
    const std::vector<float> v = {1, 1, 7};
    std::vector<float> out(3);
    PermutohedralLattice(f.data(), 2, 3).filter(v.data(), out.data(), 1);
    CHECK(out[2] > 0);
    CHECK(out[0] == doctest::Approx(out[1]).epsilon(0.05));
    CHECK(out[2] / 7 == doctest::Approx(out[0] / 2).epsilon(0.35));  // the lattice's self-gain, not the neighbours'
}

TEST_CASE("dense CRF: mean-field updates lower the free energy") {
    const auto image = two_region_image(7);
    std::vector<std::uint8_t> truth;
    const auto p = noisy_probabilities(3, truth);
    DenseCrf crf(p.data(), 2, height, width, image.data(), {});
    double energy = crf.free_energy();
    for (int t = 0; t < 5; ++t) {
        crf.iterate();
        const double next = crf.free_energy();
        CAPTURE(t);
        CHECK(next < energy);
        energy = next;
    }
}

TEST_CASE("dense CRF: cleans label noise inside regions of one colour, and keeps the edge between them") {
    const auto image = two_region_image(7);
    std::vector<std::uint8_t> truth;
    const auto p = noisy_probabilities(11, truth);
    std::vector<std::uint8_t> argmax(pixels);
    for (int i = 0; i < pixels; ++i) argmax[i] = p[pixels + i] > p[i];
    DenseCrfOptions o;
    o.appearance_xy = 20;
    o.appearance_rgb = 10;
    const auto refined = segnet::refine::dense_crf(p.data(), 2, height, width, image.data(), o);
    CHECK(accuracy(argmax, truth) < pixels * 0.8);      // a quarter was flipped
    CHECK(accuracy(refined, truth) > pixels * 0.98);    // the CRF restores nearly all of them
    // No weights: the CRF changes nothing.
    o.appearance_weight = o.smoothness_weight = 0;
    CHECK(segnet::refine::dense_crf(p.data(), 2, height, width, image.data(), o) == argmax);
}

TEST_CASE("dense CRF: bad options and probabilities are refused with the value named") {
    const auto image = two_region_image(1);
    std::vector<std::uint8_t> truth;
    auto p = noisy_probabilities(1, truth);
    DenseCrfOptions o;
    o.iterations = -1;
    CHECK_THROWS_WITH(DenseCrf(p.data(), 2, height, width, image.data(), o), "dense CRF: iterations must be in 0..1000, got -1");
    o = {};
    o.appearance_rgb = 0;
    CHECK_THROWS_WITH(DenseCrf(p.data(), 2, height, width, image.data(), o),
                      doctest::Contains("appearance rgb width must be a finite width > 0"));
    o = {};
    o.smoothness_weight = std::nanf("");
    CHECK_THROWS_WITH(DenseCrf(p.data(), 2, height, width, image.data(), o), doctest::Contains("smoothness weight"));
    p[5] = 1.5f;
    CHECK_THROWS_WITH(DenseCrf(p.data(), 2, height, width, image.data(), {}),
                      doctest::Contains("at pixel 5, class 0 is not in [0, 1]"));
}

TEST_CASE("dense CRF: the marginals do not depend on the thread count") {
    // 96x128 pixels: enough for the pixel loops, the blur and the slice to split across threads.
    const int h = 96, w = 128, classes = 3;
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> level(0, 255);
    std::uniform_real_distribution<float> uniform(0.05f, 1.0f);
    std::vector<std::uint8_t> rgb(std::size_t(h) * w * 3);
    for (auto& v : rgb) v = std::uint8_t(level(rng));
    std::vector<float> p(std::size_t(h) * w * classes);
    for (int i = 0; i < h * w; ++i) {
        float sum = 0;
        for (int k = 0; k < classes; ++k) sum += p[std::size_t(k) * h * w + i] = uniform(rng);
        for (int k = 0; k < classes; ++k) p[std::size_t(k) * h * w + i] /= sum;
    }
    auto marginals = [&](int threads) {
        segnet::set_num_threads(threads);
        DenseCrf crf(p.data(), classes, h, w, rgb.data(), {});
        crf.run();
        return crf.marginals();
    };
    const auto one = marginals(1), four = marginals(4);
    segnet::set_num_threads(segnet::backend::cpu::default_threads());
    CHECK(one == four);
}
