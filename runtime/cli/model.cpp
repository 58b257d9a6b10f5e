#include "model.h"

#include <cstdio>
#include <cstring>
#include <optional>

#include "mapped_file.h"
#include "qforge/gptq.h"
#include "qforge/pack.h"
#include "qforge/quantize.h"

namespace qforge::cli {

namespace {

// "q4_k packed x16", "int4g:128 packed x16".
std::string packed_name(const PackedTensor &p) {
    std::string f = to_string(p.format);
    if (p.group_size && traits(p.format).separate_scales) f += ":" + std::to_string(p.group_size);
    return f + " packed x" + std::to_string(p.rows);
}

// Linear weights: 2-D ".weight" matrices, not embedding tables (those are looked up, not multiplied).
bool is_linear(const TensorView &t) {
    return t.shape.size() == 2 && t.shape[0] > 0 && t.shape[1] > 0 && ends_with(t.name, ".weight") &&
           t.name.find("embd") == std::string::npos && t.name.find("embed") == std::string::npos;
}

// An int8 / fp8 checkpoint's weight (compressed-tensors: I8 or F8_E4M3 with
// NAME_scale beside it): what inspect calls it, or "" if t is not one.
std::string channel_kind(const SafetensorsFile &st, const TensorView &t) {
    if (t.shape.size() != 2 || (t.type != DType::i8 && t.type != DType::f8_e4m3)) return "";
    const TensorView *s = st.find(t.name + "_scale");
    if (!s) return "";
    const std::string scale = s->elements() == 1 ? "per-tensor" : "per-channel";
    return t.type == DType::i8 ? "int8 " + scale : "fp8 e4m3 " + scale;
}

}  // namespace

ModelFile ModelFile::open(const std::string &path) {
    ModelFile m;
    m.path_ = path;
    // Through the reader's own open, which refuses anything but a regular
    // file without waiting on it (a FIFO would block a plain fopen).
    const auto file = MappedFile::open(path);
    if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) {
        m.gguf = GGUFFile::open(path);
    } else {
        m.st = SafetensorsFile::open(path);
    }
    return m;
}

std::vector<LinearInfo> ModelFile::linears() const {
    std::vector<LinearInfo> r;
    if (gguf) {
        for (const auto &t : gguf->tensors()) {
            if (const auto p = packed_tensor(*gguf, t.name)) {  // written by `qforge pack`
                // (a packed stack of experts is no one matrix: bench_linears lists it)
                if (!p->experts) r.push_back({t.name, packed_name(*p), p->out, p->in, static_cast<int64_t>(t.bytes)});
                continue;
            }
            if (is_linear(t) && has_format(t.type)) {
                r.push_back({t.name, to_string(t.type), t.shape[0], t.shape[1], static_cast<int64_t>(t.bytes)});
            }
        }
        return r;
    }
    for (const auto &p : st->int4g_prefixes()) {
        const Int4gTensors g = st->int4g(p);
        r.push_back({p, "int4g:" + std::to_string(g.group_size), g.out, g.in,
                     static_cast<int64_t>(g.weight->bytes + g.scales->bytes)});
    }
    const std::vector<std::string> zp = zero_point_prefixes(*st);
    if (!zp.empty()) {
        const ZeroPointConfig c = zero_point_config_for(*st);
        for (const auto &p : zp) {
            const ZeroPointInfo i = zero_point_info(*st, p);
            const int64_t G = c.group_size == -1 ? i.in : (i.in + i.groups - 1) / std::max<int64_t>(i.groups, 1);
            r.push_back({p, std::string(to_string(c.layout)) + " int4z:" + (c.group_size == -1 ? "channel" : std::to_string(G)),
                         i.out, i.in, static_cast<int64_t>(i.bytes)});
        }
    }
    for (const auto &t : st->tensors()) {
        if (is_linear(t) && has_format(t.type) && traits(format_of(t.type)).block_elements == 1) {
            r.push_back({t.name, to_string(t.type), t.shape[0], t.shape[1], static_cast<int64_t>(t.bytes)});
        } else if (const std::string kind = channel_kind(*st, t); !kind.empty() && is_linear(t)) {
            r.push_back({t.name, kind, t.shape[0], t.shape[1], static_cast<int64_t>(t.bytes)});
        }
    }
    return r;
}

namespace {

// A weight matrix or stack that no lookup reads: its name says projection,
// not embedding, norm or position table.
bool named_like_linear(const std::string &name) {
    return ends_with(name, ".weight") && name.find("embd") == std::string::npos &&
           name.find("embed") == std::string::npos && name.find("norm") == std::string::npos;
}

std::string why_not(DType type) {
    return "tensor type " + to_string(type) + " has no kernels";
}

}  // namespace

std::vector<BenchLinear> ModelFile::bench_linears() const {
    std::vector<BenchLinear> r;
    for (const LinearInfo &l : linears()) r.push_back({l, l.name, 0, ""});
    const std::vector<TensorView> &all = gguf ? gguf->tensors() : st->tensors();
    for (const auto &t : all) {
        if (!named_like_linear(t.name)) continue;
        if (const auto p = gguf ? packed_tensor(*gguf, t.name) : std::nullopt) {
            if (p->experts) {  // a packed stack (its matrices are listed by linears())
                r.push_back({{t.name, packed_name(*p), p->out, p->in, p->matrix_bytes()}, t.name, p->experts, ""});
            }
            continue;
        }
        const bool runs = has_format(t.type) && (gguf || traits(format_of(t.type)).block_elements == 1);
        if (t.shape.size() == 3 && t.name.find("_exps.") != std::string::npos) {
            const int64_t experts = t.shape[0], out = t.shape[1], in = t.shape[2];
            BenchLinear b{{t.name, to_string(t.type), out, in, experts ? static_cast<int64_t>(t.bytes) / experts : 0},
                          t.name, experts, runs ? "" : why_not(t.type)};
            if (runs && in % traits(format_of(t.type)).block_elements != 0) {
                b.skip = "rows of " + std::to_string(in) + " are not whole " + to_string(t.type) + " blocks";
            }
            r.push_back(b);
        } else if (t.shape.size() == 2 && !runs && !(st && t.type == DType::u8) && !(st && !channel_kind(*st, t).empty())) {
            r.push_back({{t.name, to_string(t.type), t.shape[0], t.shape[1], static_cast<int64_t>(t.bytes)}, t.name, 0,
                         why_not(t.type)});
        } else if (t.shape.size() > 3 || (t.shape.size() == 3 && t.name.find("_exps.") == std::string::npos)) {
            r.push_back({{t.name, to_string(t.type), 0, 0, static_cast<int64_t>(t.bytes)}, t.name, 0,
                         std::to_string(t.shape.size()) + "-D tensor that is no stack of experts"});
        }
    }
    // A tied head: llama.cpp multiplies by the embedding table when the file has no output.weight.
    if (gguf && !gguf->find("output.weight")) {
        if (const TensorView *e = gguf->find("token_embd.weight"); e && e->shape.size() == 2) {
            BenchLinear b{{"output.weight (tied: token_embd.weight)", to_string(e->type), e->shape[0], e->shape[1],
                           static_cast<int64_t>(e->bytes)},
                          e->name, 0, has_format(e->type) ? "" : why_not(e->type)};
            r.push_back(b);
        }
    }
    return r;
}

std::unique_ptr<Linear> ModelFile::layer(const BenchLinear &l, int64_t expert) const {
    if (l.experts == 0 && l.tensor == l.info.name) return layer(l.tensor);
    const TensorView &t = gguf ? gguf->tensor(l.tensor) : st->tensor(l.tensor);
    WeightRef w;
    if (const auto p = gguf ? packed_tensor(*gguf, l.tensor) : std::nullopt) {  // a packed stack: one expert's tiles
        w = {p->format, t.data + expert * p->matrix_bytes(), p->out, p->in};
        w.pack_rows = p->rows;
    } else {
        const Format f = format_of(t.type);
        w = {f, t.data + expert * weight_bytes(f, l.info.out, l.info.in), l.info.out, l.info.in};
    }
    return make_linear(l.experts ? l.tensor + "[" + std::to_string(expert) + "]" : l.tensor, w);
}

int64_t ModelFile::experts_used() const {
    if (!gguf) return 0;
    const auto &md = gguf->metadata();
    const auto arch = md.find("general.architecture");
    if (arch == md.end() || arch->second.type != GGUFValue::Type::string) return 0;
    const auto used = md.find(arch->second.s + ".expert_used_count");
    return used == md.end() || used->second.type == GGUFValue::Type::string ? 0 : used->second.i;
}

std::unique_ptr<Linear> ModelFile::layer(const std::string &name, const LayerOptions &opt) const {
    return gguf ? load_linear(*gguf, name, opt) : load_linear(*st, name, opt);
}

std::vector<float> ModelFile::to_f32(const std::string &name, std::vector<int64_t> *shape) const {
    Weights w;
    std::vector<uint8_t> unpacked;
    std::optional<Int4zLayer> zp;
    std::vector<int32_t> order;  // act-order: the input of each column; empty: in order
    WeightRef channel;
    const auto packed = gguf ? packed_tensor(*gguf, name) : std::nullopt;
    if (packed) {
        // Each matrix (each expert of a stack) back to the file's layout.
        const PackedTensor &p = *packed;
        const int64_t n = std::max<int64_t>(p.experts, 1), file_bytes = weight_bytes(p.format, p.out, p.in, p.group_size);
        unpacked.resize(n * file_bytes);
        for (int64_t e = 0; e < n; ++e) {
            Weights pw{p.format, gguf->tensor(name).data + e * p.matrix_bytes(), p.out, p.in};
            pw.group_size = p.group_size;
            pw.pack_rows = p.rows;
            unpack_weights(pw, unpacked.data() + e * file_bytes);
        }
        w = {p.format, unpacked.data(), n * p.out, p.in};
        if (traits(p.format).separate_scales) {
            w.scales = reinterpret_cast<const uint16_t *>(unpacked.data() + p.out * (p.in / 2));
            w.group_size = p.group_size;
        }
        if (traits(p.format).zero_points) {  // after the scale plane (pack.h, unpack_weights)
            w.zeros = unpacked.data() + p.out * (p.in / 2) + p.out * ((p.in + p.group_size - 1) / p.group_size) * 2;
        }
        *shape = p.experts ? std::vector<int64_t>{p.experts, p.out, p.in} : std::vector<int64_t>{p.out, p.in};
        if (const TensorView *o = gguf->find(name + ".input_order")) {  // FORMATS.md, "Packed GGUF files"
            if (o->type != DType::i32 || o->shape != std::vector<int64_t>{p.in}) {
                throw Error(path_ + ": '" + o->name + "' is " + to_string(o->type) + ", expected I32 [" +
                            std::to_string(p.in) + "]");
            }
            order.resize(p.in);
            std::memcpy(order.data(), o->data, p.in * 4);
        }
    } else if (st && st->find(name + ".qweight")) {  // GPTQ, AWQ: int4z (its columns in group order)
        zp = read_zero_point_layer(*st, name, zero_point_config_for(*st));
        w = {Format::int4z, zp->weight.data(), zp->out, zp->in, 0, zp->scales.data(), zp->group_size};
        w.zeros = zp->zeros.data();
        order = zp->input_order;
        *shape = {zp->out, zp->in};
    } else if (const TensorView *c = st ? st->find(name) : nullptr; c && !channel_kind(*st, *c).empty()) {
        channel = load_channel_weight(*st, name);  // int8 / fp8: the checkpoint's codes and scales as qforge's rows
        w = {channel.format, channel.data, channel.out, channel.in};
        *shape = {channel.out, channel.in};
    } else if (st && st->find(name + ".weight_4bit")) {
        const Int4gTensors g = st->int4g(name);
        w = {Format::int4g, g.weight->data, g.out, g.in, 0, reinterpret_cast<const uint16_t *>(g.scales->data), g.group_size};
        *shape = {g.out, g.in};
    } else {
        const TensorView &t = gguf ? gguf->tensor(name) : st->tensor(name);
        *shape = t.shape;
        if (!has_format(t.type)) {
            throw Error(path_ + ": tensor '" + name + "' is " + to_string(t.type) + ", which qforge cannot dequantize");
        }
        const Format f = format_of(t.type);
        // Dense values convert directly; f32 and f16 have no dequantizer kernel.
        if (traits(f).block_elements == 1) return qforge::to_f32(t.type, t.data, t.elements());
        const int64_t in = t.shape.back();
        w = {f, t.data, t.elements() / in, in};
    }
    std::vector<float> out(w.out * w.in);
    dequant(w, Matrix{out.data(), w.out, w.in});
    if (order.empty()) return out;
    // Act-order: each column back at its input (a permutation, or an error naming the tensor).
    std::vector<float> back(out.size());
    std::vector<bool> seen(w.in, false);
    for (int64_t i = 0; i < w.in; ++i) {
        if (order[i] < 0 || order[i] >= w.in || seen[order[i]]) {
            throw Error(path_ + ": the input order of '" + name + "' is no permutation of its " + std::to_string(w.in) +
                        " inputs");
        }
        seen[order[i]] = true;
        for (int64_t r = 0; r < w.out; ++r) back[r * w.in + order[i]] = out[r * w.in + i];
    }
    return back;
}

std::vector<float> read_f32_file(const std::string &path, int64_t expected, const std::string &what) {
    auto f = MappedFile::open(path);
    if (f->size() != static_cast<uint64_t>(expected) * 4) {
        throw Error(path + ": " + what + " needs " + std::to_string(expected) + " f32 values (" + std::to_string(expected * 4) +
                    " bytes), the file has " + std::to_string(f->size()) + " bytes");
    }
    std::vector<float> v(expected);
    if (expected) std::memcpy(v.data(), f->data(), expected * 4);
    return v;
}

void write_f32_file(const std::string &path, const std::vector<float> &v) {
    std::vector<uint8_t> bytes(v.size() * 4);
    if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
    write_file_atomically(path, {&bytes});
}

}  // namespace qforge::cli
