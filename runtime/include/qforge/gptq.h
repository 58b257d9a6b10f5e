// GPTQ and AWQ checkpoints: their 4-bit linear layers read into int4z
// (FORMATS.md, "GPTQ and AWQ safetensors"). The nibbles move into int4z's
// order and the packed zero points become bytes; no weight changes value.
// Act-order (GPTQ's desc_act, a `g_idx` that is not c / G) becomes a column
// permutation: the weight's columns are stored group by group, and the
// layer permutes its activations once per call (Linear, WeightRef::input_order).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qforge/layers.h"
#include "qforge/quantize.h"
#include "qforge/safetensors.h"

namespace qforge {

// How a checkpoint stores its zero points. gptq: AutoGPTQ's and GPTQModel's
// default ("checkpoint_format": "gptq"), each stored as zero - 1; gptq_v2:
// as the zero itself; awq: AutoAWQ's GEMM layout (its own nibble order).
enum class ZeroPointLayout { gptq, gptq_v2, awq };

// A checkpoint's "quantization_config" (config.json) or quantize_config.json.
struct ZeroPointConfig {
    ZeroPointLayout layout = ZeroPointLayout::gptq;
    int bits = 4;
    int group_size = 0;   // -1 in the file: per channel (one group per row); 0: from the tensors' shapes
};
// Reads a checkpoint's config.json ("quantization_config") or its
// quantize_config.json (the object itself): "quant_method" ("gptq" or
// "awq"), "bits", "group_size", "checkpoint_format" (GPTQ), "version"
// (AWQ). Throws Error naming the file and the field that is missing, of the
// wrong type or unsupported (bits other than 4, AWQ's "gemv" layout).
ZeroPointConfig read_zero_point_config(const std::string &json_path);

// One layer, converted. weight [out, in/2], scales [out, groups], zeros
// [out, groups] as int4z; input_order [in] (act-order) or empty.
struct Int4zLayer {
    std::string prefix;
    int64_t out = 0, in = 0;
    int group_size = 0;
    std::vector<uint8_t> weight;
    std::vector<uint16_t> scales;
    std::vector<uint8_t> zeros;
    std::vector<int32_t> input_order;  // column i of weight multiplies input input_order[i]
    std::vector<float> bias;           // [out] or empty
    // A view for Linear / make_linear (the layer copies input_order; the
    // planes must outlive it unless `owner` is set).
    WeightRef ref() const;
};

// A checkpoint file's config: its own metadata's "quantization_config" (as
// qforge writes it), else config.json's beside it, else
// quantize_config.json, else (neither there) GPTQ's default layout, or
// AWQ's where the file's first qweight has AWQ's shape, with the group size
// from the shapes. load_linear and load_block read GPTQ/AWQ layers with it.
ZeroPointConfig zero_point_config_for(const SafetensorsFile &f);

// Prefixes p with a p.qweight tensor (GPTQ and AWQ layers).
std::vector<std::string> zero_point_prefixes(const SafetensorsFile &f);
// What the tensors' shapes say of the layer at `prefix`, without reading it
// (read_zero_point_layer checks everything): [out, in], its groups, AWQ's
// layout or GPTQ's, a g_idx present, the bytes of its tensors.
struct ZeroPointInfo {
    int64_t out = 0, in = 0, groups = 0;
    bool awq = false, has_g_idx = false;
    uint64_t bytes = 0;
};
ZeroPointInfo zero_point_info(const SafetensorsFile &f, const std::string &prefix);
const char *to_string(ZeroPointLayout layout);  // "gptq", "gptq_v2", "awq"

// The layer at `prefix`: p.qweight, p.qzeros, p.scales, optional p.g_idx
// and p.bias. GPTQ and AWQ are told apart by the shapes (GPTQ packs
// qweight along the input, AWQ along the output) and must agree with
// config.layout. Per-channel checkpoints (one group) are stored with group
// size 128 (their scale and zero repeated per 128 columns; in must then be
// a multiple of 128). Throws Error naming the tensor and the expected
// shape, or the group whose g_idx is not a whole group.
Int4zLayer read_zero_point_layer(const SafetensorsFile &f, const std::string &prefix, const ZeroPointConfig &config);

// Writes an int4z layer `q` (zero points 1..15, out and in multiples of 8)
// as GPTQ's default layout (p.qweight, p.qzeros storing zero - 1, p.scales,
// p.g_idx = c / G): what AutoGPTQ, GPTQModel and qforge read.
void write_gptq_layer(SafetensorsWriter &w, const std::string &prefix, const Int4gQuantized &q);
// The "quantization_config" JSON object that describes such layers.
std::string gptq_config_json(int group_size);

}  // namespace qforge
