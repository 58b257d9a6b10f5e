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

#include "qforge/dtype.h"
#include "qforge/kernels.h"

namespace qforge {

class GGUFFile;
class SafetensorsFile;
class LinearLayer;
std::unique_ptr<LinearLayer> concatenate_rows(const std::string &name, const std::vector<const LinearLayer *> &layers);

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

// On CUDA, forward with tokens >= cuda_gemm_min_tokens(weight type) and
// automatic activations (no forced kernel) dequantizes the weights to f16
// into a per-thread, per-stream device scratch (out x in x 2 bytes),
// converts x (through its norm) to f16, and runs cuBLAS's f16 GEMM with f32
// accumulation; eager_f16 layers skip the dequantization. Below it, and
// where cuBLAS cannot be loaded, the fused Halide kernels run.
//
// The rule, measured (bench/device/RESULTS.md: H100, Llama-3.1-8B MLP
// shapes, 14336x4096 and 4096x14336, both paths timed in one run). The
// Halide kernels give a warp 2 rows x 4 tokens, so their time steps with
// each tile of 4 tokens: Q4_K 0.063-0.093 ms for 2 to 4 tokens, 0.114-0.125
// for 8, 0.209-0.211 for 16; int4g 0.072-0.077, 0.138-0.144, 0.262-0.275.
// Dequantize + cuBLAS costs about the same for any batch up to 128 tokens:
// Q4_K 0.112-0.128 ms (its dequantizer streams at 82% of copy), int4g
// 0.198-0.213 (47%). So cuBLAS wins for Q4_K from 5 tokens (the second
// Halide tile ties it at 14336x4096 and loses by 10% at 4096x14336) and for
// int4g from 9. The other formats keep 9 (their batches were not measured).
constexpr int64_t cuda_gemm_min_tokens(DType weights) { return weights == DType::q4_k ? 5 : 9; }

// Activation type of Q4_K layers (other formats always use f32).
//   automatic: f32 for decode (one token; the fused f32 kernel streams the
//   weights at least as fast) and Q8_K for prefill on the CPU (integer dot
//   products, the prefill bottleneck), as llama.cpp quantizes activations.
//   On CUDA always f32: the Q8_K quantizer is nine small kernels there,
//   more than the integer dots save (H100, 14336x4096 / 4096x14336, one
//   token: quantize + Q8 kernel 0.059 / 0.079 ms, the f32 kernel 0.037 /
//   0.040 ms; bench/device/RESULTS.md).
enum class Activations { automatic, f32, q8 };

struct LayerOptions {
    Strategy strategy = Strategy::fused;
    Memory memory = Memory::host;   // cuda: weights are uploaded once, forward takes device pointers
};

// Which path a CUDA forward takes: automatic applies the rule above;
// halide always runs the fused Halide kernels; cublas always dequantizes to
// f16 and runs cuBLAS (an error if cuBLAS cannot be loaded). For tuning and
// benchmarks; host layers ignore it.
enum class CudaGemm { automatic, halide, cublas };

struct ForwardOptions {
    Activations activations = Activations::automatic;
    CudaGemm cuda_gemm = CudaGemm::automatic;
    RunOptions run;                 // target, forced kernel, stream; run.memory must match the layer's
};

// Weights as the caller holds them. `data` must outlive the layer unless
// `owner` keeps it alive (the loaders set it to the mapped file).
struct WeightRef {
    DType type = DType::f32;        // F32, F16, BF16, Q4_K, Q6_K, Q8_0, Q4_0; U8 for int4g
    const void *data = nullptr;
    int64_t out = 0, in = 0;
    const uint16_t *scales = nullptr;  // int4g only: f16 [out, ceil(in/G)]
    int group_size = 0;                // int4g only
    std::shared_ptr<const void> owner;
};

class LinearLayer {
public:
    virtual ~LinearLayer();
    const std::string &name() const { return name_; }
    int64_t in() const { return in_; }
    int64_t out() const { return out_; }
    DType format() const { return format_; }        // U8 stands for int4g
    Strategy strategy() const { return opt_.strategy; }
    bool has_bias() const { return !bias_.empty(); }
    // Bytes this layer keeps: weights (mapped or owned), scales, bias and any
    // dequantized copy.
    int64_t memory_bytes() const;
    // Bytes of the weights one forward() streams.
    int64_t weight_bytes() const;

    void forward(const ConstTensor &x, const Tensor &y, const ForwardOptions &opt = {}) const;
    // The same on plain matrices (strides allowed): x [tokens, in], y [tokens, out].
    void forward(ConstMatrix x, Matrix y, const ForwardOptions &opt = {}) const;

protected:
    friend std::unique_ptr<LinearLayer> concatenate_rows(const std::string &,
                                                         const std::vector<const LinearLayer *> &);
    LinearLayer(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt);
    virtual void run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const = 0;
    virtual void dequantize_to(float *w) const = 0;  // [out, in] f32, for eager strategies
    // The device weights as f16 [out, in] into w16 (device memory), for the
    // cuBLAS path (dense layers never get here: use_cublas).
    virtual void dequantize_f16(uint16_t *w16, const RunOptions &run) const = 0;
    bool use_cublas(const ConstMatrix &x, const ForwardOptions &opt) const;
    void run_cublas(ConstMatrix x, Matrix y, const ForwardOptions &opt) const;
    const float *bias_ptr() const;
    void finish_load();  // eager dequantization and uploads; call last in a constructor

    std::string name_;
    int64_t in_, out_;
    DType format_;
    LayerOptions opt_;
    WeightRef w_;
    std::vector<float> bias_;
    std::vector<uint8_t> dense_;        // eager: f32 or f16 [out, in]
    struct Device;
    std::shared_ptr<Device> device_;    // LayerOptions::memory == cuda
};

// f32 (or f16/bf16, converted once) dense weights: the unquantized baseline.
class Linear final : public LinearLayer {
public:
    Linear(std::string name, const WeightRef &w, const float *bias = nullptr, const LayerOptions &opt = {});
private:
    void run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const override;
    void dequantize_to(float *w) const override;
    void dequantize_f16(uint16_t *w16, const RunOptions &run) const override;
    std::vector<float> converted_;
};

class Int4gLinear final : public LinearLayer {
public:
    Int4gLinear(std::string name, const WeightRef &w, const float *bias = nullptr, const LayerOptions &opt = {});
private:
    void run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const override;
    void dequantize_to(float *w) const override;
    void dequantize_f16(uint16_t *w16, const RunOptions &run) const override;
};

// Q4_K, Q6_K, Q8_0 and Q4_0: one class per format for readable call sites.
class BlockLinear : public LinearLayer {
public:
    BlockLinear(std::string name, const WeightRef &w, const float *bias = nullptr, const LayerOptions &opt = {});
private:
    void run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const override;
    void dequantize_to(float *w) const override;
    void dequantize_f16(uint16_t *w16, const RunOptions &run) const override;
};
class Q4KLinear final : public BlockLinear { using BlockLinear::BlockLinear; };
class Q6KLinear final : public BlockLinear { using BlockLinear::BlockLinear; };
class Q8_0Linear final : public BlockLinear { using BlockLinear::BlockLinear; };
class Q4_0Linear final : public BlockLinear { using BlockLinear::BlockLinear; };

// The right layer class for w.type.
std::unique_ptr<LinearLayer> make_linear(std::string name, const WeightRef &w, const float *bias = nullptr,
                                         const LayerOptions &opt = {});
// A GGUF tensor ("blk.0.attn_q.weight"; the bias "blk.0.attn_q.bias" is used when present).
std::unique_ptr<LinearLayer> load_linear(const GGUFFile &f, const std::string &tensor, const LayerOptions &opt = {});
// A safetensors tensor: an int4g prefix (prefix.weight_4bit ...) or a dense
// weight ("model.layers.0.self_attn.q_proj.weight", with ".bias" beside it).
std::unique_ptr<LinearLayer> load_linear(const SafetensorsFile &f, const std::string &name,
                                         const LayerOptions &opt = {});

}  // namespace qforge
