// segnet/distributed/nccl.hpp: the Communicator (core/communicator.hpp) for data-parallel training
// on GPUs: gradient buckets in device memory summed by NCCL, one GPU per rank, started by mpirun.
//
//   segnet::MpiSession mpi(argc, argv);           // MPI_Init_thread .. MPI_Finalize
//   segnet::NcclCommunicator world;               // selects this rank's GPU, then NCCL over MPI_COMM_WORLD
//   Model<Net, Cuda> model(seed);                 // after the communicator: on this rank's GPU
//   o.communicator = &world;                      // train() on every rank
//
// Compiled by nvcc (it names the CUDA backend's stream); link the CMake target segnet::nccl.
// MPI only bootstraps and carries the small blocking host traffic: rank 0's ncclUniqueId is
// broadcast over MPI, and sum() (a few doubles per step), broadcast() (host bytes) and
// statistics() are those of an MpiCommunicator this one holds. start_sum() is ncclAllReduce
// (float, sum, in place) on DEVICE pointers, on a stream of its own that first waits (a CUDA
// event) for the backend's compute stream, so a bucket is summed once the backward kernels that
// wrote it (and the copies that packed it) are done, while later backward kernels run on.
// wait_all() waits for that stream, polling ncclCommGetAsyncError, so a failed peer or network
// becomes an exception naming the call instead of a hang.
//
// One GPU per rank: the rank's device is its rank among the ranks on its machine (an
// MPI_Comm_split_type shared-memory communicator), so start at most as many ranks per machine as
// it has visible GPUs. The communicator must be built before anything touches the GPU: the CUDA
// backend's context (backend/cuda/device.cuh) takes the device current when it is first used.
#pragma once

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <thread>

#include "segnet/backend/cuda/device.cuh"
#include "segnet/core/communicator.hpp"
#include "segnet/distributed/mpi.hpp"

namespace segnet {

namespace nccl_detail {
/// A failed NCCL call: its name, NCCL's message and, where NCCL has one, its last error's detail.
inline void check(ncclResult_t code, const char* call, ncclComm_t comm = nullptr) {
    if (code == ncclSuccess) return;
    std::string message = std::string("segnet: NCCL ") + call + " failed: " + ncclGetErrorString(code);
    if (const char* detail = ncclGetLastError(comm); detail && *detail) message += std::string(" (") + detail + ")";
    throw std::runtime_error(message);
}

/// This process's rank among the ranks of `comm` on its machine (its GPU's index).
inline int local_rank(MPI_Comm comm) {
    int rank = 0, local = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm node = MPI_COMM_NULL;
    mpi_detail::check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
                      "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    return local;
}
}  // namespace nccl_detail

class NcclCommunicator final : public Communicator {
public:
    /// The ranks of `comm`, one GPU each (every rank of `comm` constructs it: a collective).
    explicit NcclCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : host_(comm) {
        device_ = nccl_detail::local_rank(comm);
        const int visible = backend::cuda::device_count();
        if (device_ >= visible)
            throw std::runtime_error("segnet: NcclCommunicator: rank " + std::to_string(host_.rank()) + " is rank " +
                                     std::to_string(device_) + " on its machine, which has " + std::to_string(visible) +
                                     " visible CUDA device(s): one GPU per rank (start at most that many ranks per "
                                     "machine, or check CUDA_VISIBLE_DEVICES)");
        SEGNET_CUDA_CHECK(cudaSetDevice(device_));
        if (backend::cuda::Context::get().device() != device_)
            throw std::runtime_error("segnet: NcclCommunicator: the CUDA backend already runs on device " +
                                     std::to_string(backend::cuda::Context::get().device()) + ", not this rank's device " +
                                     std::to_string(device_) + ": construct the communicator before any GPU work");
        ncclUniqueId id{};
        if (host_.rank() == 0) nccl_detail::check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        host_.broadcast(&id, sizeof id, 0);
        nccl_detail::check(ncclCommInitRank(&nccl_, host_.size(), id, host_.rank()), "ncclCommInitRank");
        SEGNET_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        SEGNET_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
    }
    ~NcclCommunicator() override {
        if (stream_) (void)cudaStreamSynchronize(stream_);
        if (nccl_) (void)ncclCommDestroy(nccl_);
        if (compute_done_) (void)cudaEventDestroy(compute_done_);
        if (stream_) (void)cudaStreamDestroy(stream_);
    }
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const override { return host_.rank(); }
    int size() const override { return host_.size(); }
    /// The CUDA device this rank runs on (its rank on its machine).
    int device() const { return device_; }
    /// The stream the sums run on (the tests wait on it).
    cudaStream_t stream() const { return stream_; }

    bool sums_device_memory() const override { return true; }
    /// `values` is device memory of this rank's GPU, written by work queued on the backend's stream.
    void start_sum(float* values, std::size_t count) override {
        SEGNET_CUDA_CHECK(cudaEventRecord(compute_done_, backend::cuda::stream()));
        SEGNET_CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_done_, 0));
        nccl_detail::check(ncclAllReduce(values, values, count, ncclFloat, ncclSum, nccl_, stream_), "ncclAllReduce",
                           nccl_);
    }
    void wait_all() override {
        // Polled rather than cudaStreamSynchronize: a peer that died leaves the sum unfinished
        // forever, which only the communicator's asynchronous error reports.
        for (;;) {
            const cudaError_t state = cudaStreamQuery(stream_);
            if (state == cudaSuccess) break;
            if (state != cudaErrorNotReady) SEGNET_CUDA_CHECK(state);
            ncclResult_t async = ncclSuccess;
            nccl_detail::check(ncclCommGetAsyncError(nccl_, &async), "ncclCommGetAsyncError", nccl_);
            if (async != ncclSuccess && async != ncclInProgress) {
                (void)ncclCommAbort(nccl_);
                nccl_ = nullptr;
                nccl_detail::check(async, "ncclAllReduce (asynchronous error)");
            }
            std::this_thread::yield();
        }
        ncclResult_t async = ncclSuccess;
        nccl_detail::check(ncclCommGetAsyncError(nccl_, &async), "ncclCommGetAsyncError", nccl_);
        nccl_detail::check(async, "ncclAllReduce (asynchronous error)", nccl_);
    }
    /// Host memory, over MPI (a few numbers per step; the initial state, once).
    void sum(double* values, std::size_t count) override { host_.sum(values, count); }
    void broadcast(void* bytes, std::size_t count, int root) override { host_.broadcast(bytes, count, root); }
    /// Host memory, over MPI: the synchronized batch norm's channel (CPU only, so unused on GPUs).
    Communicator& statistics() override { return host_.statistics(); }
    [[noreturn]] void abort(int code) override {
        if (nccl_) (void)ncclCommAbort(nccl_);
        host_.abort(code);
    }

private:
    MpiCommunicator host_;
    int device_ = 0;
    ncclComm_t nccl_ = nullptr;
    cudaStream_t stream_ = nullptr;
    cudaEvent_t compute_done_ = nullptr;
};

}  // namespace segnet
