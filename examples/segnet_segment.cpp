// segnet-segment: the program of include/segnet/programs/segment.hpp (see its --help).
#include <segnet/programs/segment.hpp>

int main(int argc, char** argv) {
    // --device cuda: hand the run to segnet-segment-cuda (the nvcc-built twin) when it is installed next to this.
    segnet::programs::cli::exec_cuda_variant(argc, argv, "segnet-segment-cuda");
    return segnet::programs::segment_main(argc, argv);
}
