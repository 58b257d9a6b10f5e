// Decoder-block layers: a transformer block's projections and FFN, built
// from a model file's own metadata.
//
//   auto file = qforge::GGUFFile::open("qwen3.gguf");
//   qforge::DecoderBlock b = qforge::load_block(file, 0);
//   const auto &a = b.attention;
//   a.forward_qkv({x, {tokens, a.hidden()}, b.attn_norm.get()}, {qkv, {tokens, a.qkv_dim()}});
//   // ... the engine's RoPE, KV cache and attention: qkv -> attn [tokens, q_dim]
//   qforge::ForwardOptions add;  // the residual add, fused: h += o_proj(attn)
//   add.epilogue.residual = {h, tokens, a.hidden()};
//   a.forward_output({attn, {tokens, a.q_dim()}}, {h, {tokens, a.hidden()}}, add);
//   b.ffn.forward({h, {tokens, a.hidden()}, b.ffn_norm.get()}, {y, {tokens, a.hidden()}});
//
// What stays the engine's: embeddings and the output head (load_linear),
// RoPE, the KV cache and attention itself, and Gemma's post-norms (their
// weights are here, applied to the outputs; with them the residual adds
// come after the norm, so they are the engine's too).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qforge/kernels.h"
#include "qforge/layers.h"
#include "qforge/qkv.h"

namespace qforge {

class GGUFFile;
class SafetensorsFile;
class SafetensorsCheckpoint;

// A norm's weights, kept in the memory its layer runs in (kernels read
// them as they read x). Empty: no norm.
class NormWeights {
public:
    NormWeights() = default;
    NormWeights(Norm::Kind kind, std::vector<float> weight, std::vector<float> bias, float eps, Memory memory = Memory::host);
    // The Norm to fuse into a forward() (ConstTensor::norm), or nullptr.
    const Norm *get() const;
    const std::vector<float> &weight() const;  // host values
    const std::vector<float> &bias() const;
    int64_t memory_bytes() const;

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
};

// An FFN: down(act(gate x) * up x) (gated: SwiGLU, GeGLU) or down(act(up x)).
// On the CPU, a gated FFN whose format has packed layouts packs gate and
// up once at load into tile pairs and runs them as one kernel with the
// activation in its epilogue (kernels.h, matmul_glu): x is quantized once,
// the gate and up values never reach memory, and only act(gate) * up is
// written (8-bit activations, as the layers' default there). Otherwise
// (f32 activations, CUDA, other formats) gate and up run as one kernel
// call where their rows can share a layer (a fused gate_up tensor, or
// separate ones joined at load), then the activation kernel (glu) in
// place over the hidden values, then down.
class FFN {
public:
    FFN() = default;
    // Separate gate and up [ffn, hidden]; with `concatenate`, joined row-wise
    // at load where their format, input and strategy agree (where they are
    // packed as tile pairs instead, the pairs replace the joined copy).
    static FFN gated(std::unique_ptr<Linear> gate, std::unique_ptr<Linear> up, std::unique_ptr<Linear> down,
                     Activation act, bool concatenate = true);
    // One [2 ffn, hidden] gate_up layer, gate rows first (Phi-3's ffn_up).
    static FFN gated_fused(std::unique_ptr<Linear> gate_up, std::unique_ptr<Linear> down, Activation act);
    // up [ffn, hidden], down [hidden, ffn] (GPT-2, Phi-2).
    static FFN plain(std::unique_ptr<Linear> up, std::unique_ptr<Linear> down, Activation act);

    int64_t hidden() const { return hidden_; }
    int64_t ffn() const { return ffn_; }
    bool is_gated() const { return gated_; }
    Activation activation() const { return act_; }
    bool single_call() const { return first_.size() == 1 || fused_glu(); }  // gate and up in one kernel call
    bool fused_glu() const { return glu_.weight != nullptr; }  // 8-bit calls run the glu epilogue
    const Linear &down() const { return *down_; }
    int64_t memory_bytes() const;
    void release_host();

    // x [tokens, hidden] (or [batch, seq, hidden]; its norm is fused into
    // the first matmul) -> y, the same shape. opt.epilogue is down's (a
    // residual add: y may be x's residual stream itself).
    void forward(const ConstTensor &x, const Tensor &y, const ForwardOptions &opt = {}) const;

private:
    static FFN make(std::vector<std::shared_ptr<Linear>> first, std::unique_ptr<Linear> down, int64_t hidden, int64_t ffn,
                    bool gated, Activation act, const std::string &why);
    void prepare_glu();
    // The gate/up tile pairs of matmul_glu, and what the call needs of them.
    struct Glu {
        std::shared_ptr<const uint8_t> weight;  // the pairs' bytes
        int64_t weight_bytes = 0;
        std::vector<float> bias;  // [2 ffn]: gate's, then up's; empty: none
        Format format = Format::f32;
        int group_size = 0, rows = 0;
        ActType act = ActType::q8_k;
    };
    Glu glu_;
    std::vector<std::shared_ptr<Linear>> first_;  // gate_up (one) or gate, up; or up (plain)
    std::shared_ptr<Linear> down_;
    int64_t hidden_ = 0, ffn_ = 0;
    bool gated_ = true;
    Activation act_ = Activation::silu;
};

// The attention block's projections: QKV (with per-head RMSNorm of q and
// k where the model has it: Qwen3, Gemma 3) and the output projection.
// q_dim = n_heads * head_dim may differ from hidden; kv_dim = n_kv_heads *
// head_dim (grouped-query attention).
class AttentionProjections {
public:
    AttentionProjections() = default;
    AttentionProjections(QKVProjection qkv, std::unique_ptr<Linear> output, int64_t head_dim,
                         NormWeights q_norm = {}, NormWeights k_norm = {});

    int64_t hidden() const { return qkv_.hidden(); }
    int64_t q_dim() const { return qkv_.q_dim(); }
    int64_t kv_dim() const { return qkv_.kv_dim(); }
    int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
    int64_t head_dim() const { return head_dim_; }
    int64_t n_heads() const { return q_dim() / head_dim_; }
    int64_t n_kv_heads() const { return kv_dim() / head_dim_; }
    const QKVProjection &qkv() const { return qkv_; }
    const Linear &output() const { return *output_; }
    const NormWeights &q_norm() const { return q_norm_; }
    const NormWeights &k_norm() const { return k_norm_; }
    int64_t memory_bytes() const;
    void release_host();

    // x [tokens, hidden] -> qkv [tokens, q_dim + 2 kv_dim]: Q, K, V columns,
    // Q and K through their per-head norms, in the projection's epilogue
    // (Epilogue::heads: in the kernel's store where the weights are packed
    // and the activations 8-bit, else a pass after it). No other epilogue.
    void forward_qkv(const ConstTensor &x, const Tensor &qkv, const ForwardOptions &opt = {}) const;
    // The attention's output [tokens, q_dim] -> [tokens, hidden], through
    // opt.epilogue (the residual add).
    void forward_output(const ConstTensor &attn, const Tensor &y, const ForwardOptions &opt = {}) const;

private:
    QKVProjection qkv_;
    std::shared_ptr<Linear> output_;
    int64_t head_dim_ = 0;
    NormWeights q_norm_, k_norm_;
};

// What a block's file says about it.
struct BlockConfig {
    std::string architecture;  // "llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "phi2"
    int64_t hidden = 0, ffn = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
    float norm_eps = 0;
    Norm::Kind norm_kind = Norm::Kind::rms;
    Activation activation = Activation::silu;
    bool gated = true;
    bool parallel = false;  // attention and FFN read the same normed x (Phi-2): ffn_norm is attn_norm
};

struct DecoderBlock {
    BlockConfig config;
    NormWeights attn_norm, ffn_norm;
    NormWeights post_attn_norm, post_ffn_norm;  // Gemma 2/3: on the attention's and the FFN's outputs
    AttentionProjections attention;
    FFN ffn;

    int64_t memory_bytes() const;
    void release_host();  // CUDA blocks: every layer's host copy
};

// Block `index` of a GGUF model, from general.architecture and its keys
// (llama, qwen2, qwen3, gemma2, gemma3, phi3, phi2). An unknown
// architecture, a missing key or tensor, or a tensor of the wrong shape is
// an Error naming it (and the shape expected).
DecoderBlock load_block(const GGUFFile &f, int index, const LayerOptions &opt = {});
// The same from a safetensors checkpoint, with the Hugging Face config.json
// that sits beside it (model_type and sizes): one file, or the shards of a
// model.safetensors.index.json (SafetensorsCheckpoint::open).
DecoderBlock load_block(const SafetensorsFile &f, int index, const LayerOptions &opt = {});
DecoderBlock load_block(const SafetensorsCheckpoint &checkpoint, int index, const LayerOptions &opt = {});

}  // namespace qforge
