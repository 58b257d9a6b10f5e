// set_num_threads takes effect within the process: lowering it stops the
// kernels' extra workers (runtime/src/thread_pool.cpp), and results do not
// depend on the count.
#include "layer_util.h"
#include "thread_pool.h"

#include "HalideRuntime.h"

#include <dirent.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

extern "C" int qf_num_threads();  // targets/kernel_threads.cpp

namespace qforge::test {
namespace {

// Threads of this process (Linux: the entries of /proc/self/task).
int threads_now() {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    while (dirent *e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

// Threads once the exiting ones are gone: a joined thread can stay listed a
// moment longer (under qemu-user, a host thread outlives its guest's join).
int threads_settled(int want) {
    int n = threads_now();
    for (int i = 0; i < 300 && n != want; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        n = threads_now();
    }
    return n;
}

TEST(Threads, LoweringTheCountStopsWorkersAndResultsStayTheSame) {
    if (threads_now() < 0) GTEST_SKIP() << "no /proc/self/task here";
    const int64_t out = 512, in = 1024, tokens = 3;
    Built b = build("q4_k", weights(out, in), out, in, nullptr);
    const auto x = random_floats(tokens * in);
    std::vector<float> y4(tokens * out), y1(tokens * out), y2(tokens * out);
    auto run = [&](std::vector<float> &y) {
        b.layer->forward(ConstMatrix{x.data(), tokens, in}, Matrix{y.data(), tokens, out});
    };
    const int old = set_num_threads(1);
    run(y1);
    const int base = threads_now();
    set_num_threads(4);
    run(y4);
    EXPECT_GT(threads_now(), base) << "4 threads started no worker";
    set_num_threads(1);
    EXPECT_EQ(threads_settled(base), base) << "lowering the count left workers running";
    run(y2);
    EXPECT_EQ(threads_settled(base), base) << "a one-thread call started workers";
    EXPECT_EQ(y1, y4);
    EXPECT_EQ(y1, y2);
    EXPECT_THROW(set_num_threads(-1), Error);
    set_num_threads(old);
}

// Packed decode splits its rows into tasks by the threads the runtime runs
// now (qf_num_threads), so that a many-core machine is not left half idle;
// each split computes every row the same way, so results are bit-identical.
TEST(Threads, DecodeSplitsByTheThreadCountAndResultsStayTheSame) {
    const int64_t out = 2000, in = 1024;  // 1.15 MB of Q4_K: parallel; 2000 rows: a partial last tile
    Built b = build("q4_k", weights(out, in), out, in, nullptr);
    const auto x = random_floats(in);
    std::vector<float> first;
    const int old = set_num_threads(1);
    for (int n : {1, 3, 7, 16, 2}) {
        set_num_threads(n);
        EXPECT_EQ(qf_num_threads(), n);
        std::vector<float> y(out, std::numeric_limits<float>::quiet_NaN());
        b.layer->forward(ConstMatrix{x.data(), 1, in}, Matrix{y.data(), 1, out});
        if (first.empty()) {
            first = y;
            for (float v : y) ASSERT_TRUE(std::isfinite(v));
        }
        EXPECT_EQ(y, first) << n << " threads";
    }
    set_num_threads(0);
    EXPECT_GE(qf_num_threads(), 1) << "0: Halide's default";
    set_num_threads(old);
}

// The kernels' pool (runtime/src/thread_pool.cpp), through Halide's entry
// point as a kernel calls it: every task runs once per job, back-to-back
// jobs never mix, a task's own parallel loop runs inline, the first error
// comes back, and callers on several threads each get their own job done.
struct Counts {
    std::vector<std::atomic<int>> runs;
    int fail_at = -1;
    explicit Counts(int n) : runs(n) {}
};

int count_task(void *, int i, uint8_t *closure) {
    auto *c = reinterpret_cast<Counts *>(closure);
    c->runs[i].fetch_add(1);
    if (i == c->fail_at) return -7;
    return 0;
}

int nested_task(void *uctx, int i, uint8_t *closure) {
    auto *c = reinterpret_cast<Counts *>(closure);
    Counts inner(3);
    const int r = halide_do_par_for(uctx, count_task, 0, 3, reinterpret_cast<uint8_t *>(&inner));
    for (auto &n : inner.runs) if (n.load() != 1) return -1;
    c->runs[i].fetch_add(1);
    return r;
}

TEST(Threads, PoolRunsEveryTaskOnceAndReturnsTheFirstError) {
    internal::install_thread_pool();
    const int old = set_num_threads(2);  // 2: workers that spin between jobs; 4 (more than CI's cores): they sleep
    for (int threads : {2, 4}) {
        set_num_threads(threads);
        for (int job = 0; job < 2000; ++job) {
            const int n = 1 + job % 37;
            Counts c(n + 5);
            ASSERT_EQ(halide_do_par_for(nullptr, count_task, 5, n, reinterpret_cast<uint8_t *>(&c)), 0);
            for (int i = 0; i < n + 5; ++i)
                ASSERT_EQ(c.runs[i].load(), i < 5 ? 0 : 1) << threads << " threads, job " << job << ", task " << i;
        }
    }
    Counts nested(16);
    EXPECT_EQ(halide_do_par_for(nullptr, nested_task, 0, 16, reinterpret_cast<uint8_t *>(&nested)), 0);
    for (auto &n : nested.runs) EXPECT_EQ(n.load(), 1);

    Counts failing(64);
    failing.fail_at = 40;
    EXPECT_EQ(halide_do_par_for(nullptr, count_task, 0, 64, reinterpret_cast<uint8_t *>(&failing)), -7);

    std::vector<std::thread> callers;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 3; ++t) {
        callers.emplace_back([&] {
            for (int job = 0; job < 300; ++job) {
                Counts c(24);
                if (halide_do_par_for(nullptr, count_task, 0, 24, reinterpret_cast<uint8_t *>(&c)) != 0) ++wrong;
                for (auto &n : c.runs) wrong += n.load() != 1;
            }
        });
    }
    for (auto &t : callers) t.join();
    EXPECT_EQ(wrong.load(), 0);
    set_num_threads(old);
}

}  // namespace
}  // namespace qforge::test
