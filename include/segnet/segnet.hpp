// segnet/segnet.hpp: the umbrella header: everything needed to define, check, build, run and
// train a network on the CPU.
//
//   #include <segnet/segnet.hpp>
//   using namespace segnet;
//   Model<models::SegNetBasic<11>, Cpu> model(42);
#pragma once

#include "segnet/core/cancel.hpp"
#include "segnet/core/device.hpp"
#include "segnet/core/parameter.hpp"
#include "segnet/core/precision.hpp"
#include "segnet/core/random.hpp"
#include "segnet/core/shape.hpp"
#include "segnet/core/tensor.hpp"

#include "segnet/layers/add.hpp"
#include "segnet/layers/batch_norm.hpp"
#include "segnet/layers/conv.hpp"
#include "segnet/layers/dropout.hpp"
#include "segnet/layers/lrn.hpp"
#include "segnet/layers/pool.hpp"
#include "segnet/layers/upsample.hpp"

#include "segnet/compose/branches.hpp"
#include "segnet/compose/model.hpp"
#include "segnet/compose/monte_carlo.hpp"
#include "segnet/compose/network.hpp"
#include "segnet/compose/transfer.hpp"

#include "segnet/models/segnet.hpp"
#include "segnet/models/segnet_basic.hpp"

#include "segnet/backend/cpu/thread_pool.hpp"
#include "segnet/models/registry.hpp"  // skip policies (layers/skip.hpp), Table 1 variants, with_model()
