// A user's program built against the installed package: the umbrella header, image I/O (stb
// through the package's include folders), the version header, and one forward/backward.
#include <segnet/io/image.hpp>
#include <segnet/segnet.hpp>
#include <segnet/version.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

using namespace segnet;

using Tiny = Network<Input<3, dyn, dyn>,
                     Encoder<Block<Conv<4, 3>, BatchNorm, ReLU>, MaxPool<2>>,
                     Decoder<Unpool<2>, Block<Conv<4, 3>, BatchNorm>>,
                     Classifier<2>>;
static_assert(std::is_same_v<output_shape_t<Tiny, Shape<3, 8, 10>>, Shape<2, 8, 10>>);

int main() {
    if (std::strcmp(version_string, EXPECTED_VERSION) != 0) {
        std::printf("version.hpp says %s, the CMake package says %s\n", version_string, EXPECTED_VERSION);
        return 1;
    }
    Model<Tiny, Cpu> model(7);
    Tensor<Cpu> x({1, 3, 8, 10});
    for (std::int64_t i = 0; i < x.size(); ++i) x[i] = float(i % 13) / 13.0f;
    const Tensor<Cpu>& y = model.forward(x, Mode::train);
    Tensor<Cpu> dy(y.extents());
    for (std::int64_t i = 0; i < dy.size(); ++i) dy[i] = 0.01f;
    model.backward(dy);
    for (std::int64_t i = 0; i < y.size(); ++i)
        if (!std::isfinite(y[i])) return 1;

    ImageU8 img{2, 1, 3, {255, 0, 0, 0, 255, 0}};  // stb_image_write through the package
    (void)img;
    std::printf("segnet %s: forward %lldx%lldx%lldx%lld ok\n", version_string, (long long)y.n(),
                (long long)y.c(), (long long)y.h(), (long long)y.w());
    return 0;
}
