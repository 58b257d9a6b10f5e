// CUTLASS's tensor-core GEMM for int4g layers on sm_90 (runtime/cuda): the
// Halide repack into its layout, checked on any machine against the layout
// written forward from CuTe's description (FORMATS.md, "CUTLASS int4
// (sm_90)"); and the layer path on the device against float64.
#include <cmath>
#include <cstring>
#include <set>

#include "cutlass.h"
#include "device_scratch.h"
#include "layer_util.h"
#include "test_util.h"

namespace qforge::test {
namespace {

// Where CuTe puts element (m, k) of an [M, K] int4 matrix:
// tile_to_shape(compute_memory_reordering_atom<half_t, _1, (2,4):(4,1)>, (M, K)),
// whose atom is (((8,2),1),((2,4,2),1)):(((32,1),0),((4,8,2),0)), 16 x 16,
// tiled rows first.
int64_t cute_offset(int64_t m, int64_t k, int64_t M) {
    const int64_t mi = m % 16, ki = k % 16;
    const int64_t atom = (mi % 8) * 32 + mi / 8 + (ki % 2) * 4 + (ki / 2 % 4) * 8 + (ki / 8) * 2;
    return atom + 256 * (m / 16) + 256 * (M / 16) * (k / 16);
}

class CutlassRepack : public testing::TestWithParam<VariantParam> {};

// Every output byte is poisoned first; the forward map visits each offset once.
TEST_P(CutlassRepack, IsCuteLayout) {
    const VariantParam &p = GetParam();
    QF_SKIP_UNLESS_RUNNABLE(p);
    struct Case {
        int64_t out, in;
        int group;
    };
    for (const Case c : {Case{16, 32, 32}, Case{48, 256, 64}, Case{272, 384, 128}}) {
        SCOPED_TRACE(std::to_string(c.out) + "x" + std::to_string(c.in));
        const auto w = random_bytes(c.out * c.in / 2);
        const int64_t groups = c.in / c.group;
        std::vector<uint16_t> scales(c.out * groups);
        const auto sb = random_bytes(scales.size() * 2);
        std::memcpy(scales.data(), sb.data(), sb.size());
        std::vector<uint8_t> shuffled(w.size(), 0xA5);
        std::vector<uint16_t> scales_t(scales.size(), 0xDEAD);
        Mem m(p);
        Weights v;
        v.format = Format::int4g;
        v.data = m.in(w);
        v.scales = m.in(scales);
        v.out = c.out;
        v.in = c.in;
        v.group_size = c.group;
        internal::cutlass_int4_repack(v, m.out(shuffled), m.out(scales_t), options(p));
        m.sync();
        std::set<int64_t> seen;
        for (int64_t row = 0; row < c.out; ++row) {
            for (int64_t k = 0; k < c.in; ++k) {
                const int q = (w[row * (c.in / 2) + k / 2] >> (4 * (k % 2))) & 15;
                const int64_t o = cute_offset(row, k, c.out);
                ASSERT_TRUE(seen.insert(o).second) << "offset " << o << " twice";
                const int got = (shuffled[o / 2] >> (4 * (o % 2))) & 15;
                // Signed four bits: q - 8 in two's complement is q ^ 8.
                ASSERT_EQ(got, q ^ 8) << "row " << row << " column " << k << " (offset " << o << ")";
            }
        }
        for (int64_t g = 0; g < groups; ++g) {
            for (int64_t r = 0; r < c.out; ++r) ASSERT_EQ(scales_t[g * c.out + r], scales[r * groups + g]);
        }
    }
}

// x86 and CUDA rows only: the ARM cross build has none.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CutlassRepack);
INSTANTIATE_TEST_SUITE_P(Kernels, CutlassRepack, testing::ValuesIn(variants_where("CutlassRepack", [](const KernelRow &r) {
                             return r.op == Op::repack;
                         })), variant_name);

TEST(CutlassInt4, RepackRefusesOtherShapes) {
    const auto w = random_bytes(40 * 64 / 2);
    std::vector<uint16_t> s(40 * 2);
    Weights v;
    v.format = Format::int4g;
    v.data = w.data();
    v.scales = s.data();
    v.out = 40;
    v.in = 64;
    v.group_size = 32;
    std::vector<uint8_t> o(w.size());
    std::vector<uint16_t> so(s.size());
    expect_error([&] { internal::cutlass_int4_repack(v, o.data(), so.data(), {}); }, {"multiples of 16"});
    v.format = Format::q4_0;
    expect_error([&] { internal::cutlass_int4_repack(v, o.data(), so.data(), {}); }, {"int4g"});
}

// The narrowest tile of tokens that holds the call; K steps of 128 where
// the groups allow and the tile is more than half full.
TEST(CutlassInt4, TilesFitTheCall) {
    auto tile = [](int64_t tokens, int group) {
        const internal::CutlassTile t = internal::cutlass_tile(tokens, group);
        return std::make_pair(t.tokens, t.k);
    };
    EXPECT_EQ(tile(1, 128), std::make_pair(16, 128));
    EXPECT_EQ(tile(16, 128), std::make_pair(16, 128));
    EXPECT_EQ(tile(17, 64), std::make_pair(32, 64));
    EXPECT_EQ(tile(64, 128), std::make_pair(128, 64));
    EXPECT_EQ(tile(65, 128), std::make_pair(128, 128));
    EXPECT_EQ(tile(512, 256), std::make_pair(128, 128));
    EXPECT_EQ(tile(512, 64), std::make_pair(128, 64));
}

// Split-K where the tiles leave most of an H100's 132 SMs idle: a long-K
// layer of few rows at few tokens; never for a layer that fills them.
TEST(CutlassInt4, SplitsFillTheMachine) {
    EXPECT_EQ(internal::cutlass_splits(4096, 14336, 16, 16, 132), 4);    // 32 tiles
    EXPECT_EQ(internal::cutlass_splits(4096, 14336, 512, 128, 132), 1);  // 128 tiles
    EXPECT_EQ(internal::cutlass_splits(14336, 4096, 16, 16, 132), 1);    // 112 tiles
    EXPECT_EQ(internal::cutlass_splits(256, 8192, 2, 32, 132), 8);       // capped
    EXPECT_EQ(internal::cutlass_splits(272, 384, 2, 32, 132), 1);        // too short a K to split
}

// The layer path on an sm_90 device, forced and as CudaGemm::automatic picks
// it, with and without bias, tokens on and off its 16-, 32- and 128-token
// tiles (K steps of 64 and 128), rows off its 128-row tile, K split
// (256x8192, 1024x2048) or not, against float64 on the weights the layer
// holds.
TEST(Layers, CudaCutlassInt4g) {
    if (const std::string why = why_no_cuda(); !why.empty()) GTEST_SKIP() << why;
    if (const std::string why = internal::cutlass_absent(); !why.empty()) GTEST_SKIP() << why;
    struct Case {
        int64_t out, in;
        int group;
    };
    for (const Case c : {Case{272, 384, 128}, Case{48, 256, 64}, Case{1024, 2048, 128}, Case{256, 8192, 128}}) {
        for (bool with_bias : {true, false}) {
            SCOPED_TRACE(std::to_string(c.out) + "x" + std::to_string(c.in) + " g" + std::to_string(c.group) +
                         (with_bias ? " bias" : ""));
            const auto w = weights(c.out, c.in);
            const auto bias = random_floats(c.out);
            const float *b = with_bias ? bias.data() : nullptr;
            Built host = build(Format::int4g, w, c.out, c.in, b, LayerOptions{Strategy::fused, Memory::host}, c.group);
            WeightRef r;
            r.format = Format::int4g;
            r.out = c.out;
            r.in = c.in;
            r.data = host.i4.weight.data();
            r.scales = host.i4.scales.data();
            r.group_size = c.group;
            auto dev = make_linear("dev", r, b, LayerOptions{Strategy::fused, Memory::cuda});
            const int64_t before = dev->memory_bytes();
            for (int64_t tokens : {2, 5, 20, 33, 130}) {
                for (CudaGemm path : {CudaGemm::cutlass, CudaGemm::automatic}) {
                    auto x = random_floats(tokens * c.in);
                    const VariantParam on_device{nullptr, "", "cuda-sm80"};
                    Mem m(on_device);
                    Poisoned y(tokens, c.out);
                    ForwardOptions fo;
                    fo.run.memory = Memory::cuda;
                    fo.cuda_gemm = path;
                    dev->forward(ConstMatrix{m.in(x), tokens, c.in}, m.out(y), fo);
                    m.sync();
                    y.expect_all_written();
                    // f16 x and f16 products (CUTLASS upcasts the nibbles and scales them in f16): each
                    // within 2^-10 relative, as cuBLAS's path (test_layers.cpp), f32 sums.
                    for (int64_t n = 0; n < tokens; ++n) {
                        for (int64_t row = 0; row < c.out; ++row) {
                            double e = b ? b[row] : 0, mag = b ? std::fabs(b[row]) : 0;
                            for (int64_t k = 0; k < c.in; ++k) {
                                const double p = double(host.dequantized[row * c.in + k]) * x[n * c.in + k];
                                e += p;
                                mag += std::fabs(p);
                            }
                            ASSERT_NEAR(y.at(n, row), e, 1e-5 + std::ldexp(mag, -9))
                                << "tokens " << tokens << " row " << row << (path == CudaGemm::cutlass ? " (forced)" : "");
                        }
                    }
                }
            }
            // The repacked copy is made once and counted.
            EXPECT_EQ(dev->memory_bytes(), before + c.out * c.in / 2 + c.out * (c.in / c.group) * 2);
        }
    }
}

// Where it cannot run, forcing it says why; automatic falls back.
TEST(Layers, CudaCutlassRefusals) {
    if (const std::string why = why_no_cuda(); !why.empty()) GTEST_SKIP() << why;
    const auto w = weights(40, 256);
    Built host = build(Format::int4g, w, 40, 256, nullptr, LayerOptions{Strategy::fused, Memory::host}, 64);
    WeightRef r;
    r.format = Format::int4g;
    r.out = 40;
    r.in = 256;
    r.data = host.i4.weight.data();
    r.scales = host.i4.scales.data();
    r.group_size = 64;
    auto dev = make_linear("dev", r, nullptr, LayerOptions{Strategy::fused, Memory::cuda});
    const auto x = random_floats(4 * 256);
    internal::DeviceBuffer xd(x.data(), x.size() * 4), yd(std::vector<float>(4 * 40).data(), 4 * 40 * 4);
    ForwardOptions fo;
    fo.run.memory = Memory::cuda;
    fo.cuda_gemm = CudaGemm::cutlass;
    const std::string absent = internal::cutlass_absent();
    expect_error([&] { dev->forward(ConstMatrix{static_cast<const float *>(xd.p), 4, 256}, Matrix{static_cast<float *>(yd.p), 4, 40}, fo); },
                 {absent.empty() ? "multiples of 16" : absent.substr(0, 20).c_str()});
    fo.cuda_gemm = CudaGemm::automatic;
    dev->forward(ConstMatrix{static_cast<const float *>(xd.p), 4, 256}, Matrix{static_cast<float *>(yd.p), 4, 40}, fo);
    internal::cuda_synchronize();
}

}  // namespace
}  // namespace qforge::test
