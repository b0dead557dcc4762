// segnet/core/communicator.hpp: what data-parallel training needs from a group of processes,
// with no transport named: sums across ranks (blocking for a few numbers, started and waited
// for gradient buckets), a broadcast, and a last-resort abort.
//
//   segnet::MpiCommunicator world;                     // distributed/mpi.hpp (MPI)
//   segnet::TrainOptions o{..., .communicator = &world};
//   segnet::train(model, o, train_set, &val_set);      // one rank's share of every batch
//
// The core, the layers and the trainer see only this interface, so the single-process build
// includes no MPI header; distributed/ holds the implementations. Every rank must make the same
// calls in the same order (as MPI's collectives). A synchronized batch norm sums its statistics
// on statistics(), a second channel, so that its blocking sums may run while gradient buckets
// are in flight on this one. start_sum() takes host memory (MpiCommunicator) or device memory
// (NcclCommunicator, distributed/nccl.hpp), as sums_device_memory() says; sum(), broadcast() and
// the statistics channel always take host memory.
#pragma once

#include <cstddef>

namespace segnet {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;

    /// Replaces values[0..count) on every rank by their sum over the ranks (blocking).
    virtual void sum(double* values, std::size_t count) = 0;
    /// Whether start_sum() takes device (GPU) memory rather than host memory: DataParallel<Device>
    /// requires a communicator whose memory is its model's (host for Cpu, device for Cuda).
    virtual bool sums_device_memory() const { return false; }
    /// Starts summing floats in place across the ranks; the values are final after wait_all().
    virtual void start_sum(float* values, std::size_t count) = 0;
    /// Waits for every sum start_sum() started.
    virtual void wait_all() = 0;
    /// Lets started sums advance without waiting (MPI moves a non-blocking collective on only
    /// inside MPI calls); called between layers of backward.
    virtual void progress() {}
    /// Copies root's bytes (or floats) to every rank.
    virtual void broadcast(void* bytes, std::size_t count, int root) = 0;
    /// The channel a synchronized batch norm sums its statistics on (same ranks, own ordering).
    virtual Communicator& statistics() = 0;
    /// Ends every rank's process with `code` (after a failure the ranks could not agree on).
    [[noreturn]] virtual void abort(int code) = 0;
};

}  // namespace segnet
