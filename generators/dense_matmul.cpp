// Y = X * W^T + b with dense f32, f16 or bf16 weights: the unquantized
// baseline and the kernel behind eager dequantization. bf16 becomes f32 by
// its bits (<< 16, exact): Halide 21's bf16 -> f32 cast trips an LLVM
// assertion on CUDA, and on CPUs it is the same shift.
#include "common.h"

namespace qforge {

class DenseMatmul : public KernelGenerator<DenseMatmul> {
public:
    static constexpr bool kEpilogue = true;  // ends in with_epilogue (common.h): act + residual
    // Columns per reduction group: one vector run of the rfactored sum.
    GeneratorParam<int> group_size{"group_size", 64};

    Input<Buffer<void, 2>> weight{"weight"};  // f32, f16 or bf16 (weight.type), [in, out]
    Input<Buffer<float, 2>> x{"x"};           // [in, tokens]
    Input<Buffer<float, 1>> bias{"bias"};     // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};          // [out, tokens]

    void generate() {
        check(weight.type() == Float(32) || weight.type() == Float(16) || weight.type() == BFloat(16),
              "weight.type must be float32, float16 or bfloat16");
        const int G = group_size;
        Func weight_ = clamp_outer(weight);
        Func x_ = activations(x);
        GroupMatmulFuncs f;
        f.group_size = G;
        f.interleave = 1;
        f.weight = weight;
        f.x = x;
        Var r = f.r, n = f.n;
        Expr in = x.dim(0).extent();
        auto to_f32 = [&](const Expr &w) {
            if (weight.type() != BFloat(16)) return cast<float>(w);
            return reinterpret<float>(cast<uint32_t>(reinterpret<uint16_t>(w)) << 16);
        };
        f.wq(f.c, r) = to_f32(weight_(f.c, r));
        f.main = RDom(0, 1, 0, G, 0, in / G, "main");
        f.tail = RDom(0, in % G, "tail");
        f.acc(r, n) = bias_or_zero(bias, has_bias, bias.dim(0).extent(), r);
        Expr col = f.main.z * G + f.main.y + f.main.x;
        f.acc(r, n) += f.wq(col, r) * x_(col, n);
        Expr tail_col = (in / G) * G + f.tail.x;
        f.acc(r, n) += to_f32(weight_(tail_col, r)) * x_(tail_col, n);
        y(r, n) = with_epilogue(f.acc(r, n), r, n);
        f.y = y;
        schedule_family_for(get_target()).group_matmul(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::DenseMatmul, dense_matmul)
