#include "thread_pool.h"

#include "kernel_threads.h"

#include "HalideRuntime.h"

#include <algorithm>
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

// One job at a time, split into one share of tasks per thread (the
// caller is participant 0, worker i participant i), as ggml splits its
// rows: a thread takes its own share first, from a counter no other thread
// touches until it steals, then takes what is left of the others' shares.
// With one shared counter, where every claim moves the same cache line
// between cores, a 16-thread Q4_K decode of a small layer took 1.24x as
// long and an 8-token call 1.39x (BENCHMARKS.md, "Each thread its own
// share").
//
// A share's counter is generation << 32 | next task, and its end is
// generation << 32 | one past its last task; a thread takes a task by a
// compare-and-swap within the generation it was woken for, so a late worker
// can never take a task of the next job, and a job's fields, written before
// its generation is published, stay unchanged while any of its tasks is
// untaken. The end carries the generation because the next job rewrites it
// before the counter: a late worker that read the new, larger end against
// the old job's spent counter took a task twice and counted it into the
// next job, whose caller could then return before its own tasks ran (seen
// under TSan, about one run in five of the pool test).
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
        error_.store(0, std::memory_order_relaxed);
        done_.store(0, std::memory_order_relaxed);
        const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
        const int parts = static_cast<int>(shares_.size());
        for (int p = 0; p < parts; ++p) {
            const int lo = static_cast<int>(int64_t{size} * p / parts);
            const int hi = static_cast<int>(int64_t{size} * (p + 1) / parts);
            shares_[p].end.store(uint64_t{gen} << 32 | static_cast<uint32_t>(hi), std::memory_order_relaxed);
            shares_[p].next.store(uint64_t{gen} << 32 | static_cast<uint32_t>(lo), std::memory_order_release);
        }
        generation_.store(gen, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            { std::lock_guard<std::mutex> lock(sleep_mutex_); }  // a worker between its check and its wait sees the job
            wake_.notify_all();
        }
        claim(0, gen);
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
    struct alignas(64) Share {
        std::atomic<uint64_t> next{0};  // generation << 32 | the share's next untaken task
        std::atomic<uint64_t> end{0};   // generation << 32 | one past the share's last task
    };

    void start() {
        if (started_) return;
        started_ = true;
        if (threads_ <= 0) threads_ = kernel_threads().load();
        const unsigned cores = std::thread::hardware_concurrency();
        // More threads than cores: a spinning worker would take the core
        // of the one that holds a task.
        spin_ = cores > 0 && static_cast<unsigned>(threads_) > cores ? std::chrono::microseconds(0) : spin_time();
        stop_.store(false);
        shares_ = std::vector<Share>(std::max(threads_, 1));
        for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { work(i); });
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

    // Runs the untaken tasks of share `p` of generation `gen`; returns how many.
    int take(int p, uint32_t gen) {
        Share &s = shares_[p];
        int ran = 0;
        uint64_t t = s.next.load(std::memory_order_acquire);
        while (static_cast<uint32_t>(t >> 32) == gen) {
            const int task = static_cast<int>(static_cast<uint32_t>(t));
            // Acquiring `t` of generation `gen` made this job's end visible;
            // a later generation's end means this job is over.
            const uint64_t e = s.end.load(std::memory_order_relaxed);
            if (static_cast<uint32_t>(e >> 32) != gen || task >= static_cast<int>(static_cast<uint32_t>(e))) break;
            halide_task_t f = f_.load(std::memory_order_relaxed);
            void *uctx = uctx_.load(std::memory_order_relaxed);
            uint8_t *closure = closure_.load(std::memory_order_relaxed);
            const int min = min_.load(std::memory_order_relaxed);
            // Taking `task`: the job cannot end, nor its fields change,
            // while it is untaken, so what was read above was this job's.
            if (!s.next.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            if (error_.load(std::memory_order_relaxed) == 0) {
                in_pool_task = true;
                const int r = f(uctx, min + task, closure);
                in_pool_task = false;
                int none = 0;
                if (r != 0) error_.compare_exchange_strong(none, r);
            }
            ++ran;
            t = s.next.load(std::memory_order_acquire);
        }
        return ran;
    }

    // Participant `self` runs its own share of generation `gen`, then helps
    // with the others'.
    void claim(int self, uint32_t gen) {
        const int parts = static_cast<int>(shares_.size());
        int ran = 0;
        for (int i = 0; i < parts; ++i) ran += take((self + i) % parts, gen);
        if (ran > 0) done_.fetch_add(ran, std::memory_order_release);
    }

    void work(int self) {
        uint32_t seen = generation_.load(std::memory_order_acquire);
        for (;;) {
            const auto since = std::chrono::steady_clock::now();
            uint32_t gen = seen;
            for (int n = 0; !stop_.load(std::memory_order_relaxed); ++n) {
                gen = generation_.load(std::memory_order_acquire);
                if (gen != seen) break;
                if ((n & 255) == 255 && std::chrono::steady_clock::now() - since >= spin_) break;
                cpu_relax();
            }
            if (gen == seen) {
                std::unique_lock<std::mutex> lock(sleep_mutex_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                wake_.wait(lock, [&] {
                    gen = generation_.load(std::memory_order_seq_cst);
                    return gen != seen || stop_.load(std::memory_order_seq_cst);
                });
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = gen;
            claim(self, gen);
        }
    }

    std::mutex submit_;  // one job at a time; workers_, shares_, threads_, started_, spin_
    std::vector<std::thread> workers_;
    std::vector<Share> shares_;  // one per participant; sized before the workers start
    int threads_ = 0;  // 0: kernel_threads() when the workers start
    bool started_ = false;
    std::chrono::microseconds spin_{0};

    std::atomic<uint32_t> generation_{0};  // the job now published
    std::atomic<halide_task_t> f_{nullptr};
    std::atomic<void *> uctx_{nullptr};
    std::atomic<uint8_t *> closure_{nullptr};
    std::atomic<int> min_{0}, done_{0}, error_{0};

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
