// Layer-level benchmarks: the QKV projection of Llama-3.1-8B (4096 -> 4096 +
// 2 x 1024) and Qwen3-0.6B (1024 -> 2048 + 2 x 1024) as one call over
// concatenated rows versus three calls, for Q4_K and int4g, decode and
// prefill; and the attention RMSNorm fused into that QKV call versus a
// separate norm pass that writes the normalised x first; and an FFN
// (Llama-3.2-1B, Qwen3-0.6B: gate, up, SiLU, product, down) as one FFN
// object against its parts called one after another. Eight copies of the
// weights rotate so that decode is not cache-resident.
#include "qforge/block.h"
#include "qforge/qkv.h"
#include "qforge/quantize.h"

#include <benchmark/benchmark.h>

#include <array>
#include <cmath>

#include <map>
#include <random>
#include <tuple>
#include <vector>

namespace {

using namespace qforge;

struct Shape {
    int64_t hidden, q, kv;
};

std::unique_ptr<Linear> layer(const std::string &format, int64_t out, int64_t in, std::vector<uint8_t> &bytes,
                                   std::vector<uint16_t> &scales) {
    // Quantized once per shape; the rotating copies share its values.
    static std::map<std::tuple<std::string, int64_t, int64_t>, std::pair<std::vector<uint8_t>, std::vector<uint16_t>>> cache;
    auto &cached = cache[{format, out, in}];
    if (cached.first.empty()) {
        std::mt19937 g(out + in);
        std::normal_distribution<float> n(0, 0.02f);
        std::vector<float> w(out * in);
        for (auto &v : w) v = n(g);
        if (format == "q4_k") {
            cached.first = quantize_q4k(w.data(), out, in).data;
        } else {
            auto q = quantize_int4g(w.data(), out, in, 128, false);
            cached = {std::move(q.weight), std::move(q.scales)};
        }
    }
    bytes = cached.first;
    scales = cached.second;
    WeightRef r;
    r.out = out;
    r.in = in;
    r.format = format_from_string(format);
    if (r.format == Format::int4g) {
        r.scales = scales.data();
        r.group_size = 128;
    }
    r.data = bytes.data();
    return make_linear(format, r);
}

// Rotating copies of one QKV projection, so that decode is not cache-resident.
struct Rotating {
    static constexpr int kCopies = 8;
    std::vector<std::vector<uint8_t>> bytes = std::vector<std::vector<uint8_t>>(3 * kCopies);
    std::vector<std::vector<uint16_t>> scales = std::vector<std::vector<uint16_t>>(3 * kCopies);
    std::vector<QKVProjection> projs;
    size_t next = 0;
    Rotating(const std::string &format, Shape s, bool concatenate) {
        for (int c = 0; c < kCopies; ++c) {
            projs.push_back(QKVProjection::separate(layer(format, s.q, s.hidden, bytes[3 * c], scales[3 * c]),
                                                    layer(format, s.kv, s.hidden, bytes[3 * c + 1], scales[3 * c + 1]),
                                                    layer(format, s.kv, s.hidden, bytes[3 * c + 2], scales[3 * c + 2]),
                                                    concatenate));
        }
    }
    const QKVProjection &operator()() { return projs[next++ % kCopies]; }
};

void bench_qkv(benchmark::State &state, std::string format, Shape s, bool concatenate, int64_t tokens) {
    Rotating projs(format, s, concatenate);
    const int64_t total = s.q + 2 * s.kv;
    std::vector<float> x(tokens * s.hidden, 0.25f), y(tokens * total);
    for (auto _ : state) {
        projs().forward({x.data(), {tokens, s.hidden}}, {y.data(), {tokens, total}});
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * tokens * total * s.hidden, benchmark::Counter::kIsIterationInvariantRate,
                                                   benchmark::Counter::kIs1000);
}

// RMSNorm as an engine without fusion runs it: one pass writing x-hat.
void rms_norm(const float *x, const float *gamma, int64_t tokens, int64_t in, float eps, float *out) {
    for (int64_t t = 0; t < tokens; ++t) {
        const float *row = x + t * in;
        float ss = 0;
        for (int64_t c = 0; c < in; ++c) ss += row[c] * row[c];
        const float inv = 1.0f / std::sqrt(ss / static_cast<float>(in) + eps);
        for (int64_t c = 0; c < in; ++c) out[t * in + c] = row[c] * inv * gamma[c];
    }
}

void bench_norm_qkv(benchmark::State &state, std::string format, Shape s, bool fused, int64_t tokens) {
    Rotating projs(format, s, true);
    const int64_t total = s.q + 2 * s.kv;
    std::vector<float> x(tokens * s.hidden), xn(tokens * s.hidden), gamma(s.hidden), y(tokens * total);
    std::mt19937 g(7);
    std::normal_distribution<float> n(0.1f, 1.0f);
    for (auto &v : x) v = n(g);
    for (auto &v : gamma) v = 1.0f + 0.1f * n(g);
    const Norm norm{Norm::Kind::rms, gamma.data(), nullptr, 1e-5f};
    for (auto _ : state) {
        const QKVProjection &p = projs();
        if (fused) {
            p.forward({x.data(), {tokens, s.hidden}, &norm}, {y.data(), {tokens, total}});
        } else {
            rms_norm(x.data(), gamma.data(), tokens, s.hidden, 1e-5f, xn.data());
            p.forward({xn.data(), {tokens, s.hidden}}, {y.data(), {tokens, total}});
        }
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * tokens * total * s.hidden, benchmark::Counter::kIsIterationInvariantRate,
                                                   benchmark::Counter::kIs1000);
}

// Rotating copies of one FFN's three layers, as one FFN object or as parts.
struct RotatingFFN {
    static constexpr int kCopies = 8;
    std::vector<std::vector<uint8_t>> bytes = std::vector<std::vector<uint8_t>>(3 * kCopies);
    std::vector<std::vector<uint16_t>> scales = std::vector<std::vector<uint16_t>>(3 * kCopies);
    std::vector<FFN> ffns;
    std::vector<std::array<std::unique_ptr<Linear>, 3>> parts;
    size_t next = 0;
    RotatingFFN(const std::string &format, int64_t hidden, int64_t F, bool whole) {
        for (int c = 0; c < kCopies; ++c) {
            auto g = layer(format, F, hidden, bytes[3 * c], scales[3 * c]);
            auto u = layer(format, F, hidden, bytes[3 * c + 1], scales[3 * c + 1]);
            auto d = layer(format, hidden, F, bytes[3 * c + 2], scales[3 * c + 2]);
            if (whole) {
                ffns.push_back(FFN::gated(std::move(g), std::move(u), std::move(d), Activation::silu));
            } else {
                parts.push_back({std::move(g), std::move(u), std::move(d)});
            }
        }
    }
};

// One FFN::forward, or what an engine without it runs: gate, up, an
// activation pass (qforge's glu kernel, in place), a product pass, down.
void bench_ffn(benchmark::State &state, std::string format, int64_t hidden, int64_t F, bool whole, int64_t tokens) {
    RotatingFFN r(format, hidden, F, whole);
    std::vector<float> x(tokens * hidden), g(tokens * F), u(tokens * F), y(tokens * hidden);
    std::mt19937 gen(11);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (auto &v : x) v = n(gen);
    for (auto _ : state) {
        const size_t c = r.next++ % RotatingFFN::kCopies;
        if (whole) {
            r.ffns[c].forward({x.data(), {tokens, hidden}}, {y.data(), {tokens, hidden}});
        } else {
            auto &[gate, up, down] = r.parts[c];
            gate->forward({x.data(), {tokens, hidden}}, {g.data(), {tokens, F}});
            up->forward({x.data(), {tokens, hidden}}, {u.data(), {tokens, F}});
            glu({g.data(), tokens, F}, {}, Activation::silu, {g.data(), tokens, F});
            for (int64_t i = 0; i < tokens * F; ++i) g[i] *= u[i];
            down->forward({g.data(), {tokens, F}}, {y.data(), {tokens, hidden}});
        }
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * tokens * 3 * F * hidden, benchmark::Counter::kIsIterationInvariantRate,
                                                   benchmark::Counter::kIs1000);
}

const int registered = [] {
    for (auto [model, s] : {std::pair<const char *, Shape>{"llama-3.1-8b", {4096, 4096, 1024}},
                            std::pair<const char *, Shape>{"qwen3-0.6b", {1024, 2048, 1024}}}) {
        for (const char *format : {"q4_k", "int4g"}) {
            for (int64_t tokens : {1, 32}) {
                for (bool concat : {true, false}) {
                    const std::string name = std::string("qkv/") + model + "/" + format + "/tokens:" + std::to_string(tokens) +
                                             (concat ? "/one_call" : "/three_calls");
                    benchmark::RegisterBenchmark(name.c_str(), bench_qkv, format, s, concat, tokens)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime();
                }
            }
        }
    }
    for (const char *format : {"q4_k", "int4g"}) {
        for (int64_t tokens : {1, 32}) {
            for (bool fused : {true, false}) {
                const std::string name = std::string("rmsnorm_qkv/llama-3.1-8b/") + format + "/tokens:" +
                                         std::to_string(tokens) + (fused ? "/fused" : "/separate_pass");
                benchmark::RegisterBenchmark(name.c_str(), bench_norm_qkv, format, Shape{4096, 4096, 1024}, fused, tokens)
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
            }
        }
    }
    for (auto [model, hidden, F] : {std::tuple<const char *, int64_t, int64_t>{"llama-3.2-1b", 2048, 8192},
                                    std::tuple<const char *, int64_t, int64_t>{"qwen3-0.6b", 1024, 3072}}) {
        for (const char *format : {"q4_k", "int4g"}) {
            for (int64_t tokens : {1, 32}) {
                for (bool whole : {true, false}) {
                    const std::string name = std::string("ffn/") + model + "/" + format + "/tokens:" + std::to_string(tokens) +
                                             (whole ? "/ffn" : "/parts");
                    benchmark::RegisterBenchmark(name.c_str(), bench_ffn, format, hidden, F, whole, tokens)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime();
                }
            }
        }
    }
    return 0;
}();

}  // namespace

BENCHMARK_MAIN();
