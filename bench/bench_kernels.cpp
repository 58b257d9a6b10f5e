// Google Benchmark over the registry: every runnable variant (kernel x
// target) of every matmul kernel, on the real layer shapes of FORMATS.md
// (Llama-3.2-1B, Llama-3.1-8B, Qwen3-0.6B), for tokens in {1} (matvec
// kernels) or {8, 32, 128, 512} (matmul kernels) and threads in {1, all
// cores}, with weight GB/s and GFLOP/s as counters. Weight buffers rotate
// (copies past 512 MiB) so that decode numbers are not cache-resident.
// A new kernel row in targets/ is benchmarked here without edits.
//
// The whole matrix is large: pick with --benchmark_filter, e.g.
//   qforge_bench --benchmark_filter='q4k_matvec_f32/x86-avx512-vnni/llama-3.1-8b'
#include "qforge/kernels.h"
#include "registry.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace qforge;

constexpr size_t kRotateBytes = size_t{512} << 20;  // far beyond any last-level cache

struct Shape {
    const char *model, *layer;
    int64_t out, in;
};

const std::vector<Shape> &shapes() {
    static const std::vector<Shape> s = {
        {"llama-3.2-1b", "q", 2048, 2048},   {"llama-3.2-1b", "k", 512, 2048},
        {"llama-3.2-1b", "gate", 8192, 2048}, {"llama-3.2-1b", "down", 2048, 8192},
        {"llama-3.1-8b", "q", 4096, 4096},   {"llama-3.1-8b", "k", 1024, 4096},
        {"llama-3.1-8b", "gate", 14336, 4096}, {"llama-3.1-8b", "down", 4096, 14336},
        {"qwen3-0.6b", "q", 2048, 1024},     {"qwen3-0.6b", "o", 1024, 2048},
        {"qwen3-0.6b", "k", 1024, 1024},     {"qwen3-0.6b", "gate", 3072, 1024},
        {"qwen3-0.6b", "down", 1024, 3072},
    };
    return s;
}

// What a kernel name says about its weights and activations.
struct KernelKind {
    DType type = DType::f32;
    int group = 0;          // int4g
    bool q8 = false;        // Q8_K activations (quantized inside the timed loop)
    bool norm = false;      // fused RMSNorm
    bool decode = false;
};

bool starts(const std::string &s, const char *p) { return s.rfind(p, 0) == 0; }

bool kind_of(const std::string &k, KernelKind &out) {
    if (k.find("_mat") == std::string::npos) return false;  // dequant and quantize kernels
    out.decode = k.find("matvec") != std::string::npos;
    out.q8 = k.find("_q8") != std::string::npos;
    out.norm = k.find("_norm") != std::string::npos;
    if (starts(k, "int4g")) {
        out.type = DType::u8;
        out.group = std::stoi(k.substr(k.rfind("_g") + 2));
    } else if (starts(k, "q4k")) {
        out.type = DType::q4_k;
    } else if (starts(k, "q6k")) {
        out.type = DType::q6_k;
    } else if (starts(k, "q8_0")) {
        out.type = DType::q8_0;
    } else if (starts(k, "q4_0")) {
        out.type = DType::q4_0;
    } else if (starts(k, "f16")) {
        out.type = DType::f16;
    } else if (starts(k, "f32")) {
        out.type = DType::f32;
    } else {
        return false;
    }
    return true;
}

int64_t weight_bytes(const KernelKind &k, int64_t out, int64_t in) {
    if (k.type == DType::u8) return out * in / 2 + out * (in / k.group) * 2;
    return storage_bytes(k.type, out * in);
}

// Random weight bytes whose f16 scales are small normal numbers, so the
// kernels see realistic values (no NaN or infinity paths).
std::vector<uint8_t> weight_data(const KernelKind &k, int64_t out, int64_t in) {
    std::mt19937 g(static_cast<unsigned>(out * 7 + in));
    std::vector<uint8_t> w(static_cast<size_t>(weight_bytes(k, out, in)));
    for (auto &b : w) b = static_cast<uint8_t>(g());
    const uint16_t small = 0x1400;  // f16 ~ 0.001
    auto put = [&](size_t at) { w[at] = small & 0xFF; w[at + 1] = small >> 8; };
    if (k.type == DType::u8) {
        for (size_t at = out * in / 2; at + 1 < w.size(); at += 2) put(at);
    } else if (k.type == DType::f16 || k.type == DType::f32) {
        std::normal_distribution<float> n(0, 0.02f);
        if (k.type == DType::f32) {
            auto *f = reinterpret_cast<float *>(w.data());
            for (int64_t i = 0; i < out * in; ++i) f[i] = n(g);
        } else {
            for (size_t at = 0; at + 1 < w.size(); at += 2) put(at);
        }
    } else {
        const BlockShape b = block_shape(k.type);
        const size_t d_at = k.type == DType::q6_k ? 208 : 0;
        for (size_t blk = 0; blk < w.size(); blk += b.bytes) {
            put(blk + d_at);
            if (k.type == DType::q4_k) put(blk + 2);
        }
    }
    return w;
}

void run_kernel(benchmark::State &state, std::string kernel, std::string target, KernelKind k, Shape s,
                int64_t tokens, int threads) {
    const int64_t bytes = weight_bytes(k, s.out, s.in);
    const size_t copies = std::max<size_t>(1, std::min<size_t>(64, kRotateBytes / static_cast<size_t>(bytes)));
    const auto one = weight_data(k, s.out, s.in);
    std::vector<std::vector<uint8_t>> ws(copies, one);
    std::mt19937 g(3);
    std::normal_distribution<float> n(0, 1);
    std::vector<float> x(tokens * s.in), y(tokens * s.out), gamma(s.in, 1.0f);
    for (auto &v : x) v = n(g);
    const Norm norm{Norm::Kind::rms, gamma.data(), nullptr, 1e-5f};
    const ConstMatrix xm{x.data(), tokens, s.in, 0, k.norm ? &norm : nullptr};
    const Matrix ym{y.data(), tokens, s.out};
    std::unique_ptr<Q8KBuffer> a;
    if (k.q8) a = std::make_unique<Q8KBuffer>(tokens, s.in);
    RunOptions o;
    o.target = target;
    o.kernel = kernel;
    const int old_threads = set_num_threads(threads);
    size_t i = 0;
    for (auto _ : state) {
        const uint8_t *w = ws[i++ % copies].data();
        if (k.q8) {
            q8k_quantize(xm, a->view(), RunOptions{target});
            q4k_matmul_q8({w, s.out, s.in}, a->view(), nullptr, ym, o);
        } else if (k.type == DType::u8) {
            const auto *scales = reinterpret_cast<const uint16_t *>(w + s.out * s.in / 2);
            int4g_matmul({w, scales, s.out, s.in, k.group}, xm, nullptr, ym, o);
        } else if (k.type == DType::f32 || k.type == DType::f16) {
            dense_matmul({k.type, w, s.out, s.in}, xm, nullptr, ym, o);
        } else {
            block_matmul_f32({k.type, w, s.out, s.in}, xm, nullptr, ym, o);
        }
    }
    set_num_threads(old_threads);
    state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.out * s.in * tokens / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char **argv) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (const auto &v : internal::variants()) {
        const std::string kernel = v.kernel, target = v.target;
        KernelKind k;
        if (!cpu_can_run(target) || internal::is_cuda_target(target) || !kind_of(kernel, k)) continue;
        for (int64_t tokens : k.decode ? std::vector<int64_t>{1} : std::vector<int64_t>{8, 32, 128, 512}) {
            for (const Shape &s : shapes()) {
                if (s.in % block_shape(k.type == DType::u8 ? DType::q4_0 : k.type).elements != 0) continue;
                for (int threads : {1, cores}) {
                    const std::string name = kernel + "/" + target + "/" + s.model + "." + s.layer + "/" +
                                             std::to_string(s.out) + "x" + std::to_string(s.in) +
                                             "/tokens:" + std::to_string(tokens) + "/threads:" + std::to_string(threads);
                    benchmark::RegisterBenchmark(name.c_str(), run_kernel, kernel, target, k, s, tokens, threads)
                        ->Unit(benchmark::kMillisecond)
                        ->UseRealTime();
                }
            }
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
