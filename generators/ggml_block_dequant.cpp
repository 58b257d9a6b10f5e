// Rows of a GGUF block format (ggml_blocks.h) -> f32, bit for bit as gguf-py.
#include "ggml_blocks.h"

namespace qforge {

class GGMLBlockDequant : public KernelGenerator<GGMLBlockDequant> {
public:
    GeneratorParam<std::string> format{"format", "q4_0"};

    Input<Buffer<uint8_t, 2>> weight{"weight"};  // [in/block*bytes, out]
    // f32, or f16 (out.type=float16: the weights of the CUDA prefill GEMM)
    Output<Buffer<void, 2>> out{"out"};  // [in, out]

    void generate() {
        const GGMLBlockFormat fmt = ggml_block_format(format);
        DequantFuncs f;
        f.weight = weight;
        f.block = fmt.block;
        // strict_float: the rounding of each step is part of the format.
        out(f.c, f.r) = cast(out.type(), strict_float(fmt.at_column(weight, f.c, f.r)));
        // Rows are whole blocks (the runtime checks in % block == 0).
        out.dim(0).set_min(0).set_extent((out.dim(0).extent() / fmt.block) * fmt.block);
        f.out = out;
        schedule_family_for(get_target()).dequant(f, get_target(), knobs());
    }
};

}  // namespace qforge

HALIDE_REGISTER_GENERATOR(qforge::GGMLBlockDequant, ggml_block_dequant)
