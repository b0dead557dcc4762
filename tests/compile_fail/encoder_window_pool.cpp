// Compile-fail test: a general max pool (3x3, stride 2, pad 1) as an Encoder's pool. Unpool needs
// the indices and size of a window = stride pool published to its Decoder, which only MaxPool<K>
// does. Positive control: the same network with MaxPool<2>.
#include <segnet/compose/network.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
using Pool = MaxPoolWindow<3, 2, 1>;
#else
using Pool = MaxPool<2>;
#endif

struct Net : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<8, 3>, BatchNorm, ReLU>, Pool>,
    Decoder<Unpool<2>, Block<Conv<8, 3>, BatchNorm>>,
    Classifier<2>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
