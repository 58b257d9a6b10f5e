// Y = X * W^T + b with Q6_K weights in the packed layout (FORMATS.md,
// "Packed Q6_K") and Q8_K activations. Rows are the vector lanes as in
// q4k_packed_matmul_q8.cpp. The 6-bit values q = w/(d sc) + 32 (0..63) are
// put together from their nibble and their 2 high bits in the loop, one
// vector op each, and dotted unsigned; the offset 32 is folded into the
// activation sums of Q8_K's 16-value sub-blocks, which are Q6_K's:
//   y += a.d * d * (sum_j sc_j * isum_j  -  32 * sum_j sc_j * bsum_j)
// isum_j the integer dot of sub-block j, sc_j its signed 8-bit scale.
// Integer sums are exact: every DotForm computes the same isum.
#include "common.h"

namespace qforge {

constexpr int kQ6KPackedBlockBytes = 210;  // per row of a packed tile

class Q6KPackedMatmulQ8 : public KernelGenerator<Q6KPackedMatmulQ8> {
public:
    GeneratorParam<int> pack_rows{"pack_rows", 16};  // R: rows per packed tile

    Input<Buffer<uint8_t, 3>> weight{"weight"};   // [210 R, in/256, tiles]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/256, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_bsums{"a_bsums"}; // [in/16, tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        const int R = pack_rows;
        check(R > 0 && R % 4 == 0, "pack_rows must be a positive multiple of 4");
        constrain_packed(weight, y, kQ6KPackedBlockBytes * R);
        Func a_d_ = clamp_outer(a_d), a_qs_ = clamp_outer(a_qs), a_bsums_ = clamp_outer(a_bsums);

        PackedQ6KFuncs f;
        f.rows = R;
        f.form = schedule_family_for(get_target()).dot_form(get_target());
        f.weight = weight;
        Var r = f.r, t = f.t, n = f.n, kp = f.kp, u = f.u, sb = f.sb, o = f.o, G = f.G;

        // Group G (0..63) of 4 weights, k = 4 G + b4 = 128 c + 32 i + l:
        // low bits in nibble i / 2 of ql byte l of run 2 c + i % 2, high bits
        // 2 i.. of qh byte l of run c (FORMATS.md, "Packed Q6_K").
        auto quant = [&](const Expr &b4, const Expr &G_) {
            Expr c = G_ / 32, i = (G_ / 8) % 4, l4 = b4 + 4 * r + 4 * R * (G_ % 8);
            Expr ql = weight(l4 + 32 * R * (2 * c + i % 2), sb, t);
            Expr qh = weight(128 * R + l4 + 32 * R * c, sb, t);
            Expr lo = select(i / 2 == 0, ql & cast<uint8_t>(15), ql >> cast<uint8_t>(4));
            Expr hi = (qh >> cast<uint8_t>(2 * i)) & cast<uint8_t>(3);
            // + rather than |: bounds inference then knows q < 64, so ARM narrows it to s8 (sdot).
            return lo + (hi << cast<uint8_t>(4));
        };
        auto sc = [&](const Expr &j) { return cast<int32_t>(reinterpret<int8_t>(weight(192 * R + R * j + r, sb, t))); };
        auto wd = [&](const Expr &blk) {
            return f16_bits_to_f32(u16_le(weight(208 * R + 2 * r, blk, t), weight(208 * R + 2 * r + 1, blk, t)));
        };

        Var b4v("b4"), kq("kq"), j("j");
        f.act4(b4v, kq, n) = a_qs_(4 * kq + b4v, n);
        f.act_d(sb, n) = a_d_(sb, n);
        f.act_sum(j, sb, n) = cast<int32_t>(a_bsums_(16 * sb + j, n));
        auto act = [&](const Expr &b4, const Expr &G_) { return f.act4(b4, 64 * sb + G_, n); };
        // part(kp, r, u, ...) sums the groups of unit u: a sub-block of 4
        // groups, or for u8s8_pairs half of one (2 * 2 * 63 * 128 < 32767:
        // two groups' pairs are all i16 holds), so `units` per sub-block.
        if (f.form == DotForm::u8s8_pairs) {
            f.units = 2;
            f.dot = RDom(0, 2, "dot");
            f.groups = RDom(0, 2, "groups");
            Expr b4 = 2 * kp + f.dot;
            f.pair(kp, r, G, sb, t, n) = cast<int16_t>(0);
            f.pair(kp, r, G, sb, t, n) = saturating_add(f.pair(kp, r, G, sb, t, n), widening_mul(quant(b4, G), act(b4, G)));
            f.part(kp, r, u, sb, t, n) = cast<int16_t>(0);
            f.part(kp, r, u, sb, t, n) += f.pair(kp, r, 2 * u + f.groups, sb, t, n);
        } else {
            f.units = 1;
            f.dot = RDom(0, 4, 0, 4, "dot");  // byte in the group of 4, group in the sub-block
            f.part(kp, r, u, sb, t, n) = 0;
            f.part(kp, r, u, sb, t, n) += packed_dot_term(f.form, quant(f.dot.x, 4 * u + f.dot.y), act(f.dot.x, 4 * u + f.dot.y));
        }
        const int parts = f.form == DotForm::u8s8_pairs ? 2 : 1;
        f.subs = RDom(0, parts, 0, 16 * f.units, "subs");  // kp, u
        f.sacc(r, sb, t, n) = 0;
        f.sacc(r, sb, t, n) += cast<int32_t>(f.part(f.subs.x, r, f.subs.y, sb, t, n)) *
                               cast<int32_t>(cast<int16_t>(sc(f.subs.y / f.units)));
        f.mins = RDom(0, 16, "mins");
        f.macc(r, sb, t, n) = 0;
        f.macc(r, sb, t, n) += sc(f.mins) * f.act_sum(f.mins, sb, n);

        f.blocks = RDom(0, weight.dim(1).extent(), "blocks");
        Expr b = f.blocks;
        f.acc(r, t, n) = 0.0f;
        f.acc(r, t, n) += f.act_d(b, n) * wd(b) * cast<float>(f.sacc(r, b, t, n) - 32 * f.macc(r, b, t, n));
        y(o, n) = f.acc(o % R, o / R, n) + bias_or_zero(bias, has_bias, bias.dim(0).extent(), o);
        f.y = y;

        schedule_family_for(get_target()).q6k_packed_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q6KPackedMatmulQ8, q6k_packed_matmul_q8)
