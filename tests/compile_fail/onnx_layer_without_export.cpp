// Compile-fail test: exporting a network with a layer that declares no export_as is one error
// naming the layer, not a broken file, also where the layer sits inside a composite's path (a
// composite's own export_as names only its merge). Positive control: the same network with a ReLU
// in its place.
#include <segnet/compose/branches.hpp>
#include <segnet/export/onnx.hpp>
#include <segnet/layers/batch_norm.hpp>
#include <segnet/layers/conv.hpp>
#include <segnet/layers/pool.hpp>

using namespace segnet;

namespace user {
/// A layer of a user's own (it meets the layer contract) without an ONNX form.
struct Squash {
    static constexpr std::string_view name = "Squash";
    static constexpr ShapeResult infer(Dims in) { return ShapeResult::ok(in); }
    static constexpr std::int64_t parameter_count(Dims) { return 0; }
    static constexpr std::int64_t flops(Dims) { return 0; }
    template <class Device>
    static std::unique_ptr<RuntimeLayer<Device>> make(Dims) { return std::make_unique<ReluLayer<Device>>(); }
};
}  // namespace user

#ifdef SEGNET_SHOULD_FAIL
using Activation = user::Squash;
#else
using Activation = ReLU;
#endif

struct Net : Network<Input<3, dyn, dyn>,
    Encoder<Block<Conv<8, 3>, BatchNorm, Residual<Block<Conv<8, 3>, Activation>>>, MaxPool<2>>,
    Decoder<Unpool<2>, Block<Conv<8, 3>, BatchNorm>>,
    Classifier<4>> {};

void write(Model<Net, Cpu>& model) { onnx::export_model(model, "net.onnx"); }
