// Weight quantizers: f32 (or f16/bf16, converted first) -> int4g and Q4_K.
// Each reports the RMSE of its dequantized result against the input.
#pragma once

#include <cstdint>
#include <vector>

#include "qforge/dtype.h"
#include "qforge/format.h"

namespace qforge {

// Any of F32, F16, BF16 elements -> f32. Throws Error for other types.
std::vector<float> to_f32(DType type, const void *data, int64_t elements);
uint16_t f32_to_f16_bits(float v);   // round to nearest even
// f32 values as the little-endian bytes of F32 or F16 (rounded to nearest even).
std::vector<uint8_t> f32_to_bytes(DType type, const std::vector<float> &v);
float f16_bits_to_f32(uint16_t bits);

struct Int4gQuantized {
    std::vector<uint8_t> weight;    // [out, in/2]
    std::vector<uint16_t> scales;   // f16 bits [out, ceil(in/G)]
    std::vector<uint8_t> zeros;     // int4z: zero points [out, ceil(in/G)] (0..15); int4g: empty
    int64_t out = 0, in = 0;
    int group_size = 0;
    double rmse = 0;
};

// Symmetric int4g: each group's largest-magnitude value maps onto -8 (its
// sign kept, as ggml's Q4_0), so no value is clipped. With `search`, a small
// search over scales keeps the one with the least squared error. w is [out, in].
Int4gQuantized quantize_int4g(const float *w, int64_t out, int64_t in, int group_size, bool search = true);
// Asymmetric int4z (GPTQ's and AWQ's round-to-nearest starting point): each
// group's range [min(w, 0), max(w, 0)] over 15 steps, the zero point
// round(-min / scale), every value rounded to the nearest of the 16 levels.
// Zero points are 1..15, so the result is also a GPTQ checkpoint in its
// default layout (qforge/gptq.h, write_gptq_layer): a group with nothing
// below 0 takes zero 1 and 14 steps.
Int4gQuantized quantize_int4z(const float *w, int64_t out, int64_t in, int group_size);

struct BlockQuantized {
    DType type = DType::q4_k;
    std::vector<uint8_t> data;      // out rows of in/256 blocks
    int64_t out = 0, in = 0;
    double rmse = 0;
};

// Q4_K as llama.cpp's quantize_row_q4_K_ref: per sub-block a weighted
// least-squares scale and min search, then 6-bit scales and mins.
BlockQuantized quantize_q4k(const float *w, int64_t out, int64_t in);
// The plain min/max recipe (scale = (max - min) / 15), for comparison.
BlockQuantized quantize_q4k_minmax(const float *w, int64_t out, int64_t in);

// Per-channel 8-bit weights (FORMATS.md, "int8 and fp8 rows"): codes, one
// byte per weight, and one f32 scale per output row; weight = scale * value.
struct ChannelQuantized {
    Format format = Format::int8;   // int8 (s8 codes) or fp8 (E4M3 codes)
    std::vector<uint8_t> codes;     // [out, in]
    std::vector<float> scales;      // [out]
    int64_t out = 0, in = 0;
    double rmse = 0;
};
// Symmetric round to nearest: scale = max|w| / 127 (int8) or / 448 (fp8,
// E4M3's largest finite value; codes rounded to nearest even), per row;
// an all-zero row gets scale 1. w is [out, in].
ChannelQuantized quantize_channels(Format format, const float *w, int64_t out, int64_t in);
// qforge's rows of int8 or fp8 from codes [out, in] (row stride
// `codes_stride` bytes; 0: in) and per-row scales: what kernels and layers
// read. Throws Error naming the row for a scale that is not finite, and for
// in not a multiple of 32 (rows are 32-byte units).
std::vector<uint8_t> channel_rows(Format format, const uint8_t *codes, const float *scales, int64_t out, int64_t in,
                                  int64_t codes_stride = 0);
// OCP FP8 E4M3 (PyTorch's float8_e4m3fn): exact decode (0x7F, 0xFF: NaN)
// and round-to-nearest-even encode, saturating to +-448 (NaN -> 0x7F).
float fp8_e4m3_to_f32(uint8_t code);
uint8_t f32_to_fp8_e4m3(float v);

// SmoothQuant (Xiao et al., 2023) for the layers that read one normalized
// input of `in` channels: s_j = max(a_j, 1e-5)^alpha / max(w_j, 1e-5)^(1 -
// alpha), a_j the channel's largest |activation| (act_max) and w_j its
// largest |W[r, j]| over every one of `weights` ([outs[i], in] each).
// Multiplying W[:, j] by s_j and dividing the norm's weight (and bias) by
// s_j leaves each product as it was and moves the activations' outlier
// range into the weights, whose per-channel quantization absorbs it.
std::vector<float> smoothing_scales(const float *act_max, int64_t in, const std::vector<const float *> &weights,
                                    const std::vector<int64_t> &outs, double alpha);

// RMSE of `approx` against `exact` over n values.
double rmse(const float *exact, const float *approx, int64_t n);

}  // namespace qforge
