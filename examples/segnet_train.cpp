// segnet-train: the program of include/segnet/programs/train.hpp (see its --help).
#include <segnet/programs/train.hpp>

int main(int argc, char** argv) {
    // under mpirun -np N: hand the run to segnet-train-mpi (data-parallel) when it is installed next to this
    // (first: with --device cuda it hands the run on to segnet-train-mpi-cuda, NCCL).
    segnet::programs::cli::exec_mpi_variant(argc, argv, "segnet-train-mpi");
    // --device cuda: hand the run to segnet-train-cuda (the nvcc-built twin) when it is installed next to this.
    segnet::programs::cli::exec_cuda_variant(argc, argv, "segnet-train-cuda");
    return segnet::programs::train_main(argc, argv);
}
