// Activations in another column order: out(i, n) = x(order(i), n). An
// act-order layer (GPTQ's g_idx, FORMATS.md "int4z") stores its weights'
// columns sorted by group, so its x is gathered into that order once per
// call, and its norm's weights with it, rather than the weights per group.
// A gather is elementwise, so it takes the dequant schedules (as glu does).
// An order entry out of [0, in) reads a clamped column: the runtime checks
// every order when the layer is built.
#include "common.h"

namespace qforge {

class PermuteColumns : public KernelGenerator<PermuteColumns> {
public:
    Input<Buffer<float, 2>> x{"x"};            // [in, tokens]
    Input<Buffer<int32_t, 1>> order{"order"};  // [in]
    Output<Buffer<float, 2>> out{"out"};       // [in, tokens]

    void generate() {
        DequantFuncs f;
        out(f.c, f.r) = x(clamp(order(f.c), 0, x.dim(0).extent() - 1), f.r);
        f.out = out;
        schedule_family_for(get_target()).dequant(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::PermuteColumns, permute_columns)
