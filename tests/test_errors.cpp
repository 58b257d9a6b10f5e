// Bad input gets a clear qforge::Error before any kernel runs, and the
// output is left untouched.
#include "test_util.h"

namespace qforge::test {
namespace {

TEST(Errors, Q4KInNotMultipleOf256) {
    std::vector<uint8_t> w(144 * 4, 0);
    std::vector<float> x(300, 1.0f), y(2, nan_poison());
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 2, 300}, ConstMatrix{x.data(), 1, 300}, nullptr, {y.data(), 1, 2}); },
                 {"q4_k matmul", "in = 300", "multiple of 256"});
    expect_error([&] { dequant(Weights{Format::q4_k, w.data(), 2, 300}, Matrix{y.data(), 2, 300}); }, {"q4_k dequant", "in = 300"});
    EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1])) << "output written despite the error";
}

TEST(Errors, Int4gOddIn) {
    std::vector<uint8_t> w(100, 0);
    std::vector<uint16_t> s(10, 0);
    std::vector<float> x(33, 1.0f), y(1, nan_poison());
    expect_error([&] { matmul(Weights{Format::int4g, w.data(), 1, 33, 0, s.data(), 32}, ConstMatrix{x.data(), 1, 33}, nullptr, {y.data(), 1, 1}); },
                 {"int4g matmul", "in = 33", "multiple of 2"});
}

TEST(Errors, Int4gScalesWrongShape) {
    std::vector<uint8_t> w(64, 0);
    std::vector<uint16_t> s(8, 0);
    std::vector<float> x(128, 1.0f), y(1, nan_poison());
    // 128 columns in groups of 32 need 4 scales per row; a stride of 2 cannot hold them.
    expect_error([&] {
        matmul(Weights{Format::int4g, w.data(), 1, 128, 0, s.data(), 32, 2}, ConstMatrix{x.data(), 1, 128}, nullptr, {y.data(), 1, 1});
    }, {"scales row stride 2", "n_groups = 4"});
    expect_error([&] { matmul(Weights{Format::int4g, w.data(), 1, 128, 0, s.data(), 48}, ConstMatrix{x.data(), 1, 128}, nullptr, {y.data(), 1, 1}); },
                 {"group size 48"});
    EXPECT_TRUE(std::isnan(y[0]));
}

TEST(Errors, NullPointers) {
    std::vector<uint8_t> w(144, 0);
    std::vector<uint16_t> s(8, 0);
    std::vector<float> x(256, 1.0f), y(1, nan_poison());
    expect_error([&] { matmul(Weights{Format::q4_k, nullptr, 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}); },
                 {"null pointer"});
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{nullptr, 1, 256}, nullptr, {y.data(), 1, 1}); },
                 {"x is a null pointer"});
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {nullptr, 1, 1}); },
                 {"y is a null pointer"});
    expect_error([&] { matmul(Weights{Format::int4g, w.data(), 1, 256, 0, nullptr, 32}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}); },
                 {"int4g scales are a null pointer"});
    Q8KActivations a{nullptr, nullptr, nullptr, 1, 256};
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, a, nullptr, {y.data(), 1, 1}); }, {"null pointer"});
}

TEST(Errors, ZeroTokens) {
    std::vector<uint8_t> w(144, 0);
    std::vector<float> x(256, 1.0f), y(1, nan_poison());
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 0, 256}, nullptr, {y.data(), 0, 1}); },
                 {"tokens = 0"});
    expect_error([&] { q8k_quantize({x.data(), 0, 256}, Q8KBuffer(1, 256).view()); }, {"tokens = 0"});
}

TEST(Errors, ShapeMismatch) {
    std::vector<uint8_t> w(144 * 2, 0);
    std::vector<float> x(512, 1.0f), y(4, nan_poison());
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 2, 256}, ConstMatrix{x.data(), 1, 512}, nullptr, {y.data(), 1, 2}); },
                 {"x is [1, 512], expected [1, 256]"});
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 2, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 3}); },
                 {"y is [1, 3], expected [1, 2]"});
    Q8KBuffer a(1, 512);
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 2, 256}, a.view(), nullptr, {y.data(), 1, 2}); },
                 {"in = 512", "in = 256"});
}

TEST(Errors, UnknownTargetAndKernel) {
    std::vector<uint8_t> w(144, 0);
    std::vector<float> x(256, 1.0f), y(1, nan_poison());
    RunOptions o;
    o.target = "x86-avx1024";
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"unknown target 'x86-avx1024'"});
    o = {};
    o.kernel = "int4g_matvec_f32_g32";
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"does not compute this operation"});
    // A schedule variant (kernel@tag) of another operation, or one not built.
    // (not in the table unless QF_TUNING built it; either way an error naming it)
    o.kernel = "int4g_matvec_f32_g128@b4w32r1";
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"int4g_matvec_f32_g128@b4w32r1"});
    o.kernel = "q4k_matvec_f32@no_such_tag";
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"q4k_matvec_f32@no_such_tag"});
    // An operation a format has no kernel for, and a kernel of another format.
    std::vector<float> y64(64, nan_poison());
    expect_error([&] { dequant(Weights{Format::bf16, w.data(), 1, 64}, Matrix{y64.data(), 1, 64}); }, {"bf16", "no kernel"});
    o.kernel = "q6k_matvec_f32";
    expect_error([&] { matmul(Weights{Format::q4_k, w.data(), 1, 256}, ConstMatrix{x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"does not compute this operation"});
}

}  // namespace
}  // namespace qforge::test
