// Y = X * W^T + b with int4g weights (FORMATS.md, "int4g"), or int4z's
// (zero_points: "int4z"), unpack -> dequantize -> multiply fused: the
// dequantized weight exists only in registers.
#include "common.h"

namespace qforge {

class Int4gMatmul : public KernelGenerator<Int4gMatmul> {
public:
    static constexpr bool kEpilogue = true;  // ends in with_epilogue (common.h): act + residual
    GeneratorParam<int> group_size{"group_size", 32};
    // int4z: one more input after has_bias (before the norm's), the zero
    // points [n_groups, out] (u8), subtracted from the nibbles instead of 8.
    GeneratorParam<bool> zero_points{"zero_points", false};

    Input<Buffer<uint8_t, 2>> weight{"weight"};    // [in/2, out]
    Input<Buffer<uint16_t, 2>> scales{"scales"};   // f16 bits, [n_groups, out]
    Input<Buffer<float, 2>> x{"x"};                // [in, tokens]
    Input<Buffer<float, 1>> bias{"bias"};          // [out], or one element when absent
    Input<bool> has_bias{"has_bias"};
    Output<Buffer<float, 2>> y{"y"};               // [out, tokens]

    void configure() {
        if (zero_points) zeros_ = add_input<Buffer<uint8_t, 2>>("zeros");
        KernelGenerator<Int4gMatmul>::configure();
    }

    void generate() {
        Func weight_ = clamp_outer(weight);
        Func scales_ = clamp_outer(scales);
        Func x_ = activations(x);
        Func zeros_clamped;
        if (zero_points) zeros_clamped = clamp_outer(*zeros_);
        const int G = group_size;
        check(G >= 2 && G % 2 == 0, "group_size must be even and >= 2");
        GroupMatmulFuncs f;
        f.group_size = G;
        f.interleave = 2;
        f.weight = weight;
        f.x = x;
        Var r = f.r, n = f.n;
        Expr in = x.dim(0).extent();
        Expr full_groups = in / G;
        Expr tail_pairs = (in - full_groups * G) / 2;

        // The dequantized weight of column c, row r: (nibble - 8) * scale, or
        // int4z's scale * nibble - scale * zero: the second product is one
        // per group, a broadcast float (a zero subtracted from the nibbles'
        // lanes lowers on x86 to a byte inserted lane by lane: 8 vpinsrb per
        // 8 weights), and every step is exact (scale has 11 significant bits,
        // q and zero 4).
        auto dequant = [&](Expr c, Expr row) {
            Expr nibble = (weight_(c / 2, row) >> cast<uint8_t>(4 * (c % 2))) & cast<uint8_t>(15);
            Expr scale = f16_bits_to_f32(scales_(c / G, row));
            if (!zero_points) return scale * cast<float>(cast<int32_t>(nibble) - 8);
            // strict_float keeps the simplifier from factoring the two products back
            // into scale * (q - zero), which it narrows to that lane-by-lane byte.
            return scale * cast<float>(nibble) - strict_float(scale * cast<float>(zeros_clamped(c / G, row)));
        };
        f.wq(f.c, r) = dequant(f.c, r);

        f.main = RDom(0, 2, 0, G / 2, 0, full_groups, "main");
        f.tail = RDom(0, 2, 0, tail_pairs, "tail");
        f.acc(r, n) = bias_or_zero(bias, has_bias, bias.dim(0).extent(), r);
        Expr col = f.main.z * G + 2 * f.main.y + f.main.x;
        f.acc(r, n) += f.wq(col, r) * x_(col, n);
        Expr tail_col = full_groups * G + 2 * f.tail.y + f.tail.x;
        f.acc(r, n) += dequant(tail_col, r) * x_(tail_col, n);
        y(r, n) = with_epilogue(f.acc(r, n), r, n);
        f.y = y;

        if (autoscheduled()) {
            weight.set_estimates({{0, kEstimateIn / 2}, {0, kEstimateOut}});
            scales.set_estimates({{0, kEstimateIn / G}, {0, kEstimateOut}});
            if (zeros_) zeros_->set_estimates({{0, kEstimateIn / G}, {0, kEstimateOut}});
            x.set_estimates({{0, kEstimateIn}, {0, estimate_tokens()}});
            estimate_epilogue(y, bias, has_bias);
            return;
        }
        schedule_family_for(get_target()).group_matmul(f, get_target(), knobs());
    }

private:
    GeneratorInput<Buffer<uint8_t, 2>> *zeros_ = nullptr;
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Int4gMatmul, int4g_matmul)
