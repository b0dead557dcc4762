// segnet-export: the program of include/segnet/programs/export.hpp (see its --help).
#include <segnet/programs/export.hpp>

int main(int argc, char** argv) { return segnet::programs::export_main(argc, argv); }
