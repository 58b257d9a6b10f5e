// The qforge subcommands. Each returns the process exit code; errors are
// thrown as qforge::Error and reported by main.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace qforge::cli {

struct Common {
    bool json = false;
};

int inspect(const std::string &file, const Common &c);
int dequant(const std::string &file, const std::string &tensor, const std::string &out);
struct MatmulArgs {
    std::string file, tensor, input, output, activations = "auto", target = "auto";
    int64_t tokens = 1;
};
int matmul(const MatmulArgs &a);
struct QuantizeArgs {
    std::string input, output, to;
    std::vector<std::string> overrides;
    bool no_search = false;
    std::string act_scales;  // SmoothQuant: per-channel activation maxima (runtime/cli/smooth.h)
    double alpha = 0.5;      // SmoothQuant's migration strength
};
int quantize(const QuantizeArgs &a, const Common &c);
struct BenchArgs {
    std::string file;
    std::vector<int64_t> tokens{1, 32, 512};
    int threads = 0;
};
int bench(const BenchArgs &a, const Common &c);
struct PackArgs {
    std::string input, output, target = "auto";
};
int pack(const PackArgs &a, const Common &c);
struct BlockArgs {
    std::string file;
    int index = 0;
    std::vector<int64_t> tokens{1, 32};
    int threads = 0;
};
int block(const BlockArgs &a, const Common &c);
int targets(const Common &c);
int demo(const Common &c);

// Median milliseconds of f() over `runs` (after one warm-up call), at least
// `min_runs` and stopping early after `budget_s` seconds.
double median_ms(const std::function<void()> &f, int runs, double budget_s = 2.0);

}  // namespace qforge::cli
