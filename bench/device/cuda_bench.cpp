// The CUDA side of the device run (bench/device/run.sh): device-to-device
// copy bandwidth, then every CUDA matmul and dequant kernel on Llama-3.1-8B
// MLP shapes, timed with CUDA events (median of many runs) over enough
// rotating weight copies to defeat the L2, with the max relative error of a
// sample of rows against the float64 reference. Prints one table row per
// case and writes the same as TSV to argv[1] (optional).
#include "qforge/block.h"
#include "qforge/kernels.h"
#include "qforge/layers.h"
#include "qforge/pack.h"

#include "cuda_device.h"
#include "cutlass.h"
#include "registry.h"
#include "random_weights.h"
#include "reference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace qforge;
namespace cu = qforge::internal;

namespace {

std::mt19937_64 rng(1234);

std::vector<float> randf(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v) x = u(rng);
    return v;
}

std::vector<uint8_t> q4k_rows(int64_t out, int64_t in) {
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
    std::vector<uint8_t> d(out * (in / 256) * 144);
    for (auto &b : d) b = static_cast<uint8_t>(byte(rng));
    for (size_t blk = 0; blk < d.size(); blk += 144) {
        for (int f = 0; f < 2; ++f) {
            const uint16_t h = ref::f32_to_f16(scale(rng));
            d[blk + 2 * f] = h & 0xFF;
            d[blk + 2 * f + 1] = h >> 8;
        }
    }
    return d;
}

struct Int4gHost {
    std::vector<uint8_t> nibbles;
    std::vector<uint16_t> scales;   // f16
};

Int4gHost int4g_random(int64_t out, int64_t in, int g) {
    std::uniform_int_distribution<int> byte(0, 255);
    Int4gHost w{std::vector<uint8_t>(out * in / 2), {}};
    for (auto &b : w.nibbles) b = static_cast<uint8_t>(byte(rng));
    for (float f : randf(out * (in / g), -0.05f, 0.05f)) w.scales.push_back(ref::f32_to_f16(f));
    return w;
}

struct Dev {
    void *p = nullptr;
    size_t bytes = 0;
    Dev() = default;
    explicit Dev(size_t n) : p(cu::cuda_alloc(n)), bytes(n) {}
    template <typename T>
    explicit Dev(const std::vector<T> &v) : Dev(v.size() * sizeof(T)) { cu::cuda_upload(p, v.data(), bytes); }
    Dev(const Dev &) = delete;
    Dev(Dev &&o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
    Dev &operator=(Dev &&o) noexcept {
        std::swap(p, o.p);
        std::swap(bytes, o.bytes);
        return *this;
    }
    ~Dev() { cu::cuda_free(p); }
    template <typename T>
    T *as() const { return static_cast<T *>(p); }
};

// QF_BENCH_QUICK=1: decode rows only, few runs (for a profiler's pass);
// QF_BENCH_QUICK=host: only the host cost per call (host_costs).
// QF_BENCH_QKV=1: only bench_qkv_norms.
const bool quick = std::getenv("QF_BENCH_QUICK") != nullptr;

// Host microseconds per call of the last median_ms: the time to issue the
// calls (launches return before the GPU runs them). A row whose GPU time is
// not much above it is bound by launching, not by the kernels.
double host_us = 0;

// Median milliseconds of `reps` runs of f(i), each bracketed by events.
template <typename F>
double median_ms(F f, int reps) {
    if (quick) reps = 10;
    for (int i = 0; i < 5; ++i) f(i);
    cu::cuda_synchronize();
    std::vector<void *> ev(reps + 1);
    for (auto &e : ev) e = cu::cuda_event();
    const auto t0 = std::chrono::steady_clock::now();
    cu::cuda_record(ev[0]);
    for (int i = 0; i < reps; ++i) {
        f(i);
        cu::cuda_record(ev[i + 1]);
    }
    host_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
    cu::cuda_synchronize();
    std::vector<double> t(reps);
    for (int i = 0; i < reps; ++i) t[i] = cu::cuda_elapsed_ms(ev[i], ev[i + 1]);
    std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
    return t[reps / 2];
}

double copy_bandwidth() {
    const size_t bytes = size_t{1} << 30;
    Dev a(bytes), b(bytes);
    const double ms = median_ms([&](int) { cu::cuda_copy(b.p, a.p, bytes); }, 20);
    return 2.0 * bytes / (ms * 1e-3);   // read + write
}

FILE *tsv = nullptr;
double copy_bw = 0;

void row(const char *kernel, int64_t out, int64_t in, int64_t tokens, double ms, double bytes, double flops,
         double err, const char *target) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-26s %6lldx%-6lld %5lld %10.4f %9.1f %7.1f%% %9.1f %10.2e %8.1f  %s\n", kernel, (long long)out,
                (long long)in, (long long)tokens, ms, gbs, 100.0 * bytes / (ms * 1e-3) / copy_bw,
                flops / (ms * 1e-3) / 1e12, err, host_us, target);
    if (tsv) {
        std::fprintf(tsv, "%s\t%lld\t%lld\t%lld\t%.5f\t%.1f\t%.2f\t%.2f\t%.3e\t%.1f\t%s\n", kernel, (long long)out,
                     (long long)in, (long long)tokens, ms, gbs, 100.0 * bytes / (ms * 1e-3) / copy_bw,
                     flops / (ms * 1e-3) / 1e12, err, host_us, target);
        std::fflush(tsv);
    }
}

// max |y - ref| / max |ref| over the first `rows` rows of every token.
double max_rel_err(const std::vector<float> &y, const std::vector<double> &ref, int64_t tokens, int64_t out,
                   int64_t rows) {
    double num = 0, den = 0;
    for (int64_t n = 0; n < tokens; ++n) {
        for (int64_t r = 0; r < rows; ++r) {
            num = std::max(num, std::fabs(y[n * out + r] - ref[n * rows + r]));
            den = std::max(den, std::fabs(ref[n * rows + r]));
        }
    }
    return den > 0 ? num / den : num;
}

int copies_for(size_t bytes) { return static_cast<int>(std::max<size_t>(2, (size_t{400} << 20) / bytes + 1)); }

// Options that run `kernel` (or the default one) of `target` on device pointers.
RunOptions on_cuda(const std::string &target, const std::string &kernel = "") {
    RunOptions o;
    o.memory = Memory::cuda;
    o.target = target;
    o.kernel = kernel;
    return o;
}

// A random Q4_K matrix and enough device copies of it that rotating over
// them defeats the L2.
struct Q4KOnDevice {
    size_t bytes;
    std::vector<uint8_t> host;
    std::vector<Dev> copies;
    Q4KOnDevice(int64_t out, int64_t in) : bytes(out * (in / 256) * 144), host(q4k_rows(out, in)) {
        for (int i = 0, n = copies_for(bytes); i < n; ++i) copies.emplace_back(host);
    }
    const uint8_t *at(int i) const { return copies[i % copies.size()].as<uint8_t>(); }
};

// Q4_K -> f16, the first half of the layers' prefill path.
void bench_q4k_dequant(int64_t out, int64_t in, const std::string &kernel, const std::string &target) {
    const Q4KOnDevice w(out, in);
    Dev wh(out * in * 2);
    const RunOptions o = on_cuda(target, kernel);
    const double ms = median_ms([&](int i) { dequant(Weights{Format::q4_k, w.at(i), out, in}, MatrixF16{wh.as<uint16_t>(), out, in}, o); }, 50);
    row(kernel.empty() ? "q4k_dequant_f16" : kernel.c_str(), out, in, 0, ms, w.bytes + 2.0 * out * in, 0, NAN, target.c_str());
}

void bench_q4k(int64_t out, int64_t in, const std::vector<int64_t> &token_counts, const std::string &target) {
    const Q4KOnDevice w(out, in);
    const size_t wbytes = w.bytes;
    const int64_t check_rows = std::min<int64_t>(out, 64);
    const RunOptions o1 = on_cuda(target);
    for (int64_t tokens : token_counts) {
        auto x = randf(tokens * in, -1, 1);
        Dev xd(x), yd(tokens * out * 4);
        const RunOptions &o = o1;
        std::vector<double> ref(tokens * check_rows), mag(tokens * check_rows);
        ref::q4k_matmul_f32(w.host.data(), check_rows, in, x.data(), tokens, nullptr, ref.data(), mag.data());
        std::vector<float> y(tokens * out);
        const double flops = 2.0 * out * in * tokens;
        const double bytes = wbytes + 4.0 * tokens * (in + out);
        // f32 activations.
        auto f32 = [&](int i) {
            matmul(Weights{Format::q4_k, w.at(i), out, in}, ConstMatrix{xd.as<float>(), tokens, in}, nullptr,
                           {yd.as<float>(), tokens, out}, o);
        };
        const double ms = median_ms(f32, 100);
        cu::cuda_download(y.data(), yd.p, y.size() * 4);
        row(tokens == 1 ? "q4k_matvec_f32" : "q4k_matmul_f32", out, in, tokens, ms, bytes, flops,
            max_rel_err(y, ref, tokens, out, check_rows), target.c_str());
        // Q8_K activations: quantize, then the integer-dot kernel; both timed.
        Dev qd(tokens * (in / 256) * 4), qq(tokens * in), qb(tokens * (in / 16) * 2);
        Q8KActivations a{qd.as<float>(), qq.as<int8_t>(), qb.as<int16_t>(), tokens, in};
        auto q8 = [&](int i) {
            q8k_quantize({xd.as<float>(), tokens, in}, a, o);
            matmul(Weights{Format::q4_k, w.at(i), out, in}, a, nullptr, {yd.as<float>(), tokens, out}, o);
        };
        const double ms8 = median_ms(q8, 100);
        cu::cuda_download(y.data(), yd.p, y.size() * 4);
        row(tokens == 1 ? "q8k+q4k_matvec_q8" : "q8k+q4k_matmul_q8", out, in, tokens, ms8, bytes, flops,
            max_rel_err(y, ref, tokens, out, check_rows), target.c_str());
        auto q8only = [&](int i) {
            matmul(Weights{Format::q4_k, w.at(i), out, in}, a, nullptr, {yd.as<float>(), tokens, out}, o);
        };
        const double ms8o = median_ms(q8only, 100);
        row(tokens == 1 ? "q4k_matvec_q8" : "q4k_matmul_q8", out, in, tokens, ms8o, bytes, flops, NAN,
            target.c_str());
    }
    if (!quick) bench_q4k_dequant(out, in, "", target);
}

void bench_int4g(int64_t out, int64_t in, int g, const std::vector<int64_t> &token_counts, const std::string &target,
                 const std::string &kernel = "") {
    const int64_t ng = in / g;
    const size_t wbytes = out * in / 2 + out * ng * 2;
    const int ncopies = copies_for(wbytes);
    const auto [w, s] = int4g_random(out, in, g);
    std::vector<Dev> wd, sd;
    for (int i = 0; i < ncopies; ++i) {
        wd.emplace_back(w);
        sd.emplace_back(s);
    }
    const int64_t check_rows = std::min<int64_t>(out, 64);
    for (int64_t tokens : token_counts) {
        auto x = randf(tokens * in, -1, 1);
        Dev xd(x), yd(tokens * out * 4);
        const RunOptions o = on_cuda(target, kernel);
        std::vector<double> ref(tokens * check_rows), mag(tokens * check_rows);
        ref::int4g_matmul(w.data(), s.data(), check_rows, in, g, x.data(), tokens, nullptr, ref.data(), mag.data());
        auto f = [&](int i) {
            matmul(Weights{Format::int4g, wd[i % ncopies].as<uint8_t>(), out, in, 0, sd[i % ncopies].as<uint16_t>(), g},
                   ConstMatrix{xd.as<float>(), tokens, in}, nullptr, {yd.as<float>(), tokens, out}, o);
        };
        const double ms = median_ms(f, 100);
        std::vector<float> y(tokens * out);
        cu::cuda_download(y.data(), yd.p, y.size() * 4);
        const std::string name = kernel.empty() ? std::string(tokens == 1 ? "int4g_matvec_f32_g" : "int4g_matmul_f32_g") + std::to_string(g) : kernel;
        row(name.c_str(), out, in, tokens, ms, wbytes + 4.0 * tokens * (in + out), 2.0 * out * in * tokens,
            max_rel_err(y, ref, tokens, out, check_rows), target.c_str());
    }
}

// int4g x Q8_0 decode on CUDA: the weights packed once on the host in tiles
// of 32 rows (the CUDA packed rows), uploaded, copies rotating; the
// quantizer timed on its own, the kernel against the f32 reference.
void bench_int4g_q8_packed(int64_t out, int64_t in, int g, const std::string &target, const std::string &kernel = "") {
    const auto [w, s] = int4g_random(out, in, g);
    const Weights host{Format::int4g, w.data(), out, in, 0, s.data(), g};
    std::vector<uint8_t> packed(packed_bytes(Format::int4g, out, in, 32));
    pack_weights(host, 32, packed.data());
    std::vector<Dev> copies;
    for (int i = 0, n = copies_for(packed.size()); i < n; ++i) copies.emplace_back(packed);
    const int64_t check_rows = std::min<int64_t>(out, 64);
    auto x = randf(in, -1, 1);
    Dev xd(x), yd(out * 4), qd((in / 32) * 4), qq(in), qs((in / 32) * 2);
    std::vector<double> ref(check_rows), mag(check_rows);
    ref::int4g_matmul(w.data(), s.data(), check_rows, in, g, x.data(), 1, nullptr, ref.data(), mag.data());
    const Q8KActivations a{qd.as<float>(), qq.as<int8_t>(), qs.as<int16_t>(), 1, in, ActType::q8_0};
    RunOptions o = on_cuda(target);
    const double qms = median_ms([&](int) { q8k_quantize({xd.as<float>(), 1, in}, a, o); }, 200);
    row("q8_0_quantize", 1, in, 1, qms, 4.0 * in + in + in / 8, 0, NAN, target.c_str());
    o.kernel = kernel;
    auto f = [&](int i) {
        Weights pw{Format::int4g, copies[i % copies.size()].as<uint8_t>(), out, in, 0, nullptr, g};
        pw.pack_rows = 32;
        matmul(pw, a, nullptr, {yd.as<float>(), 1, out}, o);
    };
    const double ms = median_ms(f, 200);
    std::vector<float> y(out);
    cu::cuda_download(y.data(), yd.p, y.size() * 4);
    const std::string name = kernel.empty() ? "int4g_matvec_q8_0_g" + std::to_string(g) + "_x32" : kernel;
    row(name.c_str(), out, in, 1, ms, packed.size() + 4.0 * (in + out), 2.0 * out * in, max_rel_err(y, ref, 1, out, check_rows),
        target.c_str());
}

// QF_BENCH_TUNE=1: the schedule variants built with -DQF_TUNING=ON
// (kernel@tag, targets.cmake) next to the defaults, decode only.
void bench_q4k_variant(int64_t out, int64_t in, const std::string &kernel, const std::string &target,
                       int64_t tokens = 1) {
    const Q4KOnDevice w(out, in);
    const size_t wbytes = w.bytes;
    const int64_t check_rows = std::min<int64_t>(out, 64);
    const RunOptions o = on_cuda(target, kernel);
    auto x = randf(tokens * in, -1, 1);
    Dev xd(x), yd(tokens * out * 4);
    std::vector<double> ref(tokens * check_rows), mag(tokens * check_rows);
    ref::q4k_matmul_f32(w.host.data(), check_rows, in, x.data(), tokens, nullptr, ref.data(), mag.data());
    std::vector<float> y(tokens * out);
    auto f = [&](int i) {
        matmul(Weights{Format::q4_k, w.at(i), out, in}, ConstMatrix{xd.as<float>(), tokens, in}, nullptr,
                       {yd.as<float>(), tokens, out}, o);
    };
    const double ms = median_ms(f, 200);
    cu::cuda_download(y.data(), yd.p, y.size() * 4);
    row(kernel.c_str(), out, in, tokens, ms, wbytes + 4.0 * tokens * (in + out), 2.0 * out * in * tokens,
        max_rel_err(y, ref, tokens, out, check_rows), target.c_str());
}

// Q4_K x Q8_K decode; with R > 0 the rows packed once on the host in tiles
// of R (a packed CUDA variant: R = 32, a warp's rows) and uploaded, copies
// rotating as for the file's layout, against the same reference.
void bench_q4k_q8_variant(int64_t out, int64_t in, const std::string &kernel, const std::string &target, int R = 0) {
    const Q4KOnDevice w(out, in);
    std::vector<uint8_t> packed;
    std::vector<Dev> packed_copies;
    if (R > 0) {
        packed.resize(packed_bytes(Format::q4_k, out, in, R));
        pack_weights(Weights{Format::q4_k, w.host.data(), out, in}, R, packed.data());
        for (int i = 0, n = copies_for(packed.size()); i < n; ++i) packed_copies.emplace_back(packed);
    }
    const size_t wbytes = R > 0 ? packed.size() : w.bytes;
    const int64_t check_rows = std::min<int64_t>(out, 64);
    RunOptions o = on_cuda(target);
    auto x = randf(in, -1, 1);
    Dev xd(x), yd(out * 4);
    std::vector<double> ref(check_rows), mag(check_rows);
    ref::q4k_matmul_f32(w.host.data(), check_rows, in, x.data(), 1, nullptr, ref.data(), mag.data());
    Dev qd((in / 256) * 4), qq(in), qb((in / 16) * 2);
    Q8KActivations a{qd.as<float>(), qq.as<int8_t>(), qb.as<int16_t>(), 1, in};
    if (kernel == "q4k_matvec_q8") {  // the default: time its quantizer too
        const double qms = median_ms([&](int) { q8k_quantize({xd.as<float>(), 1, in}, a, o); }, 200);
        row("q8k_quantize", 1, in, 1, qms, 4.0 * in + in + in / 8 + in / 64, 0, NAN, target.c_str());
    }
    q8k_quantize({xd.as<float>(), 1, in}, a, o);
    o.kernel = kernel;
    auto f = [&](int i) {
        Weights pw{Format::q4_k, w.at(i), out, in};
        if (R > 0) {
            pw.data = packed_copies[i % packed_copies.size()].as<uint8_t>();
            pw.pack_rows = R;
        }
        matmul(pw, a, nullptr, {yd.as<float>(), 1, out}, o);
    };
    const double ms = median_ms(f, 200);
    std::vector<float> y(out);
    cu::cuda_download(y.data(), yd.p, y.size() * 4);
    row(kernel.c_str(), out, in, 1, ms, wbytes + 4.0 * (in + out), 2.0 * out * in, max_rel_err(y, ref, 1, out, check_rows),
        target.c_str());
}

void bench_variants(const std::string &target) {
    for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{14336, 4096}, {4096, 14336}}) {
        bench_q4k_variant(out, in, "q4k_matvec_f32", target);
        for (int64_t t : {2, 4, 8}) bench_q4k_variant(out, in, "q4k_matmul_f32", target, t);
        bench_q4k_q8_variant(out, in, "q4k_matvec_q8", target);
        bench_q4k_dequant(out, in, "", target);
        bench_int4g(out, in, 128, {1}, target);
        bench_int4g_q8_packed(out, in, 128, target);
        // The schedule variants (tagged rows) of this target, by their columns.
        for (const auto &v : internal::variants()) {
            const internal::KernelRow &r = *v.row;
            const std::string k = internal::kernel_name(r);
            if (!*r.tag || target != v.target) continue;
            const bool q4k = r.format == Format::q4_k, f32 = r.act == ActType::f32;
            if (q4k && r.op == internal::Op::matvec && f32) bench_q4k_variant(out, in, k, target);
            if (r.format == Format::int4g && r.group == 128 && r.op == internal::Op::matvec) {
                if (r.pack) {
                    bench_int4g_q8_packed(out, in, 128, target, k);
                } else {
                    bench_int4g(out, in, 128, {1}, target, k);
                }
            }
            if (q4k && r.op == internal::Op::matvec && !f32) bench_q4k_q8_variant(out, in, k, target, r.pack);
            if (q4k && r.op == internal::Op::dequant && r.out == internal::Out::f16) bench_q4k_dequant(out, in, k, target);
            if (q4k && r.op == internal::Op::matmul && f32) {
                for (int64_t t : {2, 4, 8}) bench_q4k_variant(out, in, k, target, t);
            }
        }
    }
}

// A layer's forward as an app calls it, down each CUDA path (the fused
// Halide kernels, dequantize-to-f16 + cuBLAS) and as the runtime's rule
// picks (cuda_gemm_min_tokens); `peer` is an eager_f16 layer on cuBLAS, i.e.
// cuBLAS fp16 in this process. Weights rotate over layer copies.
void bench_layer(const char *name, const WeightRef &w, size_t wbytes, const std::vector<int64_t> &token_counts,
                 Strategy strategy = Strategy::fused) {
    const int ncopies = copies_for(wbytes);
    LayerOptions lo;
    lo.memory = Memory::cuda;
    lo.strategy = strategy;
    std::vector<std::unique_ptr<Linear>> layers;
    for (int i = 0; i < ncopies; ++i) layers.push_back(make_linear(name, w, nullptr, lo));
    const int64_t check_rows = std::min<int64_t>(w.out, 64);
    for (int64_t tokens : token_counts) {
        auto x = randf(tokens * w.in, -1, 1);
        Dev xd(x), yd(tokens * w.out * 4);
        std::vector<double> ref(tokens * check_rows);
        if (w.format == Format::q4_k) {
            ref::q4k_matmul_f32(static_cast<const uint8_t *>(w.data), check_rows, w.in, x.data(), tokens, nullptr, ref.data());
        } else {
            ref::int4g_matmul(static_cast<const uint8_t *>(w.data), w.scales, check_rows, w.in, w.group_size, x.data(),
                              tokens, nullptr, ref.data());
        }
        struct Path {
            CudaGemm gemm;
            Activations act;
            const char *suffix;
        };
        // /halide_q8: the Halide kernels with 8-bit activations (the quantizer's kernel, then the integer dots).
        const Path paths[] = {{CudaGemm::halide, Activations::f32, "/halide"},
                              {CudaGemm::halide, Activations::q8, "/halide_q8"},
                              {CudaGemm::cublas, Activations::automatic, "/cublas"},
                              {CudaGemm::cutlass, Activations::automatic, "/cutlass"},
                              {CudaGemm::automatic, Activations::automatic, "/auto"}};
        // CUTLASS's int4 GEMM: int4g layers on sm_90 only.
        const bool cutlass = w.format == Format::int4g && cu::cutlass_absent().empty() &&
                             cu::cutlass_int4_shape_absent(w.out, w.in, w.group_size).empty();
        bool has_q8 = false;  // a CUDA 8-bit-activation row of the file's layout
        for (const auto &v : cu::variants()) {
            const cu::KernelRow &r = *v.row;
            has_q8 |= r.weights && r.format == w.format && r.act != ActType::f32 && !r.pack && !*r.tag &&
                      cu::is_cuda_target(v.target);
        }
        for (auto [path, act, suffix] : paths) {
            if (strategy == Strategy::eager_f16 && path != CudaGemm::cublas) continue;
            if (path == CudaGemm::cutlass && !cutlass) continue;
            if (act == Activations::q8 && (!has_q8 || tokens >= traits(w.format).cuda_gemm_min_tokens)) continue;
            ForwardOptions fo;
            fo.run.memory = Memory::cuda;
            fo.cuda_gemm = path;
            fo.activations = act;
            auto f = [&](int i) {
                layers[i % ncopies]->forward(ConstMatrix{xd.as<float>(), tokens, w.in}, Matrix{yd.as<float>(), tokens, w.out}, fo);
            };
            const double ms = median_ms(f, 50);
            std::vector<float> y(tokens * w.out);
            cu::cuda_download(y.data(), yd.p, y.size() * 4);
            const std::string label = std::string(name) + suffix;
            row(label.c_str(), w.out, w.in, tokens, ms, wbytes + 4.0 * tokens * (w.in + w.out), 2.0 * w.out * w.in * tokens,
                max_rel_err(y, ref, tokens, w.out, check_rows), "layer");
        }
    }
}

void bench_layers(int64_t out, int64_t in, const std::vector<int64_t> &token_counts) {
    const auto q = q4k_rows(out, in);
    WeightRef wq;
    wq.format = Format::q4_k;
    wq.data = q.data();
    wq.out = out;
    wq.in = in;
    bench_layer("layer_q4k", wq, q.size(), token_counts);
    const auto [nib, sc] = int4g_random(out, in, 128);
    WeightRef wi;
    wi.format = Format::int4g;
    wi.data = nib.data();
    wi.scales = sc.data();
    wi.group_size = 128;
    wi.out = out;
    wi.in = in;
    bench_layer("layer_int4g_g128", wi, nib.size() + sc.size() * 2, token_counts);
    // cuBLAS fp16 on the same values (the int4g layer dequantized once, f16 weights read per call).
    bench_layer("cublas_f16_peer", wi, 2 * out * in, token_counts, Strategy::eager_f16);
}

// Qwen3-8B's attention input projection on CUDA (hidden 4096, 32 q heads
// and 8 KV heads of 128, Q4_K): forward_qkv, whose q/k norms run as the
// head_norm kernel after the matmul there, against the projection alone;
// the difference is what a head_norm epilogue could save on CUDA.
void bench_qkv_norms(const std::vector<int64_t> &token_counts) {
    const int64_t hidden = 4096, D = 128, q_dim = 32 * D, kv_dim = 8 * D, total = q_dim + 2 * kv_dim;
    LayerOptions lo;
    lo.memory = Memory::cuda;
    auto layer = [&](const char *name, int64_t out, std::vector<uint8_t> &bytes) {
        bytes = q4k_rows(out, hidden);
        WeightRef w;
        w.format = Format::q4_k;
        w.data = bytes.data();
        w.out = out;
        w.in = hidden;
        return make_linear(name, w, nullptr, lo);
    };
    std::vector<uint8_t> bq, bk, bv, bo;
    auto q = layer("q", q_dim, bq), k = layer("k", kv_dim, bk), v = layer("v", kv_dim, bv);
    auto o = layer("o", hidden, bo);
    AttentionProjections a(QKVProjection::separate(std::move(q), std::move(k), std::move(v)), std::move(o), D,
                           NormWeights(Norm::Kind::rms, randf(D, 0.5f, 1.5f), {}, 1e-6f, Memory::cuda),
                           NormWeights(Norm::Kind::rms, randf(D, 0.5f, 1.5f), {}, 1e-6f, Memory::cuda));
    for (int64_t tokens : token_counts) {
        Dev xd(randf(tokens * hidden, -1, 1)), yd(tokens * total * 4);
        ForwardOptions fo;
        fo.run.memory = Memory::cuda;
        const ConstTensor x{xd.as<float>(), {tokens, hidden}};
        const Tensor y{yd.as<float>(), {tokens, total}};
        const double bytes = bq.size() + bk.size() + bv.size() + 4.0 * tokens * (hidden + total);
        const double flops = 2.0 * total * hidden * tokens;
        const double with = median_ms([&](int) { a.forward_qkv(x, y, fo); }, 50);
        row("qkv_q4k/with_norms", total, hidden, tokens, with, bytes, flops, 0, "layer");
        const double without = median_ms([&](int) { a.qkv().forward(x, y, fo); }, 50);
        row("qkv_q4k/without_norms", total, hidden, tokens, without, bytes, flops, 0, "layer");
    }
}

// Where a call's host time goes: the driver queries every entry point
// makes per pointer, and a whole call of a one-kernel pipeline (x to f16,
// 16 values) that does no real work.
void host_costs() {
    Dev d(1 << 20), x(64 * 4), y(64 * 2);
    std::vector<float> h(1024);
    auto per_call = [](auto f, int n) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) f();
        return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
    };
    const double dev_kind = per_call([&] { (void)cu::cuda_pointer_kind(d.p); }, 10000);
    const double host_kind = per_call([&] { (void)cu::cuda_pointer_kind(h.data()); }, 10000);
    const double ctx = per_call([] { (void)cu::cuda_context(); }, 10000);
    RunOptions o;
    o.memory = Memory::cuda;
    f16_from_f32({x.as<float>(), 1, 16}, MatrixF16{y.as<uint16_t>(), 1, 16}, o);   // loads the module
    cu::cuda_synchronize();
    const double call = per_call([&] { f16_from_f32({x.as<float>(), 1, 16}, MatrixF16{y.as<uint16_t>(), 1, 16}, o); }, 2000);
    cu::cuda_synchronize();
    // The converter is CUDA-only; on the host, the smallest f32 matvec.
    std::vector<float> hx(64, 1.0f), hw(64, 0.5f), hy(4);
    const double host_call =
        per_call([&] { matmul(Weights{Format::f32, hw.data(), 1, 16}, ConstMatrix{hx.data(), 1, 16}, nullptr, Matrix{hy.data(), 1, 1}); },
                 20000);
    std::printf("host us per call: cuda_pointer_kind device %.2f, host %.2f; cuda_context %.2f; "
                "f16_from_f32 1x16 on CUDA %.2f, f32 matvec 1x16 on the host %.2f\n",
                dev_kind, host_kind, ctx, call, host_call);
}

// One weight-taking row of the kernel table at out x in: random weights
// (packed once on the host in the row's tiles where it has them), enough
// device copies of them to defeat the L2, activations (quantized once for
// an 8-bit row) and an output; call(i, kernel) runs kernel `kernel` (the
// row's own, or a schedule variant of it: kernel@tag) on copy i.
struct RowCase {
    const cu::KernelRow &r;
    int64_t out, in, tokens;
    std::string target;
    bench::RandomWeights w;
    std::vector<uint8_t> packed;
    std::vector<Dev> copies;
    Dev xd, yd, gamma, qd, qq, qb;
    Norm norm;
    bool q8;
    ActType act;

    RowCase(const cu::KernelRow &row, int64_t out_, int64_t in_, int64_t tokens_, const std::string &t)
        : r(row), out(out_), in(in_), tokens(tokens_), target(t), w(bench::random_weights(r.format, out, in, r.group)),
          xd(randf(tokens * in, -1, 1)), yd(std::max(tokens * out, out * in) * 4), gamma(std::vector<float>(in, 1.0f)),
          norm{Norm::Kind::rms, gamma.as<float>(), nullptr, 1e-5f},
          q8(r.act == ActType::q8_k || r.act == ActType::q8_0), act(q8 ? r.act : ActType::q8_k) {
        if (r.pack) {
            packed.resize(packed_bytes(r.format, out, in, r.pack));
            pack_weights(w.at(w.bytes.data()), r.pack, packed.data());
        }
        for (int i = 0, n = copies_for(bytes().size()); i < n; ++i) copies.emplace_back(bytes());
        qd = Dev(tokens * (in / act_block(act)) * 4);
        qq = Dev(tokens * in);
        qb = Dev(tokens * (in / act_sum_block(act)) * 2);
        if (q8) q8k_quantize(x(), activations(), on_cuda(target));
    }
    const std::vector<uint8_t> &bytes() const { return r.pack ? packed : w.bytes; }
    ConstMatrix x() const { return ConstMatrix{xd.as<float>(), tokens, in, 0, r.norm ? &norm : nullptr}; }
    Q8KActivations activations() const {
        return Q8KActivations{qd.as<float>(), qq.as<int8_t>(), qb.as<int16_t>(), tokens, in, act};
    }
    bool is_dequant() const { return r.op == cu::Op::dequant; }
    size_t out_elems() const { return is_dequant() ? out * in : tokens * out; }
    void call(int i, const std::string &kernel) {
        const RunOptions o = on_cuda(target, kernel);
        Weights wv = w.at(copies[i % copies.size()].as<uint8_t>());
        if (r.pack) {
            wv.scales = nullptr;
            wv.zeros = nullptr;
            wv.pack_rows = r.pack;
        }
        if (is_dequant() && r.out == cu::Out::f16) {
            dequant(wv, MatrixF16{yd.as<uint16_t>(), out, in}, o);
        } else if (is_dequant()) {
            dequant(wv, Matrix{yd.as<float>(), out, in}, o);
        } else if (q8) {
            matmul(wv, activations(), nullptr, Matrix{yd.as<float>(), tokens, out}, o);
        } else {
            matmul(wv, x(), nullptr, Matrix{yd.as<float>(), tokens, out}, o);
        }
    }
    // The output of the last call as floats (f16 outputs widened).
    std::vector<float> result() const {
        std::vector<float> y(out_elems());
        if (is_dequant() && r.out == cu::Out::f16) {
            std::vector<uint16_t> h(y.size());
            cu::cuda_download(h.data(), yd.p, h.size() * 2);
            for (size_t i = 0; i < h.size(); ++i) y[i] = ref::f16_to_f32(h[i]);
        } else {
            cu::cuda_synchronize();
            cu::cuda_download(y.data(), yd.p, y.size() * 4);
        }
        return y;
    }
    double moved_bytes() const {
        return bytes().size() + (is_dequant() ? (r.out == cu::Out::f16 ? 2.0 : 4.0) * out * in : 4.0 * tokens * out);
    }
    double flops() const { return is_dequant() ? 0 : 2.0 * out * in * tokens; }
};

// Every CUDA row of the kernel table that computes on weights (decode,
// batch, dequantize), at one shape, as the CPU benchmark covers every CPU
// row: a new row is timed here without edits.
void bench_table(const std::string &target) {
    const int64_t out = 4096, in = 4096, batch = 16;
    for (const auto &v : cu::variants()) {
        const cu::KernelRow &r = *v.row;
        if (target != v.target || *r.tag || !r.weights) continue;
        RowCase c(r, out, in, r.op == cu::Op::matmul ? batch : 1, target);
        const std::string name = cu::kernel_name(r);
        const double ms = median_ms([&](int i) { c.call(i, name); }, 50);
        row(name.c_str(), out, in, c.is_dequant() ? 0 : c.tokens, ms, c.moved_bytes(), c.flops(), NAN, target.c_str());
    }
}

// scripts/tune.py's device side (qforge_cuda_bench --tune KERNEL ROUNDS
// FILE): the schedule variants of KERNEL built here (kernel@tag: the
// candidates tune.py wrote to QF_TUNING_ROWS) against the kernel itself,
// on Llama-3.1-8B's MLP and fused QKV and a small layer (tune_cuda.py's SHAPES), in
// `rounds` rounds whose order rotates (so that each one's place in a
// round cancels), weights rotated past the L2. Each candidate's output is
// compared with the kernel's on the same call first. One JSON object per
// candidate and shape, a line each, to FILE.
int tune(const std::string &kernel, int rounds, const char *path, const std::string &target) {
    std::vector<const cu::Variant *> cands;
    const cu::Variant *own = nullptr;
    for (const auto &v : cu::variants()) {
        if (v.target != target || *v.shape_class) continue;
        const std::string name = cu::kernel_name(*v.row);
        if (name == kernel) own = &v;
        if (*v.row->tag && name.rfind(kernel + "@", 0) == 0) cands.push_back(&v);
    }
    if (!own || !own->row->weights) {
        std::fprintf(stderr, "cuda_bench --tune: no kernel %s on weights for %s in this build\n", kernel.c_str(), target.c_str());
        return 2;
    }
    FILE *f = std::fopen(path, "w");
    if (!f) {
        std::fprintf(stderr, "cuda_bench --tune: cannot write %s\n", path);
        return 2;
    }
    std::printf("-- tuning %s: %zu candidates, %d rounds\n", kernel.c_str(), cands.size(), rounds);
    const int64_t tokens = own->row->op == cu::Op::matmul ? 8 : 1;
    for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{14336, 4096}, {4096, 14336}, {6144, 4096}, {2048, 2048}}) {
        RowCase c(*own->row, out, in, tokens, target);
        std::vector<std::string> names{kernel};
        for (const cu::Variant *v : cands) names.push_back(cu::kernel_name(*v->row));
        c.call(0, kernel);
        const std::vector<float> want = c.result();
        std::vector<double> diff(names.size(), 0.0);
        std::vector<std::string> failed(names.size());
        double mag = 0;
        for (float v : want) mag = std::max(mag, std::fabs(double(v)));
        for (size_t k = 1; k < names.size(); ++k) {
            try {
                c.call(0, names[k]);
                const std::vector<float> got = c.result();
                for (size_t i = 0; i < got.size(); ++i) diff[k] = std::max(diff[k], std::fabs(double(got[i]) - want[i]));
                if (!(diff[k] <= 1e-4 * mag)) failed[k] = "output differs from the kernel's";
                diff[k] /= mag > 0 ? mag : 1;
            } catch (const std::exception &e) {
                failed[k] = e.what();
            }
        }
        std::vector<std::vector<double>> ms(names.size());
        for (int round = 0; round < rounds; ++round) {
            for (size_t j = 0; j < names.size(); ++j) {
                const size_t k = (j + round) % names.size();
                if (!failed[k].empty()) continue;
                ms[k].push_back(median_ms([&](int i) { c.call(i, names[k]); }, 50));
            }
        }
        for (size_t k = 1; k < names.size(); ++k) {
            std::fprintf(f, "{\"kernel\": \"%s\", \"candidate\": \"%s\", \"shape\": \"%lldx%lld\", \"tokens\": %lld, "
                            "\"gpu\": \"%s\", \"default_ms\": [", kernel.c_str(), names[k].c_str(), (long long)out,
                         (long long)in, (long long)tokens, cu::cuda_device().name.c_str());
            for (size_t i = 0; i < ms[0].size(); ++i) std::fprintf(f, "%s%.5f", i ? ", " : "", ms[0][i]);
            std::fprintf(f, "], \"ms\": [");
            for (size_t i = 0; i < ms[k].size(); ++i) std::fprintf(f, "%s%.5f", i ? ", " : "", ms[k][i]);
            std::string why = failed[k];
            for (char &ch : why) {
                if (ch == '"' || ch == '\\' || ch == '\n') ch = ' ';
            }
            std::fprintf(f, "], \"rel_diff\": %.3e, \"failed\": \"%s\"}\n", diff[k], why.c_str());
            const double own_ms = ms[0].empty() ? NAN : ms[0][ms[0].size() / 2];
            const double cand_ms = ms[k].empty() ? NAN : ms[k][ms[k].size() / 2];
            std::printf("%-40s %6lldx%-6lld %10.4f ms against %10.4f  %s\n", names[k].c_str(), (long long)out, (long long)in,
                        cand_ms, own_ms, why.c_str());
        }
        std::fflush(f);
    }
    std::fclose(f);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const auto &d = cu::cuda_device();
    if (!d.present) {
        std::printf("SKIPPED: no CUDA device (%s)\n", d.why_absent.c_str());
        return 0;
    }
    const bool tuning = argc > 1 && std::string(argv[1]) == "--tune";
    if (tuning && argc != 5) {
        std::fprintf(stderr, "usage: qforge_cuda_bench --tune KERNEL ROUNDS OUT.jsonl\n");
        return 2;
    }
    if (argc > 1 && !tuning) tsv = std::fopen(argv[1], "w");
    try {
        copy_bw = copy_bandwidth();
        std::printf("device: %s (sm_%d%d); auto CUDA target: %s\n", d.name.c_str(), d.major, d.minor,
                    dispatched_cuda_target().c_str());
        std::printf("device-to-device copy: %.0f GB/s (read + write, 1 GiB, median of 20)\n", copy_bw / 1e9);
        std::printf("%-26s %13s %5s %10s %9s %8s %9s %10s %8s  %s\n", "kernel", "out x in", "tok", "ms", "GB/s",
                    "%copy", "TFLOP/s", "max err", "host us", "target");
        if (tuning) return tune(argv[2], std::max(1, std::atoi(argv[3])), argv[4], dispatched_cuda_target());
        // Not in the profiler's pass (QF_BENCH_QUICK=1): its 2000 tiny calls would be its first row.
        const std::string mode = quick ? std::getenv("QF_BENCH_QUICK") : "";
        if (!quick || mode == "host") host_costs();
        if (mode == "host") return 0;
        if (std::getenv("QF_BENCH_QKV")) {  // only the QKV projection with and without its head norms
            bench_qkv_norms({1, 4, 16});
            return 0;
        }
        if (std::getenv("QF_BENCH_TUNE")) {
            bench_variants(dispatched_cuda_target());
            return 0;
        }
        if (std::getenv("QF_BENCH_LAYERS")) {  // only the layers' paths on the goal shapes (bench/device/goals.py)
            for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{14336, 4096}, {4096, 14336}}) {
                bench_layers(out, in, {1, 2, 4, 8, 16, 32, 64, 128, 512});
            }
            return 0;
        }
        if (!quick) {
            std::printf("-- every CUDA row of the kernel table, 4096x4096 (matmul rows at 16 tokens)\n");
            bench_table(dispatched_cuda_target());
            std::printf("-- the goal shapes\n");
        }
        const std::vector<int64_t> tokens = quick ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2, 16, 128, 512};
        const std::string target = dispatched_cuda_target();
        for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{14336, 4096}, {4096, 14336}}) {
            bench_q4k(out, in, tokens, target);
            bench_int4g(out, in, 128, tokens, target);
            if (quick) continue;
            bench_int4g(out, in, 32, {1, 16}, target);
            bench_layers(out, in, {1, 2, 4, 8, 16, 32, 64, 128, 512});
        }
        if (!quick) bench_qkv_norms({1, 4, 16});
    } catch (const std::exception &e) {
        std::fprintf(stderr, "cuda_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
