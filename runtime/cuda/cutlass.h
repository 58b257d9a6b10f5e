// Internal: the tensor-core prefill of int4g layers on sm_90 through
// CUTLASS's mixed-input GEMM (cutlass_int4g.cu). The layer repacks its
// weights once (a Halide kernel, cutlass_int4_shuffle) and converts x to
// f16 (f16_convert) before each call.
#pragma once

#include <cstdint>
#include <string>

#include "qforge/kernels.h"

namespace qforge::internal {

// Why the GEMM cannot run on this process's CUDA device ("" when it can):
// not built, no device, or not an sm_90 device.
std::string cutlass_absent();

// Shapes it takes: rows and columns multiples of 16, groups of at least 64
// columns (its K tile) dividing in. "" when it does, else why not.
std::string cutlass_int4_shape_absent(int64_t out, int64_t in, int group);

// int4g weights (the file's layout) into CUTLASS's: `shuffled` [out][in/2]
// bytes, `scales_t` [in/group][out] f16 (FORMATS.md, "CUTLASS int4 (sm_90)").
void cutlass_int4_repack(const Weights &w, uint8_t *shuffled, uint16_t *scales_t, const RunOptions &opt);

// The GEMM's tile for a call of `tokens` tokens on groups of `group`
// columns: 16, 32 or 128 tokens and a K step of 64 or 128 (measured on an
// H100, bench/device/RULES.md).
struct CutlassTile {
    int tokens, k;
};
CutlassTile cutlass_tile(int64_t tokens, int group);

// The splits of K a call of this shape runs (1: none), on a device of
// `multiprocessors` SMs, with tiles of 128 rows x `tile_tokens` tokens.
int cutlass_splits(int64_t out, int64_t in, int64_t tokens, int tile_tokens, int multiprocessors);

// y [tokens][ldy] = x16 [tokens][in] * W^T (+ bias [out]), f32 accumulation
// and output, on `stream`. Throws qforge::Error naming the call.
void cutlass_int4_gemm(const uint8_t *shuffled, const uint16_t *scales_t, int group, const uint16_t *x16,
                       const float *bias, float *y, int64_t out, int64_t in, int64_t tokens, int64_t ldy, void *stream);

}  // namespace qforge::internal
