// qforge kernel entry points: 4-bit weight formats x f32 / Q8_K activations.
//
// Every function validates shapes and pointers, then runs a compiled kernel
// directly on the caller's memory (no copies). Bad input throws
// qforge::Error naming the tensor and the shape; nothing is written then.
// Byte layouts are those of FORMATS.md. Matrices are row-major with a row
// stride in elements (0 means dense).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qforge/format.h"
#include "qforge/error.h"

namespace qforge {

// Where every pointer of a call lives. host: ordinary memory, run on a CPU
// variant. cuda: CUDA device memory (cudaMalloc or cuMemAlloc, in the
// calling thread's current context), run on a CUDA variant, asynchronously
// on `stream`. qforge never copies between the two: a pointer in the wrong
// place is an Error naming the tensor. CUDA inputs (weights, activations)
// must start on a 16-byte boundary, as cudaMalloc's do: the kernels load 16
// bytes at a time.
enum class Memory { host, cuda };

// Which compiled variant runs. target: "auto" (for host memory the
// multitarget library picks from CPU features; for CUDA memory the best
// CUDA target the device runs) or a name from targets(). kernel: empty picks
// decode (tokens = 1) or prefill kernels by token count; a kernel name from
// kernels() forces one (tests, benchmarks, tuning): it must compute the
// call's operation on the call's format, or the call is an Error.
struct RunOptions {
    std::string target = "auto";
    std::string kernel;
    // A build may hold a kernel's variants for a class of layer sizes
    // (targets/knobs.json, shape_classes): a target's own defaults for the
    // class (targets.cmake, QF_CLASS_VARIANTS) or a tuning database's
    // (-DQF_TUNING_DB). Empty: a call runs the variant for its weights' size;
    // a class name: that class's variant where there is one; "-": the
    // kernel's own, untuned for any class (tests, benchmarks, tuning).
    std::string shape_class;
    Memory memory = Memory::host;
    void *stream = nullptr;      // a CUstream / cudaStream_t for Memory::cuda; nullptr: the default stream
};

// Weights in any format (format.h), row-major [out, in]: f32/f16 values,
// int4g nibbles with their f16 scale plane (int4z: and a zero-point plane), or rows of GGUF blocks
// (FORMATS.md). What a format needs of the fields is in its traits row.
struct Weights {
    Format format = Format::f32;
    const void *data = nullptr;
    int64_t out = 0, in = 0;
    int64_t row_stride = 0;            // bytes between rows; 0: dense
    const uint16_t *scales = nullptr;  // int4g, int4z: f16 bits [out, ceil(in/G)]
    int group_size = 0;                // int4g, int4z: one of traits(format).group_sizes
    int64_t scales_stride = 0;         // int4g, int4z: elements between scale rows; 0: ceil(in/G)
    // 0: `data` is in the file's layout. R: `data` is packed in tiles of R
    // rows (qforge/pack.h), row_stride unused; only kernels of that layout
    // read it (8-bit activations).
    int pack_rows = 0;
    // int4z only: the zero points, one byte per group [out, ceil(in/G)]
    // (0..15 as GPTQ and AWQ write them); a weight is (q - zero) * scale.
    const uint8_t *zeros = nullptr;
    int64_t zeros_stride = 0;          // int4z only: bytes between zero rows; 0: ceil(in/G)
};

// RMSNorm or LayerNorm over each row (token) of an activation matrix,
// fused into the kernel that reads it: the kernel sees norm(x), and no
// normalised copy is written anywhere.
//   rms:   x / sqrt(mean(x^2) + eps) * weight
//   layer: (x - mean(x)) / sqrt(var(x) + eps) * weight + bias
// weight and bias are [cols] f32, in the same memory as x.
struct Norm {
    enum class Kind { rms, layer };
    Kind kind = Kind::rms;
    const float *weight = nullptr;   // required
    const float *bias = nullptr;     // LayerNorm only; nullptr: none
    float eps = 1e-6f;               // finite, >= 0
};

// A row-major f32 matrix [rows, cols]. As a kernel's activations it may
// carry a Norm, which the kernel applies to each row as it reads it.
struct ConstMatrix {
    const float *data = nullptr;
    int64_t rows = 0, cols = 0;
    int64_t stride = 0;          // elements between rows; 0: cols
    const Norm *norm = nullptr;  // activations only: read norm(x) instead of x
};
struct Matrix {
    float *data = nullptr;
    int64_t rows = 0, cols = 0;
    int64_t stride = 0;
};

// 8-bit activations for `tokens` rows of `in` values, as three dense
// planes, in blocks of B = act_block(type) values with sums over runs of
// S = act_sum_block(type) (format.h): d [tokens, in/B], qs [tokens, in],
// bsums [tokens, in/S]. Q8_K (B = 256, S = 16) is what Q4_K's kernels
// read; Q8_0 (B = S = 32) what the packed Q4_0 and int4g kernels read
// (FORMATS.md, "Q8_K" and "Q8_0 activations").
struct Q8KActivations {
    float *d = nullptr;
    int8_t *qs = nullptr;
    int16_t *bsums = nullptr;
    int64_t tokens = 0, in = 0;
    ActType type = ActType::q8_k;
};

// Owns the planes of a Q8KActivations.
class Q8KBuffer {
public:
    Q8KBuffer(int64_t tokens, int64_t in, ActType type = ActType::q8_k);
    Q8KActivations view();

private:
    int64_t tokens_, in_;
    ActType type_;
    std::vector<float> d_;
    std::vector<int8_t> qs_;
    std::vector<int16_t> bsums_;
};

// IEEE binary16 values (as their bits) [rows, cols]: the operands of an f16
// GEMM, e.g. cuBLAS (the CUDA prefill path of the layers).
struct MatrixF16 {
    uint16_t *data = nullptr;
    int64_t rows = 0, cols = 0;
    int64_t stride = 0;
};

// W as f32 [out, in], or as f16 (the f32 values rounded to nearest even).
void dequant(const Weights &w, Matrix out, const RunOptions &opt = {});
void dequant(const Weights &w, MatrixF16 out, const RunOptions &opt = {});

// y [tokens, out] = x [tokens, in] * W^T + bias (bias: [out] or nullptr),
// with f32 activations (through x.norm when it carries one) or with Q8_K
// activations (formats whose traits list the activations' type).
void matmul(const Weights &w, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt = {});
void matmul(const Weights &w, const Q8KActivations &a, const float *bias, Matrix y, const RunOptions &opt = {});

// x [tokens, in] -> out.type: Q8_K (ggml's rule) or Q8_0 (FORMATS.md),
// through x.norm first when it carries one. in must be whole blocks.
void q8k_quantize(ConstMatrix x, const Q8KActivations &out, const RunOptions &opt = {});
// x [tokens, in] as f16, through x.norm first when it carries one.
void f16_from_f32(ConstMatrix x, MatrixF16 out, const RunOptions &opt = {});

// The activation of an FFN (qforge/block.h), as llama.cpp and PyTorch define them:
//   silu:      x / (1 + e^-x)                                 (SwiGLU)
//   gelu_tanh: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (GeGLU, GELU "tanh")
//   gelu_erf:  x/2 (1 + erf(x / sqrt(2)))                     (GELU "none")
enum class Activation { silu, gelu_tanh, gelu_erf };

// RMSNorm per attention head of a QKV matmul's output (Qwen3's and Gemma
// 3's q/k norms): rows [first, end) of y are heads of head_dim rows, and a
// head's values v become v / sqrt(mean(v^2) + eps) * weight, with q's
// weight and eps for the heads below `split` and k's from there on. first,
// split and end are multiples of head_dim, at most out.
struct HeadNorms {
    int64_t head_dim = 0;
    int64_t first = 0, split = 0, end = 0;
    const float *q_weight = nullptr, *k_weight = nullptr;  // [head_dim] each, where its range has heads
    float q_eps = 1e-6f, k_eps = 1e-6f;
};

// What a matmul does to its outputs before it stores them: y = act(x W^T
// + bias) + residual (an FFN's plain GELU up projection; a block's residual
// adds after its output projection and FFN). Every matmul kernel applies
// both in its own store, on every target, and a call without them pays
// nothing for them.
// Or, instead of both, per-head norms (`heads`): packed weights with 8-bit
// activations (head_dim a multiple of pack_rows) normalize a head in the
// store, while it is in L1; every other path runs head_rms_norms after
// the matmul.
struct Epilogue {
    bool activate = false;             // apply `act`
    Activation act = Activation::silu;
    ConstMatrix residual;              // [tokens, out], or data == nullptr: none. May be y itself (y += ...),
                                       // or else must not overlap y. In the weights' memory (host or CUDA).
    const HeadNorms *heads = nullptr;  // or nullptr: none. Not with activate or residual.
};
void matmul(const Weights &w, ConstMatrix x, const float *bias, const Epilogue &epilogue, Matrix y,
            const RunOptions &opt = {});
void matmul(const Weights &w, const Q8KActivations &a, const float *bias, const Epilogue &epilogue, Matrix y,
            const RunOptions &opt = {});

// out [tokens, F] = act(gate) * up, or act(gate) where up.data is nullptr.
// gate, up and out may be column ranges of one matrix (strides), and out
// may be gate itself (in place).
void glu(ConstMatrix gate, ConstMatrix up, Activation act, Matrix out, const RunOptions &opt = {});

// An FFN's gate and up matmuls with the activation fused in (the glu
// epilogue): y [tokens, out] = act(x Wg^T + bg) * (x Wu^T + bu). w is
// packed (pack_rows) with gate and up tiles in pairs (pack.h,
// pack_gate_up); w.out = out, the outputs, the weight holding 2 out rows;
// bias [2 out] (gate's, then up's) or nullptr. Formats with packed
// layouts, 8-bit activations.
void matmul_glu(const Weights &w, const Q8KActivations &a, const float *bias, Activation act, Matrix y,
                const RunOptions &opt = {});

// RMSNorm of every head, in place: x [tokens, heads * head_dim] (a column
// range of a QKV output, strides allowed), each head's head_dim values
// x / sqrt(mean(x^2) + eps) * weight, weight [head_dim] in x's memory.
void head_rms_norm(Matrix x, int64_t head_dim, const float *weight, float eps, const RunOptions &opt = {});
// The two ranges of `heads` in y [tokens, out] normalized in place: the pass
// a matmul runs after itself where its kernel has no head_norm epilogue.
void head_rms_norms(Matrix y, const HeadNorms &heads, const RunOptions &opt = {});

// x's columns in another order: out[n, i] = x[n, order[i]], x and out
// [tokens, in] (strides allowed, x.norm not applied), order [in] a
// permutation of 0..in-1 in the same memory as x (on the host each entry
// is checked; on CUDA the layer checked them when it was built, and one out
// of range reads a clamped column): what an act-order layer does to its
// input before its kernels. Host memory: a C++ loop; CUDA: a kernel.
void permute_columns(ConstMatrix x, const int32_t *order, Matrix out, const RunOptions &opt = {});

// What is compiled in and what this CPU runs.
struct TargetInfo {
    std::string name;           // e.g. "x86-avx512-vnni"
    std::string halide_target;  // the Halide target string it was compiled for
    std::vector<std::string> missing_features;  // CPU features this machine lacks; empty: runnable
};
std::vector<TargetInfo> targets();
bool cpu_can_run(const std::string &target);
std::string dispatched_target();      // the variant "auto" runs on this CPU
std::string dispatched_cuda_target(); // the variant "auto" runs for CUDA memory; throws Error without a device
std::vector<std::string> kernels();   // every kernel name in the registry

// Threads the kernels use from the next call on (0: the default,
// HL_NUM_THREADS if set, else one per core). Takes effect in this process
// from any thread at any time: it waits for the kernel calls in flight,
// and lowering it stops the extra workers. Returns the old value. Between
// calls the workers spin for QF_SPIN_US microseconds (environment; default
// 200, 0: sleep at once, as they always do when there are more threads
// than cores), so that back-to-back calls do not wait for them to wake.
int set_num_threads(int n);

}  // namespace qforge
