// Tests for data loading and file formats: list files, image/label I/O and its limits,
// dataset validation, augmentation, the batch loader, safetensors, atomic writes, synthetic data.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "segnet/data/dataset.hpp"
#include "segnet/data/list_file.hpp"
#include "segnet/data/synthetic.hpp"
#include "segnet/io/image.hpp"
#include "segnet/io/process.hpp"
#include "segnet/io/safetensors.hpp"

#include <sys/stat.h>

namespace fs = std::filesystem;
using namespace segnet;

namespace {

const fs::path fixtures = fs::path(SEGNET_TEST_DATA_DIR) / "data_io";

/// A fresh folder under the system temp dir, removed with its contents at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        static std::atomic<int> counter{0};
        path = fs::temp_directory_path() /
               ("segnet_test_data_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    fs::path operator/(const std::string& name) const { return path / name; }
};

std::string message_of(auto&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "<no exception>";
}

#define CHECK_THROWS_CONTAINING(expr, text)                                      \
    do {                                                                         \
        const std::string msg_ = message_of([&] { (void)(expr); });              \
        INFO("message: " << msg_);                                               \
        CHECK(msg_.find(text) != std::string::npos);                             \
    } while (0)

void write_bytes(const fs::path& p, const std::vector<unsigned char>& b) {
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
std::vector<unsigned char> read_bytes(const fs::path& p) { return read_file_bytes(p, 1 << 30); }

ImageU8 gradient_image(int w, int h, int channels = 3) {
    ImageU8 img{w, h, channels, std::vector<std::uint8_t>(std::size_t(w * h * channels))};
    for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = std::uint8_t((i * 37 + 11) % 256);
    return img;
}

Tensor<Cpu, std::uint8_t> label_map(int w, int h, int classes) {
    Tensor<Cpu, std::uint8_t> l({1, 1, h, w});
    for (std::int64_t i = 0; i < l.size(); ++i) l[i] = std::uint8_t(i % classes);
    return l;
}

std::vector<std::string> files_in(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

/// A two-sample dataset on disk: images/a.png, images/b.png and labels, plus list.txt.
struct SmallDataset {
    TempDir dir;
    SmallDataset(int w = 6, int h = 4) {
        fs::create_directories(dir / "images");
        fs::create_directories(dir / "labels");
        for (const char* n : {"a.png", "b.png"}) {
            write_rgb_png(dir.path / "images" / n, gradient_image(w, h));
            write_label_png(dir.path / "labels" / n, label_map(w, h, 3));
        }
        write_text(dir / "list.txt", "images/a.png labels/a.png\nimages/b.png labels/b.png\n");
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("list file: comments, blank lines, CRLF and tabs; paths relative to the list's folder") {
    const SampleList list = read_list_file(fixtures / "list_good.txt");
    REQUIRE(list.size() == 2);
    CHECK(list.samples[0].image == fixtures / "images/a.png");
    CHECK(list.samples[0].label == fixtures / "labels/a.png");
    CHECK(list.samples[0].line == 3);
    CHECK(list.samples[1].image == fixtures / "images/b.png");
    CHECK(list.samples[1].line == 4);

    const SampleList rooted = read_list_file(fixtures / "list_good.txt", fs::path("/data"));
    CHECK(rooted.samples[1].label == fs::path("/data/labels/b.png"));

    const SampleList empty = parse_list("\n# nothing\n   \n", "empty.txt", "");
    CHECK(empty.size() == 0);
}

TEST_CASE("list file: a file without a sample is refused as empty") {
    TempDir dir;
    write_text(dir / "comments.txt", "# only a comment\n\n   \n");
    CHECK_THROWS_CONTAINING(read_list_file(dir / "comments.txt"), "comments.txt' is empty");
    write_text(dir / "empty.txt", "");
    CHECK_THROWS_CONTAINING(read_list_file(dir / "empty.txt"), "empty.txt' is empty");
}

TEST_CASE("list file: with optional labels, a line may name the image alone") {
    const SampleList list = parse_list("a.png\nb.png labels/b.png\n", "images.txt", "/d", ListLabels::optional);
    REQUIRE(list.size() == 2);
    CHECK(list.samples[0].image == fs::path("/d/a.png"));
    CHECK(list.samples[0].label.empty());
    CHECK(list.samples[1].label == fs::path("/d/labels/b.png"));
    CHECK_THROWS_CONTAINING(parse_list("a.png\n", "train.txt", "/d"), "train.txt:1: expected 'image label'");
}

TEST_CASE("list file: a 3 MB path is shortened in the message") {
    const std::string huge(3'000'000, 'x');
    const std::string msg = message_of([&] { (void)parse_list(huge + "\n", "list.txt", ""); });
    CHECK(msg.find("list.txt:1") != std::string::npos);
    CHECK(msg.size() < 400);
}

TEST_CASE("shortened: keeps short values, cuts long ones in the middle, hides control characters") {
    CHECK(shortened("a.png") == "a.png");
    CHECK(shortened("a\tb\n") == "a?b?");
    const std::string path = std::string(300, 'd') + "/image.png";
    const std::string cut = shortened(path);
    CHECK(cut.size() == 160);
    CHECK(cut.find("...") != std::string::npos);
    CHECK(cut.ends_with("/image.png"));  // the file name survives
    CHECK(shortened(std::string(1000, 'y'), 60).size() == 60);
}

TEST_CASE("require_regular_file: a FIFO, a folder or a missing file is refused without opening it") {
    TempDir dir;
    REQUIRE(::mkfifo((dir / "pipe.png").c_str(), 0600) == 0);
    // fopen would block here forever: the check must come first.
    CHECK_THROWS_CONTAINING(require_regular_file(dir / "pipe.png", "load"), "cannot load '");
    CHECK_THROWS_CONTAINING(require_regular_file(dir / "pipe.png", "load"), "pipe.png': is a FIFO");
    CHECK_THROWS_CONTAINING(load_rgb(dir / "pipe.png"), "is a FIFO");
    CHECK_THROWS_CONTAINING(require_regular_file(dir.path), "is a directory");
    CHECK_THROWS_CONTAINING(require_regular_file(dir / "none.png"), "file not found");
    write_text(dir / "ok.txt", "x");
    CHECK_NOTHROW(require_regular_file(dir / "ok.txt"));
}

TEST_CASE("remove_stale_temporaries: removes a dead writer's temporaries, keeps a live one's and other files") {
    TempDir dir;
    const std::string live = ".last.safetensors.tmp-" + std::to_string(::getpid()) + "-0";
    const std::string dead = ".last.safetensors.tmp-999999999-3";  // above any pid_max
    for (const std::string& name : {live, dead, std::string("last.safetensors"), std::string(".best.safetensors.tmp-999999999-1")})
        write_text(dir / name, "x");
    CHECK(remove_stale_temporaries(dir.path, "last.safetensors") == 1);
    CHECK(fs::exists(dir / live));
    CHECK(!fs::exists(dir / dead));
    CHECK(fs::exists(dir / "last.safetensors"));
    CHECK(fs::exists(dir / ".best.safetensors.tmp-999999999-1"));  // another target's
}

TEST_CASE("regular_files_in: a symlink loop is skipped and reported, the other files listed") {
    TempDir dir;
    write_text(dir / "b.png", "x");
    write_text(dir / "a.png", "x");
    write_text(dir / "notes.txt", "x");
    fs::create_symlink("loop.png", dir / "loop.png");
    std::vector<std::string> skipped;
    const auto files = regular_files_in(
        dir.path, [](const fs::path& p) { return p.extension() == ".png"; },
        [&](const fs::path& p, const std::string&) { skipped.push_back(p.filename().string()); });
    REQUIRE(files.size() == 2);
    CHECK(files[0].filename() == "a.png");
    CHECK(files[1].filename() == "b.png");
    CHECK(skipped == std::vector<std::string>{"loop.png"});
}

TEST_CASE("available_memory_bytes: the smaller of MemAvailable and the cgroup's room") {
    const std::string meminfo = "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n";
    CHECK(available_memory_bytes(meminfo, "", "") == 8000000LL * 1024);
    CHECK(available_memory_bytes(meminfo, "max\n", "100\n") == 8000000LL * 1024);
    CHECK(available_memory_bytes(meminfo, "2000000000\n", "500000000\n") == 1500000000);
    CHECK(available_memory_bytes("", "2000000000\n", "500000000\n") == 1500000000);
    CHECK(available_memory_bytes("", "", "") == -1);
}

TEST_CASE("list file: malformed lines are rejected with file and line number") {
    CHECK_THROWS_CONTAINING(read_list_file(fixtures / "list_one_field.txt"),
                            "list_one_field.txt:3: expected 'image label', got 'images/b.png' (1 field)");
    CHECK_THROWS_CONTAINING(parse_list("a b\nc d e\n", "list.txt", ""),
                            "list.txt:2: expected 'image label', got 'c d e' (3 fields)");
    CHECK_THROWS_CONTAINING(read_list_file("/nonexistent/list.txt"), "'/nonexistent/list.txt': file not found");
}

TEST_CASE("list file: missing files are reported with list line and path") {
    SmallDataset d;
    write_text(d.dir / "list2.txt", "images/a.png labels/a.png\n\nimages/a.png labels/zzz.png\n");
    const SampleList list = read_list_file(d.dir / "list2.txt");
    CHECK_THROWS_CONTAINING(check_list_files_exist(list), "list2.txt:3: label '");
    CHECK_THROWS_CONTAINING(check_list_files_exist(list), "labels/zzz.png' not found");
    CHECK_THROWS_AS(SegmentationDataset{list}, DataError);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("image: PNG round trips for RGB and labels; grey and RGBA become RGB") {
    TempDir dir;
    const ImageU8 rgb = gradient_image(7, 5);
    write_rgb_png(dir / "rgb.png", rgb);
    const ImageU8 back = load_rgb(dir / "rgb.png");
    CHECK(back.width == 7);
    CHECK(back.height == 5);
    CHECK(back.channels == 3);
    CHECK(back.pixels == rgb.pixels);

    const Tensor<Cpu> t = load_rgb_tensor(dir / "rgb.png");
    CHECK(t.extents() == Extents{1, 3, 5, 7});
    CHECK(t(0, 2, 4, 6) == float(rgb.at(4, 6, 2)));

    const auto label = label_map(7, 5, 12);
    write_label_png(dir / "label.png", label);
    const auto label_back = load_label(dir / "label.png");
    CHECK(label_back.extents() == Extents{1, 1, 5, 7});
    CHECK(std::equal(label.data(), label.data() + label.size(), label_back.data()));

    // A grey PNG loads as RGB with the value replicated.
    const ImageU8 rgb_from_grey = load_rgb(dir / "label.png");
    CHECK(rgb_from_grey.at(2, 3, 0) == label(0, 0, 2, 3));
    CHECK(rgb_from_grey.at(2, 3, 2) == label(0, 0, 2, 3));

    const ImageU8 rgba = gradient_image(3, 2, 4);
    write_png(dir / "rgba.png", rgba);
    const ImageU8 rgb_from_rgba = load_rgb(dir / "rgba.png");
    CHECK(rgb_from_rgba.channels == 3);
    CHECK(rgb_from_rgba.at(1, 2, 1) == rgba.at(1, 2, 1));

    const ImageInfo info = read_image_info(dir / "rgba.png");
    CHECK(info.channels == 4);
    CHECK(info.width == 3);
}

TEST_CASE("image: in memory, decode_rgb and encode_*_png agree with the file functions") {
    TempDir dir;
    const auto label = label_map(7, 5, 12);
    write_label_png(dir / "label.png", label);
    CHECK(encode_label_png(label) == read_bytes(dir / "label.png"));
    const ImageU8 rgb = gradient_image(7, 5);
    write_rgb_png(dir / "rgb.png", rgb);
    const auto png = encode_rgb_png(rgb);
    CHECK(png == read_bytes(dir / "rgb.png"));
    CHECK(decode_rgb(png, "upload").pixels == rgb.pixels);
    ImageLimits limits;
    limits.max_pixels = 34;  // 7x5 is 35: refused from the header, named as given
    CHECK_THROWS_CONTAINING(decode_rgb(png, "the upload", limits), "'the upload': 7x5 exceeds the image size limit of 34");
    CHECK_THROWS_CONTAINING(decode_rgb(std::vector<unsigned char>(png.begin(), png.begin() + 40), "the upload"),
                            "'the upload': corrupt or truncated PNG");
}

TEST_CASE("image: JPEG images load as RGB; JPEG labels are refused") {
    TempDir dir;
    const ImageU8 img = gradient_image(16, 8);
    std::vector<unsigned char> jpeg;
    REQUIRE(stbi_write_jpg_to_func(&image_detail::append_bytes, &jpeg, 16, 8, 3, img.pixels.data(), 95));
    write_bytes(dir / "photo.jpg", jpeg);
    const ImageU8 back = load_rgb(dir / "photo.jpg");
    CHECK(back.width == 16);
    CHECK(back.height == 8);
    CHECK(read_image_info(dir / "photo.jpg").format == ImageFormat::jpeg);
    CHECK_THROWS_CONTAINING(load_label(dir / "photo.jpg"), "photo.jpg': label images must be 8-bit single-channel PNGs");
    jpeg.resize(jpeg.size() / 3);
    write_bytes(dir / "cut.jpg", jpeg);
    CHECK_THROWS_CONTAINING(load_rgb(dir / "cut.jpg"), "cut.jpg': corrupt or truncated JPEG");
}

TEST_CASE("image: load errors name the file and the problem") {
    TempDir dir;
    CHECK_THROWS_CONTAINING(load_rgb(dir / "missing.png"), "segnet: cannot load '");
    CHECK_THROWS_CONTAINING(load_rgb(dir / "missing.png"), "missing.png': file not found");

    write_text(dir / "text.png", "hello, I am not an image");
    CHECK_THROWS_CONTAINING(load_rgb(dir / "text.png"), "text.png': not a PNG or JPEG file");
    write_text(dir / "empty.png", "");
    CHECK_THROWS_CONTAINING(load_rgb(dir / "empty.png"), "empty.png': not a PNG or JPEG file");

    write_rgb_png(dir / "good.png", gradient_image(32, 32));
    auto bytes = read_bytes(dir / "good.png");
    bytes.resize(bytes.size() / 2);
    write_bytes(dir / "truncated.png", bytes);
    CHECK_THROWS_CONTAINING(load_rgb(dir / "truncated.png"), "truncated.png': corrupt or truncated PNG");
    bytes.resize(20);
    write_bytes(dir / "stub.png", bytes);
    CHECK_THROWS_CONTAINING(load_rgb(dir / "stub.png"), "stub.png': corrupt or truncated PNG");

    CHECK_THROWS_AS(load_rgb(dir.path), DataError);  // a folder
}

TEST_CASE("image: labels must be 8-bit single-channel PNGs") {
    TempDir dir;
    write_rgb_png(dir / "colour_label.png", gradient_image(4, 4));
    CHECK_THROWS_CONTAINING(load_label(dir / "colour_label.png"), "colour_label.png': label images must be 8-bit");
    CHECK_THROWS_CONTAINING(load_label(dir / "colour_label.png"), "3 channels (colour-coded labels");
}

TEST_CASE("image: size limit refuses a huge declared size before decoding") {
    // 45 bytes: PNG signature, an IHDR declaring 100000x100000 RGB, IEND. Decoding would need 30 GB.
    CHECK_THROWS_CONTAINING(load_rgb(fixtures / "huge_header.png"),
                            "huge_header.png': 100000x100000 exceeds the image size limit 8192x8192");
    CHECK_THROWS_CONTAINING(load_label(fixtures / "huge_header.png"), "label images must be");  // RGB: refused first
    const ImageInfo info = read_image_info(fixtures / "huge_header.png");
    CHECK(info.width == 100000);

    TempDir dir;
    write_rgb_png(dir / "small.png", gradient_image(40, 30));
    ImageLimits limits;
    limits.max_pixels = 1000;
    CHECK_THROWS_CONTAINING(load_rgb(dir / "small.png", limits), "40x30 exceeds the image size limit of 1000 pixels");
    limits = {};
    limits.max_width = 32;
    CHECK_THROWS_CONTAINING(load_rgb(dir / "small.png", limits), "40x30 exceeds the image size limit 32x8192");
    limits = {};
    limits.max_file_bytes = 10;
    CHECK_THROWS_CONTAINING(load_rgb(dir / "small.png", limits), "over the limit of 10");
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("atomic write: no temporary left, failures keep the existing file") {
    TempDir dir;
    const fs::path target = dir / "out.bin";
    write_file_atomically(target, [](FileSink& f) { f.write("first"); });
    CHECK(files_in(dir.path) == std::vector<std::string>{"out.bin"});

    // The writer throws half-way: the old contents survive, the temporary is gone.
    CHECK_THROWS_AS(write_file_atomically(target,
                                          [](FileSink& f) {
                                              f.write("partial");
                                              throw std::runtime_error("writer failed");
                                          }),
                    std::runtime_error);
    CHECK(read_bytes(target) == std::vector<unsigned char>{'f', 'i', 'r', 's', 't'});
    CHECK(files_in(dir.path) == std::vector<std::string>{"out.bin"});

    // The target is a non-empty folder, so the final rename fails (works even as root).
    fs::create_directories(dir / "occupied");
    write_text(dir.path / "occupied" / "keep.txt", "keep");
    CHECK_THROWS_AS(write_file_atomically(dir / "occupied", [](FileSink& f) { f.write("x"); }), DataError);
    CHECK(files_in(dir.path) == std::vector<std::string>{"occupied", "out.bin"});
    CHECK(fs::exists(dir.path / "occupied" / "keep.txt"));

    // The folder does not exist.
    CHECK_THROWS_CONTAINING(write_rgb_png(dir.path / "nope" / "x.png", gradient_image(2, 2)), "does not exist");

    // A failed safetensors write (invalid input) leaves the old model intact.
    const float w[2] = {1.f, 2.f};
    write_safetensors(dir / "m.safetensors", {{"w", {2}, w}});
    const auto before = read_bytes(dir / "m.safetensors");
    CHECK_THROWS_AS(write_safetensors(dir / "m.safetensors", {{"w", {2}, w}, {"w", {2}, w}}), std::invalid_argument);
    CHECK(read_bytes(dir / "m.safetensors") == before);
    CHECK(files_in(dir.path) == std::vector<std::string>{"m.safetensors", "occupied", "out.bin"});
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("dataset: loads, normalises and validates samples") {
    SmallDataset d;
    DatasetOptions opt;
    opt.classes = 3;
    opt.normalization = Normalization::from({0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f});
    const auto ds = SegmentationDataset::from_list_file(d.dir / "list.txt", opt);
    REQUIRE(ds.size() == 2);
    const Sample s = ds.load(1);
    CHECK(s.image.extents() == Extents{1, 3, 4, 6});
    CHECK(s.label.extents() == Extents{1, 1, 4, 6});
    const ImageU8 raw = gradient_image(6, 4);
    CHECK(s.image(0, 1, 2, 3) == doctest::Approx((raw.at(2, 3, 1) / 255.f - 0.5f) / 0.25f));

    const Sample resized = ds.load(0, 8, 12);
    CHECK(resized.image.extents() == Extents{1, 3, 8, 12});
    CHECK(resized.label(0, 0, 7, 11) == s.label(0, 0, 3, 5));

    SegmentationDataset::from_list_file(d.dir / "list.txt", {.classes = 3, .validation = Validation::up_front});
}

TEST_CASE("dataset: errors name the list line, the file and the problem") {
    SmallDataset d;
    // Image and label sizes differ.
    write_label_png(d.dir.path / "labels" / "b.png", label_map(3, 2, 3));
    const auto ds = SegmentationDataset::from_list_file(d.dir / "list.txt", {.classes = 3});
    CHECK_NOTHROW(ds.load(0));
    CHECK_THROWS_CONTAINING(ds.load(1), "list.txt:2: image '");
    CHECK_THROWS_CONTAINING(ds.load(1), "images/b.png' is 6x4 but label '");
    CHECK_THROWS_CONTAINING(ds.load(1), "labels/b.png' is 3x2 (width x height)");
    CHECK_THROWS_AS(SegmentationDataset::from_list_file(d.dir / "list.txt",
                                                        {.classes = 3, .validation = Validation::up_front}),
                    DataError);

    // Label value out of range: 14 at row 2, column 5.
    auto bad = label_map(6, 4, 3);
    bad(0, 0, 2, 5) = 14;
    write_label_png(d.dir.path / "labels" / "b.png", bad);
    CHECK_THROWS_CONTAINING(ds.load(1), "labels/b.png' has value 14 at row 2, column 5; expected 0..2 or 11 (ignore)");
    bad(0, 0, 2, 5) = 11;  // the ignore label is allowed
    write_label_png(d.dir.path / "labels" / "b.png", bad);
    CHECK_NOTHROW(ds.load(1));

    // Corrupt image: the loader's message gains the list line.
    write_text(d.dir.path / "images" / "a.png", "\x89PNG\r\n\x1a\n garbage");
    CHECK_THROWS_CONTAINING(ds.load(0), "list.txt:1: cannot load '");
    CHECK_THROWS_CONTAINING(ds.load(0), "images/a.png': corrupt or truncated PNG");
}

TEST_CASE("normalisation: computed statistics centre the data") {
    const auto ds = make_synthetic_dataset({.count = 4, .height = 16, .width = 16});
    const Normalization n = compute_normalization(ds);
    SegmentationDataset normalised = make_synthetic_dataset({.count = 4, .height = 16, .width = 16},
                                                            {.normalization = n});
    double sum[3] = {}, sum_sq[3] = {};
    double count = 0;
    for (std::size_t i = 0; i < normalised.size(); ++i) {
        const Sample s = normalised.load(i);
        for (int c = 0; c < 3; ++c)
            for (int y = 0; y < 16; ++y)
                for (int x = 0; x < 16; ++x) {
                    sum[c] += s.image(0, c, y, x);
                    sum_sq[c] += double(s.image(0, c, y, x)) * s.image(0, c, y, x);
                }
        count += 256;
    }
    for (int c = 0; c < 3; ++c) {
        CHECK(std::abs(sum[c] / count) < 1e-4);
        CHECK(sum_sq[c] / count == doctest::Approx(1.0).epsilon(1e-3));
    }
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("augmentation: flip, crop with ignore padding, resize") {
    Tensor<Cpu> img({1, 2, 2, 3});
    for (std::int64_t i = 0; i < img.size(); ++i) img[i] = float(i);  // row 0 of channel 0: 0 1 2
    Tensor<Cpu, std::uint8_t> lab({1, 1, 2, 3});
    for (std::int64_t i = 0; i < lab.size(); ++i) lab[i] = std::uint8_t(i);
    flip_horizontal(img.view());
    flip_horizontal(lab.view());
    CHECK(img(0, 0, 0, 0) == 2.f);
    CHECK(img(0, 0, 0, 2) == 0.f);
    CHECK(img(0, 1, 1, 0) == 11.f);
    CHECK(img(0, 0, 0, 1) == 1.f);
    CHECK(lab(0, 0, 1, 0) == 5);
    CHECK(lab(0, 0, 1, 2) == 3);

    // Pad: a 2x3 label placed at (1, 2) in a 4x6 canvas; the rest is ignore.
    const auto padded = crop_or_pad<std::uint8_t>(lab, -1, -2, 4, 6, 255);
    CHECK(padded(0, 0, 0, 0) == 255);
    CHECK(padded(0, 0, 1, 2) == lab(0, 0, 0, 0));
    CHECK(padded(0, 0, 2, 4) == lab(0, 0, 1, 2));
    CHECK(padded(0, 0, 3, 5) == 255);
    const auto cropped = crop_or_pad<float>(img, 1, 1, 1, 2, 0.f);
    CHECK(cropped(0, 1, 0, 1) == img(0, 1, 1, 2));

    // Bilinear on a constant stays constant; nearest 2x upscale repeats values.
    Tensor<Cpu> flat({1, 1, 3, 3});
    flat.fill(7.f);
    const auto big = resize_bilinear(flat, 5, 7);
    CHECK(std::all_of(big.data(), big.data() + big.size(), [](float v) { return v == doctest::Approx(7.f); }));
    const auto up = resize_nearest<std::uint8_t>(lab, 4, 6);
    CHECK(up(0, 0, 3, 5) == lab(0, 0, 1, 2));
    CHECK(up(0, 0, 0, 1) == lab(0, 0, 0, 0));
}

TEST_CASE("augmentation: deterministic for a fixed seed") {
    const auto ds = make_synthetic_dataset({.count = 2, .height = 20, .width = 24}, {.ignore_label = 255});
    const Augmentation aug{.horizontal_flip = true, .min_scale = 0.5f, .max_scale = 1.5f, .crop_height = 16,
                           .crop_width = 16};
    auto run = [&](std::uint64_t seed) {
        Rng rng(seed);
        std::vector<Sample> out;
        for (int k = 0; k < 6; ++k) out.push_back(ds.load_augmented(std::size_t(k % 2), aug, rng));
        return out;
    };
    const auto a = run(5), b = run(5), c = run(6);
    bool differs = false;
    for (std::size_t k = 0; k < a.size(); ++k) {
        REQUIRE(a[k].image.extents() == Extents{1, 3, 16, 16});
        CHECK(std::equal(a[k].image.data(), a[k].image.data() + a[k].image.size(), b[k].image.data()));
        CHECK(std::equal(a[k].label.data(), a[k].label.data() + a[k].label.size(), b[k].label.data()));
        differs |= !std::equal(a[k].image.data(), a[k].image.data() + a[k].image.size(), c[k].image.data());
        for (std::int64_t i = 0; i < a[k].label.size(); ++i) CHECK((a[k].label[i] < 4 || a[k].label[i] == 255));
    }
    CHECK(differs);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("batch loader: every sample once per epoch, reproducible, resumable") {
    const auto ds = make_synthetic_dataset({.count = 10, .height = 8, .width = 8});
    const LoaderOptions opt{.batch_size = 3, .seed = 42, .augmentation = {.horizontal_flip = true}};
    auto collect_epoch = [](BatchLoader& loader) {
        std::vector<std::size_t> seen;
        std::vector<float> pixels;
        while (auto b = loader.next()) {
            CHECK(b->images.n() == int(b->indices.size()));
            CHECK(b->labels.extents() == Extents{b->images.n(), 1, 8, 8});
            seen.insert(seen.end(), b->indices.begin(), b->indices.end());
            pixels.insert(pixels.end(), b->images.data(), b->images.data() + b->images.size());
        }
        return std::make_pair(seen, pixels);
    };
    BatchLoader loader(ds, opt);
    CHECK(loader.batches_per_epoch() == 4);
    const auto [e0, p0] = collect_epoch(loader);
    CHECK(loader.position() == LoaderPosition{1, 0});
    const auto [e1, p1] = collect_epoch(loader);
    for (const auto& e : {e0, e1}) {
        auto sorted = e;
        std::sort(sorted.begin(), sorted.end());
        std::vector<std::size_t> expect(10);
        std::iota(expect.begin(), expect.end(), std::size_t(0));
        CHECK(sorted == expect);
    }
    CHECK(e0 != e1);  // reshuffled
    CHECK(e0 == BatchLoader::epoch_order(10, 42, 0, true));

    // A second loader with the same seed sees the same batches; one resumed mid-epoch too.
    BatchLoader again(ds, opt);
    CHECK(collect_epoch(again).second == p0);
    BatchLoader resumed(ds, opt, {1, 2});
    const auto [r1, rp1] = collect_epoch(resumed);
    CHECK(r1 == std::vector<std::size_t>(e1.begin() + 6, e1.end()));
    CHECK(rp1 == std::vector<float>(p1.begin() + 6 * 3 * 64, p1.end()));

    // drop_last, no shuffle.
    BatchLoader plain(ds, {.batch_size = 4, .shuffle = false, .drop_last = true});
    CHECK(plain.batches_per_epoch() == 2);
    CHECK(collect_epoch(plain).first == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("batch loader: early destruction joins, worker errors reach the consumer") {
    const auto ds = make_synthetic_dataset({.count = 20, .height = 8, .width = 8});
    { BatchLoader never_used(ds, {.batch_size = 2}); }
    {
        BatchLoader one(ds, {.batch_size = 2, .prefetch = 1});
        CHECK(one.next().has_value());
    }  // destructor with a full queue and a blocked worker

    SmallDataset d;
    write_text(d.dir.path / "images" / "b.png", "not an image");
    const auto broken = SegmentationDataset::from_list_file(d.dir / "list.txt", {.classes = 3});
    BatchLoader loader(broken, {.batch_size = 1, .shuffle = false});
    CHECK(loader.next().has_value());  // a.png is fine and delivered first
    CHECK_THROWS_CONTAINING(loader.next(), "images/b.png': not a PNG or JPEG file");
    CHECK_THROWS_AS(loader.next(), DataError);  // and again, instead of hanging

    // Different sizes in one batch without crop or resize.
    SmallDataset mixed;
    write_rgb_png(mixed.dir.path / "images" / "b.png", gradient_image(5, 5));
    write_label_png(mixed.dir.path / "labels" / "b.png", label_map(5, 5, 3));
    const auto mixed_ds = SegmentationDataset::from_list_file(mixed.dir / "list.txt", {.classes = 3});
    BatchLoader mixed_loader(mixed_ds, {.batch_size = 2, .shuffle = false});
    CHECK_THROWS_CONTAINING(mixed_loader.next(), "set a crop or resize size");
    BatchLoader resized(mixed_ds, {.batch_size = 2, .shuffle = false, .resize_height = 4, .resize_width = 4});
    CHECK(resized.next()->images.extents() == Extents{2, 3, 4, 4});
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("safetensors: round trip with metadata") {
    TempDir dir;
    std::vector<float> a(2 * 3 * 2), b = {-1.5f, 0.f, 3.25f};
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f - 2.f;
    const std::map<std::string, std::string> meta{{"arch", "SegNetBasic<11>"}, {"note", "quote \" slash \\ nl \n é"}};
    write_safetensors(dir / "m.safetensors",
                      {{"encoder0.0.weight", {2, 3, 2}, a.data()}, {"b \"q\"", {3}, b.data()}, {"empty", {0, 4}, nullptr},
                       {"scalar", {}, b.data()}},
                      meta);
    CHECK(files_in(dir.path) == std::vector<std::string>{"m.safetensors"});
    const auto bytes = read_bytes(dir / "m.safetensors");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    CHECK((8 + n) % 8 == 0);
    CHECK(bytes[8] == '{');

    const auto f = SafetensorsFile::load(dir / "m.safetensors");
    CHECK(f.metadata() == meta);
    CHECK(f.tensors().size() == 4);
    CHECK(f.read("encoder0.0.weight", {2, 3, 2}) == a);
    CHECK(f.read("b \"q\"") == b);
    CHECK(f.read("empty", {0, 4}).empty());
    CHECK(f.read("scalar", {}) == std::vector<float>{-1.5f});
    std::vector<float> into(3);
    f.read_into("b \"q\"", into, {3});
    CHECK(into == b);
    CHECK(f.info("encoder0.0.weight").shape == std::vector<std::int64_t>{2, 3, 2});
}

namespace {
/// A safetensors file from a raw header and data bytes.
std::vector<unsigned char> safetensors_bytes(const std::string& header, std::size_t data_bytes,
                                             std::int64_t declared_length = -1) {
    std::vector<unsigned char> out(8 + header.size() + data_bytes, 0);
    const std::uint64_t n = declared_length >= 0 ? std::uint64_t(declared_length) : header.size();
    for (std::size_t k = 0; k < 8; ++k) out[k] = static_cast<unsigned char>(n >> (8 * k));
    std::copy(header.begin(), header.end(), out.begin() + 8);
    return out;
}
std::string parse_error(const std::vector<unsigned char>& bytes) {
    return message_of([&] { (void)SafetensorsFile::parse(bytes, "bad.safetensors"); });
}
}  // namespace

TEST_CASE("safetensors: corrupt files are refused with clear messages") {
    TempDir dir;
    const float w[6] = {1, 2, 3, 4, 5, 6};
    write_safetensors(dir / "m.safetensors", {{"w", {2, 3}, w}});
    auto good = read_bytes(dir / "m.safetensors");

    auto truncated = good;
    truncated.resize(truncated.size() - 4);
    write_bytes(dir / "truncated.safetensors", truncated);
    CHECK_THROWS_CONTAINING(SafetensorsFile::load(dir / "truncated.safetensors"),
                            "cannot read safetensors file '");
    CHECK_THROWS_CONTAINING(SafetensorsFile::load(dir / "truncated.safetensors"),
                            "truncated.safetensors': tensor 'w' data_offsets [0, 24] run past the data section (20 bytes)");
    truncated.resize(20);
    CHECK(parse_error(truncated).find("runs past the end of the file") != std::string::npos);
    CHECK(parse_error({1, 2, 3}).find("too short") != std::string::npos);
    CHECK_THROWS_CONTAINING(SafetensorsFile::load(dir / "none.safetensors"), "file not found");

    auto check = [](const std::vector<unsigned char>& bytes, const std::string& expected) {
        const std::string msg = parse_error(bytes);
        INFO("message: " << msg);
        CHECK(msg.rfind("segnet: cannot read safetensors file 'bad.safetensors': ", 0) == 0);
        CHECK(msg.find(expected) != std::string::npos);
    };
    const std::string entry = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
    CHECK(parse_error(safetensors_bytes(entry, 24)) == "<no exception>");
    check(safetensors_bytes(entry, 24, 1000000), "header length 1000000 runs past the end of the file");
    check(safetensors_bytes(entry, 24, 0x7fffffffffffffffll), "runs past the end of the file");
    check(safetensors_bytes(R"({"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})", 12),
          "tensor 'w' has dtype F16; only F32 is supported");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}})", 24),
          "tensor 'w' data_offsets [0, 24] hold 24 bytes, but shape [2, 2] of F32 needs 16");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,8],"data_offsets":[0,24]}})", 24),
          "needs more than the file holds");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}})", 24), "end before begin");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}})", 24),
          "run past the data section (24 bytes)");
    check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                            R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 24),
          "tensors 'a' and 'b' overlap");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,3]}})", 24), "tensor 'w' has no 'data_offsets'");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]}})", 24),
          "shape dimension must be a non-negative integer, got -2");
    check(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,24]}})", 24),
          "non-negative integer, got 2.5");
    check(safetensors_bytes(R"({"__metadata__":{"a":1}})", 0), "__metadata__ value for 'a' must be a string");
    check(safetensors_bytes(R"([1,2])", 0), "the JSON header must be an object, got an array");
    // Invalid JSON of several kinds.
    check(safetensors_bytes(R"({"w":{"dtype":"F32",}})", 24), "invalid JSON header: expected a string key at header byte 20");
    check(safetensors_bytes(R"({"a":1,"a":2})", 0), "duplicate key \"a\"");
    check(safetensors_bytes(R"({"a":"\ud800"})", 0), "unpaired UTF-16 surrogate");
    check(safetensors_bytes("{\"a\":\"\xC0\xAF\"}", 0), "invalid UTF-8");
    check(safetensors_bytes("{\"a\":\"x\ny\"}", 0), "control character in string");
    check(safetensors_bytes(R"({"a":1} x)", 0), "unexpected data after the JSON value");
    check(safetensors_bytes(R"({"a":01})", 0), "expected '}'");
    check(safetensors_bytes(R"({"a":tru})", 0), "unexpected character 't'");
    check(safetensors_bytes(std::string(100000, '['), 0), "nesting deeper than 32 levels");
    check(safetensors_bytes(std::string("{\"a\":\"") + std::string(50, 'x'), 0), "unterminated string");
    // Trailing spaces (the reference writer's padding) are fine.
    CHECK(parse_error(safetensors_bytes(entry + "      ", 24)) == "<no exception>");

    // Missing tensor and shape mismatch when reading.
    const auto f = SafetensorsFile::load(dir / "m.safetensors");
    CHECK_THROWS_CONTAINING(f.read("v"), "m.safetensors': no tensor named 'v'");
    CHECK_THROWS_CONTAINING(f.read("w", {3, 2}), "tensor 'w' has shape [2, 3], expected [3, 2]");
    std::vector<float> small(5);
    CHECK_THROWS_CONTAINING(f.read_into("w", small, {2, 3}), "tensor 'w' has 6 elements, the destination holds 5");
}

TEST_CASE("safetensors: every truncation and single-byte corruption is refused or read safely") {
    const float w[6] = {1, 2, 3, 4, 5, 6};
    TempDir dir;
    write_safetensors(dir / "m.safetensors", {{"w", {2, 3}, w}, {"b", {3}, w}}, {{"k", "v"}});
    const auto good = read_bytes(dir / "m.safetensors");
    int refused = 0;
    for (std::size_t len = 0; len < good.size(); ++len) {
        const std::vector<unsigned char> cut(good.begin(), good.begin() + std::ptrdiff_t(len));
        refused += parse_error(cut) != "<no exception>";
    }
    CHECK(refused == int(good.size()));
    for (std::size_t i = 0; i < good.size(); ++i)
        for (unsigned char v : {0x00, 0x22, 0x5c, 0x7b, 0xff}) {
            auto bad = good;
            bad[i] = v;
            try {
                const auto f = SafetensorsFile::parse(bad, "fuzz");
                for (const auto& t : f.tensors()) (void)f.read(t.name);
            } catch (const DataError&) {
            }
        }
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("synthetic data: deterministic, all classes present, files match memory") {
    const SyntheticOptions opt{.count = 6, .height = 24, .width = 32, .seed = 9};
    const auto a = make_synthetic_samples(opt), b = make_synthetic_samples(opt);
    std::set<int> classes;
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].image.pixels == b[i].image.pixels);
        CHECK(std::equal(a[i].label.data(), a[i].label.data() + a[i].label.size(), b[i].label.data()));
        for (std::int64_t p = 0; p < a[i].label.size(); ++p) classes.insert(a[i].label[p]);
    }
    CHECK(classes == std::set<int>{0, 1, 2, 3});
    // Sample i does not depend on how many are made.
    CHECK(make_synthetic_sample(opt, 4).image.pixels == a[4].image.pixels);
    CHECK(make_synthetic_sample({.count = 6, .height = 24, .width = 32, .seed = 10}, 4).image.pixels != a[4].image.pixels);

    TempDir dir;
    const SampleList list = write_synthetic_dataset(dir.path, opt);
    REQUIRE(list.size() == 6);
    const SegmentationDataset ds(list, {.classes = synthetic_classes, .validation = Validation::up_front});
    const RawSample r = ds.load_raw(3);
    CHECK(r.image.pixels == a[3].image.pixels);
    CHECK(std::equal(r.label.data(), r.label.data() + r.label.size(), a[3].label.data()));
}
