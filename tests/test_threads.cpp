// set_num_threads takes effect within the process: lowering it stops the
// kernels' extra workers (Halide's pool would otherwise keep them busy), and
// results do not depend on the count.
#include "layer_util.h"

#include <dirent.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

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

}  // namespace
}  // namespace qforge::test
