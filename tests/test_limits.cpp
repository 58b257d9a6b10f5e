// Resource limits of the readers (README, "Hostile files"): opening a file
// of N bytes holds at most 8 N + 32 MiB of heap at any moment, and its work
// is linear: the bytes it allocates in all (each one written, so a bound on
// the work; the quadratic cases of the past allocated ~N^2) at most double,
// plus a margin, when the file doubles.
//
// Each case is the worst a file of its kind can do per byte, built by hand
// at ~12 and ~24 MB. Memory is counted by this binary's own operator new:
// requested bytes plus 16 per block for the allocator's header.
#include "qforge/gguf.h"
#include "qforge/safetensors.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

std::atomic<int64_t> g_live{0}, g_peak{0}, g_total{0};
constexpr size_t kHeader = 16;  // keeps the block's size; also the allocator's own overhead

void *counted_new(size_t n) {
    void *p = std::malloc(n + kHeader);
    if (!p) throw std::bad_alloc();
    *static_cast<size_t *>(p) = n;
    const int64_t live = g_live += static_cast<int64_t>(n + kHeader);
    g_total += static_cast<int64_t>(n + kHeader);
    for (int64_t peak = g_peak.load(); live > peak && !g_peak.compare_exchange_weak(peak, live);) {
    }
    return static_cast<char *>(p) + kHeader;
}

void counted_delete(void *p) {
    if (!p) return;
    void *block = static_cast<char *>(p) - kHeader;
    g_live -= static_cast<int64_t>(*static_cast<size_t *>(block) + kHeader);
    std::free(block);
}

}  // namespace

void *operator new(size_t n) { return counted_new(n); }
void *operator new[](size_t n) { return counted_new(n); }
void operator delete(void *p) noexcept { counted_delete(p); }
void operator delete[](void *p) noexcept { counted_delete(p); }
void operator delete(void *p, size_t) noexcept { counted_delete(p); }
void operator delete[](void *p, size_t) noexcept { counted_delete(p); }

namespace qforge::test {
namespace {

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kTarget = 24 * kMiB;  // each hostile file's size, roughly

struct Bytes {
    std::vector<uint8_t> b;
    template <typename T>
    Bytes &put(T v) {
        const auto *p = reinterpret_cast<const uint8_t *>(&v);
        b.insert(b.end(), p, p + sizeof v);
        return *this;
    }
    Bytes &str(const std::string &s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    Bytes &text(const std::string &s) {
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
};

Bytes gguf_header(uint64_t tensors, uint64_t kv) {
    Bytes g;
    g.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(tensors).put<uint64_t>(kv);
    return g;
}

Bytes safetensors(const std::string &header) {
    Bytes s;
    s.put<uint64_t>(header.size()).text(header);
    return s;
}

std::string write_temp(const Bytes &bytes) {
    char path[] = "/tmp/qforge_limits_XXXXXX";
    const int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    FILE *f = fdopen(fd, "wb");
    std::fwrite(bytes.b.data(), 1, bytes.b.size(), f);
    std::fclose(f);
    return path;
}

struct Use {
    int64_t file, peak, total;
};

// Opens `bytes` with `open` (which may throw qforge::Error: refusing is
// within the limits too) and checks the heap it held against the limit.
Use measure(const Bytes &bytes, const std::function<void(const std::string &)> &open, const char *what) {
    const std::string path = write_temp(bytes);
    const int64_t n = static_cast<int64_t>(bytes.b.size());
    const int64_t base = g_live.load();
    g_peak = base;
    g_total = 0;
    std::string outcome = "opened";
    try {
        open(path);
    } catch (const Error &e) {
        outcome = std::string("refused: ") + std::string(e.what()).substr(path.size() + 2, 100);
    }
    const int64_t peak = g_peak.load() - base, total = g_total.load();
    std::remove(path.c_str());
    std::printf("[ limits   ] %-42s %5.1f MB file: peak %6.1f MB (%5.2fx), allocated %6.1f MB; %s\n", what, n / 1e6, peak / 1e6,
                double(peak) / n, total / 1e6, outcome.c_str());
    EXPECT_LE(peak, 8 * n + 32 * kMiB) << what;
    return {n, peak, total};
}

// The case built at half and at full size: the limit at both, and work
// that grows no faster than the file.
void expect_within_limits(const std::function<Bytes(int64_t)> &make, const std::function<void(const std::string &)> &open,
                          const char *what) {
    const Use half = measure(make(kTarget / 2), open, what);
    const Use full = measure(make(kTarget), open, what);
    const double grow = double(full.file) / half.file;
    EXPECT_LE(full.total, grow * 1.25 * half.total + 4 * kMiB) << what << ": allocation grows faster than the file";
}

void open_gguf(const std::string &p) {
    const GGUFFile g = GGUFFile::open(p);
    for (const auto &[k, v] : g.metadata()) (void)v.to_string();
    for (const auto &t : g.tensors()) ASSERT_EQ(g.find(t.name), &t);
}

void open_st(const std::string &p) {
    const SafetensorsFile s = SafetensorsFile::open(p);
    for (const auto &t : s.tensors()) ASSERT_EQ(s.find(t.name), &t);
    for (const auto &prefix : s.int4g_prefixes()) (void)s.int4g(prefix);
}

TEST(Limits, GGUFByteArray) {
    expect_within_limits([](int64_t size) {
        Bytes g = gguf_header(0, 1);
        g.str("a").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(size);  // array of u8
        g.b.resize(g.b.size() + size, 7);
        return g;
    }, open_gguf, "GGUF: u8 array");
}

TEST(Limits, GGUFEmptyStringsUnderLongestKey) {
    // The quadratic case: every element's error name used to copy the key.
    expect_within_limits([](int64_t size) {
        Bytes g = gguf_header(0, 1);
        g.str(std::string(65535, 'k')).put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(size / 8);
        g.b.resize(g.b.size() + size / 8 * 8, 0);  // strings of length 0
        return g;
    }, open_gguf, "GGUF: empty strings under a 64 KiB key");
}

TEST(Limits, GGUFManySmallKeys) {
    const uint64_t n = 1 << 16;  // the most keys a file may have
    Bytes g = gguf_header(0, n);
    for (uint64_t k = 0; k < n; ++k) g.str(std::to_string(k)).put<uint32_t>(0).put<uint8_t>(1);
    measure(g, open_gguf, "GGUF: 65536 u8 keys");
    Bytes more = gguf_header(0, n + 1);
    more.b.resize(kTarget, 0);
    measure(more, open_gguf, "GGUF: 65537 keys");
}

TEST(Limits, GGUFManySmallTensors) {
    // Alignment 1 and one-byte tensors: the most tensor infos per byte.
    expect_within_limits([](int64_t size) {
        const uint64_t n = size / 40;
        Bytes g = gguf_header(n, 1);
        g.str("general.alignment").put<uint32_t>(4).put<uint32_t>(1);
        for (uint64_t t = 0; t < n; ++t) {
            g.str(std::to_string(t)).put<uint32_t>(1).put<uint64_t>(1).put<uint32_t>(24).put<uint64_t>(t);  // i8 [1] at t
        }
        g.b.resize(g.b.size() + n, 3);
        return g;
    }, open_gguf, "GGUF: one-byte tensors");
}

TEST(Limits, GGUFLongString) {
    expect_within_limits([](int64_t size) {
        Bytes g = gguf_header(0, 1);
        g.str("s").put<uint32_t>(8).str(std::string(size / 2, 'x'));  // at most 16 MiB
        return g;
    }, open_gguf, "GGUF: a long string value");
}

TEST(Limits, SafetensorsManyEmptyTensors) {
    expect_within_limits([](int64_t size) {
        std::string h = "{";
        for (int64_t t = 0; static_cast<int64_t>(h.size()) < size; ++t) {
            h += (t ? ",\"" : "\"") + std::to_string(t) + "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}";
        }
        return safetensors(h + "}");
    }, open_st, "safetensors: empty tensors");
}

TEST(Limits, SafetensorsManyInt4gLayers) {
    // Each layer is looked up by name three times; lookups must not scan.
    expect_within_limits([](int64_t size) {
        std::string h = "{";
        uint64_t off = 0;
        for (int64_t t = 0; static_cast<int64_t>(h.size()) < size; ++t) {
            const std::string p = std::to_string(t), o = std::to_string(off), o1 = std::to_string(off + 1), o3 = std::to_string(off + 3);
            h += std::string(t ? "," : "") + "\"" + p + ".weight_4bit\":{\"dtype\":\"U8\",\"shape\":[1,1],\"data_offsets\":[" + o +
                 "," + o1 + "]},\"" + p + ".scales_4bit\":{\"dtype\":\"F16\",\"shape\":[1,1],\"data_offsets\":[" + o1 + "," + o3 +
                 "]}";
            off += 3;
        }
        Bytes s = safetensors(h + "}");
        s.b.resize(s.b.size() + off, 0);
        return s;
    }, open_st, "safetensors: int4g layers");
}

TEST(Limits, SafetensorsMetadata) {
    std::string h = "{\"__metadata__\":{";
    for (int k = 0; k < (1 << 16); ++k) h += (k ? ",\"" : "\"") + std::to_string(k) + "\":\"\"";
    measure(safetensors(h + "}}"), open_st, "safetensors: 65536 metadata keys");
    measure(safetensors(h + ",\"x\":\"\"}}"), open_st, "safetensors: 65537 metadata keys");
}

TEST(Limits, SafetensorsLongShape) {
    expect_within_limits([](int64_t size) {
        std::string h = "{\"x\":{\"dtype\":\"U8\",\"shape\":[";
        while (static_cast<int64_t>(h.size()) < size) h += "0,";
        return safetensors(h + "0],\"data_offsets\":[0,0]}}");
    }, open_st, "safetensors: a shape of millions of dims");
}

TEST(Limits, SafetensorsWideTree) {
    // As deep as allowed and wide: one entry that would be a large DOM.
    expect_within_limits([](int64_t size) {
        std::string level = "[";
        for (int i = 0; i < 63; ++i) level += "[0,0,0,0,0,0,0,0],";
        level += "[0]]";
        std::string h = "{\"x\":[";
        while (static_cast<int64_t>(h.size()) < size) h += level + ",";
        return safetensors(h + "0]}");
    }, open_st, "safetensors: a wide tree in one entry");
}

TEST(Limits, SafetensorsLongStrings) {
    expect_within_limits([](int64_t size) {
        return safetensors("{\"__metadata__\":{\"k\":\"" + std::string(size, 'v') + "\"}}");
    }, open_st, "safetensors: a long metadata value");
    expect_within_limits([](int64_t size) {
        return safetensors("{\"x\":{\"dtype\":\"" + std::string(size, 'v') + "\",\"shape\":[],\"data_offsets\":[0,0]}}");
    }, open_st, "safetensors: a long dtype");
    expect_within_limits([](int64_t size) {
        return safetensors("{\"" + std::string(size, 'n') + "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,5]}}");
    }, open_st, "safetensors: a long name, bad offsets");
}

}  // namespace
}  // namespace qforge::test
