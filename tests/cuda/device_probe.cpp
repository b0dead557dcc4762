// cuda_device_probe: exits 0 when a CUDA device is visible, else prints why and exits 77 (CTest's
// Skipped). Compiled by g++ against the CUDA runtime: the GPU program tests run it first.
#include <cuda_runtime.h>

#include <cstdio>

int main() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        std::printf("no CUDA device: skipped (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) std::printf("CUDA device 0: %s\n", p.name);
    return 0;
}
