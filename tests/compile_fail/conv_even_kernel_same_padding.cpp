// Compile-fail test: Padding::same cannot centre an even kernel (dilation (K - 1) / 2 is not a
// whole number of pixels on each side). Positive control: the same 4x4 kernel with explicit
// padding 1, as FCN's and DeconvNet's 4x4 layers write it.
#include <segnet/compose/network.hpp>
#include <segnet/layers/conv.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
using Even = Conv2d<8, 4, ConvOptions{.stride = 2}>;
#else
using Even = Conv2d<8, 4, ConvOptions{.stride = 2, .padding = Padding::explicit_(1)}>;
#endif
struct Net : Network<Input<3, 32, 32>, Even, Classifier<2>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
