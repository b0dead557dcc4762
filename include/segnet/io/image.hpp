// segnet/io/image.hpp: load RGB images and label maps (PNG/JPEG), write label and RGB PNGs.
//
//   segnet::ImageU8 rgb = segnet::load_rgb("train/0001TP_006690.png");      // HWC, 3 channels
//   segnet::Tensor<segnet::Cpu, std::uint8_t> y = segnet::load_label("trainannot/0001TP_006690.png");
//   segnet::write_label_png("pred.png", y);                                 // atomic
//
// Decoding uses stb_image (Debian libstb-dev), compiled into each translation unit as private
// static functions, PNG and JPEG only, so the library stays header-only without ODR clashes.
// Image sizes are checked against ImageLimits from the file header before anything is decoded:
// a 60-byte file that declares 100000x100000 pixels is refused without allocating.
// Label maps must be 8-bit single-channel PNGs holding class indices; colour-coded (RGB or
// palette) labels are refused, because converting them to grey would silently scramble classes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "segnet/core/tensor.hpp"
#include "segnet/io/files.hpp"

// stb is third-party C: keep its warnings out of our -Wall -Wextra builds.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wshadow"
#endif
#ifndef STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO  // we read files ourselves, to check sizes and name files in errors
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#endif
#ifndef STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace segnet {

/// Sizes an image file may declare before it is decoded. Defaults allow CamVid (480x360) and
/// photos up to 8K while refusing decompression bombs.
struct ImageLimits {
    int max_width = 8192;
    int max_height = 8192;
    std::int64_t max_pixels = 64'000'000;
    std::uint64_t max_file_bytes = 256ull << 20;
};

/// An 8-bit image in row-major HWC order (pixel (y, x), channel c at (y * width + x) * channels + c).
struct ImageU8 {
    int width = 0;
    int height = 0;
    int channels = 0;
    std::vector<std::uint8_t> pixels;
    std::uint8_t& at(int y, int x, int c) { return pixels[(std::size_t(y) * width + x) * channels + c]; }
    std::uint8_t at(int y, int x, int c) const { return pixels[(std::size_t(y) * width + x) * channels + c]; }
};

enum class ImageFormat { png, jpeg };

/// What the header of an image file declares.
struct ImageInfo {
    ImageFormat format = ImageFormat::png;
    int width = 0;
    int height = 0;
    int channels = 0;   ///< channels stored in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)
    int bit_depth = 8;  ///< PNG only; 8 for JPEG
    bool palette = false;  ///< PNG colour type 3 (indexed colour)
};

namespace image_detail {

inline std::string cannot_load(const std::filesystem::path& p) {
    return "segnet: cannot load " + io_detail::quoted(p) + ": ";
}

inline std::uint32_t be32(const unsigned char* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
           std::uint32_t(p[3]);
}

/// stb_image (Debian's 2022 snapshot) builds a JPEG Huffman table from 16 counts without
/// checking that they add up to at most 256, and then writes past its 257-entry arrays. Every
/// table stb can read starts at an FF C4 marker, so checking all of them (entropy-coded data
/// cannot contain FF C4: an FF there is followed by 00 or a restart marker) refuses such
/// files before stb sees them. Found by tests/fuzz/fuzz_image.
inline void check_jpeg_huffman_tables(const std::vector<unsigned char>& bytes, const std::filesystem::path& path) {
    auto at = [&](std::size_t i) -> unsigned { return i < bytes.size() ? bytes[i] : 0u; };  // stb reads 0 past the end
    for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
        if (bytes[i] != 0xFF || bytes[i + 1] != 0xC4) continue;
        long remaining = long((at(i + 2) << 8) | at(i + 3)) - 2;
        std::size_t p = i + 4;
        while (remaining > 0 && p < bytes.size()) {
            unsigned codes = 0;
            for (std::size_t k = 1; k <= 16; ++k) codes += at(p + k);
            if (codes > 256)
                throw DataError(cannot_load(path) + "corrupt JPEG (a Huffman table declares " + std::to_string(codes) +
                                " codes, at most 256)");
            p += 17 + codes;
            remaining -= long(17 + codes);
        }
    }
}

/// Reads the header from memory. PNG sizes come from IHDR directly, because stbi_info itself
/// refuses very large PNGs with a vague "too large", and we want to name the size and the limit.
inline ImageInfo probe(const std::vector<unsigned char>& bytes, const std::filesystem::path& path) {
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ImageInfo info;
    if (bytes.size() > 0x7fffffffu) throw DataError(cannot_load(path) + "file too large for the decoder (2 GiB)");
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), png_sig, 8) == 0) {
        info.format = ImageFormat::png;
        // Signature, then the IHDR chunk: length 13, "IHDR", width, height, depth, colour type.
        if (bytes.size() < 8 + 8 + 13 || be32(&bytes[8]) != 13 || std::memcmp(&bytes[12], "IHDR", 4) != 0)
            throw DataError(cannot_load(path) + "corrupt or truncated PNG (no image header)");
        const std::uint32_t w = be32(&bytes[16]), h = be32(&bytes[20]);
        if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu)
            throw DataError(cannot_load(path) + "corrupt PNG (invalid size " + std::to_string(w) + "x" +
                            std::to_string(h) + ")");
        info.width = int(w);
        info.height = int(h);
        info.bit_depth = bytes[24];
        const int colour_type = bytes[25];
        switch (colour_type) {
            case 0: info.channels = 1; break;
            case 2: info.channels = 3; break;
            case 3: info.channels = 3; info.palette = true; break;
            case 4: info.channels = 2; break;
            case 6: info.channels = 4; break;
            default:
                throw DataError(cannot_load(path) + "corrupt PNG (colour type " + std::to_string(colour_type) + ")");
        }
        return info;
    }
    if (bytes.size() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
        info.format = ImageFormat::jpeg;
        check_jpeg_huffman_tables(bytes, path);
        int w = 0, h = 0, n = 0;
        if (!stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &n))
            throw DataError(cannot_load(path) + "corrupt or truncated JPEG (" + stbi_failure_reason() + ")");
        info.width = w;
        info.height = h;
        info.channels = n;
        return info;
    }
    throw DataError(cannot_load(path) + "not a PNG or JPEG file");
}

inline void check_limits(const ImageInfo& info, const ImageLimits& limits, const std::filesystem::path& path) {
    const std::string size = std::to_string(info.width) + "x" + std::to_string(info.height);
    if (info.width > limits.max_width || info.height > limits.max_height)
        throw DataError(cannot_load(path) + size + " exceeds the image size limit " +
                        std::to_string(limits.max_width) + "x" + std::to_string(limits.max_height));
    if (std::int64_t(info.width) * info.height > limits.max_pixels)
        throw DataError(cannot_load(path) + size + " exceeds the image size limit of " +
                        std::to_string(limits.max_pixels) + " pixels");
}

/// Decodes with stb into `channels` channels after the header and limits were checked.
inline ImageU8 decode(const std::vector<unsigned char>& bytes, const ImageInfo& info, int channels,
                      const std::filesystem::path& path) {
    int w = 0, h = 0, n = 0;
    stbi_uc* px = stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &n, channels);
    if (!px) {
        const char* kind = info.format == ImageFormat::png ? "PNG" : "JPEG";
        throw DataError(cannot_load(path) + "corrupt or truncated " + kind + " (" + stbi_failure_reason() + ")");
    }
    struct Free {
        stbi_uc* p;
        ~Free() { stbi_image_free(p); }
    } free_px{px};
    if (w != info.width || h != info.height)
        throw DataError(cannot_load(path) + "corrupt image (header and data disagree on the size)");
    ImageU8 img;
    img.width = w;
    img.height = h;
    img.channels = channels;
    img.pixels.assign(px, px + std::size_t(w) * h * channels);
    return img;
}

inline void append_bytes(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    auto* p = static_cast<unsigned char*>(data);
    out->insert(out->end(), p, p + size);
}

/// PNG bytes of an 8-bit HWC image; `what` names it in the error.
inline std::vector<unsigned char> encode_png(int width, int height, int channels, const std::uint8_t* pixels,
                                             const std::string& what) {
    const std::string head = "segnet: cannot write " + what + ": ";
    if (width <= 0 || height <= 0) throw DataError(head + "empty image");
    std::vector<unsigned char> png;
    if (!stbi_write_png_to_func(&append_bytes, &png, width, height, channels, pixels, width * channels))
        throw DataError(head + "PNG encoding failed");
    return png;
}

inline void write_png(const std::filesystem::path& path, int width, int height, int channels,
                      const std::uint8_t* pixels) {
    const auto png = encode_png(width, height, channels, pixels, io_detail::quoted(path));
    write_file_atomically(path, [&](FileSink& f) { f.write(png.data(), png.size()); });
}

}  // namespace image_detail

/// Reads only the header: format, size, stored channels. Does not apply limits.
inline ImageInfo read_image_info(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    return image_detail::probe(read_file_bytes(path, limits.max_file_bytes, "load"), path);
}

/// Decodes PNG or JPEG bytes held in memory (an upload) as 8-bit RGB; `name` stands for the
/// file in errors. The header's size is checked against `limits` before anything is decoded.
inline ImageU8 decode_rgb(const std::vector<unsigned char>& bytes, const std::filesystem::path& name,
                          const ImageLimits& limits = {}) {
    const ImageInfo info = image_detail::probe(bytes, name);
    image_detail::check_limits(info, limits, name);
    return image_detail::decode(bytes, info, 3, name);
}

/// Loads a PNG or JPEG as 8-bit RGB (grey is replicated, alpha dropped).
inline ImageU8 load_rgb(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    return decode_rgb(read_file_bytes(path, limits.max_file_bytes, "load"), path, limits);
}

/// Converts an 8-bit HWC image to a float {1, C, H, W} tensor with values 0..255.
inline Tensor<Cpu> to_tensor(const ImageU8& img) {
    Tensor<Cpu> t({1, img.channels, img.height, img.width});
    const std::int64_t plane = std::int64_t(img.height) * img.width;
    for (std::int64_t i = 0; i < plane; ++i)
        for (int c = 0; c < img.channels; ++c) t[c * plane + i] = float(img.pixels[i * img.channels + c]);
    return t;
}

/// Loads a PNG or JPEG as a float {1, 3, H, W} tensor with values 0..255 (not normalised).
inline Tensor<Cpu> load_rgb_tensor(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    return to_tensor(load_rgb(path, limits));
}

/// Loads a label map: an 8-bit single-channel PNG of class indices, as a {1, 1, H, W} tensor.
inline Tensor<Cpu, std::uint8_t> load_label(const std::filesystem::path& path, const ImageLimits& limits = {}) {
    const auto bytes = read_file_bytes(path, limits.max_file_bytes, "load");
    const ImageInfo info = image_detail::probe(bytes, path);
    const std::string head = image_detail::cannot_load(path) + "label images must be 8-bit single-channel PNGs of class indices; ";
    if (info.format != ImageFormat::png)
        throw DataError(head + "this is a JPEG (lossy compression changes class values)");
    if (info.palette)
        throw DataError(head + "this PNG uses a colour palette (save the indices as greyscale)");
    if (info.channels != 1)
        throw DataError(head + "this PNG has " + std::to_string(info.channels) + " channels" +
                        (info.channels >= 3 ? " (colour-coded labels must be converted to class indices)" : ""));
    if (info.bit_depth != 8)
        throw DataError(head + "this PNG has " + std::to_string(info.bit_depth) + "-bit samples");
    image_detail::check_limits(info, limits, path);
    ImageU8 img = image_detail::decode(bytes, info, 1, path);
    Tensor<Cpu, std::uint8_t> label({1, 1, img.height, img.width});
    std::copy(img.pixels.begin(), img.pixels.end(), label.data());
    return label;
}

/// A {1, 1, H, W} label map as 8-bit greyscale PNG bytes (what write_label_png writes).
inline std::vector<unsigned char> encode_label_png(TensorView<Cpu, const std::uint8_t> label) {
    if (label.n() != 1 || label.c() != 1)
        throw DataError("segnet: cannot encode a label map: it must be 1x1xHxW, got " + to_string(label.extents()));
    return image_detail::encode_png(label.w(), label.h(), 1, label.data(), "a label map");
}

/// An RGB image (colour masks, overlays) as PNG bytes.
inline std::vector<unsigned char> encode_rgb_png(const ImageU8& rgb) {
    if (rgb.channels != 3 || rgb.pixels.size() != std::size_t(rgb.width) * std::size_t(rgb.height) * 3)
        throw DataError("segnet: cannot encode an RGB image: the pixel buffer does not match " +
                        std::to_string(rgb.width) + "x" + std::to_string(rgb.height) + "x3");
    return image_detail::encode_png(rgb.width, rgb.height, 3, rgb.pixels.data(), "an RGB image");
}

/// Writes a {1, 1, H, W} label map as an 8-bit greyscale PNG, atomically.
inline void write_label_png(const std::filesystem::path& path, TensorView<Cpu, const std::uint8_t> label) {
    if (label.n() != 1 || label.c() != 1)
        throw DataError("segnet: cannot write " + io_detail::quoted(path) + ": a label map must be 1x1xHxW, got " +
                        to_string(label.extents()));
    image_detail::write_png(path, label.w(), label.h(), 1, label.data());
}

/// Writes an 8-bit image (1, 3 or 4 channels, HWC) as a PNG, atomically.
inline void write_png(const std::filesystem::path& path, const ImageU8& img) {
    if (img.channels < 1 || img.channels > 4 ||
        img.pixels.size() != std::size_t(img.width) * std::size_t(img.height) * std::size_t(img.channels))
        throw DataError("segnet: cannot write " + io_detail::quoted(path) + ": pixel buffer does not match " +
                        std::to_string(img.width) + "x" + std::to_string(img.height) + "x" +
                        std::to_string(img.channels));
    image_detail::write_png(path, img.width, img.height, img.channels, img.pixels.data());
}

/// Writes an RGB image (colour masks, overlays) as a PNG, atomically.
inline void write_rgb_png(const std::filesystem::path& path, const ImageU8& rgb) {
    if (rgb.channels != 3)
        throw DataError("segnet: cannot write " + io_detail::quoted(path) + ": expected 3 channels, got " +
                        std::to_string(rgb.channels));
    write_png(path, rgb);
}

}  // namespace segnet
