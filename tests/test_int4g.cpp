// int4g and int4z kernels: dequant bit-exact, matmul within 1e-5 of
// float64, every registered variant, awkward shapes, strides, with and
// without bias; int4z with random zero points over the whole byte range a
// file can hold (0..15).
#include "test_util.h"

namespace qforge::test {
namespace {

struct Int4gData {
    Format format;
    int64_t out, in;
    int g;
    int64_t wstride, sstride;   // row strides; > dense when testing padding (the zero points' is sstride + 1)
    std::vector<uint8_t> weight;
    std::vector<uint16_t> scales;
    std::vector<uint8_t> zeros;  // int4z

    Int4gData(Format f, int64_t o, int64_t i, int group, int64_t wpad = 0, int64_t spad = 0)
        : format(f), out(o), in(i), g(group), wstride(i / 2 + wpad), sstride((i + group - 1) / group + spad) {
        weight = random_bytes(out * wstride);
        scales = random_f16(out * sstride, -0.05f, 0.05f);
        if (f == Format::int4z) {
            zeros = random_bytes(out * (sstride + 1));
            for (uint8_t &z : zeros) z &= 15;
        }
    }
    Weights view(Mem &m) const {
        Weights w{format, m.in(weight), out, in, wstride, m.in(scales), g, sstride};
        if (!zeros.empty()) {
            w.zeros = m.in(zeros);
            w.zeros_stride = sstride + 1;
        }
        return w;
    }
    // Dense copies for the reference.
    std::vector<uint8_t> dense_weight() const {
        std::vector<uint8_t> d(out * (in / 2));
        for (int64_t r = 0; r < out; ++r) std::memcpy(&d[r * (in / 2)], &weight[r * wstride], in / 2);
        return d;
    }
    std::vector<uint16_t> dense_scales() const {
        const int64_t ng = (in + g - 1) / g;
        std::vector<uint16_t> d(out * ng);
        for (int64_t r = 0; r < out; ++r) std::memcpy(&d[r * ng], &scales[r * sstride], ng * 2);
        return d;
    }
    std::vector<uint8_t> dense_zeros() const {
        if (zeros.empty()) return {};
        const int64_t ng = (in + g - 1) / g;
        std::vector<uint8_t> d(out * ng);
        for (int64_t r = 0; r < out; ++r) std::memcpy(&d[r * ng], &zeros[r * (sstride + 1)], ng);
        return d;
    }
};

class Int4gDequant : public testing::TestWithParam<VariantParam> {};

TEST_P(Int4gDequant, BitExactAgainstReference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const int g = p.row->group;
    struct Case { int64_t out, in, wpad, spad, opad; };
    for (Case c : std::vector<Case>{{1, 2, 0, 0, 0}, {3, 300, 0, 0, 0}, {257, 130, 3, 1, 5}, {5, 14336, 0, 0, 0},
                                    {17, 4098, 0, 0, 1}, {2, 2 * g + 2, 0, 0, 0}}) {
        SCOPED_TRACE("out=" + std::to_string(c.out) + " in=" + std::to_string(c.in));
        Int4gData w(p.row->format, c.out, c.in, g, c.wpad, c.spad);
        const auto before = w.weight;
        std::vector<float> ref(c.out * c.in);
        auto dw = w.dense_weight();
        auto ds = w.dense_scales();
        auto dz = w.dense_zeros();
        ref::int4z_dequant(dw.data(), ds.data(), dz.empty() ? nullptr : dz.data(), c.out, c.in, g, ref.data());
        Mem m(p);
        expect_dequant(p, m, c.out, c.in, c.opad, ref, [&](auto out) { dequant(w.view(m), out, options(p)); });
        EXPECT_EQ(before, w.weight) << "the kernel modified its input";
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Int4gDequant, testing::ValuesIn(weight_variants("Int4gDequant", Format::int4g, {Op::dequant})), variant_name);
INSTANTIATE_TEST_SUITE_P(ZeroPoints, Int4gDequant, testing::ValuesIn(weight_variants("Int4zDequant", Format::int4z, {Op::dequant})), variant_name);

class Int4gMatmul : public testing::TestWithParam<VariantParam> {};

TEST_P(Int4gMatmul, MatchesFloat64Reference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    const int g = p.row->group;
    const std::vector<MatmulCase> cases = {
        {1, 256, 1, false, 0},   {3, 300, 2, true, 0},    {257, 128, 3, false, 3}, {5, 14336, 1, true, 0},
        {17, 4098, 7, false, 0}, {33, 1000, 64, true, 2}, {7, 2306, 129, false, 0}, {4, g, 1, true, 0},
        {2, 2, 2, true, 0},
    };
    for (const MatmulCase &c : cases) {
        SCOPED_TRACE(c.name());
        Int4gData w(p.row->format, c.out, c.in, g, c.pad, c.pad);
        const int64_t xstride = c.in + c.pad;
        auto x = random_floats(c.tokens * xstride);
        auto bias = random_floats(c.out);
        const auto x_before = x;
        Poisoned y(c.tokens, c.out, c.pad);
        Mem m(p);
        matmul(w.view(m), ConstMatrix{m.in(x), c.tokens, c.in, xstride}, c.bias ? m.in(bias) : nullptr, m.out(y),
               options(p));
        m.sync();
        y.expect_all_written();
        std::vector<float> xd(c.tokens * c.in);
        for (int64_t n = 0; n < c.tokens; ++n) std::memcpy(&xd[n * c.in], &x[n * xstride], c.in * 4);
        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        auto dw = w.dense_weight();
        auto ds = w.dense_scales();
        auto dz = w.dense_zeros();
        ref::int4z_matmul(dw.data(), ds.data(), dz.empty() ? nullptr : dz.data(), c.out, c.in, g, xd.data(), c.tokens,
                          c.bias ? bias.data() : nullptr, ref.data(), mag.data());
        expect_matmul_close(y, ref, mag, c.in);
        EXPECT_EQ(x_before, x) << "the kernel modified its input";
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Int4gMatmul, testing::ValuesIn(weight_variants("Int4gMatmul", Format::int4g, {Op::matvec, Op::matmul})), variant_name);
INSTANTIATE_TEST_SUITE_P(ZeroPoints, Int4gMatmul, testing::ValuesIn(weight_variants("Int4zMatmul", Format::int4z, {Op::matvec, Op::matmul})), variant_name);

}  // namespace
}  // namespace qforge::test
