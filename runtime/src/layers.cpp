// Layer objects: shape checks naming the layer, the strategy (fused or eager
// dequant), the activation policy and device residency, over the kernel
// entry points of kernels.h.
#include "qforge/layers.h"
#include "qforge/gptq.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>

#include "cublas.h"
#include "cuda_device.h"
#include "cutlass.h"
#include "device_scratch.h"
#include "layer_access.h"
#include "qforge/gguf.h"
#include "qforge/pack.h"
#include "qforge/quantize.h"
#include "qforge/safetensors.h"
#include "registry.h"
#include "tensor_views.h"
#include "weight_memory.h"

namespace qforge {

namespace {

[[noreturn]] void layer_error(const std::string &layer, const std::string &what) {
    throw Error("layer '" + layer + "': " + what);
}

// A forced kernel (RunOptions::kernel) reads the packed layout or the file's.
bool kernel_is_packed(const std::string &kernel) {
    const internal::KernelRow *r = internal::find_row(kernel);
    return r && r->pack;
}

}  // namespace

// Everything a layer holds; immutable once built.
struct Linear::Impl {
    std::string name;
    int64_t in = 0, out = 0;
    LayerOptions opt;
    WeightRef w;
    std::vector<float> bias;
    std::vector<int32_t> input_order;  // act-order (WeightRef::input_order), or empty
    std::vector<uint8_t> dense;       // eager: f32 or f16 [out, in]
    internal::WeightBytes packed;     // fused on the CPU: the packed layout its 8-bit kernels read
    const void *packed_view = nullptr;  // ... or the caller's (a packed file's) bytes, used as they are
    int pack_rows = 0;
    // A layer built from packed bytes makes the file's layout only when a
    // call needs it (f32 activations).
    mutable std::once_flag unpack_once;
    mutable std::vector<uint8_t> unpacked;
    internal::DeviceBuffer dev_weight, dev_scales, dev_zeros, dev_bias, dev_dense;
    internal::DeviceBuffer dev_order;  // act-order on CUDA: input_order, for the per-call gather of x
    // CUTLASS's layout of int4g weights and scales (sm_90 prefill), made at its first call.
    mutable std::once_flag cutlass_once;
    mutable internal::DeviceBuffer dev_cutlass_w, dev_cutlass_s;
    bool on_device = false;
    bool host_released = false;   // release_host(): only the device copy is left

    [[noreturn]] void error(const std::string &what) const { layer_error(name, what); }
    const FormatTraits &traits_() const { return traits(w.format); }
    int64_t quantized_bytes() const { return qforge::weight_bytes(w.format, out, in, w.group_size); }
    int64_t weight_plane_bytes() const { return out * row_bytes(w.format, in); }
    int64_t groups() const { return traits_().separate_scales ? (in + w.group_size - 1) / w.group_size : 0; }
    int64_t scale_plane_bytes() const { return out * groups() * 2; }
    int64_t zero_plane_bytes() const { return traits_().zero_points ? out * groups() : 0; }

    // The weights as kernels take them, in host or device memory: packed
    // for the 8-bit kernels where the layer packed them.
    Weights weights(bool q8 = false) const {
        Weights v;
        v.format = w.format;
        v.data = on_device ? dev_weight.p : w.data;
        v.out = out;
        v.in = in;
        v.scales = on_device ? static_cast<const uint16_t *>(dev_scales.p) : w.scales;
        v.zeros = on_device ? static_cast<const uint8_t *>(dev_zeros.p) : w.zeros;
        v.group_size = w.group_size;
        if (q8 && pack_rows) {
            v.data = packed_view ? packed_view : packed.data();
            v.pack_rows = pack_rows;
        } else if (!v.data && !on_device) {
            file_layout();
            v.data = unpacked.data();
            v.scales = w.scales ? w.scales : scale_plane();
            v.zeros = w.zeros ? w.zeros : zero_plane();
        }
        return v;
    }
    // The file's layout of a layer built from packed bytes, made once.
    void file_layout() const {
        std::call_once(unpack_once, [&] {
            unpacked.resize(quantized_bytes());
            Weights p;
            p.format = w.format;
            p.data = packed_view;
            p.out = out;
            p.in = in;
            p.group_size = w.group_size;
            p.pack_rows = pack_rows;
            unpack_weights(p, unpacked.data());
        });
    }
    const uint16_t *scale_plane() const {
        if (!traits_().separate_scales) return nullptr;
        return reinterpret_cast<const uint16_t *>(unpacked.data() + weight_plane_bytes());
    }
    const uint8_t *zero_plane() const {
        if (!traits_().zero_points) return nullptr;
        return unpacked.data() + weight_plane_bytes() + scale_plane_bytes();
    }
    const float *bias_ptr() const {
        if (on_device) return static_cast<const float *>(dev_bias.p);
        return bias.empty() ? nullptr : bias.data();
    }

    void load();
    void adopt_packed();
    void run_fused(ConstMatrix x, Matrix y, const ForwardOptions &opt) const;
    void forward_plain(ConstMatrix x, Matrix y, const ForwardOptions &opt) const;  // the matmul, opt.epilogue in its kernel
    // Whether run_fused takes 8-bit activations for x (and then its matmul's epilogue).
    bool fused_q8(const ConstMatrix &x, const ForwardOptions &opt) const;
    bool use_cublas(const ConstMatrix &x, const ForwardOptions &opt) const;
    void run_cublas(ConstMatrix x, Matrix y, const ForwardOptions &opt) const;
    bool use_cutlass(const ConstMatrix &x, const Matrix &y, const ForwardOptions &opt) const;
    void run_cutlass(ConstMatrix x, Matrix y, const ForwardOptions &opt) const;
};

Linear::~Linear() = default;

Linear::Linear(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt) {
    auto impl = std::make_shared<Impl>();
    Impl &m = *impl;
    m.name = std::move(name);
    m.in = w.in;
    m.out = w.out;
    m.opt = opt;
    m.w = w;
    const FormatTraits &t = traits(w.format);
    if (!w.data) m.error("weight is a null pointer");
    if (w.out <= 0 || w.in <= 0) {
        m.error("weight shape [" + std::to_string(w.out) + ", " + std::to_string(w.in) + "] must be positive");
    }
    if (t.activations.empty()) {
        m.error(std::string(t.name) + " weights have no kernels");
    }
    if (w.in % t.block_elements != 0) {
        m.error("in = " + std::to_string(w.in) + " is not whole " + t.name + " blocks of " +
                std::to_string(t.block_elements));
    }
    if (t.separate_scales) {
        if (!w.scales && !w.pack_rows) m.error(std::string(t.name) + " scales are a null pointer");
        if (t.zero_points && !w.zeros && !w.pack_rows) m.error(std::string(t.name) + " zero points are a null pointer");
        if (std::find(t.group_sizes.begin(), t.group_sizes.end(), w.group_size) == t.group_sizes.end()) {
            std::string have;
            for (int g : t.group_sizes) have += (have.empty() ? "" : ", ") + std::to_string(g);
            m.error(std::string(t.name) + " group size " + std::to_string(w.group_size) + " has no kernel (" + have +
                    " do)");
        }
    } else {
        m.w.scales = nullptr;
        m.w.group_size = 0;
    }
    if (!t.zero_points) m.w.zeros = nullptr;
    if (w.input_order) {
        m.input_order.assign(w.input_order, w.input_order + w.in);
        std::vector<bool> seen(w.in, false);
        for (int64_t i = 0; i < w.in; ++i) {
            const int32_t c = m.input_order[i];
            if (c < 0 || c >= w.in || seen[c]) {
                m.error("input_order[" + std::to_string(i) + "] = " + std::to_string(c) +
                        " makes no permutation of the " + std::to_string(w.in) + " inputs");
            }
            seen[c] = true;
        }
        m.w.input_order = nullptr;
    }
    if (bias) m.bias.assign(bias, bias + w.out);
    if (w.pack_rows) m.adopt_packed();
    m.load();
    impl_ = std::move(impl);
}

// Packed bytes (a packed file's): read as they are where this CPU's kernels
// take their tile height; elsewhere unpacked to the file's layout, which
// load() repacks for this CPU (said once per process on stderr).
void Linear::Impl::adopt_packed() {
    if (!has_packed_layout(w.format)) error(std::string(traits_().name) + " has no packed layout (pack_rows = " +
                                            std::to_string(w.pack_rows) + ")");
    const int want = preferred_pack_rows(w.format, w.group_size);
    packed_view = w.data;
    pack_rows = w.pack_rows;
    w.data = nullptr;
    w.scales = nullptr;
    w.zeros = nullptr;
    if (opt.strategy == Strategy::fused && opt.memory == Memory::host && want == pack_rows) return;
    file_layout();
    w.data = unpacked.data();
    w.scales = scale_plane();
    w.zeros = zero_plane();
    packed_view = nullptr;
    pack_rows = 0;
    if (opt.strategy == Strategy::fused && opt.memory == Memory::host) {
        static std::once_flag said;
        std::call_once(said, [&] {
            std::fprintf(stderr, "qforge: '%s' was packed in tiles of %d rows; this CPU's kernels take %s: %s at load\n",
                         name.c_str(), w.pack_rows, want ? std::to_string(want).c_str() : "the file's layout",
                         want ? "repacked" : "unpacked");
        });
    }
}

// Eager dequantization, packing and uploads.
void Linear::Impl::load() {
    if (opt.strategy == Strategy::fused && opt.memory == Memory::host && !packed_view) {
        // This CPU's fastest kernels read the packed layout: pack once, here.
        pack_rows = preferred_pack_rows(w.format, w.group_size);
        const FormatTraits &t = traits_();
        if (pack_rows && (in % t.packed_block_elements != 0 || (t.separate_scales && w.group_size % 32 != 0))) {
            pack_rows = 0;  // no packed layout for this shape: the file's layout and its kernels
        }
        if (pack_rows) {
            packed.resize(packed_bytes(w.format, out, in, pack_rows));
            pack_weights(weights(), pack_rows, packed.data());
        }
    }
    if (opt.strategy != Strategy::fused) {
        std::vector<float> f(out * in);
        if (traits_().block_elements == 1) {
            f = to_f32(traits_().file_type, w.data, out * in);  // dense values
        } else {
            dequant(weights(), Matrix{f.data(), out, in});
        }
        if (!input_order.empty()) {  // act-order: the dense copy back in input order
            std::vector<float> g(f.size());
            for (int64_t r = 0; r < out; ++r) {
                for (int64_t i = 0; i < in; ++i) g[r * in + input_order[i]] = f[r * in + i];
            }
            f.swap(g);
        }
        dense = f32_to_bytes(opt.strategy == Strategy::eager_f32 ? DType::f32 : DType::f16, f);
    }
    if (opt.memory != Memory::cuda) return;
    const internal::CudaDevice &d = internal::cuda_device();
    if (!d.present) error("LayerOptions::memory is cuda, but there is no CUDA device: " + d.why_absent);
    if (opt.strategy == Strategy::fused) {
        dev_weight = internal::DeviceBuffer(w.data, weight_plane_bytes());
        if (w.scales) dev_scales = internal::DeviceBuffer(w.scales, scale_plane_bytes());
        if (w.zeros) dev_zeros = internal::DeviceBuffer(w.zeros, zero_plane_bytes());
        if (!input_order.empty()) dev_order = internal::DeviceBuffer(input_order.data(), input_order.size() * 4);
    } else {
        dev_dense = internal::DeviceBuffer(dense.data(), dense.size());
    }
    dev_bias = internal::DeviceBuffer(bias.data(), bias.size() * 4);
    on_device = true;
}

const std::string &Linear::name() const { return impl_->name; }
int64_t Linear::in() const { return impl_->in; }
int64_t Linear::out() const { return impl_->out; }
Format Linear::format() const { return impl_->w.format; }
int Linear::group_size() const { return impl_->w.group_size; }
const std::vector<int32_t> &Linear::input_order() const { return impl_->input_order; }
Strategy Linear::strategy() const { return impl_->opt.strategy; }
Memory Linear::memory() const { return impl_->opt.memory; }
bool Linear::has_bias() const { return !impl_->bias.empty() || impl_->dev_bias.p; }

int Linear::pack_rows() const { return impl_->pack_rows; }

int64_t Linear::weight_bytes() const {
    if (impl_->pack_rows) return packed_bytes(impl_->w.format, impl_->out, impl_->in, impl_->pack_rows);
    if (impl_->opt.strategy == Strategy::fused) return impl_->quantized_bytes();
    return static_cast<int64_t>(impl_->dense.size());
}

int64_t Linear::memory_bytes() const { return host_bytes() + device_bytes(); }

int64_t Linear::host_bytes() const {
    if (impl_->host_released) return 0;
    return weight_bytes() + static_cast<int64_t>(impl_->unpacked.size() + impl_->bias.size() * 4);
}

int64_t Linear::device_bytes() const {
    const Impl &m = *impl_;
    return static_cast<int64_t>(m.dev_weight.bytes + m.dev_scales.bytes + m.dev_zeros.bytes + m.dev_bias.bytes +
                                m.dev_dense.bytes + m.dev_order.bytes + m.dev_cutlass_w.bytes + m.dev_cutlass_s.bytes);
}

void Linear::release_host() {
    // Impl is shared read-only between copies; this is the one documented
    // mutation, and it touches nothing a device forward() reads.
    auto &m = const_cast<Impl &>(*impl_);
    if (!m.on_device) m.error("release_host(): the layer runs on the host, whose copy is its only one");
    if (m.host_released) return;
    m.w.data = nullptr;
    m.w.scales = nullptr;
    m.w.zeros = nullptr;
    m.w.owner.reset();
    std::vector<float>().swap(m.bias);
    for (auto *v : {&m.dense, &m.unpacked}) std::vector<uint8_t>().swap(*v);
    internal::WeightBytes().swap(m.packed);
    m.packed_view = nullptr;
    m.host_released = true;
}

void Linear::forward(const ConstTensor &x, const Tensor &y, const ForwardOptions &opt) const {
    const Impl &m = *impl_;
    auto shape = [](const std::vector<int64_t> &s) { return shape_string(s); };
    if (x.shape.size() != 2 && x.shape.size() != 3) {
        m.error("x is " + shape(x.shape) + ": expected [tokens, in] or [batch, seq, in]");
    }
    if (x.shape.back() != m.in) {
        m.error("x is " + shape(x.shape) + ": its last dimension must be in = " + std::to_string(m.in));
    }
    std::vector<int64_t> want = x.shape;
    want.back() = m.out;
    if (y.shape != want) m.error("y is " + shape(y.shape) + ", expected " + shape(want));
    int64_t tokens = 1;
    for (size_t i = 0; i + 1 < x.shape.size(); ++i) tokens *= x.shape[i];
    if (tokens <= 0) m.error("x is " + shape(x.shape) + ": there must be at least one token");
    forward(ConstMatrix{x.data, tokens, m.in, 0, x.norm}, Matrix{y.data, tokens, m.out}, opt);
}

void Linear::forward(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    const Impl &m = *impl_;
    if (opt.run.memory != m.opt.memory) {
        m.error(std::string("ForwardOptions::run.memory is ") + (opt.run.memory == Memory::cuda ? "cuda" : "host") +
                " but the layer's weights are in " + (m.opt.memory == Memory::cuda ? "cuda" : "host") + " memory");
    }
    if (x.cols != m.in) m.error("x has " + std::to_string(x.cols) + " columns, in = " + std::to_string(m.in));
    if (y.cols != m.out) m.error("y has " + std::to_string(y.cols) + " columns, out = " + std::to_string(m.out));
    // Act-order, fused: x (and its norm's weights) in the weight's column order,
    // in this thread's scratch (layers are shared across threads; a call on one
    // thread is done before its next one starts, so no call allocates once the
    // largest shape has been seen): host memory, or device scratch per stream.
    thread_local std::vector<float> host_scratch;
    Norm norm;
    if (!m.input_order.empty() && m.opt.strategy == Strategy::fused) {
        if (!x.data || x.rows <= 0) m.error("x is a null pointer or has no rows");
        const bool cuda = m.opt.memory == Memory::cuda;
        const int64_t vec = (m.in + 63) / 64 * 64;  // 256-byte aligned parts: the CUDA kernels load 16 bytes at a time
        const size_t floats = static_cast<size_t>(x.rows * m.in + 2 * vec + 64);
        float *base = nullptr;
        if (cuda) {
            base = static_cast<float *>(internal::device_scratch().get(opt.run.stream, internal::DeviceScratch::permuted, floats * 4));
        } else {
            host_scratch.resize(floats);
            base = host_scratch.data();
        }
        float *xp = base, *norm_w = base + (x.rows * m.in + 63) / 64 * 64, *norm_b = norm_w + vec;
        const int32_t *order = cuda ? static_cast<const int32_t *>(m.dev_order.p) : m.input_order.data();
        RunOptions run = opt.run;
        run.kernel.clear();  // a forced kernel names the matmul
        permute_columns(ConstMatrix{x.data, x.rows, m.in, x.stride}, order, Matrix{xp, x.rows, m.in}, run);
        if (x.norm) {
            norm = *x.norm;
            if (x.norm->weight) permute_columns(ConstMatrix{x.norm->weight, 1, m.in}, order, Matrix{norm_w, 1, m.in}, run);
            if (x.norm->bias) permute_columns(ConstMatrix{x.norm->bias, 1, m.in}, order, Matrix{norm_b, 1, m.in}, run);
            norm.weight = x.norm->weight ? norm_w : nullptr;
            norm.bias = x.norm->bias ? norm_b : nullptr;
        }
        x = ConstMatrix{xp, x.rows, m.in, 0, x.norm ? &norm : nullptr};
    }
    try {
        const Epilogue &e = opt.epilogue;
        if (e.residual.data && (e.residual.rows != x.rows || e.residual.cols != m.out)) {
            m.error("the epilogue's residual is [" + std::to_string(e.residual.rows) + ", " + std::to_string(e.residual.cols) +
                    "], expected [" + std::to_string(x.rows) + ", " + std::to_string(m.out) + "]");
        }
        // Our kernels run the epilogue on every path (kernels.h, matmul);
        // cuBLAS and CUTLASS are followed by the activation kernel (a
        // residual keeps a layer off them: use_cublas, use_cutlass).
        const bool cublas = m.use_cutlass(x, y, opt) || m.use_cublas(x, opt);
        ForwardOptions inner = opt;
        if (cublas) inner.epilogue = {};
        m.forward_plain(x, y, inner);
        RunOptions run = opt.run;
        run.kernel.clear();  // a forced kernel names the matmul
        if (cublas && e.activate) glu(ConstMatrix{y.data, y.rows, y.cols, y.stride}, ConstMatrix{}, e.act, y, run);
        if (cublas && e.heads) head_rms_norms(y, *e.heads, run);
    } catch (const Error &e) {
        if (std::string(e.what()).rfind("layer '", 0) == 0) throw;
        m.error(e.what());
    }
}

void Linear::Impl::forward_plain(ConstMatrix x, Matrix y, const ForwardOptions &opt) const {
    if (use_cutlass(x, y, opt)) {
        run_cutlass(x, y, opt);
    } else if (use_cublas(x, opt)) {
        run_cublas(x, y, opt);
    } else if (this->opt.strategy == Strategy::fused) {
        run_fused(x, y, opt);
    } else {
        if (opt.activations == Activations::q8) error("eager layers run dense f32 activations, not q8");
        Weights dense_w;
        dense_w.format = this->opt.strategy == Strategy::eager_f32 ? Format::f32 : Format::f16;
        dense_w.data = on_device ? dev_dense.p : dense.data();
        dense_w.out = out;
        dense_w.in = in;
        matmul(dense_w, x, bias_ptr(), opt.epilogue, y, opt.run);
    }
}

// Automatic activations are 8-bit on the CPU where the format has 8-bit
// kernels, for batches, and for one token too where the layer is packed
// (integer dots over packed tiles beat the f32 decode kernels); on CUDA f32:
// there the quantizer's kernel costs about what the integer dots save, or
// more (bench/device/RULES.md).
bool Linear::Impl::fused_q8(const ConstMatrix &x, const ForwardOptions &fo) const {
    const auto &acts = traits_().activations;
    // The format's 8-bit activation type (Q8_K for Q4_K, Q8_0 for the 32-blocks), if any.
    const auto q8_type = std::find_if(acts.begin(), acts.end(), [](ActType a) { return a != ActType::f32; });
    const bool has_q8 = q8_type != acts.end();
    const bool cuda = fo.run.memory == Memory::cuda;
    // Batches take 8 bits through the file's layout only where this CPU has such kernels (Q4_K).
    internal::KernelKey file_q8;
    file_q8.format = w.format;
    file_q8.op = internal::Op::matmul;
    file_q8.act = has_q8 ? *q8_type : ActType::f32;
    file_q8.group = traits_().separate_scales ? w.group_size : 0;
    const internal::KernelRow *file_row = internal::find_row(file_q8);
    const std::string families = file_row ? " " + std::string(file_row->families) + " " : "";
    const bool batch_q8 = x.rows > 1 && families.find(" " + internal::cpu_family() + " ") != std::string::npos;
    const bool q8 = fo.activations == Activations::q8 ||
                    (fo.activations == Activations::automatic && has_q8 && (pack_rows || batch_q8) && !cuda);
    return q8;
}

void Linear::Impl::run_fused(ConstMatrix x, Matrix y, const ForwardOptions &fo) const {
    const auto &acts = traits_().activations;
    const auto q8_type = std::find_if(acts.begin(), acts.end(), [](ActType a) { return a != ActType::f32; });
    const bool has_q8 = q8_type != acts.end();
    const bool cuda = fo.run.memory == Memory::cuda;
    if (!fused_q8(x, fo)) return matmul(weights(), x, bias_ptr(), fo.epilogue, y, fo.run);
    if (!has_q8) {
        std::string with;
        for (const FormatTraits &t : all_formats()) {
            if (t.activations.size() > 1) {
                with += (with.empty() ? "" : ", ") + std::string(t.name);
            }
        }
        error(std::string(traits_().name) + " layers take f32 activations; q8 is for formats with 8-bit kernels (" + with + ")");
    }
    RunOptions quantize = fo.run;
    quantize.kernel.clear();  // a forced kernel names the matmul, not the quantizer
    if (cuda) {
        internal::KernelKey key;
        key.format = w.format;
        key.act = *q8_type;
        key.group = traits_().separate_scales ? w.group_size : 0;
        key.op = x.rows > 1 ? internal::Op::matmul : internal::Op::matvec;
        if (!internal::find_row(key)) error(std::string(traits_().name) + " has no 8-bit CUDA kernels");
        const Q8KActivations a = internal::device_scratch().planes(fo.run.stream, x.rows, in, *q8_type);
        q8k_quantize(x, a, quantize);
        return matmul(weights(), a, bias_ptr(), fo.epilogue, y, fo.run);
    }
    Q8KBuffer a(x.rows, in, *q8_type);
    q8k_quantize(x, a.view(), quantize);
    matmul(weights(/*q8=*/fo.run.kernel.empty() || kernel_is_packed(fo.run.kernel)), a.view(), bias_ptr(), fo.epilogue, y,
           fo.run);
}

// CUTLASS's int4 x f16 tensor-core GEMM (runtime/cuda) for int4g layers on
// sm_90, from kCutlassMinTokens tokens when CudaGemm::automatic. Measured on
// an H100 (bench/device/RULES.md, "CUTLASS"): from 2 tokens it beats the
// Halide kernels and the dequantize + cuBLAS path on both goal shapes; at
// one token the Halide decode kernel is 2x faster on 4096 x 14336 and 9%
// slower on 14336 x 4096, so decode stays Halide's.
constexpr int64_t kCutlassMinTokens = 2;

bool Linear::Impl::use_cutlass(const ConstMatrix &x, const Matrix &y, const ForwardOptions &fo) const {
    if (!on_device || (fo.cuda_gemm != CudaGemm::automatic && fo.cuda_gemm != CudaGemm::cutlass)) return false;
    const bool forced = fo.cuda_gemm == CudaGemm::cutlass;
    if (!forced && (kCutlassMinTokens == 0 || x.rows < kCutlassMinTokens)) return false;  // no checks' host time
    std::string why;
    if (w.format != Format::int4g || opt.strategy != Strategy::fused) {
        why = std::string("takes int4g layers of Strategy::fused, not ") + to_string(w.format) +
              (opt.strategy == Strategy::fused ? "" : " of an eager strategy");
    } else if (fo.activations != Activations::automatic || !fo.run.kernel.empty()) {
        why = "needs automatic activations and no forced kernel";
    } else if (fo.epilogue.residual.data) {
        why = "takes no residual epilogue (CudaGemm::automatic runs it in our kernels)";
    } else if ((y.stride ? y.stride : y.cols) % 4) {
        why = "y's row stride must be a multiple of 4 floats";
    } else {
        why = internal::cutlass_absent();
        if (why.empty()) why = internal::cutlass_int4_shape_absent(out, in, w.group_size);
    }
    if (forced && !why.empty()) error("CudaGemm::cutlass " + why);
    return why.empty();
}

void Linear::Impl::run_cutlass(ConstMatrix x, Matrix y, const ForwardOptions &fo) const {
    const RunOptions &run = fo.run;
    std::call_once(cutlass_once, [&] {
        auto wb = internal::DeviceBuffer::allocate(weight_plane_bytes());
        auto sb = internal::DeviceBuffer::allocate(scale_plane_bytes());
        internal::cutlass_int4_repack(weights(), static_cast<uint8_t *>(wb.p), static_cast<uint16_t *>(sb.p), run);
        internal::cuda_synchronize();  // later calls may come on other streams
        dev_cutlass_w = std::move(wb);
        dev_cutlass_s = std::move(sb);
    });
    auto *x16 = static_cast<uint16_t *>(internal::device_scratch().get(run.stream, internal::DeviceScratch::f16_activations, x.rows * in * 2));
    f16_from_f32(x, {x16, x.rows, in, in}, run);
    internal::cutlass_int4_gemm(static_cast<const uint8_t *>(dev_cutlass_w.p), static_cast<const uint16_t *>(dev_cutlass_s.p),
                                w.group_size, x16, bias_ptr(), y.data, out, in, x.rows, y.stride ? y.stride : out, run.stream);
}

bool Linear::Impl::use_cublas(const ConstMatrix &x, const ForwardOptions &fo) const {
    if (!on_device || fo.cuda_gemm == CudaGemm::halide || fo.cuda_gemm == CudaGemm::cutlass) return false;
    const bool forced = fo.cuda_gemm == CudaGemm::cublas;
    const int64_t min_tokens = traits_().cuda_gemm_min_tokens;
    if (!forced && (min_tokens == 0 || x.rows < min_tokens || !fo.run.kernel.empty())) return false;
    if (fo.activations != Activations::automatic || opt.strategy == Strategy::eager_f32 ||
        (opt.strategy == Strategy::fused && w.format == Format::f32)) {  // no f16 copy to make
        if (forced) error("CudaGemm::cublas needs automatic activations and f16 weights or a quantized format");
        return false;
    }
    if (fo.epilogue.residual.data) {  // our kernels add it in their store; after cuBLAS it would be a pass
        if (forced) error("CudaGemm::cublas takes no residual epilogue (CudaGemm::automatic runs it in our kernels)");
        return false;
    }
    if (forced && !internal::cublas().present) error("CudaGemm::cublas: " + internal::cublas().why_absent);
    return internal::cublas().present;
}

// Weights as f16 (the layer's own for f16 and eager_f16, else dequantized
// into scratch), x through its norm as f16, then cuBLAS. All on the call's
// stream. (Dequantizing in row chunks on a second stream, overlapped with
// the GEMM, measured 2-3x slower on the H100: each chunk's calls cost more
// host time than its GPU work.)
void Linear::Impl::run_cublas(ConstMatrix x, Matrix y, const ForwardOptions &fo) const {
    const RunOptions &run = fo.run;
    void *stream = run.stream;
    const uint16_t *w16 = nullptr;
    if (opt.strategy == Strategy::eager_f16) {
        w16 = static_cast<const uint16_t *>(dev_dense.p);
    } else if (w.format == Format::f16) {
        w16 = static_cast<const uint16_t *>(dev_weight.p);
    } else {
        auto *buf = static_cast<uint16_t *>(internal::device_scratch().get(stream, internal::DeviceScratch::f16_weights, out * in * 2));
        dequant(weights(), MatrixF16{buf, out, in}, run);
        w16 = buf;
    }
    auto *x16 = static_cast<uint16_t *>(internal::device_scratch().get(stream, internal::DeviceScratch::f16_activations, x.rows * in * 2));
    f16_from_f32(x, {x16, x.rows, in, in}, run);
    internal::cublas_gemm_f16(w16, x16, bias_ptr(), y.data, out, in, x.rows, y.stride ? y.stride : out, stream);
}

std::unique_ptr<Linear> make_linear(std::string name, const WeightRef &w, const float *bias, const LayerOptions &opt) {
    return std::make_unique<Linear>(std::move(name), w, bias, opt);
}

std::unique_ptr<Linear> concatenate_rows(const std::string &name, const std::vector<const Linear *> &layers) {
    auto fail = [&](const std::string &what) { throw Error("concatenate_rows '" + name + "': " + what); };
    if (layers.empty()) fail("nothing to concatenate");
    const Linear::Impl &a = *layers[0]->impl_;
    int64_t out = 0;
    bool any_bias = false;
    for (const Linear *l : layers) {
        const Linear::Impl &m = *l->impl_;
        if (m.host_released) fail("'" + m.name + "' has released its host copy (release_host())");
        if (m.input_order != a.input_order) {
            fail("'" + m.name + "' and '" + a.name + "' take their inputs in different orders (act-order)");
        }
        if (m.w.format != a.w.format || m.in != a.in || m.w.group_size != a.w.group_size ||
            m.opt.strategy != a.opt.strategy || m.opt.memory != a.opt.memory) {
            fail("'" + m.name + "' (" + to_string(m.w.format) + ", in " + std::to_string(m.in) +
                 ") cannot share rows with '" + a.name + "' (" + to_string(a.w.format) + ", in " +
                 std::to_string(a.in) + ")");
        }
        out += m.out;
        any_bias |= !m.bias.empty();
    }
    // Rows are contiguous in every format: the weight plane, then the scale
    // plane, then the zero points.
    const int64_t row_bytes = a.weight_plane_bytes() / a.out;
    const int64_t scale_row_bytes = a.scale_plane_bytes() / a.out, zero_row_bytes = a.zero_plane_bytes() / a.out;
    auto storage = std::make_shared<std::vector<uint8_t>>(out * (row_bytes + scale_row_bytes + zero_row_bytes));
    uint8_t *zero_dst = storage->data() + out * (row_bytes + scale_row_bytes);
    std::vector<float> bias(any_bias ? out : 0, 0.0f);
    int64_t row = 0;
    for (const Linear *l : layers) {
        const Linear::Impl &m = *l->impl_;
        if (!m.w.data) m.file_layout();  // built from packed bytes
        const void *data = m.w.data ? m.w.data : m.unpacked.data();
        const uint16_t *scales = m.w.data ? m.w.scales : m.scale_plane();
        const uint8_t *zeros = m.w.data ? m.w.zeros : m.zero_plane();
        std::memcpy(storage->data() + row * row_bytes, data, m.out * row_bytes);
        if (scale_row_bytes) {
            std::memcpy(storage->data() + out * row_bytes + row * scale_row_bytes, scales, m.out * scale_row_bytes);
        }
        if (zero_row_bytes) std::memcpy(zero_dst + row * zero_row_bytes, zeros, m.out * zero_row_bytes);
        if (!m.bias.empty()) std::memcpy(bias.data() + row, m.bias.data(), m.out * 4);
        row += m.out;
    }
    WeightRef w = a.w;
    w.input_order = a.input_order.empty() ? nullptr : a.input_order.data();
    w.pack_rows = 0;
    w.data = storage->data();
    w.out = out;
    w.scales = scale_row_bytes ? reinterpret_cast<const uint16_t *>(storage->data() + out * row_bytes) : nullptr;
    w.zeros = zero_row_bytes ? zero_dst : nullptr;
    w.owner = storage;
    return make_linear(name, w, any_bias ? bias.data() : nullptr, a.opt);
}

namespace internal {

Weights LayerAccess::file_weights(const Linear &l) {
    const Linear::Impl &m = *l.impl_;
    if (m.host_released) m.error("its host copy was released (release_host())");
    Weights w;
    w.format = m.w.format;
    w.out = m.out;
    w.in = m.in;
    w.group_size = m.w.group_size;
    if (m.w.data) {
        w.data = m.w.data;
        w.scales = m.w.scales;
        w.zeros = m.w.zeros;
    } else {
        m.file_layout();
        w.data = m.unpacked.data();
        w.scales = m.scale_plane();
        w.zeros = m.zero_plane();
    }
    return w;
}

const std::vector<float> &LayerAccess::bias(const Linear &l) { return l.impl_->bias; }

void LayerAccess::drop_packed(const Linear &l) {
    auto &m = const_cast<Linear::Impl &>(*l.impl_);
    if (m.packed_view) return;  // a packed file's bytes: the file's, not ours to free
    internal::WeightBytes().swap(m.packed);
    m.pack_rows = 0;
}

}  // namespace internal

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
    if (!has_format(t.type)) layer_error(layer, "tensor '" + t.name + "' is " + to_string(t.type) + ", which has no kernels");
    WeightRef w;
    w.format = format_of(t.type);
    w.data = t.data;
    w.out = t.shape[0];
    w.in = t.shape[1];
    w.owner = std::move(owner);
    return w;
}

}  // namespace

// An I8 or F8_E4M3 weight with its scale beside it, as compressed-tensors
// (llm-compressor) writes int8 and FP8 checkpoints: NAME_scale (NAME ends in
// ".weight"), F32/F16/BF16, one per row ([out] or [out, 1]) or one for the
// tensor ([] or [1]); converted to qforge's int8 or fp8 rows (FORMATS.md).
WeightRef load_channel_weight(const SafetensorsFile &f, const std::string &name) {
    const TensorView &t = f.tensor(name);
    const std::string &layer = name;
    if (t.shape.size() != 2) layer_error(layer, "tensor '" + t.name + "' is " + shape_string(t.shape) + ", not a [out, in] matrix");
    const Format format = t.type == DType::i8 ? Format::int8 : Format::fp8;
    const int64_t out = t.shape[0], in = t.shape[1];
    if (f.find(t.name + "_scale_inv")) {
        layer_error(layer, "'" + t.name + "_scale_inv' holds block-wise scales (DeepSeek's FP8 layout); qforge runs "
                           "per-tensor and per-channel scales ('" + t.name + "_scale')");
    }
    const TensorView *sv = f.find(t.name + "_scale");
    if (!sv) layer_error(layer, "tensor '" + t.name + "' is " + to_string(t.type) + " but has no scale tensor '" + t.name + "_scale'");
    const int64_t n = sv->elements();
    const bool per_tensor = n == 1 && sv->shape.size() <= 1;
    const bool per_row = n == out && (sv->shape == std::vector<int64_t>{out} || sv->shape == std::vector<int64_t>{out, 1});
    if (!per_tensor && !per_row) {
        layer_error(layer, "scale '" + sv->name + "' is " + shape_string(sv->shape) + ", expected [], [1], [" +
                               std::to_string(out) + "] or [" + std::to_string(out) + ", 1]");
    }
    if (sv->type != DType::f32 && sv->type != DType::f16 && sv->type != DType::bf16) {
        layer_error(layer, "scale '" + sv->name + "' is " + to_string(sv->type) + ", expected F32, F16 or BF16");
    }
    std::vector<float> scales = to_f32(sv->type, sv->data, n);
    if (per_tensor) scales.assign(out, scales[0]);
    auto rows = std::make_shared<std::vector<uint8_t>>();
    try {
        *rows = channel_rows(format, static_cast<const uint8_t *>(t.data), scales.data(), out, in);
    } catch (const Error &e) {
        layer_error(layer, "tensor '" + t.name + "': " + e.what());
    }
    WeightRef w;
    w.format = format;
    w.data = rows->data();
    w.out = out;
    w.in = in;
    w.owner = rows;
    return w;
}

std::unique_ptr<Linear> load_linear(const GGUFFile &f, const std::string &tensor, const LayerOptions &opt) {
    const TensorView &t = f.tensor(tensor);
    WeightRef w;
    if (const auto p = packed_tensor(f, tensor)) {  // written by `qforge pack`
        w.format = p->format;
        w.data = t.data;
        w.out = p->out;
        w.in = p->in;
        w.group_size = p->group_size;
        w.pack_rows = p->rows;
        w.owner = f.keep_alive();
        if (const TensorView *o = f.find(tensor + ".input_order")) {  // act-order (FORMATS.md, "Packed GGUF files")
            if (o->type != DType::i32 || o->shape != std::vector<int64_t>{w.in}) {
                layer_error(tensor, "'" + o->name + "' is " + to_string(o->type) + " " + shape_string(o->shape) +
                                        ", expected I32 [" + std::to_string(w.in) + "]");
            }
            w.input_order = reinterpret_cast<const int32_t *>(o->data);  // the layer copies and checks it
        }
    } else {
        w = weight_of(t, f.keep_alive(), tensor);
    }
    std::vector<float> bias;
    if (const TensorView *b = f.find(bias_name(tensor))) bias = bias_values(*b, w.out, tensor);
    return make_linear(tensor, w, bias.empty() ? nullptr : bias.data(), opt);
}

std::unique_ptr<Linear> load_linear(const SafetensorsFile &f, const std::string &name, const LayerOptions &opt) {
    std::vector<float> bias;
    if (f.find(name + ".qweight")) {  // GPTQ or AWQ: converted to int4z (qforge/gptq.h)
        auto layer = std::make_shared<Int4zLayer>(read_zero_point_layer(f, name, zero_point_config_for(f)));
        WeightRef w = layer->ref();
        w.owner = layer;
        return make_linear(name, w, layer->bias.empty() ? nullptr : layer->bias.data(), opt);
    }
    if (f.find(name + ".weight_4bit")) {
        const Int4gTensors g = f.int4g(name);
        WeightRef w;
        w.format = Format::int4g;
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
    WeightRef w = t.type == DType::i8 || t.type == DType::f8_e4m3 ? load_channel_weight(f, name) : weight_of(t, f.keep_alive(), name);
    if (const TensorView *b = f.find(bias_name(name))) bias = bias_values(*b, w.out, name);
    return make_linear(name, w, bias.empty() ? nullptr : bias.data(), opt);
}

}  // namespace qforge
