// Q4_K kernels with f32 activations: dequant bit-exact against the
// reference (any finite d, dmin: subnormal and negative included), matmul
// within 1e-5 of float64 on awkward shapes, every registered variant.
#include "test_util.h"

namespace qforge::test {
namespace {

class Q4KDequant : public testing::TestWithParam<VariantParam> {};

TEST_P(Q4KDequant, BitExactAgainstReference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    struct Case { int64_t out, in, pad; };
    for (Case c : std::vector<Case>{{1, 256, 0}, {3, 512, 0}, {257, 768, 3}, {5, 14336, 0}, {2, 4096, 1}}) {
        SCOPED_TRACE("out=" + std::to_string(c.out) + " in=" + std::to_string(c.in));
        auto data = random_q4k(c.out, c.in, /*realistic=*/false);
        const auto before = data;
        std::vector<float> ref(c.out * c.in);
        ref::q4k_dequant(data.data(), c.out, c.in, ref.data());
        Mem m(p);
        expect_dequant(p, m, c.out, c.in, c.pad, ref,
                       [&](auto out) { dequant(Weights{Format::q4_k, m.in(data), c.out, c.in}, out, options(p)); });
        EXPECT_EQ(before, data) << "the kernel modified its input";
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Q4KDequant, testing::ValuesIn(weight_variants("Q4KDequant", Format::q4_k, {Op::dequant})), variant_name);

class Q4KMatmulF32 : public testing::TestWithParam<VariantParam> {};

TEST_P(Q4KMatmulF32, MatchesFloat64Reference) {
    const auto &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    for (const MatmulCase &c : q4k_matmul_cases()) {
        SCOPED_TRACE(c.name());
        const int64_t row_bytes = c.in / 256 * 144, wstride = row_bytes + c.pad * 7;
        auto data = random_q4k(c.out, c.in, /*realistic=*/true);
        std::vector<uint8_t> strided(c.out * wstride, 0xAB);
        for (int64_t r = 0; r < c.out; ++r) std::memcpy(&strided[r * wstride], &data[r * row_bytes], row_bytes);
        const int64_t xstride = c.in + c.pad;
        auto x = random_floats(c.tokens * xstride);
        auto bias = random_floats(c.out);
        Poisoned y(c.tokens, c.out, c.pad);
        Mem m(p);
        matmul(Weights{Format::q4_k, m.in(strided), c.out, c.in, wstride}, ConstMatrix{m.in(x), c.tokens, c.in, xstride},
               c.bias ? m.in(bias) : nullptr, m.out(y), options(p));
        m.sync();
        y.expect_all_written();
        std::vector<float> xd(c.tokens * c.in);
        for (int64_t n = 0; n < c.tokens; ++n) std::memcpy(&xd[n * c.in], &x[n * xstride], c.in * 4);
        std::vector<double> ref(c.tokens * c.out), mag(c.tokens * c.out);
        ref::q4k_matmul_f32(data.data(), c.out, c.in, xd.data(), c.tokens, c.bias ? bias.data() : nullptr,
                            ref.data(), mag.data());
        expect_matmul_close(y, ref, mag, c.in);
    }
}

INSTANTIATE_TEST_SUITE_P(Variants, Q4KMatmulF32, testing::ValuesIn(weight_variants("Q4KMatmulF32", Format::q4_k, {Op::matvec, Op::matmul})), variant_name);

}  // namespace
}  // namespace qforge::test
