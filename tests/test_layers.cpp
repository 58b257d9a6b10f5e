// Layer objects: every format through forward() on [tokens, in] and
// [batch, seq, in], both strategies, the activation policy, QKV (fused,
// separate, concatenated), the quantization plan, quantizers, and
// concurrent calls.
#include "test_util.h"
#include "layer_util.h"
#include "qforge/pack.h"

#include "qforge/layers.h"
#include "qforge/plan.h"
#include "qforge/qkv.h"
#include "qforge/quantize.h"

#include <thread>

namespace qforge::test {
namespace {

double max_rel(const std::vector<float> &y, const std::vector<double> &ref) {
    double worst = 0, scale = 1e-30;
    for (size_t i = 0; i < y.size(); ++i) {
        worst = std::max(worst, std::fabs(y[i] - ref[i]));
        scale = std::max(scale, std::fabs(ref[i]));
    }
    return worst / scale;
}

// Every format with kernels of its own (a new row of the format table joins these tests).
std::vector<std::string> layer_formats() {
    std::vector<std::string> out;
    for (const FormatTraits &t : all_formats()) {
        if (!t.activations.empty()) out.push_back(t.name);
    }
    return out;
}

TEST(Layers, EveryFormatBothShapesBothStrategies) {
    const int64_t out = 37, in = 512;
    const auto w = weights(out, in);
    const auto bias = random_floats(out);
    for (const std::string &format_name : layer_formats()) {
        const char *format = format_name.c_str();
        for (Strategy s : {Strategy::fused, Strategy::eager_f32, Strategy::eager_f16}) {
            SCOPED_TRACE(std::string(format) + " strategy " + std::to_string(static_cast<int>(s)));
            Built b = build(format, w, out, in, bias.data(), LayerOptions{s, Memory::host});
            for (std::vector<int64_t> lead : {std::vector<int64_t>{1}, {5}, {2, 3}}) {
                int64_t tokens = 1;
                for (auto d : lead) tokens *= d;
                auto x = random_floats(tokens * in);
                std::vector<float> y(tokens * out, nan_poison());
                std::vector<int64_t> xs = lead, ys = lead;
                xs.push_back(in);
                ys.push_back(out);
                b.layer->forward(ConstTensor{x.data(), xs}, Tensor{y.data(), ys});
                std::vector<double> ref(tokens * out);
                ref::dense_matmul(b.dequantized, out, in, x.data(), tokens, bias.data(), ref.data());
                // Packed layers (any token count) and Q4_K prefill run 8-bit activations;
                // eager f16 rounds weights to 11 bits.
                const bool coarse = (s == Strategy::fused && (b.layer->pack_rows() > 0 ||
                                                              (std::string(format) == "q4_k" && tokens > 1))) ||
                                    s == Strategy::eager_f16;
                EXPECT_LT(max_rel(y, ref), coarse ? 2e-2 : 1e-5) << "tokens " << tokens;
            }
            const int64_t dense = s == Strategy::eager_f32 ? out * in * 4 : s == Strategy::eager_f16 ? out * in * 2 : -1;
            if (dense > 0) EXPECT_EQ(b.layer->memory_bytes(), dense + out * 4);
            // A fused layer packs at load wherever this CPU's kernels want it, and reports the packed bytes.
            const Format f = format_from_string(format);
            const int R = s == Strategy::fused ? preferred_pack_rows(f, b.layer->group_size()) : 0;
            EXPECT_EQ(b.layer->pack_rows(), R);
            if (R) EXPECT_EQ(b.layer->memory_bytes(), packed_bytes(f, out, in, R) + out * 4);
            EXPECT_TRUE(b.layer->has_bias());
        }
    }
}

TEST(Layers, ActivationPolicy) {
    const int64_t out = 16, in = 512;
    const auto w = weights(out, in);
    Built b = build("q4_k", w, out, in, nullptr);
    auto x = random_floats(3 * in);
    std::vector<float> y32(3 * out), y8(3 * out);
    ForwardOptions f32;
    f32.activations = Activations::f32;
    ForwardOptions q8;
    q8.activations = Activations::q8;
    b.layer->forward(ConstMatrix{x.data(), 3, in}, Matrix{y32.data(), 3, out}, f32);
    b.layer->forward(ConstMatrix{x.data(), 3, in}, Matrix{y8.data(), 3, out}, q8);
    std::vector<double> ref(3 * out);
    ref::dense_matmul(b.dequantized, out, in, x.data(), 3, nullptr, ref.data());
    EXPECT_LT(max_rel(y32, ref), 1e-5);
    EXPECT_LT(max_rel(y8, ref), 2e-2);
    Built half = build("f16", w, out, in, nullptr);  // no 8-bit kernels
    EXPECT_THROW(half.layer->forward(ConstMatrix{x.data(), 3, in}, Matrix{y8.data(), 3, out}, q8), Error);
}

TEST(Layers, ShapeErrorsNameTheLayer) {
    const auto w = weights(8, 256);
    Built b = build("q4_k", w, 8, 256, nullptr);
    std::vector<float> x(2 * 256), y(2 * 8);
    try {
        b.layer->forward(ConstTensor{x.data(), {2, 255}}, Tensor{y.data(), {2, 8}});
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("layer 'layer.q4_k'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("[2, 255]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(b.layer->forward(ConstTensor{x.data(), {2, 256}}, Tensor{y.data(), {2, 7}}), Error);
    EXPECT_THROW(b.layer->forward(ConstTensor{x.data(), {512}}, Tensor{y.data(), {8}}), Error);
    WeightRef bad;
    bad.format = Format::q4_k;
    bad.data = x.data();
    bad.out = 8;
    bad.in = 100;
    EXPECT_THROW(make_linear("bad", bad), Error);
    bad.format = Format::int4g;
    bad.in = 64;
    bad.group_size = 48;
    EXPECT_THROW(make_linear("bad", bad), Error);  // no scales, group size without a kernel
}

TEST(Layers, ConcurrentCallsAgree) {
    const int64_t out = 64, in = 1024;
    const auto w = weights(out, in);
    Built b = build("q4_k", w, out, in, nullptr);
    auto x = random_floats(4 * in);
    std::vector<float> expect(4 * out);
    b.layer->forward(ConstMatrix{x.data(), 4, in}, Matrix{expect.data(), 4, out});
    std::vector<std::vector<float>> ys(6, std::vector<float>(4 * out));
    std::vector<std::thread> pool;
    for (auto &y : ys) {
        pool.emplace_back([&] {
            for (int k = 0; k < 20; ++k) b.layer->forward(ConstMatrix{x.data(), 4, in}, Matrix{y.data(), 4, out});
        });
    }
    for (auto &t : pool) t.join();
    for (const auto &y : ys) EXPECT_EQ(y, expect);
}

// GQA shapes as in Qwen3-0.6B (scaled down): q_dim != hidden, kv_dim smaller.
TEST(QKV, SeparateConcatenatedAndFusedAgree) {
    const int64_t hidden = 512, q_dim = 768, kv_dim = 256;
    for (const char *format : {"q4_k", "int4g", "q8_0"}) {
        SCOPED_TRACE(format);
        const auto wq = weights(q_dim, hidden), wk = weights(kv_dim, hidden), wv = weights(kv_dim, hidden);
        const auto bq = random_floats(q_dim);
        Built q = build(format, wq, q_dim, hidden, bq.data()), k = build(format, wk, kv_dim, hidden, nullptr),
              v = build(format, wv, kv_dim, hidden, nullptr);
        Built q2 = build(format, wq, q_dim, hidden, bq.data()), k2 = build(format, wk, kv_dim, hidden, nullptr),
              v2 = build(format, wv, kv_dim, hidden, nullptr);
        // Same random quantized bytes for the block formats without a quantizer.
        auto concat = QKVProjection::separate(std::move(q.layer), std::move(k.layer), std::move(v.layer), true);
        EXPECT_TRUE(concat.single_call());
        auto three = QKVProjection::separate(std::move(q2.layer), std::move(k2.layer), std::move(v2.layer), false);
        EXPECT_FALSE(three.single_call());
        const int64_t tokens = 3, total = q_dim + 2 * kv_dim;
        auto x = random_floats(tokens * hidden);
        std::vector<float> y1(tokens * total, nan_poison()), y2(tokens * total, nan_poison());
        ForwardOptions f32;
        f32.activations = Activations::f32;
        concat.forward(ConstTensor{x.data(), {tokens, hidden}}, Tensor{y1.data(), {tokens, total}}, f32);
        three.forward(ConstTensor{x.data(), {tokens, hidden}}, Tensor{y2.data(), {tokens, total}}, f32);
        std::vector<double> rq(tokens * q_dim), rk(tokens * kv_dim);
        ref::dense_matmul(q.dequantized, q_dim, hidden, x.data(), tokens, bq.data(), rq.data());
        ref::dense_matmul(k.dequantized, kv_dim, hidden, x.data(), tokens, nullptr, rk.data());
        for (int64_t n = 0; n < tokens; ++n) {
            for (int64_t r = 0; r < q_dim; ++r) EXPECT_NEAR(y1[n * total + r], rq[n * q_dim + r], 1e-4);
            for (int64_t r = 0; r < kv_dim; ++r) EXPECT_NEAR(y1[n * total + q_dim + r], rk[n * kv_dim + r], 1e-4);
        }
        if (std::string(format) != "q8_0") {  // q8_0's random blocks differ between the two builds
            for (size_t i = 0; i < y1.size(); ++i) ASSERT_NEAR(y1[i], y2[i], 1e-4) << i;
        }
        for (float f : y2) ASSERT_FALSE(std::isnan(f));
    }
    const auto w = weights(q_dim + 2 * kv_dim, hidden);
    Built fused = build("q4_k", w, q_dim + 2 * kv_dim, hidden, nullptr);
    EXPECT_NO_THROW(QKVProjection::fused(std::move(fused.layer), q_dim, kv_dim));
    Built wrong = build("q4_k", w, q_dim + 2 * kv_dim, hidden, nullptr);
    EXPECT_THROW(QKVProjection::fused(std::move(wrong.layer), q_dim, kv_dim + 1), Error);
}

TEST(Plan, ValidatesUpFrontNamingTheLayer) {
    const std::vector<LayerShape> layers = {{"blk.0.attn_q.weight", 4096, 4096}, {"blk.0.ffn_down.weight", 4096, 14336},
                                            {"odd.weight", 8, 100}};
    auto plan = QuantPlan::parse("int4g:32", {"blk.0.ffn_down.weight=q4_k"});
    EXPECT_NO_THROW(plan.validate(layers));
    EXPECT_EQ(plan.for_layer("blk.0.ffn_down.weight").format, Format::q4_k);
    auto expect_error = [&](const QuantPlan &p, const std::string &needle) {
        try {
            p.validate(layers);
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error &e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_error(QuantPlan::parse("q4_k", {}), "odd.weight");                       // 100 is not whole super-blocks
    expect_error(QuantPlan::parse("int4g:32", {"nope.weight=q4_k"}), "nope.weight");  // no such layer
    expect_error(QuantPlan::parse("int4g:32", {"odd.weight=int4g:33"}), "group size");
    expect_error(QuantPlan::parse("int4g:32", {"odd.weight=int4g:32:3"}), "bits");
    EXPECT_THROW(QuantPlan::parse("q5_k", {}), Error);
    EXPECT_THROW(QuantPlan::parse("int4g:x", {}), Error);
    expect_error(QuantPlan::parse("int8", {}), "odd.weight");  // 100 is not whole 32-byte units
    // Per-layer method fields: symmetric or not, bits, granularity, smoothing.
    const QuantPlan m = QuantPlan::parse("int8", {"blk.0.attn_q.weight=int4z:64+smooth=0.8",
                                                  "blk.0.ffn_down.weight=fp8+nosmooth"});
    const FormatSpec &q = m.for_layer("blk.0.attn_q.weight"), &d = m.for_layer("blk.0.ffn_down.weight");
    EXPECT_FALSE(q.symmetric());
    EXPECT_EQ(q.weight_bits(), 4);
    EXPECT_EQ(q.granularity(), "group of 64");
    EXPECT_DOUBLE_EQ(q.smooth, 0.8);
    EXPECT_EQ(q.to_string(), "int4z:64+smooth=0.8");
    EXPECT_TRUE(d.symmetric());
    EXPECT_EQ(d.weight_bits(), 8);
    EXPECT_EQ(d.granularity(), "per channel");
    EXPECT_LT(d.smooth, 0);
    EXPECT_TRUE(std::isnan(m.for_layer("odd.weight").smooth));
    auto parse_error = [](const std::string &override, const std::vector<std::string> &needles) {
        try {
            QuantPlan::parse("int8", {override});
            ADD_FAILURE() << "no error for " << override;
        } catch (const Error &e) {
            for (const auto &n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
        }
    };
    parse_error("blk.0.attn_q.weight=int8+smooth=1.5", {"blk.0.attn_q.weight", "smooth = 1.5", "[0, 1]"});
    parse_error("blk.0.attn_q.weight=int8+smooth=-0.1", {"blk.0.attn_q.weight", "out of range"});
    parse_error("blk.0.attn_q.weight=int8+smooth=x", {"blk.0.attn_q.weight", "not a number"});
    parse_error("blk.0.attn_q.weight=int8+fast", {"blk.0.attn_q.weight", "+smooth=A or +nosmooth"});
}

// SmoothQuant's scales: s_j = a_j^alpha / w_j^(1 - alpha) over every layer
// reading the input; folding them in leaves each product unchanged.
TEST(Quantizers, SmoothingScalesFoldExactlyInExactArithmetic) {
    const int64_t in = 64;
    const auto w1 = weights(8, in), w2 = weights(5, in);
    auto a = random_floats(in, 0.1f, 2.0f);
    a[7] = 60.0f;  // an outlier channel
    const auto s = smoothing_scales(a.data(), in, {w1.data(), w2.data()}, {8, 5}, 0.5);
    for (int64_t j = 0; j < in; ++j) {
        double wmax = 0;
        for (int64_t r = 0; r < 8; ++r) wmax = std::max(wmax, std::fabs(static_cast<double>(w1[r * in + j])));
        for (int64_t r = 0; r < 5; ++r) wmax = std::max(wmax, std::fabs(static_cast<double>(w2[r * in + j])));
        EXPECT_NEAR(s[j], std::sqrt(a[j]) / std::sqrt(wmax), 1e-5 * s[j]) << "channel " << j;
    }
    EXPECT_GT(s[7], s[6]);  // the outlier channel moves most into the weights
    const auto one = smoothing_scales(a.data(), in, {w1.data()}, {8}, 0.0);  // alpha 0: 1 / wmax
    for (int64_t j = 0; j < in; ++j) EXPECT_GT(one[j], 0.0f);
    a[3] = NAN;
    EXPECT_THROW(smoothing_scales(a.data(), in, {w1.data()}, {8}, 0.5), Error);
}

TEST(Quantizers, Int4gUsesTheWholeRangeAndSearchHelps) {
    const int64_t out = 64, in = 512;
    const auto w = weights(out, in);
    const auto plain = quantize_int4g(w.data(), out, in, 32, false);
    const auto searched = quantize_int4g(w.data(), out, in, 32, true);
    EXPECT_LE(searched.rmse, plain.rmse);
    // Plain recipe: each group's largest-magnitude weight lands on -8 exactly.
    std::vector<float> back(out * in);
    ref::int4g_dequant(plain.weight.data(), plain.scales.data(), out, in, 32, back.data());
    for (int64_t g = 0; g < out * in / 32; ++g) {
        int at = 0;
        for (int i = 1; i < 32; ++i) {
            if (std::fabs(w[g * 32 + i]) > std::fabs(w[g * 32 + at])) at = i;
        }
        const uint8_t byte = plain.weight[(g * 32 + at) / 2];
        const int nib = (at % 2 == 0) ? (byte & 15) : (byte >> 4);
        EXPECT_EQ(nib, 0) << "group " << g;  // nibble 0 is -8
    }
    EXPECT_NEAR(rmse(w.data(), back.data(), out * in), plain.rmse, 1e-9);
}

TEST(Quantizers, Q4KNoWorseThanMinMax) {
    const int64_t out = 32, in = 1024;
    const auto w = weights(out, in);
    const auto ours = quantize_q4k(w.data(), out, in);
    const auto plain = quantize_q4k_minmax(w.data(), out, in);
    EXPECT_LE(ours.rmse, plain.rmse);
    EXPECT_LT(ours.rmse, 0.05 * 0.1);  // well under a tenth of the weights' range
    std::printf("[ qforge  ] Q4_K RMSE %.4g, plain min/max %.4g\n", ours.rmse, plain.rmse);
}

}  // namespace
}  // namespace qforge::test

namespace qforge::test {
namespace {

// The weights a host layer was built from (`w` quantized, or random blocks), for a second layer.
WeightRef same_weights(const Built &host, const std::vector<float> &w, int64_t out, int64_t in) {
    WeightRef r;
    r.format = host.layer->format();
    r.out = out;
    r.in = in;
    r.data = host.bytes.empty()
                 ? (host.halves.empty()
                        ? (host.i4.weight.empty() ? static_cast<const void *>(w.data()) : host.i4.weight.data())
                        : host.halves.data())
                 : host.bytes.data();
    if (traits(r.format).separate_scales) {
        r.scales = host.i4.scales.data();
        r.group_size = 32;
    }
    if (traits(r.format).zero_points) r.zeros = host.i4.zeros.data();
    return r;
}

// The layer `format` of [out, in] with `strategy`, on the host and on the
// device (the same bytes), run for each token count down each CUDA path;
// the device's results, poisoned first, match the host's (f32 activations,
// what the Halide path runs) within what the path's arithmetic allows.
void expect_device_matches_host(const char *format, Strategy strategy, int64_t out, int64_t in,
                                std::initializer_list<int64_t> token_counts, std::initializer_list<CudaGemm> paths) {
    SCOPED_TRACE(std::string(format) + (strategy == Strategy::fused ? " fused " : " eager_f16 ") +
                 std::to_string(out) + "x" + std::to_string(in));
    const auto w = weights(out, in);
    const auto bias = random_floats(out);
    const VariantParam on_device{nullptr, "", "cuda-sm80"};  // any CUDA target: Mem only asks whether it is one
    Built host = build(format, w, out, in, bias.data(), LayerOptions{strategy, Memory::host});
    // Same bytes on the device (the block formats without a quantizer are random).
    const WeightRef r = same_weights(host, w, out, in);
    auto dev = make_linear("dev", r, bias.data(), LayerOptions{strategy, Memory::cuda});
    for (int64_t tokens : token_counts) {
        auto x = random_floats(tokens * in);
        std::vector<float> expect(tokens * out);
        ForwardOptions host_f32;
        host_f32.activations = Activations::f32;
        host.layer->forward(ConstMatrix{x.data(), tokens, in}, Matrix{expect.data(), tokens, out}, host_f32);
        for (CudaGemm path : paths) {
            Mem m(on_device);
            Poisoned y(tokens, out);
            ForwardOptions fo;
            fo.run.memory = Memory::cuda;
            fo.cuda_gemm = path;
            dev->forward(ConstMatrix{m.in(x), tokens, in}, m.out(y), fo);
            m.sync();
            y.expect_all_written();
            // Different summation orders. cuBLAS runs on f16 weights and x:
            // each product within 2^-10 relative, so the sum within 2^-10
            // sum |w x| over the weights the layer holds (random blocks, for
            // the formats without a quantizer, are no quantized w); 2^-9
            // leaves room for the quantized weights' magnitude over w's.
            const bool f16 = path == CudaGemm::cublas || (path == CudaGemm::automatic && tokens >= traits(r.format).cuda_gemm_min_tokens);
            for (int64_t i = 0; i < tokens * out; ++i) {
                double tol = 2e-3 * (1 + std::fabs(expect[i]));
                if (f16) {
                    const int64_t n = i / out, row = i % out;
                    double mag = std::fabs(bias[row]);
                    for (int64_t k = 0; k < in; ++k) mag += std::fabs(host.dequantized[row * in + k] * x[n * in + k]);
                    tol += std::ldexp(mag, -9);
                }
                ASSERT_NEAR(y.data[i], expect[i], tol) << "tokens " << tokens << " at " << i
                                                       << (path == CudaGemm::halide ? " (halide)" : "");
            }
        }
    }
}

// LayerOptions::memory = cuda: weights uploaded once, forward on device
// pointers, every format and strategy, both paths, the device scratch
// reused across calls of growing and shrinking size.
TEST(Layers, CudaMemoryMatchesHost) {
    if (const std::string why = why_no_cuda(); !why.empty()) GTEST_SKIP() << why;
    for (const std::string &format_name : layer_formats()) {
        const char *format = format_name.c_str();
        for (Strategy s : {Strategy::fused, Strategy::eager_f16}) {
            expect_device_matches_host(format, s, 40, 768, {1, 3, 5, 9, 2}, {CudaGemm::automatic, CudaGemm::halide});
        }
    }
}

// 8-bit activations on CUDA, every format with such kernels there (the
// file's layout, quantized on the device) against the float64 reference on
// the dequantized weights: the activations' quantization error, as on the
// CPU; formats without them say so.
TEST(Layers, CudaQ8EveryFormat) {
    if (const std::string why = why_no_cuda(); !why.empty()) GTEST_SKIP() << why;
    const int64_t out = 40, in = 768;
    const auto w = weights(out, in);
    const auto bias = random_floats(out);
    const VariantParam on_device{nullptr, "", "cuda-sm80"};
    int formats = 0;
    for (const std::string &format_name : layer_formats()) {
        SCOPED_TRACE(format_name);
        const Format f = format_from_string(format_name);
        internal::KernelKey key;
        key.format = f;
        key.act = traits(f).activations.back();
        const internal::KernelRow *row = internal::find_row(key);
        const bool has = key.act != ActType::f32 && row && std::string(row->families).find("cuda") != std::string::npos;
        Built host = build(format_name.c_str(), w, out, in, bias.data(), LayerOptions{Strategy::fused, Memory::host});
        auto dev = make_linear("dev", same_weights(host, w, out, in), bias.data(),
                               LayerOptions{Strategy::fused, Memory::cuda});
        for (int64_t tokens : {1, 5}) {
            auto x = random_floats(tokens * in);
            Mem m(on_device);
            Poisoned y(tokens, out);
            ForwardOptions fo;
            fo.run.memory = Memory::cuda;
            fo.activations = Activations::q8;
            if (!has) {
                EXPECT_THROW(dev->forward(ConstMatrix{m.in(x), tokens, in}, m.out(y), fo), Error);
                continue;
            }
            dev->forward(ConstMatrix{m.in(x), tokens, in}, m.out(y), fo);
            m.sync();
            y.expect_all_written();
            std::vector<double> ref(tokens * out);
            ref::dense_matmul(host.dequantized, out, in, x.data(), tokens, bias.data(), ref.data());
            EXPECT_LT(max_rel(y.data, ref), 2e-2) << "tokens " << tokens;
        }
        formats += has;
    }
    EXPECT_GE(formats, 12);  // Q4_K and the eleven ggml block formats
}

}  // namespace
}  // namespace qforge::test
