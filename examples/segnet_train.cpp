// segnet-train: the program of include/segnet/programs/train.hpp (see its --help).
#include <segnet/programs/train.hpp>

int main(int argc, char** argv) {
    // --device cuda: hand the run to segnet-train-cuda (the nvcc-built twin) when it is installed next to this.
    segnet::programs::cli::exec_cuda_variant(argc, argv, "segnet-train-cuda");
    // under mpirun -np N: hand the run to segnet-train-mpi (data-parallel) when it is installed next to this.
    segnet::programs::cli::exec_mpi_variant(argc, argv, "segnet-train-mpi");
    return segnet::programs::train_main(argc, argv);
}
