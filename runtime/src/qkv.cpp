#include "qforge/qkv.h"

#include <cstring>

#include "tensor_views.h"

namespace qforge {

namespace {

[[noreturn]] void qkv_error(const std::string &what) { throw Error("QKV projection: " + what); }

}  // namespace

std::unique_ptr<LinearLayer> concatenate_rows(const std::string &name, const std::vector<const LinearLayer *> &layers) {
    if (layers.empty()) qkv_error("nothing to concatenate");
    const LinearLayer &a = *layers[0];
    int64_t out = 0;
    bool any_bias = false;
    for (const LinearLayer *l : layers) {
        if (l->format_ != a.format_ || l->in_ != a.in_ || l->w_.group_size != a.w_.group_size ||
            l->opt_.strategy != a.opt_.strategy || l->opt_.memory != a.opt_.memory) {
            qkv_error("'" + l->name_ + "' (" + to_string(l->format_) + ", in " + std::to_string(l->in_) +
                      ") cannot share rows with '" + a.name_ + "' (" + to_string(a.format_) + ", in " +
                      std::to_string(a.in_) + ")");
        }
        out += l->out_;
        any_bias |= l->has_bias();
    }
    // Row bytes of the weight (and, for int4g, of the scales): rows are contiguous in every format.
    auto row_bytes = [&](const LinearLayer &l) {
        return l.format_ == DType::u8 ? l.in_ / 2 : storage_bytes(l.format_, l.in_);
    };
    const int64_t groups = a.format_ == DType::u8 ? (a.in_ + a.w_.group_size - 1) / a.w_.group_size : 0;
    auto storage = std::make_shared<std::vector<uint8_t>>(out * row_bytes(a) + out * groups * 2);
    std::vector<float> bias(any_bias ? out : 0, 0.0f);
    int64_t row = 0;
    for (const LinearLayer *l : layers) {
        std::memcpy(storage->data() + row * row_bytes(a), l->w_.data, l->out_ * row_bytes(a));
        if (groups) {
            std::memcpy(storage->data() + out * row_bytes(a) + row * groups * 2, l->w_.scales, l->out_ * groups * 2);
        }
        if (l->has_bias()) std::memcpy(bias.data() + row, l->bias_.data(), l->out_ * 4);
        row += l->out_;
    }
    WeightRef w = a.w_;
    w.data = storage->data();
    w.out = out;
    w.scales = groups ? reinterpret_cast<const uint16_t *>(storage->data() + out * row_bytes(a)) : nullptr;
    w.owner = storage;
    return make_linear(name, w, any_bias ? bias.data() : nullptr, a.opt_);
}

QKVProjection QKVProjection::fused(std::unique_ptr<LinearLayer> qkv, int64_t q_dim, int64_t kv_dim) {
    if (!qkv) qkv_error("no layer");
    if (q_dim <= 0 || kv_dim <= 0 || q_dim + 2 * kv_dim != qkv->out()) {
        qkv_error("layer '" + qkv->name() + "' has " + std::to_string(qkv->out()) + " rows, but q_dim " +
                  std::to_string(q_dim) + " + 2 * kv_dim " + std::to_string(kv_dim) + " = " +
                  std::to_string(q_dim + 2 * kv_dim));
    }
    QKVProjection p;
    p.hidden_ = qkv->in();
    p.q_dim_ = q_dim;
    p.kv_dim_ = kv_dim;
    p.parts_.push_back(std::move(qkv));
    return p;
}

QKVProjection QKVProjection::separate(std::unique_ptr<LinearLayer> q, std::unique_ptr<LinearLayer> k,
                                      std::unique_ptr<LinearLayer> v, bool concatenate) {
    if (!q || !k || !v) qkv_error("Q, K and V layers are all needed");
    if (k->in() != q->in() || v->in() != q->in()) {
        qkv_error("inputs differ: '" + q->name() + "' in " + std::to_string(q->in()) + ", '" + k->name() + "' in " +
                  std::to_string(k->in()) + ", '" + v->name() + "' in " + std::to_string(v->in()));
    }
    if (k->out() != v->out()) {
        qkv_error("'" + k->name() + "' has " + std::to_string(k->out()) + " rows and '" + v->name() + "' " +
                  std::to_string(v->out()) + ": K and V must both be n_kv_heads * head_dim");
    }
    QKVProjection p;
    p.hidden_ = q->in();
    p.q_dim_ = q->out();
    p.kv_dim_ = k->out();
    const bool same = q->format() == k->format() && k->format() == v->format() && q->strategy() == k->strategy() &&
                      k->strategy() == v->strategy();
    if (concatenate && same) {
        p.parts_.push_back(concatenate_rows(q->name() + "+k+v", {q.get(), k.get(), v.get()}));
    } else {
        p.parts_ = {std::move(q), std::move(k), std::move(v)};
    }
    return p;
}

int64_t QKVProjection::memory_bytes() const {
    int64_t b = 0;
    for (const auto &l : parts_) b += l->memory_bytes();
    return b;
}

void QKVProjection::forward(const ConstTensor &x, const Tensor &qkv, const ForwardOptions &opt) const {
    const int64_t total = q_dim_ + 2 * kv_dim_;
    if (x.shape.size() < 2 || x.shape.size() > 3 || x.shape.back() != hidden_) {
        qkv_error("x is " + shape_string(x.shape) + ", expected [tokens, " + std::to_string(hidden_) + "]");
    }
    std::vector<int64_t> want = x.shape;
    want.back() = total;
    if (qkv.shape != want) qkv_error("qkv is " + shape_string(qkv.shape) + ", expected " + shape_string(want));
    if (parts_.size() == 1) {
        parts_[0]->forward(x, qkv, opt);
        return;
    }
    int64_t tokens = 1;
    for (size_t i = 0; i + 1 < x.shape.size(); ++i) tokens *= x.shape[i];
    int64_t col = 0;
    for (const auto &l : parts_) {
        // Each layer writes its column range of the shared output (row stride = total).
        l->forward(ConstMatrix{x.data, tokens, hidden_, 0, x.norm}, Matrix{qkv.data + col, tokens, l->out(), total}, opt);
        col += l->out();
    }
}

}  // namespace qforge
