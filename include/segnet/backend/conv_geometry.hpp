// segnet/backend/conv_geometry.hpp: the sizes of one convolution, shared by every backend.
//
//   segnet::backend::ConvGeometry g{.in_c = 64, .in_h = 45, .in_w = 60, .out_c = 64,
//                                   .out_h = 45, .out_w = 60, .k = 7, .stride = 1, .pad = 3};
//   std::int64_t weights = g.weight_size();   // 64 * 64 * 7 * 7
//   int rows = segnet::backend::conv_output_extent(360, 3, 2, 1, 1);   // 180 (PyTorch's arithmetic)
//
// Output pixel (oy, ox) reads input (oy * stride - pad + ky * dilation, ox * stride - pad + kx *
// dilation) for the taps ky, kx < k; the padding is symmetric (pad on both sides).
#pragma once

#include <cstdint>
#include <stdexcept>

namespace segnet::backend {

/// The output rows (or columns) of a convolution over `in` input rows: floor((in + 2 pad -
/// dilation (k - 1) - 1) / stride) + 1, PyTorch's nn.Conv2d arithmetic; 0 or less when the
/// dilated window does not fit in the padded map.
constexpr int conv_output_extent(int in, int k, int stride, int pad, int dilation) {
    const int room = in + 2 * pad - dilation * (k - 1) - 1;
    return room < 0 ? 0 : room / stride + 1;
}

struct ConvGeometry {
    int in_c = 0, in_h = 0, in_w = 0;
    int out_c = 0, out_h = 0, out_w = 0;
    int k = 1, stride = 1, pad = 0, groups = 1;
    int dilation = 1;  // atrous: taps dilation pixels apart (last, so positional initialisers keep 1)

    int in_c_per_group() const { return in_c / groups; }
    int out_c_per_group() const { return out_c / groups; }
    std::int64_t in_plane() const { return std::int64_t(in_h) * in_w; }
    std::int64_t out_plane() const { return std::int64_t(out_h) * out_w; }
    std::int64_t weight_size() const { return std::int64_t(out_c) * in_c_per_group() * k * k; }
    bool is_pointwise() const { return k == 1 && stride == 1 && pad == 0 && in_h == out_h && in_w == out_w; }
    void validate() const {
        if (groups <= 0 || in_c % groups != 0 || out_c % groups != 0 || k <= 0 || stride <= 0 || pad < 0 ||
            dilation <= 0 || in_h <= 0 || in_w <= 0 || out_h <= 0 || out_w <= 0)
            throw std::invalid_argument("segnet::backend::ConvGeometry: invalid geometry");
    }
};

}  // namespace segnet::backend
