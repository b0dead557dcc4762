// Compile-fail test: the first decoder receives 128 channels but its Encoder pooled 64 (the
// wiring mistake shown in docs/troubleshooting.md). Positive control: 64 channels throughout.
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int bottleneck = 128;
#else
inline constexpr int bottleneck = 64;
#endif

struct MyNet : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Conv<bottleneck, 3>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<11>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<MyNet>;
