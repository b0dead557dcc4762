// segnet-train-cuda: segnet-train compiled by nvcc, so that --device cuda runs the model on the GPU
// (--device cpu, the default, is the CPU program). See docs/gpu.md.
#include <segnet/programs/train.hpp>

int main(int argc, char** argv) { return segnet::programs::train_main(argc, argv); }
