#include "qforge/qkv.h"

#include "tensor_views.h"

#include <algorithm>

namespace qforge {

namespace {

[[noreturn]] void qkv_error(const std::string &what) { throw Error("QKV projection: " + what); }

}  // namespace

QKVProjection QKVProjection::fused(std::unique_ptr<Linear> qkv, int64_t q_dim, int64_t kv_dim) {
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

QKVProjection QKVProjection::separate(std::unique_ptr<Linear> q, std::unique_ptr<Linear> k,
                                      std::unique_ptr<Linear> v, bool concatenate) {
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
                      k->strategy() == v->strategy() && q->input_order() == k->input_order() &&
                      k->input_order() == v->input_order();
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

void QKVProjection::release_host() {
    for (const auto &l : parts_) l->release_host();
}

void QKVProjection::forward(const ConstTensor &x, const Tensor &qkv, const ForwardOptions &opt) const {
    const int64_t total = q_dim_ + 2 * kv_dim_;
    if (x.shape.size() < 2 || x.shape.size() > 3 || x.shape.back() != hidden_) {
        qkv_error("x is " + shape_string(x.shape) + ", expected [tokens, " + std::to_string(hidden_) + "]");
    }
    std::vector<int64_t> want = x.shape;
    want.back() = total;
    if (qkv.shape != want) qkv_error("qkv is " + shape_string(qkv.shape) + ", expected " + shape_string(want));
    if (opt.epilogue.activate || opt.epilogue.residual.data) {
        qkv_error("takes no activation or residual (ForwardOptions::epilogue): its outputs go to attention, not to a "
                  "residual");
    }
    if (parts_.size() == 1) {
        parts_[0]->forward(x, qkv, opt);
        return;
    }
    int64_t tokens = 1;
    for (size_t i = 0; i + 1 < x.shape.size(); ++i) tokens *= x.shape[i];
    int64_t col = 0;
    for (const auto &l : parts_) {
        // Each layer writes its column range of the shared output (row stride
        // = total), with the head norms of the rows it computes.
        ForwardOptions part = opt;
        HeadNorms heads;
        if (const HeadNorms *h = opt.epilogue.heads) {
            heads = *h;
            const auto clip = [&](int64_t row) { return std::clamp<int64_t>(row - col, 0, l->out()); };
            heads.first = clip(h->first);
            heads.split = clip(h->split);
            heads.end = clip(h->end);
            part.epilogue.heads = heads.first < heads.end ? &heads : nullptr;
        }
        l->forward(ConstMatrix{x.data, tokens, hidden_, 0, x.norm}, Matrix{qkv.data + col, tokens, l->out(), total}, part);
        col += l->out();
    }
}

}  // namespace qforge
