// segnet-serve: the program of include/segnet/programs/serve.hpp (see its --help).
#include <segnet/programs/serve.hpp>

#include "segnet_serve_samples.hpp"  // generated: data/camvid/val's images as byte arrays (cmake/EmbedFiles.cmake)

int main(int argc, char** argv) { return segnet::programs::serve_main(argc, argv, serve_samples); }
