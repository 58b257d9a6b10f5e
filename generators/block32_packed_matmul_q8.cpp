// Y = X * W^T + b with 4-bit weights in blocks of 32 with one f16 scale and
// zero point 8 (Q4_0, and int4g whose groups are whole blocks of 32), in
// the packed layout (FORMATS.md, "Packed Q4_0 and int4g"), and Q8_0
// activations (32-value blocks with their sums). Rows are the vector lanes
// as in q4k_packed_matmul_q8.cpp:
//   y += w.d * a.d * (isum - 8 * asum)
// per block, isum the u4 x s8 integer dot and asum the activation block's
// sum, so no nibble is ever offset in the loop. Integer sums are exact:
// every DotForm computes the same isum.
#include "common.h"

namespace qforge {

constexpr int kBlock32PackedBytes = 18;  // per row of a packed tile

class Block32PackedMatmulQ8 : public KernelGenerator<Block32PackedMatmulQ8> {
public:
    GeneratorParam<int> pack_rows{"pack_rows", 16};   // R: rows per packed tile
    GeneratorParam<int> group_size{"group_size", 0};  // int4g's G (its scales are repeated per block); unused

    Input<Buffer<uint8_t, 3>> weight{"weight"};   // [18 R, in/32, tiles]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/32, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_sums{"a_sums"};   // [in/32, tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        const int R = pack_rows;
        check(R > 0 && R % 4 == 0, "pack_rows must be a positive multiple of 4");
        constrain_packed(weight, y, kBlock32PackedBytes * R);
        Func a_d_ = clamp_outer(a_d), a_qs_ = clamp_outer(a_qs), a_sums_ = clamp_outer(a_sums);

        PackedBlock32Funcs f;
        f.rows = R;
        f.form = schedule_family_for(get_target()).dot_form(get_target());
        f.weight = weight;
        Var r = f.r, t = f.t, n = f.n, kp = f.kp, kb = f.kb, o = f.o, g = f.g, h = f.h;

        // Nibble h of byte 4 g + b4 (g, b4 in 0..3) of row r: weight 16 h + 4 g + b4.
        auto quant = [&](const Expr &b4, const Expr &g_, const Expr &h_) {
            Expr p = weight(b4 + 4 * r + 4 * R * g_, kb, t);
            return select(h_ == 0, p & cast<uint8_t>(15), p >> cast<uint8_t>(4));
        };
        // Activations as the schedule may stage them per token tile: act4(b4,
        // kq, n) is byte b4 of group kq of 4; act_d and act_sum per block.
        Var b4v("b4"), kq("kq");
        f.act4(b4v, kq, n) = a_qs_(4 * kq + b4v, n);
        f.act_d(kb, n) = a_d_(kb, n);
        f.act_sum(kb, n) = cast<int32_t>(a_sums_(kb, n));
        auto act = [&](const Expr &b4, const Expr &g_, const Expr &h_) { return f.act4(b4, 8 * kb + 4 * h_ + g_, n); };
        if (f.form == DotForm::u8s8_pairs) {
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
        const int parts = f.form == DotForm::u8s8_pairs ? 2 : 1;
        f.halves = RDom(0, parts, "halves");
        f.isum(r, kb, t, n) = -8 * f.act_sum(kb, n);
        f.isum(r, kb, t, n) += cast<int32_t>(f.part(f.halves, r, kb, t, n));

        auto wd = [&](const Expr &blk) {
            return f16_bits_to_f32(u16_le(weight(16 * R + 2 * r, blk, t), weight(16 * R + 2 * r + 1, blk, t)));
        };
        f.blocks = RDom(0, weight.dim(1).extent(), "blocks");
        Expr b = f.blocks;
        f.acc(r, t, n) = 0.0f;
        f.acc(r, t, n) += (wd(b) * f.act_d(b, n)) * cast<float>(f.isum(r, b, t, n));
        y(o, n) = f.acc(o % R, o / R, n) + bias_or_zero(bias, has_bias, bias.dim(0).extent(), o);
        f.y = y;

        schedule_family_for(get_target()).block32_packed_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Block32PackedMatmulQ8, block32_packed_matmul_q8)
