// Compile-fail test: DeconvNet's valid 7x7 fc6 needs pool5 at least 7x7, so at least 193x193; at
// 160x160 pool5 is 5x5. Positive control: the paper's 224x224.
#include <segnet/models/deconvnet.hpp>

using namespace segnet;

#ifdef SEGNET_SHOULD_FAIL
constexpr int side = 160;
#else
constexpr int side = 224;
#endif

[[maybe_unused]] constexpr int classes_out = output_shape_t<models::DeconvNet<21>, Shape<3, side, side>>::channels;
