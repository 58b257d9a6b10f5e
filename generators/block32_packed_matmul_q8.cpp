// Y = X * W^T + b with weights in blocks of 32 with an f16 scale (and an
// f16 min), in the packed layouts of FORMATS.md ("Packed Q4_0 and int4g",
// "Packed Q4_1, Q5_0 and Q5_1", "Packed Q8_0"), and Q8_0 activations
// (32-value blocks with their sums). Rows are the vector lanes as in
// q4k_packed_matmul_q8.cpp:
//   y += w.d * a.d * (isum - z * asum)  [+ w.m * a.d * asum]
// per block, isum the integer dot of the stored values and asum the
// activation block's sum, so no weight is ever offset in the loop.
// bits=4 (Q4_0, int4g whose groups are whole blocks of 32; Q4_1 with its
// min): u4 nibbles, zero point z = 8 (0 with a min). bits=5 (Q5_0, Q5_1):
// the nibble and its fifth bit from the block's 4 qh bytes, u5, z = 16 (0
// with a min). bits=8 (Q8_0): s8 values, which each DotForm reads its
// own way: vpdpbusd wants u8, so s8 ^ 0x80 = s8 + 128 and z = 128;
// vpmaddubsw saturates on 2 * 255 * 127, so |w| x (a with w's sign), z = 0;
// sdot takes s8 as is, z = 0. nonlinear (IQ4_NL): Q4_0's nibbles index the
// IQ4 levels, which each DotForm takes as it takes Q8_0's s8 values
// (iq4_weight in common.h). zero_points (int4z): bits=4 with the block's
// zero point z a byte per row beside the scale, so isum - z * asum is
// exact in i32, with no rounded min. row_scales (int8 per channel): bits=8
// with no scale in the blocks; the tile's first block holds its R rows' f32
// scales (FORMATS.md, "Packed int8"), which multiply the row's whole sum of
// a.d * isum once. Integer sums are exact.
#include "common.h"

namespace qforge {

// Bytes per row of a packed tile: 32 values of `bits` bits, the f16 scale,
// the f16 min or the zero point's byte when there is one.
constexpr int block32_packed_bytes(int bits, bool min, bool zero = false) {
    return 4 * bits + 2 + (min ? 2 : 0) + (zero ? 1 : 0);
}

class Block32PackedMatmulQ8 : public KernelGenerator<Block32PackedMatmulQ8> {
public:
    static constexpr bool kEpilogue = true;  // ends in packed_output (common.h): bias, glu or act + residual
    GeneratorParam<int> pack_rows{"pack_rows", 16};   // R: rows per packed tile
    GeneratorParam<int> group_size{"group_size", 0};  // int4g's G (its scales are repeated per block); unused
    GeneratorParam<int> bits{"bits", 4};              // 4: Q4_0, Q4_1, int4g; 5: Q5_0, Q5_1; 8: Q8_0
    GeneratorParam<bool> has_min{"has_min", false};   // Q4_1, Q5_1: w = d q + m
    GeneratorParam<bool> nonlinear{"nonlinear", false};  // IQ4_NL: w = d level[q]
    GeneratorParam<bool> zero_points{"zero_points", false};  // int4z: w = d (q - z), z a byte per row and block
    GeneratorParam<bool> row_scales{"row_scales", false};    // int8: w = s q, s an f32 per row in the tile's head

    Input<Buffer<uint8_t, 3>> weight{"weight"};   // [block32_packed_bytes(bits, has_min) R, in/32, tiles]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/32, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_sums{"a_sums"};   // [in/32, tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        const int R = pack_rows;
        const int B = bits;
        check(R > 0 && R % 4 == 0, "pack_rows must be a positive multiple of 4");
        check(B == 4 || B == 5 || B == 8, "bits must be 4, 5 or 8");
        check(!has_min || B != 8, "a min goes with 4 or 5 bits");
        check(!nonlinear || (B == 4 && !has_min), "nonlinear levels go with 4 bits and no min");
        check(!zero_points || (B == 4 && !has_min && !nonlinear), "zero points go with 4 linear bits and no min");
        check(!row_scales || (B == 8 && !has_min && !nonlinear && !zero_points), "row scales go with 8 bits alone");
        // Block kb of the activations is block kb + head of the weights.
        const int head = row_scales ? 1 : 0;
        // s8 weights (Q8_0's, IQ4_NL's levels): their pairs are widened one by one.
        const bool wide = B != 4 || nonlinear;
        constrain_packed(weight, y, (row_scales ? 32 : block32_packed_bytes(B, has_min, zero_points)) * R);
        Func wt = clamp_tiles(weight);  // the weight as the kernel reads it
        Func a_d_ = clamp_outer(a_d), a_qs_ = clamp_outer(a_qs), a_sums_ = clamp_outer(a_sums);

        PackedBlock32Funcs f;
        f.rows = R;
        f.form = schedule_family_for(get_target()).dot_form(get_target());
        f.lut = nonlinear;
        f.weight = weight;
        f.a_qs = a_qs;
        Var r = f.r, t = f.t, n = f.n, kp = f.kp, kb = f.kb, o = f.o, g = f.g, h = f.h;

        // Weight 16 h + 4 g + b4 (g, b4 in 0..3) of row r, as stored: nibble h
        // of byte 4 g + b4 (bits=4), with bit 2 g + h of qh byte b4 on top
        // (bits=5), or byte 4 (g + 4 h) + b4 (bits=8).
        auto stored = [&](const Expr &b4, const Expr &g_, const Expr &h_) {
            if (B == 8) return Expr(wt(b4 + 4 * r + 4 * R * (g_ + 4 * h_), kb + head, t));
            Expr p = wt(b4 + 4 * r + 4 * R * g_, kb, t);
            Expr nib = select(h_ == 0, p & cast<uint8_t>(15), p >> cast<uint8_t>(4));
            if (B == 4) return nib;
            Expr hb = (wt(16 * R + b4 + 4 * r, kb, t) >> cast<uint8_t>(2 * g_ + h_)) & cast<uint8_t>(1);
            // + rather than |: bounds inference then knows q < 32 (ARM narrows it to s8 for sdot).
            return nib + (hb << cast<uint8_t>(4));
        };
        auto s8 = [&](const Expr &b4, const Expr &g_, const Expr &h_) { return reinterpret<int8_t>(stored(b4, g_, h_)); };
        // Activations as the schedule may stage them per token tile: act4(b4,
        // kq, n) is byte b4 of group kq of 4; act_d and act_sum per block.
        Var b4v("b4"), kq("kq");
        f.act4(b4v, kq, n) = a_qs_(4 * kq + b4v, n);
        f.act_d(kb, n) = a_d_(kb, n);
        f.act_sum(kb, n) = cast<int32_t>(a_sums_(kb, n));
        auto act_raw = [&](const Expr &b4, const Expr &g_, const Expr &h_) { return f.act4(b4, 8 * kb + 4 * h_ + g_, n); };
        // The weight operand of the dot as its DotForm wants it, and the
        // activation operand that goes with it.
        auto quant = [&](const Expr &b4, const Expr &g_, const Expr &h_) {
            if (nonlinear) return iq4_weight(f.form, stored(b4, g_, h_));
            if (B != 8) return stored(b4, g_, h_);
            if (f.form == DotForm::u8s8_dot4) return stored(b4, g_, h_) ^ cast<uint8_t>(0x80);
            if (f.form == DotForm::u8s8_pairs) return abs(s8(b4, g_, h_));
            return s8(b4, g_, h_);
        };
        auto act = [&](const Expr &b4, const Expr &g_, const Expr &h_) {
            Expr a = act_raw(b4, g_, h_);
            if (nonlinear) return iq4_act(f.form, stored(b4, g_, h_), a);
            return B == 8 && f.form == DotForm::u8s8_pairs ? select(s8(b4, g_, h_) < 0, -a, a) : a;
        };
        const int zero = nonlinear ? iq4_zero(f.form) : has_min ? 0 : B == 4 ? 8 : B == 5 ? 16 : f.form == DotForm::u8s8_dot4 ? 128 : 0;
        if (f.form == DotForm::u8s8_pairs && wide) {
            // vpmaddubsw pairs (|w| <= 128: 2 * 128 * 127 < 32767), each pair
            // widened at once (vpmaddwd by ones: the 8 groups of u5 or s8
            // pairs could overflow i16) and summed in i32 over kp and the 8
            // (g, h) groups.
            f.dot = RDom(0, 2, "dot");
            f.groups = RDom(0, 2, 0, 4, 0, 2, "groups");  // kp, g, h
            Expr b4 = 2 * kp + f.dot;
            f.pair(kp, r, g, h, kb, t, n) = cast<int16_t>(0);
            f.pair(kp, r, g, h, kb, t, n) = saturating_add(f.pair(kp, r, g, h, kb, t, n),
                                                           widening_mul(quant(b4, g, h), act(b4, g, h)));
            f.part(kp, r, kb, t, n) = 0;
            f.part(kp, r, kb, t, n) += cast<int32_t>(f.pair(f.groups.x, r, f.groups.y, f.groups.z, kb, t, n));
        } else if (f.form == DotForm::u8s8_pairs) {
            // vpmaddubsw pairs in i16, the 8 (g, h) groups summed in i16
            // (8 * 2 * 15 * 127 < 32767), the two halves widened to i32.
            f.dot = RDom(0, 2, "dot");
            f.groups = RDom(0, 4, 0, 2, "groups");
            Expr b4 = 2 * kp + f.dot;
            f.pair(kp, r, g, h, kb, t, n) = cast<int16_t>(0);
            f.pair(kp, r, g, h, kb, t, n) = saturating_add(f.pair(kp, r, g, h, kb, t, n),
                                                           widening_mul(quant(b4, g, h), act(b4, g, h)));
            f.part(kp, r, kb, t, n) = cast<int16_t>(0);
            f.part(kp, r, kb, t, n) += f.pair(kp, r, f.groups.x, f.groups.y, kb, t, n);
        } else {
            f.dot = RDom(0, 4, 0, 4, 0, 2, "dot");  // byte in the group of 4, group, nibble
            f.part(kp, r, kb, t, n) = 0;
            f.part(kp, r, kb, t, n) += packed_dot_term(f.form, quant(f.dot.x, f.dot.y, f.dot.z), act(f.dot.x, f.dot.y, f.dot.z));
        }
        const int parts = f.form == DotForm::u8s8_pairs && !wide ? 2 : 1;
        f.wide_part = wide;
        f.halves = RDom(0, parts, "halves");
        // int4z's zero point: the byte after the tile's scales (18R + r).
        Expr z = zero_points ? cast<int32_t>(wt(18 * R + r, kb, t)) : Expr(zero);
        f.isum(r, kb, t, n) = weight_touch(weight, PackedKind::block32, get_target(), knobs(), y.dim(1).min())(kb, t, n) - z * f.act_sum(kb, n);
        f.isum(r, kb, t, n) += cast<int32_t>(f.part(f.halves, r, kb, t, n));

        auto wd = [&](const Expr &blk) {
            return f16_bits_to_f32(u16_le(wt(4 * B * R + 2 * r, blk, t), wt(4 * B * R + 2 * r + 1, blk, t)));
        };
        f.blocks = RDom(0, weight.dim(1).extent() - head, "blocks");
        Expr b = f.blocks;
        f.acc(r, t, n) = 0.0f;
        Expr term = row_scales ? f.act_d(b, n) * cast<float>(f.isum(r, b, t, n))
                               : (wd(b) * f.act_d(b, n)) * cast<float>(f.isum(r, b, t, n));
        if (has_min) {
            Expr wm = f16_bits_to_f32(u16_le(wt((4 * B + 2) * R + 2 * r, b, t), wt((4 * B + 2) * R + 2 * r + 1, b, t)));
            term += (wm * f.act_d(b, n)) * cast<float>(f.act_sum(b, n));
        }
        f.acc(r, t, n) += term;
        Func out = f.acc;
        if (row_scales) {
            // Row r's scale: bytes 4r..4r+3 of the tile's head block.
            Expr u = cast<uint32_t>(wt(4 * r, 0, t)) | (cast<uint32_t>(wt(4 * r + 1, 0, t)) << 8) |
                     (cast<uint32_t>(wt(4 * r + 2, 0, t)) << 16) | (cast<uint32_t>(wt(4 * r + 3, 0, t)) << 24);
            out = Func("scaled");
            out(r, t, n) = f.acc(r, t, n) * reinterpret<float>(u);
        }
        packed_output(y, out, bias, has_bias, bias.dim(0).extent(), o, n, R, f.head);
        f.y = y;
        f.pairs = tile_pairs();

        if (autoscheduled()) {
            const int T = estimate_tokens(), blocks = kEstimateIn / 32;
            weight.set_estimates({{0, (row_scales ? 32 : block32_packed_bytes(B, has_min, zero_points)) * R},
                                  {0, blocks + (row_scales ? 1 : 0)}, {0, tile_pairs() * kEstimateOut / R}});
            a_d.set_estimates({{0, blocks}, {0, T}});
            a_qs.set_estimates({{0, kEstimateIn}, {0, T}});
            a_sums.set_estimates({{0, blocks}, {0, T}});
            estimate_epilogue(y, bias, has_bias);
            return;
        }
        schedule_family_for(get_target()).block32_packed_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Block32PackedMatmulQ8, block32_packed_matmul_q8)
