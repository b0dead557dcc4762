// segnet-evaluate-cuda: segnet-evaluate compiled by nvcc, so that --device cuda runs the model on the GPU
// (--device cpu, the default, is the CPU program). See docs/gpu.md.
#include <segnet/programs/evaluate.hpp>

int main(int argc, char** argv) { return segnet::programs::evaluate_main(argc, argv); }
