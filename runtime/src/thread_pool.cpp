#include "thread_pool.h"

#include "kernel_threads.h"

#include "HalideRuntime.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace qforge::internal {
namespace {

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// How long an idle worker spins before it sleeps. 0 sleeps at once.
std::chrono::microseconds spin_time() {
    if (const char *v = std::getenv("QF_SPIN_US"); v && *v) return std::chrono::microseconds(std::atoll(v));
    return std::chrono::microseconds(200);
}

thread_local bool in_pool_task = false;  // a task's own parallel loops run inline

int run_inline(void *uctx, halide_task_t f, int min, int size, uint8_t *closure) {
    for (int i = min; i < min + size; ++i) {
        if (int r = f(uctx, i, closure)) return r;
    }
    return 0;
}

// One job at a time. A job is published as `ticket_` = generation << 32 |
// tasks not yet taken; a thread takes a task by a compare-and-swap that
// counts it down within the same generation, so a late worker can never
// take a task of the next job, and the job's fields, written before the
// ticket is published, stay unchanged while any of its tasks is untaken.
class Pool {
public:
    int run(void *uctx, halide_task_t f, int min, int size, uint8_t *closure) {
        if (size <= 1 || in_pool_task) return run_inline(uctx, f, min, size, closure);
        std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
        if (!submit.owns_lock()) return run_inline(uctx, f, min, size, closure);  // another caller's job has the workers
        start();
        if (workers_.empty()) return run_inline(uctx, f, min, size, closure);

        f_.store(f, std::memory_order_relaxed);
        uctx_.store(uctx, std::memory_order_relaxed);
        closure_.store(closure, std::memory_order_relaxed);
        min_.store(min, std::memory_order_relaxed);
        size_.store(size, std::memory_order_relaxed);
        error_.store(0, std::memory_order_relaxed);
        done_.store(0, std::memory_order_relaxed);
        const uint64_t gen = (ticket_.load(std::memory_order_relaxed) >> 32) + 1;
        ticket_.store(gen << 32 | static_cast<uint32_t>(size), std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            { std::lock_guard<std::mutex> lock(sleep_mutex_); }  // a worker between its check and its wait sees the ticket
            wake_.notify_all();
        }
        claim(static_cast<uint32_t>(gen));
        for (int n = 0; done_.load(std::memory_order_acquire) < size; ++n) {
            if (n < 4096) cpu_relax();
            else std::this_thread::yield();  // a worker that holds a task is off its core
        }
        return error_.load(std::memory_order_relaxed);
    }

    void resize(int threads) {
        std::lock_guard<std::mutex> submit(submit_);
        stop();
        threads_ = threads;
    }

private:
    void start() {
        if (started_) return;
        started_ = true;
        if (threads_ <= 0) threads_ = kernel_threads().load();
        const unsigned cores = std::thread::hardware_concurrency();
        // More threads than cores: a spinning worker would take the core
        // of the one that holds a task.
        spin_ = cores > 0 && static_cast<unsigned>(threads_) > cores ? std::chrono::microseconds(0) : spin_time();
        stop_.store(false);
        for (int i = 1; i < threads_; ++i) workers_.emplace_back([this] { work(); });
    }

    void stop() {
        if (!started_) return;
        {
            std::lock_guard<std::mutex> lock(sleep_mutex_);
            stop_.store(true, std::memory_order_seq_cst);
        }
        wake_.notify_all();
        for (std::thread &t : workers_) t.join();
        workers_.clear();
        started_ = false;
    }

    // Runs tasks of generation `gen` until none is left unclaimed.
    void claim(uint32_t gen) {
        uint64_t t = ticket_.load(std::memory_order_acquire);
        while (static_cast<uint32_t>(t >> 32) == gen && static_cast<uint32_t>(t) > 0) {
            const int size = size_.load(std::memory_order_relaxed);
            const int index = min_.load(std::memory_order_relaxed) + size - static_cast<int>(static_cast<uint32_t>(t));
            halide_task_t f = f_.load(std::memory_order_relaxed);
            void *uctx = uctx_.load(std::memory_order_relaxed);
            uint8_t *closure = closure_.load(std::memory_order_relaxed);
            // Taking task `index` of this job: the job cannot end, nor its
            // fields change, while it is not taken, so they were this job's.
            if (!ticket_.compare_exchange_weak(t, t - 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            if (error_.load(std::memory_order_relaxed) == 0) {
                in_pool_task = true;
                const int r = f(uctx, index, closure);
                in_pool_task = false;
                int none = 0;
                if (r != 0) error_.compare_exchange_strong(none, r);
            }
            done_.fetch_add(1, std::memory_order_release);
            t = ticket_.load(std::memory_order_acquire);
        }
    }

    void work() {
        uint32_t seen = static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32);
        for (;;) {
            const auto since = std::chrono::steady_clock::now();
            uint32_t gen = seen;
            for (int n = 0; !stop_.load(std::memory_order_relaxed); ++n) {
                gen = static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32);
                if (gen != seen) break;
                if ((n & 255) == 255 && std::chrono::steady_clock::now() - since >= spin_) break;
                cpu_relax();
            }
            if (gen == seen) {
                std::unique_lock<std::mutex> lock(sleep_mutex_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                wake_.wait(lock, [&] {
                    gen = static_cast<uint32_t>(ticket_.load(std::memory_order_seq_cst) >> 32);
                    return gen != seen || stop_.load(std::memory_order_seq_cst);
                });
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = gen;
            claim(gen);
        }
    }

    std::mutex submit_;  // one job at a time; workers_, threads_, started_, spin_
    std::vector<std::thread> workers_;
    int threads_ = 0;  // 0: kernel_threads() when the workers start
    bool started_ = false;
    std::chrono::microseconds spin_{0};

    std::atomic<uint64_t> ticket_{0};
    std::atomic<halide_task_t> f_{nullptr};
    std::atomic<void *> uctx_{nullptr};
    std::atomic<uint8_t *> closure_{nullptr};
    std::atomic<int> min_{0}, size_{0}, done_{0}, error_{0};

    std::mutex sleep_mutex_;
    std::condition_variable wake_;
    std::atomic<int> sleepers_{0};
    std::atomic<bool> stop_{false};
};

Pool &pool() {
    static Pool *p = new Pool;  // never destroyed: a kernel may run during static destruction
    return *p;
}

int do_par_for(void *uctx, halide_task_t f, int min, int size, uint8_t *closure) {
    return pool().run(uctx, f, min, size, closure);
}

}  // namespace

void install_thread_pool() {
    static std::once_flag once;
    std::call_once(once, [] { halide_set_custom_do_par_for(do_par_for); });
}

void resize_thread_pool(int threads) { pool().resize(threads); }

}  // namespace qforge::internal
