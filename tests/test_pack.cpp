// Packed layouts (FORMATS.md, "Packed layouts"): packing is a lossless byte
// permutation (unpack gives the file's bytes back, bit for bit), pad rows
// of the last tile are zero, the packed tensor stays within 110% of the
// file's bytes, and bad requests are errors naming what is wrong. The
// packed kernels themselves are checked with their unpacked peers
// (test_q8k.cpp) on the same random weights.
#include "test_util.h"

#include "qforge/pack.h"

namespace qforge::test {
namespace {

// Random weights in `f`'s file layout: the weight plane, then (int4g, int4z)
// the scale plane, then (int4z) the zero points.
std::vector<uint8_t> random_blocks(Format f, int64_t out, int64_t in, int group) {
    if (f == Format::q4_k) return random_q4k(out, in, /*realistic=*/false);
    return random_bytes(weight_bytes(f, out, in, group));
}

TEST(Pack, RoundTripsBitExactly) {
    for (const FormatTraits &t : all_formats()) {
        if (!has_packed_layout(t.format)) continue;
        const std::vector<int> groups = t.separate_scales ? std::vector<int>{32, 64, 128} : std::vector<int>{0};
        for (int G : groups) {
            for (int R : {4, 8, 16, 32}) {
                for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{1, 256}, {17, 512}, {64, 768}, {33, 2304}}) {
                    SCOPED_TRACE(std::string(t.name) + " G=" + std::to_string(G) + " R=" + std::to_string(R) + " [" +
                                 std::to_string(out) + ", " + std::to_string(in) + "]");
                    auto file = random_blocks(t.format, out, in, G);
                    const auto before = file;
                    const int64_t plane = out * (in / t.block_elements) * t.block_bytes;
                    std::vector<uint8_t> packed(packed_bytes(t.format, out, in, R), 0xA5);
                    Weights w{t.format, file.data(), out, in};
                    const int64_t zeros_at = plane + out * ((in + G - 1) / std::max(G, 1)) * 2;
                    if (t.separate_scales) w.scales = reinterpret_cast<const uint16_t *>(file.data() + plane);
                    if (t.zero_points) w.zeros = file.data() + zeros_at;
                    w.group_size = G;
                    pack_weights(w, R, packed.data(), /*threads=*/3);
                    EXPECT_EQ(file, before) << "packing changed its input";

                    std::vector<uint8_t> back(file.size(), 0x5A);
                    Weights pw = w;
                    pw.data = packed.data();
                    pw.pack_rows = R;
                    unpack_weights(pw, back.data());
                    EXPECT_EQ(back, file);

                    // Pad rows: packing all-zero weights gives all zeros (Q3_K
                    // and IQ4_XS store their scales decoded, sc - 32: a zero
                    // block's are -32, so only their pad rows are zero, checked
                    // through the kernels).
                    if (t.format != Format::q3_k && t.format != Format::iq4_xs) {
                        std::vector<uint8_t> zero(file.size(), 0), zpacked(packed.size(), 0xA5);
                        Weights zw = w;
                        zw.data = zero.data();
                        if (t.separate_scales) zw.scales = reinterpret_cast<const uint16_t *>(zero.data() + plane);
                        if (t.zero_points) zw.zeros = zero.data() + zeros_at;
                        pack_weights(zw, R, zpacked.data(), 1);
                        EXPECT_TRUE(std::all_of(zpacked.begin(), zpacked.end(), [](uint8_t b) { return b == 0; }))
                            << "pad rows or fields are not zero";
                    }
                    if (out % R == 0) {
                        // int4z at G = 128 carries its scale and zero in every block of 32:
                        // 19 bytes against 16.75, 113% (FORMATS.md, "Packed int4z").
                        const double bound = t.zero_points && G == 128 ? 1.14 : 1.10;
                        EXPECT_LE(static_cast<double>(packed.size()), bound * static_cast<double>(file.size()));
                    }
                }
            }
        }
    }
}

TEST(Pack, HonoursRowStride) {
    const int64_t out = 9, in = 512, row = in / 256 * 144, stride = row + 40;
    auto dense = random_q4k(out, in, false);
    std::vector<uint8_t> strided(out * stride, 0xEE);
    for (int64_t r = 0; r < out; ++r) std::memcpy(strided.data() + r * stride, dense.data() + r * row, row);
    std::vector<uint8_t> a(packed_bytes(Format::q4_k, out, in, 8)), b(a.size());
    pack_weights(Weights{Format::q4_k, dense.data(), out, in}, 8, a.data());
    Weights ws{Format::q4_k, strided.data(), out, in, stride};
    pack_weights(ws, 8, b.data());
    EXPECT_EQ(a, b);
}

TEST(Pack, BadRequestsAreErrors) {
    auto data = random_q4k(4, 256, true);
    std::vector<uint8_t> dst(1 << 16);
    expect_error([&] { packed_bytes(Format::f32, 4, 256, 16); }, {"f32 has no packed layout"});
    expect_error([&] { packed_bytes(Format::q4_k, 4, 256, 6); }, {"multiple of 4"});
    expect_error([&] { packed_bytes(Format::q4_k, 4, 300, 16); }, {"not whole blocks of 256"});
    expect_error([&] { packed_bytes(Format::int4g, 4, 48, 16); }, {"not whole blocks of 32"});
    std::vector<uint8_t> i4(4 * 64 / 2);
    std::vector<uint16_t> sc(4 * 4);
    Weights g16{Format::int4g, i4.data(), 4, 64};
    g16.scales = sc.data();
    g16.group_size = 16;
    expect_error([&] { pack_weights(g16, 16, dst.data()); }, {"group size 16", "multiple of 32"});
    expect_error([&] { packed_bytes(Format::q4_k, 0, 256, 16); }, {"out = 0"});
    Weights w{Format::q4_k, data.data(), 4, 256};
    w.pack_rows = 16;
    expect_error([&] { pack_weights(w, 16, dst.data()); }, {"packed already"});
    expect_error([&] { unpack_weights(Weights{Format::q4_k, data.data(), 4, 256}, dst.data()); }, {"not packed"});
    // A packed weight handed to a kernel with f32 activations names the layout.
    std::vector<float> x(256, 1.0f), y(4);
    expect_error([&] { matmul(w, ConstMatrix{x.data(), 1, 256}, nullptr, Matrix{y.data(), 1, 4}); }, {"packed q4_k"});
    Weights bad{Format::f32, x.data(), 1, 256};
    bad.pack_rows = 16;
    expect_error([&] { matmul(bad, ConstMatrix{x.data(), 1, 256}, nullptr, Matrix{y.data(), 1, 1}); },
                 {"f32 has no packed layout"});
}

TEST(Pack, PreferredRowsHaveKernels) {
    for (const FormatTraits &t : all_formats()) {
        const int R = preferred_pack_rows(t.format, t.separate_scales ? 32 : 0);
        if (!R) continue;
        internal::KernelKey k;
        k.format = t.format;
        k.act = t.activations.back();
        k.pack = R;
        k.group = t.separate_scales ? 32 : 0;
        for (Op op : {Op::matvec, Op::matmul}) {
            k.op = op;
            EXPECT_NE(internal::find_row(k), nullptr) << t.name << " R=" << R;
        }
    }
}

}  // namespace
}  // namespace qforge::test
