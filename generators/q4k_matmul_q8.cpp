// Y = X * W^T + b with Q4_K weights and Q8_K activations (the llama.cpp
// decode path, FORMATS.md "Q8_K"): u4 x s8 products summed in int32 per
// sub-block, scaled by the 6-bit sub-block scales in int32, then
//   y += a.d * w.d * sum_j sc_j isum_j  -  a.d * w.dmin * sum_j m_j (bsums).
// A sub-block's 32 products are written as 8 sums of 4 (dot4): the shape of
// vpdpbusd, sdot and dp4a. Integer sums are exact, so this changes nothing.
#include "q4k_block.h"

namespace qforge {

class Q4KMatmulQ8 : public KernelGenerator<Q4KMatmulQ8> {
public:
    static constexpr bool kEpilogue = true;  // ends in with_epilogue (common.h): act + residual
    Input<Buffer<uint8_t, 2>> weight{"weight"};   // [in/256*144, out]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/256, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_bsums{"a_bsums"}; // [in/16, tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        Func weight_ = clamp_outer(weight);
        Func a_d_ = clamp_outer(a_d);
        Func a_qs_ = clamp_outer(a_qs);
        Func a_bsums_ = clamp_outer(a_bsums);
        BlockMatmulQ8Funcs f;
        f.weight = weight;
        f.x = a_qs;
        Var r = f.r, n = f.n, k = f.k, j = f.j, b = f.b, l = f.l;
        Q4KRow w{weight_};
        Expr blocks = a_qs.dim(0).extent() / kQK;

        // Dots of 4 u8 x s8 in i32 (dp4a, vpdpbusd) take the high nibble in
        // place (16 q): no target has a byte shift (CUDA's PTX built each
        // shifted byte in 4-5 instructions, 945 a super-block a lane where
        // and-only gives about 400). The low sub-blocks' scales take the 16
        // and d takes 1/16; both are powers of two, so the result has the
        // same bits.
        const bool high16 = schedule_family_for(get_target()).dot_form(get_target()) == DotForm::u8s8_dot4;
        f.quants(l, j, b, r) = w.q(b, j, l, r, high16);
        f.t = RDom(0, 4, "t");
        Expr lt = 4 * k + f.t;
        f.dot4(k, j, b, r, n) = 0;
        f.dot4(k, j, b, r, n) += cast<int32_t>(f.quants(lt, j, b, r)) * cast<int32_t>(a_qs_(b * kQK + 32 * j + lt, n));

        f.sub = RDom(0, 8, "sub");
        f.bdot(k, b, r, n) = 0;
        Expr sc = w.sc(b, f.sub, r);
        f.bdot(k, b, r, n) += (high16 ? select(f.sub % 2 == 0, sc * 16, sc) : sc) * f.dot4(k, f.sub, b, r, n);

        f.msub = RDom(0, 8, "msub");
        Expr pair = cast<int32_t>(a_bsums_(b * 16 + 2 * f.msub, n)) + cast<int32_t>(a_bsums_(b * 16 + 2 * f.msub + 1, n));
        // Negated here, so that the min term below is a plain sum (what a
        // schedule can rfactor); negation is exact, the result is unchanged.
        f.bmin(b, r, n) = 0;
        f.bmin(b, r, n) += -w.m(b, f.msub, r) * pair;

        f.main = RDom(0, 8, 0, blocks, "main");
        f.mins = RDom(0, blocks, "mins");
        RVar mk = f.main.x, mb = f.main.y;
        f.acc(r, n) = bias_or_zero(bias, has_bias, bias.dim(0).extent(), r);
        f.acc(r, n) += (a_d_(mb, n) * (high16 ? w.d(mb, r) * 0.0625f : w.d(mb, r))) * cast<float>(f.bdot(mk, mb, r, n));
        f.acc(r, n) += (a_d_(f.mins, n) * w.dmin(f.mins, r)) * cast<float>(f.bmin(f.mins, r, n));
        y(r, n) = with_epilogue(f.acc(r, n), r, n);
        f.y = y;

        schedule_family_for(get_target()).block_matmul_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q4KMatmulQ8, q4k_matmul_q8)
