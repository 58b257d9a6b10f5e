// Field access into raw Q4_K rows (FORMATS.md, "Q4_K"): shared by every Q4_K
// generator so that the bit layout is written once.
#pragma once

#include "common.h"

namespace qforge {

constexpr int kQK = 256;           // weights per super-block
constexpr int kQ4KBlockBytes = 144;
constexpr int kQ4KPackedBlockBytes = 148;  // per row of a packed tile
constexpr int kQ5KPackedBlockBytes = 180;  // packed Q4_K's fields, then the fifth bits
constexpr int kIQ4XSPackedBlockBytes = 138;  // quants as Q4_K's, int8 scales, d

// `bytes(i, r)` is byte i of row r; `b` is the block index within the row.
struct Q4KRow {
    Func bytes;

    Expr byte(const Expr &b, int offset, const Expr &r) const {
        return bytes(b * kQ4KBlockBytes + offset, r);
    }
    Expr d(const Expr &b, const Expr &r) const {
        return f16_bits_to_f32(u16_le(byte(b, 0, r), byte(b, 1, r)));
    }
    Expr dmin(const Expr &b, const Expr &r) const {
        return f16_bits_to_f32(u16_le(byte(b, 2, r), byte(b, 3, r)));
    }
    // 6-bit packed scales: `s[k]` is byte 4 + k of the block.
    Expr s(const Expr &b, const Expr &k, const Expr &r) const {
        return bytes(b * kQ4KBlockBytes + 4 + k, r);
    }
    // Sub-block scale sc[j], j in 0..7, as int32.
    Expr sc(const Expr &b, const Expr &j, const Expr &r) const {
        Expr lo = s(b, j, r) & 63;
        Expr hi = (s(b, j + 4, r) & 0x0F) | ((s(b, j - 4, r) >> 6) << 4);
        return cast<int32_t>(select(j < 4, lo, hi));
    }
    // Sub-block min m[j], j in 0..7, as int32.
    Expr m(const Expr &b, const Expr &j, const Expr &r) const {
        Expr lo = s(b, j + 4, r) & 63;
        Expr hi = (s(b, j + 4, r) >> 4) | ((s(b, j, r) >> 6) << 4);
        return cast<int32_t>(select(j < 4, lo, hi));
    }
    // Quant of weight 32*j + l (l in 0..31) of block b, as uint8 in 0..15.
    // Sub-blocks 2i and 2i+1 share the 32 bytes of chunk i: low, then high nibbles.
    // With `high16` the high nibbles stay in place (16 q): see q4k_matmul_q8.cpp.
    Expr q(const Expr &b, const Expr &j, const Expr &l, const Expr &r, bool high16 = false) const {
        Expr byte_ = bytes(b * kQ4KBlockBytes + 16 + 32 * (j / 2) + l, r);
        if (high16) return byte_ & select(j % 2 == 0, cast<uint8_t>(15), cast<uint8_t>(0xF0));
        return (byte_ >> cast<uint8_t>(4 * (j % 2))) & cast<uint8_t>(15);
    }
};

// Field access into packed Q4_K, Q5_K and IQ4_XS (FORMATS.md, "Packed
// Q4_K", "Packed Q5_K", "Packed IQ4_XS"): `bytes(i, sb, t)` is byte i of
// super-block sb of tile t, a run of 148 R (180 R, 138 R) bytes. IQ4_XS has
// Q4_K's quants and scales (as int8) and no mins: its d is where Q4_K's m is.
struct Q4KPacked {
    Func bytes;
    int R;
    int d_at = 144;  // d's offset in units of R bytes: 144, or IQ4_XS's 136

    // Nibble h of byte b4 (0..3) of group g (0..7) of chunk jp (0..3), row r:
    // weight 64 jp + 32 h + 4 g + b4, as uint8. With `high16` the high
    // nibble stays in place, 16 times the weight (see its use).
    Expr q(const Expr &b4, const Expr &r, const Expr &g, const Expr &h, const Expr &jp, const Expr &sb,
           const Expr &t, bool high16 = false) const {
        Expr p = bytes(b4 + 4 * r + 4 * R * g + 32 * R * jp, sb, t);
        return select(h == 0, p & cast<uint8_t>(15), high16 ? p & cast<uint8_t>(0xF0) : p >> cast<uint8_t>(4));
    }
    // Q5_K: the fifth bit of the same weight. Byte b4 + 4r + 4Rg of the 32 R
    // bytes after Q4_K's fields is the file's qh[4g + b4]; bit j is sub-block j's.
    Expr high(const Expr &b4, const Expr &r, const Expr &g, const Expr &h, const Expr &jp, const Expr &sb,
              const Expr &t) const {
        Expr p = bytes(kQ4KPackedBlockBytes * R + b4 + 4 * r + 4 * R * g, sb, t);
        return (p >> cast<uint8_t>(2 * jp + h)) & cast<uint8_t>(1);
    }
    Expr sc(const Expr &r, const Expr &j, const Expr &sb, const Expr &t) const {
        return bytes(128 * R + R * j + r, sb, t);
    }
    Expr m(const Expr &r, const Expr &j, const Expr &sb, const Expr &t) const {
        return bytes(136 * R + R * j + r, sb, t);
    }
    Expr d(const Expr &r, const Expr &sb, const Expr &t) const {
        return f16_bits_to_f32(u16_le(bytes(d_at * R + 2 * r, sb, t), bytes(d_at * R + 2 * r + 1, sb, t)));
    }
    Expr dmin(const Expr &r, const Expr &sb, const Expr &t) const {
        return f16_bits_to_f32(u16_le(bytes(146 * R + 2 * r, sb, t), bytes(146 * R + 2 * r + 1, sb, t)));
    }
};

}  // namespace qforge
