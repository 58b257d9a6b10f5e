// Writes the fuzzers' seed corpora (valid files, small, of every kind the
// readers take) with qforge's own writers: `qforge_fuzz_seeds DIR` fills
// DIR/gguf, DIR/safetensors and DIR/cli. Run by the tests; nothing is
// committed as a blob.
#include "qforge/gguf.h"
#include "qforge/pack.h"
#include "qforge/quantize.h"
#include "qforge/safetensors.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace qforge;
using VT = GGUFValue::Type;
namespace fs = std::filesystem;

std::mt19937 rng(12345);  // fixed: the seeds are the same every run

std::vector<float> floats(int64_t n) {
    std::uniform_real_distribution<float> d(-1, 1);
    std::vector<float> v(n);
    for (auto &x : v) x = d(rng);
    return v;
}

std::vector<uint8_t> bytes(int64_t n) {
    std::vector<uint8_t> v(n);
    for (auto &b : v) b = static_cast<uint8_t>(rng());
    return v;
}

GGUFValue array_of(VT et, uint64_t n) {
    GGUFValue v;
    v.type = VT::array;
    v.element_type = et;
    v.count = n;
    if (et == VT::string) {
        for (uint64_t k = 0; k < n; ++k) {
            v.s += "tok" + std::to_string(k);
            v.string_ends.push_back(v.s.size());
        }
    } else {
        const uint64_t size = et == VT::u8 || et == VT::i8 || et == VT::boolean ? 1
                              : et == VT::u16 || et == VT::i16                  ? 2
                              : et == VT::u64 || et == VT::i64 || et == VT::f64 ? 8
                                                                                : 4;
        v.raw = bytes(n * size);
        if (et == VT::boolean) {
            for (auto &b : v.raw) b &= 1;
        }
    }
    return v;
}

GGUFValue scalar(VT t, int64_t i, double f = 0) {
    GGUFValue v;
    v.type = t;
    v.i = i;
    v.u = static_cast<uint64_t>(i);
    v.f = f;
    return v;
}

// A GGUF of every metadata type and every tensor type the kernels read.
void write_gguf(const std::string &path, uint64_t alignment, bool packed) {
    GGUFWriter w(alignment);
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 1);
    w.set_f32("llama.rope.freq_base", 10000.0f);
    for (VT t : {VT::u8, VT::i8, VT::u16, VT::i16, VT::u32, VT::i32, VT::u64, VT::i64, VT::boolean}) {
        w.set("test.scalar." + std::to_string(static_cast<int>(t)), scalar(t, 1));
    }
    w.set("test.f64", scalar(VT::f64, 0, 2.5));
    for (VT t : {VT::u8, VT::i8, VT::u16, VT::i16, VT::u32, VT::i32, VT::f32, VT::boolean, VT::string, VT::u64, VT::i64, VT::f64}) {
        w.set("test.array." + std::to_string(static_cast<int>(t)), array_of(t, 5));
    }
    const auto q4k = quantize_q4k(floats(2 * 256).data(), 2, 256);
    w.add_tensor("blk.0.attn_q.weight", DType::q4_k, {2, 256}, q4k.data.data(), q4k.data.size());
    const auto bias = floats(2);
    w.add_tensor("blk.0.attn_q.bias", DType::f32, {2}, bias.data(), 8);
    const auto f = floats(3 * 8);
    w.add_tensor("blk.0.ffn_up.weight", DType::f32, {3, 8}, f.data(), f.size() * 4);
    std::vector<uint16_t> h(2 * 8);
    for (auto &x : h) x = 0x3c00;
    w.add_tensor("blk.0.ffn_gate.weight", DType::f16, {2, 8}, h.data(), h.size() * 2);
    const struct {
        const char *name;
        DType type;
        int64_t in;
    } blocks[] = {{"blk.0.q4_0.weight", DType::q4_0, 32}, {"blk.0.q8_0.weight", DType::q8_0, 64},
                  {"blk.0.q6_k.weight", DType::q6_k, 256}, {"blk.0.q4_1.weight", DType::q4_1, 32}};
    for (const auto &b : blocks) {
        const BlockShape bs = block_shape(b.type);
        std::vector<uint8_t> d = bytes(2 * b.in / bs.elements * bs.bytes);
        w.add_tensor(b.name, b.type, {2, b.in}, d.data(), d.size());
    }
    if (packed) {
        const int R = pack_rows_for("x86", Format::q4_k);
        const auto q = quantize_q4k(floats(20 * 256).data(), 20, 256);
        add_packed_tensor(w, "blk.0.attn_k.weight", Weights{Format::q4_k, q.data.data(), 20, 256},
                          PackedTensor{Format::q4_k, 20, 256, 0, R, "x86"});
    }
    w.write(path);
}

// A safetensors file with every dtype, an empty tensor, metadata and an
// int4g layer (with bias and its group size).
void write_safetensors(const std::string &path, int group) {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    const int64_t out = 3, in = 64;
    const auto q = quantize_int4g(floats(out * in).data(), out, in, group);
    w.add_tensor("model.proj.weight_4bit", DType::u8, {out, in / 2}, q.weight.data(), q.weight.size());
    w.add_tensor("model.proj.scales_4bit", DType::f16, {out, (in + group - 1) / group}, q.scales.data(), q.scales.size() * 2);
    const auto b = floats(out);
    w.add_tensor("model.proj.bias", DType::f32, {out}, b.data(), b.size() * 4);
    w.set_metadata("model.proj.group_size", std::to_string(group));
    const auto f = floats(4 * 8);
    w.add_tensor("model.dense.weight", DType::f32, {4, 8}, f.data(), f.size() * 4);
    for (DType t : {DType::f16, DType::bf16, DType::f64, DType::u8, DType::i8, DType::i16, DType::i32, DType::i64}) {
        const auto d = bytes(6 * block_shape(t).bytes);
        w.add_tensor("t." + to_string(t), t, {2, 3}, d.data(), d.size());
    }
    w.add_tensor("empty", DType::f32, {0, 4}, nullptr, 0);
    w.write(path);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const fs::path dir = argv[1];
    for (const char *sub : {"gguf", "safetensors", "cli"}) fs::create_directories(dir / sub);
    write_gguf((dir / "gguf/plain.gguf").string(), 32, false);
    write_gguf((dir / "gguf/aligned64_packed.gguf").string(), 64, true);
    write_safetensors((dir / "safetensors/int4g_g32.safetensors").string(), 32);
    write_safetensors((dir / "safetensors/int4g_g64.safetensors").string(), 64);
    for (const char *f : {"gguf/plain.gguf", "gguf/aligned64_packed.gguf", "safetensors/int4g_g32.safetensors"}) {
        fs::copy_file(dir / f, dir / "cli" / fs::path(f).filename(), fs::copy_options::overwrite_existing);
    }
    std::printf("seeds written to %s\n", dir.string().c_str());
    return 0;
}
