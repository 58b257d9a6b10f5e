// Y = X * W^T + b with Q4_K weights and f32 activations, fused:
//   sum_c w(c) x(c) = sum_{b,j} d sc_j sum_l q x  -  sum_{b,j} dmin m_j sum_l x
// so the min term needs only per-sub-block sums of x, and no dequantized
// weight is ever stored.
#include "q4k_block.h"

namespace qforge {

class Q4KMatmulF32 : public KernelGenerator<Q4KMatmulF32> {
public:
    static constexpr bool kEpilogue = true;  // ends in with_epilogue (common.h): act + residual
    Input<Buffer<uint8_t, 2>> weight{"weight"};  // [in/256*144, out]
    Input<Buffer<float, 2>> x{"x"};              // [in, tokens]
    Input<Buffer<float, 1>> bias{"bias"};        // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};             // [out, tokens]

    void generate() {
        Func weight_ = clamp_outer(weight);
        Func x_ = activations(x);
        Q4KMatmulF32Funcs f;
        f.weight = weight;
        f.x = x;
        Var r = f.r, n = f.n, l = f.l, j = f.j, b = f.b;
        Q4KRow w{weight_};
        Expr blocks = x.dim(0).extent() / kQK;

        f.scale(j, b, r) = w.d(b, r) * cast<float>(w.sc(b, j, r));
        // Negated so that the min term is a plain sum (what rfactor can split).
        f.neg_min(j, b, r) = -(w.dmin(b, r) * cast<float>(w.m(b, j, r)));
        f.wq(l, j, b, r) = f.scale(j, b, r) * cast<float>(w.q(b, j, l, r));
        RDom l32(0, 32, "l32");
        f.xsum(j, b, n) = 0.0f;
        f.xsum(j, b, n) += x_(b * kQK + 32 * j + l32, n);

        f.main = RDom(0, 32, 0, 8, 0, blocks, "main");
        f.mins = RDom(0, 8, 0, blocks, "mins");
        RVar ml = f.main.x, mj = f.main.y, mb = f.main.z;
        f.acc(r, n) = bias_or_zero(bias, has_bias, bias.dim(0).extent(), r);
        f.acc(r, n) += f.wq(ml, mj, mb, r) * x_(mb * kQK + 32 * mj + ml, n);
        f.acc(r, n) += f.neg_min(f.mins.x, f.mins.y, r) * f.xsum(f.mins.x, f.mins.y, n);
        y(r, n) = with_epilogue(f.acc(r, n), r, n);
        f.y = y;

        if (autoscheduled()) {
            weight.set_estimates({{0, kEstimateIn / 256 * 144}, {0, kEstimateOut}});
            x.set_estimates({{0, kEstimateIn}, {0, estimate_tokens()}});
            estimate_epilogue(y, bias, has_bias);
            return;
        }
        schedule_family_for(get_target()).q4k_matmul_f32(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q4KMatmulF32, q4k_matmul_f32)
