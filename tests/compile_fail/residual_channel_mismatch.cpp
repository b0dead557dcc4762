// Compile-fail test: a residual block whose body ends with 128 channels while its identity
// shortcut carries the block's 64 (ResNet's first block of a stage needs a projection).
// Positive control: the body ends with 64 channels.
#include <segnet/compose/branches.hpp>
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int body_channels = 128;
#else
inline constexpr int body_channels = 64;
#endif

struct Net : Network<Input<3, 64, 64>,
    Block<Conv<64, 7>, BatchNorm, ReLU>,
    Residual<Block<Conv<64, 3>, BatchNorm, ReLU, Conv<body_channels, 3>, BatchNorm>>,
    Classifier<11>> {};

[[maybe_unused]] constexpr int classes_out = output_shape_t<Net, Shape<3, 64, 64>>::channels;
