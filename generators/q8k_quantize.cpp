// f32 activations -> Q8_K blocks (FORMATS.md, "Q8_K"), ggml's rule: x_max is
// the first element of largest magnitude, iscale = -127 / x_max,
// qs = min(127, round_half_even(iscale * x)), d = 1 / iscale, bsums over 16.
// The blocks come out as three planes (d, qs, bsums) rather than ggml's
// interleaved struct: the matmul kernels read each plane with unit stride.
#include "common.h"

namespace qforge {

class Q8KQuantize : public KernelGenerator<Q8KQuantize> {
public:
    Input<Buffer<float, 2>> x{"x"};            // [in, tokens], in % 256 == 0
    Output<Buffer<float, 2>> d{"d"};           // [in/256, tokens]
    Output<Buffer<int8_t, 2>> qs{"qs"};        // [in, tokens]
    Output<Buffer<int16_t, 2>> bsums{"bsums"}; // [in/16, tokens]

    void generate() {
        Func xn = activations(x);  // with norm=true: the normalised x, never stored
        Q8KQuantizeFuncs f;
        // One name for every output's first dimension (a column of qs, a
        // block of d, a group of bsums): loops fuse by name (compute_with).
        f.b = f.g = f.c;
        Var c = f.c, b = f.b, g = f.g, n = f.n;
        RDom e(0, 256, "e");
        f.e = e;
        f.amax(b, n) = 0.0f;
        f.amax(b, n) = max(f.amax(b, n), abs(xn(b * 256 + e, n)));
        f.first(b, n) = 255;
        f.first(b, n) = min(f.first(b, n), select(abs(xn(b * 256 + e, n)) == f.amax(b, n), e, 255));
        Expr x_max = xn(b * 256 + clamp(f.first(b, n), 0, 255), n);
        f.iscale(b, n) = select(f.amax(b, n) == 0.0f, 0.0f, -127.0f / x_max);

        auto quant = [&](const Expr &col) {
            return cast<int8_t>(min(127, cast<int32_t>(round(f.iscale(col / 256, n) * xn(col, n)))));
        };
        qs(c, n) = quant(c);
        d(b, n) = select(f.amax(b, n) == 0.0f, 0.0f, 1.0f / f.iscale(b, n));
        // bsums from the values, not from qs: the outputs do not depend on
        // each other, so a schedule can compute all three in one loop nest
        // (on CUDA one kernel: each root Func, and each update, is a launch).
        RDom t(0, 16, "t");
        if (get_target().has_gpu_feature()) {
            bsums(g, n) = sum(cast<int16_t>(quant(g * 16 + t)));
        } else {
            // The same sum as an update of bsums, so that a CPU schedule can
            // reduce a group's 16 contiguous values in one vector; summed in
            // the pure definition's lanes (a lane a group) every lane loads
            // x 16 values apart, one scalar load and insert a value.
            f.t = t;
            bsums(g, n) = cast<int16_t>(0);
            bsums(g, n) += cast<int16_t>(quant(g * 16 + t));
        }
        f.qs = qs;
        f.d = d;
        f.bsums = bsums;
        schedule_family_for(get_target()).q8k_quantize(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q8KQuantize, q8k_quantize)
