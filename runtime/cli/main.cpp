// qforge: the command-line tool. For now: the built-in default workload
// (`qforge` or `qforge demo`) and `qforge targets`.
#include "qforge/kernels.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace qforge;

double median_ms(const std::function<void()> &f, int runs) {
    f();  // warm up
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) {
        auto a = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

std::vector<uint8_t> random_q4k(std::mt19937 &g, int64_t out, int64_t in) {
    std::vector<uint8_t> w(out * (in / 256) * 144);
    for (auto &b : w) b = static_cast<uint8_t>(g());
    for (size_t i = 0; i < w.size(); i += 144) {  // d = dmin = 2^-10: sane magnitudes
        w[i] = 0x00; w[i + 1] = 0x14; w[i + 2] = 0x00; w[i + 3] = 0x14;
    }
    return w;
}

// The largest |a - b| / max|b| over the outputs, against a dequantize-then-f64 check.
double check(const std::vector<float> &w, int64_t out, int64_t in, const std::vector<float> &x,
             const std::vector<float> &y, int64_t rows_checked) {
    double worst = 0, scale = 1e-30;
    for (int64_t r = 0; r < rows_checked; ++r) {
        double s = 0;
        for (int64_t c = 0; c < in; ++c) s += static_cast<double>(w[r * in + c]) * x[c];
        worst = std::max(worst, std::fabs(s - y[r]));
        scale = std::max(scale, std::fabs(s));
    }
    (void)out;
    return worst / scale;
}

int demo() {
    std::printf("qforge demo: decode (1 token), dispatched target %s\n\n", dispatched_target().c_str());
    std::printf("%-22s %-13s %8s %10s %9s %10s\n", "kernel", "shape", "tokens", "median ms", "GB/s", "rel.err");
    std::mt19937 g(42);
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {14336, 4096}, {4096, 14336}}) {
        auto q4k = random_q4k(g, out, in);
        std::vector<float> x(in), y(out), w(out * in);
        for (auto &v : x) v = u(g);
        q4k_dequant({q4k.data(), out, in}, {w.data(), out, in});
        Q8KBuffer a(1, in);
        const std::string shape = std::to_string(out) + "x" + std::to_string(in);
        auto row = [&](const char *name, double ms, double bytes) {
            std::printf("%-22s %-13s %8d %10.3f %9.1f %10.1e\n", name, shape.c_str(), 1, ms, bytes / ms / 1e6,
                        check(w, out, in, x, y, 64));
        };
        double ms = median_ms([&] { q4k_matmul_f32({q4k.data(), out, in}, {x.data(), 1, in}, nullptr, {y.data(), 1, out}); }, 20);
        row("q4k_matvec_f32", ms, q4k.size());
        ms = median_ms([&] {
            q8k_quantize({x.data(), 1, in}, a.view());
            q4k_matmul_q8({q4k.data(), out, in}, a.view(), nullptr, {y.data(), 1, out});
        }, 20);
        row("q4k_matvec_q8", ms, q4k.size());
    }
    return 0;
}

int list_targets() {
    std::printf("%-18s %-9s %s\n", "target", "runs here", "missing CPU features");
    for (const auto &t : targets()) {
        std::string missing;
        for (const auto &f : t.missing_features) missing += f + " ";
        std::printf("%-18s %-9s %s\n", t.name.c_str(), t.missing_features.empty() ? "yes" : "no", missing.c_str());
    }
    std::printf("\nauto dispatches to: %s (the first target in the table whose features this CPU has)\n",
                dispatched_target().c_str());
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        const std::string cmd = argc > 1 ? argv[1] : "demo";
        if (cmd == "demo") return demo();
        if (cmd == "targets") return list_targets();
        std::fprintf(stderr, "usage: qforge [demo | targets]\n");
        return 2;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "qforge: %s\n", e.what());
        return 1;
    }
}
