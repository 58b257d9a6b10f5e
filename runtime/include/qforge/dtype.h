// Element types of tensors in model files (GGUF and safetensors).
#pragma once

#include <cstdint>
#include <string>

namespace qforge {

// GGUF's ggml type numbers; safetensors dtypes map onto the plain ones.
enum class DType : uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21,
    iq2_s = 22, iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28,
    iq1_m = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35,
    u8 = 0x1000,  // safetensors only (int4g nibbles)
    f8_e4m3 = 0x1001,  // safetensors only (F8_E4M3: FP8 checkpoints)
};

// Elements per block and bytes per block; {0, 0} for a number no type has.
struct BlockShape {
    int64_t elements = 0;
    int64_t bytes = 0;
};
BlockShape block_shape(DType t);
bool is_known(DType t);
std::string to_string(DType t);           // "Q4_K", "F32", ...
DType dtype_from_string(const std::string &s);  // inverse of to_string; throws Error

// Bytes of `elements` values of type t; throws Error if not whole blocks.
int64_t storage_bytes(DType t, int64_t elements);

}  // namespace qforge
