// Fused RMSNorm/LayerNorm -> linear: every "_norm" kernel of the registry on
// every target, through the layer objects (which pick it when x carries a
// Norm), against norm then matmul in float64; the Q8_K quantizer's norm
// variant directly; and bad norms.
#include "layer_util.h"

#include "qforge/qkv.h"

#include <cmath>

namespace qforge::test {
namespace {

// norm(x) per token in float64.
std::vector<double> normalise(const std::vector<float> &x, int64_t tokens, int64_t in, const Norm &n) {
    std::vector<double> out(x.size());
    for (int64_t t = 0; t < tokens; ++t) {
        const float *row = &x[t * in];
        double mean = 0, var = 0;
        if (n.kind == Norm::Kind::layer) {
            for (int64_t c = 0; c < in; ++c) mean += row[c];
            mean /= static_cast<double>(in);
        }
        for (int64_t c = 0; c < in; ++c) var += (row[c] - mean) * (row[c] - mean);
        const double inv = 1.0 / std::sqrt(var / static_cast<double>(in) + n.eps);
        for (int64_t c = 0; c < in; ++c) {
            out[t * in + c] = (row[c] - mean) * inv * n.weight[c] + (n.bias ? n.bias[c] : 0.0);
        }
    }
    return out;
}

// y = xn W^T + bias in float64, with sum |w xn| + |bias| per output.
void reference(const std::vector<double> &xn, int64_t tokens, const Built &b, int64_t out, int64_t in,
               const float *bias, std::vector<double> &y, std::vector<double> &abs_terms) {
    y.assign(tokens * out, 0);
    abs_terms.assign(tokens * out, 0);
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < out; ++r) {
            double s = bias ? bias[r] : 0, a = bias ? std::fabs(bias[r]) : 0;
            for (int64_t c = 0; c < in; ++c) {
                const double p = static_cast<double>(b.dequantized[r * in + c]) * xn[t * in + c];
                s += p;
                a += std::fabs(p);
            }
            y[t * out + r] = s;
            abs_terms[t * out + r] = a;
        }
    }
}

class FusedNorm : public testing::TestWithParam<VariantParam> {};

TEST_P(FusedNorm, MatchesNormThenMatmulInFloat64) {
    const VariantParam &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    // The quantizer's norm variant runs inside a layer with 8-bit activations
    // of its type: Q4_K for Q8_K, Q4_0 (packed) for Q8_0.
    const bool q8 = p.row->op == Op::quantize;
    const Format format = q8 ? (p.row->out == Out::q8_0 ? Format::q4_0 : Format::q4_k) : p.row->format;
    const bool decode = p.row->op == Op::matvec;
    const int64_t out = 37, in = 768, tokens = decode ? 1 : 5;
    const int group = p.row->group ? p.row->group : 32;
    const bool cuda = internal::is_cuda_target(p.target);
    const auto w = weights(out, in);
    const auto bias = random_floats(out);
    Built b = build(format, w, out, in, bias.data(), LayerOptions{Strategy::fused, cuda ? Memory::cuda : Memory::host},
                    group);
    // Activations with an offset and a spread per token, as a residual stream has.
    auto x = random_floats(tokens * in, -2.0f, 4.0f);
    const auto gamma = random_floats(in, 0.2f, 1.8f), beta = random_floats(in, -0.5f, 0.5f);
    for (Norm::Kind kind : {Norm::Kind::rms, Norm::Kind::layer}) {
        SCOPED_TRACE(kind == Norm::Kind::rms ? "RMSNorm" : "LayerNorm");
        Norm host{kind, gamma.data(), kind == Norm::Kind::layer ? beta.data() : nullptr, 1e-5f};
        Mem m(p);
        Norm dev = host;
        dev.weight = m.in(gamma);
        if (host.bias) dev.bias = m.in(beta);
        Poisoned y(tokens, out);
        ForwardOptions fo;
        fo.run = options(p);
        if (q8) {
            fo.activations = Activations::q8;
            fo.run.kernel.clear();
        } else {
            fo.activations = Activations::f32;
        }
        b.layer->forward(ConstMatrix{m.in(x), tokens, in, 0, &dev}, m.out(y), fo);
        m.sync();
        y.expect_all_written();
        std::vector<double> ref, abs_terms;
        reference(normalise(x, tokens, in, host), tokens, b, out, in, bias.data(), ref, abs_terms);
        if (q8) {
            // 8-bit activations: the Q4_K x Q8_K error, as for unnormalised x.
            EXPECT_LT(relative_error(y, ref), 2e-2);
        } else {
            // f32 rounding of the dot product, plus that of the statistics
            // (sums over `in` values) and of the normalised value itself.
            expect_within_rounding(y, ref, abs_terms, 3.0 * in + 16);
            EXPECT_LT(relative_error(y, ref), 1e-5);
        }
    }
}

// Every fused-norm matmul, and the quantizer's norm variant, through a layer.
INSTANTIATE_TEST_SUITE_P(Kernels, FusedNorm, testing::ValuesIn(variants_where("FusedNorm", [](const KernelRow &r) {
                             return r.norm && (is_matmul(r) || r.op == Op::quantize);
                         })), variant_name);

// A LayerNorm with random weight and bias, on the host and where `m` puts
// the kernel's inputs.
struct RandomNorm {
    std::vector<float> gamma, beta;
    Norm host, dev;
    RandomNorm(int64_t in, Mem &m)
        : gamma(random_floats(in, -1.5f, 1.5f)), beta(random_floats(in, -0.3f, 0.3f)),
          host{Norm::Kind::layer, gamma.data(), beta.data(), 1e-6f}, dev(host) {
        dev.weight = m.in(gamma);
        dev.bias = m.in(beta);
    }
    RandomNorm(const RandomNorm &) = delete;
};

// The quantizer's norm variant: d * qs reproduces norm(x) to half a step.
class Q8KNorm : public testing::TestWithParam<VariantParam> {};

TEST_P(Q8KNorm, QuantisesTheNormalisedValues) {
    const VariantParam &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const int64_t tokens = 3, in = 1024;
    const ActType type = p.row->out == Out::q8_0 ? ActType::q8_0 : ActType::q8_k;
    const int64_t B = act_block(type), S = act_sum_block(type);
    auto x = random_floats(tokens * in, -3.0f, 5.0f);
    Mem m(p);
    const RandomNorm norm_(in, m);
    const Norm &host = norm_.host, &dev = norm_.dev;
    std::vector<float> d(tokens * in / B, nan_poison());
    std::vector<int8_t> qs(tokens * in, 99);
    std::vector<int16_t> bsums(tokens * in / S, 9999);
    q8k_quantize(ConstMatrix{m.in(x), tokens, in, 0, &dev}, {m.out(d), m.out(qs), m.out(bsums), tokens, in, type},
                 options(p));
    m.sync();
    const auto xn = normalise(x, tokens, in, host);
    int64_t bad = 0;
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t c = 0; c < in; ++c) {
            const double step = d[t * (in / B) + c / B];  // Q8_K's is signed: ggml's d is -x_max / 127
            const double err = std::fabs(step * qs[t * in + c] - xn[t * in + c]);
            if (!(err <= 0.5 * std::fabs(step) * (1 + 1e-3) + 1e-5) && ++bad <= 3) {
                ADD_FAILURE() << "token " << t << " col " << c << ": " << step * qs[t * in + c] << " vs " << xn[t * in + c];
            }
        }
        for (int64_t g = 0; g < in / S; ++g) {
            int sum = 0;
            for (int l = 0; l < S; ++l) sum += qs[t * in + g * S + l];
            EXPECT_EQ(bsums[t * (in / S) + g], sum);
        }
    }
    EXPECT_EQ(bad, 0);
}

INSTANTIATE_TEST_SUITE_P(Kernels, Q8KNorm, testing::ValuesIn(variants_where("Q8KNorm", [](const KernelRow &r) {
                             return r.op == Op::quantize && r.norm;
                         })), variant_name);

// The f16 activations of the CUDA prefill path: f16(x) bit for bit (awkward
// width, padded rows), and f16(norm(x)) within one f16 step of the float64
// norm (its statistics are f32 sums).
class F16FromF32 : public testing::TestWithParam<VariantParam> {};

TEST_P(F16FromF32, RoundsToNearestEven) {
    const VariantParam &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const bool norm = p.row->norm;
    const int64_t tokens = 5, in = 300, pad = 3;
    std::vector<float> x = random_floats(tokens * (in + pad), -70000.0f, 70000.0f);  // past f16's range too
    Mem m(p);
    const RandomNorm norm_(in, m);
    const Norm &host = norm_.host, &dev = norm_.dev;
    PoisonedF16 y(tokens, in, 1);
    f16_from_f32(ConstMatrix{m.in(x), tokens, in, in + pad, norm ? &dev : nullptr}, m.out(y), options(p));
    m.sync();
    std::vector<float> dense(tokens * in);
    for (int64_t t = 0; t < tokens; ++t) std::copy_n(&x[t * (in + pad)], in, &dense[t * in]);
    if (!norm) {
        y.expect_f16_of(dense);
        return;
    }
    const auto xn = normalise(dense, tokens, in, host);
    int64_t bad = 0;
    for (int64_t i = 0; i < tokens * in; ++i) {
        const double got = ref::f16_to_f32(y.data[(i / in) * y.stride + i % in]);
        const double step = std::ldexp(1.0, std::max(-24, std::ilogb(std::fabs(xn[i]) + 1e-30) - 10));
        if (!(std::fabs(got - xn[i]) <= step) && ++bad <= 3) ADD_FAILURE() << i << ": " << got << " vs " << xn[i];
    }
    EXPECT_EQ(bad, 0);
}

// CUDA-only rows: a build without CUDA (the ARM cross build) has none.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(F16FromF32);
INSTANTIATE_TEST_SUITE_P(Kernels, F16FromF32, testing::ValuesIn(variants_where("F16FromF32", [](const KernelRow &r) {
                             return r.op == Op::convert;
                         })), variant_name);

// Through the public API: ConstTensor's norm, every format and strategy,
// and QKV; the result equals the layer run on x normalised beforehand.
TEST(FusedNormLayers, EqualsNormalisingFirst) {
    const int64_t out = 24, in = 512;
    const auto w = weights(out, in);
    const auto gamma = random_floats(in, 0.5f, 1.5f);
    const Norm rms{Norm::Kind::rms, gamma.data(), nullptr, 1e-6f};
    for (const char *format : {"f32", "f16", "int4g", "q4_k", "q6_k", "q8_0", "q4_0"}) {
        for (Strategy s : {Strategy::fused, Strategy::eager_f32}) {
            SCOPED_TRACE(std::string(format) + (s == Strategy::fused ? " fused" : " eager"));
            Built b = build(format, w, out, in, nullptr, LayerOptions{s, Memory::host});
            for (int64_t tokens : {1, 4}) {
                auto x = random_floats(tokens * in, -1.0f, 3.0f);
                const auto xn = normalise(x, tokens, in, rms);
                std::vector<float> xf(xn.begin(), xn.end());
                std::vector<float> y1(tokens * out, nan_poison()), y2(tokens * out, nan_poison());
                ForwardOptions f32;
                f32.activations = Activations::f32;
                b.layer->forward(ConstTensor{x.data(), {tokens, in}, &rms}, Tensor{y1.data(), {tokens, out}}, f32);
                b.layer->forward(ConstTensor{xf.data(), {tokens, in}}, Tensor{y2.data(), {tokens, out}}, f32);
                for (int64_t i = 0; i < tokens * out; ++i) {
                    ASSERT_NEAR(y1[i], y2[i], 1e-4 * (1 + std::fabs(y2[i]))) << "token " << i / out;
                }
            }
        }
    }
    // QKV: the same norm reaches all three projections.
    const int64_t q_dim = 256, kv_dim = 128;
    const auto wq = weights(q_dim, in), wk = weights(kv_dim, in), wv = weights(kv_dim, in);
    Built q = build("q4_k", wq, q_dim, in, nullptr), k = build("q4_k", wk, kv_dim, in, nullptr),
          v = build("q4_k", wv, kv_dim, in, nullptr);
    for (bool concatenate : {true, false}) {
        Built q2 = build("q4_k", wq, q_dim, in, nullptr), k2 = build("q4_k", wk, kv_dim, in, nullptr),
              v2 = build("q4_k", wv, kv_dim, in, nullptr);
        auto qkv = QKVProjection::separate(std::move(q2.layer), std::move(k2.layer), std::move(v2.layer), concatenate);
        const int64_t tokens = 2, total = q_dim + 2 * kv_dim;
        auto x = random_floats(tokens * in, -1.0f, 3.0f);
        std::vector<float> y(tokens * total, nan_poison());
        ForwardOptions f32;
        f32.activations = Activations::f32;
        qkv.forward(ConstTensor{x.data(), {tokens, in}, &rms}, Tensor{y.data(), {tokens, total}}, f32);
        const auto xn = normalise(x, tokens, in, rms);
        for (int64_t t = 0; t < tokens; ++t) {
            for (int64_t r = 0; r < q_dim; ++r) {
                double s = 0;
                for (int64_t c = 0; c < in; ++c) s += q.dequantized[r * in + c] * xn[t * in + c];
                ASSERT_NEAR(y[t * total + r], s, 1e-4) << "token " << t << " row " << r;
            }
            for (int64_t r = 0; r < kv_dim; ++r) {
                double s = 0;
                for (int64_t c = 0; c < in; ++c) s += v.dequantized[r * in + c] * xn[t * in + c];
                ASSERT_NEAR(y[t * total + q_dim + kv_dim + r], s, 1e-4) << "token " << t << " row " << r;
            }
        }
    }
}

TEST(FusedNormLayers, BadNormsAreErrorsNamingTheNorm) {
    const int64_t out = 8, in = 256;
    Built b = build("q4_k", weights(out, in), out, in, nullptr);
    auto x = random_floats(2 * in);
    const auto gamma = random_floats(in);
    std::vector<float> y(2 * out, nan_poison());
    auto expect_error = [&](const Norm &n, const std::string &needle) {
        try {
            b.layer->forward(ConstTensor{x.data(), {2, in}, &n}, Tensor{y.data(), {2, out}});
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error &e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("layer.q4_k"), std::string::npos) << e.what();
        }
    };
    expect_error(Norm{Norm::Kind::rms, nullptr, nullptr, 1e-5f}, "norm weight is a null pointer");
    expect_error(Norm{Norm::Kind::rms, gamma.data(), gamma.data(), 1e-5f}, "RMSNorm has none");
    expect_error(Norm{Norm::Kind::layer, gamma.data(), nullptr, NAN}, "norm eps");
    expect_error(Norm{Norm::Kind::layer, gamma.data(), nullptr, -1.0f}, "norm eps");
    for (float f : y) EXPECT_TRUE(std::isnan(f)) << "an error wrote y";
}

}  // namespace
}  // namespace qforge::test
