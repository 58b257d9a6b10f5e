// GGUF block formats whose weights dequantize one at a time (FORMATS.md:
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS; and
// qforge's per-channel int8 and fp8 rows, whose scale heads each row): the
// bit layout of each, written once, shared by its dequantize and matmul
// generators. Adding such a format is one entry here, its name in
// targets.cmake's QF_BLOCK_FORMATS and a row of runtime/src/formats.cpp.
#pragma once

#include "common.h"

#include <cmath>
#include <functional>
#include <vector>

namespace qforge {

// A format as integers and the floats that scale them, the way the 8-bit
// kernels multiply: weight = (d * sc) * q - min_d * m (K-quants) or
// d * q + min_d (Q4_1, Q5_1: m absent), q an 8-bit integer per weight, sc
// and m integers per sub-block of `sub` weights (sc absent: 1; min_d
// absent: no min term). gguf-py's dequantization is the same expression,
// rounding for rounding (weight(); a subtraction, not the sum of a
// negated m, which would turn gguf-py's -0 into +0 where m = 0).
struct GGMLBlockFormat {
    using Block = std::function<Expr(const Func &bytes, const Expr &g, const Expr &r)>;
    using Sub = std::function<Expr(const Func &bytes, const Expr &g, const Expr &j, const Expr &r)>;
    int block;       // weights per block
    int bytes;       // bytes per block
    int interleave;  // a block is `interleave` runs of block/interleave weights
                     // whose quants sit in consecutive bytes
    int sub;         // weights per sub-block (sc, m); `block` where there is none
    // q of weight k of run p of block g of row r: int8, or uint8 where it is never negative
    // (fp8: its f32 value, which only the f32 kernels read).
    std::function<Expr(const Func &bytes, const Expr &g, const Expr &p, const Expr &k, const Expr &r)> quant;
    Block d;         // f32
    Sub sc;          // int32, or none
    Block min_d;     // f32, or none
    Sub m;           // int32, or none (min_d is the min itself)

    int run() const { return block / interleave; }
    // Weight k of run p of block g of row r, as f32, in gguf-py's order of operations.
    Expr weight(const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) const {
        const Expr j = (p * run() + k) / sub;
        Expr scale = sc ? d(b, g, r) * cast<float>(sc(b, g, j, r)) : d(b, g, r);
        Expr w = scale * cast<float>(quant(b, g, p, k, r));
        if (!min_d) return w;
        return m ? w - min_d(b, g, r) * cast<float>(m(b, g, j, r)) : w + min_d(b, g, r);
    }

    // The column of (p, k, g), and back.
    Expr column(const Expr &g, const Expr &p, const Expr &k) const {
        return g * block + p * run() + k;
    }
    Expr at_column(const Func &bytes, const Expr &c, const Expr &r) const {
        Expr i = c % block;
        return weight(bytes, c / block, i / run(), i % run(), r);
    }
};

inline Expr block_f16(const Func &bytes, const Expr &at, const Expr &r) {
    return f16_bits_to_f32(u16_le(bytes(at, r), bytes(at + 1, r)));
}

// The f16 at byte `at` of each block of `bytes` bytes.
inline GGMLBlockFormat::Block f16_field(int bytes, int at) {
    return [=](const Func &b, const Expr &g, const Expr &r) { return block_f16(b, g * bytes + at, r); };
}

inline Expr nibble(const Expr &byte, const Expr &p) {
    return (byte >> cast<uint8_t>(4 * p)) & cast<uint8_t>(15);
}

// Q4_0: f16 d; qs[16]: weight l is the low nibble of qs[l], l + 16 the high one; (q - 8) * d.
inline GGMLBlockFormat q4_0_format() {
    GGMLBlockFormat f{32, 18, 2, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
        return cast<int8_t>(nibble(b(g * 18 + 2 + k, r), p)) - cast<int8_t>(8);
    };
    f.d = f16_field(18, 0);
    return f;
}

// Q4_1: f16 d, f16 m; qs[16] as Q4_0's: d * q + m.
inline GGMLBlockFormat q4_1_format() {
    GGMLBlockFormat f{32, 20, 2, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
        return nibble(b(g * 20 + 4 + k, r), p);
    };
    f.d = f16_field(20, 0);
    f.min_d = f16_field(20, 2);
    return f;
}

// Bit j (0..31) of the little-endian uint32 qh at byte `at`: the fifth bit of weight j.
inline Expr qh_bit(const Func &b, const Expr &at, const Expr &j, const Expr &r) {
    return (b(at + j / 8, r) >> cast<uint8_t>(j % 8)) & cast<uint8_t>(1);
}

// Q5_0: f16 d; uint32 qh; qs[16]: q = nibble as Q4_0's | bit j of qh << 4; d * (q - 16).
inline GGMLBlockFormat q5_0_format() {
    GGMLBlockFormat f{32, 22, 2, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
        Expr base = g * 22;
        Expr q = nibble(b(base + 6 + k, r), p) | (qh_bit(b, base + 2, 16 * p + k, r) << 4);
        return cast<int8_t>(q) - cast<int8_t>(16);
    };
    f.d = f16_field(22, 0);
    return f;
}

// Q5_1: f16 d, f16 m; uint32 qh; qs[16]: q as Q5_0's without the offset; d * q + m.
inline GGMLBlockFormat q5_1_format() {
    GGMLBlockFormat f{32, 24, 2, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
        Expr base = g * 24;
        return nibble(b(base + 8 + k, r), p) | (qh_bit(b, base + 4, 16 * p + k, r) << 4);
    };
    f.d = f16_field(24, 0);
    f.min_d = f16_field(24, 2);
    return f;
}

// Q8_0: f16 d; int8 qs[32]: q * d.
inline GGMLBlockFormat q8_0_format() {
    GGMLBlockFormat f{32, 34, 1, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &, const Expr &k, const Expr &r) {
        return reinterpret<int8_t>(b(g * 34 + 2 + k, r));
    };
    f.d = f16_field(34, 0);
    return f;
}

// Q6_K: ql[128], qh[64], int8 scales[16], f16 d. Run p = 4h + s (half h,
// quarter s) holds weights 128h + 32s + l, of sub-block 2p + l/16; (d * scale) * (q - 32).
inline GGMLBlockFormat q6_k_format() {
    GGMLBlockFormat f{256, 210, 8, 16};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
        Expr base = g * 210, h = p / 4, s = p % 4;
        Expr ql = nibble(b(base + 64 * h + 32 * (s % 2) + l, r), s / 2);
        Expr qh = (b(base + 128 + 32 * h + l, r) >> cast<uint8_t>(2 * s)) & cast<uint8_t>(3);
        return cast<int8_t>(ql | (qh << 4)) - cast<int8_t>(32);
    };
    f.d = f16_field(210, 208);
    f.sc = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        return cast<int32_t>(reinterpret<int8_t>(b(g * 210 + 192 + j, r)));
    };
    return f;
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

// Q2_K: scales[16] (low nibble scale, high nibble min of sub-block j), qs[64],
// f16 d, f16 dmin. Run p = 4h + s (half h, shift s) holds weights 32p + l:
// 2 bits at 2s of qs[32h + l], of sub-block 2p + l/16; (d * sc) * q - dmin * m.
inline GGMLBlockFormat q2_k_format() {
    GGMLBlockFormat f{256, 84, 8, 16};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
        return (b(g * 84 + 16 + 32 * (p / 4) + l, r) >> cast<uint8_t>(2 * (p % 4))) & cast<uint8_t>(3);
    };
    f.d = f16_field(84, 80);
    f.sc = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        return cast<int32_t>(b(g * 84 + j, r) & cast<uint8_t>(15));
    };
    f.min_d = f16_field(84, 82);
    f.m = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        return cast<int32_t>(b(g * 84 + j, r) >> cast<uint8_t>(4));
    };
    return f;
}

// Q3_K: hmask[32], qs[64], scales[12] (16 6-bit signed scales, offset 32),
// f16 d. Run p = 4h + s holds weights 32p + l: 2 low bits at 2s of
// qs[32h + l], minus 4 unless bit p of hmask[l] is set; sub-block 2p + l/16.
inline GGMLBlockFormat q3_k_format() {
    GGMLBlockFormat f{256, 110, 8, 16};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
        Expr base = g * 110;
        Expr lo = (b(base + 32 + 32 * (p / 4) + l, r) >> cast<uint8_t>(2 * (p % 4))) & cast<uint8_t>(3);
        Expr hbit = (b(base + l, r) >> cast<uint8_t>(p)) & cast<uint8_t>(1);
        return cast<int8_t>(lo) - cast<int8_t>(4) * (cast<int8_t>(1) - cast<int8_t>(hbit));
    };
    f.d = f16_field(110, 108);
    f.sc = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        Expr base = g * 110;
        Expr sl = (b(base + 96 + j % 8, r) >> cast<uint8_t>(4 * (j / 8))) & cast<uint8_t>(15);
        Expr sh = (b(base + 104 + j % 4, r) >> cast<uint8_t>(2 * (j / 4))) & cast<uint8_t>(3);
        return cast<int32_t>(sl | (sh << cast<uint8_t>(4))) - 32;
    };
    return f;
}

// Q5_K: f16 d, f16 dmin, scales[12] (as Q4_K's), qh[32], qs[128]. Run p
// (sub-block) holds weights 32p + l: nibble p % 2 of qs[32(p/2) + l], bit p
// of qh[l] on top; (d * sc) * q - dmin * m.
inline GGMLBlockFormat q5_k_format() {
    GGMLBlockFormat f{256, 176, 8, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
        Expr base = g * 176;
        Expr hi = (b(base + 16 + l, r) >> cast<uint8_t>(p)) & cast<uint8_t>(1);
        return nibble(b(base + 48 + 32 * (p / 2) + l, r), p % 2) | (hi << cast<uint8_t>(4));
    };
    f.d = f16_field(176, 0);
    f.sc = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        return cast<int32_t>(kquant_scale6(b, g * 176 + 4, j, r));
    };
    f.min_d = f16_field(176, 2);
    f.m = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        return cast<int32_t>(kquant_min6(b, g * 176 + 4, j, r));
    };
    return f;
}

// An IQ4 level (kIQ4Levels) as int8.
inline Expr iq4_level(const Expr &nibble) { return nibble_lut(nibble, [](int i) { return kIQ4Levels[i]; }, Int(8)); }

// IQ4_NL: f16 d; qs[16] as Q4_0's, each nibble an index into the levels; d * level.
inline GGMLBlockFormat iq4_nl_format() {
    GGMLBlockFormat f{32, 18, 2, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &k, const Expr &r) {
        return iq4_level(nibble(b(g * 18 + 2 + k, r), p));
    };
    f.d = f16_field(18, 0);
    return f;
}

// IQ4_XS: f16 d, u16 scales_h, scales_l[4], qs[128]. Sub-block j (8 of 32)
// has the 6-bit scale (nibble j % 2 of scales_l[j/2] | bits 2j.. of
// scales_h << 4) - 32; run p = 2j + a holds weights 16p + l: nibble a of
// qs[16j + l], a level as IQ4_NL's; (d * scale) * level.
inline GGMLBlockFormat iq4_xs_format() {
    GGMLBlockFormat f{256, 136, 16, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &p, const Expr &l, const Expr &r) {
        return iq4_level(nibble(b(g * 136 + 8 + 16 * (p / 2) + l, r), p % 2));
    };
    f.d = f16_field(136, 0);
    f.sc = [](const Func &b, const Expr &g, const Expr &j, const Expr &r) {
        Expr base = g * 136;
        Expr sl = (b(base + 4 + j / 2, r) >> cast<uint8_t>(4 * (j % 2))) & cast<uint8_t>(15);
        Expr sh = (b(base + 2 + j / 4, r) >> cast<uint8_t>(2 * (j % 4))) & cast<uint8_t>(3);
        return cast<int32_t>(sl | (sh << cast<uint8_t>(4))) - 32;
    };
    return f;
}

// Per-channel formats (FORMATS.md, "int8 and fp8 rows"): a row is a
// 32-byte head whose first 4 bytes are the row's f32 scale (little-endian),
// then its codes, one byte per weight; a weight is scale * value(code).
// The head is one 32-byte unit so that the codes stay aligned for vector
// loads and a packed tile carries its rows' scales in its first block.
constexpr int kRowHeadBytes = 32;

inline Expr row_scale(const Func &b, const Expr &r) {
    Expr u = cast<uint32_t>(b(0, r)) | (cast<uint32_t>(b(1, r)) << 8) | (cast<uint32_t>(b(2, r)) << 16) |
             (cast<uint32_t>(b(3, r)) << 24);
    return reinterpret<float>(u);
}

// int8: s8 codes, symmetric per channel: scale * q.
inline GGMLBlockFormat int8_format() {
    GGMLBlockFormat f{32, 32, 1, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &, const Expr &k, const Expr &r) {
        return reinterpret<int8_t>(b(kRowHeadBytes + g * 32 + k, r));
    };
    f.d = [](const Func &b, const Expr &, const Expr &r) { return row_scale(b, r); };
    return f;
}

// An FP8 E4M3 code (OCP FP8, as PyTorch's float8_e4m3fn) as f32, exactly:
// sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities, S.1111.111
// NaN. Its 7 magnitude bits placed at bit 7 of an f16 are the f16 of the
// value / 2^8 (exponent bias 15 = 7 + 8; E4M3's subnormals land on f16's),
// so one exact f16 -> f32 conversion and a multiply by 2^8 decode every code.
inline Expr fp8_e4m3_to_f32(const Expr &code) {
    Expr c = cast<uint16_t>(code);
    Expr bits = ((c & cast<uint16_t>(0x80)) << 8) | ((c & cast<uint16_t>(0x7F)) << 7);
    Expr v = cast<float>(reinterpret(Float(16), bits)) * 256.0f;
    return select((c & cast<uint16_t>(0x7F)) == cast<uint16_t>(0x7F), Internal::make_const(Float(32), NAN), v);
}

// fp8: E4M3 codes, scale per channel (a per-tensor scale is repeated): scale * value.
inline GGMLBlockFormat fp8_format() {
    GGMLBlockFormat f{32, 32, 1, 32};
    f.quant = [](const Func &b, const Expr &g, const Expr &, const Expr &k, const Expr &r) {
        return fp8_e4m3_to_f32(b(kRowHeadBytes + g * 32 + k, r));
    };
    f.d = [](const Func &b, const Expr &, const Expr &r) { return row_scale(b, r); };
    return f;
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
    if (name == "int8") return int8_format();
    if (name == "fp8") return fp8_format();
    throw CompileError("qforge: unknown block format '" + name +
                       "' (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q5_k, q6_k, iq4_nl, iq4_xs, int8, fp8)");
}

}  // namespace qforge
