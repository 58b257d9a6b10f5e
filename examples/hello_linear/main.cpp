// Quantize a weight matrix to Q4_K, build a layer, run decode and prefill,
// and check the result against a plain float64 product.
#include <qforge/layers.h>
#include <qforge/quantize.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
    const int64_t out = 512, in = 1024;
    std::mt19937 g(1);
    std::normal_distribution<float> n(0.0f, 0.02f);
    std::vector<float> w(out * in), x(4 * in);
    for (auto &v : w) v = n(g);
    for (auto &v : x) v = n(g) * 50;

    const qforge::BlockQuantized q = qforge::quantize_q4k(w.data(), out, in);
    qforge::WeightRef ref;
    ref.format = qforge::Format::q4_k;
    ref.data = q.data.data();
    ref.out = out;
    ref.in = in;
    qforge::Linear layer("hello", ref);

    std::vector<float> y(4 * out);
    qforge::ForwardOptions f32;
    f32.activations = qforge::Activations::f32;
    layer.forward({x.data(), {4, in}}, {y.data(), {4, out}}, f32);

    std::vector<float> wq(out * in);
    qforge::dequant(qforge::Weights{qforge::Format::q4_k, q.data.data(), out, in}, qforge::Matrix{wq.data(), out, in});
    double worst = 0, scale = 0;
    for (int t = 0; t < 4; ++t) {
        for (int64_t r = 0; r < out; ++r) {
            double s = 0;
            for (int64_t c = 0; c < in; ++c) s += static_cast<double>(wq[r * in + c]) * x[t * in + c];
            worst = std::max(worst, std::fabs(s - y[t * out + r]));
            scale = std::max(scale, std::fabs(s));
        }
    }
    std::printf("hello_linear: Q4_K %lldx%lld on %s, RMSE %.3g, %lld bytes, max rel err %.2e\n",
                static_cast<long long>(out), static_cast<long long>(in), qforge::dispatched_target().c_str(), q.rmse,
                static_cast<long long>(layer.memory_bytes()), worst / scale);
    return worst / scale < 1e-5 ? 0 : 1;
}
