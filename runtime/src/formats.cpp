// The format table: one row per weight format. Everything else (kernel
// dispatch, layers, loaders, plans, the CLI) asks it instead of switching
// on formats.
#include "qforge/format.h"

#include <algorithm>
#include <cctype>

#include "qforge/error.h"

namespace qforge {

namespace {

using A = ActType;

// cuda_gemm_min_tokens: measured, bench/device/RULES.md ("cuBLAS threshold").
const std::vector<FormatTraits> kFormats = {
    // format        name     prefix  file   file_type    block bytes f16     sep.   groups         activations        packed     cuBLAS  zeros head
    {Format::f32,   "f32",   "f32",   true,  DType::f32,  1,    4,    {},     false, {},            {A::f32},          0,   0,    0, false, 0},
    {Format::f16,   "f16",   "f16",   true,  DType::f16,  1,    2,    {0},    false, {},            {A::f32},          0,   0,    9, false, 0},
    {Format::bf16,  "bf16",  "bf16",  true,  DType::bf16, 1,    2,    {},     false, {},            {A::f32},          0,   0,    0, false, 0},
    {Format::int4g, "int4g", "int4g", false, DType::u8,   2,    1,    {},     true,  {32, 64, 128}, {A::f32, A::q8_0}, 32,  18,   9, false, 0},
    {Format::int4z, "int4z", "int4z", false, DType::u8,   2,    1,    {},     true,  {32, 64, 128}, {A::f32, A::q8_0}, 32,  19,   9, true, 0},
    {Format::q4_k,  "q4_k",  "q4k",   true,  DType::q4_k, 256,  144,  {0, 2}, false, {},            {A::f32, A::q8_k}, 256, 148,  5, false, 0},
    {Format::q6_k,  "q6_k",  "q6k",   true,  DType::q6_k, 256,  210,  {208},  false, {},            {A::f32, A::q8_k}, 256, 210,  9, false, 0},
    {Format::q8_0,  "q8_0",  "q8_0",  true,  DType::q8_0, 32,   34,   {0},    false, {},            {A::f32, A::q8_0}, 32,  34,   9, false, 0},
    {Format::q4_0,  "q4_0",  "q4_0",  true,  DType::q4_0, 32,   18,   {0},    false, {},            {A::f32, A::q8_0}, 32,  18,   9, false, 0},
    {Format::q4_1,  "q4_1",  "q4_1",  true,  DType::q4_1, 32,   20,   {0, 2}, false, {},            {A::f32, A::q8_0}, 32,  20,    9, false, 0},
    {Format::q5_0,  "q5_0",  "q5_0",  true,  DType::q5_0, 32,   22,   {0},    false, {},            {A::f32, A::q8_0}, 32,  22,    9, false, 0},
    {Format::q5_1,  "q5_1",  "q5_1",  true,  DType::q5_1, 32,   24,   {0, 2}, false, {},            {A::f32, A::q8_0}, 32,  24,    9, false, 0},
    {Format::q2_k,  "q2_k",  "q2k",   true,  DType::q2_k, 256,  84,   {80, 82}, false, {},          {A::f32, A::q8_k}, 256, 84,   9, false, 0},
    {Format::q3_k,  "q3_k",  "q3k",   true,  DType::q3_k, 256,  110,  {108},  false, {},            {A::f32, A::q8_k}, 256, 114,  9, false, 0},
    {Format::q5_k,  "q5_k",  "q5k",   true,  DType::q5_k, 256,  176,  {0, 2}, false, {},            {A::f32, A::q8_k}, 256, 180,  9, false, 0},
    {Format::iq4_nl, "iq4_nl", "iq4_nl", true, DType::iq4_nl, 32, 18,  {0},    false, {},            {A::f32, A::q8_0}, 32,  18,   9, false, 0},
    {Format::iq4_xs, "iq4_xs", "iq4_xs", true, DType::iq4_xs, 256, 136, {0},   false, {},            {A::f32, A::q8_k}, 256, 138,  9, false, 0},
    // Per-channel 8-bit rows (a 32-byte head with the f32 scale, then the codes),
    // converted at load from the checkpoint's codes and scale tensors.
    {Format::int8,  "int8",  "int8",  false, DType::i8,   32,   32,   {},     false, {},            {A::f32, A::q8_0}, 32,  32,   0, false, 32},
    {Format::fp8,   "fp8",   "fp8",   false, DType::f8_e4m3, 32, 32,  {},     false, {},            {A::f32},          0,   0,    0, false, 32},
};

std::string known_names() {
    std::string s;
    for (const FormatTraits &t : kFormats) s += (s.empty() ? "" : ", ") + std::string(t.name);
    return s;
}

}  // namespace

const std::vector<FormatTraits> &all_formats() { return kFormats; }

const FormatTraits &traits(Format f) {
    for (const FormatTraits &t : kFormats) {
        if (t.format == f) return t;
    }
    throw Error("unknown weight format " + std::to_string(static_cast<int>(f)));
}

const char *to_string(Format f) { return traits(f).name; }

Format format_from_string(const std::string &name) {
    std::string lower = name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const FormatTraits &t : kFormats) {
        if (lower == t.name) return t.format;
    }
    throw Error("unknown weight format '" + name + "' (known: " + known_names() + ")");
}

bool has_format(DType t) {
    return std::any_of(kFormats.begin(), kFormats.end(), [&](const FormatTraits &f) { return f.in_files && f.file_type == t; });
}

Format format_of(DType t) {
    for (const FormatTraits &f : kFormats) {
        if (f.in_files && f.file_type == t) return f.format;
    }
    throw Error("tensor type " + to_string(t) + " has no kernels (" + known_names() + " do)");
}

int64_t weight_bytes(Format f, int64_t out, int64_t in, int group_size) {
    const FormatTraits &t = traits(f);
    if (in % t.block_elements != 0) {
        throw Error(std::string(t.name) + " weight: in = " + std::to_string(in) + " is not whole blocks of " +
                    std::to_string(t.block_elements));
    }
    int64_t bytes = out * row_bytes(f, in);
    if (t.separate_scales) {
        if (group_size <= 0) throw Error(std::string(t.name) + " weight: group size " + std::to_string(group_size));
        bytes += out * ((in + group_size - 1) / group_size) * (t.zero_points ? 3 : 2);
    }
    return bytes;
}

int64_t row_bytes(Format f, int64_t in) {
    const FormatTraits &t = traits(f);
    return t.row_head_bytes + in / t.block_elements * t.block_bytes;
}

}  // namespace qforge
