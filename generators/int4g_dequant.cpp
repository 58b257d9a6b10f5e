// int4g -> f32 (FORMATS.md, "int4g"): W[r, c] = (nibble(r, c) - 8) * scale[r, c / G];
// int4z (zero_points): (nibble(r, c) - zero[r, c / G]) * scale[r, c / G].
#include "common.h"

namespace qforge {

class Int4gDequant : public KernelGenerator<Int4gDequant> {
public:
    GeneratorParam<int> group_size{"group_size", 32};
    // int4z: one more input after scales, the zero points [n_groups, out] (u8).
    GeneratorParam<bool> zero_points{"zero_points", false};

    Input<Buffer<uint8_t, 2>> weight{"weight"};    // [in/2, out]
    Input<Buffer<uint16_t, 2>> scales{"scales"};   // f16 bits, [n_groups, out]
    // f32, or f16 (out.type=float16: the weights of the CUDA prefill GEMM)
    Output<Buffer<void, 2>> out{"out"};  // [in, out]

    void configure() {
        if (zero_points) zeros_ = add_input<Buffer<uint8_t, 2>>("zeros");
        KernelGenerator<Int4gDequant>::configure();
    }

    void generate() {
        const int G = group_size;
        check(G >= 2 && G % 2 == 0, "group_size must be even and >= 2");
        DequantFuncs f;
        f.weight = weight;
        Var c = f.c, r = f.r;
        Expr byte = weight(c / 2, r);
        Expr nibble = cast<int32_t>((byte >> cast<uint8_t>(4 * (c % 2))) & cast<uint8_t>(15));
        // (q - zero) * scale as FORMATS.md writes it, to the bit (a negative
        // scale times q - zero = 0 is -0; scale * q - scale * zero, the
        // matmul's form, would give +0).
        Expr zero = zero_points ? cast<int32_t>((*zeros_)(c / G, r)) : Expr(8);
        out(c, r) = cast(out.type(), cast<float>(nibble - zero) * f16_bits_to_f32(scales(c / G, r)));
        f.out = out;
        schedule_family_for(get_target()).dequant(f, get_target(), knobs());
    }

private:
    GeneratorInput<Buffer<uint8_t, 2>> *zeros_ = nullptr;
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Int4gDequant, int4g_dequant)
