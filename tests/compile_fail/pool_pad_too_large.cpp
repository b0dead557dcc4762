// Compile-fail test: padding of more than half the window (PyTorch refuses pad > kernel / 2: a
// window could lie in the padding alone). Positive control: AvgPool<3, 1, 1>.
#include <segnet/compose/network.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
inline constexpr int pad = 2;
#else
inline constexpr int pad = 1;
#endif

struct Net : Network<Input<3, dyn, dyn>, Conv<8, 3>, AvgPool<3, 1, pad>, Classifier<2>> {};

[[maybe_unused]] constexpr auto parameters = parameter_count_v<Net>;
