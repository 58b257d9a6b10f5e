// CPU feature detection for choosing and testing variants (x86: cpuid +
// xgetbv; aarch64: the kernel's hardware capability bits).
#include "registry.h"

#include "cuda_device.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace qforge::internal {
namespace {

std::string cpu_vendor();

std::map<std::string, bool> detect() {
    std::map<std::string, bool> f;
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool osxsave = (c >> 27) & 1;
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    }
    // The OS must save the vector state, not just the CPU support the instructions.
    const bool ymm = osxsave && (xcr0 & 0x6) == 0x6;
    const bool zmm = ymm && (xcr0 & 0xE0) == 0xE0;
    f["sse4.1"] = (c >> 19) & 1;
    f["avx"] = ymm && ((c >> 28) & 1);
    f["fma"] = ymm && ((c >> 12) & 1);
    f["f16c"] = ymm && ((c >> 29) & 1);
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
    __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
    f["avx2"] = ymm && ((b7 >> 5) & 1);
    f["avx512f"] = zmm && ((b7 >> 16) & 1);
    f["avx512dq"] = zmm && ((b7 >> 17) & 1);
    f["avx512ifma"] = zmm && ((b7 >> 21) & 1);
    f["avx512cd"] = zmm && ((b7 >> 28) & 1);
    f["avx512bw"] = zmm && ((b7 >> 30) & 1);
    f["avx512vl"] = zmm && ((b7 >> 31) & 1);
    f["avx512vbmi"] = zmm && ((c7 >> 1) & 1);
    f["avx512vbmi2"] = zmm && ((c7 >> 6) & 1);
    f["avx512vnni"] = zmm && ((c7 >> 11) & 1);
    f["avx512bitalg"] = zmm && ((c7 >> 12) & 1);
    f["avx512vpopcntdq"] = zmm && ((c7 >> 14) & 1);
    unsigned a71 = 0, b71 = 0, c71 = 0, d71 = 0;
    __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
    f["avx512bf16"] = zmm && ((a71 >> 5) & 1);
    // The vendor as a feature: targets.cmake's x86-zen4 needs it.
    const std::string v = cpu_vendor();
    f["amd"] = v == "AuthenticAMD" || v == "HygonGenuine";
#elif defined(__aarch64__)
    const unsigned long hwcap = getauxval(AT_HWCAP);
    f["asimd"] = hwcap & HWCAP_ASIMD;
    f["asimddp"] = hwcap & HWCAP_ASIMDDP;
    f["asimdhp"] = hwcap & HWCAP_ASIMDHP;
#endif
    return f;
}

// "AuthenticAMD", "GenuineIntel", ...; empty off x86.
std::string cpu_vendor() {
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return "";
    char v[13] = {};
    std::memcpy(v, &b, 4);
    std::memcpy(v + 4, &d, 4);
    std::memcpy(v + 8, &c, 4);
    return v;
#else
    return "";
#endif
}

std::atomic<int> forced_prefetch{-1};

}  // namespace

bool cpu_prefetch() {
    static const bool chosen = [] {
        if (const char *e = std::getenv("QF_PREFETCH"); e && *e) return std::strcmp(e, "0") != 0;
        return machine_has("amd");
    }();
    const int f = forced_prefetch.load(std::memory_order_relaxed);
    return f < 0 ? chosen : f != 0;
}

void force_cpu_prefetch(int on) { forced_prefetch.store(on < 0 ? -1 : on != 0, std::memory_order_relaxed); }

bool machine_has(const std::string &feature) {
    if (feature == "cuda") return cuda_device().present;
    if (feature.size() == 4 && feature.compare(0, 2, "sm") == 0) {
        // "smNN": compute capability N.N or higher.
        const CudaDevice &d = cuda_device();
        const int want = std::stoi(feature.substr(2));
        return d.present && d.major * 10 + d.minor >= want;
    }
    static const std::map<std::string, bool> features = detect();
    auto it = features.find(feature);
    return it != features.end() && it->second;
}

}  // namespace qforge::internal

// Called by the packed CPU kernels that carry a software prefetch, once
// per tile (schedules/cpu.h, cpu_wants_prefetch): 1 runs the loop nest
// with prefetches, 0 the one without.
extern "C" int qf_cpu_prefetch() { return qforge::internal::cpu_prefetch(); }

// Called by the packed CPU decode kernels with a weight touch, once per
// block and group of tiles (schedules/cpu.h, packed_touch): prefetcht0 of
// block `block` (`run` bytes each, `blocks` a tile) of the `group` tiles
// from byte offset `here` (`tile_bytes` apart, `tiles_left` of them in the
// tensor), or past a tile's end, of the next group's; on CPUs that do not
// run the kernels' prefetchnta nest (an Intel Xeon, where NTA fills made
// the kernels slower and T0 made them faster). Returns 0, which the kernel
// adds to its sums.
extern "C" int qf_cpu_touch(const void *host, int64_t here, int64_t tile_bytes, int32_t tiles_left, int32_t block,
                            int32_t blocks, int32_t run, int32_t group) {
    if (qforge::internal::cpu_prefetch()) return 0;
    for (int32_t s = 0; s < group; ++s) {
        int32_t t = s, b = block;
        if (b >= blocks) {
            b = std::min(b - blocks, blocks - 1);
            t += group;
        }
        if (t >= tiles_left) break;
        const char *p = static_cast<const char *>(host) + here + t * tile_bytes + int64_t{b} * run;
        for (int32_t i = 0; i < run; i += 64) __builtin_prefetch(p + i, 0, 3);
    }
    return 0;
}
