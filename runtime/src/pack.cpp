// Packing: the byte permutations of FORMATS.md "Packed layouts", one pair
// of functions (block -> its row's place in a tile, and back) per format.
// This is runtime C++ rather than a Halide generator: it runs once per
// weight at load, moves bytes without arithmetic (memory-bound at any
// width), and must run on every machine whatever kernels it has; a
// generator would add a library per target for no speed.
#include "qforge/pack.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "registry.h"

namespace qforge {
namespace {

// One format's shuffle: file block <-> row r of a packed tile of R rows.
struct PackRow {
    Format format;
    void (*pack)(const uint8_t *block, uint8_t *tile, int r, int R);
    void (*unpack)(const uint8_t *tile, int r, int R, uint8_t *block);
};

// Q4_K, 148 R bytes per super-block of a tile: quants [128 R] with byte b
// of group g of chunk jp of row r at b + 4r + 4Rg + 32R jp (Q4_K's own
// nibble pairing kept), sc [8 R] at 128R + Rj + r, m [8 R] at 136R + Rj + r,
// d (f16) at 144R + 2r, dmin (f16) at 146R + 2r.
void q4k_pack(const uint8_t *b, uint8_t *t, int r, int R) {
    const uint8_t *s = b + 4;
    for (int j = 0; j < 8; ++j) {
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        t[128 * R + R * j + r] = static_cast<uint8_t>(sc);
        t[136 * R + R * j + r] = static_cast<uint8_t>(m);
    }
    for (int jp = 0; jp < 4; ++jp) {
        for (int g = 0; g < 8; ++g) {
            std::memcpy(t + 4 * r + 4 * R * g + 32 * R * jp, b + 16 + 32 * jp + 4 * g, 4);
        }
    }
    std::memcpy(t + 144 * R + 2 * r, b, 2);
    std::memcpy(t + 146 * R + 2 * r, b + 2, 2);
}

void q4k_unpack(const uint8_t *t, int r, int R, uint8_t *b) {
    auto sc = [&](int j) { return t[128 * R + R * j + r]; };
    auto m = [&](int j) { return t[136 * R + R * j + r]; };
    uint8_t *s = b + 4;
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<uint8_t>((sc(j) & 63) | ((sc(j + 4) >> 4) << 6));
        s[j + 4] = static_cast<uint8_t>((m(j) & 63) | ((m(j + 4) >> 4) << 6));
        s[j + 8] = static_cast<uint8_t>((sc(j + 4) & 0x0F) | ((m(j + 4) & 0x0F) << 4));
    }
    for (int jp = 0; jp < 4; ++jp) {
        for (int g = 0; g < 8; ++g) {
            std::memcpy(b + 16 + 32 * jp + 4 * g, t + 4 * r + 4 * R * g + 32 * R * jp, 4);
        }
    }
    std::memcpy(b, t + 144 * R + 2 * r, 2);
    std::memcpy(b + 2, t + 146 * R + 2 * r, 2);
}

const PackRow kPackRows[] = {
    {Format::q4_k, q4k_pack, q4k_unpack},
};

const PackRow &pack_row(Format f) {
    for (const PackRow &p : kPackRows) {
        if (p.format == f && traits(f).packed_block_bytes > 0) return p;
    }
    throw Error(std::string(to_string(f)) + " has no packed layout");
}

[[noreturn]] void fail(const std::string &what) { throw Error("pack: " + what); }

int64_t blocks_per_row(const FormatTraits &t, int64_t in) {
    if (in <= 0 || in % t.block_elements != 0) {
        fail(std::string(t.name) + " weight: in = " + std::to_string(in) + " is not whole blocks of " +
             std::to_string(t.block_elements));
    }
    return in / t.block_elements;
}

void check_rows(int rows) {
    if (rows <= 0 || rows % 4 != 0) fail("tile rows R = " + std::to_string(rows) + " must be a positive multiple of 4");
}

}  // namespace

bool has_packed_layout(Format format) { return traits(format).packed_block_bytes > 0; }

int64_t packed_bytes(Format format, int64_t out, int64_t in, int rows) {
    const FormatTraits &t = traits(format);
    pack_row(format);
    check_rows(rows);
    if (out <= 0) fail(std::string(t.name) + " weight: out = " + std::to_string(out) + " must be positive");
    const int64_t tiles = (out + rows - 1) / rows;
    return tiles * rows * blocks_per_row(t, in) * t.packed_block_bytes;
}

int preferred_pack_rows(Format format) {
    if (!has_packed_layout(format)) return 0;
    const std::string family = internal::cpu_family();
    for (const internal::KernelRow &r : internal::kernel_rows()) {
        if (!r.pack || *r.tag || !r.weights || r.format != format || r.op != internal::Op::matvec) continue;
        if (std::string(" ").append(r.families).append(" ").find(" " + family + " ") == std::string::npos) continue;
        return r.pack;
    }
    return 0;
}

void pack_weights(const Weights &w, int rows, void *dst, int threads) {
    const FormatTraits &t = traits(w.format);
    const PackRow &p = pack_row(w.format);
    if (w.pack_rows) fail("the weight is packed already");
    if (!w.data || !dst) fail("a null pointer");
    const int64_t bytes_total = packed_bytes(w.format, w.out, w.in, rows);
    const int64_t blocks = blocks_per_row(t, w.in);
    const int64_t row_bytes = blocks * t.block_bytes;
    if (w.row_stride != 0 && w.row_stride < row_bytes) {
        fail("row stride " + std::to_string(w.row_stride) + " is smaller than a row's " + std::to_string(row_bytes) + " bytes");
    }
    const int64_t stride = w.row_stride ? w.row_stride : row_bytes;
    const int64_t chunk = rows * t.packed_block_bytes;  // one block of one tile
    const int64_t tiles = bytes_total / (chunk * blocks);
    const auto *src = static_cast<const uint8_t *>(w.data);
    auto *out = static_cast<uint8_t *>(dst);
    auto work = [&](int64_t t0, int64_t t1) {
        for (int64_t tile = t0; tile < t1; ++tile) {
            for (int64_t b = 0; b < blocks; ++b) {
                uint8_t *c = out + (tile * blocks + b) * chunk;
                std::memset(c, 0, chunk);  // pad rows of the last tile stay zero
                for (int r = 0; r < rows; ++r) {
                    const int64_t row = tile * rows + r;
                    if (row >= w.out) break;
                    p.pack(src + row * stride + b * t.block_bytes, c, r, rows);
                }
            }
        }
    };
    int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n = static_cast<int>(std::min<int64_t>(n, tiles));
    std::vector<std::thread> pool;
    for (int i = 1; i < n; ++i) pool.emplace_back(work, tiles * i / n, tiles * (i + 1) / n);
    work(0, tiles / n);
    for (std::thread &th : pool) th.join();
}

void unpack_weights(const Weights &w, void *dst) {
    const FormatTraits &t = traits(w.format);
    const PackRow &p = pack_row(w.format);
    if (!w.pack_rows) fail("the weight is not packed (pack_rows = 0)");
    if (!w.data || !dst) fail("a null pointer");
    packed_bytes(w.format, w.out, w.in, w.pack_rows);  // validates
    const int rows = w.pack_rows;
    const int64_t blocks = blocks_per_row(t, w.in);
    const int64_t chunk = rows * t.packed_block_bytes;
    const auto *src = static_cast<const uint8_t *>(w.data);
    auto *out = static_cast<uint8_t *>(dst);
    for (int64_t row = 0; row < w.out; ++row) {
        const int64_t tile = row / rows;
        for (int64_t b = 0; b < blocks; ++b) {
            p.unpack(src + (tile * blocks + b) * chunk, static_cast<int>(row % rows), rows,
                     out + (row * blocks + b) * t.block_bytes);
        }
    }
}

}  // namespace qforge
