// RMSNorm of every attention head (Qwen3's and Gemma 3's q/k norms): for
// x [D, heads, tokens], out(d, h, n) = x(d, h, n) / sqrt(mean_d x^2 + eps)
// * weight(d), with weight_1 and eps_1 for the heads from `split` on (a
// QKV output's q heads, then its k heads: one launch for both). Safe in
// place (out and x the same memory): each head's sum of squares is
// complete before any of its outputs is written, and each output reads
// only its own input.
#include "common.h"

namespace qforge {

class HeadNorm : public KernelGenerator<HeadNorm> {
public:
    Input<Buffer<float, 3>> x{"x"};           // [D, heads, tokens]
    Input<Buffer<float, 1>> weight{"weight"};     // [D]: heads below split
    Input<Buffer<float, 1>> weight_1{"weight_1"}; // [D]: heads from split on
    Input<int32_t> split{"split"};
    Input<float> eps{"eps"};
    Input<float> eps_1{"eps_1"};
    Output<Buffer<float, 3>> out{"out"};      // [D, heads, tokens]

    void generate() {
        HeadNormFuncs f;
        Var d = f.d, h = f.h, n = f.n;
        Expr D = x.dim(0).extent();
        f.e = RDom(0, D, "e");
        f.sq(h, n) = 0.0f;
        f.sq(h, n) += x(f.e, h, n) * x(f.e, h, n);
        Expr second = h >= split;
        out(d, h, n) = x(d, h, n) * (1.0f / sqrt(f.sq(h, n) / cast<float>(D) + select(second, eps_1, eps))) *
                       select(second, weight_1(d), weight(d));
        f.out = out;
        schedule_family_for(get_target()).head_norm(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::HeadNorm, head_norm)
