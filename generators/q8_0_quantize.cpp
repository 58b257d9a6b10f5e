// f32 activations -> Q8_0 planes (FORMATS.md, "Q8_0 activations"), what
// the packed 32-block kernels read: per block of 32, amax = max |x|,
// iscale = 127 / amax (0 for an all-zero block), qs = round_half_even(x *
// iscale), d = amax * (1 / 127) (a product: Halide turns division by a
// constant into one, and the reference does the same), and the block's sum of qs (the kernels' zero-point
// term). Planes as Q8_K's: d and sums per block, qs per value.
#include "common.h"

namespace qforge {

class Q80Quantize : public KernelGenerator<Q80Quantize> {
public:
    Input<Buffer<float, 2>> x{"x"};            // [in, tokens], in % 32 == 0
    Output<Buffer<float, 2>> d{"d"};           // [in/32, tokens]
    Output<Buffer<int8_t, 2>> qs{"qs"};        // [in, tokens]
    Output<Buffer<int16_t, 2>> sums{"sums"};   // [in/32, tokens]

    void generate() {
        Func xn = activations(x);  // with norm=true: the normalised x, never stored
        Q80QuantizeFuncs f;
        Var c = f.c, b = f.b, n = f.n;
        RDom e(0, 32, "e");
        f.e = e;
        f.amax(b, n) = 0.0f;
        f.amax(b, n) = max(f.amax(b, n), abs(xn(b * 32 + e, n)));
        f.iscale(b, n) = select(f.amax(b, n) == 0.0f, 0.0f, 127.0f / f.amax(b, n));
        qs(c, n) = cast<int8_t>(clamp(cast<int32_t>(round(f.iscale(c / 32, n) * xn(c, n))), -127, 127));
        d(b, n) = f.amax(b, n) * (1.0f / 127.0f);
        if (get_target().has_gpu_feature()) {
            sums(b, n) = sum(cast<int16_t>(qs(b * 32 + e, n)));  // pure: on CUDA an update is a launch of its own
        } else {
            // An update, so that a CPU schedule reduces a block's 32 contiguous
            // quants in vectors (q8k_quantize's bsums).
            sums(b, n) = cast<int16_t>(0);
            sums(b, n) += cast<int16_t>(qs(b * 32 + e, n));
        }
        f.qs = qs;
        f.d = d;
        f.sums = sums;
        schedule_family_for(get_target()).q8_0_quantize(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Q80Quantize, q8_0_quantize)
