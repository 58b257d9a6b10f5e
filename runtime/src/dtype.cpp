#include "qforge/dtype.h"

#include "qforge/error.h"

namespace qforge {
namespace {

struct Row {
    DType type;
    const char *name;
    BlockShape shape;
};

// gguf-py's GGML_QUANT_SIZES, plus safetensors' U8 and F8_E4M3.
constexpr Row kTypes[] = {
    {DType::f32, "F32", {1, 4}},        {DType::f16, "F16", {1, 2}},
    {DType::q4_0, "Q4_0", {32, 18}},    {DType::q4_1, "Q4_1", {32, 20}},
    {DType::q5_0, "Q5_0", {32, 22}},    {DType::q5_1, "Q5_1", {32, 24}},
    {DType::q8_0, "Q8_0", {32, 34}},    {DType::q8_1, "Q8_1", {32, 40}},
    {DType::q2_k, "Q2_K", {256, 84}},   {DType::q3_k, "Q3_K", {256, 110}},
    {DType::q4_k, "Q4_K", {256, 144}},  {DType::q5_k, "Q5_K", {256, 176}},
    {DType::q6_k, "Q6_K", {256, 210}},  {DType::q8_k, "Q8_K", {256, 292}},
    {DType::iq2_xxs, "IQ2_XXS", {256, 66}}, {DType::iq2_xs, "IQ2_XS", {256, 74}},
    {DType::iq3_xxs, "IQ3_XXS", {256, 98}}, {DType::iq1_s, "IQ1_S", {256, 50}},
    {DType::iq4_nl, "IQ4_NL", {32, 18}},    {DType::iq3_s, "IQ3_S", {256, 110}},
    {DType::iq2_s, "IQ2_S", {256, 82}},     {DType::iq4_xs, "IQ4_XS", {256, 136}},
    {DType::i8, "I8", {1, 1}},          {DType::i16, "I16", {1, 2}},
    {DType::i32, "I32", {1, 4}},        {DType::i64, "I64", {1, 8}},
    {DType::f64, "F64", {1, 8}},        {DType::iq1_m, "IQ1_M", {256, 56}},
    {DType::bf16, "BF16", {1, 2}},      {DType::tq1_0, "TQ1_0", {256, 54}},
    {DType::tq2_0, "TQ2_0", {256, 66}}, {DType::u8, "U8", {1, 1}},
    {DType::f8_e4m3, "F8_E4M3", {1, 1}},
};

const Row *find(DType t) {
    for (const Row &r : kTypes) {
        if (r.type == t) return &r;
    }
    return nullptr;
}

}  // namespace

BlockShape block_shape(DType t) {
    const Row *r = find(t);
    return r ? r->shape : BlockShape{};
}

bool is_known(DType t) { return find(t) != nullptr; }

std::string to_string(DType t) {
    const Row *r = find(t);
    return r ? r->name : "type#" + std::to_string(static_cast<uint32_t>(t));
}

DType dtype_from_string(const std::string &s) {
    for (const Row &r : kTypes) {
        if (s == r.name) return r.type;
    }
    throw Error("unknown dtype '" + s + "'");
}

int64_t storage_bytes(DType t, int64_t elements) {
    const BlockShape b = block_shape(t);
    if (b.elements == 0) throw Error("unknown type " + to_string(t));
    if (elements % b.elements != 0) {
        throw Error(std::to_string(elements) + " elements are not whole " + to_string(t) + " blocks of " +
                    std::to_string(b.elements));
    }
    return elements / b.elements * b.bytes;
}

}  // namespace qforge
