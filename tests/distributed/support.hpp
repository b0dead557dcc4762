// What the distributed tests (tests/distributed: MPI, NCCL) share: the doctest run on every rank
// and the comparison of weights or gradients with a reference.
#pragma once

#include <doctest/doctest.h>

#include <segnet/core/communicator.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace segnet::testing_support {

/// The largest difference relative to max(1, |reference|).
inline double max_relative_difference(const std::vector<float>& a, const std::vector<float>& reference) {
    REQUIRE(a.size() == reference.size());
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        worst = std::max(worst, std::abs(double(a[i]) - reference[i]) / std::max(1.0, std::abs(double(reference[i]))));
    return worst;
}

/// Runs every test case on every rank; only rank 0 reports, and every rank's failure shows in
/// every rank's exit status.
inline int run_tests_on_every_rank(Communicator& ranks, int argc, char** argv) {
    doctest::Context context(argc, argv);
    if (ranks.rank() != 0) context.setOption("out", "/dev/null");
    double any_failed = context.run() != 0 ? 1 : 0;
    ranks.sum(&any_failed, 1);
    return any_failed > 0 ? 1 : 0;
}

}  // namespace segnet::testing_support
