// libFuzzer target: the safetensors reader and checkpoint metadata on hostile bytes.
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I include fuzz_safetensors.cpp
//   ./fuzz_safetensors corpus-scratch/ tests/fuzz/corpus/safetensors/ -dict=tests/fuzz/safetensors.dict
// Any input may be refused with segnet::DataError; anything else (a crash, a sanitizer report,
// another exception type, an allocation beyond the limits) is a bug.
#include <segnet/train/checkpoint.hpp>
#include <segnet/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    segnet::SafetensorsLimits limits;
    limits.max_json_values = 1 << 14;  // the real default is larger; smaller keeps iterations fast
    try {
        const auto f = segnet::SafetensorsFile::parse(std::vector<unsigned char>(data, data + size), "fuzz", limits);
        for (const auto& t : f.tensors()) {
            const std::vector<float> v = f.read(t.name);
            if (v.size() != t.elements()) __builtin_trap();
            (void)f.read(t.name, t.shape);
        }
        (void)segnet::checkpoint_info_from(f);
    } catch (const segnet::DataError&) {
    }
    return 0;
}
