// Data-parallel training on GPUs (distributed/nccl.hpp, DataParallel<Cuda>), run by CTest as
// `mpirun -np 2 --oversubscribe test_nccl`, one GPU per rank. With fewer than 2 visible CUDA
// devices every rank prints why and exits 77 before MPI starts (CTest: Skipped); built wherever
// CUDA, MPI and NCCL are found, so the NCCL path is compiled and linked even where it cannot run.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <segnet/distributed/nccl.hpp>
#include <segnet/segnet.hpp>
#include <segnet/train/data_parallel.hpp>

#include "../tiny_training.hpp"
#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

using namespace segnet;
using testing_support::run_tests_on_every_rank;
using testing_support::max_relative_difference;
using testing_support::TinyNet;

namespace {

NcclCommunicator* world = nullptr;

// The tensors `member` names (&ParamRef::value or ::grad) of `params`, one after another, on the host.
std::vector<float> host_copy(const std::vector<ParamRef<Cuda>>& params, Tensor<Cuda>* ParamRef<Cuda>::*member) {
    std::vector<float> v;
    for (const auto& p : params) {
        const std::vector<float> t = backend::download(*(p.*member));
        v.insert(v.end(), t.begin(), t.end());
    }
    return v;
}
std::vector<float> gradients_of(AnyModel<Cuda>& m) { return host_copy(m.parameters(), &ParamRef<Cuda>::grad); }
std::vector<float> state_of(AnyModel<Cuda>& m) { return host_copy(m.state(), &ParamRef<Cuda>::value); }

// One forward and backward of this rank's own input (depends on the rank) with a fixed output gradient.
void backward_own_share(AnyModel<Cuda>& m) {
    Rng rng(11 + std::uint64_t(world->rank()));
    std::vector<float> x(2 * 3 * 16 * 16);
    for (float& v : x) v = rng.uniform(-1.f, 1.f);
    Tensor<Cuda> images({2, 3, 16, 16});
    backend::upload(x, images);
    const Tensor<Cuda>& logits = m.forward(images, Mode::train);
    std::vector<float> dy(std::size_t(logits.size()));
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = rng.uniform(-1.f, 1.f);
    Tensor<Cuda> grad(logits.extents());
    backend::upload(dy, grad);
    m.zero_grad();
    m.backward(grad);
}

}  // namespace

TEST_CASE("nccl: start_sum sums device buffers of every rank, in place, bucket by bucket") {
    const std::size_t n = 1000;
    std::vector<float> mine(2 * n);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = float(world->rank() + 1) * float(i % 97);
    Tensor<Cuda> buckets({1, 1, 1, int(2 * n)});
    backend::upload(mine, buckets);  // queued on the compute stream: start_sum must wait for it
    world->start_sum(buckets.data(), n);
    world->start_sum(buckets.data() + n, n);
    world->wait_all();
    const std::vector<float> summed = backend::download(buckets);
    const float ranks_sum = float(world->size() * (world->size() + 1) / 2);  // 1 + 2 + ... + size
    for (std::size_t i = 0; i < summed.size(); ++i) REQUIRE(summed[i] == ranks_sum * float(i % 97));
}

TEST_CASE("DataParallel<Cuda>: rank 0's state is broadcast and the gradients are the ranks' sum") {
    Model<TinyNet, Cuda> m(world->rank() == 0 ? 3 : 100);  // rank 1 starts elsewhere
    std::vector<float> rank0_state = state_of(m);
    world->broadcast(rank0_state.data(), rank0_state.size() * sizeof(float), 0);

    {
        DataParallel<Cuda> dp(m, *world);
        dp.broadcast_state();
    }
    CHECK(state_of(m) == rank0_state);

    // The reference: this rank's gradients alone (no DataParallel), summed on the host.
    backward_own_share(m);
    const std::vector<float> own = gradients_of(m);
    std::vector<double> expected(own.begin(), own.end());
    world->sum(expected.data(), expected.size());

    DataParallel<Cuda> dp(m, *world, {.bucket_bytes = 4096});
    REQUIRE(dp.buckets() > 1);
    backward_own_share(m);  // the same share: the same gradients, now in buckets summed by NCCL
    dp.finish_gradients(0);
    CHECK(max_relative_difference(gradients_of(m), std::vector<float>(expected.begin(), expected.end())) <= 1e-5);
}

TEST_CASE("DataParallel<Cuda> refuses a communicator that sums host memory") {
    MpiCommunicator host;
    Model<TinyNet, Cuda> m(3);
    CHECK_THROWS_WITH_AS(DataParallel<Cuda>(m, host), doctest::Contains("needs a communicator that sums device memory"),
                         std::invalid_argument);
}

int main(int argc, char** argv) {
    const int devices = backend::cuda::device_count();
    if (devices < 2) {
        std::printf("test_nccl: %d CUDA device(s) visible, 2 needed (one per rank): skipped\n", devices);
        return 77;
    }
    MpiSession mpi(argc, argv);
    NcclCommunicator communicator;
    world = &communicator;
    if (communicator.size() != 2) {
        std::fprintf(stderr, "test_nccl: run it with mpirun -np 2 (got %d ranks)\n", communicator.size());
        return 1;
    }
    return run_tests_on_every_rank(communicator, argc, argv);
}
