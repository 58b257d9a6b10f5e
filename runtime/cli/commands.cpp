// inspect, dequant, matmul, targets.
#include "commands.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "model.h"
#include "qforge/gptq.h"
#include "qforge/kernels.h"
#include "registry.h"
#include "table.h"

namespace qforge::cli {

double median_ms(const std::function<void()> &f, int runs, double budget_s) {
    f();  // warm-up
    std::vector<double> t;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < runs; ++i) {
        const auto a = std::chrono::steady_clock::now();
        f();
        const auto b = std::chrono::steady_clock::now();
        t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
        if (i >= 2 && std::chrono::duration<double>(b - start).count() > budget_s) break;
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

namespace {

std::string shape_text(const std::vector<int64_t> &s) {
    std::string r;
    for (size_t i = 0; i < s.size(); ++i) r += (i ? "x" : "") + std::to_string(s[i]);
    return r;
}

}  // namespace

int inspect(const std::string &file, const Common &c) {
    ModelFile m = ModelFile::open(file);
    Table meta({"key", "value"});
    Table tensors({"name", "type", "shape", "bytes"});
    json info = json::object();
    info["file"] = file;
    if (m.is_gguf()) {
        info["format"] = "gguf";
        info["version"] = m.gguf->version();
        info["alignment"] = m.gguf->alignment();
        for (const auto &[k, v] : m.gguf->metadata()) meta.add({k, v.to_string()});
        for (const auto &t : m.gguf->tensors()) tensors.add({t.name, to_string(t.type), shape_text(t.shape), t.bytes});
    } else {
        info["format"] = "safetensors";
        for (const auto &[k, v] : m.st->metadata()) meta.add({k, v});
        for (const auto &t : m.st->tensors()) tensors.add({t.name, to_string(t.type), shape_text(t.shape), t.bytes});
        // GPTQ / AWQ layers (qforge/gptq.h): what they are and what qforge reads them as.
        const std::vector<std::string> zp = zero_point_prefixes(*m.st);
        if (!zp.empty()) {
            const ZeroPointConfig q = zero_point_config_for(*m.st);
            int64_t act_order = 0;
            for (const auto &p : zp) act_order += zero_point_info(*m.st, p).has_g_idx ? 1 : 0;
            info["quantization"] = {{"method", q.layout == ZeroPointLayout::awq ? "awq" : "gptq"},
                                    {"layout", to_string(q.layout)},
                                    {"group_size", q.group_size},
                                    {"layers", zp.size()},
                                    {"layers_with_g_idx", act_order},
                                    {"runs_as", "int4z"}};
        }
        // int8 / FP8 layers (compressed-tensors: codes with NAME_scale), and block-wise FP8 qforge does not run.
        int64_t int8 = 0, fp8 = 0, per_tensor = 0, blockwise = 0;
        for (const LinearInfo &l : m.linears()) {
            const bool i8 = l.format.rfind("int8 ", 0) == 0, f8 = l.format.rfind("fp8 ", 0) == 0;
            int8 += i8;
            fp8 += f8;
            per_tensor += (i8 || f8) && l.format.find("per-tensor") != std::string::npos;
        }
        for (const auto &t : m.st->tensors()) blockwise += t.name.size() > 10 && t.name.compare(t.name.size() - 10, 10, "_scale_inv") == 0;
        if (int8 || fp8 || blockwise) {
            info["channel_quantization"] = {{"int8_layers", int8}, {"fp8_layers", fp8}, {"per_tensor_scales", per_tensor},
                                            {"per_channel_scales", int8 + fp8 - per_tensor}, {"blockwise_fp8_layers", blockwise},
                                            {"runs_as", "int8 / fp8 (qforge rows, FORMATS.md)"}};
        }
    }
    if (c.json) {
        info["metadata"] = meta.to_json();
        info["tensors"] = tensors.to_json();
        write_json(info);
        return 0;
    }
    std::printf("%s: %s", printable(file).c_str(), info["format"].get<std::string>().c_str());
    if (m.is_gguf()) std::printf(" v%u, alignment %llu", m.gguf->version(), static_cast<unsigned long long>(m.gguf->alignment()));
    std::printf(", %zu metadata keys, %zu tensors\n", meta.size(), tensors.size());
    if (info.contains("quantization")) {
        const json &q = info["quantization"];
        const int g = q["group_size"].get<int>();
        std::printf("%s checkpoint (%s layout): %zu 4-bit layers with zero points, %s, %lld with g_idx; run as int4z\n",
                    q["method"].get<std::string>() == "awq" ? "AWQ" : "GPTQ", q["layout"].get<std::string>().c_str(),
                    q["layers"].get<size_t>(),
                    g == -1 ? "per channel" : g == 0 ? "group size from the shapes" : ("group size " + std::to_string(g)).c_str(),
                    static_cast<long long>(q["layers_with_g_idx"].get<int64_t>()));
    }
    if (info.contains("channel_quantization")) {
        const json &q = info["channel_quantization"];
        std::printf("8-bit checkpoint (compressed-tensors layout): %lld int8 and %lld FP8 E4M3 layers, %lld with a per-tensor "
                    "scale, %lld per channel; run as int8 / fp8",
                    static_cast<long long>(q["int8_layers"].get<int64_t>()), static_cast<long long>(q["fp8_layers"].get<int64_t>()),
                    static_cast<long long>(q["per_tensor_scales"].get<int64_t>()),
                    static_cast<long long>(q["per_channel_scales"].get<int64_t>()));
        if (q["blockwise_fp8_layers"].get<int64_t>()) {
            std::printf("; %lld layers with block-wise FP8 scales (_scale_inv), which qforge does not run",
                        static_cast<long long>(q["blockwise_fp8_layers"].get<int64_t>()));
        }
        std::printf("\n");
    }
    std::printf("\n");
    if (meta.size()) {
        meta.print_text(stdout);
        std::printf("\n");
    }
    tensors.print_text(stdout);
    return 0;
}

int dequant(const std::string &file, const std::string &tensor, const std::string &out) {
    ModelFile m = ModelFile::open(file);
    std::vector<int64_t> shape;
    const auto w = m.to_f32(tensor, &shape);
    write_f32_file(out, w);
    std::fprintf(stderr, "%s: %s [%s] -> %s (%zu f32 values)\n", file.c_str(), tensor.c_str(), shape_text(shape).c_str(),
                 out.c_str(), w.size());
    return 0;
}

int matmul(const MatmulArgs &a) {
    ModelFile m = ModelFile::open(a.file);
    auto layer = m.layer(a.tensor);
    if (a.tokens <= 0) throw Error("--tokens " + std::to_string(a.tokens) + ": must be at least 1");
    const auto x = read_f32_file(a.input, a.tokens * layer->in(), "--input X [" + std::to_string(a.tokens) + ", " + std::to_string(layer->in()) + "]");
    std::vector<float> y(a.tokens * layer->out());
    ForwardOptions opt;
    if (a.activations == "f32") opt.activations = Activations::f32;
    else if (a.activations == "q8") opt.activations = Activations::q8;
    else if (a.activations != "auto") throw Error("--activations " + a.activations + ": expected f32, q8 or auto");
    opt.run.target = a.target;
    layer->forward(ConstMatrix{x.data(), a.tokens, layer->in()}, Matrix{y.data(), a.tokens, layer->out()}, opt);
    write_f32_file(a.output, y);
    std::fprintf(stderr, "%s: Y [%lld, %lld] = X [%lld, %lld] * %s^T%s -> %s\n", a.file.c_str(), static_cast<long long>(a.tokens),
                 static_cast<long long>(layer->out()), static_cast<long long>(a.tokens), static_cast<long long>(layer->in()),
                 a.tensor.c_str(), layer->has_bias() ? " + bias" : "", a.output.c_str());
    return 0;
}

int targets(const Common &c) {
    Table t({"target", "runs_here", "missing_features"});
    for (const auto &info : qforge::targets()) {
        std::string missing;
        for (const auto &f : info.missing_features) missing += (missing.empty() ? "" : " ") + f;
        t.add({info.name, info.missing_features.empty() ? "yes" : "no", missing});
    }
    const std::string picked = dispatched_target();
    const std::string why = "the first target in targets/targets.cmake (best first) whose CPU features this machine has";
    const bool prefetch = internal::cpu_prefetch();
    const char *prefetch_why = "on for AMD and Hygon CPUs, off elsewhere; QF_PREFETCH=0|1 decides instead";
    if (c.json) {
        // Every built variant and its generated function (what scripts/tune.py
        // regenerates); "class": the shape class a tuning database built it for.
        nlohmann::json variants = nlohmann::json::array();
        for (const internal::Variant &v : internal::variants()) {
            variants.push_back({{"kernel", internal::kernel_name(*v.row)},
                                {"target", v.target},
                                {"function", v.function},
                                {"class", v.shape_class}});
        }
        nlohmann::json classes = nlohmann::json::object();
        for (const internal::ShapeClass &sc : internal::shape_classes()) {
            classes[sc.name] = {{"from", sc.from}, {"below", sc.below}};
            if (sc.in_below != std::numeric_limits<int64_t>::max()) classes[sc.name]["in_below"] = sc.in_below;
            if (sc.threads_below != std::numeric_limits<int>::max()) classes[sc.name]["threads_below"] = sc.threads_below;
        }
        write_json({{"targets", t.to_json()},
                    {"dispatched", picked},
                    {"variants", variants},
                    {"shape_classes", classes},
                    {"why", why},
                    {"prefetch", prefetch},
                    {"prefetch_why", prefetch_why},
                    {"kernels", kernels()}});
        return 0;
    }
    t.print_text(stdout);
    std::printf("\nauto dispatches to: %s (%s)\n", picked.c_str(), why.c_str());
    std::printf("software prefetch in the packed kernels: %s (%s)\n", prefetch ? "on" : "off", prefetch_why);
    std::printf("kernels built in: %zu (each for every target of its families)\n", kernels().size());
    return 0;
}

}  // namespace qforge::cli
