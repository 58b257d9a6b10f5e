// A per-layer quantization plan: a default format plus overrides by layer
// name, checked against the model's layers before anything is quantized.
//
//   QuantPlan plan = QuantPlan::parse("q4_k", {"output.weight=q8_0", "blk.0.ffn_down.weight=int4g:32"});
//   plan.validate(layers);   // throws Error naming the first bad layer
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "qforge/format.h"

namespace qforge {

struct FormatSpec {
    Format format = Format::q4_k;   // one qforge can quantize to: f32, f16, q4_k, int4g, int4z (as a GPTQ checkpoint)
    int group_size = 0;             // formats with separate scales (int4g, int4z) only
    int bits = 4;                   // int4g, int4z only: 4 is the one width qforge packs

    // "q4_k", "int4g" (G = 128), "int4g:G", "int4g:G:bits", "int4z[:G]", "f16", "f32".
    static FormatSpec parse(const std::string &text);
    std::string to_string() const;
};

struct LayerShape {
    std::string name;
    int64_t out = 0, in = 0;
};

class QuantPlan {
public:
    static QuantPlan parse(const std::string &default_format, const std::vector<std::string> &overrides);
    FormatSpec default_format;
    std::map<std::string, FormatSpec> overrides;

    const FormatSpec &for_layer(const std::string &name) const;
    // Every override names a layer; every layer's format fits its shape
    // (group size > 0 and even, bits in range, in a multiple of the block).
    void validate(const std::vector<LayerShape> &layers) const;
};

}  // namespace qforge
