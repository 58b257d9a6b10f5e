// The attention input projection: Q, K and V from one x.
//
// Output layout: one [tokens, q_dim + 2 kv_dim] tensor whose columns are Q,
// then K, then V (kv_dim = n_kv_heads * head_dim under grouped-query
// attention; q_dim may differ from the hidden size, as in Qwen3 and Gemma-2).
#pragma once

#include <memory>

#include "qforge/layers.h"

namespace qforge {

class QKVProjection {
public:
    // One fused tensor [q_dim + 2 kv_dim, hidden] (phi-2 style).
    static QKVProjection fused(std::unique_ptr<Linear> qkv, int64_t q_dim, int64_t kv_dim);
    // Separate Q, K, V layers (llama style). With `concatenate`, layers of the
    // same format, input size and strategy are joined row-wise at load so
    // that one kernel call computes all three (their bytes are copied once);
    // otherwise, or when they differ, three calls write the three column ranges.
    static QKVProjection separate(std::unique_ptr<Linear> q, std::unique_ptr<Linear> k,
                                  std::unique_ptr<Linear> v, bool concatenate = true);

    int64_t hidden() const { return hidden_; }
    int64_t q_dim() const { return q_dim_; }
    int64_t kv_dim() const { return kv_dim_; }
    bool single_call() const { return parts_.size() == 1; }
    int64_t memory_bytes() const;
    void release_host();  // CUDA layers: their host copies (Linear::release_host)

    // x [tokens, hidden] (or [batch, seq, hidden]) -> qkv [tokens, q_dim + 2 kv_dim].
    void forward(const ConstTensor &x, const Tensor &qkv, const ForwardOptions &opt = {}) const;

private:
    std::vector<std::shared_ptr<Linear>> parts_;  // one (fused/concatenated) or three
    int64_t hidden_ = 0, q_dim_ = 0, kv_dim_ = 0;
};

}  // namespace qforge
