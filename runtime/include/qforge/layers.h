// Linear layers over quantized weights: what an inference engine calls.
//
//   auto file = qforge::GGUFFile::open("model.gguf");
//   auto q = qforge::load_linear(file, "blk.0.attn_q.weight");
//   q->forward({x, {tokens, 4096}}, {y, {tokens, 4096}});
//
// A layer is immutable once built and safe to call from several threads at
// once. forward() takes x as [tokens, in] or [batch, seq, in] (f32,
// row-major) and writes y as [tokens, out] or [batch, seq, out]. It runs the
// decode kernel for one token and the prefill kernel otherwise. The norm
// that precedes a projection can be fused into it:
//
//   qforge::Norm attn_norm{qforge::Norm::Kind::rms, gamma, nullptr, 1e-5f};
//   q->forward({x, {tokens, 4096}, &attn_norm}, {y, {tokens, 4096}});
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qforge/format.h"
#include "qforge/kernels.h"

namespace qforge {

class GGUFFile;
class SafetensorsFile;
namespace internal {
struct LayerAccess;
}

struct ConstTensor {
    const float *data = nullptr;
    std::vector<int64_t> shape;   // [tokens, in] or [batch, seq, in]
    // RMSNorm/LayerNorm applied to each token inside the layer's kernels
    // (kernels.h, Norm): forward computes norm(x) * W^T + b and writes no
    // normalised x. Its weight and bias live in the layer's memory.
    const Norm *norm = nullptr;
};
struct Tensor {
    float *data = nullptr;
    std::vector<int64_t> shape;   // [tokens, out] or [batch, seq, out]
};

// How the weights are used.
//   fused (default): they stay quantized; kernels dequantize in registers.
//   eager_f32 / eager_f16: dequantized once when the layer is built, then a
//   dense kernel: more memory (4 or 2 bytes per weight) for callers who run
//   large batches.
enum class Strategy { fused, eager_f32, eager_f16 };

// Activation type of the layer's kernels.
//   automatic: on the CPU, 8-bit in formats that have 8-bit kernels (Q4_K's
//   Q8_K: integer dot products), as llama.cpp quantizes activations, for
//   prefill and, where the layer is packed (pack_rows()), for decode too;
//   f32 otherwise, and on CUDA, where quantizing costs about what the integer
//   dots save, or more (bench/device/RULES.md). f32 is the exact path.
enum class Activations { automatic, f32, q8 };

struct LayerOptions {
    Strategy strategy = Strategy::fused;
    Memory memory = Memory::host;   // cuda: weights are uploaded once, forward takes device pointers
};

// On CUDA, from traits(format).cuda_gemm_min_tokens tokens (automatic
// activations, no forced kernel) forward dequantizes the weights to f16
// into a per-thread, per-stream device scratch (out x in x 2 bytes),
// converts x (through its norm) to f16 and runs cuBLAS's f16 GEMM with f32
// accumulation; eager_f16 layers skip the dequantization. Below it, and
// where cuBLAS cannot be loaded, the fused Halide kernels run. cutlass runs
// CUTLASS's int4 x f16 tensor-core GEMM on an sm_90 GPU (Hopper) for int4g
// layers (groups of 64 or more, rows and columns multiples of 16), on
// weights it repacks into its layout at its first call (a second device
// copy, which memory_bytes() counts; split-K's partial sums take a
// per-thread, per-stream device scratch); automatic picks it from 2 tokens
// where it can run (measured, bench/device/RULES.md). halide, cublas and
// cutlass force a path
// (tuning, benchmarks); host layers ignore it.
enum class CudaGemm { automatic, halide, cublas, cutlass };

struct ForwardOptions {
    Activations activations = Activations::automatic;
    CudaGemm cuda_gemm = CudaGemm::automatic;
    RunOptions run;                 // target, forced kernel, stream; run.memory must match the layer's
    // y = act(x W^T + b) + residual (kernels.h, Epilogue): inside the packed
    // 8-bit kernels, else as a pass after the matmul (a residual: host
    // layers only). Linear layers and what ends in one (an attention's
    // output projection; an FFN's down, for its output); QKV takes none.
    Epilogue epilogue;
};

// Weights as the caller holds them (kernels.h, Weights: any format, dense
// rows). `data` (and `scales`) must outlive the layer unless `owner` keeps
// them alive (the loaders set it to the mapped file).
struct WeightRef {
    Format format = Format::f32;
    const void *data = nullptr;
    int64_t out = 0, in = 0;
    const uint16_t *scales = nullptr;  // formats with separate scales (int4g, int4z): f16 [out, ceil(in/G)]
    int group_size = 0;
    const uint8_t *zeros = nullptr;    // int4z: zero points [out, ceil(in/G)], one byte each (0..15)
    // Act-order (GPTQ's desc_act, qforge/gptq.h): column i of the weight
    // multiplies input input_order[i], a permutation of 0..in-1 the layer
    // copies. A fused layer permutes x (and its norm's weights) once per call
    // (permute_columns; on CUDA a kernel); eager layers put their dense copy
    // back in input order at load.
    const int32_t *input_order = nullptr;
    // 0: data is the file's layout. R: data is packed in tiles of R rows
    // (qforge/pack.h), as `qforge pack` writes it; a layer on a CPU whose
    // kernels take this R reads it as is (no copy), elsewhere it repacks
    // once at load and says so on stderr.
    int pack_rows = 0;
    std::shared_ptr<const void> owner;
};

// y = x W^T + b over weights of any format. Immutable once built; copies
// share the weights.
class Linear {
public:
    Linear(std::string name, const WeightRef &w, const float *bias = nullptr, const LayerOptions &opt = {});
    ~Linear();

    const std::string &name() const;
    int64_t in() const;
    int64_t out() const;
    Format format() const;
    int group_size() const;
    // Act-order (WeightRef::input_order): the input of each weight column; empty: in order.
    const std::vector<int32_t> &input_order() const;
    Strategy strategy() const;
    Memory memory() const;
    bool has_bias() const;
    // Tile height of the packed copy its 8-bit kernels read (qforge/pack.h),
    // made at load on CPUs whose best kernels want it; 0: none.
    int pack_rows() const;
    // Bytes this layer keeps: weights (mapped or owned), scales, bias and any
    // dequantized or packed copy; host_bytes() + device_bytes().
    int64_t memory_bytes() const;
    int64_t host_bytes() const;
    int64_t device_bytes() const;  // a CUDA layer's uploads
    // A CUDA layer drops every host copy of its weights and bias (the
    // mapped file's pages are the file's: it drops its reference); forward()
    // runs on the device copy as before. Call it before sharing the layer
    // between threads: it must not run during a forward() of this layer or
    // of a copy. Host layers: Error.
    void release_host();
    // Bytes of the weights one forward() streams.
    int64_t weight_bytes() const;

    void forward(const ConstTensor &x, const Tensor &y, const ForwardOptions &opt = {}) const;
    // The same on plain matrices (strides allowed): x [tokens, in], y [tokens, out].
    void forward(ConstMatrix x, Matrix y, const ForwardOptions &opt = {}) const;

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
    friend std::unique_ptr<Linear> concatenate_rows(const std::string &, const std::vector<const Linear *> &);
    friend struct internal::LayerAccess;
};

// Rows of `layers` (same format, in, group size, strategy and memory)
// stacked into one layer named `name`; their biases (zero where a layer has
// none) too. The bytes are copied once.
std::unique_ptr<Linear> concatenate_rows(const std::string &name, const std::vector<const Linear *> &layers);

std::unique_ptr<Linear> make_linear(std::string name, const WeightRef &w, const float *bias = nullptr,
                                    const LayerOptions &opt = {});
// A GGUF tensor ("blk.0.attn_q.weight"; the bias "blk.0.attn_q.bias" is used when present).
std::unique_ptr<Linear> load_linear(const GGUFFile &f, const std::string &tensor, const LayerOptions &opt = {});
// A safetensors tensor: an int4g prefix (prefix.weight_4bit ...), a GPTQ or
// AWQ prefix (prefix.qweight ..., read into int4z with the config beside the
// file: qforge/gptq.h) or a dense weight
// ("model.layers.0.self_attn.q_proj.weight", with ".bias" beside it).
std::unique_ptr<Linear> load_linear(const SafetensorsFile &f, const std::string &name, const LayerOptions &opt = {});
// An I8 or F8_E4M3 weight `name` of a compressed-tensors (llm-compressor)
// int8 or FP8 checkpoint, with its scale `name`_scale (per tensor or per
// row), as qforge's int8 or fp8 rows (FORMATS.md, "int8 and fp8 rows"),
// which the WeightRef's owner keeps. load_linear reads such weights with it.
WeightRef load_channel_weight(const SafetensorsFile &f, const std::string &name);

}  // namespace qforge
