// GGUF block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, Q6_K,
// IQ4_NL, IQ4_XS), qforge's per-channel int8 and fp8 rows, and dense f32/f16 weights:
// dequantization bit-exact against the reference (any finite f16 scale),
// matmuls within the f32 rounding bound of float64, every registered variant.
#include "test_util.h"

namespace qforge::test {
namespace {

// The block formats of this file, with their references.
struct RefBlock {
    Format format;
    void (*dequant)(const uint8_t *, int64_t, int64_t, float *);
};

const RefBlock kBlocks[] = {
    {Format::q6_k, ref::q6k_dequant},
    {Format::q8_0, ref::q8_0_dequant},
    {Format::q4_0, ref::q4_0_dequant},
    {Format::q4_1, ref::q4_1_dequant},
    {Format::q5_0, ref::q5_0_dequant},
    {Format::q5_1, ref::q5_1_dequant},
    {Format::q2_k, ref::q2k_dequant},
    {Format::q3_k, ref::q3k_dequant},
    {Format::q5_k, ref::q5k_dequant},
    {Format::iq4_nl, ref::iq4_nl_dequant},
    {Format::iq4_xs, ref::iq4_xs_dequant},
    {Format::int8, ref::int8_rows_dequant},
    {Format::fp8, ref::fp8_rows_dequant},
};

const RefBlock &block_of(const VariantParam &p) {
    for (const RefBlock &f : kBlocks) {
        if (f.format == p.row->format) return f;
    }
    throw std::runtime_error("no reference for " + p.kernel);
}

bool is_block(const KernelRow &r) {
    return r.weights && std::any_of(std::begin(kBlocks), std::end(kBlocks), [&](const RefBlock &b) { return b.format == r.format; });
}

// Random blocks; `realistic` scales of LLM-like magnitude, else any finite f16.
std::vector<uint8_t> random_blocks(const RefBlock &f, int64_t out, int64_t in, bool realistic) {
    const FormatTraits &b = traits(f.format);
    auto data = random_bytes(out * row_bytes(f.format, in));
    if (b.row_head_bytes) {
        // int8, fp8: a finite f32 scale heading each row (realistic: LLM-like, else
        // any finite magnitude within 2^+-60), its head's other bytes zero;
        // fp8's NaN codes (0x7F, 0xFF) avoided (Fp8Codes checks them).
        std::uniform_real_distribution<float> mag(0.001f, 0.02f), e(-60.0f, 60.0f);
        const int64_t row = row_bytes(f.format, in);
        for (int64_t r = 0; r < out; ++r) {
            uint8_t *head = &data[r * row];
            float s = realistic ? mag(rng()) : std::ldexp(mag(rng()), static_cast<int>(e(rng())));
            if (rng()() % 2) s = -s;
            std::memset(head, 0, b.row_head_bytes);
            std::memcpy(head, &s, 4);
            if (f.format == Format::fp8) {
                for (int64_t k = 0; k < in; ++k) head[b.row_head_bytes + k] &= (head[b.row_head_bytes + k] & 0x7F) == 0x7F ? 0xFE : 0xFF;
            }
        }
        return data;
    }
    std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
    std::uniform_int_distribution<int> bits(0, 0xFFFF);
    for (size_t blk = 0; blk < data.size(); blk += b.block_bytes) {
        uint16_t h;
        if (realistic) {
            h = f16(scale(rng()));
        } else {
            do h = static_cast<uint16_t>(bits(rng())); while (((h >> 10) & 0x1F) == 0x1F);
        }
        for (int at : b.f16_fields) {
            data[blk + at] = h & 0xFF;
            data[blk + at + 1] = h >> 8;
        }
    }
    return data;
}

class BlockDequant : public testing::TestWithParam<VariantParam> {};

TEST_P(BlockDequant, BitExactAgainstReference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const RefBlock &f = block_of(p);
    struct Case { int64_t out, in, pad; };
    for (Case c : std::vector<Case>{{1, 256, 0}, {3, 512, 0}, {257, 768, 3}, {5, 14336, 0}, {2, 4096, 1}}) {
        SCOPED_TRACE("out=" + std::to_string(c.out) + " in=" + std::to_string(c.in));
        auto data = random_blocks(f, c.out, c.in, false);
        const auto before = data;
        std::vector<float> ref(c.out * c.in);
        f.dequant(data.data(), c.out, c.in, ref.data());
        Mem m(p);
        expect_dequant(p, m, c.out, c.in, c.pad, ref,
                       [&](auto out) { dequant(Weights{f.format, m.in(data), c.out, c.in}, out, options(p)); });
        EXPECT_EQ(before, data) << "the kernel modified its input";
    }
}

INSTANTIATE_TEST_SUITE_P(Formats, BlockDequant, testing::ValuesIn(variants_where("BlockDequant", [](const KernelRow &r) {
                             return is_block(r) && r.op == Op::dequant;
                         })), variant_name);

class BlockMatmul : public testing::TestWithParam<VariantParam> {};

TEST_P(BlockMatmul, MatchesFloat64Reference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const RefBlock &f = block_of(p);
    const FormatTraits &b = traits(f.format);
    for (const MatmulCase &c : q4k_matmul_cases()) {
        SCOPED_TRACE(c.name());
        const int64_t rb = row_bytes(f.format, c.in), wstride = rb + c.pad * 5;
        auto data = random_blocks(f, c.out, c.in, true);
        std::vector<uint8_t> strided(c.out * wstride, 0xAB);
        for (int64_t r = 0; r < c.out; ++r) std::memcpy(&strided[r * wstride], &data[r * rb], rb);
        const int64_t xstride = c.in + c.pad;
        auto x = random_floats(c.tokens * xstride);
        auto bias = random_floats(c.out);
        Poisoned y(c.tokens, c.out, c.pad);
        Mem m(p);
        matmul(Weights{f.format, m.in(strided), c.out, c.in, wstride}, ConstMatrix{m.in(x), c.tokens, c.in, xstride},
               c.bias ? m.in(bias) : nullptr, m.out(y), options(p));
        m.sync();
        y.expect_all_written();
        std::vector<float> xd(c.tokens * c.in), w(c.out * c.in);
        for (int64_t n = 0; n < c.tokens; ++n) std::memcpy(&xd[n * c.in], &x[n * xstride], c.in * 4);
        f.dequant(data.data(), c.out, c.in, w.data());
        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        ref::dense_matmul(w, c.out, c.in, xd.data(), c.tokens, c.bias ? bias.data() : nullptr, ref.data(), mag.data());
        expect_matmul_close(y, ref, mag, c.in);
    }
}

INSTANTIATE_TEST_SUITE_P(Formats, BlockMatmul, testing::ValuesIn(variants_where("BlockMatmul", [](const KernelRow &r) {
                             return is_block(r) && is_matmul(r) && r.act == ActType::f32 && !r.norm;
                         })), variant_name);

class DenseMatmul : public testing::TestWithParam<VariantParam> {};

TEST_P(DenseMatmul, MatchesFloat64Reference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const Format f = p.row->format;
    const bool half = f != Format::f32;  // 16-bit values: f16 or bf16
    auto to16 = [&](float v) { return f == Format::bf16 ? ref::f32_to_bf16(v) : f16(v); };
    auto from16 = [&](uint16_t h) { return f == Format::bf16 ? ref::bf16_to_f32(h) : ref::f16_to_f32(h); };
    struct Case { int64_t out, in, tokens; bool bias; int64_t pad; };
    // in need not be a multiple of anything: 1, 63, 65 and 1001 exercise the tail.
    for (Case c : std::vector<Case>{{1, 1, 1, false, 0}, {3, 63, 2, true, 0}, {257, 65, 3, false, 3},
                                    {5, 4096, 1, true, 0}, {17, 1001, 7, false, 1}, {33, 768, 64, true, 2},
                                    {7, 2304, 129, false, 0}}) {
        SCOPED_TRACE("out=" + std::to_string(c.out) + " in=" + std::to_string(c.in) + " tokens=" + std::to_string(c.tokens));
        const int64_t wstride = c.in + c.pad, xstride = c.in + c.pad;
        auto wf = random_floats(c.out * wstride);
        std::vector<uint16_t> wh(wf.size());
        std::vector<float> w(c.out * c.in);
        for (size_t i = 0; i < wf.size(); ++i) wh[i] = to16(wf[i]);
        for (int64_t r = 0; r < c.out; ++r) {
            for (int64_t k = 0; k < c.in; ++k) {
                w[r * c.in + k] = half ? from16(wh[r * wstride + k]) : wf[r * wstride + k];
            }
        }
        auto x = random_floats(c.tokens * xstride);
        auto bias = random_floats(c.out);
        Poisoned y(c.tokens, c.out, c.pad);
        Mem m(p);
        const void *wp = half ? static_cast<const void *>(m.in(wh)) : static_cast<const void *>(m.in(wf));
        const int64_t wbytes = wstride * (half ? 2 : 4);
        matmul(Weights{f, wp, c.out, c.in, wbytes}, ConstMatrix{m.in(x), c.tokens, c.in, xstride},
               c.bias ? m.in(bias) : nullptr, m.out(y), options(p));
        m.sync();
        y.expect_all_written();
        std::vector<float> xd(c.tokens * c.in);
        for (int64_t n = 0; n < c.tokens; ++n) std::memcpy(&xd[n * c.in], &x[n * xstride], c.in * 4);
        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        ref::dense_matmul(w, c.out, c.in, xd.data(), c.tokens, c.bias ? bias.data() : nullptr, ref.data(), mag.data());
        expect_matmul_close(y, ref, mag, c.in);
    }
}

INSTANTIATE_TEST_SUITE_P(F32, DenseMatmul, testing::ValuesIn(weight_variants("DenseMatmul", Format::f32, {Op::matvec, Op::matmul})),
                         variant_name);
INSTANTIATE_TEST_SUITE_P(F16, DenseMatmul, testing::ValuesIn(weight_variants("DenseMatmul", Format::f16, {Op::matvec, Op::matmul})),
                         variant_name);
INSTANTIATE_TEST_SUITE_P(BF16, DenseMatmul, testing::ValuesIn(weight_variants("DenseMatmul", Format::bf16, {Op::matvec, Op::matmul})),
                         variant_name);

}  // namespace
}  // namespace qforge::test
