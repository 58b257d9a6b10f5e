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

#include "qforge/gguf.h"
#include "gate_up.h"
#include "registry.h"

namespace qforge {
namespace {

// Where one row's block lives in the file's layout (and its scale, for
// formats that keep scales apart), for both directions of the shuffle.
struct RowBlock {
    const Weights &w;
    int64_t row, block;
    int64_t stride;  // bytes between the file's rows
    const uint8_t *src() const {
        const FormatTraits &t = traits(w.format);
        return static_cast<const uint8_t *>(w.data) + row * stride +
               block * t.packed_block_elements / t.block_elements * t.block_bytes;
    }
};

// One format's shuffle: a row's block <-> row r of a packed run of R rows.
// unpack writes the block's file bytes to `dst` and, for int4g, its
// group's scale to `scale` (the last block of a group writes it).
struct PackRow {
    Format format;
    void (*pack)(const RowBlock &b, uint8_t *run, int r, int R);
    void (*unpack)(const uint8_t *run, int r, int R, uint8_t *dst, uint16_t *scale);
    uint8_t (*zero)(const uint8_t *run, int r, int R) = nullptr;  // int4z: the block's zero point
};

// Runs of 32 bytes per row: byte 4g + b (g 0..7) of run q of row r at b +
// 4r + 4Rg + 32Rq, so that one vector load gives 4 consecutive bytes of
// every row of the tile. `src`/`dst` are the row's `runs` x 32 bytes.
void put_runs(uint8_t *t, int r, int R, const uint8_t *src, int runs) {
    for (int q = 0; q < runs; ++q) {
        for (int g = 0; g < 8; ++g) std::memcpy(t + 4 * r + 4 * R * g + 32 * R * q, src + 32 * q + 4 * g, 4);
    }
}
void get_runs(const uint8_t *t, int r, int R, uint8_t *dst, int runs) {
    for (int q = 0; q < runs; ++q) {
        for (int g = 0; g < 8; ++g) std::memcpy(dst + 32 * q + 4 * g, t + 4 * r + 4 * R * g + 32 * R * q, 4);
    }
}

// Q4_K, 148 R bytes per super-block of a tile: quants [128 R] with byte b
// of group g of chunk jp of row r at b + 4r + 4Rg + 32R jp (Q4_K's own
// nibble pairing kept), sc [8 R] at 128R + Rj + r, m [8 R] at 136R + Rj + r,
// d (f16) at 144R + 2r, dmin (f16) at 146R + 2r. `dm` is the file's d,
// dmin and 12 scale bytes (Q4_K's and Q5_K's first 16 bytes), `qs` its
// 128 quant bytes.
void q4k_fields_pack(const uint8_t *dm, const uint8_t *qs, uint8_t *t, int r, int R) {
    const uint8_t *s = dm + 4;
    for (int j = 0; j < 8; ++j) {
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        t[128 * R + R * j + r] = static_cast<uint8_t>(sc);
        t[136 * R + R * j + r] = static_cast<uint8_t>(m);
    }
    put_runs(t, r, R, qs, 4);
    std::memcpy(t + 144 * R + 2 * r, dm, 2);
    std::memcpy(t + 146 * R + 2 * r, dm + 2, 2);
}

void q4k_fields_unpack(const uint8_t *t, int r, int R, uint8_t *dm, uint8_t *qs) {
    auto sc = [&](int j) { return t[128 * R + R * j + r]; };
    auto m = [&](int j) { return t[136 * R + R * j + r]; };
    uint8_t *s = dm + 4;
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<uint8_t>((sc(j) & 63) | ((sc(j + 4) >> 4) << 6));
        s[j + 4] = static_cast<uint8_t>((m(j) & 63) | ((m(j + 4) >> 4) << 6));
        s[j + 8] = static_cast<uint8_t>((sc(j + 4) & 0x0F) | ((m(j + 4) & 0x0F) << 4));
    }
    get_runs(t, r, R, qs, 4);
    std::memcpy(dm, t + 144 * R + 2 * r, 2);
    std::memcpy(dm + 2, t + 146 * R + 2 * r, 2);
}

void q4k_pack(const RowBlock &rb, uint8_t *t, int r, int R) { q4k_fields_pack(rb.src(), rb.src() + 16, t, r, R); }
void q4k_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) { q4k_fields_unpack(t, r, R, b, b + 16); }

// Q5_K, 180 R bytes: packed Q4_K's fields from the file's d, dmin, scales
// and qs (at 48), then qh [32 R], the file's qh[4g + b] at 148R + b + 4r + 4Rg.
void q5k_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    q4k_fields_pack(b, b + 48, t, r, R);
    put_runs(t + 148 * R, r, R, b + 16, 1);
}
void q5k_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    q4k_fields_unpack(t, r, R, b, b + 48);
    get_runs(t + 148 * R, r, R, b + 16, 1);
}

// Q3_K, 114 R bytes: qs [64 R], the file's qs[32c + 4g + b] at b + 4r +
// 4Rg + 32Rc; hmask [32 R] at 64R + b + 4r + 4Rg; the 16 scales decoded to
// int8 (sc - 32) at 96R + Rj + r; d (f16) at 112R + 2r.
void q3k_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    const uint8_t *s = b + 96;
    put_runs(t, r, R, b + 32, 2);
    put_runs(t + 64 * R, r, R, b, 1);
    for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        t[96 * R + R * j + r] = static_cast<uint8_t>((lo | hi << 4) - 32);
    }
    std::memcpy(t + 112 * R + 2 * r, b + 108, 2);
}
void q3k_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    get_runs(t, r, R, b + 32, 2);
    get_runs(t + 64 * R, r, R, b, 1);
    auto sc = [&](int j) { return static_cast<uint8_t>(t[96 * R + R * j + r] + 32); };  // 0..63
    uint8_t *s = b + 96;
    for (int j = 0; j < 8; ++j) s[j] = static_cast<uint8_t>((sc(j) & 0xF) | (sc(j + 8) & 0xF) << 4);
    for (int m = 0; m < 4; ++m) {
        s[8 + m] = 0;
        for (int q = 0; q < 4; ++q) s[8 + m] |= static_cast<uint8_t>((sc(4 * q + m) >> 4) << (2 * q));
    }
    std::memcpy(b + 108, t + 112 * R + 2 * r, 2);
}

// Q2_K, 84 R bytes: qs [64 R] as Q3_K's (from the file's qs at 16), the
// file's 16 scale bytes at 64R + Rj + r, d at 80R + 2r, dmin at 82R + 2r.
void q2k_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    put_runs(t, r, R, b + 16, 2);
    for (int j = 0; j < 16; ++j) t[64 * R + R * j + r] = b[j];
    std::memcpy(t + 80 * R + 2 * r, b + 80, 2);
    std::memcpy(t + 82 * R + 2 * r, b + 82, 2);
}
void q2k_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    get_runs(t, r, R, b + 16, 2);
    for (int j = 0; j < 16; ++j) b[j] = t[64 * R + R * j + r];
    std::memcpy(b + 80, t + 80 * R + 2 * r, 2);
    std::memcpy(b + 82, t + 82 * R + 2 * r, 2);
}

// Packed 32-blocks (Q4_0, int4g), 18 R bytes per block of a tile: quants
// [16 R] with byte l = 4g + b (low nibble: weight l, high: weight l + 16,
// Q4_0's pairing) of row r at b + 4r + 4Rg, then the block's scale (f16) at
// 16R + 2r.
void put_block32(uint8_t *t, int r, int R, const uint8_t q[16], const uint8_t d[2]) {
    for (int g = 0; g < 4; ++g) std::memcpy(t + 4 * r + 4 * R * g, q + 4 * g, 4);
    std::memcpy(t + 16 * R + 2 * r, d, 2);
}
void get_block32(const uint8_t *t, int r, int R, uint8_t q[16], uint8_t d[2]) {
    for (int g = 0; g < 4; ++g) std::memcpy(q + 4 * g, t + 4 * r + 4 * R * g, 4);
    std::memcpy(d, t + 16 * R + 2 * r, 2);
}

void q4_0_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    put_block32(t, r, R, b + 2, b);
}
void q4_0_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) { get_block32(t, r, R, b + 2, b); }

// Q4_1, Q5_0, Q5_1 (20, 22, 24 R bytes per block of a tile): quants as
// Q4_0's [16 R]; for Q5_*, qh [4 R] with byte b of row r at 16R + 4r + b
// holding the fifth bits of weights 4g + b (bit 2g) and 16 + 4g + b (bit
// 2g + 1), g 0..3; then d (f16) [2 R]; then, for Q4_1 and Q5_1, m (f16)
// [2 R]. kQs, kQh, kM: the fields' offsets in the file's block (-1: none).
template <int kQs, int kQh, int kM>
void block32_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    const int d_at = kQh >= 0 ? 20 : 16;  // in units of R bytes
    for (int g = 0; g < 4; ++g) std::memcpy(t + 4 * r + 4 * R * g, b + kQs + 4 * g, 4);
    std::memcpy(t + d_at * R + 2 * r, b, 2);
    if (kQh >= 0) {
        const uint32_t h = b[kQh] | (b[kQh + 1] << 8) | (b[kQh + 2] << 16) | (static_cast<uint32_t>(b[kQh + 3]) << 24);
        for (int b4 = 0; b4 < 4; ++b4) {
            uint8_t v = 0;
            for (int g = 0; g < 4; ++g) {
                v |= static_cast<uint8_t>(((h >> (4 * g + b4)) & 1) << (2 * g));
                v |= static_cast<uint8_t>(((h >> (16 + 4 * g + b4)) & 1) << (2 * g + 1));
            }
            t[16 * R + 4 * r + b4] = v;
        }
    }
    if (kM >= 0) std::memcpy(t + (d_at + 2) * R + 2 * r, b + kM, 2);
}
template <int kQs, int kQh, int kM>
void block32_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    const int d_at = kQh >= 0 ? 20 : 16;
    for (int g = 0; g < 4; ++g) std::memcpy(b + kQs + 4 * g, t + 4 * r + 4 * R * g, 4);
    std::memcpy(b, t + d_at * R + 2 * r, 2);
    if (kQh >= 0) {
        uint32_t h = 0;
        for (int b4 = 0; b4 < 4; ++b4) {
            const uint8_t v = t[16 * R + 4 * r + b4];
            for (int g = 0; g < 4; ++g) {
                h |= static_cast<uint32_t>((v >> (2 * g)) & 1) << (4 * g + b4);
                h |= static_cast<uint32_t>((v >> (2 * g + 1)) & 1) << (16 + 4 * g + b4);
            }
        }
        for (int k = 0; k < 4; ++k) b[kQh + k] = static_cast<uint8_t>(h >> (8 * k));
    }
    if (kM >= 0) std::memcpy(b + kM, t + (d_at + 2) * R + 2 * r, 2);
}

// int4g: byte k holds columns 2k (low) and 2k + 1; packed, Q4_0's pairing.
// Every block carries its group's scale (G is a multiple of 32).
void int4g_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    auto nib = [&](int c) { return (b[c / 2] >> (4 * (c % 2))) & 15; };
    uint8_t q[16];
    for (int l = 0; l < 16; ++l) q[l] = static_cast<uint8_t>(nib(l) | (nib(l + 16) << 4));
    const int64_t scales_stride = rb.w.scales_stride ? rb.w.scales_stride : (rb.w.in + rb.w.group_size - 1) / rb.w.group_size;
    const uint16_t s = rb.w.scales[rb.row * scales_stride + rb.block * 32 / rb.w.group_size];
    put_block32(t, r, R, q, reinterpret_cast<const uint8_t *>(&s));
}
void int4g_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *scale) {
    uint8_t q[16];
    get_block32(t, r, R, q, reinterpret_cast<uint8_t *>(scale));
    auto nib = [&](int c) { return c < 16 ? q[c] & 15 : q[c - 16] >> 4; };
    for (int k = 0; k < 16; ++k) b[k] = static_cast<uint8_t>(nib(2 * k) | (nib(2 * k + 1) << 4));
}

// int4z: int4g's 18 R bytes, then the block's zero point (its group's) at 18R + r.
void int4z_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    int4g_pack(rb, t, r, R);
    const int64_t groups = (rb.w.in + rb.w.group_size - 1) / rb.w.group_size;
    const int64_t stride = rb.w.zeros_stride ? rb.w.zeros_stride : groups;
    t[18 * R + r] = rb.w.zeros[rb.row * stride + rb.block * 32 / rb.w.group_size];
}
uint8_t int4z_zero(const uint8_t *t, int r, int R) { return t[18 * R + r]; }

// Q6_K, 210 R bytes per super-block of a tile (the file's own bit
// pairings kept): ql [128 R] with byte 4g + b of run q (0..3) of row r, the
// file's ql[32q + 4g + b], at b + 4r + 4Rg + 32R q; qh [64 R] likewise, the
// file's qh[32c + 4g + b] at 128R + b + 4r + 4Rg + 32R c; scales [16 R] at
// 192R + Rj + r; d (f16) at 208R + 2r.
void q6k_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    put_runs(t, r, R, b, 6);  // 4 runs of ql, 2 of qh: contiguous in both layouts
    for (int j = 0; j < 16; ++j) t[192 * R + R * j + r] = b[192 + j];
    std::memcpy(t + 208 * R + 2 * r, b + 208, 2);
}

void q6k_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    get_runs(t, r, R, b, 6);
    for (int j = 0; j < 16; ++j) b[192 + j] = t[192 * R + R * j + r];
    std::memcpy(b + 208, t + 208 * R + 2 * r, 2);
}

// Q8_0, 34 R bytes per block of a tile: qs [32 R] with byte 4g + b (g in
// 0..7) of row r at b + 4r + 4Rg, then d (f16) at 32R + 2r.
void q8_0_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    put_runs(t, r, R, b + 2, 1);
    std::memcpy(t + 32 * R + 2 * r, b, 2);
}

void q8_0_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    get_runs(t, r, R, b + 2, 1);
    std::memcpy(b, t + 32 * R + 2 * r, 2);
}

// IQ4_XS, 138 R bytes per super-block of a tile: quants [128 R] in packed
// Q4_K's places and nibble pairing (byte l of chunk c: sub-block 2c's
// weight l in the low nibble, 2c + 1's in the high), where the file has
// sub-block j's weights l and l + 16 in the low and high nibbles of
// qs[16j + l]; the 8 scales decoded to int8 (ls - 32) at 128R + Rj + r; d
// (f16) at 136R + 2r.
void iq4xs_pack(const RowBlock &rb, uint8_t *t, int r, int R) {
    const uint8_t *b = rb.src();
    const uint8_t *qs = b + 8;
    auto q = [&](int j, int l) { return (qs[16 * j + l % 16] >> (4 * (l / 16))) & 15; };
    uint8_t k[128];
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) k[32 * c + l] = static_cast<uint8_t>(q(2 * c, l) | q(2 * c + 1, l) << 4);
    }
    put_runs(t, r, R, k, 4);
    const int sh = b[2] | b[3] << 8;
    for (int j = 0; j < 8; ++j) {
        const int ls = ((b[4 + j / 2] >> (4 * (j % 2))) & 15) | ((sh >> (2 * j)) & 3) << 4;
        t[128 * R + R * j + r] = static_cast<uint8_t>(ls - 32);
    }
    std::memcpy(t + 136 * R + 2 * r, b, 2);
}
void iq4xs_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) {
    uint8_t k[128];
    get_runs(t, r, R, k, 4);
    auto q = [&](int j, int l) { return (k[32 * (j / 2) + l] >> (4 * (j % 2))) & 15; };
    for (int j = 0; j < 8; ++j) {
        for (int l = 0; l < 16; ++l) b[8 + 16 * j + l] = static_cast<uint8_t>(q(j, l) | q(j, l + 16) << 4);
    }
    int sh = 0;
    for (int j = 0; j < 8; ++j) {
        const int ls = static_cast<uint8_t>(t[128 * R + R * j + r] + 32) & 63;
        if (j % 2 == 0) b[4 + j / 2] = 0;
        b[4 + j / 2] |= static_cast<uint8_t>((ls & 15) << (4 * (j % 2)));
        sh |= (ls >> 4) << (2 * j);
    }
    b[2] = static_cast<uint8_t>(sh);
    b[3] = static_cast<uint8_t>(sh >> 8);
    std::memcpy(b, t + 136 * R + 2 * r, 2);
}

// int8, 32 R bytes per block: put_runs of the row's 32-byte units, the
// head first, so its f32 scale lands at 4r of the tile's head block.
void int8_pack(const RowBlock &rb, uint8_t *t, int r, int R) { put_runs(t, r, R, rb.src(), 1); }
void int8_unpack(const uint8_t *t, int r, int R, uint8_t *b, uint16_t *) { get_runs(t, r, R, b, 1); }

const PackRow kPackRows[] = {
    {Format::int8, int8_pack, int8_unpack},
    {Format::q4_k, q4k_pack, q4k_unpack},
    {Format::q6_k, q6k_pack, q6k_unpack},
    {Format::q8_0, q8_0_pack, q8_0_unpack},
    {Format::q4_0, q4_0_pack, q4_0_unpack},
    {Format::int4g, int4g_pack, int4g_unpack},
    {Format::int4z, int4z_pack, int4g_unpack, int4z_zero},
    {Format::q4_1, block32_pack<4, -1, 2>, block32_unpack<4, -1, 2>},
    {Format::q5_0, block32_pack<6, 2, -1>, block32_unpack<6, 2, -1>},
    {Format::q5_1, block32_pack<8, 4, 2>, block32_unpack<8, 4, 2>},
    {Format::q5_k, q5k_pack, q5k_unpack},
    {Format::q3_k, q3k_pack, q3k_unpack},
    {Format::q2_k, q2k_pack, q2k_unpack},
    {Format::iq4_nl, q4_0_pack, q4_0_unpack},  // Q4_0's block bytes; the nibbles index levels
    {Format::iq4_xs, iq4xs_pack, iq4xs_unpack},
};

const PackRow &pack_row(Format f) {
    for (const PackRow &p : kPackRows) {
        if (p.format == f && traits(f).packed_block_bytes > 0) return p;
    }
    throw Error(std::string(to_string(f)) + " has no packed layout");
}

[[noreturn]] void fail(const std::string &what) { throw Error("pack: " + what); }

int64_t blocks_per_row(const FormatTraits &t, int64_t in) {
    if (in <= 0 || in % t.packed_block_elements != 0) {
        fail(std::string(t.name) + " weight: in = " + std::to_string(in) + " is not whole blocks of " +
             std::to_string(t.packed_block_elements));
    }
    // A row head (int8: the f32 scale) is one more block, the first: a
    // tile's head block holds its R rows' heads (FORMATS.md, "Packed int8").
    return in / t.packed_block_elements + (t.row_head_bytes ? 1 : 0);
}

void check_rows(int rows) {
    if (rows <= 0 || rows % 4 != 0) fail("tile rows R = " + std::to_string(rows) + " must be a positive multiple of 4");
}

void check_group(const Weights &w) {
    if (!traits(w.format).separate_scales) return;
    if (w.group_size <= 0 || w.group_size % 32 != 0) {
        fail(std::string(traits(w.format).name) + " group size " + std::to_string(w.group_size) +
             " is not a multiple of 32 (a packed block's 32 values share one scale)");
    }
}

}  // namespace

bool has_packed_layout(Format format) { return traits(format).packed_block_bytes > 0; }

int64_t packed_row_blocks(Format format, int64_t in) { return blocks_per_row(traits(format), in); }

int64_t packed_bytes(Format format, int64_t out, int64_t in, int rows) {
    const FormatTraits &t = traits(format);
    pack_row(format);
    check_rows(rows);
    if (out <= 0) fail(std::string(t.name) + " weight: out = " + std::to_string(out) + " must be positive");
    const int64_t tiles = (out + rows - 1) / rows;
    return tiles * rows * blocks_per_row(t, in) * t.packed_block_bytes;
}

std::string target_family(const std::string &target) {
    for (const internal::TargetRow &t : internal::target_rows()) {
        if (target == t.name || target == t.family) {
            if (std::string(t.family) == "cuda") break;
            return t.family;
        }
    }
    for (const char *f : {"x86", "arm64"}) {
        if (target == f) return f;  // a family whose targets this build does not compile
    }
    throw Error("pack: unknown target '" + target + "' (a CPU family, x86 or arm64, or a target name of this build)");
}

int preferred_pack_rows(Format format, int group_size) {
    const std::string family = internal::cpu_family();
    return family.empty() ? 0 : pack_rows_for(family, format, group_size);
}

// The pack column of the rows built for `family`. The kernel table lists
// every family's rows, whatever this build compiles.
int pack_rows_for(const std::string &target, Format format, int group_size) {
    const std::string family = target_family(target);
    if (!has_packed_layout(format)) return 0;
    for (const internal::KernelRow &r : internal::kernel_rows()) {
        if (!r.pack || *r.tag || !r.weights || r.format != format || r.op != internal::Op::matvec) continue;
        if (traits(format).separate_scales && r.group != group_size) continue;
        if (std::string(" ").append(r.families).append(" ").find(" " + family + " ") == std::string::npos) continue;
        return r.pack;
    }
    return 0;
}

namespace {

// pack_weights with tile t at dst + t * tile_stride (0: the tiles side by
// side), so that pack_gate_up can pack each of its halves straight into
// its place in the tile pairs.
void pack_tiles(const Weights &w, int rows, uint8_t *out, int64_t tile_stride, int threads) {
    const FormatTraits &t = traits(w.format);
    const PackRow &p = pack_row(w.format);
    if (w.pack_rows) fail("the weight is packed already");
    if (!w.data || !out) fail("a null pointer");
    const int64_t bytes_total = packed_bytes(w.format, w.out, w.in, rows);
    check_group(w);
    if (t.separate_scales && !w.scales) fail(std::string(t.name) + " scales are a null pointer");
    if (t.zero_points && !w.zeros) fail(std::string(t.name) + " zero points are a null pointer");
    const int64_t blocks = blocks_per_row(t, w.in);
    const int64_t row_bytes = qforge::row_bytes(w.format, w.in);
    if (w.row_stride != 0 && w.row_stride < row_bytes) {
        fail("row stride " + std::to_string(w.row_stride) + " is smaller than a row's " + std::to_string(row_bytes) + " bytes");
    }
    const int64_t stride = w.row_stride ? w.row_stride : row_bytes;
    const int64_t chunk = rows * t.packed_block_bytes;  // one block of one tile
    const int64_t tiles = bytes_total / (chunk * blocks);
    if (tile_stride == 0) tile_stride = chunk * blocks;
    auto work = [&](int64_t t0, int64_t t1) {
        for (int64_t tile = t0; tile < t1; ++tile) {
            for (int64_t b = 0; b < blocks; ++b) {
                uint8_t *c = out + tile * tile_stride + b * chunk;
                std::memset(c, 0, chunk);  // pad rows of the last tile stay zero
                for (int r = 0; r < rows; ++r) {
                    const int64_t row = tile * rows + r;
                    if (row >= w.out) break;
                    p.pack(RowBlock{w, row, b, stride}, c, r, rows);
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

}  // namespace

void pack_weights(const Weights &w, int rows, void *dst, int threads) {
    pack_tiles(w, rows, static_cast<uint8_t *>(dst), 0, threads);
}

void internal::pack_gate_up_into(const Weights &gate, const Weights &up, int rows, uint8_t *dst, int threads) {
    if (gate.format != up.format || gate.out != up.out || gate.in != up.in || gate.group_size != up.group_size) {
        fail("gate [" + std::to_string(gate.out) + ", " + std::to_string(gate.in) + "] " + to_string(gate.format) +
             " and up [" + std::to_string(up.out) + ", " + std::to_string(up.in) + "] " + to_string(up.format) +
             " differ: tile pairs need one format, shape and group size");
    }
    const int64_t half = packed_bytes(gate.format, gate.out, gate.in, rows);
    const int64_t tiles = (gate.out + rows - 1) / rows, tile = half / tiles;
    pack_tiles(gate, rows, dst, 2 * tile, threads);
    pack_tiles(up, rows, dst + tile, 2 * tile, threads);
}

std::vector<uint8_t> pack_gate_up(const Weights &gate, const Weights &up, int rows, int threads) {
    std::vector<uint8_t> out(2 * packed_bytes(gate.format, gate.out, gate.in, rows));
    internal::pack_gate_up_into(gate, up, rows, out.data(), threads);
    return out;
}

void unpack_weights(const Weights &w, void *dst) {
    const FormatTraits &t = traits(w.format);
    const PackRow &p = pack_row(w.format);
    if (!w.pack_rows) fail("the weight is not packed (pack_rows = 0)");
    if (!w.data || !dst) fail("a null pointer");
    packed_bytes(w.format, w.out, w.in, w.pack_rows);  // validates
    check_group(w);
    const int rows = w.pack_rows;
    const int64_t blocks = blocks_per_row(t, w.in);
    const int64_t chunk = rows * t.packed_block_bytes;
    const int64_t block_file_bytes = t.packed_block_elements / t.block_elements * t.block_bytes;
    const int64_t groups = t.separate_scales ? (w.in + w.group_size - 1) / w.group_size : 0;
    const auto *src = static_cast<const uint8_t *>(w.data);
    auto *out = static_cast<uint8_t *>(dst);
    auto *scales = reinterpret_cast<uint16_t *>(out + w.out * blocks * block_file_bytes);
    uint8_t *zeros = out + w.out * blocks * block_file_bytes + w.out * groups * 2;  // int4z: after the scales
    for (int64_t row = 0; row < w.out; ++row) {
        const int64_t tile = row / rows;
        for (int64_t b = 0; b < blocks; ++b) {
            uint16_t scale = 0;
            const uint8_t *run = src + (tile * blocks + b) * chunk;
            p.unpack(run, static_cast<int>(row % rows), rows, out + (row * blocks + b) * block_file_bytes, &scale);
            if (groups) std::memcpy(scales + row * groups + b * 32 / w.group_size, &scale, 2);
            if (p.zero) zeros[row * groups + b * 32 / w.group_size] = p.zero(run, static_cast<int>(row % rows), rows);
        }
    }
}

namespace {

std::string pack_key(const std::string &name, const char *field) { return "qforge.pack." + name + "." + field; }

}  // namespace

std::optional<PackedTensor> packed_tensor(const GGUFFile &f, const std::string &name) {
    const auto &md = f.metadata();
    const auto it = md.find(pack_key(name, "format"));
    if (it == md.end()) return std::nullopt;
    auto get = [&](const char *field) -> const GGUFValue & {
        const auto v = md.find(pack_key(name, field));
        if (v == md.end()) throw Error(f.path() + ": packed tensor '" + name + "' has no key " + pack_key(name, field));
        return v->second;
    };
    auto integer = [&](const char *field, int64_t lo, int64_t hi) {
        const GGUFValue &v = get(field);
        if (v.type == GGUFValue::Type::string || v.type == GGUFValue::Type::array || v.type == GGUFValue::Type::f32 ||
            v.type == GGUFValue::Type::f64 || v.i < lo || v.i > hi) {
            throw Error(f.path() + ": " + pack_key(name, field) + " must be an integer in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "]");
        }
        return v.i;
    };
    if (it->second.type != GGUFValue::Type::string) throw Error(f.path() + ": " + pack_key(name, "format") + " is not a string");
    PackedTensor p;
    p.format = format_from_string(it->second.s);
    p.out = integer("out", 1, int64_t{1} << 31);
    p.in = integer("in", 1, int64_t{1} << 31);
    p.group_size = static_cast<int>(integer("group", 0, 1 << 20));
    p.rows = static_cast<int>(integer("rows", 4, 1024));
    const GGUFValue &fam = get("family");
    if (fam.type != GGUFValue::Type::string) throw Error(f.path() + ": " + pack_key(name, "family") + " is not a string");
    p.family = fam.s;
    if (md.count(pack_key(name, "experts"))) p.experts = integer("experts", 1, int64_t{1} << 20);
    const TensorView &t = f.tensor(name);
    const int64_t want = std::max<int64_t>(p.experts, 1) * p.matrix_bytes();
    if (t.type != DType::i8 || t.shape.size() != 1 || static_cast<int64_t>(t.bytes) != want) {
        const std::string stack = p.experts ? std::to_string(p.experts) + " x " : "";
        throw Error(f.path() + ": packed tensor '" + name + "' is " + to_string(t.type) + " of " + std::to_string(t.bytes) +
                    " bytes; its keys say I8 [" + std::to_string(want) + "] (" + stack + to_string(p.format) + " [" +
                    std::to_string(p.out) + ", " + std::to_string(p.in) + "] in tiles of " + std::to_string(p.rows) + ")");
    }
    return p;
}

int64_t PackedTensor::matrix_bytes() const { return packed_bytes(format, out, in, rows); }

void add_packed_tensor(GGUFWriter &out, const std::string &name, const Weights &w, const PackedTensor &p) {
    const int64_t matrix = packed_bytes(w.format, w.out, w.in, p.rows);
    if (p.experts > 0 && traits(w.format).separate_scales) fail("a stack of experts keeps no separate scales");
    std::vector<uint8_t> bytes(std::max<int64_t>(p.experts, 1) * matrix);
    for (int64_t e = 0; e < std::max<int64_t>(p.experts, 1); ++e) {
        Weights one = w;
        if (e > 0) one.data = static_cast<const uint8_t *>(w.data) + e * weight_bytes(w.format, w.out, w.in);
        pack_weights(one, p.rows, bytes.data() + e * matrix);
    }
    out.add_tensor(name, DType::i8, {static_cast<int64_t>(bytes.size())}, bytes.data(), bytes.size());
    out.set_string(pack_key(name, "format"), to_string(w.format));
    out.set_u32(pack_key(name, "out"), static_cast<uint32_t>(w.out));
    out.set_u32(pack_key(name, "in"), static_cast<uint32_t>(w.in));
    out.set_u32(pack_key(name, "group"), static_cast<uint32_t>(traits(w.format).separate_scales ? w.group_size : 0));
    out.set_u32(pack_key(name, "rows"), static_cast<uint32_t>(p.rows));
    out.set_string(pack_key(name, "family"), p.family);
    if (p.experts > 0) out.set_u32(pack_key(name, "experts"), static_cast<uint32_t>(p.experts));
}

}  // namespace qforge
