// Y = X * W^T + b with Q6_K (bits=6), Q3_K (bits=3) or Q2_K (bits=2)
// weights in the packed layout (FORMATS.md, "Packed Q6_K", "Packed Q3_K",
// "Packed Q2_K") and Q8_K activations: the K-quants of 16-value sub-blocks,
// whose sub-blocks are Q8_K's. Rows are the vector lanes as in
// q4k_packed_matmul_q8.cpp. The quants are put together from their bit
// fields in the loop (one shift and mask each, shifts constant per group)
// and dotted unsigned, q = w/(d sc) + off (Q6_K 0..63, off 32; Q3_K 0..7,
// off 4; Q2_K 0..3, no offset but a min); the offset and the min fold into
// the activation sums bsum_j of the sub-blocks:
//   y += a.d * (d * (sum_j sc_j isum_j - off sum_j sc_j bsum_j) - dmin sum_j m_j bsum_j)
// isum_j the integer dot of sub-block j, sc_j its scale (signed for Q6_K
// and Q3_K). Integer sums are exact: every DotForm computes the same isum.
#include "common.h"

namespace qforge {

// Per row of a packed tile, and where each field starts (in units of R bytes).
struct K16Layout {
    int block_bytes, scales_at, d_at, offset;
    bool has_min;  // Q2_K: a 4-bit min beside each 4-bit scale, and dmin after d
};
inline K16Layout k16_layout(int bits) {
    if (bits == 6) return {210, 192, 208, 32, false};
    if (bits == 3) return {114, 96, 112, 4, false};
    return {84, 64, 80, 0, true};
}

class Q6KPackedMatmulQ8 : public KernelGenerator<Q6KPackedMatmulQ8> {
public:
    static constexpr bool kEpilogue = true;  // ends in packed_output (common.h): bias, glu or act + residual
    GeneratorParam<int> pack_rows{"pack_rows", 16};  // R: rows per packed tile
    GeneratorParam<int> bits{"bits", 6};              // 6: Q6_K, 3: Q3_K, 2: Q2_K

    Input<Buffer<uint8_t, 3>> weight{"weight"};   // [bytes per row R, in/256, tiles]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/256, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_bsums{"a_bsums"}; // [in/16, tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        const int R = pack_rows;
        check(R > 0 && R % 4 == 0, "pack_rows must be a positive multiple of 4");
        check(bits == 6 || bits == 3 || bits == 2, "bits must be 6 (Q6_K), 3 (Q3_K) or 2 (Q2_K)");
        const K16Layout L = k16_layout(bits);
        constrain_packed(weight, y, L.block_bytes * R);
        Func wt = clamp_tiles(weight);  // the weight as the kernel reads it
        Func a_d_ = clamp_outer(a_d), a_qs_ = clamp_outer(a_qs), a_bsums_ = clamp_outer(a_bsums);

        PackedQ6KFuncs f;
        f.rows = R;
        f.form = schedule_family_for(get_target()).dot_form(get_target());
        f.weight = weight;
        Var r = f.r, t = f.t, n = f.n, kp = f.kp, u = f.u, sb = f.sb, o = f.o, G = f.G;

        // Group G (0..63) of 4 weights, k = 4 G + b4 = 128 c + 32 i + l, all
        // its fields at byte place l4 of their runs. Q6_K: low bits in
        // nibble i / 2 of ql run 2 c + i % 2, high bits 2 i.. of qh run c.
        // Q3_K, Q2_K: low bits 2 i.. of qs run c; Q3_K's third bit is bit
        // 4 c + i of the hmask run.
        const int b = bits;
        auto quant = [&, b](const Expr &b4, const Expr &G_) {
            Expr c = G_ / 32, i = (G_ / 8) % 4, l4 = b4 + 4 * r + 4 * R * (G_ % 8);
            if (b == 6) {
                Expr ql = wt(l4 + 32 * R * (2 * c + i % 2), sb, t);
                Expr qh = wt(128 * R + l4 + 32 * R * c, sb, t);
                Expr lo = select(i / 2 == 0, ql & cast<uint8_t>(15), ql >> cast<uint8_t>(4));
                Expr hi = (qh >> cast<uint8_t>(2 * i)) & cast<uint8_t>(3);
                // + rather than |: bounds inference then knows q < 64, so ARM narrows it to s8 (sdot).
                return lo + (hi << cast<uint8_t>(4));
            }
            Expr lo = (wt(l4 + 32 * R * c, sb, t) >> cast<uint8_t>(2 * i)) & cast<uint8_t>(3);
            if (b == 2) return lo;
            Expr hi = (wt(64 * R + l4, sb, t) >> cast<uint8_t>(4 * c + i)) & cast<uint8_t>(1);
            return lo + (hi << cast<uint8_t>(2));
        };
        auto scale_byte = [&](const Expr &j) { return wt(L.scales_at * R + R * j + r, sb, t); };
        auto sc = [&](const Expr &j) {
            return L.has_min ? cast<int32_t>(scale_byte(j) & cast<uint8_t>(15))
                             : cast<int32_t>(reinterpret<int8_t>(scale_byte(j)));
        };
        auto f16_at = [&](int at, const Expr &blk) {
            return f16_bits_to_f32(u16_le(wt(at * R + 2 * r, blk, t), wt(at * R + 2 * r + 1, blk, t)));
        };

        Var b4v("b4"), kq("kq"), j("j");
        f.act4(b4v, kq, n) = a_qs_(4 * kq + b4v, n);
        f.act_d(sb, n) = a_d_(sb, n);
        f.act_sum(j, sb, n) = cast<int32_t>(a_bsums_(16 * sb + j, n));
        auto act = [&](const Expr &b4, const Expr &G_) { return f.act4(b4, 64 * sb + G_, n); };
        // part(kp, r, u, ...) sums the groups of unit u: a sub-block of 4
        // groups, or for Q6_K's u8s8_pairs half of one (2 * 2 * 63 * 128 <
        // 32767: two groups' pairs are all i16 holds), so `units` per
        // sub-block. Q3_K's and Q2_K's four fit (4 * 2 * 7 * 128).
        if (f.form == DotForm::u8s8_pairs) {
            f.units = bits == 6 ? 2 : 1;
            const int per_unit = 4 / f.units;
            f.dot = RDom(0, 2, "dot");
            f.groups = RDom(0, per_unit, "groups");
            Expr b4 = 2 * kp + f.dot;
            f.pair(kp, r, G, sb, t, n) = cast<int16_t>(0);
            f.pair(kp, r, G, sb, t, n) = saturating_add(f.pair(kp, r, G, sb, t, n), widening_mul(quant(b4, G), act(b4, G)));
            f.part(kp, r, u, sb, t, n) = cast<int16_t>(0);
            f.part(kp, r, u, sb, t, n) += f.pair(kp, r, per_unit * u + f.groups, sb, t, n);
        } else {
            f.units = 1;
            f.dot = RDom(0, 4, 0, 4, "dot");  // byte in the group of 4, group in the sub-block
            // The weight touch (weight_touch, common.h) starts each sub-block's
            // dot, so that a block's prefetches can be spread over them; the
            // pair form's parts are i16, so there it starts the block's sums.
            f.part(kp, r, u, sb, t, n) = weight_touch(weight, PackedKind::q6k, get_target(), knobs(), y.dim(1).min(), 16)(16 * sb + u, t, n);
            f.part(kp, r, u, sb, t, n) += packed_dot_term(f.form, quant(f.dot.x, 4 * u + f.dot.y), act(f.dot.x, 4 * u + f.dot.y));
        }
        const int parts = f.form == DotForm::u8s8_pairs ? 2 : 1;
        f.subs = RDom(0, parts, 0, 16 * f.units, "subs");  // kp, u
        f.sacc(r, sb, t, n) = f.form != DotForm::u8s8_pairs ? Expr(0) : Expr(weight_touch(weight, PackedKind::q6k, get_target(), knobs(), y.dim(1).min())(sb, t, n));
        f.sacc(r, sb, t, n) += cast<int32_t>(f.part(f.subs.x, r, f.subs.y, sb, t, n)) *
                               cast<int32_t>(cast<int16_t>(sc(f.subs.y / f.units)));
        // macc: the offset's scales (Q6_K, Q3_K) or the mins (Q2_K) against the sums.
        f.mins = RDom(0, 16, "mins");
        f.macc(r, sb, t, n) = 0;
        Expr m = L.has_min ? cast<int32_t>(scale_byte(f.mins) >> cast<uint8_t>(4)) : sc(f.mins);
        f.macc(r, sb, t, n) += m * f.act_sum(f.mins, sb, n);

        f.blocks = RDom(0, weight.dim(1).extent(), "blocks");
        Expr blk = f.blocks;
        f.acc(r, t, n) = 0.0f;
        if (L.has_min) {
            f.acc(r, t, n) += f.act_d(blk, n) * (f16_at(L.d_at, blk) * cast<float>(f.sacc(r, blk, t, n)) -
                                                 f16_at(L.d_at + 2, blk) * cast<float>(f.macc(r, blk, t, n)));
        } else {
            f.acc(r, t, n) += f.act_d(blk, n) * f16_at(L.d_at, blk) *
                              cast<float>(f.sacc(r, blk, t, n) - L.offset * f.macc(r, blk, t, n));
        }
        packed_output(y, f.acc, bias, has_bias, bias.dim(0).extent(), o, n, R, f.head);
        f.y = y;
        f.pairs = tile_pairs();

        if (autoscheduled()) {
            const int T = estimate_tokens(), blocks = kEstimateIn / 256;
            weight.set_estimates({{0, L.block_bytes * R}, {0, blocks}, {0, tile_pairs() * kEstimateOut / R}});
            a_d.set_estimates({{0, blocks}, {0, T}});
            a_qs.set_estimates({{0, kEstimateIn}, {0, T}});
            a_bsums.set_estimates({{0, kEstimateIn / 16}, {0, T}});
            estimate_epilogue(y, bias, has_bias);
            return;
        }
        const ScheduleFamily &family = schedule_family_for(get_target());
        // CUDA has no packed Q6_K schedule (no row asks for one): say so, not a null call.
        check(family.q6k_packed_q8 != nullptr,
              std::string("q6k_packed_matmul_q8: the ") + family.name + " schedules have no packed Q6_K kernel");
        family.q6k_packed_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q6KPackedMatmulQ8, q6k_packed_matmul_q8)
