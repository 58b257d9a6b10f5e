// The probes are plain C++ that the compiler vectorizes: the read probe
// sums 512 MiB with 8 independent accumulators per thread, the FMA probe
// runs 16 independent accumulator vectors so that FMA latency is hidden.
// On x86 each is cloned for AVX-512, AVX2 and baseline and the CPU picks.
#include "qforge/roofline.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace qforge {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QF_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define QF_CLONES
#endif

QF_CLONES __attribute__((noinline)) float sum_range(const float *p, size_t n) {
    float acc[64] = {};
    for (size_t i = 0; i + 64 <= n; i += 64) {
        for (int k = 0; k < 64; ++k) acc[k] += p[i + k];
    }
    float s = 0;
    for (float a : acc) s += a;
    return s;
}

// 16 vectors of 16 lanes: enough independent FMAs to fill two pipes.
QF_CLONES __attribute__((noinline)) float fma_loop(long iters, float m, float c) {
    float acc[256];
    for (int k = 0; k < 256; ++k) acc[k] = static_cast<float>(k) * 1e-3f;
    for (long i = 0; i < iters; ++i) {
        for (int k = 0; k < 256; ++k) acc[k] = acc[k] * m + c;
    }
    float s = 0;
    for (float a : acc) s += a;
    return s;
}

template <typename F>
double timed_parallel(int threads, F f) {
    std::vector<std::thread> pool;
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t) pool.emplace_back(f, t);
    for (auto &th : pool) th.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Roofline measure_roofline(int threads) {
    Roofline r;
    r.threads = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
    const size_t n = (size_t{512} << 20) / sizeof(float);
    std::vector<float> buf(n, 1.0f);  // touched once here, so no page faults are timed
    const size_t per = n / r.threads / 64 * 64;
    volatile float sink = 0;
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        best = std::min(best, timed_parallel(r.threads, [&](int t) { sink = sink + sum_range(buf.data() + t * per, per); }));
    }
    r.read_gbs = static_cast<double>(per * r.threads * sizeof(float)) / best / 1e9;
    const long iters = 400000;
    best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        best = std::min(best, timed_parallel(r.threads, [&](int) { sink = sink + fma_loop(iters, 0.999999f, 1e-7f); }));
    }
    r.fma_gflops = 2.0 * 256 * static_cast<double>(iters) * r.threads / best / 1e9;
    return r;
}

}  // namespace qforge
