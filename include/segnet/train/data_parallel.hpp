// segnet/train/data_parallel.hpp: one model trained by several processes (ranks), each on its
// share of every batch, the way PyTorch DDP and Horovod do it: the gradients are summed across
// ranks in buckets that start while backward is still running, so every rank's optimiser makes
// the same step. The trainer uses it when TrainOptions::communicator is set.
//
//   DataParallel<Cpu> dp(model, communicator, {.synchronized_batch_norm = true});
//   dp.broadcast_state();                         // every rank starts from rank 0's weights
//   StepAgreement a = agree_step(communicator, weight_sum, stop, failure);  // one small sum per step
//   model.forward(...); loss with batch_weight_sum = a.weight_sum; model.backward(...);
//                                                 // (a rank with no images: dp.contribute_nothing())
//   double whole = dp.finish_gradients(share);    // waits for the buckets, writes the sums back
//
// The gradient of the whole batch is the sum of the ranks' gradients when every rank's loss is
// divided by the whole batch's weight sum (CrossEntropyOptions::batch_weight_sum), so buckets
// are plain sums and a rank with more or fewer images counts as much as its images do.
// Buckets hold the parameters in backward order (the classifier first), about
// bucket_bytes each; a bucket starts once backward has passed the first layer it holds
// (AnyModel::set_backward_observer), and the started sums are moved on after every later layer
// (Communicator::progress). Batch norm: each rank's own statistics by default (as DDP);
// synchronized_batch_norm sums them across ranks (layers/batch_norm.hpp, CPU only), so N ranks
// compute what one process computes on the whole batch. The buckets live in the model's memory:
// host memory summed by an MpiCommunicator for a Cpu model, device memory summed by an
// NcclCommunicator (distributed/nccl.hpp) for a Cuda model (Communicator::sums_device_memory
// must match; anything else is refused). The broadcast of the initial state and the averages of
// the running statistics go through host memory on every device (once, or once per validation).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "segnet/compose/any_model.hpp"
#include "segnet/core/communicator.hpp"
#include "segnet/io/files.hpp"
#include "segnet/layers/batch_norm.hpp"

namespace segnet {

struct DataParallelOptions {
    bool synchronized_batch_norm = false;
    std::size_t bucket_bytes = std::size_t(25) << 20;  ///< gradient bytes per all-reduce (DDP's 25 MB)
};

/// Every rank throws it together, with the message of the lowest rank that failed (e.g. a bad
/// file): a program prints it on rank 0 alone.
struct RanksStopped : DataError {
    using DataError::DataError;
};

/// What the ranks agreed on before a step: the whole batch's loss weight, and whether any rank
/// asked to stop.
struct StepAgreement {
    double weight_sum = 0;
    bool stop = false;
};

/// One small sum across ranks: this rank's loss weight, its stop request and its failure (empty:
/// none). Every rank gets the same answer, or throws RanksStopped with the failing rank's message.
inline StepAgreement agree_step(Communicator& comm, double weight_sum, bool stop, const std::string& failure) {
    const std::size_t ranks = std::size_t(comm.size());
    std::vector<double> v(2 + ranks, 0.0);
    v[0] = weight_sum;
    v[1] = stop ? 1 : 0;
    v[2 + std::size_t(comm.rank())] = failure.empty() ? 0 : 1;
    comm.sum(v.data(), v.size());
    for (std::size_t r = 0; r < ranks; ++r) {
        if (v[2 + r] == 0) continue;
        const int from = int(r);
        double length = comm.rank() == from ? double(failure.size()) : 0;
        comm.broadcast(&length, sizeof length, from);
        std::string text = comm.rank() == from ? failure : std::string(std::size_t(length), ' ');
        comm.broadcast(text.data(), text.size(), from);
        throw RanksStopped(text);
    }
    return {v[0], v[1] > 0};
}

/// Runs `work` on every rank; when it throws on any, every rank throws RanksStopped with the
/// lowest failing rank's message (so that no rank waits for one that left).
template <class F>
void on_every_rank(Communicator& comm, F&& work) {
    std::string failure;
    try {
        work();
    } catch (const std::exception& e) {
        failure = e.what();
    }
    agree_step(comm, 0, false, failure);
}

template <class Device>
class DataParallel {
public:
    DataParallel(AnyModel<Device>& model, Communicator& communicator, DataParallelOptions options = {})
        : model_(model), comm_(communicator) {
        constexpr bool on_device = !std::is_same_v<Device, Cpu>;
        if (comm_.sums_device_memory() != on_device)
            throw std::invalid_argument(
                on_device ? std::string("segnet: data-parallel training of a model on ") + Device::name +
                                " needs a communicator that sums device memory (NcclCommunicator, "
                                "distributed/nccl.hpp); this one sums host memory (e.g. MpiCommunicator)"
                          : std::string("segnet: data-parallel training of a model on the CPU needs a communicator "
                                        "that sums host memory (MpiCommunicator); this one sums device memory"));
        auto& nodes = model_.layers();
        // Buckets in backward order: from the last node's parameters to the first's.
        Bucket open;
        for (std::size_t i = nodes.size(); i-- > 0;) {
            std::vector<ParamRef<Device>> params;
            nodes[i].layer->collect(params, nodes[i].prefix);
            for (const auto& p : params) {
                if (!p.trainable()) continue;
                open.params.push_back(p);
                open.elements += std::size_t(p.grad->size());
                open.ready_after = i;
            }
            if (!open.params.empty() && open.elements * sizeof(float) >= options.bucket_bytes) {
                buckets_.push_back(std::move(open));
                open = {};
            }
            if (options.synchronized_batch_norm)
                if (auto* bn = dynamic_cast<BatchNormLayer<Device>*>(nodes[i].layer.get())) {
                    bn->synchronize(&comm_.statistics());
                    synced_.insert(synced_.begin(), bn);  // forward order
                }
        }
        if (!open.params.empty()) buckets_.push_back(std::move(open));
        for (auto& b : buckets_) b.values.resize({1, 1, 1, int(b.elements)});
        model_.set_backward_observer([this](std::size_t node) { on_backward(node); });
    }
    ~DataParallel() {
        model_.set_backward_observer({});
        for (auto* bn : synced_) bn->synchronize(nullptr);
    }
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    int rank() const { return comm_.rank(); }
    int size() const { return comm_.size(); }
    std::size_t buckets() const { return buckets_.size(); }

    /// Every tensor of the model (weights, batch-norm statistics) as rank 0 has it.
    void broadcast_state() {
        for (auto& p : model_.state()) {
            std::vector<float> v = backend::download(*p.value);
            comm_.broadcast(v.data(), v.size() * sizeof(float), 0);
            backend::upload(v, *p.value);
        }
    }

    /// A rank whose share of the batch is empty (a last batch smaller than the ranks) takes part
    /// in what the others' forward and backward sum: the synchronized batch norms' statistics,
    /// then every bucket, with nothing of its own.
    void contribute_nothing() {
        for (auto* bn : synced_) {
            empty_.resize({0, 1, 1, 1});
            bn->forward(empty_, Mode::train);
        }
        for (auto it = synced_.rbegin(); it != synced_.rend(); ++it) (*it)->backward(empty_);
        model_.zero_grad();
        on_backward(0);
    }

    /// Waits for every bucket and writes the sums back into the gradients; adds `loss` (this rank's
    /// share) over the ranks and returns the whole batch's loss.
    double finish_gradients(double loss) {
        const auto start = std::chrono::steady_clock::now();
        if (next_bucket_ != buckets_.size())
            throw std::logic_error("segnet::DataParallel: backward did not reach every layer");
        comm_.wait_all();
        wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (auto& b : buckets_) {
            std::size_t at = 0;
            for (auto& p : b.params) {
                backend::copy_from_flat(b.values.data() + at, *p.grad);
                at += std::size_t(p.grad->size());
            }
        }
        next_bucket_ = 0;
        comm_.sum(&loss, 1);
        ++steps_;
        return loss;
    }

    /// Per-rank batch norm: the ranks' running statistics differ (each saw its own share); their
    /// average, on every rank, before validation and before a checkpoint is written.
    void average_running_statistics() {
        if (!synced_.empty()) return;  // synchronized: already the same on every rank
        for (auto& p : model_.state()) {
            if (p.trainable()) continue;
            const std::vector<float> values = backend::download(*p.value);
            std::vector<double> v(values.begin(), values.end());
            comm_.sum(v.data(), v.size());
            std::vector<float> mean(v.size());
            for (std::size_t i = 0; i < v.size(); ++i) mean[i] = float(v[i] / size());
            backend::upload(mean, *p.value);
        }
    }

    /// Seconds spent waiting for the buckets after backward (the all-reduce time backward did not
    /// hide), and the steps counted, since the last reset.
    double wait_seconds() const { return wait_seconds_; }
    std::int64_t steps() const { return steps_; }
    void reset_timing() {
        wait_seconds_ = 0;
        steps_ = 0;
    }

private:
    struct Bucket {
        std::vector<ParamRef<Device>> params;
        std::size_t elements = 0;
        std::size_t ready_after = 0;  // the lowest node index of its parameters
        Tensor<Device> values;  // the bucket's gradients, one after another, in the model's memory
    };

    // Starts every bucket whose layers backward has all passed (node and every later one).
    void on_backward(std::size_t node) {
        for (; next_bucket_ < buckets_.size() && buckets_[next_bucket_].ready_after >= node; ++next_bucket_) {
            Bucket& b = buckets_[next_bucket_];
            std::size_t at = 0;
            for (const auto& p : b.params) {
                backend::copy_to_flat(*p.grad, b.values.data() + at);
                at += std::size_t(p.grad->size());
            }
            comm_.start_sum(b.values.data(), std::size_t(b.values.size()));
        }
        if (next_bucket_ > 0) comm_.progress();
    }

    AnyModel<Device>& model_;
    Communicator& comm_;
    std::vector<Bucket> buckets_;
    std::size_t next_bucket_ = 0;
    std::vector<BatchNormLayer<Device>*> synced_;
    Tensor<Device> empty_;
    double wait_seconds_ = 0;
    std::int64_t steps_ = 0;
};

}  // namespace segnet
