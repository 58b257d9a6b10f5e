// Y = X * W^T + b with Q4_K (bits=4) or Q5_K (bits=5) weights in the packed
// layout (FORMATS.md, "Packed Q4_K", "Packed Q5_K") and Q8_K activations. Rows are the vector lanes: a tile of
// R rows stores, for each super-block, 4 consecutive bytes of every row
// side by side, so one vector load holds 4 k of R rows and one broadcast of
// 4 activation bytes serves them all (vpdpbusd, vpmaddubsw, sdot). The
// sub-block scales and mins are bytes already, so nothing is decoded in
// the loop:
//   y += a.d * (d * sum_j sc_j * isum_j  -  dmin * sum_j m_j * asum_j)
// where isum_j is sub-block j's integer dot and asum_j the sum of its 32
// activations (from Q8_K's bsums). Integer sums are exact: every DotForm
// computes the same isum. Q5_K is Q4_K with a fifth bit per weight: q is
// the nibble plus that bit times 16 (0..31), one shift and mask per group
// from one vector of the tile's qh bytes. IQ4_XS (nonlinear) is Q4_K with
// the nibbles indexing the IQ4 levels (iq4_weight in common.h), signed
// scales and no mins; for vpdpbusd its levels are offset by 128, which
// comes back as -128 * sum_j sc_j * asum_j in the place of the mins.
#include "q4k_block.h"

namespace qforge {

class Q4KPackedMatmulQ8 : public KernelGenerator<Q4KPackedMatmulQ8> {
public:
    static constexpr bool kEpilogue = true;  // ends in packed_output (common.h): bias, glu or act + residual
    GeneratorParam<int> pack_rows{"pack_rows", 16};  // R: rows per packed tile
    GeneratorParam<int> bits{"bits", 4};              // 4: Q4_K, 5: Q5_K
    GeneratorParam<bool> nonlinear{"nonlinear", false};  // IQ4_XS (bits=4)

    Input<Buffer<uint8_t, 3>> weight{"weight"};   // [148 R (Q5_K: 180 R, IQ4_XS: 138 R), in/256, tiles]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/256, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_bsums{"a_bsums"}; // [in/16, tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        const int R = pack_rows;
        check(R > 0 && R % 4 == 0, "pack_rows must be a positive multiple of 4");
        check(bits == 4 || bits == 5, "bits must be 4 (Q4_K) or 5 (Q5_K)");
        const bool q5 = bits == 5, iq4 = nonlinear;
        check(!iq4 || !q5, "nonlinear levels go with 4 bits");
        constrain_packed(weight, y, (q5 ? kQ5KPackedBlockBytes : iq4 ? kIQ4XSPackedBlockBytes : kQ4KPackedBlockBytes) * R);
        Func a_d_ = clamp_outer(a_d), a_qs_ = clamp_outer(a_qs), a_bsums_ = clamp_outer(a_bsums);

        PackedQ4KFuncs f;
        f.rows = R;
        f.bits = bits;
        f.form = schedule_family_for(get_target()).dot_form(get_target());
        // IQ4_XS's s8 levels: vpmaddubsw's pairs are widened one by one.
        f.wide_part = iq4 && f.form == DotForm::u8s8_pairs;
        f.lut = iq4;
        f.weight = weight;
        f.a_qs = a_qs;
        Var r = f.r, t = f.t, n = f.n, kp = f.kp, h = f.h, jp = f.jp, sb = f.sb, o = f.o;
        Q4KPacked w{clamp_tiles(weight), R, iq4 ? 136 : 144};
        // u8 x s8 dots of 4 (vpdpbusd) take the high nibble in place, 16 q
        // (at most 240): x86 has no byte shift, and the one LLVM emits for
        // it (vgf2p8affineqb, or vpsrlw and vpand) competes with vpdpbusd
        // for port 0 of Intel's cores, once per 64 weights. The low
        // sub-blocks' scales take the 16 instead (16 sacc, at most 2^29),
        // once per sub-block, and d takes 1/16: exact, so every form
        // still gives the same bits.
        const bool high16 = f.form == DotForm::u8s8_dot4 && !q5 && !iq4;
        // The weight touch (weight_touch, common.h) starts each sub-block's
        // dot, so that a block's prefetches can be spread over them (a
        // block's 37 lines in one call wait for the core's fill buffers);
        // where the parts are not sub-block by sub-block (Q5_K's pairs, in
        // halves) or are widened pair by pair (IQ4_XS's), and in prefill,
        // it starts the block's sums. x86-avx2 leaves it off (AMD's cores,
        // which run the prefetchnta nest, pay for a call's spills); on an
        // Intel core the x86-avx2 kernel gains 1.18-1.26x with it spread and
        // 4 streams (BENCHMARKS.md, "x86-avx2 on an Intel core"), a tuning
        // database's knobs.
        const bool pairs_i16 = f.form == DotForm::u8s8_pairs && !f.wide_part;
        const bool touch_parts = f.form != DotForm::u8s8_pairs || (pairs_i16 && !q5 && !knobs().prefill);
        // The touch that starts sub-block 2 jp + h's part (one of a block's 8 calls).
        auto part_touch = [&] {
            return weight_touch(weight, PackedKind::q4k, get_target(), knobs(), y.dim(1).min(), 8)(8 * sb + 2 * jp + h, t, n);
        };

        // The integer dot of sub-block j = 2 jp + h, in parts of `kp`. Byte
        // b = 4 g + (its place in the group of 4) of a 32-byte chunk.
        auto quant = [&](const Expr &b4, const Expr &g) {
            Expr q = w.q(b4, r, g, h, jp, sb, t, high16);
            if (iq4) return iq4_weight(f.form, q);
            return q5 ? q + (w.high(b4, r, g, h, jp, sb, t) << cast<uint8_t>(4)) : q;
        };
        // Activations as the schedule may stage them per token tile: act4(b4,
        // kq, n) is byte b4 of group kq of 4; act_d and act_sum per block.
        Var b4v("b4"), kq("kq"), j("j"), gq("gq");
        f.act4(b4v, kq, n) = a_qs_(4 * kq + b4v, n);
        f.act_d(sb, n) = a_d_(sb, n);
        f.act_sum(j, sb, n) = cast<int32_t>(a_bsums_(16 * sb + 2 * j, n)) + cast<int32_t>(a_bsums_(16 * sb + 2 * j + 1, n));
        auto act = [&](const Expr &b4, const Expr &g) {
            Expr a = f.act4(b4, 64 * sb + 8 * (2 * jp + h) + g, n);
            return iq4 ? iq4_act(f.form, w.q(b4, r, g, h, jp, sb, t), a) : a;
        };
        if (f.wide_part) {
            // vpmaddubsw pairs of |level| (2 * 127 * 127 < 32767), each
            // widened to i32 at once (vpmaddwd by ones) and summed over kp
            // and the 8 groups.
            f.dot = RDom(0, 2, "dot");
            f.groups = RDom(0, 2, 0, 8, "groups");  // kp, g
            Expr b4 = 2 * kp + f.dot;
            f.pair(kp, r, f.g, h, jp, sb, t, n) = cast<int16_t>(0);
            f.pair(kp, r, f.g, h, jp, sb, t, n) = saturating_add(f.pair(kp, r, f.g, h, jp, sb, t, n),
                                                                 widening_mul(quant(b4, f.g), act(b4, f.g)));
            f.part(kp, r, h, jp, sb, t, n) = 0;
            f.part(kp, r, h, jp, sb, t, n) += cast<int32_t>(f.pair(f.groups.x, r, f.groups.y, h, jp, sb, t, n));
        } else if (f.form == DotForm::u8s8_pairs) {
            // vpmaddubsw: pairs of u8 x s8 products summed in i16 (never
            // saturates: 2 * 15 * 127 < 32767), then the 8 groups in i16
            // (8 * 3810 < 32767); the scale multiply pairs them in i32.
            // Q5_K's pairs reach 2 * 31 * 127, so a part holds 4 groups
            // (4 * 7874 < 32767) and a sub-block has two, `gq`.
            f.dot = RDom(0, 2, "dot");
            Expr b4 = 2 * kp + f.dot;
            f.pair(kp, r, f.g, h, jp, sb, t, n) = cast<int16_t>(0);
            f.pair(kp, r, f.g, h, jp, sb, t, n) = saturating_add(f.pair(kp, r, f.g, h, jp, sb, t, n),
                                                                 widening_mul(quant(b4, f.g), act(b4, f.g)));
            if (q5) {
                f.groups = RDom(0, 4, "groups");
                f.part(kp, r, gq, h, jp, sb, t, n) = cast<int16_t>(0);
                f.part(kp, r, gq, h, jp, sb, t, n) += f.pair(kp, r, 4 * gq + f.groups, h, jp, sb, t, n);
            } else {
                f.groups = RDom(0, 8, "groups");
                f.part(kp, r, h, jp, sb, t, n) =
                    touch_parts ? cast<int16_t>(part_touch()) : cast<int16_t>(0);
                f.part(kp, r, h, jp, sb, t, n) += f.pair(kp, r, f.groups, h, jp, sb, t, n);
            }
        } else {
            f.dot = RDom(0, 4, 0, 8, "dot");  // byte in the group of 4, group
            f.part(kp, r, h, jp, sb, t, n) = part_touch();
            f.part(kp, r, h, jp, sb, t, n) += packed_dot_term(f.form, quant(f.dot.x, f.dot.y), act(f.dot.x, f.dot.y));
        }
        const int parts = f.form == DotForm::u8s8_pairs && !f.wide_part ? 2 : 1;
        // The sub-block scale: Q4_K's 6 bits, or IQ4_XS's int8.
        auto scale = [&](const Expr &j) {
            Expr sc = w.sc(r, j, sb, t);
            return iq4 ? cast<int32_t>(reinterpret<int8_t>(sc)) : cast<int32_t>(cast<int16_t>(sc));
        };
        f.sacc(r, sb, t, n) = touch_parts ? Expr(0) : Expr(weight_touch(weight, PackedKind::q4k, get_target(), knobs(), y.dim(1).min())(sb, t, n));
        if (q5 && f.form == DotForm::u8s8_pairs) {
            f.subs = RDom(0, parts, 0, 2, 0, 2, 0, 4, "subs");  // kp, gq, h, jp
            f.sacc(r, sb, t, n) += cast<int32_t>(f.part(f.subs.x, r, f.subs.y, f.subs.z, f.subs.w, sb, t, n)) *
                                   cast<int32_t>(cast<int16_t>(w.sc(r, 2 * f.subs.w + f.subs.z, sb, t)));
        } else {
            f.subs = RDom(0, parts, 0, 2, 0, 4, "subs");  // kp, h, jp
            Expr sc = scale(2 * f.subs.z + f.subs.y);
            f.sacc(r, sb, t, n) += cast<int32_t>(f.part(f.subs.x, r, f.subs.y, f.subs.z, sb, t, n)) *
                                   (high16 ? select(f.subs.y == 0, sc * 16, sc) : sc);
        }
        // Q4_K's mins, or IQ4_XS's scales (against its zero point), times
        // the sub-block activation sums.
        f.mins = RDom(0, 8, "mins");
        f.macc(r, sb, t, n) = 0;
        f.macc(r, sb, t, n) += (iq4 ? scale(f.mins) : cast<int32_t>(w.m(r, f.mins, sb, t))) * f.act_sum(f.mins, sb, n);

        f.blocks = RDom(0, weight.dim(1).extent(), "blocks");
        Expr b = f.blocks;
        f.acc(r, t, n) = 0.0f;
        if (!iq4) {
            f.acc(r, t, n) += f.act_d(b, n) * ((high16 ? w.d(r, b, t) * 0.0625f : w.d(r, b, t)) * cast<float>(f.sacc(r, b, t, n)) -
                                            w.dmin(r, b, t) * cast<float>(f.macc(r, b, t, n)));
        } else if (iq4_zero(f.form) != 0) {
            f.acc(r, t, n) += f.act_d(b, n) * (w.d(r, b, t) * cast<float>(f.sacc(r, b, t, n) -
                                                                       iq4_zero(f.form) * f.macc(r, b, t, n)));
        } else {
            f.acc(r, t, n) += f.act_d(b, n) * (w.d(r, b, t) * cast<float>(f.sacc(r, b, t, n)));
        }
        packed_output(y, f.acc, bias, has_bias, bias.dim(0).extent(), o, n, R, f.head);
        f.y = y;
        f.pairs = tile_pairs();

        if (autoscheduled()) {
            const int T = estimate_tokens(), blocks = kEstimateIn / 256;
            weight.set_estimates({{0, (q5 ? kQ5KPackedBlockBytes : iq4 ? kIQ4XSPackedBlockBytes : kQ4KPackedBlockBytes) * R},
                                  {0, blocks}, {0, tile_pairs() * kEstimateOut / R}});
            a_d.set_estimates({{0, blocks}, {0, T}});
            a_qs.set_estimates({{0, kEstimateIn}, {0, T}});
            a_bsums.set_estimates({{0, kEstimateIn / 16}, {0, T}});
            estimate_epilogue(y, bias, has_bias);
            return;
        }
        schedule_family_for(get_target()).q4k_packed_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q4KPackedMatmulQ8, q4k_packed_matmul_q8)
