// segnet-train-mpi: segnet-train across processes (include/segnet/programs/train.hpp with an
// MpiCommunicator), started by mpirun; `segnet-train` hands itself over to it under
// `mpirun -np N` (N > 1). docs/distributed.md.
#include <segnet/distributed/mpi.hpp>
#include <segnet/programs/train.hpp>

#include <algorithm>
#include <cstdlib>
#include <thread>

int main(int argc, char** argv) {
    segnet::MpiSession mpi(argc, argv);
    segnet::MpiCommunicator world;
    // The ranks on one machine share its cores (--threads overrides it).
    if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
        segnet::set_num_threads(std::max(1, int(std::thread::hardware_concurrency()) / std::max(1, std::atoi(local))));
    return segnet::programs::train_main(argc, argv, &world);
}
