// Layer objects: shape checks naming the layer, the strategy (fused or eager
// dequant), the activation policy and device residency, over the kernel
// entry points of kernels.h.
#include "qforge/layers.h"

#include <cstring>
#include <deque>

#include "cublas.h"
#include "cuda_device.h"
#include "qforge/gguf.h"
#include "qforge/quantize.h"
#include "qforge/safetensors.h"
#include "tensor_views.h"

namespace qforge {

namespace {

[[noreturn]] void layer_error(const std::string &layer, const std::string &what) {
    throw Error("layer '" + layer + "': " + what);
}

int64_t quantized_bytes(const WeightRef &w) {
    if (w.type == DType::u8) {
        const int64_t groups = (w.in + w.group_size - 1) / w.group_size;
        return w.out * (w.in / 2) + w.out * groups * 2;
    }
    return storage_bytes(w.type, w.out * w.in);
}

// A device copy of host bytes, freed with the layer.
struct DeviceBuffer {
    void *p = nullptr;
    DeviceBuffer() = default;
    DeviceBuffer(const void *host, size_t bytes) {
        if (!host || !bytes) return;
        p = internal::cuda_alloc(bytes);
        internal::cuda_upload(p, host, bytes);
    }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
        std::swap(p, o.p);
        return *this;
    }
    ~DeviceBuffer() {
        try {
            if (p) internal::cuda_free(p);
        } catch (const Error &) {
            // The driver is gone (process exit): nothing left to free.
        }
    }
};

// Device scratch of GPU layers (Q8_K planes, f16 operands), one per calling
// thread, stream and use: work on one stream runs in order, so the next call
// on it can reuse the memory without waiting, and no call allocates once the
// largest size has been seen.
class DeviceScratch {
public:
    enum Use { q8k_planes, f16_weights, f16_activations };

    void *get(void *stream, Use use, size_t bytes) {
        Entry *e = nullptr;
        for (Entry &c : entries_) {
            if (c.stream == stream && c.use == use) e = &c;
        }
        if (!e) {
            e = &entries_.emplace_back();
            e->stream = stream;
            e->use = use;
        }
        if (e->bytes < bytes) {
            internal::cuda_synchronize();  // earlier calls may still read the old memory
            e->buf = DeviceBuffer();
            e->buf.p = internal::cuda_alloc(bytes);
            e->bytes = bytes;
        }
        return e->buf.p;
    }

    Q8KActivations planes(void *stream, int64_t tokens, int64_t in) {
        const size_t d_bytes = round_up(tokens * (in / 256) * 4), qs_bytes = round_up(tokens * in);
        const size_t bytes = d_bytes + qs_bytes + round_up(tokens * (in / 16) * 2);
        auto *base = static_cast<uint8_t *>(get(stream, q8k_planes, bytes));
        return {reinterpret_cast<float *>(base), reinterpret_cast<int8_t *>(base + d_bytes),
                reinterpret_cast<int16_t *>(base + d_bytes + qs_bytes), tokens, in};
    }

private:
    static size_t round_up(int64_t b) { return (static_cast<size_t>(b) + 255) / 256 * 256; }
    struct Entry {
        void *stream = nullptr;
        Use use = q8k_planes;
        DeviceBuffer buf;
        size_t bytes = 0;
    };
    std::deque<Entry> entries_;
};

DeviceScratch &device_scratch() {
    thread_local DeviceScratch scratch;
    return scratch;
}

}  // namespace

struct LinearLayer::Device {
    DeviceBuffer weight, scales, bias, dense;
};

LinearLayer::~LinearLayer() = default;

LinearLayer::LinearLayer(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt)
    : name_(std::move(name)), in_(w.in), out_(w.out), format_(w.type), opt_(opt), w_(w) {
    if (!w.data) layer_error(name_, "weight is a null pointer");
    if (w.out <= 0 || w.in <= 0) {
        layer_error(name_, "weight shape [" + std::to_string(w.out) + ", " + std::to_string(w.in) + "] must be positive");
    }
    if (bias) bias_.assign(bias, bias + w.out);
}

const float *LinearLayer::bias_ptr() const {
    if (bias_.empty()) return nullptr;
    return device_ ? static_cast<const float *>(device_->bias.p) : bias_.data();
}

void LinearLayer::finish_load() {
    if (opt_.strategy != Strategy::fused) {
        std::vector<float> w(out_ * in_);
        dequantize_to(w.data());
        dense_ = f32_to_bytes(opt_.strategy == Strategy::eager_f32 ? DType::f32 : DType::f16, w);
    }
    if (opt_.memory == Memory::cuda) {
        const internal::CudaDevice &d = internal::cuda_device();
        if (!d.present) layer_error(name_, "LayerOptions::memory is cuda, but there is no CUDA device: " + d.why_absent);
        device_ = std::make_shared<Device>();
        if (opt_.strategy == Strategy::fused) {
            const int64_t weight_part = w_.type == DType::u8 ? w_.out * (w_.in / 2) : quantized_bytes(w_);
            device_->weight = DeviceBuffer(w_.data, weight_part);
            if (w_.scales) device_->scales = DeviceBuffer(w_.scales, quantized_bytes(w_) - weight_part);
        } else {
            device_->dense = DeviceBuffer(dense_.data(), dense_.size());
        }
        device_->bias = DeviceBuffer(bias_.data(), bias_.size() * 4);
    }
}

int64_t LinearLayer::weight_bytes() const {
    if (opt_.strategy == Strategy::fused) return quantized_bytes(w_);
    return static_cast<int64_t>(dense_.size());
}

int64_t LinearLayer::memory_bytes() const { return weight_bytes() + static_cast<int64_t>(bias_.size()) * 4; }

void LinearLayer::forward(const ConstTensor &x, const Tensor &y, const ForwardOptions &opt) const {
    auto shape = [](const std::vector<int64_t> &s) { return shape_string(s); };
    if (x.shape.size() != 2 && x.shape.size() != 3) {
        layer_error(name_, "x is " + shape(x.shape) + ": expected [tokens, in] or [batch, seq, in]");
    }
    if (x.shape.back() != in_) {
        layer_error(name_, "x is " + shape(x.shape) + ": its last dimension must be in = " + std::to_string(in_));
    }
    std::vector<int64_t> want = x.shape;
    want.back() = out_;
    if (y.shape != want) layer_error(name_, "y is " + shape(y.shape) + ", expected " + shape(want));
    int64_t tokens = 1;
    for (size_t i = 0; i + 1 < x.shape.size(); ++i) tokens *= x.shape[i];
    if (tokens <= 0) layer_error(name_, "x is " + shape(x.shape) + ": there must be at least one token");
    forward(ConstMatrix{x.data, tokens, in_, 0, x.norm}, Matrix{y.data, tokens, out_}, opt);
}

void LinearLayer::forward(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    if (opt.run.memory != opt_.memory) {
        layer_error(name_, std::string("ForwardOptions::run.memory is ") + (opt.run.memory == Memory::cuda ? "cuda" : "host") +
                               " but the layer's weights are in " + (opt_.memory == Memory::cuda ? "cuda" : "host") +
                               " memory");
    }
    if (x.cols != in_) layer_error(name_, "x has " + std::to_string(x.cols) + " columns, in = " + std::to_string(in_));
    if (y.cols != out_) layer_error(name_, "y has " + std::to_string(y.cols) + " columns, out = " + std::to_string(out_));
    try {
        if (use_cublas(x, opt)) {
            run_cublas(x, y, opt);
        } else if (opt_.strategy == Strategy::fused) {
            run_fused(x, y, opt);
        } else {
            if (opt.activations == Activations::q8) layer_error(name_, "eager layers run dense f32 activations, not q8");
            const void *w = device_ ? device_->dense.p : dense_.data();
            dense_matmul({opt_.strategy == Strategy::eager_f32 ? DType::f32 : DType::f16, w, out_, in_}, x, bias_ptr(), y,
                         opt.run);
        }
    } catch (const Error &e) {
        if (std::string(e.what()).rfind("layer '", 0) == 0) throw;
        layer_error(name_, e.what());
    }
}

bool LinearLayer::use_cublas(const ConstMatrix &x, const ForwardOptions &opt) const {
    if (!device_ || opt.cuda_gemm == CudaGemm::halide) return false;
    const bool forced = opt.cuda_gemm == CudaGemm::cublas;
    if (!forced && (x.rows < cuda_gemm_min_tokens(format_) || !opt.run.kernel.empty())) return false;
    if (opt.activations != Activations::automatic || opt_.strategy == Strategy::eager_f32 ||
        (opt_.strategy == Strategy::fused && format_ == DType::f32)) {  // no f16 copy to make
        if (forced) layer_error(name_, "CudaGemm::cublas needs automatic activations and f16 weights or a quantized format");
        return false;
    }
    if (forced && !internal::cublas().present) layer_error(name_, "CudaGemm::cublas: " + internal::cublas().why_absent);
    return internal::cublas().present;
}

// Weights as f16 (the layer's own for f16 and eager_f16, else dequantized
// into scratch), x through its norm as f16, then cuBLAS. All on opt.run.stream.
// (Dequantizing in row chunks on a second stream, overlapped with the GEMM,
// measured 2-3x slower on the H100: each chunk's calls cost more host time
// than its GPU work.)
void LinearLayer::run_cublas(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    RunOptions run = opt.run;
    void *stream = run.stream;
    const uint16_t *w16 = nullptr;
    if (opt_.strategy == Strategy::eager_f16) {
        w16 = static_cast<const uint16_t *>(device_->dense.p);
    } else if (format_ == DType::f16) {
        w16 = static_cast<const uint16_t *>(device_->weight.p);
    } else {
        auto *buf = static_cast<uint16_t *>(device_scratch().get(stream, DeviceScratch::f16_weights, out_ * in_ * 2));
        dequantize_f16(buf, run);
        w16 = buf;
    }
    auto *x16 = static_cast<uint16_t *>(device_scratch().get(stream, DeviceScratch::f16_activations, x.rows * in_ * 2));
    f16_from_f32(x, {x16, x.rows, in_, in_}, run);
    internal::cublas_gemm_f16(w16, x16, bias_ptr(), y.data, out_, in_, x.rows, y.stride ? y.stride : out_, stream);
}

// ---- Linear: dense f32/f16 (bf16 converted once) ----

Linear::Linear(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt)
    : LinearLayer(std::move(name), w, bias, opt) {
    if (w.type != DType::f32 && w.type != DType::f16 && w.type != DType::bf16) {
        layer_error(name_, "Linear takes F32, F16 or BF16 weights, not " + to_string(w.type));
    }
    if (w.type == DType::bf16) {
        converted_ = to_f32(w.type, w.data, w.out * w.in);
        w_.type = format_ = DType::f32;
        w_.data = converted_.data();
    }
    finish_load();
}

void Linear::run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    if (opt.activations == Activations::q8) layer_error(name_, "dense layers take f32 activations, not q8");
    const void *w = device_ ? device_->weight.p : w_.data;
    dense_matmul({w_.type, w, out_, in_}, x, bias_ptr(), y, opt.run);
}

void Linear::dequantize_f16(uint16_t *, const RunOptions &) const {
    throw Error("internal: dense layers use their own f16 weights on the cuBLAS path");
}

void Linear::dequantize_to(float *w) const {
    auto v = to_f32(w_.type, w_.data, out_ * in_);
    std::memcpy(w, v.data(), v.size() * 4);
}

// ---- int4g ----

Int4gLinear::Int4gLinear(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt)
    : LinearLayer(std::move(name), w, bias, opt) {
    if (w.type != DType::u8) layer_error(name_, "int4g weights are U8 nibbles, not " + to_string(w.type));
    if (!w.scales) layer_error(name_, "int4g scales are a null pointer");
    if (w.in % 2 != 0) layer_error(name_, "int4g in = " + std::to_string(w.in) + " must be even");
    if (w.group_size != 32 && w.group_size != 64 && w.group_size != 128) {
        layer_error(name_, "int4g group size " + std::to_string(w.group_size) + " has no kernel (32, 64, 128 do)");
    }
    finish_load();
}

void Int4gLinear::run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    if (opt.activations == Activations::q8) layer_error(name_, "int4g layers take f32 activations, not q8");
    const auto *wp = static_cast<const uint8_t *>(device_ ? device_->weight.p : w_.data);
    const auto *sp = device_ ? static_cast<const uint16_t *>(device_->scales.p) : w_.scales;
    int4g_matmul({wp, sp, out_, in_, w_.group_size}, x, bias_ptr(), y, opt.run);
}

void Int4gLinear::dequantize_f16(uint16_t *w16, const RunOptions &run) const {
    int4g_dequant({static_cast<const uint8_t *>(device_->weight.p), static_cast<const uint16_t *>(device_->scales.p),
                   out_, in_, w_.group_size},
                  MatrixF16{w16, out_, in_}, run);
}

void Int4gLinear::dequantize_to(float *w) const {
    int4g_dequant({static_cast<const uint8_t *>(w_.data), w_.scales, out_, in_, w_.group_size}, {w, out_, in_});
}

// ---- GGUF block formats ----

BlockLinear::BlockLinear(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt)
    : LinearLayer(std::move(name), w, bias, opt) {
    if (w.type != DType::q4_k && w.type != DType::q6_k && w.type != DType::q8_0 && w.type != DType::q4_0) {
        layer_error(name_, "block layers take Q4_K, Q6_K, Q8_0 or Q4_0 weights, not " + to_string(w.type));
    }
    if (w.in % block_shape(w.type).elements != 0) {
        layer_error(name_, "in = " + std::to_string(w.in) + " is not whole " + to_string(w.type) + " blocks");
    }
    finish_load();
}

void BlockLinear::run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    const auto *wp = static_cast<const uint8_t *>(device_ ? device_->weight.p : w_.data);
    const bool q4k = w_.type == DType::q4_k;
    // Automatic: Q8_K for batches on the CPU; on CUDA f32, since the Q8_K
    // quantizer is several small kernels that cost more than they save there.
    const bool q8 = opt.activations == Activations::q8 ||
                    (opt.activations == Activations::automatic && q4k && x.rows > 1 && opt.run.memory != Memory::cuda);
    if (!q8) {
        block_matmul_f32({w_.type, wp, out_, in_}, x, bias_ptr(), y, opt.run);
        return;
    }
    if (!q4k) layer_error(name_, to_string(w_.type) + " layers take f32 activations; q8 is for Q4_K");
    RunOptions quantize = opt.run;
    quantize.kernel.clear();  // a forced kernel names the matmul, not the quantizer
    if (opt.run.memory == Memory::cuda) {
        const Q8KActivations a = device_scratch().planes(opt.run.stream, x.rows, in_);
        q8k_quantize(x, a, quantize);
        q4k_matmul_q8({wp, out_, in_}, a, bias_ptr(), y, opt.run);
        return;
    }
    Q8KBuffer a(x.rows, in_);
    q8k_quantize(x, a.view(), quantize);
    q4k_matmul_q8({wp, out_, in_}, a.view(), bias_ptr(), y, opt.run);
}

void BlockLinear::dequantize_f16(uint16_t *w16, const RunOptions &run) const {
    const auto *wp = static_cast<const uint8_t *>(device_->weight.p);
    if (w_.type == DType::q4_k) {
        q4k_dequant({wp, out_, in_}, MatrixF16{w16, out_, in_}, run);
    } else {
        block_dequant({w_.type, wp, out_, in_}, MatrixF16{w16, out_, in_}, run);
    }
}

void BlockLinear::dequantize_to(float *w) const {
    block_dequant({w_.type, static_cast<const uint8_t *>(w_.data), out_, in_}, {w, out_, in_});
}

// ---- factories ----

std::unique_ptr<LinearLayer> make_linear(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt) {
    switch (w.type) {
    case DType::f32: case DType::f16: case DType::bf16: return std::make_unique<Linear>(std::move(name), w, bias, opt);
    case DType::u8: return std::make_unique<Int4gLinear>(std::move(name), w, bias, opt);
    case DType::q4_k: return std::make_unique<Q4KLinear>(std::move(name), w, bias, opt);
    case DType::q6_k: return std::make_unique<Q6KLinear>(std::move(name), w, bias, opt);
    case DType::q8_0: return std::make_unique<Q8_0Linear>(std::move(name), w, bias, opt);
    case DType::q4_0: return std::make_unique<Q4_0Linear>(std::move(name), w, bias, opt);
    default: layer_error(name, "weight type " + to_string(w.type) + " has no layer (F32, F16, BF16, int4g, Q4_K, Q6_K, Q8_0, Q4_0 do)");
    }
}

namespace {

// "x.weight" -> "x.bias"; anything else -> name + ".bias".
std::string bias_name(const std::string &weight) {
    const std::string suffix = ".weight";
    if (weight.size() > suffix.size() && weight.compare(weight.size() - suffix.size(), suffix.size(), suffix) == 0) {
        return weight.substr(0, weight.size() - suffix.size()) + ".bias";
    }
    return weight + ".bias";
}

std::vector<float> bias_values(const TensorView &b, int64_t out, const std::string &layer) {
    if (b.shape.size() != 1 || b.shape[0] != out) {
        layer_error(layer, "bias '" + b.name + "' is " + shape_string(b.shape) + ", expected [" + std::to_string(out) + "]");
    }
    if (b.type != DType::f32 && b.type != DType::f16 && b.type != DType::bf16) {
        layer_error(layer, "bias '" + b.name + "' is " + to_string(b.type) + ", expected F32, F16 or BF16");
    }
    return to_f32(b.type, b.data, out);
}

WeightRef weight_of(const TensorView &t, std::shared_ptr<const void> owner, const std::string &layer) {
    if (t.shape.size() != 2) layer_error(layer, "tensor '" + t.name + "' is " + shape_string(t.shape) + ", not a [out, in] matrix");
    WeightRef w;
    w.type = t.type;
    w.data = t.data;
    w.out = t.shape[0];
    w.in = t.shape[1];
    w.owner = std::move(owner);
    return w;
}

}  // namespace

std::unique_ptr<LinearLayer> load_linear(const GGUFFile &f, const std::string &tensor, const LayerOptions &opt) {
    const TensorView &t = f.tensor(tensor);
    WeightRef w = weight_of(t, f.keep_alive(), tensor);
    std::vector<float> bias;
    if (const TensorView *b = f.find(bias_name(tensor))) bias = bias_values(*b, w.out, tensor);
    return make_linear(tensor, w, bias.empty() ? nullptr : bias.data(), opt);
}

std::unique_ptr<LinearLayer> load_linear(const SafetensorsFile &f, const std::string &name, const LayerOptions &opt) {
    std::vector<float> bias;
    if (f.find(name + ".weight_4bit")) {
        const Int4gTensors g = f.int4g(name);
        WeightRef w;
        w.type = DType::u8;
        w.data = g.weight->data;
        w.scales = reinterpret_cast<const uint16_t *>(g.scales->data);
        w.out = g.out;
        w.in = g.in;
        w.group_size = g.group_size;
        w.owner = f.keep_alive();
        if (g.bias) bias = bias_values(*g.bias, w.out, name);
        return make_linear(name, w, bias.empty() ? nullptr : bias.data(), opt);
    }
    const TensorView &t = f.tensor(name);
    WeightRef w = weight_of(t, f.keep_alive(), name);
    if (const TensorView *b = f.find(bias_name(name))) bias = bias_values(*b, w.out, name);
    return make_linear(name, w, bias.empty() ? nullptr : bias.data(), opt);
}

}  // namespace qforge
