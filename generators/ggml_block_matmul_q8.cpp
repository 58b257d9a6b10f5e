// Y = X * W^T + b with weights in a GGUF block format (ggml_blocks.h) and
// 8-bit activations of the same block (Q8_0 for the 32-blocks, Q8_K for
// the 256-blocks; FORMATS.md), over the file's layout: what the CPU's
// packed kernels compute, for targets without a packed layout (CUDA).
//   y += a.d * w.d * sum_j sc_j isum_j  -  a.d * w.min_d * sum_j m_j asum_j
// (plus a.d * w.min_d * asum for Q4_1 and Q5_1, whose min is a float)
// with isum_j the integer dot of sub-block j and asum_j its activation
// sum. As in q4k_matmul_q8, a 32-column chunk's products are 8 sums of 4
// (dot4: dp4a), integer and exact; sc multiplies them in int32, so a block
// costs one f32 multiply-add per lane (two with a min).
#include "ggml_blocks.h"

namespace qforge {

class GGMLBlockMatmulQ8 : public KernelGenerator<GGMLBlockMatmulQ8> {
public:
    static constexpr bool kEpilogue = true;  // ends in with_epilogue (common.h): act + residual
    GeneratorParam<std::string> format{"format", "q4_0"};

    Input<Buffer<uint8_t, 2>> weight{"weight"};   // [in/block*bytes, out]
    Input<Buffer<float, 2>> a_d{"a_d"};           // [in/block, tokens]
    Input<Buffer<int8_t, 2>> a_qs{"a_qs"};        // [in, tokens]
    Input<Buffer<int16_t, 2>> a_sums{"a_sums"};   // [in/32 (Q8_0) or in/16 (Q8_K), tokens]
    Input<Buffer<float, 1>> bias{"bias"};         // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};              // [out, tokens]

    void generate() {
        const GGMLBlockFormat fmt = ggml_block_format(format);
        const int run = fmt.run();
        check((run == 16 || run == 32) && (fmt.sub == 16 || fmt.sub == 32) && (fmt.block == 32 || fmt.block == 256),
              "ggml_block_matmul_q8: runs and sub-blocks of 16 or 32 weights, blocks of 32 or 256");
        const int sums_per_block = fmt.block == 32 ? 1 : 16;  // Q8_0: one sum a block; Q8_K: one per 16
        Func weight_ = clamp_outer(weight);
        Func a_d_ = clamp_outer(a_d);
        Func a_qs_ = clamp_outer(a_qs);
        Func a_sums_ = clamp_outer(a_sums);
        BlockMatmulQ8Funcs f;
        f.weight = weight;
        f.x = a_qs;
        Var r = f.r, n = f.n, k = f.k, j = f.j, b = f.b, l = f.l;
        Expr blocks = a_qs.dim(0).extent() / fmt.block;

        // Weight l (0..31) of 32-column chunk j: run p, index k of the format.
        Expr p = run == 32 ? Expr(j) : 2 * j + l / 16;
        f.quants(l, j, b, r) = fmt.quant(weight_, b, p, run == 32 ? Expr(l) : l % 16, r);
        f.t = RDom(0, 4, "t");
        Expr lt = 4 * k + f.t;
        f.dot4(k, j, b, r, n) = 0;
        f.dot4(k, j, b, r, n) += cast<int32_t>(f.quants(lt, j, b, r)) * cast<int32_t>(a_qs_(b * fmt.block + 32 * j + lt, n));

        f.sub = RDom(0, fmt.block / 32, "sub");
        f.bdot(k, b, r, n) = 0;
        if (fmt.sc) {
            Expr js = fmt.sub == 32 ? Expr(f.sub) : 2 * f.sub + k / 4;  // the sub-block of lane k's 4 columns
            f.bdot(k, b, r, n) += fmt.sc(weight_, b, js, r) * f.dot4(k, f.sub, b, r, n);
        } else {
            f.bdot(k, b, r, n) += f.dot4(k, f.sub, b, r, n);
        }

        f.main = RDom(0, 8, 0, blocks, "main");
        RVar mk = f.main.x, mb = f.main.y;
        f.acc(r, n) = bias_or_zero(bias, has_bias, bias.dim(0).extent(), r);
        f.acc(r, n) += (a_d_(mb, n) * fmt.d(weight_, mb, r)) * cast<float>(f.bdot(mk, mb, r, n));
        if (fmt.min_d) {
            // sum_j m_j asum_j, with asum_j the activation sum of sub-block j.
            f.msub = RDom(0, fmt.block / fmt.sub, "msub");
            const int per = fmt.sub * sums_per_block / fmt.block;  // activation sums a sub-block
            Expr at = b * sums_per_block + per * f.msub;
            Expr asum = cast<int32_t>(a_sums_(at, n));
            if (per == 2) asum += cast<int32_t>(a_sums_(at + 1, n));
            f.bmin(b, r, n) = 0;
            // Negated where the format subtracts its mins, so that bmin is a plain sum.
            f.bmin(b, r, n) += fmt.m ? -fmt.m(weight_, b, f.msub, r) * asum : asum;
            f.mins = RDom(0, blocks, "mins");
            f.acc(r, n) += (a_d_(f.mins, n) * fmt.min_d(weight_, f.mins, r)) * cast<float>(f.bmin(f.mins, r, n));
        }
        y(r, n) = with_epilogue(f.acc(r, n), r, n);
        f.y = y;

        schedule_family_for(get_target()).block_matmul_q8(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::GGMLBlockMatmulQ8, ggml_block_matmul_q8)
