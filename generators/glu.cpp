// An FFN's activation: out = act(gate) * up (gated: SwiGLU, GeGLU) or
// act(gate) (plain), elementwise over [F, tokens]. gate and up are usually
// two column ranges of one [2F, tokens] matmul output (strided views); for
// a plain FFN the caller passes gate as up too, and it is not read. The
// kind is a runtime input; each kind is its own specialization, so a call
// evaluates one activation.
#include "activation.h"
#include "common.h"

namespace qforge {

class Glu : public KernelGenerator<Glu> {
public:
    Input<Buffer<float, 2>> gate{"gate"};  // [F, tokens]
    Input<Buffer<float, 2>> up{"up"};      // [F, tokens]
    Input<bool> gated{"gated"};
    Input<int> kind{"kind"};               // ActivationKind
    Output<Buffer<float, 2>> out{"out"};   // [F, tokens]

    void generate() {
        DequantFuncs f;
        Expr g = gate(f.c, f.r), u = select(gated, up(f.c, f.r), 1.0f);
        std::vector<Expr> acts;
        for (int k = 0; k < kActivationKinds; ++k) acts.push_back(activation(static_cast<ActivationKind>(k), g));
        out(f.c, f.r) = select(kind == 0, acts[0], kind == 1, acts[1], acts[2]) * u;
        f.out = out;
        schedule_family_for(get_target()).dequant(f, get_target(), knobs());
        // After the schedule, so that every specialization has it.
        for (int k = 0; k < kActivationKinds; ++k) {
            out.specialize(kind == k && gated);
            out.specialize(kind == k && !gated);
        }
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::Glu, glu)
