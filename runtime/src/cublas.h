// Internal: cuBLAS, loaded with dlopen at first use (qforge links no CUDA
// library, so CPU-only machines never need it). The CUDA layers' prefill
// path runs its f16 GEMM here: the weights dequantized to f16 by a Halide
// kernel, the activations converted by another, then cublasGemmEx.
#pragma once

#include <cstdint>
#include <string>

namespace qforge::internal {

struct Cublas {
    bool present = false;
    std::string why_absent;  // set when !present
};

// Tries $QF_CUBLAS, then libcublas.so.13, .so.12, .so.
const Cublas &cublas();

// y [tokens, out] (f32, row stride ldy) = x16 [tokens, in] * w16 [out, in]^T
// (+ bias [out] when not null), f16 operands, f32 accumulation, on `stream`
// in the calling thread's context. Throws qforge::Error naming the call.
void cublas_gemm_f16(const uint16_t *w16, const uint16_t *x16, const float *bias, float *y, int64_t out,
                     int64_t in, int64_t tokens, int64_t ldy, void *stream);

}  // namespace qforge::internal
