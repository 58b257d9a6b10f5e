// qforge block FILE: one decoder block built from the file's own
// description (load_block), what it holds, and its pieces timed: the QKV
// projection (attention norm and per-head norms included), the output
// projection and the FFN (its norm included), per token count.
#include "commands.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "model.h"
#include "qforge/block.h"
#include "qforge/safetensors.h"
#include "timing_rows.h"

namespace qforge::cli {

int block(const BlockArgs &a, const Common &c) {
    if (a.threads > 0) set_num_threads(a.threads);
    // A sharded checkpoint's index (model.safetensors.index.json), or one file.
    const bool index_file = std::filesystem::path(a.file).extension() == ".json";
    const DecoderBlock b = [&] {
        if (index_file) return load_block(SafetensorsCheckpoint::open(a.file), a.index);
        ModelFile m = ModelFile::open(a.file);
        return m.is_gguf() ? load_block(*m.gguf, a.index) : load_block(*m.st, a.index);
    }();
    const BlockConfig &k = b.config;
    const AttentionProjections &at = b.attention;
    static const char *const acts[] = {"silu", "gelu_tanh", "gelu_erf"};
    nlohmann::json out = {{"file", a.file},
                          {"block", a.index},
                          {"architecture", k.architecture},
                          {"hidden", k.hidden},
                          {"ffn", k.ffn},
                          {"heads", k.n_heads},
                          {"kv_heads", k.n_kv_heads},
                          {"head_dim", k.head_dim},
                          {"activation", acts[static_cast<int>(k.activation)]},
                          {"gated", k.gated},
                          {"qk_norm", at.q_norm().get() != nullptr},
                          {"qkv_one_call", at.qkv().single_call()},
                          {"ffn_fused_glu", b.ffn.fused_glu()},
                          {"memory_bytes", b.memory_bytes()}};
    if (!c.json) {
        std::printf("%s block %d: %s, hidden %lld, ffn %lld, %lld heads (%lld KV) of %lld, %s%s%s\n", a.file.c_str(), a.index,
                    k.architecture.c_str(), static_cast<long long>(k.hidden), static_cast<long long>(k.ffn),
                    static_cast<long long>(k.n_heads), static_cast<long long>(k.n_kv_heads), static_cast<long long>(k.head_dim),
                    acts[static_cast<int>(k.activation)], k.gated ? " gated" : " plain",
                    at.q_norm().get() ? ", q/k norms" : "");
        std::printf("QKV in %s; FFN gate+up %s; %.1f MB\n\n", at.qkv().single_call() ? "one call" : "three calls",
                    b.ffn.fused_glu() ? "one call, activation fused (glu epilogue)" : "then the activation kernel",
                    b.memory_bytes() / 1e6);
        std::printf("%-8s %12s %12s %12s\n", "tokens", "qkv ms", "output ms", "ffn ms");
    }
    for (int64_t tokens : a.tokens) {
        const auto x = random_input(tokens, k.hidden, 7), attn = random_input(tokens, at.q_dim(), 8);
        std::vector<float> qkv(tokens * at.qkv_dim()), y(tokens * k.hidden);
        const double t_qkv = median_ms([&] {
            at.forward_qkv({x.data(), {tokens, k.hidden}, b.attn_norm.get()}, {qkv.data(), {tokens, at.qkv_dim()}});
        }, 20);
        const double t_out = median_ms([&] {
            at.forward_output({attn.data(), {tokens, at.q_dim()}}, {y.data(), {tokens, k.hidden}});
        }, 20);
        const double t_ffn = median_ms([&] {
            b.ffn.forward({x.data(), {tokens, k.hidden}, b.ffn_norm.get()}, {y.data(), {tokens, k.hidden}});
        }, 20);
        out["timings"].push_back({{"tokens", tokens}, {"qkv_ms", t_qkv}, {"output_ms", t_out}, {"ffn_ms", t_ffn}});
        if (!c.json) std::printf("%-8lld %12.3f %12.3f %12.3f\n", static_cast<long long>(tokens), t_qkv, t_out, t_ffn);
    }
    if (c.json) std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace qforge::cli
