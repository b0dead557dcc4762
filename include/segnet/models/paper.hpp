// segnet/models/paper.hpp: what the SegNet paper reports for a built-in model, declared by the
// model type itself, so that the architecture listing, the tests and the docs read one source.
//
//   struct SegNetBasic : Network<...> {
//       static constexpr std::string_view name = "segnet-basic";
//       static constexpr PaperFigures paper{1'425'000, PaperStorage::multiplier(1)};
//   };
//   static_assert(models::SegNetBasic<11>::paper.parameters == 1'425'000);
#pragma once

#include <cstdint>

namespace segnet::models {

/// The paper's storage multiplier of a model as its Table 1 prints it: a number, "n/a" (the
/// paper's entry for FCN-Basic-NoAddition), or not published.
struct PaperStorage {
    enum class Kind { unpublished, not_applicable, multiplier };
    Kind kind = Kind::unpublished;
    int value = 0;

    static constexpr PaperStorage multiplier(int v) { return {Kind::multiplier, v}; }
    static constexpr PaperStorage not_applicable() { return {Kind::not_applicable, 0}; }
};

/// The paper's figures for a model (Table 1 for the SegNet-Basic variants, rounded there to
/// 0.025M; the text for SegNet). parameters 0: not published.
struct PaperFigures {
    std::int64_t parameters = 0;
    PaperStorage storage{};
};

}  // namespace segnet::models
