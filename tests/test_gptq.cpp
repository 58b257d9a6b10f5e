// GPTQ and AWQ checkpoints (FORMATS.md, "GPTQ and AWQ safetensors"),
// written here as AutoGPTQ's and AutoAWQ's pack() write them (their loops,
// transcribed), read back through load_linear and load_block's reader, and
// checked against the checkpoint's own math in float64: bit for bit after
// conversion, within f32 rounding through the layer, act-order included.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>

#include "device_scratch.h"
#include "layer_util.h"
#include "qforge/block.h"
#include "qforge/gptq.h"
#include "qforge/safetensors.h"
#include "test_util.h"

namespace qforge::test {
namespace {

// A checkpoint's layer as the quantizer leaves it: integer weights q [in,
// out] (GPTQ's intweight, transposed as its pack() takes it), zeros and f16
// scales [groups, out], g_idx [in].
struct Quantized {
    int64_t out, in, G, groups;
    std::vector<uint32_t> q, zeros;
    std::vector<uint16_t> scales;
    std::vector<int32_t> g_idx;
    bool act_order;

    Quantized(int64_t o, int64_t i, int64_t g, bool desc_act) : out(o), in(i), G(g), act_order(desc_act) {
        groups = (in + G - 1) / G;
        q.resize(in * out);
        zeros.resize(groups * out);
        scales.resize(groups * out);
        for (uint32_t &v : q) v = static_cast<uint32_t>(random_bytes(1)[0] & 15);
        const auto zb = random_bytes(groups * out);
        // Zero points 1..15: GPTQ's v1 format cannot store 0 (it writes zero - 1).
        for (int64_t k = 0; k < groups * out; ++k) zeros[k] = 1 + zb[k] % 15;
        scales = random_f16(groups * out, 0.001f, 0.03f);
        g_idx.resize(in);
        for (int64_t c = 0; c < in; ++c) g_idx[c] = static_cast<int32_t>(c / G);
        if (desc_act) {  // GPTQ's act-order: g_idx[perm[i]] = i / G for a random permutation
            std::vector<int32_t> perm(in);
            std::iota(perm.begin(), perm.end(), 0);
            std::shuffle(perm.begin(), perm.end(), rng());
            for (int64_t i = 0; i < in; ++i) g_idx[perm[i]] = static_cast<int32_t>(i / G);
        }
    }
    // The checkpoint's math: W[o, c] = (q - z) * s of c's group.
    std::vector<float> dequantized() const {
        std::vector<float> w(out * in);
        for (int64_t o = 0; o < out; ++o) {
            for (int64_t c = 0; c < in; ++c) {
                const int64_t g = g_idx[c];
                w[o * in + c] = (static_cast<float>(q[c * out + o]) - static_cast<float>(zeros[g * out + o])) *
                                ref::f16_to_f32(scales[g * out + o]);
            }
        }
        return w;
    }

    // AutoGPTQ's pack(): qweight rows of 8 inputs, qzeros columns of 8
    // outputs (v1: zeros - 1).
    void add_gptq(SafetensorsWriter &w, const std::string &p, bool v2) const {
        std::vector<uint32_t> qweight((in / 8) * out, 0);
        for (int64_t row = 0, i = 0; row < in / 8; ++row, i += 8) {
            for (int64_t j = i; j < i + 8; ++j) {
                for (int64_t o = 0; o < out; ++o) qweight[row * out + o] |= q[j * out + o] << (4 * (j - i));
            }
        }
        std::vector<uint32_t> z = zeros, qzeros(groups * (out / 8), 0);
        if (!v2) for (uint32_t &v : z) v -= 1;
        for (int64_t col = 0, i = 0; col < out / 8; ++col, i += 8) {
            for (int64_t j = i; j < i + 8; ++j) {
                for (int64_t g = 0; g < groups; ++g) qzeros[g * (out / 8) + col] |= z[g * out + j] << (4 * (j - i));
            }
        }
        w.add_tensor(p + ".qweight", DType::i32, {in / 8, out}, qweight.data(), qweight.size() * 4);
        w.add_tensor(p + ".qzeros", DType::i32, {groups, out / 8}, qzeros.data(), qzeros.size() * 4);
        w.add_tensor(p + ".scales", DType::f16, {groups, out}, scales.data(), scales.size() * 2);
        w.add_tensor(p + ".g_idx", DType::i32, {in}, g_idx.data(), g_idx.size() * 4);
    }

    // AutoAWQ's pack() (WQLinear_GEMM.from_linear): order_map per 8 outputs.
    void add_awq(SafetensorsWriter &w, const std::string &p) const {
        const int order_map[8] = {0, 2, 4, 6, 1, 3, 5, 7};
        std::vector<uint32_t> qweight(in * (out / 8), 0), qzeros(groups * (out / 8), 0);
        for (int64_t col = 0; col < out / 8; ++col) {
            for (int i = 0; i < 8; ++i) {
                for (int64_t c = 0; c < in; ++c) qweight[c * (out / 8) + col] |= q[c * out + col * 8 + order_map[i]] << (i * 4);
                for (int64_t g = 0; g < groups; ++g) {
                    qzeros[g * (out / 8) + col] |= zeros[g * out + col * 8 + order_map[i]] << (i * 4);
                }
            }
        }
        w.add_tensor(p + ".qweight", DType::i32, {in, out / 8}, qweight.data(), qweight.size() * 4);
        w.add_tensor(p + ".qzeros", DType::i32, {groups, out / 8}, qzeros.data(), qzeros.size() * 4);
        w.add_tensor(p + ".scales", DType::f16, {groups, out}, scales.data(), scales.size() * 2);
    }
};

std::string temp_dir(const std::string &name) {
    const auto d = std::filesystem::temp_directory_path() / ("qforge_gptq_" + std::to_string(seed()) + "_" + name);
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d.string();
}

enum class Kind { gptq, gptq_v2, awq };

// One layer "model.layers.0.mlp.up_proj" in model.safetensors, with a
// config.json holding `quant` as its quantization_config.
std::string write_checkpoint(const std::string &dir, const Quantized &qz, Kind kind, const std::string &quant,
                             const std::vector<float> *bias = nullptr) {
    SafetensorsWriter w;
    const std::string p = "model.layers.0.mlp.up_proj";
    if (kind == Kind::awq) {
        qz.add_awq(w, p);
    } else {
        qz.add_gptq(w, p, kind == Kind::gptq_v2);
    }
    if (bias) {
        std::vector<uint16_t> b16(bias->size());
        for (size_t i = 0; i < b16.size(); ++i) b16[i] = f16((*bias)[i]);
        w.add_tensor(p + ".bias", DType::f16, {qz.out}, b16.data(), b16.size() * 2);
    }
    w.write(dir + "/model.safetensors");
    if (!quant.empty()) std::ofstream(dir + "/config.json") << "{\"model_type\": \"llama\", \"quantization_config\": " << quant << "}";
    return dir + "/model.safetensors";
}

std::string config_json(Kind kind, int64_t G, bool desc_act) {
    if (kind == Kind::awq) {
        return "{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": " + std::to_string(G) +
               ", \"version\": \"gemm\", \"zero_point\": true}";
    }
    return std::string("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": ") + std::to_string(G) +
           ", \"desc_act\": " + (desc_act ? "true" : "false") + ", \"sym\": false, \"checkpoint_format\": \"" +
           (kind == Kind::gptq_v2 ? "gptq_v2" : "gptq") + "\"}";
}

struct Case {
    Kind kind;
    int64_t out, in, G;
    bool act_order;
    std::string name() const {
        const char *k = kind == Kind::awq ? "awq" : kind == Kind::gptq_v2 ? "gptq_v2" : "gptq";
        return std::string(k) + " [" + std::to_string(out) + ", " + std::to_string(in) + "] G=" + std::to_string(G) +
               (act_order ? " act-order" : "");
    }
};

const std::vector<Case> kCases = {
    {Kind::gptq, 40, 256, 32, false},    {Kind::gptq, 24, 384, 128, true},  {Kind::gptq_v2, 16, 320, 64, true},
    {Kind::awq, 40, 256, 128, false},    {Kind::awq, 8, 192, 64, false},    {Kind::gptq, 16, 256, 256, false},
};

// The conversion is exact: int4z's planes dequantize to the checkpoint's
// values, its columns in the layer's input order.
TEST(ZeroPointCheckpoint, ConvertsBitExactly) {
    for (const Case &c : kCases) {
        SCOPED_TRACE(c.name());
        const Quantized qz(c.out, c.in, c.G, c.act_order);
        const std::string dir = temp_dir("exact");
        const std::string path = write_checkpoint(dir, qz, c.kind, config_json(c.kind, c.G == c.in ? -1 : c.G, c.act_order));
        const SafetensorsFile f = SafetensorsFile::open(path);
        EXPECT_EQ(zero_point_prefixes(f), std::vector<std::string>{"model.layers.0.mlp.up_proj"});
        const Int4zLayer l = read_zero_point_layer(f, "model.layers.0.mlp.up_proj", zero_point_config_for(f));
        ASSERT_EQ(l.out, c.out);
        ASSERT_EQ(l.in, c.in);
        EXPECT_EQ(l.input_order.empty(), !c.act_order);
        std::vector<float> got(c.out * c.in);
        ref::int4z_dequant(l.weight.data(), l.scales.data(), l.zeros.data(), c.out, c.in, l.group_size, got.data());
        const auto want = qz.dequantized();
        for (int64_t o = 0; o < c.out; ++o) {
            for (int64_t i = 0; i < c.in; ++i) {
                const int64_t col = l.input_order.empty() ? i : l.input_order[i];
                ASSERT_EQ(got[o * c.in + i], want[o * c.in + col]) << "output " << o << ", column " << i;
            }
        }
        std::filesystem::remove_all(dir);
    }
}

// Through the layer, on every strategy the host runs (fused: int4z kernels
// with the activations permuted per call, f32 activations exact to f32
// rounding and 8-bit ones, the packed integer-dot path, within Q8_0's
// error; eager: the dense copy in input order), plain and through a fused
// RMSNorm, against float64.
TEST(ZeroPointCheckpoint, LayerMatchesTheCheckpointsMath) {
    for (const Case &c : kCases) {
        const Quantized qz(c.out, c.in, c.G, c.act_order);
        const auto bias = random_floats(c.out, -0.5f, 0.5f);
        const std::string dir = temp_dir("layer");
        const std::string path =
            write_checkpoint(dir, qz, c.kind, config_json(c.kind, c.G == c.in ? -1 : c.G, c.act_order), &bias);
        const SafetensorsFile f = SafetensorsFile::open(path);
        const auto w = qz.dequantized();
        std::vector<float> b16(c.out);
        for (int64_t o = 0; o < c.out; ++o) b16[o] = ref::f16_to_f32(f16(bias[o]));
        for (Strategy s : {Strategy::fused, Strategy::eager_f32}) {
            SCOPED_TRACE(c.name() + (s == Strategy::fused ? " fused" : " eager_f32"));
            const auto layer = load_linear(f, "model.layers.0.mlp.up_proj", LayerOptions{s, Memory::host});
            EXPECT_EQ(layer->format(), Format::int4z);
            EXPECT_EQ(layer->input_order().empty(), !c.act_order);
            for (int run = 0; run < 4; ++run) {
                const bool normed = run % 2 == 1, q8 = run >= 2;
                if (q8 && s != Strategy::fused) continue;
                const int64_t tokens = normed ? 3 : 1;
                const auto x = random_floats(tokens * c.in, -1.0f, 2.0f);
                const auto gamma = random_floats(c.in, 0.5f, 1.5f);
                const Norm norm{Norm::Kind::rms, gamma.data(), nullptr, 1e-5f};
                const auto x_before = x;
                Poisoned y(tokens, c.out);
                ForwardOptions fo;
                fo.activations = q8 ? Activations::q8 : Activations::f32;
                layer->forward(ConstMatrix{x.data(), tokens, c.in, 0, normed ? &norm : nullptr}, y.view(), fo);
                y.expect_all_written();
                EXPECT_EQ(x, x_before) << "the layer modified its input";
                const std::vector<float> xn = normed ? rms_normed(x, tokens, c.in, gamma, 1e-5) : x;
                std::vector<double> ref(tokens * c.out), mag(tokens * c.out);
                ref::dense_matmul(w, c.out, c.in, xn.data(), tokens, b16.data(), ref.data(), mag.data());
                if (q8) {
                    EXPECT_LT(relative_error(y, ref), 2e-2);  // x through Q8_0, as FusedNorm's 8-bit rows
                } else {
                    expect_within_rounding(y, ref, mag, (normed ? 3.0 : 1.0) * static_cast<double>(c.in) + 16);
                }
            }
        }
        std::filesystem::remove_all(dir);
    }
}

// A fused act-order layer on CUDA (the gather of x and of its norm's
// weights a kernel per call) against the same layer on the host, f32 and
// 8-bit activations, plain and through a fused RMSNorm, against float64.
TEST(ZeroPointCheckpoint, ActOrderLayerOnCuda) {
    if (const std::string why = why_no_cuda(); !why.empty()) GTEST_SKIP() << why;
    const Case c{Kind::gptq, 24, 384, 128, true};
    const Quantized qz(c.out, c.in, c.G, c.act_order);
    const std::string dir = temp_dir("act_cuda");
    const SafetensorsFile f = SafetensorsFile::open(write_checkpoint(dir, qz, c.kind, config_json(c.kind, c.G, true)));
    const auto host = load_linear(f, "model.layers.0.mlp.up_proj");
    const auto dev = load_linear(f, "model.layers.0.mlp.up_proj", LayerOptions{Strategy::fused, Memory::cuda});
    ASSERT_FALSE(dev->input_order().empty());
    EXPECT_GE(dev->device_bytes(), c.in * 4) << "the order is uploaded";
    const auto w = qz.dequantized();
    for (int run = 0; run < 4; ++run) {
        const bool normed = run % 2 == 1, q8 = run >= 2;
        SCOPED_TRACE(std::string(normed ? "normed" : "plain") + (q8 ? ", q8" : ", f32"));
        const int64_t tokens = normed ? 3 : 1;
        const auto x = random_floats(tokens * c.in, -1.0f, 2.0f);
        const auto gamma = random_floats(c.in, 0.5f, 1.5f);
        const internal::DeviceBuffer xd(x.data(), x.size() * 4), gd(gamma.data(), gamma.size() * 4);
        const Norm norm{Norm::Kind::rms, gamma.data(), nullptr, 1e-5f}, dnorm{Norm::Kind::rms, static_cast<const float *>(gd.p), nullptr, 1e-5f};
        ForwardOptions fo;
        fo.activations = q8 ? Activations::q8 : Activations::f32;
        fo.cuda_gemm = CudaGemm::halide;
        Poisoned want(tokens, c.out), got(tokens, c.out);
        host->forward(ConstMatrix{x.data(), tokens, c.in, 0, normed ? &norm : nullptr}, want.view(), fo);
        internal::DeviceBuffer yd(got.data.data(), got.data.size() * 4);  // poisoned
        fo.run.memory = Memory::cuda;
        if (q8) {
            expect_error([&] {
                dev->forward(ConstMatrix{static_cast<const float *>(xd.p), tokens, c.in, 0, normed ? &dnorm : nullptr},
                             Matrix{static_cast<float *>(yd.p), tokens, c.out}, fo);
            }, {"8-bit CUDA kernels"});
            continue;
        }
        dev->forward(ConstMatrix{static_cast<const float *>(xd.p), tokens, c.in, 0, normed ? &dnorm : nullptr},
                     Matrix{static_cast<float *>(yd.p), tokens, c.out}, fo);
        internal::cuda_synchronize();
        internal::cuda_download(got.data.data(), yd.p, got.data.size() * 4);
        got.expect_all_written();
        std::vector<float> back(x.size());
        internal::cuda_download(back.data(), xd.p, back.size() * 4);
        EXPECT_EQ(back, x) << "the layer modified its input";
        const std::vector<float> xn = normed ? rms_normed(x, tokens, c.in, gamma, 1e-5) : x;
        std::vector<double> ref(tokens * c.out), mag(tokens * c.out);
        ref::dense_matmul(w, c.out, c.in, xn.data(), tokens, nullptr, ref.data(), mag.data());
        expect_within_rounding(got, ref, mag, (normed ? 3.0 : 1.0) * static_cast<double>(c.in) + 16);
        expect_within_rounding(want, ref, mag, (normed ? 3.0 : 1.0) * static_cast<double>(c.in) + 16);
    }
    std::filesystem::remove_all(dir);
}

// The gather kernel itself (every permute row: CUDA): strided x, a random
// permutation, against the host's loop, every element; x unchanged.
class PermuteColumns : public testing::TestWithParam<VariantParam> {};

TEST_P(PermuteColumns, GathersEveryColumn) {
    const VariantParam &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    for (auto [tokens, in] : std::vector<std::pair<int64_t, int64_t>>{{1, 128}, {3, 4096}, {5, 800}}) {
        SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in));
        const int64_t stride = in + 12;
        const auto x = random_floats(tokens * stride, -3.0f, 3.0f);
        std::vector<int32_t> order(in);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<uint32_t>(in)));
        Poisoned y(tokens, in);
        Mem m(p);
        permute_columns(ConstMatrix{m.in(x), tokens, in, stride}, m.in(order), m.out(y), options(p));
        m.sync();
        y.expect_all_written();
        for (int64_t n = 0; n < tokens; ++n) {
            for (int64_t i = 0; i < in; ++i) ASSERT_EQ(y.data[n * in + i], x[n * stride + order[i]]) << n << ", " << i;
        }
    }
}

// CUDA-only rows: a build without CUDA (the ARM cross build) has none.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(PermuteColumns);
INSTANTIATE_TEST_SUITE_P(Kernels, PermuteColumns, testing::ValuesIn(variants_where("PermuteColumns", [](const KernelRow &r) {
                             return r.op == Op::permute;
                         })), variant_name);

// The host's gather checks its order and its arguments.
TEST(PermuteColumnsHost, GathersAndChecks) {
    const std::vector<float> x = {1, 2, 3, 4, 5, 6};
    std::vector<int32_t> order = {2, 0, 1};
    std::vector<float> y(6, -1);
    permute_columns(ConstMatrix{x.data(), 2, 3}, order.data(), Matrix{y.data(), 2, 3});
    EXPECT_EQ(y, (std::vector<float>{3, 1, 2, 6, 4, 5}));
    order[1] = 3;
    expect_error([&] { permute_columns(ConstMatrix{x.data(), 2, 3}, order.data(), Matrix{y.data(), 2, 3}); },
                 {"order[1] = 3", "[0, 3)"});
    expect_error([&] { permute_columns(ConstMatrix{x.data(), 2, 3}, nullptr, Matrix{y.data(), 2, 3}); }, {"order", "null"});
}

TEST(ZeroPointCheckpoint, ConfigFiles) {
    const std::string dir = temp_dir("config");
    auto read = [&](const std::string &text, const std::string &file = "config.json") {
        std::ofstream(dir + "/" + file) << text;
        const ZeroPointConfig c = read_zero_point_config(dir + "/" + file);
        std::filesystem::remove(dir + "/" + file);
        return c;
    };
    ZeroPointConfig c = read("{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128}}");
    EXPECT_EQ(c.layout, ZeroPointLayout::gptq);
    EXPECT_EQ(c.group_size, 128);
    c = read("{\"bits\": 4, \"group_size\": -1, \"desc_act\": true}", "quantize_config.json");  // AutoGPTQ's own file
    EXPECT_EQ(c.layout, ZeroPointLayout::gptq);
    EXPECT_EQ(c.group_size, -1);
    c = read("{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32, \"checkpoint_format\": \"gptq_v2\"}}");
    EXPECT_EQ(c.layout, ZeroPointLayout::gptq_v2);
    c = read("{\"quantization_config\": {\"quant_method\": \"awq\", \"w_bit\": 4, \"q_group_size\": 64, \"version\": \"GEMM\"}}");
    EXPECT_EQ(c.layout, ZeroPointLayout::awq);
    EXPECT_EQ(c.group_size, 64);
    expect_error([&] { read("{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": 128}}"); },
                 {"bits = 8", "config.json"});
    expect_error([&] { read("{\"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"version\": \"gemv\"}}"); },
                 {"gemv"});
    expect_error([&] { read("{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}}"); }, {"group_size"});
    expect_error([&] { read("{\"quantization_config\": {\"quant_method\": \"bitsandbytes\", \"bits\": 4, \"group_size\": 64}}"); },
                 {"bitsandbytes"});
    std::filesystem::remove_all(dir);
}

// Bad checkpoints: an error naming the tensor and what was expected.
TEST(ZeroPointCheckpoint, BadTensorsAreClearErrors) {
    const std::string p = "model.layers.0.mlp.up_proj";
    const std::string dir = temp_dir("bad");
    const Quantized qz(16, 256, 64, false);
    auto load = [&](const std::function<void(SafetensorsWriter &)> &edit, Kind kind = Kind::gptq) {
        SafetensorsWriter w;
        if (kind == Kind::awq) {
            qz.add_awq(w, p);
        } else {
            qz.add_gptq(w, p, kind == Kind::gptq_v2);
        }
        edit(w);
        w.write(dir + "/model.safetensors");
        const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
        return load_linear(f, p);
    };
    // The good checkpoint with `tensor` replaced by (t, shape, bytes), or dropped (no bytes).
    SafetensorsWriter full;
    qz.add_gptq(full, p, false);
    full.write(dir + "/full.safetensors");
    const SafetensorsFile src = SafetensorsFile::open(dir + "/full.safetensors");
    auto write_with = [&](const std::string &tensor, DType t, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
        SafetensorsWriter w;
        for (const TensorView &v : src.tensors()) {
            if (v.name != tensor) w.add_tensor(v.name, v.type, v.shape, v.data, v.bytes);
        }
        if (!bytes.empty()) w.add_tensor(tensor, t, shape, bytes.data(), bytes.size());
        w.write(dir + "/model.safetensors");
        const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
        return load_linear(f, p);
    };
    expect_error([&] { write_with(p + ".qzeros", DType::i32, {}, {}); }, {"qzeros", "missing"});
    expect_error([&] { write_with(p + ".qzeros", DType::i32, {4, 3}, std::vector<uint8_t>(48, 0x11)); },
                 {"qzeros", "[4, 3]", "expected [4, 2]"});
    expect_error([&] { write_with(p + ".qweight", DType::i32, {32, 15}, std::vector<uint8_t>(32 * 15 * 4, 0)); },
                 {"qweight", "[32, 15]", "expected [32, 16]"});
    expect_error([&] { write_with(p + ".scales", DType::f32, {4, 16}, std::vector<uint8_t>(4 * 16 * 4, 0)); },
                 {"scales", "F32"});
    // g_idx that is no whole groups, and one out of range.
    std::vector<int32_t> g(256, 0);
    for (int c = 0; c < 256; ++c) g[c] = c < 100 ? 0 : 1 + (c - 100) % 3;
    std::vector<uint8_t> gb(256 * 4);
    std::memcpy(gb.data(), g.data(), gb.size());
    expect_error([&] { write_with(p + ".g_idx", DType::i32, {256}, gb); }, {"g_idx", "whole groups"});
    g[7] = 9;
    std::memcpy(gb.data(), g.data(), gb.size());
    expect_error([&] { write_with(p + ".g_idx", DType::i32, {256}, gb); }, {"g_idx[7] = 9"});
    // v1's stored 15 is a zero point of 16.
    std::vector<uint8_t> all15(4 * 2 * 4, 0xFF);
    expect_error([&] { write_with(p + ".qzeros", DType::i32, {4, 2}, all15); }, {"zero point of 16"});
    // AWQ tensors under a GPTQ config.
    std::ofstream(dir + "/config.json") << "{\"quantization_config\": " << config_json(Kind::gptq, 64, false) << "}";
    expect_error([&] { load([](SafetensorsWriter &) {}, Kind::awq); }, {"AWQ's", "config says GPTQ"});
    std::filesystem::remove_all(dir);
}

// qforge's own int4z quantizer written as a GPTQ checkpoint (what `qforge
// quantize --to int4z` writes): read back to the same planes, with the
// config from the file's metadata; the round trip's RMSE is the quantizer's.
TEST(ZeroPointCheckpoint, QuantizedByQforgeReadsBack) {
    const int64_t out = 24, in = 384;
    const auto w = random_floats(out * in, -0.05f, 0.08f);
    for (int G : {32, 128}) {
        const Int4gQuantized q = quantize_int4z(w.data(), out, in, G);
        for (uint8_t z : q.zeros) ASSERT_TRUE(z >= 1 && z <= 15);
        std::vector<float> back(out * in);
        ref::int4z_dequant(q.weight.data(), q.scales.data(), q.zeros.data(), out, in, G, back.data());
        double e2 = 0;
        for (int64_t i = 0; i < out * in; ++i) e2 += (static_cast<double>(w[i]) - back[i]) * (w[i] - back[i]);
        EXPECT_NEAR(std::sqrt(e2 / static_cast<double>(out * in)), q.rmse, 1e-9);
        EXPECT_LT(q.rmse, 0.13 / 15);  // half a step of the widest group's range, and then some
        const std::string dir = temp_dir("own");
        SafetensorsWriter sw;
        write_gptq_layer(sw, "lin", q);
        sw.set_metadata("quantization_config", gptq_config_json(G));
        sw.write(dir + "/q.safetensors");
        const SafetensorsFile f = SafetensorsFile::open(dir + "/q.safetensors");
        const ZeroPointConfig c = zero_point_config_for(f);
        EXPECT_EQ(c.layout, ZeroPointLayout::gptq);
        EXPECT_EQ(c.group_size, G);
        const Int4zLayer l = read_zero_point_layer(f, "lin", c);
        EXPECT_EQ(l.weight, q.weight);
        EXPECT_EQ(l.scales, q.scales);
        EXPECT_EQ(l.zeros, q.zeros);
        EXPECT_TRUE(l.input_order.empty());
        std::filesystem::remove_all(dir);
    }
    Int4gQuantized bad = quantize_int4z(w.data(), out, in, 32);
    bad.zeros[5] = 0;
    SafetensorsWriter sw;
    expect_error([&] { write_gptq_layer(sw, "lin", bad); }, {"zero point 0", "1..15"});
}

// An act-order layer's inputs are its own: QKV and gate/up with different
// orders stay separate layers.
TEST(ZeroPointCheckpoint, ActOrderLayers) {
    const Quantized a(16, 128, 32, true), b(16, 128, 32, true);
    const std::string da = temp_dir("act_a"), db = temp_dir("act_b");
    const SafetensorsFile fa = SafetensorsFile::open(write_checkpoint(da, a, Kind::gptq, config_json(Kind::gptq, 32, true)));
    const SafetensorsFile fb = SafetensorsFile::open(write_checkpoint(db, b, Kind::gptq, config_json(Kind::gptq, 32, true)));
    const auto la = load_linear(fa, "model.layers.0.mlp.up_proj"), lb = load_linear(fb, "model.layers.0.mlp.up_proj");
    ASSERT_NE(la->input_order(), lb->input_order());
    expect_error([&] { concatenate_rows("ab", {la.get(), lb.get()}); }, {"different orders"});
    Int4zLayer l = read_zero_point_layer(fa, "model.layers.0.mlp.up_proj", zero_point_config_for(fa));
    l.input_order[3] = l.input_order[4];
    WeightRef w = l.ref();
    expect_error([&] { make_linear("bad order", w); }, {"no permutation"});
    std::filesystem::remove_all(da);
    std::filesystem::remove_all(db);
}

// An FFN of act-order layers (gate and up with orders of their own): the
// glu kernel, which reads x as it is, is not used for them; the FFN equals
// its layers run one after another.
TEST(ZeroPointCheckpoint, ActOrderFFN) {
    const int64_t hidden = 128, ffn = 64, tokens = 3;
    const Quantized g(ffn, hidden, 32, true), u(ffn, hidden, 32, true), d(hidden, ffn, 32, true);
    std::vector<std::string> dirs;
    auto layer = [&](const Quantized &q, const char *name) {
        dirs.push_back(temp_dir(std::string("ffn_") + name));
        const SafetensorsFile f = SafetensorsFile::open(write_checkpoint(dirs.back(), q, Kind::gptq, config_json(Kind::gptq, 32, true)));
        return load_linear(f, "model.layers.0.mlp.up_proj");
    };
    FFN f = FFN::gated(layer(g, "gate"), layer(u, "up"), layer(d, "down"), Activation::silu);
    const auto lg = layer(g, "gate2"), lu = layer(u, "up2"), ld = layer(d, "down2");
    const auto x = random_floats(tokens * hidden, -1.0f, 1.0f);
    ForwardOptions fo;  // automatic: 8-bit activations over packed tiles, where the glu kernel would run
    std::vector<float> a(tokens * ffn), b(tokens * ffn), want(tokens * hidden), got(tokens * hidden, nan_poison());
    lg->forward(ConstMatrix{x.data(), tokens, hidden}, Matrix{a.data(), tokens, ffn}, fo);
    lu->forward(ConstMatrix{x.data(), tokens, hidden}, Matrix{b.data(), tokens, ffn}, fo);
    for (int64_t i = 0; i < tokens * ffn; ++i) a[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
    ld->forward(ConstMatrix{a.data(), tokens, ffn}, Matrix{want.data(), tokens, hidden}, fo);
    f.forward(ConstTensor{x.data(), {tokens, hidden}}, Tensor{got.data(), {tokens, hidden}}, fo);
    double num = 0, den = 0;
    for (int64_t i = 0; i < tokens * hidden; ++i) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    EXPECT_LT(std::sqrt(num / den), 1e-3);  // the same integer dots; the SiLU's rounding
    for (const auto &dir : dirs) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qforge::test
