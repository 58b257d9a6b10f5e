// Google Benchmark over the registry: every runnable variant of every matmul
// kernel, on Llama-3.1-8B-shaped projections, with weight GB/s and GFLOP/s.
// Weight buffers rotate so that decode timings are not cache-resident.
#include "qforge/kernels.h"
#include "registry.h"

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

namespace {

using namespace qforge;

constexpr size_t kRotateBytes = size_t{512} << 20;  // far beyond any last-level cache

std::vector<std::vector<uint8_t>> weight_copies(size_t bytes) {
    std::mt19937 g(1);
    std::vector<uint8_t> w(bytes);
    for (auto &b : w) b = static_cast<uint8_t>(g());
    for (size_t i = 0; i + 4 <= w.size(); i += 144) { w[i] = 0; w[i + 1] = 0x14; w[i + 2] = 0; w[i + 3] = 0x14; }
    const size_t copies = std::max<size_t>(1, std::min<size_t>(64, kRotateBytes / bytes));
    return std::vector<std::vector<uint8_t>>(copies, w);
}

void bench_q4k(benchmark::State &state, std::string kernel, std::string target, int64_t out, int64_t in,
               int64_t tokens) {
    const size_t bytes = out * (in / 256) * 144;
    auto ws = weight_copies(bytes);
    std::vector<float> x(tokens * in, 0.5f), y(tokens * out);
    Q8KBuffer a(tokens, in);
    RunOptions o;
    o.target = target;
    o.kernel = kernel;
    q8k_quantize({x.data(), tokens, in}, a.view());
    size_t i = 0;
    const bool q8 = kernel.find("_q8") != std::string::npos;
    for (auto _ : state) {
        const auto &w = ws[i++ % ws.size()];
        if (q8) {
            q8k_quantize({x.data(), tokens, in}, a.view());
            q4k_matmul_q8({w.data(), out, in}, a.view(), nullptr, {y.data(), tokens, out}, o);
        } else {
            q4k_matmul_f32({w.data(), out, in}, {x.data(), tokens, in}, nullptr, {y.data(), tokens, out}, o);
        }
    }
    state.counters["GB/s"] = benchmark::Counter(double(bytes) * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * out * in * tokens * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void bench_int4g(benchmark::State &state, std::string kernel, std::string target, int64_t out, int64_t in,
                 int64_t tokens, int g) {
    const int64_t ng = in / g;
    const size_t bytes = out * in / 2 + out * ng * 2;
    auto ws = weight_copies(out * in / 2);
    std::vector<uint16_t> scales(out * ng, 0x2000);
    std::vector<float> x(tokens * in, 0.5f), y(tokens * out);
    RunOptions o;
    o.target = target;
    o.kernel = kernel;
    size_t i = 0;
    for (auto _ : state) {
        const auto &w = ws[i++ % ws.size()];
        int4g_matmul({w.data(), scales.data(), out, in, g}, {x.data(), tokens, in}, nullptr, {y.data(), tokens, out}, o);
    }
    state.counters["GB/s"] = benchmark::Counter(double(bytes) * state.iterations(), benchmark::Counter::kIsRate);
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * out * in * tokens * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char **argv) {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
    for (const auto &v : internal::variants()) {
        const std::string k = v.kernel, t = v.target;
        // Fused-norm variants cost the same plus one pass over x: bench_layers times them.
        if (!cpu_can_run(t) || k.find("_norm") != std::string::npos) continue;
        const bool decode = k.find("matvec") != std::string::npos;
        for (int64_t tokens : decode ? std::vector<int64_t>{1} : std::vector<int64_t>{32, 128}) {
            for (auto [out, in] : shapes) {
                const std::string name = k + "/" + t + "/" + std::to_string(out) + "x" + std::to_string(in) +
                                         "/tokens:" + std::to_string(tokens);
                if (k.rfind("q4k_mat", 0) == 0) {
                    benchmark::RegisterBenchmark(name.c_str(), bench_q4k, k, t, out, in, tokens)->UseRealTime();
                } else if (k.rfind("int4g_mat", 0) == 0) {
                    const int g = std::stoi(k.substr(k.rfind("_g") + 2));
                    benchmark::RegisterBenchmark(name.c_str(), bench_int4g, k, t, out, in, tokens, g)->UseRealTime();
                }
            }
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
