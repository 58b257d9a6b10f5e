// qforge demo (also `qforge` alone): the built-in workload. Every projection
// of one Llama-3.1-8B-shaped and one Llama-3.2-1B-shaped decoder layer,
// synthetic weights quantized on the fly to Q4_K and int4g, run for decode
// (1 token) and prefill (128 tokens), a sample of outputs checked against a
// float64 reference, and a table against this machine's roofline.
#include "commands.h"

#include <cmath>
#include <unistd.h>

#include "qforge/kernels.h"
#include "qforge/quantize.h"
#include "timing_rows.h"

namespace qforge::cli {

namespace {

struct Proj {
    const char *model, *name;
    int64_t out, in;
};

// FORMATS.md, "Real layer shapes".
const Proj kWorkload[] = {
    {"llama-3.1-8b", "q", 4096, 4096},   {"llama-3.1-8b", "k", 1024, 4096},    {"llama-3.1-8b", "v", 1024, 4096},
    {"llama-3.1-8b", "o", 4096, 4096},   {"llama-3.1-8b", "gate", 14336, 4096}, {"llama-3.1-8b", "up", 14336, 4096},
    {"llama-3.1-8b", "down", 4096, 14336},
    {"llama-3.2-1b", "q", 2048, 2048},   {"llama-3.2-1b", "k", 512, 2048},     {"llama-3.2-1b", "v", 512, 2048},
    {"llama-3.2-1b", "o", 2048, 2048},   {"llama-3.2-1b", "gate", 8192, 2048}, {"llama-3.2-1b", "up", 8192, 2048},
    {"llama-3.2-1b", "down", 2048, 8192},
};

constexpr int kInt4gGroup = 128;
constexpr int64_t kPrefill = 128;

// LLM-like weights: roughly normal, std 0.02, with a few larger outliers.
std::vector<float> synthetic_weights(int64_t out, int64_t in, uint64_t seed) {
    std::vector<float> w(out * in);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto &v : w) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        // Sum of four uniforms: close enough to a normal for quantization.
        float u = 0;
        for (int k = 0; k < 4; ++k) u += static_cast<float>((s >> (16 * k)) & 0xFFFF) / 65535.0f;
        v = (u - 2.0f) * 0.035f;
    }
    return w;
}

// max |y - ref| / max |ref| over `rows` sample rows and every token, ref in
// float64 from the layer's own dequantized weights.
double sample_error(const Linear &l, const std::vector<float> &dequant_rows, int64_t rows,
                    const std::vector<float> &x, int64_t tokens, const std::vector<float> &y) {
    double worst = 0, scale = 1e-30;
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t r = 0; r < rows; ++r) {
            double s = 0;
            for (int64_t c = 0; c < l.in(); ++c) s += static_cast<double>(dequant_rows[r * l.in() + c]) * x[n * l.in() + c];
            worst = std::max(worst, std::fabs(s - y[n * l.out() + r]));
            scale = std::max(scale, std::fabs(s));
        }
    }
    return worst / scale;
}

// The largest data cache this CPU reports (32 MB where it reports none).
int64_t last_level_cache_bytes() {
    for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
        const long bytes = sysconf(name);
        if (bytes > 0) return bytes;
    }
    return int64_t{32} << 20;
}

}  // namespace

int demo(const Common &c) {
    const Roofline roof = measure_roofline();
    const std::string target = dispatched_target();
    Table table({"layer", "format", "tokens", "target", "ms", "GB/s", "GFLOP/s", "roof", "of_roof", "max_rel_err"});
    const size_t steps = std::size(kWorkload) * 2;
    Progress progress("demo", steps);
    double worst = 0;
    for (const Proj &p : kWorkload) {
        const auto w = synthetic_weights(p.out, p.in, p.out * 31 + p.in);
        const auto x = random_input(kPrefill, p.in, p.out + p.in);
        const std::string layer = std::string(p.model) + "." + p.name;
        for (const char *format : {"Q4_K", "int4g:128"}) {
            progress.step(layer + " " + format);
            BlockQuantized q4k;
            Int4gQuantized i4;
            WeightRef ref;
            ref.out = p.out;
            ref.in = p.in;
            // Min-max quantization, no scale search: the kernels' speed and
            // their error against their own dequantized weights do not depend
            // on the recipe, and the searches took most of the demo's time
            // (perf: 67% of its cycles, 2-core EPYC).
            if (format[0] == 'Q') {
                q4k = quantize_q4k_minmax(w.data(), p.out, p.in);
                ref.format = Format::q4_k;
                ref.data = q4k.data.data();
            } else {
                i4 = quantize_int4g(w.data(), p.out, p.in, kInt4gGroup, /*search=*/false);
                ref.format = Format::int4g;
                ref.data = i4.weight.data();
                ref.scales = i4.scales.data();
                ref.group_size = kInt4gGroup;
            }
            // Copies enough to span twice the last-level cache (at most 16), so
            // that decode is timed streaming its weights, as in a forward pass.
            std::vector<std::unique_ptr<Linear>> copies;
            copies.push_back(make_linear(layer, ref));
            const int64_t n = std::clamp<int64_t>(2 * last_level_cache_bytes() / copies.front()->weight_bytes() + 1, 1, 16);
            while (static_cast<int64_t>(copies.size()) < n) copies.push_back(make_linear(layer, ref));
            const Linear &l = *copies.front();
            // The reference: the first 8 rows, dequantized by the kernels' own scalar definition.
            const int64_t rows = 8;
            std::vector<float> dq(rows * p.in);
            Weights first{ref.format, ref.data, rows, p.in, 0, ref.scales, ref.group_size};
            dequant(first, Matrix{dq.data(), rows, p.in});
            for (int64_t tokens : {int64_t{1}, kPrefill}) {
                const LayerTiming t = time_layer(copies, x, tokens, roof, 1.0);
                std::vector<float> y(tokens * p.out);
                l.forward(ConstMatrix{x.data(), tokens, p.in}, Matrix{y.data(), tokens, p.out});
                const double err = sample_error(l, dq, rows, x, tokens, y);
                worst = std::max(worst, err);
                table.add({layer, format, tokens, target, t.ms, t.gbs, t.gflops, t.roof, t.roof_fraction, err});
            }
        }
    }
    // Q8_K activations (prefill) round x to 8 bits: about 1% relative error per
    // output is expected there; f32 activations stay near 1e-6.
    const double bound = 0.05;
    const bool ok = worst <= bound;
    if (c.json) {
        write_json({{"target", target}, {"threads", roof.threads}, {"read_gbs", roof.read_gbs},
                    {"fma_gflops", roof.fma_gflops}, {"rows", table.to_json()}, {"max_rel_err", worst}, {"ok", ok}});
    } else {
        std::printf("qforge demo: %s, %d threads; measured read bandwidth %.1f GB/s, f32 FMA peak %.0f GFLOP/s, int8 dot "
                    "peak %.0f Gop/s\n",
                    target.c_str(), roof.threads, roof.read_gbs, roof.fma_gflops, roof.int8_gops);
        std::printf("decode rows (1 token) are weighed against bandwidth (BW), prefill rows (%lld tokens) against the int8 "
                    "dot peak where they quantize activations, else the FMA peak\n\n",
                    static_cast<long long>(kPrefill));
        table.print_text(stdout);
        std::printf("\nsample check (8 rows x every token vs float64): max relative error %.2e, bound %.0e: %s\n", worst,
                    bound, ok ? "ok" : "FAILED");
    }
    return ok ? 0 : 1;
}

}  // namespace qforge::cli
