// The GPU tests' main: lists test cases without a GPU (for doctest_discover_tests); running a
// case without a CUDA device prints the reason and exits 77, which CTest reports as Skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    bool listing = false;
    for (int i = 1; i < argc; ++i)
        if (std::strstr(argv[i], "-list") || std::strncmp(argv[i], "-l", 2) == 0 || std::strstr(argv[i], "help"))
            listing = true;
    if (!listing) {
        int n = 0;
        const cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess || n == 0) {
            std::printf("no CUDA device: skipped (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
            return 77;
        }
    }
    doctest::Context context(argc, argv);
    return context.run();
}
