// set_num_threads takes effect within the process: lowering it stops the
// kernels' extra workers (Halide's pool would otherwise keep them busy), and
// results do not depend on the count.
#include "layer_util.h"

#include <dirent.h>

#include <chrono>
#include <thread>

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

}  // namespace
}  // namespace qforge::test
