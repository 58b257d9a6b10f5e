// Q8_K activation quantization (bit-exact against ggml's rule) and the
// Q4_K x Q8_K integer-dot kernels.
//
// Bound for q4k_matmul_q8 against its integer reference: the int32 sums are
// exact (|sum| < 2^24, so their conversion to f32 is exact too); what
// differs is f32 rounding of a.d*w.d and of the running sums. With m float
// terms per output (9 per block: 8 lanes and the min term, plus bias), the
// classic recursive-summation bound gives
//     |y - ref| <= (m + 2) * 2^-24 * sum |terms|,
// which the test checks element by element.
#include "test_util.h"

#include <cstring>

#include "qforge/quantize.h"

#include "qforge/pack.h"

namespace qforge::test {
namespace {

struct Q8K {
    int64_t tokens, in;
    std::vector<float> d;
    std::vector<int8_t> qs;
    std::vector<int16_t> bsums;
    Q8K(int64_t t, int64_t i)
        : tokens(t), in(i), d(t * (i / 256), nan_poison()), qs(t * i, 0x55), bsums(t * (i / 16), 0x5555) {}
    Q8KActivations out(Mem &m) { return {m.out(d), m.out(qs), m.out(bsums), tokens, in}; }
    Q8KActivations input(Mem &m) const {
        return {const_cast<float *>(m.in(d)), const_cast<int8_t *>(m.in(qs)), const_cast<int16_t *>(m.in(bsums)),
                tokens, in};
    }
};

// Activations with a few awkward blocks: all zero, one huge value, negative maximum, ties.
std::vector<float> awkward_activations(int64_t tokens, int64_t in) {
    auto x = random_floats(tokens * in, -3.0f, 3.0f);
    if (in >= 512) {
        std::fill(x.begin(), x.begin() + 256, 0.0f);           // a zero block
        x[300] = -1000.0f;                                     // negative x_max
        x[400] = 1000.0f;                                      // tie in magnitude: first wins
        for (int i = 256; i < 280; ++i) x[i] = 0.5f * (i - 268);  // exact halves: ties to even
    }
    return x;
}

class Q8KQuantize : public testing::TestWithParam<VariantParam> {};

TEST_P(Q8KQuantize, BitExactAgainstGgmlRule) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    for (auto [tokens, in] : std::vector<std::pair<int64_t, int64_t>>{{1, 256}, {3, 512}, {7, 4096}, {129, 768}, {2, 14336}}) {
        SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in));
        auto x = awkward_activations(tokens, in);
        Q8K got(tokens, in), want(tokens, in);
        Mem m(p);
        q8k_quantize({m.in(x), tokens, in}, got.out(m), options(p));
        m.sync();
        ref::q8k_quantize(x.data(), tokens, in, want.d.data(), want.qs.data(), want.bsums.data());
        EXPECT_EQ(0, std::memcmp(got.d.data(), want.d.data(), got.d.size() * 4)) << "d differs";
        EXPECT_EQ(got.qs, want.qs);
        EXPECT_EQ(got.bsums, want.bsums);
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Q8KQuantize, testing::ValuesIn(variants_where("Q8KQuantize", [](const KernelRow &r) {
                             return r.op == Op::quantize && r.out == Out::q8_k && !r.norm;
                         })), variant_name);

class Q4KMatmulQ8 : public testing::TestWithParam<VariantParam> {};

TEST_P(Q4KMatmulQ8, MatchesIntegerReferenceAndF32) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    for (const MatmulCase &c : q4k_matmul_cases()) {
        SCOPED_TRACE(c.name());
        auto data = random_q4k(c.out, c.in, /*realistic=*/true);
        auto x = random_floats(c.tokens * c.in);
        auto bias = random_floats(c.out);
        const float *b = c.bias ? bias.data() : nullptr;
        Q8K a(c.tokens, c.in);
        ref::q8k_quantize(x.data(), c.tokens, c.in, a.d.data(), a.qs.data(), a.bsums.data());
        Poisoned y(c.tokens, c.out, c.pad);
        Mem mem(p);
        Weights wt{Format::q4_k, nullptr, c.out, c.in};
        // Packed kernels read the same weights packed (tail tiles padded).
        std::vector<uint8_t> packed;
        if (p.row->pack) {
            packed.resize(packed_bytes(Format::q4_k, c.out, c.in, p.row->pack));
            wt.data = data.data();
            pack_weights(wt, p.row->pack, packed.data());
            wt.pack_rows = p.row->pack;
        }
        wt.data = mem.in(p.row->pack ? packed : data);
        matmul(wt, a.input(mem), b ? mem.in(bias) : nullptr, mem.out(y), options(p));
        mem.sync();
        y.expect_all_written();

        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        ref::q4k_matmul_q8(data.data(), c.out, c.in, a.d.data(), a.qs.data(), a.bsums.data(), c.tokens, b,
                           ref.data(), mag.data());
        const double m = 9.0 * (c.in / 256) + 1;
        expect_within_rounding(y, ref, mag, m);

        // Against the f32-activation result the difference is the activation
        // quantization error W (x - x_hat); by Cauchy-Schwarz, per token,
        // ||W (x - x_hat)|| <= ||W||_F ||x - x_hat||, plus the rounding above.
        std::vector<double> exact(c.tokens * c.out);
        ref::q4k_matmul_f32(data.data(), c.out, c.in, x.data(), c.tokens, b, exact.data());
        std::vector<float> w(c.out * c.in);
        ref::q4k_dequant(data.data(), c.out, c.in, w.data());
        double w_frob2 = 0;
        for (float v : w) w_frob2 += static_cast<double>(v) * v;
        for (int64_t n = 0; n < c.tokens; ++n) {
            double qerr2 = 0, diff2 = 0, rounding = 0;
            for (int64_t i = 0; i < c.in; ++i) {
                const double xh = static_cast<double>(a.d[n * (c.in / 256) + i / 256]) * a.qs[n * c.in + i];
                qerr2 += (x[n * c.in + i] - xh) * (x[n * c.in + i] - xh);
            }
            for (int64_t r = 0; r < c.out; ++r) {
                const double d = y.at(n, r) - exact[n * c.out + r];
                diff2 += d * d;
                rounding += (m + 2) * std::ldexp(1.0, -24) * mag[n * c.out + r];
            }
            EXPECT_LE(std::sqrt(diff2), std::sqrt(w_frob2 * qerr2) + rounding) << "token " << n;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Q4KMatmulQ8, testing::ValuesIn(weight_variants("Q4KMatmulQ8", Format::q4_k, {Op::matvec, Op::matmul}, ActType::q8_k)), variant_name);

}  // namespace
}  // namespace qforge::test

namespace qforge::test {
namespace {

// Q8_0 activation planes (FORMATS.md, "Q8_0 activations").
struct Q80 {
    int64_t tokens, in;
    std::vector<float> d;
    std::vector<int8_t> qs;
    std::vector<int16_t> sums;
    Q80(int64_t t, int64_t i) : tokens(t), in(i), d(t * (i / 32), nan_poison()), qs(t * i, 0x55), sums(t * (i / 32), 0x5555) {}
    Q8KActivations out(Mem &m) { return {m.out(d), m.out(qs), m.out(sums), tokens, in, ActType::q8_0}; }
    Q8KActivations input(Mem &m) const {
        return {const_cast<float *>(m.in(d)), const_cast<int8_t *>(m.in(qs)), const_cast<int16_t *>(m.in(sums)), tokens,
                in, ActType::q8_0};
    }
};

class Q80Quantize : public testing::TestWithParam<VariantParam> {};

TEST_P(Q80Quantize, BitExactAgainstReference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    for (auto [tokens, in] : std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {3, 96}, {7, 4096}, {129, 800}, {2, 14336}}) {
        SCOPED_TRACE("tokens=" + std::to_string(tokens) + " in=" + std::to_string(in));
        auto x = random_floats(tokens * in, -3.0f, 3.0f);
        std::fill(x.begin(), x.begin() + 32, 0.0f);  // a zero block
        if (in >= 96) {
            x[40] = -1000.0f;                                  // one huge value
            for (int i = 64; i < 96; ++i) x[i] = 0.5f * (i - 80);  // exact halves: ties to even
        }
        Q80 got(tokens, in), want(tokens, in);
        Mem m(p);
        q8k_quantize({m.in(x), tokens, in}, got.out(m), options(p));
        m.sync();
        ref::q8_0_quantize(x.data(), tokens, in, want.d.data(), want.qs.data(), want.sums.data());
        EXPECT_EQ(0, std::memcmp(got.d.data(), want.d.data(), got.d.size() * 4)) << "d differs";
        EXPECT_EQ(got.qs, want.qs);
        EXPECT_EQ(got.sums, want.sums);
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Q80Quantize, testing::ValuesIn(variants_where("Q80Quantize", [](const KernelRow &r) {
                             return r.op == Op::quantize && r.out == Out::q8_0 && !r.norm;
                         })), variant_name);

// The weights as kernel `rows` reads them: packed in tiles of `rows`, or
// (0) the file's own bytes.
// Random blocks of format f whose f16 fields (the scale, and the min where
// there is one) have an LLM-like magnitude; every other byte is any byte.
std::vector<uint8_t> random_scaled_blocks(Format f, int64_t out, int64_t in) {
    auto data = random_bytes(weight_bytes(f, out, in));
    for (size_t b = 0; b < data.size(); b += traits(f).block_bytes) {
        for (int at : traits(f).f16_fields) {
            const uint16_t h = f16(random_floats(1, -0.02f, 0.02f)[0]);
            data[b + at] = h & 0xFF;
            data[b + at + 1] = h >> 8;
        }
    }
    return data;
}

std::vector<uint8_t> packed_or_file(const Weights &w, int rows, const std::vector<uint8_t> &file) {
    if (!rows) return file;
    std::vector<uint8_t> packed(packed_bytes(w.format, w.out, w.in, rows));
    pack_weights(w, rows, packed.data());
    return packed;
}

// Roundings beyond the blocks': the bias, plus over the file's layout
// (CUDA) 8 lanes' partial sums per row that meet in 3 adds, each lane
// scaling its own share of a block (one more product).
double lane_sums(const KernelRow &row) { return row.pack ? 2 : 6; }

// 32-block kernels (Q4_0, int4g, Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL, int8) x Q8_0,
// packed (the CPUs) or over the file's layout (CUDA), against the float64
// reference on the same 8-bit activations; rows not a multiple of R (the
// tail tile), NaN-poisoned outputs, every element checked. Each block's
// integer sum is exact; f32 rounds w.d * a.d, their product with it, and the
// running sum: 3 roundings per block, plus the bias.
class Block32Q8 : public testing::TestWithParam<VariantParam> {};

TEST_P(Block32Q8, MatchesReference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const Format f = p.row->format;
    const int G = p.row->group;
    const std::vector<MatmulCase> cases = {
        {1, 32, 1, false, 0},  {3, 96, 2, true, 0},  {17, 4096, 1, false, 3}, {33, 160, 5, true, 0},
        {257, 1024, 9, true, 1}, {7, 2304, 130, false, 0}, {16, 512, 4, true, 0},
    };
    for (const MatmulCase &c : cases) {
        SCOPED_TRACE(c.name());
        std::vector<uint8_t> data;
        std::vector<uint16_t> scales;
        std::vector<uint8_t> zeros;
        std::vector<float> w(c.out * c.in);
        if (traits(f).separate_scales) {
            data = random_bytes(c.out * c.in / 2);
            const int64_t groups = (c.in + G - 1) / G;
            scales = random_f16(c.out * groups, -0.02f, 0.02f);
            if (traits(f).zero_points) {
                zeros = random_bytes(c.out * groups);
                for (uint8_t &z : zeros) z &= 15;
            }
            ref::int4z_dequant(data.data(), scales.data(), zeros.empty() ? nullptr : zeros.data(), c.out, c.in, G, w.data());
        } else if (traits(f).row_head_bytes) {  // int8: quantized per channel from random weights
            const auto wf = random_floats(c.out * c.in, -0.05f, 0.05f);
            const ChannelQuantized q = quantize_channels(f, wf.data(), c.out, c.in);
            data = channel_rows(f, q.codes.data(), q.scales.data(), c.out, c.in);
            ref::block_dequant(f, data.data(), c.out, c.in, w.data());
        } else {
            data = random_scaled_blocks(f, c.out, c.in);
            ref::block_dequant(f, data.data(), c.out, c.in, w.data());
        }
        Weights wt{f, data.data(), c.out, c.in};
        wt.scales = scales.empty() ? nullptr : scales.data();
        wt.zeros = zeros.empty() ? nullptr : zeros.data();
        wt.group_size = G;
        const std::vector<uint8_t> packed = packed_or_file(wt, p.row->pack, data);
        auto x = random_floats(c.tokens * c.in, -2.0f, 2.0f);
        auto bias = random_floats(c.out);
        const float *b = c.bias ? bias.data() : nullptr;
        Q80 a(c.tokens, c.in);
        ref::q8_0_quantize(x.data(), c.tokens, c.in, a.d.data(), a.qs.data(), a.sums.data());
        Poisoned y(c.tokens, c.out, c.pad);
        Mem mem(p);
        Weights pw{f, mem.in(packed), c.out, c.in};
        pw.group_size = G;
        pw.pack_rows = p.row->pack;
        if (!scales.empty() && !p.row->pack) pw.scales = mem.in(scales);
        if (!zeros.empty() && !p.row->pack) pw.zeros = mem.in(zeros);
        matmul(pw, a.input(mem), b ? mem.in(bias) : nullptr, mem.out(y), options(p));
        mem.sync();
        y.expect_all_written();
        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        ref::matmul_q8(w.data(), c.out, c.in, 32, a.d.data(), a.qs.data(), c.tokens, b, ref.data(), mag.data());
        // A min adds its product, its rounding and one more add per block.
        const bool with_min = f == Format::q4_1 || f == Format::q5_1;
        expect_within_rounding(y, ref, mag, (with_min ? 6.0 : 3.0) * (c.in / 32) + lane_sums(*p.row));
    }
}

std::vector<VariantParam> block32_q8_variants() {
    auto v = weight_variants("Block32Q8", Format::q4_0, {Op::matvec, Op::matmul}, ActType::q8_0);
    for (Format f : {Format::int4g, Format::int4z, Format::q8_0, Format::q4_1, Format::q5_0, Format::q5_1, Format::iq4_nl, Format::int8}) {
        auto g = weight_variants("Block32Q8", f, {Op::matvec, Op::matmul}, ActType::q8_0);
        v.insert(v.end(), g.begin(), g.end());
    }
    return v;
}

INSTANTIATE_TEST_SUITE_P(Variants, Block32Q8, testing::ValuesIn(block32_q8_variants()), variant_name);

// K-quants (Q6_K, Q3_K, Q2_K, Q5_K, IQ4_XS) x Q8_K, packed or over the
// file's layout, against the float64 reference on the same 8-bit
// activations, as Block32Q8. Per super-block the integer sum is
// exact; f32 rounds its conversion, a.d * w.d, their product and the
// running sum: 4 roundings, 7 with a min (its product, conversion and
// difference), plus the bias.
class KQuantQ8 : public testing::TestWithParam<VariantParam> {};

TEST_P(KQuantQ8, MatchesReference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const Format f = p.row->format;
    const FormatTraits &ft = traits(f);
    for (const MatmulCase &c : q4k_matmul_cases()) {
        SCOPED_TRACE(c.name());
        const auto data = random_scaled_blocks(f, c.out, c.in);
        std::vector<float> w(c.out * c.in);
        ref::block_dequant(f, data.data(), c.out, c.in, w.data());
        const std::vector<uint8_t> packed = packed_or_file(Weights{f, data.data(), c.out, c.in}, p.row->pack, data);
        auto x = awkward_activations(c.tokens, c.in);
        auto bias = random_floats(c.out);
        const float *b = c.bias ? bias.data() : nullptr;
        Q8K a(c.tokens, c.in);
        ref::q8k_quantize(x.data(), c.tokens, c.in, a.d.data(), a.qs.data(), a.bsums.data());
        Poisoned y(c.tokens, c.out, c.pad);
        Mem mem(p);
        Weights pw{f, mem.in(packed), c.out, c.in};
        pw.pack_rows = p.row->pack;
        matmul(pw, a.input(mem), b ? mem.in(bias) : nullptr, mem.out(y), options(p));
        mem.sync();
        y.expect_all_written();
        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        ref::matmul_q8(w.data(), c.out, c.in, 256, a.d.data(), a.qs.data(), c.tokens, b, ref.data(), mag.data());
        const bool with_min = ft.f16_fields.size() > 1;
        expect_within_rounding(y, ref, mag, (with_min ? 7.0 : 4.0) * (c.in / 256) + lane_sums(*p.row));
    }
}

std::vector<VariantParam> kquant_q8_variants() {
    std::vector<VariantParam> v;
    for (Format f : {Format::q6_k, Format::q5_k, Format::q3_k, Format::q2_k, Format::iq4_xs}) {
        auto g = weight_variants("KQuantQ8", f, {Op::matvec, Op::matmul}, ActType::q8_k);
        v.insert(v.end(), g.begin(), g.end());
    }
    return v;
}

INSTANTIATE_TEST_SUITE_P(Variants, KQuantQ8, testing::ValuesIn(kquant_q8_variants()), variant_name);

// The packed CPU kernels that carry a software prefetch hold two loop nests
// and run one by the CPU's vendor (schedules/cpu.h, cpu_wants_prefetch):
// the suites above check the one this machine runs against the reference,
// this one that the other gives the same bits. 37 rows (a tail tile) of
// 4096 weights: far more blocks than the prefetch runs ahead. Prefill
// kernels too: their weight touch (Intel) runs in the first token tile only,
// and 19 tokens are several tiles and a tail.
class PackedPrefetch : public testing::TestWithParam<VariantParam> {
protected:
    void TearDown() override { internal::force_cpu_prefetch(-1); }
};

TEST_P(PackedPrefetch, BothPathsGiveTheSameBits) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const Format f = p.row->format;
    const int64_t out = 37, in = 4096, tokens = p.row->op == Op::matvec ? 1 : 19;
    const auto data = random_scaled_blocks(f, out, in);
    const std::vector<uint8_t> packed = packed_or_file(Weights{f, data.data(), out, in}, p.row->pack, data);
    auto x = awkward_activations(tokens, in);
    Q8K ak(tokens, in);
    Q80 a0(tokens, in);
    const bool k = p.row->act == ActType::q8_k;
    if (k) {
        ref::q8k_quantize(x.data(), tokens, in, ak.d.data(), ak.qs.data(), ak.bsums.data());
    } else {
        ref::q8_0_quantize(x.data(), tokens, in, a0.d.data(), a0.qs.data(), a0.sums.data());
    }
    std::vector<std::vector<float>> ys;
    for (int on : {0, 1}) {
        internal::force_cpu_prefetch(on);
        Poisoned y(tokens, out, 3);
        Mem mem(p);
        Weights pw{f, mem.in(packed), out, in};
        pw.pack_rows = p.row->pack;
        matmul(pw, k ? ak.input(mem) : a0.input(mem), nullptr, mem.out(y), options(p));
        mem.sync();
        y.expect_all_written();
        ys.emplace_back();
        for (int64_t n = 0; n < tokens; ++n) {
            for (int64_t r = 0; r < out; ++r) ys.back().push_back(y.at(n, r));
        }
    }
    ASSERT_EQ(ys[0].size(), ys[1].size());
    EXPECT_EQ(0, std::memcmp(ys[0].data(), ys[1].data(), ys[0].size() * sizeof(float)))
        << "the prefetch and the plain loop nests disagree";
}

INSTANTIATE_TEST_SUITE_P(Variants, PackedPrefetch, testing::ValuesIn(variants_where("PackedPrefetch", [](const KernelRow &r) {
                             const FormatTraits &t = traits(r.format);
                             return r.weights && r.pack && (r.op == Op::matvec || r.op == Op::matmul) && r.epi == Epi::plain &&
                                    !r.norm && !*r.tag &&
                                    !t.separate_scales && !t.row_head_bytes && !t.f16_fields.empty() &&
                                    std::string(r.families).find("cuda") == std::string::npos;
                         })), variant_name);

}  // namespace
}  // namespace qforge::test
