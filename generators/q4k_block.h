// Field access into raw Q4_K rows (FORMATS.md, "Q4_K"): shared by every Q4_K
// generator so that the bit layout is written once.
#pragma once

#include "common.h"

namespace qforge {

constexpr int kQK = 256;           // weights per super-block
constexpr int kQ4KBlockBytes = 144;

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
    Expr q(const Expr &b, const Expr &j, const Expr &l, const Expr &r) const {
        Expr byte_ = bytes(b * kQ4KBlockBytes + 16 + 32 * (j / 2) + l, r);
        return (byte_ >> cast<uint8_t>(4 * (j % 2))) & cast<uint8_t>(15);
    }
};

}  // namespace qforge
