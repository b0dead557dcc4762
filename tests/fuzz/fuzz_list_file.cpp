// libFuzzer target: the CamVid-style list-file parser on hostile text.
//   ./fuzz_list_file corpus-scratch/ tests/fuzz/corpus/list_file/
// Errors must be DataError with a one-line message (no control characters from the input).
#include <segnet/data/list_file.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const segnet::SampleList list = segnet::parse_list(text, "fuzz.txt", "/root-dir");
        for (const auto& e : list.samples)
            if (e.line < 1 || e.image.empty() || e.label.empty()) __builtin_trap();
    } catch (const segnet::DataError& e) {
        const std::string msg = e.what();
        if (msg.find('\n') != std::string::npos || msg.find('\r') != std::string::npos) __builtin_trap();
    }
    return 0;
}
