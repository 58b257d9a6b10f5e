#include "model.h"

#include <cstdio>
#include <cstring>

#include "mapped_file.h"
#include "qforge/pack.h"
#include "qforge/quantize.h"

namespace qforge::cli {

namespace {

bool ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Linear weights: 2-D ".weight" matrices, not embedding tables (those are looked up, not multiplied).
bool is_linear(const TensorView &t) {
    return t.shape.size() == 2 && t.shape[0] > 0 && t.shape[1] > 0 && ends_with(t.name, ".weight") &&
           t.name.find("embd") == std::string::npos && t.name.find("embed") == std::string::npos;
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
                std::string f = to_string(p->format);
                if (p->group_size && traits(p->format).separate_scales) f += ":" + std::to_string(p->group_size);
                r.push_back({t.name, f + " packed x" + std::to_string(p->rows), p->out, p->in, static_cast<int64_t>(t.bytes)});
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
    for (const auto &t : st->tensors()) {
        if (is_linear(t) && has_format(t.type) && traits(format_of(t.type)).block_elements == 1) {
            r.push_back({t.name, to_string(t.type), t.shape[0], t.shape[1], static_cast<int64_t>(t.bytes)});
        }
    }
    return r;
}

std::unique_ptr<Linear> ModelFile::layer(const std::string &name, const LayerOptions &opt) const {
    return gguf ? load_linear(*gguf, name, opt) : load_linear(*st, name, opt);
}

std::vector<float> ModelFile::to_f32(const std::string &name, std::vector<int64_t> *shape) const {
    Weights w;
    std::vector<uint8_t> unpacked;
    const auto packed = gguf ? packed_tensor(*gguf, name) : std::nullopt;
    if (packed) {
        const PackedTensor &p = *packed;
        Weights pw{p.format, gguf->tensor(name).data, p.out, p.in};
        pw.group_size = p.group_size;
        pw.pack_rows = p.rows;
        unpacked.resize(weight_bytes(p.format, p.out, p.in, p.group_size));
        unpack_weights(pw, unpacked.data());
        w = {p.format, unpacked.data(), p.out, p.in};
        if (traits(p.format).separate_scales) {
            w.scales = reinterpret_cast<const uint16_t *>(unpacked.data() + p.out * (p.in / 2));
            w.group_size = p.group_size;
        }
        *shape = {p.out, p.in};
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
    return out;
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
