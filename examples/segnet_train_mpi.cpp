// segnet-train-mpi: segnet-train across processes (include/segnet/programs/train.hpp with an
// MpiCommunicator), started by mpirun; `segnet-train` hands itself over to it under
// `mpirun -np N` (N > 1), and it hands --device cuda to segnet-train-mpi-cuda (NCCL, one GPU per
// rank) when that sits next to it. docs/distributed.md.
#include <segnet/distributed/mpi.hpp>
#include <segnet/programs/train.hpp>

int main(int argc, char** argv) {
    segnet::programs::cli::exec_cuda_variant(argc, argv, "segnet-train-mpi-cuda");
    segnet::MpiSession mpi(argc, argv);
    segnet::MpiCommunicator world;
    // The ranks on one machine share its cores (--threads overrides it).
    if (const int threads = segnet::threads_per_local_rank()) segnet::set_num_threads(threads);
    return segnet::programs::train_main(argc, argv, &world);
}
