// SmoothQuant for `qforge quantize --act-scales`: activation maxima per
// input channel, folded into the weights of the layers that read one norm's
// output and into that norm's weight, so that the checkpoint runs on the
// existing kernels with no per-call cost (qforge/quantize.h, smoothing_scales).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model.h"
#include "qforge/plan.h"

namespace qforge::cli {

struct SmoothedModel {
    std::map<std::string, std::vector<float>> weights;  // layer -> W * s, f32 [out, in]
    std::map<std::string, std::vector<float>> scales;   // layer -> s [in]
    std::map<std::string, std::vector<float>> act_max;  // layer -> the activation maxima [in]
    std::map<std::string, double> alpha;                // layer -> its alpha
    std::map<std::string, std::vector<float>> norms;    // norm weight (and LayerNorm bias) -> / s, f32 [in]
    std::vector<std::string> unsmoothed;                // layers with no norm before them: "NAME (why)"
};

// The norm whose output `linear` reads (GGUF: blk.N.attn_norm / ffn_norm;
// Hugging Face: input_layernorm / post_attention_layernorm), or "" if its
// input is no norm's output (o_proj, down_proj).
std::string norm_of(const std::string &linear);

// Reads `act_scales` (a safetensors or GGUF file: per layer an [in] F32,
// F16 or BF16 tensor of max |x| per input channel, named as the layer's
// weight or its module, as SmoothQuant's generate_act_scales writes them)
// and folds them in with each layer's alpha (its plan's +smooth=A, else
// `alpha`; +nosmooth leaves it). Layers that share a norm share the scales
// and must share alpha. Throws Error naming the layer, the tensor and the
// field for anything missing or malformed.
SmoothedModel smooth_model(const ModelFile &m, const std::vector<LayerShape> &layers, const QuantPlan &plan,
                           const std::string &act_scales, double alpha);

// The layer's output RMSE against x W^T in float64 on 8 fixed tokens drawn
// uniformly within the activation maxima a, as the 8-bit kernels compute
// it: x / s (s null: 1) through Q8_0, times the quantized weights `back`
// (of W * s). Before smoothing it is this with s = 1 and W's own quantization.
double output_rmse(const float *w, const float *back, const float *s, const float *a, int64_t out, int64_t in);

}  // namespace qforge::cli
