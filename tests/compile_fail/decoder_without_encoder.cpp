// Compile-fail test: a Decoder with no Encoder before it.
// Built twice: as is (positive control, must compile) and with SEGNET_SHOULD_FAIL (must fail
// with the decoder_without_encoder message).
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
struct Net : Network<Input<3, dyn, dyn>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<11>> {};
#else
struct Net : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<64, 7>, BatchNorm>>,
    Classifier<11>> {};
#endif

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
