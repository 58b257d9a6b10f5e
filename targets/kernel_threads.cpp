#include "kernel_threads.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace qforge::internal {
int default_kernel_threads() {
    for (const char *name : {"HL_NUM_THREADS", "HL_NUMTHREADS"}) {
        if (const char *v = std::getenv(name); v && std::atoi(v) > 0) return std::atoi(v);
    }
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

std::atomic<int> &kernel_threads() {
    static std::atomic<int> n{default_kernel_threads()};
    return n;
}
}  // namespace qforge::internal

extern "C" int qf_num_threads() { return qforge::internal::kernel_threads(); }
