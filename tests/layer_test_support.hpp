// What the layer and model tests share (tests/test_*.cpp): random inputs, and parameters set in
// general position for gradient checks.
#pragma once

#include <segnet/segnet.hpp>

#include <cstdint>
#include <vector>

namespace segnet::testing_support {

/// A tensor of the extents `e`, uniform in [lo, hi).
inline Tensor<Cpu> random_tensor(Extents e, Rng& rng, float lo = -1.f, float hi = 1.f) {
    Tensor<Cpu> t(e);
    for (float& v : t.span()) v = rng.uniform(lo, hi);
    return t;
}

/// He initialisation, then biases, batch-norm scales (1-D weights) and transposed-convolution
/// kernels (initialised bilinear, mostly zeros) away from their trivial values, so that their
/// gradients are exercised in general position. Works on composites: names are matched by suffix.
inline void init_layer(RuntimeLayer<Cpu>& layer, Rng& rng) {
    layer.initialize(rng);
    std::vector<ParamRef<Cpu>> ps;
    layer.collect(ps, "");
    const bool transposed = layer.kind() == "TransposedConv" || layer.kind() == "ConvTranspose2d";
    for (auto& p : ps) {
        if (!p.trainable()) continue;
        const bool bias = p.name.ends_with("bias");
        const bool bn_scale = p.name.ends_with("weight") && p.shape.size() == 1;
        if (bias || (transposed && p.name == "weight"))
            for (float& v : p.value->span()) v = rng.uniform(-0.5f, 0.5f);
        if (bn_scale)
            for (float& v : p.value->span()) v = rng.uniform(0.5f, 1.5f);
    }
}

}  // namespace segnet::testing_support
