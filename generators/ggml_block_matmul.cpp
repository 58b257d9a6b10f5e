// Y = X * W^T + b with weights in a GGUF block format (ggml_blocks.h) and
// f32 activations: each weight is dequantized in registers as it is used.
#include "ggml_blocks.h"

namespace qforge {

class GGMLBlockMatmul : public KernelGenerator<GGMLBlockMatmul> {
public:
    static constexpr bool kEpilogue = true;  // ends in with_epilogue (common.h): act + residual
    GeneratorParam<std::string> format{"format", "q4_0"};

    Input<Buffer<uint8_t, 2>> weight{"weight"};  // [in/block*bytes, out]
    Input<Buffer<float, 2>> x{"x"};              // [in, tokens]
    Input<Buffer<float, 1>> bias{"bias"};        // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};             // [out, tokens]

    void generate() {
        const GGMLBlockFormat fmt = ggml_block_format(format);
        Func weight_ = clamp_outer(weight);
        Func x_ = activations(x);
        GroupMatmulFuncs f;
        f.group_size = fmt.block;
        f.interleave = fmt.interleave;
        f.weight = weight;
        f.x = x;
        Var r = f.r, n = f.n;
        f.wq(f.c, r) = fmt.at_column(weight_, f.c, r);
        f.main = RDom(0, fmt.interleave, 0, fmt.block / fmt.interleave, 0, x.dim(0).extent() / fmt.block, "main");
        f.acc(r, n) = bias_or_zero(bias, has_bias, bias.dim(0).extent(), r);
        Expr col = fmt.column(f.main.z, f.main.x, f.main.y);
        f.acc(r, n) += f.wq(col, r) * x_(col, n);
        y(r, n) = with_epilogue(f.acc(r, n), r, n);
        f.y = y;
        schedule_family_for(get_target()).group_matmul(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::GGMLBlockMatmul, ggml_block_matmul)
