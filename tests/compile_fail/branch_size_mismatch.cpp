// Compile-fail test: a pyramid whose pooled branch is not brought back to the input's size, so
// its 8x8 map cannot be concatenated with the identity branch's 16x16. Positive control: the
// branch is wrapped in ResizedToInput.
#include <segnet/compose/branches.hpp>
#include <segnet/compose/network.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

using Pooled = Block<MaxPool<2>, Conv<16, 1>>;
#ifdef SEGNET_SHOULD_FAIL
using PooledBranch = Pooled;
#else
using PooledBranch = ResizedToInput<Pooled>;
#endif

struct Net : Network<Input<3, 16, 16>,
    Conv<32, 3>,
    Branches<Merge::concat, Identity, PooledBranch>,
    Classifier<11>> {};

[[maybe_unused]] constexpr int classes_out = output_shape_t<Net, Shape<3, 16, 16>>::channels;
