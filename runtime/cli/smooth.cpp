#include "smooth.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "qforge/quantize.h"

namespace qforge::cli {

namespace {

// `name` with `from` (its tail) replaced by `to`, or "".
std::string swap_tail(const std::string &name, const std::string &from, const std::string &to) {
    return ends_with(name, from) ? name.substr(0, name.size() - from.size()) + to : "";
}

const TensorView *find(const ModelFile &m, const std::string &name) {
    return m.is_gguf() ? m.gguf->find(name) : m.st->find(name);
}

}  // namespace

std::string norm_of(const std::string &linear) {
    static const std::pair<const char *, const char *> kRules[] = {
        {".attn_q.weight", ".attn_norm.weight"}, {".attn_k.weight", ".attn_norm.weight"},
        {".attn_v.weight", ".attn_norm.weight"}, {".attn_qkv.weight", ".attn_norm.weight"},
        {".ffn_gate.weight", ".ffn_norm.weight"}, {".ffn_up.weight", ".ffn_norm.weight"},
        {".self_attn.q_proj.weight", ".input_layernorm.weight"}, {".self_attn.k_proj.weight", ".input_layernorm.weight"},
        {".self_attn.v_proj.weight", ".input_layernorm.weight"}, {".self_attn.qkv_proj.weight", ".input_layernorm.weight"},
        {".mlp.gate_proj.weight", ".post_attention_layernorm.weight"}, {".mlp.up_proj.weight", ".post_attention_layernorm.weight"},
        {".mlp.gate_up_proj.weight", ".post_attention_layernorm.weight"},
    };
    for (const auto &[from, to] : kRules) {
        if (std::string n = swap_tail(linear, from, to); !n.empty()) return n;
    }
    return "";
}

SmoothedModel smooth_model(const ModelFile &m, const std::vector<LayerShape> &layers, const QuantPlan &plan,
                           const std::string &act_scales, double alpha) {
    SmoothedModel out;
    const ModelFile acts = ModelFile::open(act_scales);
    // Groups: a norm and the layers that read it.
    std::map<std::string, std::vector<const LayerShape *>> groups;
    for (const LayerShape &l : layers) {
        const FormatSpec &f = plan.for_layer(l.name);
        if (f.smooth < 0) continue;  // +nosmooth
        const std::string norm = norm_of(l.name);
        if (norm.empty() || !find(m, norm)) {
            const std::string why = norm.empty() ? "its input is no norm's output" : "the file has no '" + norm + "'";
            if (f.smooth == f.smooth) throw Error("plan: layer '" + l.name + "' asks for +smooth, but " + why + " to fold the scales into");
            out.unsmoothed.push_back(l.name + " (" + why + ")");
            continue;
        }
        groups[norm].push_back(&l);
    }
    for (const auto &[norm, members] : groups) {
        const int64_t in = members[0]->in;
        double a = alpha;
        std::vector<float> amax(in, 0.0f);
        std::vector<std::vector<float>> w;
        std::vector<const float *> wp;
        std::vector<int64_t> outs;
        for (const LayerShape *l : members) {
            const FormatSpec &f = plan.for_layer(l->name);
            const double la = f.smooth == f.smooth ? f.smooth : alpha;
            if (l != members[0] && la != a) {
                throw Error("plan: layers '" + members[0]->name + "' and '" + l->name + "' read the same norm '" + norm +
                            "' but ask for different smoothing alphas (" + std::to_string(a) + ", " + std::to_string(la) + ")");
            }
            a = la;
            if (l->in != in) throw Error("smoothing: layers reading '" + norm + "' have different inputs");
            const TensorView *t = find(acts, l->name);
            if (!t) t = find(acts, swap_tail(l->name, ".weight", ""));
            if (!t) {
                throw Error(act_scales + ": no activation scales for layer '" + l->name + "' (a tensor named '" + l->name +
                            "' or '" + swap_tail(l->name, ".weight", "") + "')");
            }
            if (t->shape != std::vector<int64_t>{in} || (t->type != DType::f32 && t->type != DType::f16 && t->type != DType::bf16)) {
                throw Error(act_scales + ": '" + t->name + "' is " + to_string(t->type) + " with " + std::to_string(t->elements()) +
                            " values, expected F32, F16 or BF16 [" + std::to_string(in) + "]");
            }
            const std::vector<float> v = to_f32(t->type, t->data, in);
            for (int64_t j = 0; j < in; ++j) amax[j] = std::max(amax[j], v[j]);
            const TensorView &wt = m.is_gguf() ? m.gguf->tensor(l->name) : m.st->tensor(l->name);
            w.push_back(to_f32(wt.type, wt.data, wt.elements()));
            outs.push_back(l->out);
        }
        for (const auto &v : w) wp.push_back(v.data());
        std::vector<float> s;
        try {
            s = smoothing_scales(amax.data(), in, wp, outs, a);
        } catch (const Error &e) {
            throw Error(act_scales + " (layers reading '" + norm + "'): " + e.what());
        }
        for (size_t i = 0; i < members.size(); ++i) {
            std::vector<float> &v = w[i];
            for (int64_t r = 0; r < outs[i]; ++r) {
                for (int64_t j = 0; j < in; ++j) v[r * in + j] *= s[j];
            }
            out.weights[members[i]->name] = std::move(v);
            out.scales[members[i]->name] = s;
            out.act_max[members[i]->name] = amax;
            out.alpha[members[i]->name] = a;
        }
        // The norm's weight (and a LayerNorm's bias) divided by s.
        for (const std::string &name : {norm, swap_tail(norm, ".weight", ".bias")}) {
            const TensorView *t = find(m, name);
            if (!t) continue;
            if (t->shape != std::vector<int64_t>{in} || (t->type != DType::f32 && t->type != DType::f16 && t->type != DType::bf16)) {
                throw Error("smoothing: norm '" + name + "' is " + to_string(t->type) + " with " + std::to_string(t->elements()) +
                            " values, expected F32, F16 or BF16 [" + std::to_string(in) + "]");
            }
            std::vector<float> g = to_f32(t->type, t->data, in);
            for (int64_t j = 0; j < in; ++j) g[j] /= s[j];
            out.norms[name] = std::move(g);
        }
    }
    return out;
}

namespace {

// x through Q8_0 as the 8-bit kernels take activations (FORMATS.md, "Q8_0
// activations"): blocks of 32, d = max|x| / 127, q = round(x / d).
void q8_0_round(float *x, int64_t n) {
    for (int64_t b = 0; b < n; b += 32) {
        const int64_t e = std::min<int64_t>(b + 32, n);
        float amax = 0;
        for (int64_t i = b; i < e; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float d = amax / 127.0f;
        for (int64_t i = b; i < e; ++i) x[i] = d == 0 ? 0.0f : std::round(x[i] / d) * d;
    }
}

}  // namespace

double output_rmse(const float *w, const float *back, const float *s, const float *a, int64_t out, int64_t in) {
    constexpr int kTokens = 8;
    uint64_t state = 0x9E3779B97F4A7C15ull;  // fixed: before and after see the same inputs
    auto uniform = [&] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<float>(static_cast<double>(state >> 11) / 9007199254740992.0 * 2 - 1);
    };
    double sum = 0;
    std::vector<float> x(in), xq(in);
    for (int t = 0; t < kTokens; ++t) {
        for (int64_t j = 0; j < in; ++j) {
            x[j] = a[j] * uniform();
            xq[j] = s ? x[j] / s[j] : x[j];
        }
        q8_0_round(xq.data(), in);
        for (int64_t r = 0; r < out; ++r) {
            double exact = 0, got = 0;
            for (int64_t j = 0; j < in; ++j) {
                exact += static_cast<double>(x[j]) * w[r * in + j];
                got += static_cast<double>(xq[j]) * back[r * in + j];
            }
            sum += (got - exact) * (got - exact);
        }
    }
    return out ? std::sqrt(sum / static_cast<double>(kTokens * out)) : 0.0;
}

}  // namespace qforge::cli
