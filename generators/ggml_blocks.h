// GGUF block formats whose weights dequantize one at a time (FORMATS.md:
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q6_K): the bit layout of each, written once, shared by its
// dequantize and matmul generators. Adding such a format is one entry here
// plus a row per kernel in targets/targets.cmake.
#pragma once

#include "common.h"

#include <functional>

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

inline GGMLBlockFormat ggml_block_format(const std::string &name) {
    if (name == "q4_0") return q4_0_format();
    if (name == "q4_1") return q4_1_format();
    if (name == "q5_0") return q5_0_format();
    if (name == "q5_1") return q5_1_format();
    if (name == "q8_0") return q8_0_format();
    if (name == "q6_k") return q6_k_format();
    throw CompileError("qforge: unknown block format '" + name + "' (q4_0, q4_1, q5_0, q5_1, q8_0, q6_k)");
}

}  // namespace qforge
