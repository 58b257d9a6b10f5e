// qforge bench FILE: every linear layer of a model file, timed per token
// count the way a forward pass meets them. One pass runs every layer once,
// in file order, so a layer's weights come from wherever the previous
// layers left the caches (from DRAM, for a model larger than the last-level
// cache), never from its own previous run; per-layer times are medians over
// passes. Layers it cannot run are listed with the reason, never dropped.
#include "commands.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "model.h"
#include "qforge/kernels.h"
#include "timing_rows.h"

namespace qforge::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

// One runnable entry of the file: a matrix, or every expert of a stack.
struct Entry {
    const BenchLinear *info;
    std::vector<std::unique_ptr<Linear>> layers;  // one, or one per expert
    int64_t per_token = 1;                        // layers of it a token runs (experts_used for a stack)
};

// Passes over every layer at one token count: at least 3 and `budget_s`
// seconds, at most 20 passes (or one, when a single pass takes longer than
// 10 budgets). Returns each entry's median time per layer, in ms.
std::vector<double> timed_passes(const std::vector<Entry> &entries, int64_t tokens, double budget_s, Progress &progress) {
    std::map<int64_t, std::vector<float>> x;  // one input per width
    int64_t max_out = 0;
    for (const Entry &e : entries) {
        const Linear &l = *e.layers.front();
        if (!x.count(l.in())) x[l.in()] = random_input(tokens, l.in(), 7);
        max_out = std::max(max_out, l.out());
    }
    std::vector<float> y(tokens * max_out);
    std::vector<std::vector<double>> samples(entries.size());
    auto pass = [&](bool keep) {
        for (size_t i = 0; i < entries.size(); ++i) {
            for (const auto &l : entries[i].layers) {
                const auto t0 = Clock::now();
                l->forward(ConstMatrix{x[l->in()].data(), tokens, l->in()}, Matrix{y.data(), tokens, l->out()});
                if (keep) samples[i].push_back(seconds_since(t0) * 1e3);
            }
        }
    };
    pass(false);  // warm-up: first-touch of the mapping, thread pool start
    const auto start = Clock::now();
    for (int p = 1; p <= 20; ++p) {
        progress.step("x" + std::to_string(tokens) + ", pass " + std::to_string(p));
        pass(true);
        const double s = seconds_since(start);
        if ((p >= 3 && s >= budget_s) || s >= 10 * budget_s) break;
    }
    std::vector<double> ms;
    for (const auto &s : samples) ms.push_back(median(s));
    return ms;
}

}  // namespace

int bench(const BenchArgs &a, const Common &c) {
    if (a.threads > 0) set_num_threads(a.threads);
    for (int64_t t : a.tokens) {
        if (t <= 0) throw Error("--tokens: " + std::to_string(t) + " is not a positive token count");
    }
    ModelFile m = ModelFile::open(a.file);
    const std::vector<BenchLinear> all = m.bench_linears();
    const int64_t experts_used = m.experts_used();
    std::vector<Entry> entries;
    json skipped = json::array();
    size_t layer_count = 0;
    for (const BenchLinear &b : all) {
        if (!b.skip.empty()) {
            skipped.push_back({{"tensor", b.info.name}, {"type", b.info.format}, {"reason", b.skip}});
        } else {
            layer_count += std::max<int64_t>(b.experts, 1);
        }
    }
    if (layer_count == 0) throw Error(a.file + ": no linear layers qforge can run");

    // Load: mapping is free, so this is the packing this CPU's kernels want
    // (or nothing, for file-layout kernels and pre-packed files).
    double load_s = 0;
    int64_t load_bytes = 0, packed_layers = 0;
    {
        Progress progress("loading", layer_count);
        for (const BenchLinear &b : all) {
            if (!b.skip.empty()) continue;
            Entry e{&b, {}, b.experts ? (experts_used > 0 ? std::min(experts_used, b.experts) : b.experts) : 1};
            for (int64_t x = 0; x < std::max<int64_t>(b.experts, 1); ++x) {
                progress.step(b.info.name);
                const auto t0 = Clock::now();
                e.layers.push_back(m.layer(b, x));
                load_s += seconds_since(t0);
                load_bytes += b.info.bytes;
                packed_layers += e.layers.back()->pack_rows() > 0;
            }
            entries.push_back(std::move(e));
        }
    }

    const Roofline roof = measure_roofline(a.threads);
    // Bytes and multiply-adds one token streams: experts count as many as a token runs.
    // token_ms_compute: their arithmetic at each layer's own peak (int8 or FMA), in ms.
    double token_bytes = 0, token_ms_compute = 0;
    for (const Entry &e : entries) {
        token_bytes += static_cast<double>(e.per_token) * e.layers.front()->weight_bytes();
        token_ms_compute += 2.0 * static_cast<double>(e.per_token) * e.info->info.out * e.info->info.in /
                            (batch_peak(*e.layers.front(), roof) * 1e6);
    }
    Table table({"tensor", "format", "shape", "tokens", "ms", "GB/s", "GFLOP/s", "roof", "of_roof"});
    json totals = json::array();
    Progress progress("bench", a.tokens.size() * 3);  // the passes every token count makes at least
    for (int64_t tokens : a.tokens) {
        const std::vector<double> ms = timed_passes(entries, tokens, 2.0, progress);
        double total = 0;
        for (size_t i = 0; i < entries.size(); ++i) {
            const Entry &e = entries[i];
            const BenchLinear &b = *e.info;
            const Linear &l = *e.layers.front();
            total += ms[i] * static_cast<double>(e.per_token) / static_cast<double>(e.layers.size());
            // A stack's row is per expert: its median over the pass, divided by the experts run.
            const LayerTiming t = describe_timing(l, tokens, ms[i] / static_cast<double>(e.layers.size()), roof);
            std::string shape = std::to_string(b.info.out) + "x" + std::to_string(b.info.in);
            if (b.experts) shape = std::to_string(b.experts) + "x" + shape + " (per expert)";
            table.add({b.info.name, b.info.format, shape, tokens, t.ms, t.gbs, t.gflops, t.roof, t.roof_fraction});
        }
        // The ceiling: weight bytes over measured read bandwidth, or the
        // multiply-adds over each layer's peak, whichever binds.
        const double roof_ms = std::max(token_bytes / (roof.read_gbs * 1e6), token_ms_compute * tokens);
        totals.push_back({{"tokens", tokens}, {"ms", total}, {"tokens_per_s", tokens / (total / 1e3)},
                          {"roof_ms", roof_ms}, {"roof_tokens_per_s", tokens / (roof_ms / 1e3)}});
    }
    // Counted per layer loaded (experts each), over the bytes loaded.
    const double ms_per_gb = load_bytes ? load_s * 1e3 / (load_bytes / 1e9) : 0.0;
    if (c.json) {
        write_json({{"file", a.file}, {"threads", roof.threads}, {"target", dispatched_target()},
                    {"read_gbs", roof.read_gbs}, {"fma_gflops", roof.fma_gflops}, {"int8_gops", roof.int8_gops},
                    {"layers", table.to_json()},
                    {"totals", totals}, {"skipped", skipped}, {"experts_used", experts_used},
                    {"token_weight_bytes", token_bytes}, {"load_ms", load_s * 1e3},
                    {"packed_layers", packed_layers}, {"load_ms_per_gb", ms_per_gb}});
        return 0;
    }
    std::printf("%s: %zu linear layers (%zu tensors), %d threads, target %s; measured read %.1f GB/s, f32 FMA %.0f "
                "GFLOP/s, int8 dot %.0f Gop/s\n\n",
                a.file.c_str(), layer_count, entries.size(), roof.threads, dispatched_target().c_str(), roof.read_gbs,
                roof.fma_gflops, roof.int8_gops);
    table.print_text(stdout);
    std::printf("\nper token: %.1f MB of weights", token_bytes / 1e6);
    if (experts_used > 0) std::printf(" (%lld experts of each stack)", static_cast<long long>(experts_used));
    std::printf("\n");
    for (const auto &t : totals) {
        std::printf("%lld tokens: %.3f ms for all linear layers, at most %.1f tokens/s from the matmuls alone "
                    "(roofline %.3f ms, %.1f tokens/s: %.0f%% of it)\n",
                    static_cast<long long>(t["tokens"].get<int64_t>()), t["ms"].get<double>(), t["tokens_per_s"].get<double>(),
                    t["roof_ms"].get<double>(), t["roof_tokens_per_s"].get<double>(),
                    100.0 * t["roof_ms"].get<double>() / t["ms"].get<double>());
    }
    std::printf("load: %.1f ms for %.1f MB of weights (%.0f ms per GB, packing included; %lld of %zu layers run packed)\n",
                load_s * 1e3, load_bytes / 1e6, ms_per_gb, static_cast<long long>(packed_layers), layer_count);
    if (!skipped.empty()) {
        std::printf("\nnot run (%zu):\n", skipped.size());
        for (const auto &s : skipped) {
            std::printf("  %s (%s): %s\n", printable(s["tensor"].get<std::string>()).c_str(),
                        s["type"].get<std::string>().c_str(), s["reason"].get<std::string>().c_str());
        }
    }
    return 0;
}

}  // namespace qforge::cli
