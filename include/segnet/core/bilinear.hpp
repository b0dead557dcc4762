// segnet/core/bilinear.hpp: the sampling positions of a bilinear resize with PyTorch's
// F.interpolate(mode="bilinear", align_corners=False) arithmetic (OpenCV's INTER_LINEAR), shared
// by the resize kernel (backend/cpu/resize.hpp) and the data pipeline's image resize
// (data/dataset.hpp).
//
//   std::vector<segnet::BilinearTap> rows = segnet::bilinear_taps(45, 360);   // 45 rows -> 360
//
// Output index o reads source position s = (o + 0.5) * in / out - 0.5, clamped at 0 (PyTorch's
// area_pixel_compute_source_index), from indices floor(s) and floor(s) + 1 (the last repeats),
// weighted by 1 - frac(s) and frac(s); in float, as PyTorch's CPU kernel computes it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace segnet {

/// The two source indices and weights of one output index along one axis.
struct BilinearTap {
    int i0 = 0, i1 = 0;
    float w0 = 1.f, w1 = 0.f;
};

/// The taps of every output index when `in` samples are resized to `out`.
inline std::vector<BilinearTap> bilinear_taps(int in, int out) {
    std::vector<BilinearTap> taps(std::size_t(std::max(out, 0)));
    const float scale = float(in) / float(out);
    for (int o = 0; o < out; ++o) {
        const float src = std::max(scale * (float(o) + 0.5f) - 0.5f, 0.f);
        const int i0 = std::min(int(src), in - 1);
        const float frac = src - float(i0);
        taps[std::size_t(o)] = {i0, i0 < in - 1 ? i0 + 1 : i0, 1.f - frac, frac};
    }
    return taps;
}

}  // namespace segnet
