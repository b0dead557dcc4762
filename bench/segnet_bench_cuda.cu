// segnet-bench-cuda: segnet-bench compiled by nvcc, so that --device cuda (its default) times
// Model<Net, Cuda>; `segnet-bench --device cuda` runs this program. See docs/gpu.md.
#include "segnet_bench.cpp"
