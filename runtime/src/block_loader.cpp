// load_block: a decoder block's layers from a model file's own description
// of itself, GGUF metadata (llama.cpp's keys and tensor names) or a
// safetensors checkpoint's Hugging Face config.json and names. One table
// says what each architecture has; two sources say where a role's tensor
// is and what it looks like.
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "qforge/gptq.h"
#include "qforge/block.h"
#include "qforge/gguf.h"
#include "qforge/pack.h"
#include "qforge/quantize.h"
#include "qforge/safetensors.h"
#include "json_file.h"
#include "tensor_views.h"

namespace qforge {

namespace {

// What an architecture's blocks are made of. llama.cpp fixes the
// activation by architecture (its GGUF keys do not carry it); Hugging Face
// configs name it, and must agree.
struct Arch {
    const char *name;
    Activation act;
    bool gated;          // act(gate) * up; else act(up)
    bool fused_qkv;      // one attn_qkv tensor (Phi-3); Phi-2's GGUF too (its HF checkpoint has q, k, v)
    bool fused_gate_up;  // one ffn_up of 2 ffn rows, gate first (Phi-3)
    bool qk_norm;        // per-head RMSNorm of q and k (Qwen3, Gemma 3)
    bool post_norms;     // norms on the attention's and FFN's outputs (Gemma 2/3)
    bool layer_norm;     // LayerNorm with bias (Phi-2); else RMSNorm
    bool parallel;       // attention and FFN read one normed x (Phi-2)
};

constexpr Arch kArchs[] = {
    {"llama", Activation::silu, true, false, false, false, false, false, false},
    {"qwen2", Activation::silu, true, false, false, false, false, false, false},
    {"qwen3", Activation::silu, true, false, false, true, false, false, false},
    {"gemma2", Activation::gelu_tanh, true, false, false, false, true, false, false},
    {"gemma3", Activation::gelu_tanh, true, false, false, true, true, false, false},
    {"phi3", Activation::silu, true, true, true, false, false, false, false},
    {"phi2", Activation::gelu_tanh, false, true, false, false, false, true, true},
};

const Arch *find_arch(const std::string &name) {
    for (const Arch &a : kArchs) {
        if (name == a.name) return &a;
    }
    return nullptr;
}

std::string arch_list() {
    std::string s;
    for (const Arch &a : kArchs) s += (s.empty() ? "" : ", ") + std::string(a.name);
    return s;
}

// The parts of a block, by role; a source maps each to its file's name.
enum class Role { attn_norm, attn_norm_bias, q, k, v, qkv, o, q_norm, k_norm, ffn_norm, gate, up, down, post_attn_norm, post_ffn_norm };

// Where a block's tensors come from.
class Source {
public:
    virtual ~Source() = default;
    virtual std::string name(Role r) const = 0;  // for messages and lookups
    virtual bool has(Role r) const = 0;
    // [out, in] of a matrix role, [n] of a vector role.
    virtual std::vector<int64_t> shape(Role r) const = 0;
    virtual std::unique_ptr<Linear> linear(Role r, const LayerOptions &opt) const = 0;
    virtual std::vector<float> values(Role r) const = 0;
    virtual float norm_offset() const { return 0.0f; }  // added to every norm weight (Gemma's HF checkpoints: 1)
};

// A norm's weights (or bias) as f32, from any float type a file stores them in.
std::vector<float> vector_values(const TensorView &t) {
    if (t.type != DType::f32 && t.type != DType::f16 && t.type != DType::bf16) {
        throw Error("tensor '" + t.name + "' is " + to_string(t.type) + ", expected F32, F16 or BF16");
    }
    return to_f32(t.type, t.data, t.elements());
}

[[noreturn]] void block_error(int index, const std::string &what) {
    throw Error("block " + std::to_string(index) + ": " + what);
}

// --- GGUF ---------------------------------------------------------------------

class GGUFSource : public Source {
public:
    GGUFSource(const GGUFFile &f, int index) : f_(f), prefix_("blk." + std::to_string(index) + ".") {}

    std::string name(Role r) const override {
        static const char *const names[] = {
            "attn_norm.weight", "attn_norm.bias", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_qkv.weight",
            "attn_output.weight", "attn_q_norm.weight", "attn_k_norm.weight", "ffn_norm.weight", "ffn_gate.weight",
            "ffn_up.weight", "ffn_down.weight", "post_attention_norm.weight", "post_ffw_norm.weight"};
        return prefix_ + names[static_cast<int>(r)];
    }
    bool has(Role r) const override { return f_.find(name(r)) != nullptr; }
    std::vector<int64_t> shape(Role r) const override {
        if (const auto p = packed_tensor(f_, name(r))) return {p->out, p->in};
        return f_.tensor(name(r)).shape;
    }
    std::unique_ptr<Linear> linear(Role r, const LayerOptions &opt) const override { return load_linear(f_, name(r), opt); }
    std::vector<float> values(Role r) const override { return vector_values(f_.tensor(name(r))); }

private:
    const GGUFFile &f_;
    std::string prefix_;
};

const GGUFValue &gguf_key(const GGUFFile &f, const std::string &key) {
    const auto it = f.metadata().find(key);
    if (it == f.metadata().end()) throw Error(f.path() + ": GGUF key '" + key + "' is missing");
    return it->second;
}

int64_t gguf_int(const GGUFFile &f, const std::string &key) {
    const GGUFValue &v = gguf_key(f, key);
    using T = GGUFValue::Type;
    if (v.type == T::array || v.type == T::string || v.type == T::f32 || v.type == T::f64 || v.type == T::boolean) {
        throw Error(f.path() + ": GGUF key '" + key + "' is not an integer (per-layer arrays are not supported)");
    }
    return v.i;
}

std::optional<int64_t> gguf_int_or(const GGUFFile &f, const std::string &key) {
    if (!f.metadata().count(key)) return std::nullopt;
    return gguf_int(f, key);
}

float gguf_float(const GGUFFile &f, const std::string &key) {
    const GGUFValue &v = gguf_key(f, key);
    if (v.type != GGUFValue::Type::f32 && v.type != GGUFValue::Type::f64) {
        throw Error(f.path() + ": GGUF key '" + key + "' is not a float");
    }
    return static_cast<float>(v.f);
}

// --- safetensors + config.json ------------------------------------------------

class HFSource : public Source {
public:
    HFSource(const SafetensorsCheckpoint &ck, int index, std::string arch)
        : ck_(ck), prefix_("model.layers." + std::to_string(index) + "."), arch_(std::move(arch)) {}

    std::string name(Role r) const override {
        const bool gemma = arch_.rfind("gemma", 0) == 0, phi2 = arch_ == "phi2", phi3 = arch_ == "phi3";
        switch (r) {
        case Role::attn_norm: return prefix_ + "input_layernorm.weight";
        case Role::attn_norm_bias: return prefix_ + "input_layernorm.bias";
        case Role::q: return prefix_ + "self_attn.q_proj";
        case Role::k: return prefix_ + "self_attn.k_proj";
        case Role::v: return prefix_ + "self_attn.v_proj";
        case Role::qkv: return prefix_ + "self_attn.qkv_proj";
        case Role::o: return prefix_ + (phi2 ? "self_attn.dense" : "self_attn.o_proj");
        case Role::q_norm: return prefix_ + "self_attn.q_norm.weight";
        case Role::k_norm: return prefix_ + "self_attn.k_norm.weight";
        case Role::ffn_norm: return prefix_ + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight");
        case Role::gate: return prefix_ + "mlp.gate_proj";
        case Role::up: return prefix_ + (phi2 ? "mlp.fc1" : phi3 ? "mlp.gate_up_proj" : "mlp.up_proj");
        case Role::down: return prefix_ + (phi2 ? "mlp.fc2" : "mlp.down_proj");
        case Role::post_attn_norm: return prefix_ + "post_attention_layernorm.weight";
        case Role::post_ffn_norm: return prefix_ + "post_feedforward_layernorm.weight";
        }
        return "";
    }
    bool is_matrix(Role r) const {
        return r == Role::q || r == Role::k || r == Role::v || r == Role::qkv || r == Role::o || r == Role::gate ||
               r == Role::up || r == Role::down;
    }
    bool has(Role r) const override {
        if (!is_matrix(r)) return ck_.shard_of(name(r)) != nullptr;
        return ck_.shard_of(name(r) + ".weight_4bit") || ck_.shard_of(name(r) + ".qweight") ||
               ck_.shard_of(name(r) + ".weight");
    }
    std::vector<int64_t> shape(Role r) const override {
        if (!is_matrix(r)) return file(name(r)).tensor(name(r)).shape;
        if (int4g(r)) {
            const Int4gTensors g = file(name(r) + ".weight_4bit").int4g(name(r));
            return {g.out, g.in};
        }
        if (zero_points(r)) {
            const ZeroPointInfo i = zero_point_info(file(name(r) + ".qweight"), name(r));
            return {i.out, i.in};
        }
        return file(name(r) + ".weight").tensor(name(r) + ".weight").shape;
    }
    std::unique_ptr<Linear> linear(Role r, const LayerOptions &opt) const override {
        if (int4g(r)) return load_linear(file(name(r) + ".weight_4bit"), name(r), opt);
        if (zero_points(r)) return load_linear(file(name(r) + ".qweight"), name(r), opt);
        return load_linear(file(name(r) + ".weight"), name(r) + ".weight", opt);
    }
    std::vector<float> values(Role r) const override { return vector_values(file(name(r)).tensor(name(r))); }
    // Gemma's RMSNorm scales by (1 + weight); llama.cpp's converter adds the 1 to its GGUF files.
    float norm_offset() const override { return arch_.rfind("gemma", 0) == 0 ? 1.0f : 0.0f; }

private:
    bool int4g(Role r) const { return ck_.shard_of(name(r) + ".weight_4bit") != nullptr; }
    bool zero_points(Role r) const { return ck_.shard_of(name(r) + ".qweight") != nullptr; }
    // The shard holding `tensor` (the first one where none does: its lookup then names the tensor).
    const SafetensorsFile &file(const std::string &tensor) const {
        const SafetensorsFile *s = ck_.shard_of(tensor);
        return s ? *s : ck_.shards().front();
    }

    const SafetensorsCheckpoint &ck_;
    std::string prefix_, arch_;
};

// --- building ---------------------------------------------------------------------

DecoderBlock build(const Source &src, const BlockConfig &c, const Arch &a, int index, const LayerOptions &opt) {
    auto need = [&](Role r, const std::vector<int64_t> &want) {
        if (!src.has(r)) {
            block_error(index, "tensor '" + src.name(r) + "' is missing (" + c.architecture + " blocks have it; expected " +
                                   shape_string(want) + ")");
        }
        const std::vector<int64_t> got = src.shape(r);
        if (got != want) {
            block_error(index, "tensor '" + src.name(r) + "' is " + shape_string(got) + ", expected " + shape_string(want));
        }
    };
    auto matrix = [&](Role r, int64_t out, int64_t in) {
        need(r, {out, in});
        return src.linear(r, opt);
    };
    auto norm = [&](Role r, int64_t n, bool with_bias) {
        need(r, {n});
        std::vector<float> w = src.values(r);
        for (float &v : w) v += src.norm_offset();
        std::vector<float> b;
        if (with_bias) {
            need(Role::attn_norm_bias, {n});
            b = src.values(Role::attn_norm_bias);
        }
        return NormWeights(c.norm_kind, std::move(w), std::move(b), c.norm_eps, opt.memory);
    };

    const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
    DecoderBlock b;
    b.config = c;
    b.attn_norm = norm(Role::attn_norm, c.hidden, a.layer_norm);
    b.ffn_norm = a.parallel ? b.attn_norm : norm(Role::ffn_norm, c.hidden, false);
    if (a.post_norms) {
        b.post_attn_norm = norm(Role::post_attn_norm, c.hidden, false);
        b.post_ffn_norm = norm(Role::post_ffn_norm, c.hidden, false);
    }
    QKVProjection qkv;
    if (a.fused_qkv && src.has(Role::qkv)) {
        qkv = QKVProjection::fused(matrix(Role::qkv, q_dim + 2 * kv_dim, c.hidden), q_dim, kv_dim);
    } else {
        qkv = QKVProjection::separate(matrix(Role::q, q_dim, c.hidden), matrix(Role::k, kv_dim, c.hidden),
                                      matrix(Role::v, kv_dim, c.hidden));
    }
    NormWeights qn, kn;
    if (a.qk_norm) {
        qn = norm(Role::q_norm, c.head_dim, false);
        kn = norm(Role::k_norm, c.head_dim, false);
    }
    b.attention = AttentionProjections(std::move(qkv), matrix(Role::o, c.hidden, q_dim), c.head_dim, std::move(qn),
                                       std::move(kn));
    auto down = [&] { return matrix(Role::down, c.hidden, c.ffn); };
    if (!a.gated) {
        b.ffn = FFN::plain(matrix(Role::up, c.ffn, c.hidden), down(), c.activation);
    } else if (a.fused_gate_up) {
        b.ffn = FFN::gated_fused(matrix(Role::up, 2 * c.ffn, c.hidden), down(), c.activation);
    } else {
        b.ffn = FFN::gated(matrix(Role::gate, c.ffn, c.hidden), matrix(Role::up, c.ffn, c.hidden), down(), c.activation);
    }
    return b;
}

void check_config(const BlockConfig &c, const std::string &where) {
    auto positive = [&](int64_t v, const char *what) {
        if (v <= 0) throw Error(where + ": " + what + " = " + std::to_string(v) + " must be positive");
    };
    positive(c.hidden, "hidden size");
    positive(c.ffn, "FFN size");
    positive(c.n_heads, "head count");
    positive(c.n_kv_heads, "KV head count");
    positive(c.head_dim, "head size");
    if (c.n_heads % c.n_kv_heads != 0) {
        throw Error(where + ": " + std::to_string(c.n_heads) + " heads are no multiple of " + std::to_string(c.n_kv_heads) +
                    " KV heads");
    }
    if (!std::isfinite(c.norm_eps) || c.norm_eps < 0) throw Error(where + ": norm eps " + std::to_string(c.norm_eps));
}

Activation hf_activation(const std::string &name, const std::string &where) {
    if (name == "silu" || name == "swish") return Activation::silu;
    if (name == "gelu_pytorch_tanh" || name == "gelu_new" || name == "gelu_fast") return Activation::gelu_tanh;
    if (name == "gelu") return Activation::gelu_erf;
    throw Error(where + ": hidden activation '" + name + "' has no kernel (silu, gelu, gelu_pytorch_tanh, gelu_new do)");
}

}  // namespace

DecoderBlock load_block(const GGUFFile &f, int index, const LayerOptions &opt) {
    const GGUFValue &archv = gguf_key(f, "general.architecture");
    const std::string arch = archv.s;
    const Arch *a = find_arch(arch);
    if (!a) {
        throw Error(f.path() + ": general.architecture = '" + arch + "' has no block loader (known: " + arch_list() + ")");
    }
    const std::string k = arch + ".";
    const int64_t blocks = gguf_int(f, k + "block_count");
    if (index < 0 || index >= blocks) {
        throw Error(f.path() + ": block " + std::to_string(index) + " does not exist (" + k + "block_count = " +
                    std::to_string(blocks) + ")");
    }
    BlockConfig c;
    c.architecture = arch;
    c.hidden = gguf_int(f, k + "embedding_length");
    c.ffn = gguf_int(f, k + "feed_forward_length");
    c.n_heads = gguf_int(f, k + "attention.head_count");
    c.n_kv_heads = gguf_int_or(f, k + "attention.head_count_kv").value_or(c.n_heads);
    c.head_dim = gguf_int_or(f, k + "attention.key_length").value_or(c.n_heads > 0 ? c.hidden / c.n_heads : 0);
    c.norm_kind = a->layer_norm ? Norm::Kind::layer : Norm::Kind::rms;
    c.norm_eps = gguf_float(f, k + (a->layer_norm ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon"));
    c.activation = a->act;
    c.gated = a->gated;
    c.parallel = a->parallel;
    check_config(c, f.path());
    return build(GGUFSource(f, index), c, *a, index, opt);
}

DecoderBlock load_block(const SafetensorsFile &f, int index, const LayerOptions &opt) {
    return load_block(SafetensorsCheckpoint::single(f), index, opt);
}

DecoderBlock load_block(const SafetensorsCheckpoint &f, int index, const LayerOptions &opt) {
    namespace fs = std::filesystem;
    const fs::path config_path = fs::path(f.path()).parent_path() / "config.json";
    if (!fs::exists(config_path)) throw Error(f.path() + ": no config.json beside it (" + config_path.string() + ")");
    const std::string where = config_path.string();
    nlohmann::json j = internal::read_json_file(where);
    if (!j.is_object()) throw Error(where + ": not a JSON object");
    std::string model_type = j.value("model_type", "");
    if ((model_type == "gemma3" || model_type == "qwen3_vl") && j.contains("text_config")) j = j["text_config"];
    // Hugging Face names, llama.cpp's architectures.
    static const std::map<std::string, std::string> hf = {
        {"llama", "llama"}, {"mistral", "llama"}, {"qwen2", "qwen2"}, {"qwen3", "qwen3"}, {"gemma2", "gemma2"},
        {"gemma3", "gemma3"}, {"gemma3_text", "gemma3"}, {"phi3", "phi3"}, {"phi", "phi2"}};
    const auto it = hf.find(model_type);
    if (it == hf.end()) {
        std::string known;
        for (const auto &[name, _] : hf) known += (known.empty() ? "" : ", ") + name;
        throw Error(where + ": model_type '" + model_type + "' has no block loader (known: " + known + ")");
    }
    const Arch &a = *find_arch(it->second);
    auto integer = [&](const char *key) -> int64_t {
        if (!j.contains(key) || !j[key].is_number_integer()) throw Error(where + ": '" + key + "' is missing or not an integer");
        return j[key].get<int64_t>();
    };
    BlockConfig c;
    c.architecture = a.name;
    c.hidden = integer("hidden_size");
    c.ffn = integer("intermediate_size");
    c.n_heads = integer("num_attention_heads");
    c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null() ? integer("num_key_value_heads")
                                                                                            : c.n_heads;
    c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? integer("head_dim")
                                                                    : (c.n_heads > 0 ? c.hidden / c.n_heads : 0);
    const int64_t layers = integer("num_hidden_layers");
    if (index < 0 || index >= layers) {
        throw Error(where + ": block " + std::to_string(index) + " does not exist (num_hidden_layers = " +
                    std::to_string(layers) + ")");
    }
    c.norm_kind = a.layer_norm ? Norm::Kind::layer : Norm::Kind::rms;
    const char *eps_key = a.layer_norm ? "layer_norm_eps" : "rms_norm_eps";
    if (!j.contains(eps_key) || !j[eps_key].is_number()) throw Error(where + ": '" + eps_key + "' is missing or not a number");
    c.norm_eps = j[eps_key].get<float>();
    const char *act_key = j.contains("hidden_activation") ? "hidden_activation" : "hidden_act";
    c.activation = j.contains(act_key) && j[act_key].is_string() ? hf_activation(j[act_key].get<std::string>(), where) : a.act;
    c.gated = a.gated;
    c.parallel = a.parallel;
    check_config(c, where);
    return build(HFSource(f, index, a.name), c, a, index, opt);
}

}  // namespace qforge
