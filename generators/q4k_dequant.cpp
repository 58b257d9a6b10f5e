// Q4_K rows -> f32 (FORMATS.md, "Q4_K"): w = d * sc[j] * q - dmin * m[j],
// evaluated in f32 in exactly that order so that it matches gguf-py bit for bit.
#include "q4k_block.h"

namespace qforge {

class Q4KDequant : public KernelGenerator<Q4KDequant> {
public:
    Input<Buffer<uint8_t, 2>> weight{"weight"};  // [in/256*144, out]
    // f32, or f16 (out.type=float16: the weights of the CUDA prefill GEMM)
    Output<Buffer<void, 2>> out{"out"};  // [in, out]

    void generate() {
        DequantFuncs f;
        f.weight = weight;
        f.block = kQK;
        Var c = f.c, r = f.r;
        Q4KRow w{weight};
        Expr b = c / kQK, j = (c % kQK) / 32, l = c % 32;
        Expr scale = w.d(b, r) * cast<float>(w.sc(b, j, r));
        Expr min = w.dmin(b, r) * cast<float>(w.m(b, j, r));
        // strict_float: no fused multiply-add, the rounding of each step is part of the format.
        out(c, r) = cast(out.type(), strict_float(scale * cast<float>(w.q(b, j, l, r)) - min));
        // Rows are whole super-blocks (the runtime checks in % 256 == 0).
        out.dim(0).set_min(0).set_extent((out.dim(0).extent() / kQK) * kQK);
        f.out = out;
        schedule_family_for(get_target()).dequant(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q4KDequant, q4k_dequant)
