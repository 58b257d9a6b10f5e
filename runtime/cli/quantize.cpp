// qforge quantize: f32/f16/bf16 GGUF or safetensors -> Q4_K (a GGUF file)
// or int4g / int4z / int8 / fp8 (a safetensors file; int4z as a GPTQ
// checkpoint, int8 and fp8 as compressed-tensors ones),
// following a per-layer plan.
#include "commands.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model.h"
#include "smooth.h"
#include "qforge/gptq.h"
#include "qforge/kernels.h"
#include "qforge/plan.h"
#include "qforge/quantize.h"
#include "table.h"

namespace qforge::cli {

namespace {

bool is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

// What `w` [out, in] quantized as `f` dequantizes to, through qforge's kernels.
std::vector<float> round_trip(const FormatSpec &f, const float *w, int64_t out, int64_t in, bool search) {
    std::vector<float> back(out * in);
    const Matrix m{back.data(), out, in};
    if (f.format == Format::q4_k) {
        const BlockQuantized q = quantize_q4k(w, out, in);
        dequant(Weights{Format::q4_k, q.data.data(), out, in}, m);
    } else if (f.format == Format::int4g || f.format == Format::int4z) {
        const Int4gQuantized q = f.format == Format::int4z ? quantize_int4z(w, out, in, f.group_size)
                                                           : quantize_int4g(w, out, in, f.group_size, search);
        Weights x{f.format, q.weight.data(), out, in, 0, q.scales.data(), f.group_size};
        x.zeros = q.zeros.empty() ? nullptr : q.zeros.data();
        dequant(x, m);
    } else if (traits(f.format).row_head_bytes) {
        const ChannelQuantized q = quantize_channels(f.format, w, out, in);
        const std::vector<uint8_t> rows = channel_rows(f.format, q.codes.data(), q.scales.data(), out, in);
        dequant(Weights{f.format, rows.data(), out, in}, m);
    } else {
        const DType type = traits(f.format).file_type;
        const std::vector<uint8_t> bytes = f32_to_bytes(type, std::vector<float>(w, w + out * in));
        back = to_f32(type, bytes.data(), out * in);
    }
    return back;
}

}  // namespace

int quantize(const QuantizeArgs &a, const Common &c) {
    ModelFile m = ModelFile::open(a.input);
    const QuantPlan plan = QuantPlan::parse(a.to, a.overrides);
    // Formats stored as one tensor go into GGUF; those with a scale plane (int4g) into safetensors.
    const bool to_gguf = traits(plan.default_format.format).in_files;
    std::vector<const TensorView *> all;
    if (m.is_gguf()) {
        for (const auto &t : m.gguf->tensors()) all.push_back(&t);
    } else {
        for (const auto &t : m.st->tensors()) all.push_back(&t);
    }
    // Quantized: 2-D float ".weight" matrices (the linear layers); everything else is copied.
    std::vector<LayerShape> layers;
    for (const auto &info : m.linears()) {
        const TensorView *t = m.is_gguf() ? m.gguf->find(info.name) : m.st->find(info.name);
        if (t && is_float(t->type)) layers.push_back({info.name, info.out, info.in});
    }
    if (layers.empty()) throw Error(a.input + ": no F32/F16/BF16 linear weights to quantize");
    plan.validate(layers);
    for (const auto &l : layers) {
        const FormatSpec &f = plan.for_layer(l.name);
        if (traits(f.format).in_files != to_gguf) {
            throw Error("plan: layer '" + l.name + "' as " + f.to_string() + " cannot go into the " +
                        (to_gguf ? "GGUF" : "safetensors") + " file that --to " + a.to + " writes");
        }
    }

    SmoothedModel sm;
    if (!a.act_scales.empty()) {
        sm = smooth_model(m, layers, plan, a.act_scales, a.alpha);
    } else {
        for (const auto &l : layers) {
            const FormatSpec &f = plan.for_layer(l.name);
            if (f.smooth == f.smooth && f.smooth >= 0) {
                throw Error("plan: layer '" + l.name + "' asks for " + f.to_string() + ", but no --act-scales file was given");
            }
        }
    }

    GGUFWriter gw;
    SafetensorsWriter sw;
    if (m.is_gguf() && to_gguf) {
        for (const auto &[k, v] : m.gguf->metadata()) {
            if (k != "general.alignment") gw.set(k, v);
        }
    }
    if (!m.is_gguf() && !to_gguf) {
        for (const auto &[k, v] : m.st->metadata()) sw.set_metadata(k, v);
    }
    Table table({"tensor", "shape", "from", "to", "rmse", "rmse_minmax", "smooth", "out_rmse_before", "out_rmse"});
    Progress progress("quantizing", all.size());
    double err2 = 0, err2_plain = 0, out2_before = 0, out2_after = 0;
    int64_t n_q4k = 0, n_smoothed = 0;
    int gptq_groups = 0;  // int4z's group size: one per file, in its quantization_config
    auto add = [&](const TensorView &t, DType type, const std::vector<int64_t> &shape, const void *data, size_t bytes) {
        if (to_gguf) {
            gw.add_tensor(t.name, type, shape, data, bytes);
        } else {
            if (!is_float(type) && type != DType::u8 && type != DType::i8 && type != DType::i32 && type != DType::f8_e4m3) {
                throw Error("tensor '" + t.name + "' (" + to_string(type) + ") has no safetensors dtype to copy into");
            }
            sw.add_tensor(t.name, type, shape, data, bytes);
        }
    };
    for (const TensorView *t : all) {
        progress.step(t->name);
        auto layer = std::find_if(layers.begin(), layers.end(), [&](const LayerShape &l) { return l.name == t->name; });
        if (layer == layers.end()) {
            if (const auto n = sm.norms.find(t->name); n != sm.norms.end()) {
                add(*t, DType::f32, t->shape, n->second.data(), n->second.size() * 4);  // smoothed: norm / s, in f32
            } else {
                add(*t, t->type, t->shape, t->data, t->bytes);
            }
            continue;
        }
        const FormatSpec &f = plan.for_layer(t->name);
        const auto original = to_f32(t->type, t->data, t->elements());
        const auto smoothed = sm.weights.find(t->name);
        const std::vector<float> &w = smoothed == sm.weights.end() ? original : smoothed->second;
        const std::string shape = std::to_string(layer->out) + "x" + std::to_string(layer->in);
        double rmse_v = 0;
        json rmse_minmax = "";
        if (f.format == Format::q4_k) {
            const BlockQuantized q = quantize_q4k(w.data(), layer->out, layer->in);
            const BlockQuantized plain = quantize_q4k_minmax(w.data(), layer->out, layer->in);
            gw.add_tensor(t->name, DType::q4_k, t->shape, q.data.data(), q.data.size());
            rmse_v = q.rmse;
            rmse_minmax = plain.rmse;
            err2 += q.rmse * q.rmse * w.size();
            err2_plain += plain.rmse * plain.rmse * w.size();
            n_q4k += static_cast<int64_t>(w.size());
        } else if (f.format == Format::int4g) {
            const Int4gQuantized q = quantize_int4g(w.data(), layer->out, layer->in, f.group_size, !a.no_search);
            const std::string prefix = t->name.substr(0, t->name.size() - std::string(".weight").size());
            sw.add_tensor(prefix + ".weight_4bit", DType::u8, {layer->out, layer->in / 2}, q.weight.data(), q.weight.size());
            sw.add_tensor(prefix + ".scales_4bit", DType::f16, {layer->out, static_cast<int64_t>(q.scales.size()) / layer->out},
                          q.scales.data(), q.scales.size() * 2);
            sw.set_metadata(prefix + ".group_size", std::to_string(f.group_size));
            rmse_v = q.rmse;
        } else if (f.format == Format::int4z) {
            const Int4gQuantized q = quantize_int4z(w.data(), layer->out, layer->in, f.group_size);
            write_gptq_layer(sw, t->name.substr(0, t->name.size() - std::string(".weight").size()), q);
            if (gptq_groups != 0 && gptq_groups != f.group_size) {
                throw Error("plan: int4z layers of one file share one group size (a GPTQ config has one): " +
                            std::to_string(gptq_groups) + " and " + std::to_string(f.group_size));
            }
            gptq_groups = f.group_size;
            rmse_v = q.rmse;
        } else if (traits(f.format).row_head_bytes) {
            // int8 / fp8 per channel, as compressed-tensors writes them: codes and NAME_scale [out, 1].
            ChannelQuantized q;
            try {
                q = quantize_channels(f.format, w.data(), layer->out, layer->in);
            } catch (const Error &e) {
                throw Error("layer '" + t->name + "': " + e.what());
            }
            sw.add_tensor(t->name, traits(f.format).file_type, {layer->out, layer->in}, q.codes.data(), q.codes.size());
            sw.add_tensor(t->name + "_scale", DType::f32, {layer->out, 1}, q.scales.data(), q.scales.size() * 4);
            rmse_v = q.rmse;
        } else {
            // f16 / f32 pass-through at the requested precision.
            const DType type = traits(f.format).file_type;
            const std::vector<uint8_t> bytes = f32_to_bytes(type, w);
            add(*t, type, t->shape, bytes.data(), bytes.size());
        }
        json smooth = "", before = "", after = "";
        if (smoothed != sm.weights.end()) {
            // The layer's output error at the activations' maxima, quantized as it is
            // and as it would have been without smoothing (the same format).
            const float *amax = sm.act_max[t->name].data();
            const std::vector<float> b = round_trip(f, original.data(), layer->out, layer->in, !a.no_search);
            const std::vector<float> q = round_trip(f, w.data(), layer->out, layer->in, !a.no_search);
            const double ob = output_rmse(original.data(), b.data(), nullptr, amax, layer->out, layer->in);
            const double oa = output_rmse(original.data(), q.data(), sm.scales[t->name].data(), amax, layer->out, layer->in);
            smooth = sm.alpha[t->name];
            before = ob;
            after = oa;
            out2_before += ob * ob;
            out2_after += oa * oa;
            ++n_smoothed;
        }
        table.add({t->name, shape, to_string(t->type), f.to_string(), rmse_v, rmse_minmax, smooth, before, after});
    }
    if (gptq_groups) sw.set_metadata("quantization_config", gptq_config_json(gptq_groups));
    if (to_gguf) gw.write(a.output);
    else sw.write(a.output);
    if (c.json) {
        json j = {{"output", a.output}, {"tensors", table.to_json()}};
        if (n_q4k) j["q4_k_rmse"] = {{"ours", std::sqrt(err2 / n_q4k)}, {"minmax", std::sqrt(err2_plain / n_q4k)}};
        if (n_smoothed) {
            j["smoothing"] = {{"layers", n_smoothed}, {"out_rmse_before", std::sqrt(out2_before / n_smoothed)},
                              {"out_rmse", std::sqrt(out2_after / n_smoothed)}, {"unsmoothed", sm.unsmoothed}};
        }
        write_json(j);
        return 0;
    }
    table.print_text(stdout);
    if (n_smoothed) {
        std::printf("\nSmoothQuant on %lld layers: output RMSE at the activations' maxima %.6g without smoothing, %.6g with "
                    "(root mean square over the layers)\n",
                    static_cast<long long>(n_smoothed), std::sqrt(out2_before / n_smoothed), std::sqrt(out2_after / n_smoothed));
    }
    for (const std::string &u : sm.unsmoothed) std::printf("not smoothed: %s\n", u.c_str());
    if (n_q4k) {
        std::printf("\nQ4_K RMSE over all quantized weights: %.6g (plain min/max recipe: %.6g)\n", std::sqrt(err2 / n_q4k),
                    std::sqrt(err2_plain / n_q4k));
    }
    std::printf("wrote %s\n", a.output.c_str());
    return 0;
}

}  // namespace qforge::cli
