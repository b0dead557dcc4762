// Compile-fail test: CroppedToInput around a path that halves the map, so there is nothing to
// crop its 8x8 output to the input's 16x16 from. Positive control: the path upsamples back
// (FCN's 4x4 stride-2 transposed convolution gives 16x16, cropped to 16x16).
#include <segnet/compose/branches.hpp>
#include <segnet/compose/network.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>
#include <segnet/layers/upsample.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
using Path = Block<MaxPool<2>, Conv<4, 1>>;
#else
using Path = Block<MaxPool<2>, Conv<4, 1>, ConvTranspose2d<4, 4, 2, 1>>;
#endif

struct Net : Network<Input<3, 16, 16>, Conv<8, 3>, CroppedToInput<Path>, Classifier<2>> {};

[[maybe_unused]] constexpr int classes_out = output_shape_t<Net, Shape<3, 16, 16>>::channels;
