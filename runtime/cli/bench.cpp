// qforge bench FILE: every linear layer of a model file, timed per token count.
#include "commands.h"

#include <chrono>

#include "model.h"
#include "qforge/kernels.h"
#include "timing_rows.h"

namespace qforge::cli {

int bench(const BenchArgs &a, const Common &c) {
    if (a.threads > 0) set_num_threads(a.threads);
    for (int64_t t : a.tokens) {
        if (t <= 0) throw Error("--tokens: " + std::to_string(t) + " is not a positive token count");
    }
    ModelFile m = ModelFile::open(a.file);
    const auto linears = m.linears();
    if (linears.empty()) throw Error(a.file + ": no linear layers qforge can run");
    const Roofline roof = measure_roofline(a.threads);
    Table table({"tensor", "format", "shape", "tokens", "ms", "GB/s", "GFLOP/s", "roof", "of_roof"});
    std::vector<double> total_ms(a.tokens.size(), 0.0);
    Progress progress("bench", linears.size() * a.tokens.size());
    // Load time: mapping is free, so this is the packing this CPU's kernels
    // want (or nothing, for file-layout kernels and pre-packed files).
    double load_s = 0;
    int64_t load_bytes = 0, packed_layers = 0;
    for (const auto &info : linears) {
        const auto t0 = std::chrono::steady_clock::now();
        auto layer = m.layer(info.name);
        load_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        load_bytes += info.bytes;
        packed_layers += layer->pack_rows() > 0;
        for (size_t i = 0; i < a.tokens.size(); ++i) {
            const int64_t tokens = a.tokens[i];
            progress.step(info.name + " x" + std::to_string(tokens));
            const auto x = random_input(tokens, layer->in(), 7);
            const LayerTiming t = time_layer(*layer, x, tokens, roof, 1.0);
            total_ms[i] += t.ms;
            table.add({info.name, info.format, std::to_string(info.out) + "x" + std::to_string(info.in), tokens, t.ms, t.gbs,
                       t.gflops, t.roof, t.roof_fraction});
        }
    }
    json totals = json::array();
    for (size_t i = 0; i < a.tokens.size(); ++i) totals.push_back({{"tokens", a.tokens[i]}, {"ms", total_ms[i]}});
    if (c.json) {
        write_json({{"file", a.file}, {"threads", roof.threads}, {"target", dispatched_target()},
                    {"read_gbs", roof.read_gbs}, {"fma_gflops", roof.fma_gflops}, {"layers", table.to_json()},
                    {"totals", totals}, {"load_ms", load_s * 1e3}, {"packed_layers", packed_layers},
                    {"load_ms_per_gb", load_bytes ? load_s * 1e3 / (load_bytes / 1e9) : 0.0}});
        return 0;
    }
    std::printf("%s: %zu linear layers, %d threads, target %s; measured read %.1f GB/s, f32 FMA %.0f GFLOP/s\n\n",
                a.file.c_str(), linears.size(), roof.threads, dispatched_target().c_str(), roof.read_gbs, roof.fma_gflops);
    table.print_text(stdout);
    std::printf("\n");
    for (size_t i = 0; i < a.tokens.size(); ++i) {
        std::printf("total, %lld tokens: %.3f ms\n", static_cast<long long>(a.tokens[i]), total_ms[i]);
    }
    std::printf("load: %.1f ms for %.1f MB of weights (%.0f ms per GB, packing included; %lld of %zu layers run packed)\n", load_s * 1e3,
                load_bytes / 1e6, load_bytes ? load_s * 1e3 / (load_bytes / 1e9) : 0.0, static_cast<long long>(packed_layers),
                linears.size());
    return 0;
}

}  // namespace qforge::cli
