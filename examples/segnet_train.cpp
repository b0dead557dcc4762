// segnet-train: the program of include/segnet/programs/train.hpp (see its --help).
#include <segnet/programs/train.hpp>

int main(int argc, char** argv) { return segnet::programs::train_main(argc, argv); }
