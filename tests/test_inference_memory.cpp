// Eval-mode inference on AnyModel's activation pool (compose/model.hpp): the same logits as the
// layers run one by one on their own buffers, fewer and smaller buffers, an error for backward
// after an eval forward, and, counted by the allocator below, no heap allocation at all in a
// steady-state forward of SegNet-Basic (the 3rd forward of an input size, with 2 threads).
//
// What the count covers: every operator new / new[] (all forms) and every malloc, calloc,
// realloc, aligned_alloc (Tensor storage), posix_memalign and memalign made by any thread of
// the process (the kernels' worker threads included) between the start and the end of the
// forward. It holds on the AVX-512 convolution path; the Eigen fallback (CPUs without
// AVX-512, or SEGNET_CONV=eigen) allocates im2col tiles and GEMM blocks per call, so there the
// count is reported, not asserted. Under AddressSanitizer / ThreadSanitizer, which own malloc,
// only operator new is counted.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "segnet/segnet.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SEGNET_TEST_COUNT_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SEGNET_TEST_COUNT_MALLOC 0
#endif
#endif
#ifndef SEGNET_TEST_COUNT_MALLOC
#define SEGNET_TEST_COUNT_MALLOC 1
#endif

namespace {
std::atomic<long> g_allocations{0};
}

// --- the counting allocator: malloc-family interposition (glibc) and operator new -----------
#if SEGNET_TEST_COUNT_MALLOC
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);

void* malloc(std::size_t n) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(a, n);
}
int posix_memalign(void** p, std::size_t a, std::size_t n) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    *p = __libc_memalign(a, n);
    return *p ? 0 : ENOMEM;
}
}
#endif

namespace {
void* counted_new(std::size_t n, std::size_t align = 0) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (n == 0) n = 1;
    void* p = nullptr;
    if (align > alignof(std::max_align_t)) {
        if (posix_memalign(&p, align, n) != 0) p = nullptr;
    } else {
        p = std::malloc(n);
    }
    if (!p) throw std::bad_alloc();
    return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_new(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new(n, std::size_t(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return counted_new(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return counted_new(n);
    } catch (...) {
        return nullptr;
    }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace segnet;

namespace {

Tensor<Cpu> random_input(Extents e, std::uint64_t seed) {
    Rng rng(seed);
    Tensor<Cpu> t(e);
    for (auto& v : t.span()) v = rng.uniform() * 2.f - 1.f;
    return t;
}

/// Gives the batch-norm layers non-trivial running statistics (a few train-mode forwards), so
/// that eval mode is not the identity.
void settle_statistics(AnyModel<Cpu>& model, const Tensor<Cpu>& x) {
    for (int i = 0; i < 3; ++i) model.forward(x, Mode::train);
}

/// The layers run one by one in eval mode on their own buffers (the path before the pool).
Tensor<Cpu> layer_by_layer(AnyModel<Cpu>& model, const Tensor<Cpu>& x) {
    const Tensor<Cpu>* cur = &x;
    for (auto& n : model.layers()) cur = &n.layer->forward(*cur, Mode::eval);
    return *cur;
}

double max_abs_diff(const Tensor<Cpu>& a, const Tensor<Cpu>& b) {
    REQUIRE(a.extents() == b.extents());
    double m = 0;
    for (std::int64_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::abs(a[i] - b[i])));
    return m;
}

template <class Net>
void check_pooled_matches_layers(Extents e) {
    Model<Net, Cpu> model(11);
    const Tensor<Cpu> x = random_input(e, 5);
    settle_statistics(model, x);
    const Tensor<Cpu> reference = layer_by_layer(model, x);
    const Tensor<Cpu> pooled = model.forward(x, Mode::eval);
    CHECK(max_abs_diff(pooled, reference) == 0.0);
    // Again: the second eval forward reuses the buffers and still gives the same values.
    CHECK(max_abs_diff(model.forward(x, Mode::eval), reference) == 0.0);
}

}  // namespace

TEST_CASE("eval forward on the activation pool equals the layers run on their own buffers") {
    cpu::set_num_threads(2);
    SUBCASE("SegNet-Basic") { check_pooled_matches_layers<models::SegNetBasic<11>>({2, 3, 45, 60}); }
    SUBCASE("SegNet-Basic-Caffe (LRN keeps its own output)") {
        check_pooled_matches_layers<models::SegNetBasicCaffe<11>>({1, 3, 37, 51});
    }
    SUBCASE("EncoderAddition (Add reads the encoder maps)") {
        check_pooled_matches_layers<models::SegNetBasicEncoderAddition<11>>({1, 3, 45, 60});
    }
    SUBCASE("FCN-Basic (TransposedConv + AddProjected)") { check_pooled_matches_layers<models::FcnBasic<11>>({1, 3, 45, 60}); }
    SUBCASE("FCN-Basic-NoAddition (NoSkip passes its input through)") {
        check_pooled_matches_layers<models::FcnBasicNoAddition<11>>({1, 3, 45, 60});
    }
}

TEST_CASE("train mode after eval mode is unchanged, and backward after eval is an error") {
    cpu::set_num_threads(2);
    Model<models::SegNetBasic<11>, Cpu> a(3), b(3);
    const Tensor<Cpu> x = random_input({1, 3, 24, 32}, 9);
    a.forward(x, Mode::eval);
    CHECK_THROWS_AS(a.backward(Tensor<Cpu>(Extents{1, 11, 24, 32})), std::logic_error);
    const Tensor<Cpu> ya = a.forward(x, Mode::train);
    const Tensor<Cpu> yb = b.forward(x, Mode::train);
    CHECK(max_abs_diff(ya, yb) == 0.0);
    const Tensor<Cpu> g(Extents{1, 11, 24, 32});
    CHECK(max_abs_diff(a.backward(g), b.backward(g)) == 0.0);
}

TEST_CASE("the pool holds a few buffers, far less than one per layer") {
    cpu::set_num_threads(2);
    Model<models::SegNetBasic<11>, Cpu> model(1);
    const Extents e{1, 3, 90, 120};
    const Tensor<Cpu> x = random_input(e, 2);
    model.forward(x, Mode::eval);
    const Analysis a = models::SegNetBasic<11>::analyse(e.image());
    const std::int64_t per_layer = a.activation_elements;  // one image
    const std::int64_t pooled = model.activation_pool_elements();
    MESSAGE("SegNet-Basic 3x90x120 eval: " << model.activation_pool_buffers() << " pool buffers, " << pooled
                                           << " floats; one buffer per layer: " << per_layer << " floats");
    CHECK(model.activation_pool_buffers() <= 3);
    CHECK(pooled * 4 < per_layer);
    // No larger than three full-resolution 64-channel maps.
    CHECK(pooled <= 3LL * 64 * 90 * 120);
}

TEST_CASE("steady-state SegNet-Basic inference allocates nothing") {
    for (int threads : {1, 2}) {
        CAPTURE(threads);
        cpu::set_num_threads(threads);
        Model<models::SegNetBasic<11>, Cpu> model(7);
        const Tensor<Cpu> x = random_input({1, 3, 45, 60}, 4);
        const long at_start = g_allocations.load();
        model.forward(x, Mode::eval);
        CHECK(g_allocations.load() > at_start);  // the counter sees the first forward's buffers
        model.forward(x, Mode::eval);
        const long before = g_allocations.load();
        const Tensor<Cpu>& y = model.forward(x, Mode::eval);
        const long during = g_allocations.load() - before;
        CHECK(y.extents() == Extents{1, 11, 45, 60});
        const backend::ConvGeometry g{64, 45, 60, 64, 45, 60, 7, 1, 3, 1};
        const bool fast_path = cpu::avx512::usable(g) && !std::getenv("SEGNET_CONV");
        MESSAGE("allocations in the 3rd eval forward (" << threads << " threads, "
                                                      << std::string(fast_path ? "AVX-512" : "Eigen") << " convolutions, "
                                                      << std::string(SEGNET_TEST_COUNT_MALLOC ? "malloc and new" : "new only")
                                                      << " counted): " << during);
        if (fast_path) CHECK(during == 0);
    }
}
