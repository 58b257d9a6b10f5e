// qforge pack: a model file -> a GGUF whose linear weights are packed for
// one CPU family's kernels (FORMATS.md, "Packed GGUF files"), so that layers
// map them as they are instead of packing at every load.
#include "commands.h"

#include <chrono>
#include <optional>

#include "model.h"
#include "qforge/gptq.h"
#include "qforge/pack.h"
#include "table.h"

namespace qforge::cli {

int pack(const PackArgs &a, const Common &c) {
    ModelFile m = ModelFile::open(a.input);
    const std::string family = target_family(a.target.empty() || a.target == "auto" ? dispatched_target() : a.target);
    GGUFWriter gw;
    std::vector<const TensorView *> copy;  // copied as they are
    if (m.is_gguf()) {
        for (const auto &[k, v] : m.gguf->metadata()) {
            if (k != "general.alignment") gw.set(k, v);
        }
        for (const auto &t : m.gguf->tensors()) copy.push_back(&t);
    } else {
        for (const auto &t : m.st->tensors()) copy.push_back(&t);
    }
    Table table({"tensor", "format", "shape", "rows", "file_bytes", "packed_bytes", "ms"});
    // The matrices, then (GGUF) the stacks of MoE experts: each expert packed on its own.
    std::vector<BenchLinear> linears;
    for (const LinearInfo &l : m.linears()) linears.push_back({l, l.name, 0, ""});
    for (const BenchLinear &b : m.bench_linears()) {
        if (b.experts && b.skip.empty() && m.is_gguf() && !packed_tensor(*m.gguf, b.tensor)) linears.push_back(b);
    }
    Progress progress("packing", linears.size());
    double pack_s = 0;
    int64_t packed_in = 0, packed_out = 0;
    auto drop = [&](const std::string &name) {
        copy.erase(std::remove_if(copy.begin(), copy.end(), [&](const TensorView *t) { return t->name == name; }), copy.end());
    };
    for (const BenchLinear &b : linears) {
        const LinearInfo &l = b.info;
        progress.step(l.name);
        if (m.is_gguf() && packed_tensor(*m.gguf, l.name)) continue;  // packed already: copied as it is
        Weights w;
        std::optional<Int4zLayer> zp;  // a GPTQ or AWQ layer, read into int4z
        WeightRef channel;             // an int8 or fp8 layer (compressed-tensors)
        if (m.is_gguf()) {
            const TensorView &t = m.gguf->tensor(l.name);
            w = {format_of(t.type), t.data, l.out, l.in};
        } else if (m.st->find(l.name + ".weight_4bit")) {
            const Int4gTensors g = m.st->int4g(l.name);
            w = {Format::int4g, g.weight->data, g.out, g.in, 0, reinterpret_cast<const uint16_t *>(g.scales->data), g.group_size};
        } else if (m.st->find(l.name + ".qweight")) {
            zp = read_zero_point_layer(*m.st, l.name, zero_point_config_for(*m.st));
            w = {Format::int4z, zp->weight.data(), zp->out, zp->in, 0, zp->scales.data(), zp->group_size};
            w.zeros = zp->zeros.data();
        } else if (const TensorView *ct = m.st->find(l.name);
                   ct && (ct->type == DType::i8 || ct->type == DType::f8_e4m3) && m.st->find(l.name + "_scale")) {
            channel = load_channel_weight(*m.st, l.name);  // int8 / fp8: qforge's rows
            w = {channel.format, channel.data, channel.out, channel.in};
        } else {
            continue;  // dense safetensors weights: copied
        }
        const FormatTraits &t = traits(w.format);
        const int R = pack_rows_for(family, w.format, w.group_size);
        const bool fits = R && w.in % t.packed_block_elements == 0 && (!t.separate_scales || w.group_size % 32 == 0);
        if (!fits || (b.experts && t.separate_scales)) {
            if (!t.in_files) {
                throw Error(a.input + ": '" + l.name + "' (" + l.format + " [" + std::to_string(l.out) + ", " +
                            std::to_string(l.in) + "]) has no packed layout for " + family +
                            ", and a GGUF file cannot hold it unpacked");
            }
            continue;  // no packed layout here: copied in the file's layout
        }
        const auto t0 = std::chrono::steady_clock::now();
        const PackedTensor p{w.format, w.out, w.in, w.group_size, R, family, b.experts};
        add_packed_tensor(gw, l.name, w, p);
        if (zp && !zp->input_order.empty()) {  // act-order: the columns' inputs beside the tiles (FORMATS.md)
            gw.add_tensor(l.name + ".input_order", DType::i32, {l.in}, zp->input_order.data(), zp->input_order.size() * 4);
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        pack_s += s;
        const int64_t n = std::max<int64_t>(b.experts, 1), in_bytes = n * l.bytes, out_bytes = n * p.matrix_bytes();
        packed_in += in_bytes;
        packed_out += out_bytes;
        const std::string shape = (b.experts ? std::to_string(b.experts) + "x" : "") + std::to_string(l.out) + "x" + std::to_string(l.in);
        table.add({l.name, l.format, shape, R, in_bytes, out_bytes, s * 1e3});
        if (m.is_gguf()) {
            drop(l.name);
        } else {
            drop(l.name);
            drop(l.name + "_scale");
            for (const char *suffix : {".weight_4bit", ".scales_4bit", ".qweight", ".qzeros", ".scales", ".g_idx"}) {
                drop(l.name + suffix);
            }
        }
    }
    for (const TensorView *t : copy) gw.add_tensor(t->name, t->type, t->shape, t->data, t->bytes);
    gw.write(a.output);
    if (c.json) {
        write_json({{"tensors", table.to_json()}, {"family", family}, {"file_bytes", packed_in},
                    {"packed_bytes", packed_out}, {"pack_ms", pack_s * 1e3},
                    {"ms_per_gb", packed_in ? pack_s * 1e3 / (packed_in / 1e9) : 0.0}});
        return 0;
    }
    table.print_text(stdout);
    std::printf("\n%s: %zu tensors packed for %s, %.1f MB -> %.1f MB, %.1f ms (%.0f ms per GB)\n", a.output.c_str(),
                table.size(), family.c_str(), packed_in / 1e6, packed_out / 1e6, pack_s * 1e3,
                packed_in ? pack_s * 1e3 / (packed_in / 1e9) : 0.0);
    return 0;
}

}  // namespace qforge::cli
