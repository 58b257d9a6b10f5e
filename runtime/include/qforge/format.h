// Weight formats: one row of traits each (runtime/src/formats.cpp), the one
// place that says what a format is. Byte layouts are those of FORMATS.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qforge/dtype.h"

namespace qforge {

enum class Format : uint8_t { f32, f16, bf16, int4g, q4_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q5_k, iq4_nl, iq4_xs, int4z, int8, fp8 };

// The activations a kernel reads: f32, or quantized to 8 bits per block
// (Q8_K: 256 values with an f32 scale and 16-value sums; Q8_0: 32 values
// with an f32 scale and their sum; FORMATS.md).
enum class ActType : uint8_t { f32, q8_k, q8_0 };

// Values per block and per sum of an 8-bit activation type (q8_k: 256, 16; q8_0: 32, 32).
constexpr int64_t act_block(ActType a) { return a == ActType::q8_k ? 256 : 32; }
constexpr int64_t act_sum_block(ActType a) { return a == ActType::q8_k ? 16 : 32; }

struct FormatTraits {
    Format format;
    const char *name;             // as users write it: "q4_k", "int4g", "f16" (plans, CLI)
    const char *kernel_prefix;    // as kernel names start: "q4k_matvec_f32"
    bool in_files;                // stored as one tensor of `file_type` (int4g is a triple of tensors)
    DType file_type;
    int64_t block_elements;       // values per block; int4g: 2 (a byte), dense: 1
    int64_t block_bytes;
    std::vector<int> f16_fields;  // byte offsets of a block's f16 fields (scales, mins): where
                                  // tools that make random valid weights put finite values
    bool separate_scales;         // int4g, int4z: an f16 scale plane [out, ceil(in/G)] beside the weights
    std::vector<int> group_sizes; // int4g: the compiled group sizes; empty: scales live in the blocks
    std::vector<ActType> activations;  // what its matmul kernels read; empty: no kernels of its own
    // Values and bytes per row per block of its packed layout (qforge/pack.h,
    // FORMATS.md "Packed layouts"); 0: it has none, its kernels read the file's layout.
    int64_t packed_block_elements;
    int64_t packed_block_bytes;
    // On CUDA, from this many tokens a layer dequantizes to f16 and runs
    // cuBLAS instead of the Halide kernels; 0: never (bench/device/RULES.md).
    int64_t cuda_gemm_min_tokens;
    // int4z: a zero-point plane [out, ceil(in/G)] (u8) beside the scales;
    // a weight is (q - zero) * scale instead of (q - 8) * scale.
    bool zero_points;
    // int8, fp8 (per channel): bytes before a row's blocks, the row's head;
    // its first 4 hold the row's f32 scale (FORMATS.md, "int8 and fp8 rows").
    // 0: rows are their blocks alone.
    int64_t row_head_bytes;
};

const FormatTraits &traits(Format f);
const std::vector<FormatTraits> &all_formats();
const char *to_string(Format f);   // traits(f).name
// "q4_k", "int4g", ... (case-insensitive); throws Error naming the known ones.
Format format_from_string(const std::string &name);
// The format of a file tensor of type t; throws Error if qforge runs none.
Format format_of(DType t);
bool has_format(DType t);

// Bytes of a [out, in] weight in format f (its scale plane included), dense
// rows; throws Error if in is not whole blocks.
int64_t weight_bytes(Format f, int64_t out, int64_t in, int group_size = 0);
// Bytes of one dense row of the weight plane: its head (row_head_bytes) and
// its blocks (no check that in is whole blocks).
int64_t row_bytes(Format f, int64_t in);

}  // namespace qforge
