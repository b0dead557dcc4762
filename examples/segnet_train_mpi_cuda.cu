// segnet-train-mpi-cuda: segnet-train across processes on GPUs, one GPU per rank, gradients summed
// by NCCL (include/segnet/distributed/nccl.hpp), started by mpirun; `segnet-train-mpi --device
// cuda` (and so `mpirun -np N segnet-train --device cuda`) hands itself over to it.
// docs/distributed.md.
#include <segnet/distributed/nccl.hpp>
#include <segnet/programs/train.hpp>

#include <iostream>
#include <optional>

int main(int argc, char** argv) {
    segnet::MpiSession mpi(argc, argv);
    std::optional<segnet::NcclCommunicator> world;
    try {
        world.emplace();  // before any GPU work: selects this rank's GPU
    } catch (const std::exception& e) {
        // No GPU for this rank, or NCCL failed to start: one line per failing rank, then every rank ends.
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        std::cerr << "segnet-train (rank " << rank << "): " << e.what() << "\n";
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    // The loader's threads: the ranks on one machine share its cores (--threads overrides it).
    if (const int threads = segnet::threads_per_local_rank()) segnet::set_num_threads(threads);
    return segnet::programs::train_main(argc, argv, &*world);
}
