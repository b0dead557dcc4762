// segnet/backend/lrn_math.hpp: the arithmetic of Caffe's cross-channel local response
// normalisation at one pixel, the one implementation the CPU loop (backend/cpu/lrn.hpp) and the
// CUDA kernel (backend/cuda/kernels.cuh) both run.
//
//   segnet::backend::lrn::forward_pixel(x + base, c, plane, 5, 1e-4f, 0.75f, 1.f, y + base, scale + base);
//
// scale_i = k + alpha/size * sum_{j in [i - (size-1)/2, i + size/2]} x_j^2, y_i = x_i * scale_i^-beta
// (Caffe's LRNLayer, ACROSS_CHANNELS; the window is clipped at the first and last channel). The
// pointers address channel 0 of one pixel; channel j is `plane` values further per channel.
// powf is std::pow's float overload on the host and CUDA's powf on the device, so both backends
// compute the same terms in the same order.
#pragma once

#include <cmath>
#include <cstdint>

#include "segnet/backend/host_device.hpp"

namespace segnet::backend::lrn {

/// Channel ch's window is [ch - pre, ch + post]: `size` channels, centred (Caffe's rounding).
struct Window {
    int pre, post;
    SEGNET_HOST_DEVICE explicit Window(int size) : pre((size - 1) / 2), post(size - (size - 1) / 2 - 1) {}
};

/// y and scale of every channel of one pixel.
SEGNET_HOST_DEVICE inline void forward_pixel(const float* x, int c, std::int64_t plane, int size, float alpha,
                                             float beta, float k, float* y, float* scale) {
    const Window win(size);
    for (int ch = 0; ch < c; ++ch) {
        float s = 0.f;
        for (int j = ch - win.pre; j <= ch + win.post; ++j)
            if (j >= 0 && j < c) s += x[j * plane] * x[j * plane];
        const float sc = k + alpha / float(size) * s;
        scale[ch * plane] = sc;
        y[ch * plane] = x[ch * plane] * powf(sc, -beta);
    }
}

/// dx of every channel of one pixel from forward's x, y and scale and the output gradient dy.
SEGNET_HOST_DEVICE inline void backward_pixel(const float* x, const float* y, const float* scale, const float* dy,
                                              int c, std::int64_t plane, int size, float alpha, float beta,
                                              float* dx) {
    const Window win(size);
    const float coeff = 2.f * alpha * beta / float(size);
    for (int ch = 0; ch < c; ++ch) {
        // x_ch appears in the windows of the channels j with j - pre <= ch <= j + post.
        float acc = 0.f;
        for (int j = ch - win.post; j <= ch + win.pre; ++j)
            if (j >= 0 && j < c) acc += dy[j * plane] * y[j * plane] / scale[j * plane];
        const std::int64_t i = ch * plane;
        dx[i] = dy[i] * powf(scale[i], -beta) - coeff * x[i] * acc;
    }
}

}  // namespace segnet::backend::lrn
