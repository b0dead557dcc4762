// Compile-fail test: a type that is not a layer inside a Block. One error (the Block's), not a
// cascade from the shape walk. Positive control: the same network with a ReLU in its place.
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

struct NotALayer {};

#ifdef SEGNET_SHOULD_FAIL
using Activation = NotALayer;
#else
using Activation = ReLU;
#endif

struct Net : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<64, 7>, BatchNorm, Activation>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<11>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
