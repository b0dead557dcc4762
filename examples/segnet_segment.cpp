// segnet-segment: the program of include/segnet/programs/segment.hpp (see its --help).
#include <segnet/programs/segment.hpp>

int main(int argc, char** argv) { return segnet::programs::segment_main(argc, argv); }
