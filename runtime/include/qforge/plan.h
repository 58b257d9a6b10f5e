// A per-layer quantization plan: a default format plus overrides by layer
// name, checked against the model's layers before anything is quantized.
//
//   QuantPlan plan = QuantPlan::parse("q4_k", {"output.weight=q8_0", "blk.0.ffn_down.weight=int4g:32"});
//   plan.validate(layers);   // throws Error naming the first bad layer
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "qforge/format.h"

namespace qforge {

struct FormatSpec {
    Format format = Format::q4_k;   // one qforge can quantize to: f32, f16, q4_k, int4g, int4z (as a GPTQ
                                    // checkpoint), int8 and fp8 (per channel, as compressed-tensors)
    int group_size = 0;             // formats with separate scales (int4g, int4z) only
    int bits = 4;                   // int4g, int4z only: 4 is the one width qforge packs
    // SmoothQuant's alpha for this layer when `qforge quantize --act-scales`
    // folds activation scales in: NaN takes the run's --alpha, < 0 (written
    // "+nosmooth") leaves the layer as it is, 0..1 is its own ("+smooth=A").
    double smooth = std::numeric_limits<double>::quiet_NaN();

    // "q4_k", "int4g" (G = 128), "int4g:G", "int4g:G:bits", "int4z[:G]", "int8", "fp8", "f16", "f32",
    // each optionally followed by "+smooth=A" or "+nosmooth".
    static FormatSpec parse(const std::string &text);
    std::string to_string() const;
    // The method's fields, as a plan states them: "round-to-nearest" (q4_k:
    // llama.cpp's weighted search), "symmetric" or "asymmetric" (zero
    // points), the bits of a weight, its scale granularity.
    const char *method() const;
    bool symmetric() const;
    int weight_bits() const;
    std::string granularity() const;  // "group of 128", "per channel", "super-block of 256", "none"
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
    // (group size > 0 and even, bits in range, in a multiple of the block,
    // a smoothing alpha in [0, 1]); the error names the layer and the field.
    void validate(const std::vector<LayerShape> &layers) const;
};

}  // namespace qforge
