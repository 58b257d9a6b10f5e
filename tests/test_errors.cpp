// Bad input gets a clear qforge::Error before any kernel runs, and the
// output is left untouched.
#include "test_util.h"

namespace qforge::test {
namespace {

// Runs `f`, expects a qforge::Error whose message contains every `needle`.
template <typename F>
void expect_error(F f, std::initializer_list<const char *> needles) {
    try {
        f();
        ADD_FAILURE() << "no error";
    } catch (const Error &e) {
        for (const char *n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
}

TEST(Errors, Q4KInNotMultipleOf256) {
    std::vector<uint8_t> w(144 * 4, 0);
    std::vector<float> x(300, 1.0f), y(2, nan_poison());
    expect_error([&] { q4k_matmul_f32({w.data(), 2, 300}, {x.data(), 1, 300}, nullptr, {y.data(), 1, 2}); },
                 {"q4k_matmul_f32", "in = 300", "multiple of 256"});
    expect_error([&] { q4k_dequant({w.data(), 2, 300}, {y.data(), 2, 300}); }, {"q4k_dequant", "in = 300"});
    EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1])) << "output written despite the error";
}

TEST(Errors, Int4gOddIn) {
    std::vector<uint8_t> w(100, 0);
    std::vector<uint16_t> s(10, 0);
    std::vector<float> x(33, 1.0f), y(1, nan_poison());
    expect_error([&] { int4g_matmul({w.data(), s.data(), 1, 33, 32}, {x.data(), 1, 33}, nullptr, {y.data(), 1, 1}); },
                 {"int4g_matmul", "in = 33", "odd"});
}

TEST(Errors, Int4gScalesWrongShape) {
    std::vector<uint8_t> w(64, 0);
    std::vector<uint16_t> s(8, 0);
    std::vector<float> x(128, 1.0f), y(1, nan_poison());
    // 128 columns in groups of 32 need 4 scales per row; a stride of 2 cannot hold them.
    expect_error([&] {
        int4g_matmul({w.data(), s.data(), 1, 128, 32, 0, 2}, {x.data(), 1, 128}, nullptr, {y.data(), 1, 1});
    }, {"scales_4bit", "n_groups = 4"});
    expect_error([&] { int4g_matmul({w.data(), s.data(), 1, 128, 48}, {x.data(), 1, 128}, nullptr, {y.data(), 1, 1}); },
                 {"group size 48"});
    EXPECT_TRUE(std::isnan(y[0]));
}

TEST(Errors, NullPointers) {
    std::vector<uint8_t> w(144, 0);
    std::vector<uint16_t> s(8, 0);
    std::vector<float> x(256, 1.0f), y(1, nan_poison());
    expect_error([&] { q4k_matmul_f32({nullptr, 1, 256}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 1}); },
                 {"null pointer"});
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {nullptr, 1, 256}, nullptr, {y.data(), 1, 1}); },
                 {"x is a null pointer"});
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {x.data(), 1, 256}, nullptr, {nullptr, 1, 1}); },
                 {"y is a null pointer"});
    expect_error([&] { int4g_matmul({w.data(), nullptr, 1, 256, 32}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 1}); },
                 {"scales_4bit is a null pointer"});
    Q8KActivations a{nullptr, nullptr, nullptr, 1, 256};
    expect_error([&] { q4k_matmul_q8({w.data(), 1, 256}, a, nullptr, {y.data(), 1, 1}); }, {"null pointer"});
}

TEST(Errors, ZeroTokens) {
    std::vector<uint8_t> w(144, 0);
    std::vector<float> x(256, 1.0f), y(1, nan_poison());
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {x.data(), 0, 256}, nullptr, {y.data(), 0, 1}); },
                 {"tokens = 0"});
    expect_error([&] { q8k_quantize({x.data(), 0, 256}, Q8KBuffer(1, 256).view()); }, {"tokens = 0"});
}

TEST(Errors, ShapeMismatch) {
    std::vector<uint8_t> w(144 * 2, 0);
    std::vector<float> x(512, 1.0f), y(4, nan_poison());
    expect_error([&] { q4k_matmul_f32({w.data(), 2, 256}, {x.data(), 1, 512}, nullptr, {y.data(), 1, 2}); },
                 {"x is [1, 512], expected [1, 256]"});
    expect_error([&] { q4k_matmul_f32({w.data(), 2, 256}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 3}); },
                 {"y is [1, 3], expected [1, 2]"});
    Q8KBuffer a(1, 512);
    expect_error([&] { q4k_matmul_q8({w.data(), 2, 256}, a.view(), nullptr, {y.data(), 1, 2}); },
                 {"in = 512", "in = 256"});
}

TEST(Errors, UnknownTargetAndKernel) {
    std::vector<uint8_t> w(144, 0);
    std::vector<float> x(256, 1.0f), y(1, nan_poison());
    RunOptions o;
    o.target = "x86-avx1024";
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"unknown target 'x86-avx1024'"});
    o = {};
    o.kernel = "int4g_matvec_f32_g32";
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"does not compute this operation"});
    // A schedule variant (kernel@tag) of another operation, or one not built.
    o.kernel = "int4g_matvec_f32_g32@b8w32r1";
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"does not compute this operation"});
    o.kernel = "q4k_matvec_f32@no_such_tag";
    expect_error([&] { q4k_matmul_f32({w.data(), 1, 256}, {x.data(), 1, 256}, nullptr, {y.data(), 1, 1}, o); },
                 {"q4k_matvec_f32@no_such_tag"});
}

}  // namespace
}  // namespace qforge::test
