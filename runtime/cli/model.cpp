#include "model.h"

#include <cstdio>
#include <cstring>

#include "mapped_file.h"
#include "qforge/quantize.h"

namespace qforge::cli {

namespace {

bool ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool has_layer_kind(DType t) {
    switch (t) {
    case DType::f32: case DType::f16: case DType::bf16: case DType::q4_k: case DType::q6_k: case DType::q8_0: case DType::q4_0:
        return true;
    default: return false;
    }
}

// Linear weights: 2-D ".weight" matrices, not embedding tables (those are looked up, not multiplied).
bool is_linear(const TensorView &t) {
    return t.shape.size() == 2 && ends_with(t.name, ".weight") && t.name.find("embd") == std::string::npos &&
           t.name.find("embed") == std::string::npos;
}

}  // namespace

ModelFile ModelFile::open(const std::string &path) {
    ModelFile m;
    m.path_ = path;
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error(path + ": cannot open");
    char magic[4] = {};
    const size_t got = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (got == 4 && std::memcmp(magic, "GGUF", 4) == 0) {
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
            if (is_linear(t) && has_layer_kind(t.type)) {
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
        if (is_linear(t) && (t.type == DType::f32 || t.type == DType::f16 || t.type == DType::bf16)) {
            r.push_back({t.name, to_string(t.type), t.shape[0], t.shape[1], static_cast<int64_t>(t.bytes)});
        }
    }
    return r;
}

std::unique_ptr<LinearLayer> ModelFile::layer(const std::string &name, const LayerOptions &opt) const {
    return gguf ? load_linear(*gguf, name, opt) : load_linear(*st, name, opt);
}

std::vector<float> ModelFile::to_f32(const std::string &name, std::vector<int64_t> *shape) const {
    if (st && st->find(name + ".weight_4bit")) {
        auto l = layer(name);
        std::vector<float> w(l->out() * l->in());
        const Int4gTensors g = st->int4g(name);
        int4g_dequant({g.weight->data, reinterpret_cast<const uint16_t *>(g.scales->data), g.out, g.in, g.group_size},
                      {w.data(), g.out, g.in});
        *shape = {g.out, g.in};
        return w;
    }
    const TensorView &t = gguf ? gguf->tensor(name) : st->tensor(name);
    *shape = t.shape;
    if (t.type == DType::f32 || t.type == DType::f16 || t.type == DType::bf16) return qforge::to_f32(t.type, t.data, t.elements());
    if (t.type == DType::q4_k || t.type == DType::q6_k || t.type == DType::q8_0 || t.type == DType::q4_0) {
        const int64_t in = t.shape.back(), out = t.elements() / in;
        std::vector<float> w(t.elements());
        block_dequant({t.type, t.data, out, in}, {w.data(), out, in});
        return w;
    }
    throw Error(path_ + ": tensor '" + name + "' is " + to_string(t.type) + ", which qforge cannot dequantize "
                "(F32, F16, BF16, Q4_K, Q6_K, Q8_0, Q4_0 and int4g it can)");
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
