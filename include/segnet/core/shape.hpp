// segnet/core/shape.hpp: static or dynamic tensor extents, the vocabulary of every shape rule.
//
//   using In = segnet::Shape<3, 360, 480>;            // fully static
//   using Any = segnet::Shape<3, segnet::dyn, segnet::dyn>;  // height/width known at run time
//   constexpr segnet::Dims d = segnet::dims_of<In>;    // {3, 360, 480} as a constexpr value
//
// Channels are always static. Height and width are static or `dyn`, like std::dynamic_extent:
// a rule that meets `dyn` keeps it `dyn`, and the same rule runs again at run time with the
// real sizes (see compose/analysis.hpp). Depends on nothing.
#pragma once

#include <cstdint>

namespace segnet {

/// Marks a height or width that is only known when the model meets an input.
inline constexpr int dyn = -1;

/// ceil(a / b) for a >= 0, b > 0.
constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
/// An extent after max pooling with window = stride = k and ceil rounding (Caffe's, SegNet's):
/// ceil(extent / k), dyn stays dyn. The one rule for a pooled size: the layers' shape rules, the
/// analysis, the run-time layers and the fused kernels all call it.
constexpr int pooled_extent(int extent, int k) { return extent == dyn ? dyn : ceil_div(extent, k); }

/// A feature-map shape (one image: channels, height, width) as a constexpr value.
struct Dims {
    int c = 0;
    int h = 0;
    int w = 0;
    constexpr bool operator==(const Dims&) const = default;
    constexpr bool spatial_static() const { return h != dyn && w != dyn; }
    /// Elements per image; only meaningful when spatial_static().
    constexpr std::int64_t elements() const { return std::int64_t(c) * h * w; }
};

/// A feature-map shape as a type: what `output_shape_t` yields, what `Input<>` takes.
template <int C, int H, int W>
struct Shape {
    static_assert(C > 0, "segnet::Shape<C, H, W>: the channel count C must be positive and static");
    static_assert(H > 0 || H == dyn, "segnet::Shape<C, H, W>: H must be positive or segnet::dyn");
    static_assert(W > 0 || W == dyn, "segnet::Shape<C, H, W>: W must be positive or segnet::dyn");
    static constexpr int channels = C;
    static constexpr int height = H;
    static constexpr int width = W;
    static constexpr Dims dims{C, H, W};
};

template <class S>
inline constexpr Dims dims_of = S::dims;

/// Runtime extents of a batch in NCHW order.
struct Extents {
    int n = 0, c = 0, h = 0, w = 0;
    constexpr bool operator==(const Extents&) const = default;
    constexpr std::int64_t size() const { return std::int64_t(n) * c * h * w; }
    constexpr std::int64_t plane() const { return std::int64_t(h) * w; }
    constexpr Dims image() const { return {c, h, w}; }
};

}  // namespace segnet
