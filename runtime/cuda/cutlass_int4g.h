// Internal: CUTLASS's int4 x f16 GEMM on sm_90 (runtime/cuda/cutlass_int4g.cu,
// compiled by nvcc where a CUDA toolkit is found). Plain C, so that the
// runtime's C++ needs no CUDA headers.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct QfCutlassInt4Args {
    const void *weight;        // int4, [out][in], FORMATS.md "CUTLASS int4 (sm_90)"
    const uint16_t *scales16;  // f16 bits, [in / group][out]
    const uint16_t *x16;       // f16 bits, [tokens][in]
    const float *bias;         // [out], or null
    float *y;                  // [tokens][ldy]
    int64_t out, in, tokens, ldy;
    int group;
    int tile_tokens;           // 16, 32 or 128: the kernel's tile of tokens
    int tile_k;                // 64 or 128: its tile of K (group a multiple of it)
    int shuffled;              // weights in the shuffled layout (the plain one: the probe's build only)
    int splits;                // > 1: K split over that many thread blocks a tile; else none
    void *workspace;           // device memory for the splits to meet in (qf_cutlass_int4_workspace)
    size_t workspace_bytes;
    void *stream;              // cudaStream_t
};

// 0 on success; else 1 with a message in err.
int qf_cutlass_int4_gemm(const struct QfCutlassInt4Args *args, char *err, int err_len);

// The device bytes `workspace` must hold for these arguments (0 without
// split-K).
size_t qf_cutlass_int4_workspace(const struct QfCutlassInt4Args *args);

#ifdef __cplusplus
}
#endif
