// segnet/backend/pool_geometry.hpp: where each output of a windowed or adaptive pooling reads,
// shared by the layers' shape rules and the kernels.
//
//   constexpr int h = segnet::backend::windowed_pool_extent(45, 3, 2, 1, PoolRounding::floor);  // 23
//   segnet::backend::PoolSpans s = segnet::backend::window_spans({45, 60}, {3, 2, 1}, {23, 30});
//   segnet::backend::PoolSpans a = segnet::backend::adaptive_spans({45, 60}, 6);  // 6 x 6 bins
//
// Both follow PyTorch exactly. A window's output extent is floor((in + 2 pad - window) / stride)
// + 1, or with ceil rounding ceil(...) + 1 less one when the last window would start in the
// right padding. Adaptive bin i of B over an extent `in` reads [floor(i in / B), ceil((i + 1)
// in / B)). A span's `count` is the divisor average pooling uses on that axis: the window's
// cells including the padding but not what ceil rounding adds past it (count_include_pad=True),
// or the bin's cells.
#pragma once

#include <algorithm>
#include <vector>

#include "segnet/core/shape.hpp"

namespace segnet {

/// How a windowed pooling rounds its output extent: PyTorch's default (floor) or Caffe's (ceil).
enum class PoolRounding { floor, ceil };

}  // namespace segnet

namespace segnet::backend {

/// The output extent of a pooling window sliding over `in` (dyn stays dyn; 0 when the window
/// does not fit the padded extent, which the shape rules reject).
constexpr int windowed_pool_extent(int in, int window, int stride, int pad, PoolRounding rounding) {
    if (in == dyn) return dyn;
    const int span = in + 2 * pad - window;
    if (span < 0) return 0;
    int out = (rounding == PoolRounding::ceil ? ceil_div(span, stride) : span / stride) + 1;
    if (rounding == PoolRounding::ceil && (out - 1) * stride >= in + pad) --out;  // starts in the padding
    return out;
}

/// One output position's input range on one axis, [begin, end) inside the map, and the divisor
/// average pooling uses on that axis.
struct PoolSpan {
    int begin = 0, end = 0, count = 0;
};
/// The ranges of every output row and column.
struct PoolSpans {
    std::vector<PoolSpan> rows, cols;
};

struct PoolWindow {
    int window = 1, stride = 1, pad = 0;
};
struct PlaneSize {
    int h = 0, w = 0;
};

namespace pool_detail {
inline std::vector<PoolSpan> window_axis(int in, int out, const PoolWindow& p) {
    std::vector<PoolSpan> spans(static_cast<std::size_t>(std::max(out, 0)));
    for (int o = 0; o < out; ++o) {
        const int start = o * p.stride - p.pad, stop = std::min(start + p.window, in + p.pad);
        spans[std::size_t(o)] = {std::max(start, 0), std::min(stop, in), stop - start};
    }
    return spans;
}
inline std::vector<PoolSpan> adaptive_axis(int in, int bins) {
    std::vector<PoolSpan> spans(static_cast<std::size_t>(bins));
    for (int o = 0; o < bins; ++o) {
        const int begin = o * in / bins, end = ceil_div((o + 1) * in, bins);
        spans[std::size_t(o)] = {begin, end, end - begin};
    }
    return spans;
}
}  // namespace pool_detail

/// The spans of a window sliding over an in.h x in.w map to out.h x out.w outputs.
inline PoolSpans window_spans(PlaneSize in, const PoolWindow& p, PlaneSize out) {
    return {pool_detail::window_axis(in.h, out.h, p), pool_detail::window_axis(in.w, out.w, p)};
}
/// The spans of adaptive pooling to a bins x bins grid.
inline PoolSpans adaptive_spans(PlaneSize in, int bins) {
    return {pool_detail::adaptive_axis(in.h, bins), pool_detail::adaptive_axis(in.w, bins)};
}

}  // namespace segnet::backend
