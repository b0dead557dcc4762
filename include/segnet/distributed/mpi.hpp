// segnet/distributed/mpi.hpp: the Communicator (core/communicator.hpp) over MPI, for
// data-parallel training under mpirun (OpenMPI from Debian: libopenmpi-dev, openmpi-bin).
//
//   segnet::MpiSession mpi(argc, argv);           // MPI_Init_thread .. MPI_Finalize
//   segnet::MpiCommunicator world;                // MPI_COMM_WORLD, duplicated
//   o.communicator = &world;                      // train() on every rank
//
// Link with the CMake target segnet::mpi. Gradient buckets are MPI_Iallreduce (sums, in place)
// on one duplicate of MPI_COMM_WORLD, waited together by wait_all(); the synchronized batch
// norm's blocking sums run on a second duplicate (statistics()), so the two never have to be
// ordered against each other. MPI is initialised with MPI_THREAD_FUNNELED: only the thread that
// trains calls MPI (the loader and the kernels' threads never do).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "segnet/core/communicator.hpp"

namespace segnet {

namespace mpi_detail {
inline void check(int code, const char* what) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw std::runtime_error(std::string("segnet: MPI ") + what + " failed: " + std::string(text, std::size_t(length)));
}
}  // namespace mpi_detail

/// The CPU threads each rank of a machine gets: its cores shared by the ranks mpirun started on it
/// (OMPI_COMM_WORLD_LOCAL_SIZE), 0 when mpirun did not say (then the threads stay as they are).
inline int threads_per_local_rank() {
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!local) return 0;
    return std::max(1, int(std::thread::hardware_concurrency()) / std::max(1, std::atoi(local)));
}

/// MPI for the life of a program: MPI_Init_thread (funneled) and MPI_Finalize.
class MpiSession {
public:
    MpiSession(int& argc, char**& argv) {
        int provided = 0;
        mpi_detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    ~MpiSession() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;
};

class MpiCommunicator final : public Communicator {
public:
    /// The ranks of `comm` (duplicated: its own message space, and a second for statistics()).
    explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : MpiCommunicator(comm, true) {
        statistics_.reset(new MpiCommunicator(comm_, false));  // a collective: every rank, here
    }
    ~MpiCommunicator() override {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Comm_free(&comm_);
    }
    MpiCommunicator(const MpiCommunicator&) = delete;
    MpiCommunicator& operator=(const MpiCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void sum(double* values, std::size_t count) override {
        mpi_detail::check(MPI_Allreduce(MPI_IN_PLACE, values, int(count), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
    }
    void start_sum(float* values, std::size_t count) override {
        requests_.push_back(MPI_REQUEST_NULL);
        MPI_Request& request = requests_.back();
        mpi_detail::check(MPI_Iallreduce(MPI_IN_PLACE, values, int(count), MPI_FLOAT, MPI_SUM, comm_, &request),
                          "MPI_Iallreduce");
    }
    void wait_all() override {
        const int code = MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
        requests_.clear();
        mpi_detail::check(code, "MPI_Waitall");
    }
    void progress() override {
        int done = 0;
        if (!requests_.empty())
            mpi_detail::check(MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE),
                              "MPI_Testall");
    }
    void broadcast(void* bytes, std::size_t count, int root) override {
        mpi_detail::check(MPI_Bcast(bytes, int(count), MPI_BYTE, root, comm_), "MPI_Bcast");
    }
    Communicator& statistics() override { return statistics_ ? *statistics_ : *this; }
    [[noreturn]] void abort(int code) override {
        MPI_Abort(comm_, code);
        std::_Exit(code);
    }

private:
    MpiCommunicator(MPI_Comm comm, bool) {
        mpi_detail::check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
    }

    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1;
    std::vector<MPI_Request> requests_;
    std::unique_ptr<MpiCommunicator> statistics_;
};

}  // namespace segnet
