// segnet-evaluate: the program of include/segnet/programs/evaluate.hpp (see its --help).
#include <segnet/programs/evaluate.hpp>

int main(int argc, char** argv) { return segnet::programs::evaluate_main(argc, argv); }
