// segnet/backend/cpu/thread_pool.hpp: the CPU backend's worker threads.
//
//   segnet::set_num_threads(2);                       // default: all hardware threads
//   segnet::backend::cpu::parallel_for(0, rows, [&](std::int64_t b, std::int64_t e, int worker) {...});
//   int t = segnet::num_threads();
//
// One persistent pool per process; parallel_for splits [begin, end) into one contiguous chunk
// per worker and runs the first chunk on the calling thread. Kernels get a worker index so
// they can keep per-thread scratch (im2col tiles, gradient accumulators) without locks.
// A call allocates nothing: the task is passed by reference (TaskRef), not as a std::function
// (whose captures beyond two pointers would go to the heap on every kernel call).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <mutex>
#include <thread>
#include <vector>

namespace segnet::backend::cpu {

/// A non-owning reference to a callable fn(begin, end, worker); the callable must outlive it.
class TaskRef {
public:
    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, TaskRef>)
    TaskRef(F& fn)  // NOLINT: implicit, like std::function_ref
        : obj_(const_cast<void*>(static_cast<const void*>(&fn))),
          call_([](void* o, std::int64_t b, std::int64_t e, int w) { (*static_cast<F*>(o))(b, e, w); }) {}
    void operator()(std::int64_t b, std::int64_t e, int w) const { call_(obj_, b, e, w); }

private:
    void* obj_;
    void (*call_)(void*, std::int64_t, std::int64_t, int);
};

class ThreadPool {
public:
    using Task = TaskRef;

    explicit ThreadPool(int threads) { resize(threads); }
    ~ThreadPool() { stop(); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    void resize(int threads) {
        threads = std::max(1, threads);
        if (threads == size() && started_) return;
        stop();
        stopping_ = false;
        started_ = true;
        // New workers must not mistake the last finished task for a new one.
        const std::uint64_t current = generation_;
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, current] { loop(i, current); });
    }

    /// Runs fn(chunk_begin, chunk_end, worker) over [begin, end) split into one chunk per
    /// worker; blocks until all chunks are done; rethrows the first exception.
    void parallel_for(std::int64_t begin, std::int64_t end, const Task& fn, std::int64_t min_chunk = 1) {
        const std::int64_t n = end - begin;
        if (n <= 0) return;
        const int parts = int(std::min<std::int64_t>(size(), std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_chunk))));
        if (parts <= 1 || in_parallel_) {
            fn(begin, end, 0);
            return;
        }
        std::unique_lock lock(mutex_);
        task_ = &fn;
        begin_ = begin;
        end_ = end;
        parts_ = parts;
        pending_ = parts - 1;
        error_ = nullptr;
        ++generation_;
        lock.unlock();
        wake_.notify_all();
        in_parallel_ = true;
        try {
            run_part(0);
        } catch (...) {
            record_error();
        }
        in_parallel_ = false;
        lock.lock();
        done_.wait(lock, [this] { return pending_ == 0; });
        task_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    void run_part(int part) {
        const std::int64_t n = end_ - begin_;
        const std::int64_t b = begin_ + n * part / parts_;
        const std::int64_t e = begin_ + n * (part + 1) / parts_;
        if (b < e) (*task_)(b, e, part);
    }
    void record_error() {
        std::lock_guard g(error_mutex_);
        if (!error_) error_ = std::current_exception();
    }
    void loop(int index, std::uint64_t seen) {
        in_parallel_ = true;  // a kernel called from a worker runs its nested loops serially
        for (;;) {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
            if (stopping_) return;
            seen = generation_;
            const bool mine = index < parts_;
            lock.unlock();
            if (!mine) continue;
            try {
                run_part(index);
            } catch (...) {
                record_error();
            }
            lock.lock();
            if (--pending_ == 0) done_.notify_one();
        }
    }
    void stop() {
        {
            std::lock_guard g(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
        started_ = false;
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_, error_mutex_;
    std::condition_variable wake_, done_;
    const Task* task_ = nullptr;
    std::int64_t begin_ = 0, end_ = 0;
    int parts_ = 0, pending_ = 0;
    std::uint64_t generation_ = 0;
    bool stopping_ = false, started_ = false;
    std::exception_ptr error_;
    static inline thread_local bool in_parallel_ = false;
};

inline int default_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : int(hw);
}

inline ThreadPool& pool() {
    static ThreadPool instance(default_threads());
    return instance;
}

/// Sets the number of threads every CPU kernel uses (1 = the calling thread only).
inline void set_num_threads(int threads) { pool().resize(threads); }
inline int num_threads() { return pool().size(); }

template <class F>
void parallel_for(std::int64_t begin, std::int64_t end, F&& fn, std::int64_t min_chunk = 1) {
    auto& f = fn;  // lives until the call returns: the pool blocks until every chunk is done
    const ThreadPool::Task task(f);
    pool().parallel_for(begin, end, task, min_chunk);
}

}  // namespace segnet::backend::cpu

// The thread count is user-facing: segnet::set_num_threads(n), segnet::num_threads().
namespace segnet {
using backend::cpu::num_threads;
using backend::cpu::set_num_threads;
}  // namespace segnet
