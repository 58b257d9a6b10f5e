// Layer-level benchmarks: the QKV projection of Llama-3.1-8B (4096 -> 4096 +
// 2 x 1024) and Qwen3-0.6B (1024 -> 2048 + 2 x 1024) as one call over
// concatenated rows versus three calls, for Q4_K and int4g, decode and
// prefill. Eight copies of the weights rotate so that decode is not
// cache-resident.
#include "qforge/qkv.h"
#include "qforge/quantize.h"

#include <benchmark/benchmark.h>

#include <map>
#include <random>
#include <tuple>
#include <vector>

namespace {

using namespace qforge;

struct Shape {
    int64_t hidden, q, kv;
};

std::unique_ptr<LinearLayer> layer(const std::string &format, int64_t out, int64_t in, std::vector<uint8_t> &bytes,
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
    if (format == "q4_k") {
        r.type = DType::q4_k;
    } else {
        r.type = DType::u8;
        r.scales = scales.data();
        r.group_size = 128;
    }
    r.data = bytes.data();
    return make_linear(format, r);
}

void bench_qkv(benchmark::State &state, std::string format, Shape s, bool concatenate, int64_t tokens) {
    constexpr int kCopies = 8;
    std::vector<std::vector<uint8_t>> bytes(3 * kCopies);
    std::vector<std::vector<uint16_t>> scales(3 * kCopies);
    std::vector<QKVProjection> projs;
    for (int c = 0; c < kCopies; ++c) {
        projs.push_back(QKVProjection::separate(layer(format, s.q, s.hidden, bytes[3 * c], scales[3 * c]),
                                                layer(format, s.kv, s.hidden, bytes[3 * c + 1], scales[3 * c + 1]),
                                                layer(format, s.kv, s.hidden, bytes[3 * c + 2], scales[3 * c + 2]),
                                                concatenate));
    }
    const int64_t total = s.q + 2 * s.kv;
    std::vector<float> x(tokens * s.hidden, 0.25f), y(tokens * total);
    size_t i = 0;
    for (auto _ : state) {
        projs[i++ % kCopies].forward({x.data(), {tokens, s.hidden}}, {y.data(), {tokens, total}});
        benchmark::DoNotOptimize(y.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * tokens * total * s.hidden, benchmark::Counter::kIsIterationInvariantRate,
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
    return 0;
}();

}  // namespace

BENCHMARK_MAIN();
