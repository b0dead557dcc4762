// segnet/core/precision.hpp: the arithmetic precision convolutions compute in.
//
//   model.set_precision(segnet::Precision::bf16);   // the model's forward and backward in bf16
//   {
//       segnet::PrecisionScope scope(segnet::Precision::bf16);   // or for a block of kernel calls
//       segnet::backend::conv2d_forward(x, w, nullptr, y, g);
//   }
//
// Precision::bf16 rounds a convolution's inputs and weights (forward), its output gradient and
// weights (backward-data) and its input and output gradient (backward-filter) to bfloat16 and
// accumulates in FP32; every tensor stays FP32 (the weights are the FP32 master copy, so
// training needs no separate master weights, and bf16 has FP32's exponent range, so no loss
// scaling either). It is a request, as PyTorch's autocast is: the backend runs it on the CPU's
// BF16 units where it has them, and runs FP32 where it does not (backend::cpu::bf16_units()).
// The setting is per thread, like autocast: Model sets it around its own forward and backward.
// Depends on nothing.
#pragma once

#include <optional>
#include <string_view>

namespace segnet {

enum class Precision { fp32, bf16 };

/// "fp32" or "bf16".
constexpr const char* to_string(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

/// The precision a name stands for ("fp32", "bf16"), or nothing.
constexpr std::optional<Precision> parse_precision(std::string_view name) {
    if (name == "fp32") return Precision::fp32;
    if (name == "bf16") return Precision::bf16;
    return std::nullopt;
}

namespace detail {
inline Precision& thread_precision() {
    thread_local Precision precision = Precision::fp32;
    return precision;
}
}  // namespace detail

/// The precision convolutions called on this thread compute in (Precision::fp32 unless a
/// PrecisionScope says otherwise).
inline Precision compute_precision() { return detail::thread_precision(); }

/// Sets compute_precision() on this thread for its lifetime and restores the previous value.
class PrecisionScope {
public:
    explicit PrecisionScope(Precision p) : previous_(detail::thread_precision()) { detail::thread_precision() = p; }
    ~PrecisionScope() { detail::thread_precision() = previous_; }
    PrecisionScope(const PrecisionScope&) = delete;
    PrecisionScope& operator=(const PrecisionScope&) = delete;

private:
    Precision previous_;
};

}  // namespace segnet
