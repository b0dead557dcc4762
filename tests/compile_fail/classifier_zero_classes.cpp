// Compile-fail test: a classifier with 0 classes. Positive control: 11 classes.
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int classes = 0;
#else
inline constexpr int classes = 11;
#endif

struct Net : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<classes>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
