// The probes are plain C++ that the compiler vectorizes: the read probe
// sums 512 MiB with 64 independent accumulators per thread, as 1, 4 or 8
// streams (the best counts); the FMA probe runs 16 independent accumulator
// vectors so that FMA latency is hidden.
// On x86 each is cloned for AVX-512, AVX2 and baseline and the CPU picks.
#include "qforge/roofline.h"

#include <algorithm>
#include <chrono>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <thread>
#include <vector>

#include "weight_memory.h"

namespace qforge {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QF_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define QF_CLONES
#endif

// `streams` equal parts of p[0, n) read side by side, 64 floats of each in
// turn: one contiguous stream per thread leaves DRAM latency exposed on
// some machines (a 2-core Intel Xeon VM: 9.0 GB/s with 1, 12.0 with 4,
// 12.5 with 8), and the packed kernels read several (schedules/x86.cpp).
QF_CLONES __attribute__((noinline)) float sum_range(const float *p, size_t n, int streams) {
    float acc[64] = {};
    const size_t part = n / streams / 64 * 64;
    for (size_t i = 0; i < part; i += 64) {
        for (int s = 0; s < streams; ++s) {
            for (int k = 0; k < 64; ++k) acc[k] += p[s * part + i + k];
        }
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

#if defined(__x86_64__) && defined(__GNUC__)
// 12 independent accumulators: each dot instruction is 64 u8 x s8 products.
__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) int dot_vnni(long iters) {
    __m512i acc[12];
    for (int k = 0; k < 12; ++k) acc[k] = _mm512_set1_epi32(k);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (long i = 0; i < iters; ++i) {
        for (int k = 0; k < 12; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
    }
    __m512i s = acc[0];
    for (int k = 1; k < 12; ++k) s = _mm512_add_epi32(s, acc[k]);
    return _mm512_reduce_add_epi32(s);
}
constexpr int kVnniBytes = 12 * 64;

// AVX2 without VNNI: vpmaddubsw (u8 x s8 pairs -> s16) then vpmaddwd (-> s32).
__attribute__((target("avx2"), noinline)) int dot_avx2(long iters) {
    __m256i acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_set1_epi32(k);
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (long i = 0; i < iters; ++i) {
        for (int k = 0; k < 8; ++k) {
            acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
        }
    }
    __m256i s = acc[0];
    for (int k = 1; k < 8; ++k) s = _mm256_add_epi32(s, acc[k]);
    return _mm256_extract_epi32(s, 0);
}
constexpr int kAvx2Bytes = 8 * 32;
#endif

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
    // Touched once here, so no page faults are timed; in the memory the
    // packed weights live in (huge pages where Linux has them), so that
    // their share of this bandwidth compares like with like.
    std::vector<float, internal::WeightAllocator<float>> buf(n, 1.0f);
    const size_t per = n / r.threads / 64 * 64;
    volatile float sink = 0;
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        for (int streams : {1, 4, 8}) {
            best = std::min(best, timed_parallel(r.threads, [&](int t) {
                sink = sink + sum_range(buf.data() + t * per, per, streams);
            }));
        }
    }
    // Bytes read: per rounded down to whole 64-float steps of every stream.
    r.read_gbs = static_cast<double>(per / 8 / 64 * 64 * 8 * r.threads * sizeof(float)) / best / 1e9;
    const long iters = 400000;
    best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
        best = std::min(best, timed_parallel(r.threads, [&](int) { sink = sink + fma_loop(iters, 0.999999f, 1e-7f); }));
    }
    r.fma_gflops = 2.0 * 256 * static_cast<double>(iters) * r.threads / best / 1e9;
#if defined(__x86_64__) && defined(__GNUC__)
    const bool vnni = __builtin_cpu_supports("avx512vnni");
    if (vnni || __builtin_cpu_supports("avx2")) {
        const long dots = 2000000;
        best = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
            best = std::min(best, timed_parallel(r.threads, [&](int) {
                sink = sink + static_cast<float>(vnni ? dot_vnni(dots) : dot_avx2(dots));
            }));
        }
        r.int8_gops = 2.0 * (vnni ? kVnniBytes : kAvx2Bytes) * static_cast<double>(dots) * r.threads / best / 1e9;
    }
#endif
    return r;
}

}  // namespace qforge
