// Activations f32 -> f16, through the fused RMSNorm/LayerNorm when norm=true:
// the B operand of a dense f16 GEMM (the CUDA prefill path dequantizes the
// weights to f16 and hands both to cuBLAS).
#include "common.h"

namespace qforge {

class F16Convert : public KernelGenerator<F16Convert> {
public:
    Input<Buffer<float, 2>> x{"x"};               // [in, tokens]
    Output<Buffer<float16_t, 2>> out{"out"};      // [in, tokens]

    void generate() {
        DequantFuncs f;
        Func x_ = activations(x);
        out(f.c, f.r) = cast<float16_t>(x_(f.c, f.r));
        f.out = out;
        schedule_family_for(get_target()).dequant(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::F16Convert, f16_convert)
