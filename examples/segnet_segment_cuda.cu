// segnet-segment-cuda: segnet-segment compiled by nvcc, so that --device cuda runs the model on the GPU
// (--device cpu, the default, is the CPU program). See docs/gpu.md.
#include <segnet/programs/segment.hpp>

int main(int argc, char** argv) { return segnet::programs::segment_main(argc, argv); }
