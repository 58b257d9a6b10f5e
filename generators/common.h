// Shared pieces of the qforge generators: the schedule knobs every kernel
// exposes, and small helpers for reading the raw byte formats of FORMATS.md.
#pragma once

#include "Halide.h"

#include "schedules/schedules.h"

namespace qforge {

using namespace Halide;

// A generator-time check: stops code generation with `what`.
inline void check(bool ok, const std::string &what) {
    if (!ok) throw CompileError("qforge: " + what);
}

// Base of every qforge generator. The algorithm lives in the subclass; the
// knobs live here so that a tuner can set any of them on any kernel from the
// generator command line (e.g. `tile_rows=8`) without editing code. 0 means
// "the schedule's default for this target".
template <typename T>
class KernelGenerator : public Generator<T> {
public:
    GeneratorParam<std::string> mode{"mode", "decode"};  // decode | prefill: which schedule
    GeneratorParam<int> vector_width{"vector_width", 0}; // lanes of the widest type
    GeneratorParam<int> tile_rows{"tile_rows", 0};       // output rows per register tile
    GeneratorParam<int> tile_tokens{"tile_tokens", 0};   // tokens per register tile
    GeneratorParam<int> rows_per_task{"rows_per_task", 0};  // rows per parallel task
    GeneratorParam<int> unroll{"unroll", 0};             // unroll of the reduction loop

protected:
    Knobs knobs() const {
        Knobs k;
        k.prefill = std::string(mode) == "prefill";
        check(k.prefill || std::string(mode) == "decode",
              "mode must be decode or prefill, not " + std::string(mode));
        k.vector_width = vector_width;
        k.tile_rows = tile_rows;
        k.tile_tokens = tile_tokens;
        k.rows_per_task = rows_per_task;
        k.unroll = unroll;
        return k;
    }
};

// IEEE binary16 bits (uint16) to f32, exactly.
inline Expr f16_bits_to_f32(const Expr &bits) {
    return cast<float>(reinterpret(Float(16), cast<uint16_t>(bits)));
}

// Little-endian uint16 from two bytes.
inline Expr u16_le(const Expr &lo, const Expr &hi) {
    return cast<uint16_t>(lo) | (cast<uint16_t>(hi) << 8);
}

// `in` with its outer dimension (rows of a weight, tokens of an activation)
// clamped to the buffer. Schedules compute whole register tiles, and the
// last tile may reach past the last row: those lanes re-read the last row
// and are never stored. The inner dimension is left unclamped, so inner
// loops stay plain vector loads.
template <typename T>
Func clamp_outer(const T &in) {
    return BoundaryConditions::repeat_edge(
        in, {Range(), Range(in.dim(1).min(), in.dim(1).extent())});
}

// Optional per-row bias: the caller passes a one-element buffer and has_bias
// = false when there is none. The index is clamped so that bounds inference
// asks only for what the buffer has.
inline Expr bias_or_zero(const Func &bias, const Expr &has_bias, const Expr &extent, const Expr &r) {
    return select(has_bias, bias(clamp(r, 0, extent - 1)), 0.0f);
}

}  // namespace qforge
