#include "timing_rows.h"

#include <algorithm>

#include "commands.h"

namespace qforge::cli {

std::vector<float> random_input(int64_t tokens, int64_t in, uint64_t seed) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> x(tokens * in);
    for (auto &v : x) v = u(g);
    return x;
}

LayerTiming time_layer(const std::vector<std::unique_ptr<Linear>> &copies, const std::vector<float> &x, int64_t tokens,
                       const Roofline &roof, double budget_s) {
    const Linear &l = *copies.front();
    std::vector<float> y(tokens * l.out());
    size_t next = 0;
    const double ms = median_ms(
        [&] {
            const Linear &c = *copies[next++ % copies.size()];
            c.forward(ConstMatrix{x.data(), tokens, c.in()}, Matrix{y.data(), tokens, c.out()});
        },
        20, budget_s);
    return describe_timing(l, tokens, ms, roof);
}

LayerTiming describe_timing(const Linear &l, int64_t tokens, double ms, const Roofline &roof) {
    LayerTiming t;
    t.ms = ms;
    t.gbs = static_cast<double>(l.weight_bytes()) / t.ms / 1e6;
    t.gflops = 2.0 * tokens * l.out() * l.in() / t.ms / 1e6;
    if (tokens == 1) {
        t.roof = "BW";
        t.roof_fraction = t.gbs / roof.read_gbs;
    } else {
        t.roof_fraction = t.gflops / batch_peak(l, roof, &t.roof);
    }
    return t;
}

double batch_peak(const Linear &l, const Roofline &roof, std::string *name) {
    const std::vector<ActType> &acts = traits(l.format()).activations;
    const bool int8 = l.memory() == Memory::host && l.strategy() == Strategy::fused && roof.int8_gops > 0 &&
                      std::any_of(acts.begin(), acts.end(), [](ActType a) { return a != ActType::f32; });
    if (name) *name = int8 ? "int8" : "FMA";
    return int8 ? roof.int8_gops : roof.fma_gflops;
}

}  // namespace qforge::cli
