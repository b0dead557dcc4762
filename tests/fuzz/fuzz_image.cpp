// libFuzzer target: image and label loading (header probe, size limits, stb decoding) on
// hostile bytes, through the public file API (the bytes are written to a temporary file).
//   ./fuzz_image corpus-scratch/ tests/fuzz/corpus/image/
// Limits are smaller than the defaults so that no input can make one iteration slow; the
// limit check itself is what is being tested.
#include <segnet/io/image.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace {
std::filesystem::path scratch_file() {
    static const std::filesystem::path p =
        std::filesystem::temp_directory_path() / ("segnet-fuzz-image-" + std::to_string(::getpid()) + ".png");
    return p;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = scratch_file();
    {
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) return 0;
        if (size) std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    segnet::ImageLimits limits;
    limits.max_width = 1024;
    limits.max_height = 1024;
    limits.max_pixels = 1 << 18;
    limits.max_file_bytes = 1 << 20;
    try {
        (void)segnet::read_image_info(path, limits);
    } catch (const segnet::DataError&) {
    }
    try {
        const segnet::ImageU8 img = segnet::load_rgb(path, limits);
        if (img.channels != 3 || img.pixels.size() != std::size_t(img.width) * img.height * 3) __builtin_trap();
        if (std::int64_t(img.width) * img.height > limits.max_pixels) __builtin_trap();
    } catch (const segnet::DataError&) {
    }
    try {
        const auto label = segnet::load_label(path, limits);
        if (label.n() != 1 || label.c() != 1) __builtin_trap();
    } catch (const segnet::DataError&) {
    }
    return 0;
}
