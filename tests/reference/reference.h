// Plain scalar references, one per kernel, written straight from FORMATS.md:
// no SIMD, no Halide, no cleverness. They are the oracle of every test.
// Matrices are dense and row-major.
#pragma once

#include <cstdint>
#include <vector>

#include "qforge/format.h"

namespace qforge::ref {

float f16_to_f32(uint16_t bits);          // exact, subnormals included
uint16_t f32_to_f16(float value);         // round to nearest even
float bf16_to_f32(uint16_t bits);         // exact: the top half of an f32
uint16_t f32_to_bf16(float value);        // truncated (any bits are a valid bf16)

// int4g: weight [out, in/2], scales [out, ceil(in/G)] (f16 bits).
void int4g_dequant(const uint8_t *weight, const uint16_t *scales, int64_t out, int64_t in, int group_size,
                   float *w);
// y [tokens, out] in float64 from the exactly dequantized weights.
// `abs_terms` (optional, [tokens, out]) receives |bias| + sum_c |w x|, the
// scale of the rounding error any f32 summation order can make.
void int4g_matmul(const uint8_t *weight, const uint16_t *scales, int64_t out, int64_t in, int group_size,
                  const float *x, int64_t tokens, const float *bias, double *y, double *abs_terms = nullptr);

// int4z: int4g with zeros [out, ceil(in/G)] (one byte each) in place of 8.
void int4z_dequant(const uint8_t *weight, const uint16_t *scales, const uint8_t *zeros, int64_t out, int64_t in,
                   int group_size, float *w);
void int4z_matmul(const uint8_t *weight, const uint16_t *scales, const uint8_t *zeros, int64_t out, int64_t in,
                  int group_size, const float *x, int64_t tokens, const float *bias, double *y,
                  double *abs_terms = nullptr);

// y [tokens, out] = x w^T + bias in float64 over f32 weights w [out, in];
// abs_terms as above.
void dense_matmul(const std::vector<float> &w, int64_t out, int64_t in, const float *x, int64_t tokens,
                  const float *bias, double *y, double *abs_terms = nullptr);

// GGUF block formats of FORMATS.md, `out` rows of in/block blocks each.
void q4_0_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q4_1_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q5_0_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q5_1_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q8_0_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q6k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q2k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q3k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q5k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void iq4_nl_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void iq4_xs_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
// qforge's per-channel rows (FORMATS.md, "int8 and fp8 rows"): a 32-byte
// head with the row's f32 scale, then in codes; w = scale * value(code).
void int8_rows_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void fp8_rows_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
// OCP FP8 E4M3 by its definition: (-1)^s 2^(e-7) (1 + m/8), subnormals
// (e = 0) m 2^-9, S.1111.111 NaN.
float fp8_e4m3(uint8_t code);

// Any GGUF block format above (and Q4_K below) by its qforge::Format.
void block_dequant(Format f, const uint8_t *data, int64_t out, int64_t in, float *w);

// Q4_K: data is out rows of in/256 blocks of 144 bytes.
void q4k_dequant(const uint8_t *data, int64_t out, int64_t in, float *w);
void q4k_matmul_f32(const uint8_t *data, int64_t out, int64_t in, const float *x, int64_t tokens,
                    const float *bias, double *y, double *abs_terms = nullptr);

// Q8_K as three planes: d [tokens, in/256], qs [tokens, in], bsums [tokens, in/16].
void q8k_quantize(const float *x, int64_t tokens, int64_t in, float *d, int8_t *qs, int16_t *bsums);
// The integer-dot product of FORMATS.md: exact int32 sums per sub-block, then
// the float formula evaluated in float64. `abs_terms` (optional, [tokens,
// out]) receives |a.d w.d| sum_j sc_j sum_l |q a| + |min terms| per output:
// a bound on every partial sum any summation order can form, for error bounds.
void q4k_matmul_q8(const uint8_t *data, int64_t out, int64_t in, const float *d, const int8_t *qs,
                   const int16_t *bsums, int64_t tokens, const float *bias, double *y, double *abs_terms);

// Q8_0 activations (FORMATS.md): d [tokens, in/32], qs [tokens, in], sums [tokens, in/32].
void q8_0_quantize(const float *x, int64_t tokens, int64_t in, float *d, int8_t *qs, int16_t *sums);
// y = bias + sum_b a.d_b sum_{k in b} w[r, k] qs[k] in float64 over the
// activation blocks b of `block` values (32: Q8_0, 256: Q8_K), for weights
// `w` [out, in] whose values are an f16 scale times a small integer (Q4_0,
// int4g, Q8_0, Q6_K: exact in f32), so every block's inner sum is exact.
// abs_terms as q4k_matmul_q8's.
void matmul_q8(const float *w, int64_t out, int64_t in, int block, const float *d, const int8_t *qs, int64_t tokens,
               const float *bias, double *y, double *abs_terms);

}  // namespace qforge::ref
