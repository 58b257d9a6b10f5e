// The decoder block's layers (qforge/block.h): norms in the layers'
// memory, the FFN (gate_up, activation, down) and the attention
// projections with their per-head norms.
#include "qforge/block.h"

#include "device_scratch.h"
#include "gate_up.h"
#include "layer_access.h"
#include "qforge/pack.h"
#include "registry.h"
#include "tensor_views.h"
#include "weight_memory.h"

namespace qforge {

namespace {

[[noreturn]] void ffn_error(const std::string &what) { throw Error("FFN: " + what); }

int64_t tokens_of(const std::vector<int64_t> &shape) {
    int64_t t = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) t *= shape[i];
    return t;
}

// The activations of [tokens, in] for another kernel call: the caller's
// forced kernel names a matmul, not these.
RunOptions plain_run(const ForwardOptions &opt) {
    RunOptions r = opt.run;
    r.kernel.clear();
    return r;
}

// Scratch for the FFN's hidden values [tokens, width]: per thread, and on
// CUDA per stream (DeviceScratch), grown to the largest call seen.
float *hidden_scratch(const ForwardOptions &opt, int64_t elements) {
    const size_t bytes = static_cast<size_t>(elements) * sizeof(float);
    if (opt.run.memory == Memory::cuda) {
        return static_cast<float *>(internal::device_scratch().get(opt.run.stream, internal::DeviceScratch::ffn_hidden, bytes));
    }
    thread_local std::vector<float> host;
    if (host.size() < static_cast<size_t>(elements)) host.resize(elements);
    return host.data();
}

void check_shape(const char *who, const char *name, const std::vector<int64_t> &shape, int64_t last) {
    if ((shape.size() != 2 && shape.size() != 3) || shape.back() != last || tokens_of(shape) <= 0) {
        throw Error(std::string(who) + ": " + name + " is " + shape_string(shape) + ", expected [tokens, " +
                    std::to_string(last) + "]");
    }
}

}  // namespace

// --- NormWeights -----------------------------------------------------------

struct NormWeights::Impl {
    std::vector<float> weight, bias;
    internal::DeviceBuffer dev_weight, dev_bias;
    Norm norm;
};

NormWeights::NormWeights(Norm::Kind kind, std::vector<float> weight, std::vector<float> bias, float eps, Memory memory) {
    auto m = std::make_shared<Impl>();
    if (weight.empty()) throw Error("norm: no weight");
    if (!bias.empty() && bias.size() != weight.size()) {
        throw Error("norm: bias has " + std::to_string(bias.size()) + " values, weight " + std::to_string(weight.size()));
    }
    m->weight = std::move(weight);
    m->bias = std::move(bias);
    m->norm.kind = kind;
    m->norm.eps = eps;
    m->norm.weight = m->weight.data();
    m->norm.bias = m->bias.empty() ? nullptr : m->bias.data();
    if (memory == Memory::cuda) {
        m->dev_weight = internal::DeviceBuffer(m->weight.data(), m->weight.size() * 4);
        m->dev_bias = internal::DeviceBuffer(m->bias.data(), m->bias.size() * 4);
        m->norm.weight = static_cast<const float *>(m->dev_weight.p);
        m->norm.bias = static_cast<const float *>(m->dev_bias.p);
    }
    impl_ = std::move(m);
}

const Norm *NormWeights::get() const { return impl_ ? &impl_->norm : nullptr; }

const std::vector<float> &NormWeights::weight() const {
    static const std::vector<float> none;
    return impl_ ? impl_->weight : none;
}

const std::vector<float> &NormWeights::bias() const {
    static const std::vector<float> none;
    return impl_ ? impl_->bias : none;
}

int64_t NormWeights::memory_bytes() const {
    if (!impl_) return 0;
    return static_cast<int64_t>((impl_->weight.size() + impl_->bias.size()) * 4 + impl_->dev_weight.bytes +
                                impl_->dev_bias.bytes);
}

// --- FFN -------------------------------------------------------------------

namespace {

// The tile height of this CPU's glu kernels for a layer like `l` (its
// format and group size, on the host, quantized), or 0 where none is built.
int glu_rows(const Linear &l, ActType *act) {
    if (l.memory() != Memory::host || l.strategy() != Strategy::fused) return 0;
    // An act-order layer's x is permuted by its forward(); the glu kernel reads x as it is.
    if (!l.input_order().empty()) return 0;
    const FormatTraits &t = traits(l.format());
    const int R = preferred_pack_rows(l.format(), l.group_size());
    if (!R || l.in() % t.packed_block_elements != 0) return 0;
    for (ActType a : t.activations) {
        if (a == ActType::f32) continue;
        internal::KernelKey key;
        key.format = l.format();
        key.act = a;
        key.group = t.separate_scales ? l.group_size() : 0;
        key.pack = R;
        key.epi = internal::Epi::glu;
        if (!internal::find_row(key)) return 0;
        *act = a;
        return R;
    }
    return 0;
}

}  // namespace

// Gate and up as tile pairs, their biases as [2 ffn]; the layers' own packed
// copies are freed (their f32 calls read the file's layout).
void FFN::prepare_glu() {
    if (!gated_) return;
    const Linear &a = *first_[0];
    ActType act = ActType::q8_k;
    const int R = glu_rows(a, &act);
    if (!R) return;
    Weights gate, up;
    std::vector<float> bias;
    using internal::LayerAccess;
    if (first_.size() == 1) {
        gate = up = LayerAccess::file_weights(a);
        gate.out = up.out = ffn_;
        const FormatTraits &t = traits(a.format());
        const int64_t row = row_bytes(a.format(), a.in());  // the weight plane's row
        const int64_t groups = t.separate_scales ? (a.in() + a.group_size() - 1) / a.group_size() : 0;
        up.data = static_cast<const uint8_t *>(gate.data) + ffn_ * row;
        if (t.separate_scales) up.scales = gate.scales + ffn_ * groups;
        if (t.zero_points) up.zeros = gate.zeros + ffn_ * groups;
        bias = LayerAccess::bias(a);
    } else {
        const Linear &b = *first_[1];
        if (b.format() != a.format() || b.group_size() != a.group_size() || b.strategy() != a.strategy() ||
            b.memory() != a.memory()) {
            return;
        }
        gate = LayerAccess::file_weights(a);
        up = LayerAccess::file_weights(b);
        const auto &bg = LayerAccess::bias(a), &bu = LayerAccess::bias(b);
        if (!bg.empty() || !bu.empty()) {
            bias.assign(2 * ffn_, 0.0f);
            std::copy(bg.begin(), bg.end(), bias.begin());
            std::copy(bu.begin(), bu.end(), bias.begin() + ffn_);
        }
    }
    auto pairs = std::make_shared<internal::WeightBytes>(2 * packed_bytes(gate.format, gate.out, gate.in, R));
    internal::pack_gate_up_into(gate, up, R, pairs->data());
    glu_.weight_bytes = static_cast<int64_t>(pairs->size());
    glu_.weight = std::shared_ptr<const uint8_t>(pairs, pairs->data());
    glu_.bias = std::move(bias);
    glu_.format = a.format();
    glu_.group_size = a.group_size();
    glu_.rows = R;
    glu_.act = act;
    for (const auto &l : first_) LayerAccess::drop_packed(*l);
}

FFN FFN::gated(std::unique_ptr<Linear> gate, std::unique_ptr<Linear> up, std::unique_ptr<Linear> down, Activation act,
               bool concatenate) {
    if (!gate || !up || !down) ffn_error("gate, up and down layers are all needed");
    if (gate->out() != up->out() || gate->in() != up->in()) {
        ffn_error("'" + gate->name() + "' is [" + std::to_string(gate->out()) + ", " + std::to_string(gate->in()) +
                  "] but '" + up->name() + "' is [" + std::to_string(up->out()) + ", " + std::to_string(up->in()) +
                  "]: gate and up must have one shape");
    }
    const bool same = gate->format() == up->format() && gate->strategy() == up->strategy() &&
                      gate->group_size() == up->group_size() && gate->memory() == up->memory() &&
                      gate->input_order() == up->input_order();
    ActType q8 = ActType::q8_k;
    // Tile pairs replace a joined copy: the f32 path then reads the two files' rows as they are.
    if (concatenate && same && !glu_rows(*gate, &q8)) {
        auto gate_up = concatenate_rows(gate->name() + "+up", {gate.get(), up.get()});
        return gated_fused(std::move(gate_up), std::move(down), act);
    }
    const int64_t hidden = gate->in(), ffn = gate->out();
    std::vector<std::shared_ptr<Linear>> first = {std::move(gate), std::move(up)};
    return make(std::move(first), std::move(down), hidden, ffn, true, act, "");
}

FFN FFN::make(std::vector<std::shared_ptr<Linear>> first, std::unique_ptr<Linear> down, int64_t hidden, int64_t ffn,
              bool gated, Activation act, const std::string &why) {
    if (down->in() != ffn || down->out() != hidden) {
        ffn_error("'" + down->name() + "' is [" + std::to_string(down->out()) + ", " + std::to_string(down->in()) +
                  "], expected [" + std::to_string(hidden) + ", " + std::to_string(ffn) + "]" + why);
    }
    FFN n;
    n.hidden_ = hidden;
    n.ffn_ = ffn;
    n.first_ = std::move(first);
    n.down_ = std::move(down);
    n.gated_ = gated;
    n.act_ = act;
    n.prepare_glu();
    return n;
}

FFN FFN::gated_fused(std::unique_ptr<Linear> gate_up, std::unique_ptr<Linear> down, Activation act) {
    if (!gate_up || !down) ffn_error("gate_up and down layers are both needed");
    if (gate_up->out() % 2 != 0) {
        ffn_error("'" + gate_up->name() + "' has " + std::to_string(gate_up->out()) +
                  " rows: a fused gate_up has 2 ffn (gate rows, then up rows)");
    }
    const int64_t hidden = gate_up->in(), ffn = gate_up->out() / 2;
    const std::string why = " (hidden, ffn = rows of '" + gate_up->name() + "' / 2)";
    std::vector<std::shared_ptr<Linear>> first = {std::move(gate_up)};
    return make(std::move(first), std::move(down), hidden, ffn, true, act, why);
}

FFN FFN::plain(std::unique_ptr<Linear> up, std::unique_ptr<Linear> down, Activation act) {
    if (!up || !down) ffn_error("up and down layers are both needed");
    const int64_t hidden = up->in(), ffn = up->out();
    std::vector<std::shared_ptr<Linear>> first = {std::move(up)};
    return make(std::move(first), std::move(down), hidden, ffn, false, act, "");
}

int64_t FFN::memory_bytes() const {
    int64_t b = down_ ? down_->memory_bytes() : 0;
    if (glu_.weight) b += static_cast<int64_t>(glu_.weight_bytes + 4 * glu_.bias.size());
    for (const auto &l : first_) b += l->memory_bytes();
    return b;
}

void FFN::release_host() {
    for (const auto &l : first_) l->release_host();
    if (down_) down_->release_host();
}

void FFN::forward(const ConstTensor &x, const Tensor &y, const ForwardOptions &opt) const {
    if (!down_) ffn_error("an empty FFN (default-constructed)");
    check_shape("FFN", "x", x.shape, hidden_);
    std::vector<int64_t> want = x.shape;
    if (y.shape != want) ffn_error("y is " + shape_string(y.shape) + ", expected " + shape_string(want));
    const int64_t tokens = tokens_of(x.shape);
    const ConstMatrix xin{x.data, tokens, hidden_, 0, x.norm};
    // The caller's epilogue is the FFN's output's (down's); the first matmuls take their own.
    ForwardOptions inner = opt;
    inner.epilogue = {};
    if (glu_.weight && opt.activations != Activations::f32 && opt.run.kernel.empty()) {
        // x quantized once (through its norm), gate and up in one kernel with the activation.
        Q8KBuffer a(tokens, hidden_, glu_.act);
        q8k_quantize(xin, a.view(), opt.run);
        float *h = hidden_scratch(opt, tokens * ffn_);
        Weights w;
        w.format = glu_.format;
        w.data = glu_.weight.get();
        w.out = ffn_;
        w.in = hidden_;
        w.group_size = glu_.group_size;
        w.pack_rows = glu_.rows;
        matmul_glu(w, a.view(), glu_.bias.empty() ? nullptr : glu_.bias.data(), act_, Matrix{h, tokens, ffn_}, opt.run);
        down_->forward(ConstMatrix{h, tokens, ffn_}, Matrix{y.data, tokens, hidden_}, opt);
        return;
    }
    const int64_t width = gated_ ? 2 * ffn_ : ffn_;
    float *h = hidden_scratch(opt, tokens * width);
    if (!gated_) {
        // A plain FFN's activation is up's epilogue.
        ForwardOptions up = inner;
        up.epilogue.activate = true;
        up.epilogue.act = act_;
        first_.front()->forward(xin, Matrix{h, tokens, ffn_}, up);
        down_->forward(ConstMatrix{h, tokens, ffn_}, Matrix{y.data, tokens, hidden_}, opt);
        return;
    }
    int64_t col = 0;
    for (const auto &l : first_) {
        l->forward(xin, Matrix{h + col, tokens, l->out(), width}, inner);
        col += l->out();
    }
    // In place: the activated values overwrite the gate columns.
    const ConstMatrix gate{h, tokens, ffn_, width};
    const ConstMatrix up{h + ffn_, tokens, ffn_, width};
    glu(gate, up, act_, Matrix{h, tokens, ffn_, width}, plain_run(opt));
    down_->forward(gate, Matrix{y.data, tokens, hidden_}, opt);
}

// --- AttentionProjections ----------------------------------------------------

AttentionProjections::AttentionProjections(QKVProjection qkv, std::unique_ptr<Linear> output, int64_t head_dim,
                                           NormWeights q_norm, NormWeights k_norm)
    : qkv_(std::move(qkv)), output_(std::move(output)), head_dim_(head_dim), q_norm_(std::move(q_norm)),
      k_norm_(std::move(k_norm)) {
    auto fail = [](const std::string &what) { throw Error("attention projections: " + what); };
    if (!output_) fail("no output projection");
    if (head_dim <= 0 || qkv_.q_dim() % head_dim != 0 || qkv_.kv_dim() % head_dim != 0) {
        fail("head_dim " + std::to_string(head_dim) + " divides neither q_dim " + std::to_string(qkv_.q_dim()) +
             " nor kv_dim " + std::to_string(qkv_.kv_dim()));
    }
    if (output_->in() != qkv_.q_dim() || output_->out() != qkv_.hidden()) {
        fail("'" + output_->name() + "' is [" + std::to_string(output_->out()) + ", " + std::to_string(output_->in()) +
             "], expected [" + std::to_string(qkv_.hidden()) + ", " + std::to_string(qkv_.q_dim()) + "]");
    }
    for (const NormWeights *n : {&q_norm_, &k_norm_}) {
        if (n->get() && static_cast<int64_t>(n->weight().size()) != head_dim) {
            fail("a per-head norm has " + std::to_string(n->weight().size()) + " weights, expected head_dim = " +
                 std::to_string(head_dim));
        }
    }
}

int64_t AttentionProjections::memory_bytes() const {
    return qkv_.memory_bytes() + (output_ ? output_->memory_bytes() : 0) + q_norm_.memory_bytes() + k_norm_.memory_bytes();
}

void AttentionProjections::release_host() {
    qkv_.release_host();
    if (output_) output_->release_host();
}

void AttentionProjections::forward_qkv(const ConstTensor &x, const Tensor &qkv, const ForwardOptions &opt) const {
    if (!output_) throw Error("attention projections: empty (default-constructed)");
    // The q/k norms in the projection's epilogue: rows [0, q_dim) are q's
    // heads, [q_dim, q_dim + kv_dim) k's (either range empty without its norm).
    const Norm *q = q_norm_.get(), *k = k_norm_.get();
    HeadNorms heads;
    heads.head_dim = head_dim_;
    heads.first = q ? 0 : q_dim();
    heads.split = q_dim();
    heads.end = k ? q_dim() + kv_dim() : q_dim();
    if (q) {
        heads.q_weight = q->weight;
        heads.q_eps = q->eps;
    }
    if (k) {
        heads.k_weight = k->weight;
        heads.k_eps = k->eps;
    }
    ForwardOptions o = opt;
    o.epilogue.heads = heads.first < heads.end ? &heads : nullptr;
    qkv_.forward(x, qkv, o);
}

void AttentionProjections::forward_output(const ConstTensor &attn, const Tensor &y, const ForwardOptions &opt) const {
    if (!output_) throw Error("attention projections: empty (default-constructed)");
    output_->forward(attn, y, opt);
}

// --- DecoderBlock ----------------------------------------------------------------

int64_t DecoderBlock::memory_bytes() const {
    return attn_norm.memory_bytes() + ffn_norm.memory_bytes() + post_attn_norm.memory_bytes() +
           post_ffn_norm.memory_bytes() + attention.memory_bytes() + ffn.memory_bytes();
}

void DecoderBlock::release_host() {
    attention.release_host();
    ffn.release_host();
}

}  // namespace qforge
