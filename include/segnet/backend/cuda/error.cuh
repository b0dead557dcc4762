// segnet/backend/cuda/error.cuh: every CUDA failure becomes a segnet::backend::cuda::CudaError naming the
// call that failed (the expression text, file and line) and the runtime's own message.
//
//   SEGNET_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
//   SEGNET_CUDA_LAUNCH(relu_kernel<<<blocks, threads, 0, stream>>>(x, y, n));   // checks the launch
//   try { ... } catch (const segnet::backend::cuda::CudaError& e) { std::cerr << e.what(); }
//
// cuDNN failures use SEGNET_CUDNN_CHECK, defined with the other cuDNN code in cudnn_adapter.cuh.
// Compiled by nvcc only (the CUDA backend is never seen by CPU-only translation units).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace segnet::backend::cuda {

/// A failed CUDA runtime or cuDNN call: what() says which call, where, and why.
class CudaError : public std::runtime_error {
public:
    CudaError(const std::string& call, const std::string& reason, const char* file, int line)
        : std::runtime_error("segnet CUDA: " + call + " failed: " + reason + " (" + file + ":" + std::to_string(line) +
                             ")"),
          call_(call) {}
    /// The expression that failed, e.g. "cudaMalloc(&p, bytes)".
    const std::string& call() const { return call_; }

private:
    std::string call_;
};

namespace detail {
inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
    if (status == cudaSuccess) return;
    throw CudaError(call, std::string(cudaGetErrorString(status)) + " [" + cudaGetErrorName(status) + "]", file, line);
}
}  // namespace detail

}  // namespace segnet::backend::cuda

/// Kernels in these headers have internal linkage, so that every translation unit that includes
/// them may define them (header-only) without duplicate symbols at link time.
#define SEGNET_KERNEL static __global__

#define SEGNET_CUDA_CHECK(expr) ::segnet::backend::cuda::detail::check_cuda((expr), #expr, __FILE__, __LINE__)
/// Launches a kernel and turns a launch failure (bad configuration, no device) into a CudaError
/// naming the launch. Errors inside the kernel surface at the next synchronising call.
#define SEGNET_CUDA_LAUNCH(...)                                                                          \
    do {                                                                                                 \
        __VA_ARGS__;                                                                                     \
        ::segnet::backend::cuda::detail::check_cuda(cudaGetLastError(), #__VA_ARGS__, __FILE__, __LINE__); \
    } while (0)
