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
        Var c = f.c, b = f.b, g = f.g, n = f.n;
        RDom e(0, 256, "e");
        f.e = e;
        f.amax(b, n) = 0.0f;
        f.amax(b, n) = max(f.amax(b, n), abs(xn(b * 256 + e, n)));
        f.first(b, n) = 255;
        f.first(b, n) = min(f.first(b, n), select(abs(xn(b * 256 + e, n)) == f.amax(b, n), e, 255));
        Expr x_max = xn(b * 256 + clamp(f.first(b, n), 0, 255), n);
        f.iscale(b, n) = select(f.amax(b, n) == 0.0f, 0.0f, -127.0f / x_max);

        Expr v = cast<int32_t>(round(f.iscale(c / 256, n) * xn(c, n)));
        qs(c, n) = cast<int8_t>(min(127, v));
        d(b, n) = select(f.amax(b, n) == 0.0f, 0.0f, 1.0f / f.iscale(b, n));
        RDom t(0, 16, "t");
        bsums(g, n) = cast<int16_t>(0);
        bsums(g, n) += cast<int16_t>(qs(g * 16 + t, n));
        f.qs = qs;
        f.d = d;
        f.bsums = bsums;
        schedule_family_for(get_target()).q8k_quantize(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q8KQuantize, q8k_quantize)
