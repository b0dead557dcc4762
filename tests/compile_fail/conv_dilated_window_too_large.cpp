// Compile-fail test: a valid (unpadded) 3x3 convolution of dilation 4 reads a 9x9 window, which
// does not fit in the 8x8 map a 2x2 pooling leaves of a 16x16 input. Positive control: 18x18
// (9x9 after the pooling, one pixel out, FCN-style head on a size-reducing network).
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int side = 16;
#else
inline constexpr int side = 18;
#endif

using Atrous = Conv2d<8, 3, ConvOptions{.dilation = 4, .padding = Padding::valid}>;
struct Net : Network<Input<3, side, side>, Block<Conv<8, 3>, BatchNorm, ReLU, MaxPool<2>>, Atrous, Classifier<2>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
