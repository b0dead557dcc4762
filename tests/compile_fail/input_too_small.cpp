// Compile-fail test: a static 3x3 input cannot go through three 2x2 poolings (3 -> 2 -> 1, and
// the third pool's 2x2 window does not fit in a 1x1 map). Positive control: 8x8.
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int side = 3;
#else
inline constexpr int side = 8;
#endif

using E = Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, MaxPool<2>>;
using D = Decoder<Unpool<2>, Block<Conv<8, 3>, BatchNorm>>;
struct Net : Network<Input<3, side, side>, E, E, E, D, D, D, Classifier<2>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
