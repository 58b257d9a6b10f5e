// Google Benchmark over the kernel table: every runnable variant (row x
// target) of every matmul and dequant row, on the real layer shapes of FORMATS.md
// (Llama-3.2-1B, Llama-3.1-8B, Qwen3-0.6B), for tokens in {1} (matvec
// kernels) or {8, 32, 128, 512} (matmul kernels) and threads in {1, all
// cores}, with weight GB/s and GFLOP/s as counters. Weight buffers rotate
// (copies past 512 MiB) so that decode numbers are not cache-resident;
// QF_BENCH_CACHED=1 keeps one copy, for a kernel's time from cache (what
// its arithmetic allows, apart from DRAM).
// A new kernel row in targets/ is benchmarked here without edits. Packed
// Matmul rows run once more with their plain epilogue in use (name/epilogue).
//
// The whole matrix is large: pick with --benchmark_filter, e.g.
//   qforge_bench --benchmark_filter='q4k_matvec_f32/x86-avx512-vnni/llama-3.1-8b'
#include "qforge/kernels.h"
#include "qforge/pack.h"
#include "random_weights.h"
#include "registry.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace qforge;
using internal::KernelRow;
using internal::Epi;
using internal::Op;
using internal::Out;

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

// epilogue: the kernel's plain epilogue in use (GELU and a residual
// add into y itself), to time against the same row without it. A head_norm
// row normalizes heads of kHeadDim rows (half q's, half k's); with
// `separate`, its plain twin does the matmul and head_rms_norms follows.
constexpr int64_t kHeadDim = 128;
void run_kernel(benchmark::State &state, const KernelRow *row, std::string target, Shape s, int64_t tokens,
                int threads, bool epilogue, bool separate) {
    const KernelRow &r = *row;
    // A glu row reads a gate and an up tile per output tile: twice the bytes for s.out outputs.
    const int64_t bytes = (r.epi == Epi::glu ? 2 : 1) * weight_bytes(r.format, s.out, s.in, r.group);
    // Set and not "0" (QF_BENCH_CACHED=0 once timed cached weights as if from DRAM).
    const char *cached = std::getenv("QF_BENCH_CACHED");
    const size_t copies = cached && *cached && std::strcmp(cached, "0") != 0
                              ? 1
                              : std::max<size_t>(1, std::min<size_t>(64, kRotateBytes / static_cast<size_t>(bytes)));
    const bench::RandomWeights one = bench::random_weights(r.format, s.out, s.in, r.group);
    // Packed rows read the packed layout (R = the row's pack column), as a layer packs it at load.
    std::vector<uint8_t> packed;
    if (r.epi == Epi::glu) {
        packed = pack_gate_up(one.at(one.bytes.data()), one.at(one.bytes.data()), r.pack);
    } else if (r.pack) {
        packed.resize(packed_bytes(r.format, s.out, s.in, r.pack));
        pack_weights(one.at(one.bytes.data()), r.pack, packed.data());
    }
    std::vector<std::vector<uint8_t>> ws(copies, r.pack ? packed : one.bytes);
    std::mt19937 g(3);
    std::normal_distribution<float> n(0, 1);
    const bool dequantize = r.op == Op::dequant;
    std::vector<float> x(tokens * s.in), y(dequantize ? s.out * s.in : tokens * s.out, 0.0f), gamma(s.in, 1.0f);
    for (auto &v : x) v = n(g);
    const Norm norm{Norm::Kind::rms, gamma.data(), nullptr, 1e-5f};
    const ConstMatrix xm{x.data(), tokens, s.in, 0, r.norm ? &norm : nullptr};
    const Matrix ym{y.data(), tokens, s.out};
    Epilogue e;
    if (epilogue) {
        e.activate = true;
        e.act = Activation::gelu_tanh;
        e.residual = ConstMatrix{y.data(), tokens, s.out};
    }
    HeadNorms heads;
    if (r.epi == Epi::head_norm) {
        heads.head_dim = kHeadDim;
        heads.split = (s.out / kHeadDim / 2) * kHeadDim;
        heads.end = s.out;
        heads.q_weight = heads.k_weight = gamma.data();
        e.heads = &heads;
    }
    std::unique_ptr<Q8KBuffer> a;
    if (r.act != ActType::f32 && r.has_act) a = std::make_unique<Q8KBuffer>(tokens, s.in, r.act);
    RunOptions o;
    o.target = target;
    o.kernel = internal::kernel_name(r);
    // scripts/tune.py times the kernel's own variant (-) whatever the shape.
    if (const char *c = std::getenv("QF_BENCH_SHAPE_CLASS")) o.shape_class = c;
    if (separate) o.kernel = o.kernel.substr(0, o.kernel.rfind("_head_norm"));
    const int old_threads = set_num_threads(threads);
    size_t i = 0;
    for (auto _ : state) {
        Weights w = one.at(ws[i++ % copies].data());
        if (r.pack) {
            w.pack_rows = r.pack;
            w.scales = nullptr;  // a packed tile carries its blocks' scales
        }
        if (dequantize) {
            dequant(w, Matrix{y.data(), s.out, s.in}, o);
        } else if (a) {
            q8k_quantize(xm, a->view(), RunOptions{target});  // part of the call, as a layer makes it
            if (r.epi == Epi::glu) {
                matmul_glu(w, a->view(), nullptr, Activation::silu, ym, o);
            } else {
                matmul(w, a->view(), nullptr, e, ym, o);
            }
        } else {
            matmul(w, xm, nullptr, e, ym, o);
        }
    }
    set_num_threads(old_threads);
    state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::kIs1000);
    state.counters["GFLOP/s"] = benchmark::Counter((r.epi == Epi::glu ? 4.0 : 2.0) * s.out * s.in * tokens / 1e9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char **argv) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (const auto &v : internal::variants()) {
        const KernelRow &r = *v.row;
        const std::string kernel = internal::kernel_name(r), target = v.target;
        // Every matmul and dequantizer (f32 out) this CPU runs; quantize and
        // convert are timed inside the rows that use them.
        // A shape class's variant (a tuning database's) is timed where its
        // kernel's calls reach it: the kernel's own benchmarks pick by shape.
        const bool timed = r.weights && (r.op == Op::dequant ? r.out == Out::f32 : true) && !*v.shape_class;
        if (!timed || !cpu_can_run(target) || internal::is_cuda_target(target)) continue;
        const std::vector<int64_t> token_counts =
            r.op == Op::matmul ? std::vector<int64_t>{8, 32, 128, 512} : std::vector<int64_t>{1};
        for (int64_t tokens : token_counts) {
            for (const Shape &s : shapes()) {
                const FormatTraits &t = traits(r.format);
                if (s.in % t.block_elements != 0 || (r.act == ActType::q8_k && s.in % 256 != 0) ||
                    (r.pack && s.in % t.packed_block_elements != 0)) {
                    continue;
                }
                for (int threads : {1, cores}) {
                    const std::string name = kernel + "/" + target + "/" + s.model + "." + s.layer + "/" +
                                             std::to_string(s.out) + "x" + std::to_string(s.in) +
                                             (r.op == Op::dequant ? "" : "/tokens:" + std::to_string(tokens)) +
                                             "/threads:" + std::to_string(threads);
                    if (r.epi == Epi::head_norm && (s.out % kHeadDim != 0 || kHeadDim % r.pack != 0)) continue;
                    for (int variant : {0, 1}) {
                        // 1: the plain epilogue in use, or a head_norm row's separate pass.
                        const bool heads = r.epi == Epi::head_norm;
                        if (variant && (r.op == Op::dequant || r.epi == Epi::glu)) continue;
                        benchmark::RegisterBenchmark(
                            (name + (variant ? heads ? "/separate" : "/epilogue" : "")).c_str(), run_kernel, &r, target,
                            s, tokens, threads, variant && !heads, variant && heads)
                            ->Unit(benchmark::kMillisecond)
                            ->UseRealTime();
                    }
                }
            }
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
