// segnet/core/cancel.hpp: cooperative cancellation of a network run (CancelToken, Cancelled).
//
//   CancelToken token(std::chrono::steady_clock::now() + std::chrono::seconds(30));  // a deadline
//   model.set_cancel_token(&token);     // every forward checks it between layers
//   try { model.forward(x); } catch (const Cancelled&) { /* past the deadline, or token.cancel() */ }
//   model.set_cancel_token(nullptr);    // the model is usable again as it was
//
// Cooperative: a run is never interrupted inside a kernel (the CPU thread pool's parallel_for
// always finishes its loop), only between the steps that check the token, so a cancelled run
// leaves the model's buffers and the thread pool as a finished one would. Who checks: the
// model's eval and train forwards before each layer (AnyModel::set_cancel_token) and
// monte_carlo_predict before each batch of samples. A run's cut-off therefore comes at most one
// layer (or one fused step) after the token is cancelled.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

namespace segnet {

/// What a run checking a cancelled CancelToken throws; the model that threw is reusable.
class Cancelled : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A request to stop a run: cancel() from any thread, or a deadline that passes. Thread-safe:
/// one thread may cancel while another runs the network and checks.
class CancelToken {
public:
    using clock = std::chrono::steady_clock;

    /// Cancelled only by cancel().
    CancelToken() = default;
    /// Cancelled by cancel() or once `deadline` has passed.
    explicit CancelToken(clock::time_point deadline) : deadline_(deadline) {}
    CancelToken(const CancelToken&) = delete;
    CancelToken& operator=(const CancelToken&) = delete;

    void cancel() noexcept { requested_.store(true, std::memory_order_relaxed); }

    bool cancelled() const noexcept {
        return requested_.load(std::memory_order_relaxed) || (deadline_ && clock::now() >= *deadline_);
    }

    /// Throws Cancelled when cancelled(); `where` names the run in the message.
    void throw_if_cancelled(const char* where) const {
        if (!cancelled())
            return;
        throw Cancelled(std::string("segnet: ") + where + (requested_.load(std::memory_order_relaxed)
                                                               ? " cancelled"
                                                               : " cut short at its deadline"));
    }

private:
    std::atomic<bool> requested_{false};
    std::optional<clock::time_point> deadline_;
};

}  // namespace segnet
