// GPTQ and AWQ layers into int4z (FORMATS.md, "GPTQ and AWQ safetensors").
#include "qforge/gptq.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <thread>

#include "json_file.h"
#include "qforge/error.h"
#include "qforge/quantize.h"

namespace qforge {

namespace {

[[noreturn]] void fail(const std::string &where, const std::string &what) { throw Error(where + ": " + what); }

std::string shape_of(const std::vector<int64_t> &s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

// AutoAWQ's order of the eight outputs in an int32 (AWQ_ORDER): nibble i
// holds output 8k + kAwqOrder[i].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

uint32_t i32_at(const TensorView &t, int64_t i) {
    uint32_t v;
    std::memcpy(&v, t.data + 4 * i, 4);
    return v;
}

const TensorView &need(const SafetensorsFile &f, const std::string &name, DType type, size_t dims) {
    const TensorView *t = f.find(name);
    if (!t) fail(f.path(), "tensor '" + name + "' is missing");
    if (t->type != type || t->shape.size() != dims) {
        fail(f.path(), "tensor '" + name + "' is " + to_string(t->type) + " " + shape_of(t->shape) + ", expected " +
                           to_string(type) + " with " + std::to_string(dims) + " dimension(s)");
    }
    return *t;
}

}  // namespace

namespace {

// A parsed config document (a config.json, a quantize_config.json, or the
// "quantization_config" metadata of a safetensors file); `path` names it in errors.
ZeroPointConfig parse_zero_point_config(const nlohmann::json &doc, const std::string &path) {
    const nlohmann::json *q = &doc;
    if (doc.is_object() && doc.contains("quantization_config")) q = &doc["quantization_config"];
    if (!q->is_object()) fail(path, "the quantization config is not a JSON object");
    auto field = [&](const char *key) -> const nlohmann::json & {
        if (!q->contains(key)) fail(path, std::string("quantization config has no \"") + key + "\"");
        return (*q)[key];
    };
    auto integer = [&](const char *key) {
        const nlohmann::json &v = field(key);
        if (!v.is_number_integer()) fail(path, std::string("quantization config \"") + key + "\" is not an integer");
        return v.get<int64_t>();
    };
    auto text = [&](const char *key, const char *otherwise) {
        if (!q->contains(key)) return std::string(otherwise);
        const nlohmann::json &v = (*q)[key];
        if (!v.is_string()) fail(path, std::string("quantization config \"") + key + "\" is not a string");
        std::string s = v.get<std::string>();
        std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
        return s;
    };
    ZeroPointConfig c;
    const std::string method = text("quant_method", "gptq");  // quantize_config.json of AutoGPTQ has none
    if (method == "gptq") {
        const std::string fmt = text("checkpoint_format", "gptq");
        if (fmt == "gptq") {
            c.layout = ZeroPointLayout::gptq;
        } else if (fmt == "gptq_v2") {
            c.layout = ZeroPointLayout::gptq_v2;
        } else {
            fail(path, "checkpoint_format \"" + fmt + "\" is not supported (gptq, gptq_v2 are)");
        }
    } else if (method == "awq") {
        const std::string version = text("version", "gemm");
        if (version != "gemm") fail(path, "AWQ version \"" + version + "\" is not supported (gemm is)");
        c.layout = ZeroPointLayout::awq;
    } else {
        fail(path, "quant_method \"" + method + "\" is not GPTQ or AWQ");
    }
    const int64_t bits = q->contains("bits") ? integer("bits") : integer("w_bit");  // AutoAWQ writes w_bit
    if (bits != 4) fail(path, "bits = " + std::to_string(bits) + ": only 4-bit checkpoints are supported");
    const int64_t g = q->contains("group_size") ? integer("group_size") : integer("q_group_size");
    if (g != -1 && (g < 2 || g > (1 << 30))) fail(path, "group_size = " + std::to_string(g) + " is not -1 or a size");
    c.bits = 4;
    c.group_size = static_cast<int>(g);
    return c;
}

}  // namespace

ZeroPointConfig read_zero_point_config(const std::string &path) {
    return parse_zero_point_config(internal::read_json_file(path, 16u << 20), path);
}

ZeroPointConfig zero_point_config_for(const SafetensorsFile &f) {
    namespace fs = std::filesystem;
    if (const auto own = f.metadata().find("quantization_config"); own != f.metadata().end()) {
        const std::string &text = own->second;  // as qforge quantize writes it
        const std::string where = f.path() + ": metadata \"quantization_config\"";
        internal::check_json_depth(text.data(), text.size(), where, 0);
        nlohmann::json doc;
        try {
            doc = nlohmann::json::parse(text);
        } catch (const nlohmann::json::exception &e) {
            throw Error(where + " is not JSON: " + e.what());
        }
        return parse_zero_point_config(doc, where);
    }
    const fs::path dir = fs::path(f.path()).parent_path();
    const fs::path config = dir / "config.json", quantize = dir / "quantize_config.json";
    if (fs::exists(config)) {
        const nlohmann::json doc = internal::read_json_file(config.string(), 64u << 20);
        if (doc.is_object() && doc.contains("quantization_config")) return parse_zero_point_config(doc, config.string());
    }
    if (fs::exists(quantize)) return read_zero_point_config(quantize.string());
    ZeroPointConfig c;
    for (const std::string &p : zero_point_prefixes(f)) {
        const TensorView &qw = *f.find(p + ".qweight");
        const TensorView *sc = f.find(p + ".scales");
        if (sc && sc->shape.size() == 2 && qw.shape.size() == 2 && qw.shape[1] * 8 == sc->shape[1]) {
            c.layout = ZeroPointLayout::awq;
        }
        break;
    }
    return c;
}

std::vector<std::string> zero_point_prefixes(const SafetensorsFile &f) {
    std::vector<std::string> r;
    const std::string suffix = ".qweight";
    for (const TensorView &t : f.tensors()) {
        if (t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            r.push_back(t.name.substr(0, t.name.size() - suffix.size()));
        }
    }
    return r;
}

ZeroPointInfo zero_point_info(const SafetensorsFile &f, const std::string &prefix) {
    const TensorView &qw = f.tensor(prefix + ".qweight"), &sc = f.tensor(prefix + ".scales");
    const TensorView *qz = f.find(prefix + ".qzeros"), *gi = f.find(prefix + ".g_idx");
    if (qw.shape.size() != 2 || sc.shape.size() != 2) {
        fail(f.path(), "layer '" + prefix + "': qweight " + shape_of(qw.shape) + " and scales " + shape_of(sc.shape) +
                           " must be matrices");
    }
    ZeroPointInfo i;
    i.out = sc.shape[1];
    i.groups = sc.shape[0];
    i.awq = qw.shape[1] * 8 == i.out && qw.shape[1] != i.out;
    i.in = i.awq ? qw.shape[0] : 8 * qw.shape[0];
    i.has_g_idx = gi != nullptr;
    i.bytes = qw.bytes + sc.bytes + (qz ? qz->bytes : 0) + (gi ? gi->bytes : 0);
    return i;
}

const char *to_string(ZeroPointLayout layout) {
    return layout == ZeroPointLayout::awq ? "awq" : layout == ZeroPointLayout::gptq_v2 ? "gptq_v2" : "gptq";
}

WeightRef Int4zLayer::ref() const {
    WeightRef w;
    w.format = Format::int4z;
    w.data = weight.data();
    w.out = out;
    w.in = in;
    w.scales = scales.data();
    w.zeros = zeros.data();
    w.group_size = group_size;
    w.input_order = input_order.empty() ? nullptr : input_order.data();
    return w;
}

Int4zLayer read_zero_point_layer(const SafetensorsFile &f, const std::string &prefix, const ZeroPointConfig &config) {
    const std::string where = f.path() + ": layer '" + prefix + "'";
    const TensorView &qw = need(f, prefix + ".qweight", DType::i32, 2);
    const TensorView &qz = need(f, prefix + ".qzeros", DType::i32, 2);
    const TensorView &sc = need(f, prefix + ".scales", DType::f16, 2);
    const int64_t groups = sc.shape[0], out = sc.shape[1];
    if (groups <= 0 || out <= 0 || out % 8 != 0) {
        fail(where, "scales are " + shape_of(sc.shape) + ": expected [groups, out] with out a multiple of 8");
    }
    // GPTQ: qweight [in/8, out], packed along the input. AWQ: [in, out/8].
    const bool awq = qw.shape[1] == out / 8 && qw.shape[1] != out;
    if (awq != (config.layout == ZeroPointLayout::awq)) {
        fail(where, "qweight is " + shape_of(qw.shape) + ", which is " + (awq ? "AWQ's" : "GPTQ's") +
                        " layout, but the config says " + (config.layout == ZeroPointLayout::awq ? "AWQ" : "GPTQ"));
    }
    const int64_t in = awq ? qw.shape[0] : qw.shape[0] * 8;
    const std::vector<int64_t> want_qw = awq ? std::vector<int64_t>{in, out / 8} : std::vector<int64_t>{in / 8, out};
    if (in <= 0 || qw.shape != want_qw) {
        fail(where, "qweight '" + qw.name + "' is " + shape_of(qw.shape) + ", expected " + shape_of(want_qw));
    }
    if (qz.shape != std::vector<int64_t>{groups, out / 8}) {
        fail(where, "qzeros '" + qz.name + "' is " + shape_of(qz.shape) + ", expected " + shape_of({groups, out / 8}));
    }
    // The group size: the config's (-1: one group per row), else from the shapes.
    const int64_t G = config.group_size == -1 ? in : config.group_size > 0 ? config.group_size : (in + groups - 1) / groups;
    if ((in + G - 1) / G != groups) {
        fail(where, "scales have " + std::to_string(groups) + " groups; in = " + std::to_string(in) +
                        " in groups of " + std::to_string(G) + " makes " + std::to_string((in + G - 1) / G));
    }
    // g_idx: the group of each input; act-order when it is not c / G.
    std::vector<int32_t> order;
    if (const TensorView *gi = f.find(prefix + ".g_idx")) {
        if (gi->type != DType::i32 || gi->shape != std::vector<int64_t>{in}) {
            fail(where, "g_idx '" + gi->name + "' is " + to_string(gi->type) + " " + shape_of(gi->shape) +
                            ", expected I32 " + shape_of({in}));
        }
        std::vector<int32_t> g(in);
        std::memcpy(g.data(), gi->data, in * 4);
        bool plain = true;
        for (int64_t c = 0; c < in; ++c) {
            if (g[c] < 0 || g[c] >= groups) {
                fail(where, "g_idx[" + std::to_string(c) + "] = " + std::to_string(g[c]) + " is not a group (0.." +
                                std::to_string(groups - 1) + ")");
            }
            plain &= g[c] == c / G;
        }
        if (!plain) {
            order.resize(in);
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return g[a] < g[b]; });
            for (int64_t i = 0; i < in; ++i) {
                if (g[order[i]] != i / G) {
                    fail(where, "g_idx puts a number of inputs other than " + std::to_string(G) + " in group " +
                                    std::to_string(g[order[i]]) + ": act-order needs whole groups");
                }
            }
        }
    }
    // Per channel: int4z's groups are 128 wide, the row's scale and zero repeated.
    const int64_t Gz = G == in ? 128 : G;
    if (Gz != 32 && Gz != 64 && Gz != 128) fail(where, "group size " + std::to_string(G) + " has no int4z kernels (32, 64, 128, per channel)");
    if (G == in && in % 128 != 0) fail(where, "a per-channel layer needs in (" + std::to_string(in) + ") a multiple of 128");
    if (in % 2 != 0) fail(where, "in = " + std::to_string(in) + " is odd");
    const int64_t gz = (in + Gz - 1) / Gz;

    Int4zLayer L;
    L.prefix = prefix;
    L.out = out;
    L.in = in;
    L.group_size = static_cast<int>(Gz);
    L.weight.assign(out * (in / 2), 0);
    L.scales.resize(out * gz);
    L.zeros.resize(out * gz);
    // AWQ nibble i holds output 8k + kAwqOrder[i]: the nibble of output o is
    // the i with kAwqOrder[i] == o % 8.
    int awq_slot[8];
    for (int i = 0; i < 8; ++i) awq_slot[kAwqOrder[i]] = i;
    // The nibble of input c (the file's order), output o.
    auto nibble = [&](int64_t c, int64_t o) -> uint8_t {
        const uint32_t v = awq ? i32_at(qw, c * (out / 8) + o / 8) >> (4 * awq_slot[o % 8])
                               : i32_at(qw, (c / 8) * out + o) >> (4 * (c % 8));
        return static_cast<uint8_t>(v & 15);
    };
    auto zero = [&](int64_t g, int64_t o) -> int {
        const int slot = awq ? awq_slot[o % 8] : static_cast<int>(o % 8);
        const int z = static_cast<int>((i32_at(qz, g * (out / 8) + o / 8) >> (4 * slot)) & 15);
        return config.layout == ZeroPointLayout::gptq ? z + 1 : z;
    };
    // Rows are independent: split over the cores (a 7B checkpoint holds billions of nibbles).
    auto convert = [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) {
            uint8_t *row = L.weight.data() + o * (in / 2);
            if (!awq && order.empty() && in % 8 == 0) {
                // GPTQ in input order: int32 (i, o) is row o's bytes 4i..4i+3 as they are (its
                // nibble j is input 8i + j, int4z's byte 4i + j/2, low nibble for even j).
                for (int64_t i = 0; i < in / 8; ++i) std::memcpy(row + 4 * i, qw.data + 4 * (i * out + o), 4);
            } else {
                for (int64_t i = 0; i < in; ++i) {
                    const int64_t c = order.empty() ? i : order[i];
                    row[i / 2] |= static_cast<uint8_t>(nibble(c, o) << (4 * (i % 2)));
                }
            }
            for (int64_t j = 0; j < gz; ++j) {
                const int64_t g = G == in ? 0 : j;
                const int z = zero(g, o);
                L.zeros[o * gz + j] = static_cast<uint8_t>(z);
                uint16_t s;
                std::memcpy(&s, sc.data + 2 * (g * out + o), 2);
                L.scales[o * gz + j] = s;
            }
        }
    };
    const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), out / 64));
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < threads; ++t) pool.emplace_back(convert, out * t / threads, out * (t + 1) / threads);
    convert(0, out / threads);
    for (std::thread &th : pool) th.join();
    // GPTQ v1 stores zero - 1 in four bits: a stored 15 would be a zero of 16.
    for (int64_t k = 0; k < out * gz; ++k) {
        if (L.zeros[k] > 15) {
            fail(where, "qzeros of group " + std::to_string(G == in ? 0 : k % gz) + ", output " + std::to_string(k / gz) +
                            " is 15, a zero point of 16: not a 4-bit GPTQ checkpoint (or it is gptq_v2)");
        }
    }
    L.input_order = std::move(order);
    if (const TensorView *b = f.find(prefix + ".bias")) {
        if (b->shape != std::vector<int64_t>{out} ||
            (b->type != DType::f32 && b->type != DType::f16 && b->type != DType::bf16)) {
            fail(where, "bias '" + b->name + "' is " + to_string(b->type) + " " + shape_of(b->shape) +
                            ", expected F32, F16 or BF16 " + shape_of({out}));
        }
        L.bias = to_f32(b->type, b->data, out);
    }
    return L;
}

void write_gptq_layer(SafetensorsWriter &w, const std::string &prefix, const Int4gQuantized &q) {
    const int64_t out = q.out, in = q.in, G = q.group_size, groups = (in + G - 1) / G;
    if (out % 8 != 0 || in % 8 != 0 || q.zeros.size() != static_cast<size_t>(out * groups)) {
        fail(prefix, "a GPTQ layer needs int4z planes with out (" + std::to_string(out) + ") and in (" +
                         std::to_string(in) + ") multiples of 8");
    }
    std::vector<uint32_t> qweight((in / 8) * out), qzeros(groups * (out / 8), 0);
    for (int64_t o = 0; o < out; ++o) {  // int4z row o's bytes 4i..4i+3 are GPTQ's int32 (i, o)
        for (int64_t i = 0; i < in / 8; ++i) std::memcpy(&qweight[i * out + o], q.weight.data() + o * (in / 2) + 4 * i, 4);
    }
    std::vector<uint16_t> scales(groups * out);
    for (int64_t o = 0; o < out; ++o) {
        for (int64_t g = 0; g < groups; ++g) {
            const int z = q.zeros[o * groups + g];
            if (z < 1 || z > 15) {
                fail(prefix, "zero point " + std::to_string(z) + " of row " + std::to_string(o) + ", group " +
                                 std::to_string(g) + " is outside 1..15, what GPTQ's layout stores");
            }
            qzeros[g * (out / 8) + o / 8] |= static_cast<uint32_t>(z - 1) << (4 * (o % 8));
            scales[g * out + o] = q.scales[o * groups + g];
        }
    }
    std::vector<int32_t> g_idx(in);
    for (int64_t c = 0; c < in; ++c) g_idx[c] = static_cast<int32_t>(c / G);
    w.add_tensor(prefix + ".qweight", DType::i32, {in / 8, out}, qweight.data(), qweight.size() * 4);
    w.add_tensor(prefix + ".qzeros", DType::i32, {groups, out / 8}, qzeros.data(), qzeros.size() * 4);
    w.add_tensor(prefix + ".scales", DType::f16, {groups, out}, scales.data(), scales.size() * 2);
    w.add_tensor(prefix + ".g_idx", DType::i32, {in}, g_idx.data(), g_idx.size() * 4);
}

std::string gptq_config_json(int group_size) {
    return "{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": " + std::to_string(group_size) +
           ", \"desc_act\": false, \"sym\": false, \"checkpoint_format\": \"gptq\"}";
}

}  // namespace qforge
