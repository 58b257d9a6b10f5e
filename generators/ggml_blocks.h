// GGUF block formats whose weights dequantize one at a time (FORMATS.md:
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS): the
// bit layout of each, written once, shared by its dequantize and matmul
// generators. Adding such a format is one entry here, its name in
// targets.cmake's QF_BLOCK_FORMATS and a row of runtime/src/formats.cpp.
#pragma once

#include "common.h"

#include <functional>
#include <vector>

namespace qforge {

struct GGMLBlockFormat {
    int block;       // weights per block
    int bytes;       // bytes per block
    int interleave;  // a block is `interleave` runs of block/interleave weights
                     // whose quants sit in consecutive bytes
    // Weight k of run p of block g of row r, as f32, in gguf-py's order of operations.
    std::function<Expr(const Func &bytes, const Expr &g, const Expr &p, const Expr &k, const Expr &r)> weight;

    // The column of (p, k, g), and back.
    Expr column(const Expr &g, const Expr &p, const Expr &k) const {
        return g * block + p * (block / interleave) + k;
    }
    Expr at_column(const Func &bytes, const Expr &c, const Expr &r) const {
        Expr i = c % block;
        return weight(bytes, c / block, i / (block / interleave), i % (block / interleave), r);
    }
};

inline Expr block_f16(const Func &bytes, const Expr &at, const Expr &r) {
    return f16_bits_to_f32(u16_le(bytes(at, r), bytes(at + 1, r)));
}

// Q4_0: f16 d; qs[16]: weight l is the low nibble of qs[l], l + 16 the high one; (q - 8) * d.
inline GGMLBlockFormat q4_0_format() {
    return {32, 18, 2, [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
                Expr base = g * 18;
                Expr q = (b(base + 2 + k, r) >> cast<uint8_t>(4 * p)) & cast<uint8_t>(15);
                return block_f16(b, base, r) * cast<float>(cast<int32_t>(q) - 8);
            }};
}

// Q4_1: f16 d, f16 m; qs[16] as Q4_0's: d * q + m.
inline GGMLBlockFormat q4_1_format() {
    return {32, 20, 2, [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
                Expr base = g * 20;
                Expr q = (b(base + 4 + k, r) >> cast<uint8_t>(4 * p)) & cast<uint8_t>(15);
                return block_f16(b, base, r) * cast<float>(q) + block_f16(b, base + 2, r);
            }};
}

// Bit j (0..31) of the little-endian uint32 qh at byte `at`: the fifth bit of weight j.
inline Expr qh_bit(const Func &b, const Expr &at, const Expr &j, const Expr &r) {
    return (b(at + j / 8, r) >> cast<uint8_t>(j % 8)) & cast<uint8_t>(1);
}

// Q5_0: f16 d; uint32 qh; qs[16]: q = nibble as Q4_0's | bit j of qh << 4; d * (q - 16).
inline GGMLBlockFormat q5_0_format() {
    return {32, 22, 2, [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
                Expr base = g * 22;
                Expr lo = (b(base + 6 + k, r) >> cast<uint8_t>(4 * p)) & cast<uint8_t>(15);
                Expr q = cast<int32_t>(lo | (qh_bit(b, base + 2, 16 * p + k, r) << 4)) - 16;
                return block_f16(b, base, r) * cast<float>(q);
            }};
}

// Q5_1: f16 d, f16 m; uint32 qh; qs[16]: q as Q5_0's without the offset; d * q + m.
inline GGMLBlockFormat q5_1_format() {
    return {32, 24, 2, [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
                Expr base = g * 24;
                Expr lo = (b(base + 8 + k, r) >> cast<uint8_t>(4 * p)) & cast<uint8_t>(15);
                Expr q = lo | (qh_bit(b, base + 4, 16 * p + k, r) << 4);
                return block_f16(b, base, r) * cast<float>(q) + block_f16(b, base + 2, r);
            }};
}

// Q8_0: f16 d; int8 qs[32]: q * d.
inline GGMLBlockFormat q8_0_format() {
    return {32, 34, 1, [](const Func &b, const Expr &g, const Expr &, const Expr &k, const Expr &r) {
                Expr base = g * 34;
                Expr q = reinterpret<int8_t>(b(base + 2 + k, r));
                return cast<float>(q) * block_f16(b, base, r);
            }};
}

// Q6_K: ql[128], qh[64], int8 scales[16], f16 d. Run p = 4h + s (half h,
// quarter s) holds weights 128h + 32s + l; (d * scale) * q as gguf-py.
inline GGMLBlockFormat q6_k_format() {
    return {256, 210, 8, [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
                Expr base = g * 210, h = p / 4, s = p % 4;
                Expr ql = (b(base + 64 * h + 32 * (s % 2) + l, r) >> cast<uint8_t>(4 * (s / 2))) & cast<uint8_t>(15);
                Expr qh = (b(base + 128 + 32 * h + l, r) >> cast<uint8_t>(2 * s)) & cast<uint8_t>(3);
                Expr q = cast<int32_t>(ql | (qh << 4)) - 32;
                Expr scale = cast<float>(reinterpret<int8_t>(b(base + 192 + 8 * h + l / 16 + 2 * s, r)));
                return (block_f16(b, base + 208, r) * scale) * cast<float>(q);
            }};
}

// The K-quants' 6-bit scale and min of sub-block j (0..7), packed in the
// 12 bytes at `at` as Q4_K's (FORMATS.md): every index stays in the 12 bytes.
inline Expr kquant_scale6(const Func &b, const Expr &at, const Expr &j, const Expr &r) {
    Expr i = j % 4;
    Expr lo = b(at + i, r) & cast<uint8_t>(63);
    Expr hi = (b(at + 8 + i, r) & cast<uint8_t>(15)) | ((b(at + i, r) >> cast<uint8_t>(6)) << cast<uint8_t>(4));
    return select(j < 4, lo, hi);
}
inline Expr kquant_min6(const Func &b, const Expr &at, const Expr &j, const Expr &r) {
    Expr i = j % 4;
    Expr lo = b(at + 4 + i, r) & cast<uint8_t>(63);
    Expr hi = (b(at + 8 + i, r) >> cast<uint8_t>(4)) | ((b(at + 4 + i, r) >> cast<uint8_t>(6)) << cast<uint8_t>(4));
    return select(j < 4, lo, hi);
}

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16
// dmin. Run p = 4h + s (half h, shift s) holds weights 32p + l: 2 bits at
// 2s of qs[32h + l], of sub-block j = 8h + 2s + l/16;
// (d * sc) * q - dmin * m as gguf-py.
inline GGMLBlockFormat q2_k_format() {
    return {256, 84, 8, [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
                Expr base = g * 84, h = p / 4, s = p % 4;
                Expr q = (b(base + 16 + 32 * h + l, r) >> cast<uint8_t>(2 * s)) & cast<uint8_t>(3);
                Expr sc = b(base + 8 * h + 2 * s + l / 16, r);
                Expr dl = block_f16(b, base + 80, r) * cast<float>(sc & cast<uint8_t>(15));
                Expr ml = block_f16(b, base + 82, r) * cast<float>(sc >> cast<uint8_t>(4));
                return dl * cast<float>(q) - ml;
            }};
}

// Q3_K: hmask[32], qs[64], scales[12] (16 6-bit signed scales, offset 32),
// f16 d. Run p = 4h + s holds weights 32p + l: 2 low bits at 2s of
// qs[32h + l], minus 4 unless bit p of hmask[l] is set; sub-block p * 2 + l/16.
inline GGMLBlockFormat q3_k_format() {
    return {256, 110, 8, [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
                Expr base = g * 110, h = p / 4, s = p % 4, j = 2 * p + l / 16;
                Expr lo = (b(base + 32 + 32 * h + l, r) >> cast<uint8_t>(2 * s)) & cast<uint8_t>(3);
                Expr hbit = (b(base + l, r) >> cast<uint8_t>(p)) & cast<uint8_t>(1);
                Expr q = cast<int32_t>(lo) - 4 * (1 - cast<int32_t>(hbit));
                Expr sl = (b(base + 96 + j % 8, r) >> cast<uint8_t>(4 * (j / 8))) & cast<uint8_t>(15);
                Expr sh = (b(base + 104 + j % 4, r) >> cast<uint8_t>(2 * (j / 4))) & cast<uint8_t>(3);
                Expr sc = cast<int32_t>(sl | (sh << cast<uint8_t>(4))) - 32;
                return (block_f16(b, base + 108, r) * cast<float>(sc)) * cast<float>(q);
            }};
}

// Q5_K: f16 d, f16 dmin, scales[12] (as Q4_K's), qh[32], qs[128]. Run p
// (sub-block) holds weights 32p + l: nibble p % 2 of qs[32(p/2) + l], bit p
// of qh[l] on top; (d * sc) * q - dmin * m as gguf-py.
inline GGMLBlockFormat q5_k_format() {
    return {256, 176, 8, [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
                Expr base = g * 176;
                Expr lo = (b(base + 48 + 32 * (p / 2) + l, r) >> cast<uint8_t>(4 * (p % 2))) & cast<uint8_t>(15);
                Expr hi = (b(base + 16 + l, r) >> cast<uint8_t>(p)) & cast<uint8_t>(1);
                Expr q = lo | (hi << cast<uint8_t>(4));
                Expr dl = block_f16(b, base, r) * cast<float>(kquant_scale6(b, base + 4, p, r));
                Expr ml = block_f16(b, base + 2, r) * cast<float>(kquant_min6(b, base + 4, p, r));
                return dl * cast<float>(q) - ml;
            }};
}

// An IQ4 level (kIQ4Levels) as int8.
inline Expr iq4_level(const Expr &nibble) { return nibble_lut(nibble, [](int i) { return kIQ4Levels[i]; }, Int(8)); }

// IQ4_NL: f16 d; qs[16] as Q4_0's, each nibble an index into the levels; d * level.
inline GGMLBlockFormat iq4_nl_format() {
    return {32, 18, 2, [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
                Expr base = g * 18;
                Expr q = (b(base + 2 + k, r) >> cast<uint8_t>(4 * p)) & cast<uint8_t>(15);
                return block_f16(b, base, r) * cast<float>(iq4_level(q));
            }};
}

// IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128]. Sub-block j (8 of 32)
// has the 6-bit scale (nibble j % 2 of scales_l[j/2] | bits 2j.. of
// scales_h << 4) - 32; run p = 2j + a holds weights 16p + l: nibble a of
// qs[16j + l], a level as IQ4_NL's; (d * scale) * level.
inline GGMLBlockFormat iq4_xs_format() {
    return {256, 136, 16, [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
                Expr base = g * 136, j = p / 2, a = p % 2;
                Expr q = (b(base + 8 + 16 * j + l, r) >> cast<uint8_t>(4 * a)) & cast<uint8_t>(15);
                Expr sl = (b(base + 4 + j / 2, r) >> cast<uint8_t>(4 * (j % 2))) & cast<uint8_t>(15);
                Expr sh = (b(base + 2 + j / 4, r) >> cast<uint8_t>(2 * (j % 4))) & cast<uint8_t>(3);
                Expr sc = cast<int32_t>(sl | (sh << cast<uint8_t>(4))) - 32;
                return (block_f16(b, base, r) * cast<float>(sc)) * cast<float>(iq4_level(q));
            }};
}

inline GGMLBlockFormat ggml_block_format(const std::string &name) {
    if (name == "q4_0") return q4_0_format();
    if (name == "q4_1") return q4_1_format();
    if (name == "q5_0") return q5_0_format();
    if (name == "q5_1") return q5_1_format();
    if (name == "q8_0") return q8_0_format();
    if (name == "q6_k") return q6_k_format();
    if (name == "q2_k") return q2_k_format();
    if (name == "q3_k") return q3_k_format();
    if (name == "q5_k") return q5_k_format();
    if (name == "iq4_nl") return iq4_nl_format();
    if (name == "iq4_xs") return iq4_xs_format();
    throw CompileError("qforge: unknown block format '" + name +
                       "' (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q5_k, q6_k, iq4_nl, iq4_xs)");
}

}  // namespace qforge
