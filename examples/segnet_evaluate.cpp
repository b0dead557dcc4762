// segnet-evaluate: the program of include/segnet/programs/evaluate.hpp (see its --help).
#include <segnet/programs/evaluate.hpp>

int main(int argc, char** argv) {
    // --device cuda: hand the run to segnet-evaluate-cuda (the nvcc-built twin) when it is installed next to this.
    segnet::programs::cli::exec_cuda_variant(argc, argv, "segnet-evaluate-cuda");
    return segnet::programs::evaluate_main(argc, argv);
}
