// Per-channel 8-bit weights (FORMATS.md, "int8 and fp8 rows"): FP8 E4M3
// decoded exactly for all 256 codes (NaN included) by every fp8 dequantizer;
// int8 and FP8 checkpoints in compressed-tensors' layout (codes and
// NAME_scale, per tensor or per channel, f32 or bf16) read through
// load_linear and run on every host strategy and activation type against
// the checkpoint's own math in float64; bad tensors are errors naming them.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "layer_util.h"
#include "qforge/safetensors.h"
#include "test_util.h"

namespace qforge::test {
namespace {

float bits_to_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// The reference decoder against values computed by hand from the OCP spec,
// qforge's encoder and decoder against the reference on every code.
TEST(Fp8Codes, DecodeAndEncode) {
    EXPECT_EQ(ref::fp8_e4m3(0x00), 0.0f);
    EXPECT_TRUE(std::signbit(ref::fp8_e4m3(0x80)));
    EXPECT_EQ(ref::fp8_e4m3(0x01), std::ldexp(1.0f, -9));   // smallest subnormal
    EXPECT_EQ(ref::fp8_e4m3(0x07), 7 * std::ldexp(1.0f, -9));
    EXPECT_EQ(ref::fp8_e4m3(0x08), std::ldexp(1.0f, -6));   // smallest normal
    EXPECT_EQ(ref::fp8_e4m3(0x38), 1.0f);
    EXPECT_EQ(ref::fp8_e4m3(0x3C), 1.5f);
    EXPECT_EQ(ref::fp8_e4m3(0x7E), 448.0f);                 // largest finite
    EXPECT_EQ(ref::fp8_e4m3(0xFE), -448.0f);
    EXPECT_EQ(ref::fp8_e4m3(0x77), 240.0f);
    EXPECT_TRUE(std::isnan(ref::fp8_e4m3(0x7F)));
    EXPECT_TRUE(std::isnan(ref::fp8_e4m3(0xFF)));
    for (int c = 0; c < 256; ++c) {
        const float r = ref::fp8_e4m3(static_cast<uint8_t>(c)), q = fp8_e4m3_to_f32(static_cast<uint8_t>(c));
        if (std::isnan(r)) {
            EXPECT_TRUE(std::isnan(q)) << "code " << c;
            continue;
        }
        EXPECT_EQ(std::memcmp(&r, &q, 4), 0) << "code " << c;
        EXPECT_EQ(f32_to_fp8_e4m3(r), c) << "code " << c << " does not encode back";
    }
    // Ties to even, saturation, NaN.
    EXPECT_EQ(f32_to_fp8_e4m3(1.0625f), 0x38);  // between 1 (0x38) and 1.125 (0x39)
    EXPECT_EQ(f32_to_fp8_e4m3(1.1875f), 0x3A);  // between 1.125 (0x39) and 1.25 (0x3A)
    EXPECT_EQ(f32_to_fp8_e4m3(1.07f), 0x39);
    EXPECT_EQ(f32_to_fp8_e4m3(1e6f), 0x7E);
    EXPECT_EQ(f32_to_fp8_e4m3(-1e6f), 0xFE);
    EXPECT_EQ(f32_to_fp8_e4m3(std::ldexp(1.0f, -11)), 0x00);  // a quarter of the smallest subnormal
    EXPECT_EQ(f32_to_fp8_e4m3(NAN), 0x7F);
}

// Every fp8 dequantizer on every code, under three scales (one negative):
// bit for bit where the value is a number, NaN where the code is.
class Fp8Dequant : public testing::TestWithParam<VariantParam> {};

TEST_P(Fp8Dequant, AllCodesExactly) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const int64_t out = 3, in = 256;
    const float scales[out] = {1.0f, -0.375f, 3.1e-3f};
    std::vector<uint8_t> codes(out * in);
    for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < in; ++c) codes[r * in + c] = static_cast<uint8_t>((c + 37 * r) % 256);
    }
    const std::vector<uint8_t> rows = channel_rows(Format::fp8, codes.data(), scales, out, in);
    std::vector<float> want(out * in);
    ref::fp8_rows_dequant(rows.data(), out, in, want.data());
    std::vector<float> got(out * in, 12345.0f);
    Mem m(p);
    dequant(Weights{Format::fp8, m.in(rows), out, in}, Matrix{m.out(got), out, in}, options(p));
    m.sync();
    int64_t nans = 0;
    for (int64_t i = 0; i < out * in; ++i) {
        if (std::isnan(want[i])) {
            ++nans;
            EXPECT_TRUE(std::isnan(got[i])) << "element " << i << " (code " << int(codes[i]) << ") is " << got[i];
        } else {
            EXPECT_EQ(std::memcmp(&want[i], &got[i], 4), 0) << "element " << i << " (code " << int(codes[i]) << "): "
                                                             << got[i] << " != " << want[i];
        }
    }
    EXPECT_EQ(nans, 2 * out);
}

INSTANTIATE_TEST_SUITE_P(Variants, Fp8Dequant, testing::ValuesIn(weight_variants("Fp8Dequant", Format::fp8, {Op::dequant})),
                         variant_name);

std::string temp_dir(const std::string &name) {
    const auto d = std::filesystem::temp_directory_path() / ("qforge_channel_" + std::to_string(seed()) + "_" + name);
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d.string();
}

// A checkpoint's layer as llm-compressor leaves it: codes [out, in] and a
// scale per tensor or per row.
struct Checkpoint {
    Format format;
    int64_t out, in;
    bool per_tensor;
    DType scale_type;
    std::vector<uint8_t> codes;
    std::vector<float> scales;  // as stored (bf16 values exactly representable)

    Checkpoint(Format f, int64_t o, int64_t i, bool tensor, DType st) : format(f), out(o), in(i), per_tensor(tensor), scale_type(st) {
        codes = random_bytes(out * in);
        if (f == Format::fp8) {
            for (uint8_t &c : codes) c = (c & 0x7F) == 0x7F ? c ^ 1 : c;  // no NaN weights
            for (uint8_t &c : codes) c = (c & 0x78) > 0x58 ? c & 0xDF : c;  // LLM-like magnitudes (<= 2^4)
        }
        scales = random_floats(per_tensor ? 1 : out, 0.0005f, 0.004f);
        for (float &s : scales) s = ref::bf16_to_f32(ref::f32_to_bf16(s));
    }
    float value(uint8_t c) const { return format == Format::int8 ? static_cast<float>(static_cast<int8_t>(c)) : ref::fp8_e4m3(c); }
    // The checkpoint's math: W[o, c] = scale * value(code).
    std::vector<float> dequantized() const {
        std::vector<float> w(out * in);
        for (int64_t o = 0; o < out; ++o) {
            for (int64_t c = 0; c < in; ++c) w[o * in + c] = scales[per_tensor ? 0 : o] * value(codes[o * in + c]);
        }
        return w;
    }
    void add(SafetensorsWriter &w, const std::string &name) const {
        w.add_tensor(name, format == Format::int8 ? DType::i8 : DType::f8_e4m3, {out, in}, codes.data(), codes.size());
        const std::vector<int64_t> shape = per_tensor ? std::vector<int64_t>{} : std::vector<int64_t>{out, 1};
        if (scale_type == DType::bf16) {
            std::vector<uint16_t> b(scales.size());
            for (size_t i = 0; i < b.size(); ++i) b[i] = ref::f32_to_bf16(scales[i]);
            w.add_tensor(name + "_scale", DType::bf16, shape, b.data(), b.size() * 2);
        } else {
            w.add_tensor(name + "_scale", DType::f32, shape, scales.data(), scales.size() * 4);
        }
    }
};

TEST(ChannelCheckpoint, LayerMatchesTheCheckpointsMath) {
    const std::string name = "model.layers.0.mlp.down_proj.weight";
    struct Case { Format f; int64_t out, in; bool per_tensor; DType st; };
    for (const Case &c : std::vector<Case>{{Format::int8, 37, 256, false, DType::f32}, {Format::int8, 16, 1024, true, DType::bf16},
                                           {Format::fp8, 40, 512, true, DType::f32}, {Format::fp8, 19, 96, false, DType::bf16}}) {
        const Checkpoint ck(c.f, c.out, c.in, c.per_tensor, c.st);
        const auto bias = random_floats(c.out, -0.5f, 0.5f);
        const std::string dir = temp_dir("layer");
        SafetensorsWriter sw;
        ck.add(sw, name);
        sw.add_tensor("model.layers.0.mlp.down_proj.bias", DType::f32, {c.out}, bias.data(), bias.size() * 4);
        sw.write(dir + "/model.safetensors");
        const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
        const auto w = ck.dequantized();
        for (Strategy s : {Strategy::fused, Strategy::eager_f32}) {
            SCOPED_TRACE(std::string(to_string(c.f)) + " [" + std::to_string(c.out) + ", " + std::to_string(c.in) + "] " +
                         (c.per_tensor ? "per tensor " : "per channel ") + to_string(c.st) + (s == Strategy::fused ? " fused" : " eager"));
            const auto layer = load_linear(f, name, LayerOptions{s, Memory::host});
            EXPECT_EQ(layer->format(), c.f);
            for (int run = 0; run < 4; ++run) {
                const bool normed = run % 2 == 1, q8 = run >= 2;
                if (q8 && (s != Strategy::fused || c.f == Format::fp8)) continue;
                const int64_t tokens = normed ? 3 : 1;
                const auto x = random_floats(tokens * c.in, -1.0f, 2.0f);
                const auto gamma = random_floats(c.in, 0.5f, 1.5f);
                const Norm norm{Norm::Kind::rms, gamma.data(), nullptr, 1e-5f};
                Poisoned y(tokens, c.out);
                ForwardOptions fo;
                fo.activations = q8 ? Activations::q8 : Activations::f32;
                layer->forward(ConstMatrix{x.data(), tokens, c.in, 0, normed ? &norm : nullptr}, y.view(), fo);
                y.expect_all_written();
                const std::vector<float> xn = normed ? rms_normed(x, tokens, c.in, gamma, 1e-5) : x;
                std::vector<double> ref(tokens * c.out), mag(tokens * c.out);
                ref::dense_matmul(w, c.out, c.in, xn.data(), tokens, bias.data(), ref.data(), mag.data());
                if (q8) {
                    EXPECT_LT(relative_error(y, ref), 2e-2);  // x through Q8_0
                } else {
                    expect_within_rounding(y, ref, mag, (normed ? 3.0 : 1.0) * static_cast<double>(c.in) + 16);
                }
            }
        }
        std::filesystem::remove_all(dir);
    }
}

TEST(ChannelCheckpoint, BadTensorsAreClearErrors) {
    const std::string name = "model.layers.0.self_attn.o_proj.weight";
    const std::string dir = temp_dir("bad");
    auto expect_error = [&](const std::function<void(SafetensorsWriter &)> &write, const std::string &needle) {
        SafetensorsWriter w;
        write(w);
        w.write(dir + "/model.safetensors");
        const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
        try {
            load_linear(f, name);
            ADD_FAILURE() << "no error (expected one with '" << needle << "')";
        } catch (const Error &e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
        }
    };
    const Checkpoint ck(Format::int8, 8, 64, false, DType::f32);
    const std::vector<uint8_t> codes = ck.codes;
    expect_error([&](SafetensorsWriter &w) { w.add_tensor(name, DType::i8, {8, 64}, codes.data(), codes.size()); },
                 "has no scale tensor");
    expect_error([&](SafetensorsWriter &w) {
        w.add_tensor(name, DType::i8, {8, 64}, codes.data(), codes.size());
        const auto s = random_floats(7, 0.1f, 0.2f);
        w.add_tensor(name + "_scale", DType::f32, {7}, s.data(), s.size() * 4);
    }, "expected [], [1], [8] or [8, 1]");
    expect_error([&](SafetensorsWriter &w) {
        w.add_tensor(name, DType::f8_e4m3, {8, 64}, codes.data(), codes.size());
        const auto s = random_floats(1, 0.1f, 0.2f);
        w.add_tensor(name + "_scale_inv", DType::f32, {1, 1}, s.data(), s.size() * 4);
    }, "block-wise");
    expect_error([&](SafetensorsWriter &w) {
        w.add_tensor(name, DType::i8, {8, 64}, codes.data(), codes.size());
        std::vector<float> s(8, 0.1f);
        s[5] = INFINITY;
        w.add_tensor(name + "_scale", DType::f32, {8, 1}, s.data(), s.size() * 4);
    }, "row 5");
    expect_error([&](SafetensorsWriter &w) {
        w.add_tensor(name, DType::i8, {4, 48}, codes.data(), 4 * 48);
        std::vector<float> s(4, 0.1f);
        w.add_tensor(name + "_scale", DType::f32, {4}, s.data(), s.size() * 4);
    }, "multiple of 32");
    expect_error([&](SafetensorsWriter &w) {
        w.add_tensor(name, DType::i8, {8, 64}, codes.data(), codes.size());
        std::vector<int32_t> s(8, 1);
        w.add_tensor(name + "_scale", DType::i32, {8}, s.data(), s.size() * 4);
    }, "expected F32, F16 or BF16");
    std::filesystem::remove_all(dir);
}

// qforge's own quantizer: within half a step of the row's scale, and
// its rows dequantize to its reported values.
TEST(ChannelQuantize, RoundsToNearestPerRow) {
    const int64_t out = 9, in = 160;
    auto w = random_floats(out * in, -0.08f, 0.08f);
    for (int64_t k = 0; k < in; ++k) w[3 * in + k] = 0.0f;  // an all-zero row
    for (Format f : {Format::int8, Format::fp8}) {
        const ChannelQuantized q = quantize_channels(f, w.data(), out, in);
        EXPECT_EQ(q.scales[3], 1.0f);
        const auto rows = channel_rows(f, q.codes.data(), q.scales.data(), out, in);
        std::vector<float> back(out * in);
        ref::block_dequant(f, rows.data(), out, in, back.data());
        for (int64_t r = 0; r < out; ++r) {
            for (int64_t k = 0; k < in; ++k) {
                const float v = w[r * in + k], b = back[r * in + k];
                // int8: half a step; fp8: half an E4M3 step (1/16 relative) or half the subnormal step.
                const float tol = f == Format::int8 ? 0.5f * q.scales[r] * 1.0001f
                                                    : std::max(std::fabs(v) / 16, q.scales[r] * std::ldexp(1.0f, -10)) * 1.0001f;
                ASSERT_LE(std::fabs(v - b), tol) << to_string(f) << " row " << r << " col " << k;
            }
        }
        EXPECT_GT(q.rmse, 0.0);
    }
}

}  // namespace
}  // namespace qforge::test
