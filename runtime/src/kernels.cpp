// Entry points: validate every pointer and shape, wrap the caller's memory in
// halide_buffer_t views (no copies), run the chosen variant, turn Halide
// runtime errors into qforge::Error.
#include "qforge/kernels.h"
#include "qforge/pack.h"

#include "cuda_device.h"
#include "cutlass.h"
#include "kernel_threads.h"
#include "thread_pool.h"
#include "registry.h"

#include "HalideBuffer.h"
#include "HalideRuntime.h"
#ifdef QF_HAVE_CUDA
#include "HalideRuntimeCuda.h"
#endif

#include <algorithm>
#include <cmath>
#include <mutex>
#include <shared_mutex>
#include <type_traits>
#include <sstream>

namespace qforge {
namespace {


// Kernel calls hold this shared; set_num_threads holds it alone: it stops
// the pool's workers (thread_pool.h), which is legal only while no kernel
// runs. (Halide's own pool, which the kernels no longer use, keeps every
// worker it ever started whatever halide_set_num_threads says later.)
std::shared_mutex &pool_mutex() {
    static std::shared_mutex m;
    return m;
}

// Halide reports errors through a callback; keep the message for the throw.
thread_local std::string halide_message;
void capture_halide_error(void *, const char *msg) { halide_message = msg; }

void install_error_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        halide_set_error_handler(capture_halide_error);
        internal::install_thread_pool();
    });
}

[[noreturn]] void fail(const std::string &op, const std::string &what) {
    throw Error(op + ": " + what);
}

template <typename... Args>
std::string str(const Args &...args) {
    std::ostringstream s;
    (s << ... << args);
    return s.str();
}

// The message is formatted only on failure: calls check a dozen things
// each, and formatting them all cost more host time than a decode's kernel.
template <typename... Args>
void require(bool ok, const std::string &op, const Args &...what) {
    if (!ok) fail(op, str(what...));
}

template <typename T>
using View = Halide::Runtime::Buffer<T, 2>;

int64_t dense_or(int64_t stride, int64_t dense) { return stride == 0 ? dense : stride; }

// Where a call's memory lives, and the Halide views of it. For CUDA memory
// the views carry the caller's device pointers (no host copy exists, so
// Halide cannot copy behind anyone's back) and the kernels run on
// opt.stream in the caller's context.
thread_local void *call_stream = nullptr;
constexpr uintptr_t kCudaAlignment = 16;

#ifdef QF_HAVE_CUDA
int acquire_context(void *, void **ctx, bool) {
    *ctx = internal::cuda_context();
    return *ctx ? 0 : -1;
}
int release_context(void *) { return 0; }
int get_stream(void *, void *, void **stream) {
    *stream = call_stream;
    return 0;
}
#endif

class Place {
public:
    Place(const std::string &op, const RunOptions &opt) : op_(op), cuda_(opt.memory == Memory::cuda) {
        install_error_handler();  // every call makes a Place before it runs a kernel
        if (!cuda_) return;
#ifdef QF_HAVE_CUDA
        static std::once_flag once;
        std::call_once(once, [] {
            halide_set_cuda_acquire_context(acquire_context);
            halide_set_cuda_release_context(release_context);
            halide_set_cuda_get_stream(get_stream);
            // Side buffers (Q8_K statistics, x sums) come from a cache, not cuMemAlloc per call.
            halide_reuse_device_allocations(nullptr, true);
        });
        const internal::CudaDevice &d = internal::cuda_device();
        require(d.present, op, "RunOptions::memory is cuda, but there is no CUDA device: ", d.why_absent);
        call_stream = opt.stream;
#else
        fail(op, "RunOptions::memory is cuda, but this build has no CUDA targets");
#endif
    }
    ~Place() { call_stream = nullptr; }
    bool cuda() const { return cuda_; }

    template <typename T>
    View<T> view(const char *name, T *data, int64_t rows, int64_t cols, int64_t stride) {
        halide_dimension_t dims[2] = {{0, static_cast<int32_t>(cols), 1},
                                      {0, static_cast<int32_t>(rows), static_cast<int32_t>(stride)}};
        return view<T, 2>(name, data, dims);
    }

    // Any shape: dims innermost first, strides in elements.
    template <typename T, int N>
    Halide::Runtime::Buffer<T, N> view(const char *name, T *data, halide_dimension_t (&dims)[N]) {
        check_pointer(name, data);
        if (!cuda_) return Halide::Runtime::Buffer<T, N>(data, N, dims);
        // The CUDA kernels assume their inputs' base is 16-byte aligned
        // (their vector loads); outputs may be any sub-view.
        if constexpr (std::is_const_v<T>) {
            require(reinterpret_cast<uintptr_t>(data) % kCudaAlignment == 0, op_,
                    name, " is not 16-byte aligned CUDA memory (the kernels load 16 bytes at a time; "
                          "cudaMalloc gives 256-byte alignment)");
        }
        Halide::Runtime::Buffer<T, N> v(nullptr, N, dims);
        wrap(v, data);
        return v;
    }

    // A [n] f32 vector; nullptr gives a one-element zero the kernel ignores,
    // or with `whole` n zeros (for inputs a kernel reads as vectors).
    Halide::Runtime::Buffer<const float, 1> vec(const char *name, const float *data, int64_t n, bool whole = false) {
        int extent = static_cast<int>(n);
        if (!data) {
            if (!whole) extent = 1;
            data = zeros(extent);
        } else {
            check_pointer(name, data);
        }
        if (!cuda_) return Halide::Runtime::Buffer<const float, 1>(data, extent);
        halide_dimension_t dim = {0, extent, 1};
        Halide::Runtime::Buffer<const float, 1> v(nullptr, 1, &dim);
        wrap(v, data);
        return v;
    }

private:
    void check_pointer(const char *name, const void *p) {
        if (!p) return;   // null pointers are reported by the shape checks
        const auto kind = internal::cuda_pointer_kind(p);
        if (cuda_) {
            require(kind == internal::PointerKind::device, op_,
                    name, " is not CUDA device memory, but RunOptions::memory is cuda "
                          "(qforge never copies: upload it first)");
        } else {
            require(kind != internal::PointerKind::device, op_,
                    name, " is CUDA device memory; set RunOptions::memory = Memory::cuda");
        }
    }

    template <typename B>
    void wrap(B &v, const void *data) {
#ifdef QF_HAVE_CUDA
        const int rc = v.device_wrap_native(halide_cuda_device_interface(), reinterpret_cast<uint64_t>(data));
        require(rc == 0, op_, "cannot wrap a CUDA pointer: ", halide_message);
#else
        (void)v;
        (void)data;
#endif
    }

    // At least n zeros in this call's memory. Earlier, shorter runs stay
    // allocated (calls in flight may read them): at most a few per process.
    const float *zeros(int64_t n) {
        struct Run {
            int64_t n = 0;
            const float *p = nullptr;
        };
        static std::mutex mutex;
        static Run host, device;
        static std::vector<std::unique_ptr<std::vector<float>>> kept;  // every host run, reachable (no leak to report)
        std::lock_guard<std::mutex> lock(mutex);
        Run &run = cuda_ ? device : host;
        if (run.n < n) {
            const int64_t grown = std::max<int64_t>(n, 2 * run.n);
            std::vector<float> z(grown, 0.0f);
            if (cuda_) {
                void *p = internal::cuda_alloc(grown * sizeof(float));
                internal::cuda_upload(p, z.data(), grown * sizeof(float));
                run.p = static_cast<const float *>(p);
            } else {
                kept.push_back(std::make_unique<std::vector<float>>(std::move(z)));
                run.p = kept.back()->data();
            }
            run.n = grown;
        }
        return run.p;
    }

    std::string op_;
    bool cuda_;
};

// f16 as Halide's float16 (the same bits as uint16).
View<uint16_t> matrix_view(Place &p, const char *name, const MatrixF16 &m) {
    View<uint16_t> v = p.view(name, m.data, m.rows, m.cols, dense_or(m.stride, m.cols));
    v.raw_buffer()->type = halide_type_t(halide_type_float, 16);
    return v;
}
View<float> matrix_view(Place &p, const char *name, const Matrix &m) {
    return p.view(name, m.data, m.rows, m.cols, dense_or(m.stride, m.cols));
}
View<const float> matrix_view(Place &p, const char *name, const ConstMatrix &m) {
    return p.view(name, m.data, m.rows, m.cols, dense_or(m.stride, m.cols));
}

constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

// Checks a [rows, cols] matrix the caller passes: pointer, sizes, stride.
void check_matrix(const std::string &op, const char *name, const void *data, int64_t rows,
                  int64_t cols, int64_t stride, int64_t want_rows, int64_t want_cols) {
    require(data != nullptr, op, name, " is a null pointer");
    require(rows == want_rows && cols == want_cols, op,
            name, " is [", rows, ", ", cols, "], expected [", want_rows, ", ", want_cols, "]");
    require(stride == 0 || stride >= cols, op, name, " row stride ", stride, " is smaller than its ", cols, " columns");
    require(rows * dense_or(stride, cols) <= kMaxDim, op, name, " is too large for 32-bit indexing");
}

void check_tokens(const std::string &op, int64_t tokens) {
    require(tokens > 0, op, "tokens = ", tokens, ": there must be at least one token");
}

void run(const std::string &op, int rc) {
    if (rc != 0) fail(op, "kernel failed: " + halide_message);
}

using internal::KernelKey;
using internal::KernelRow;
using internal::Op;
using internal::Out;
using internal::Sig;
using internal::Variant;

// The variant a call runs: the row of `key` (decode or prefill by `tokens`
// for matmuls), or the one RunOptions::kernel names, which must compute the
// same thing (any schedule variant of it, either of matvec/matmul); of that
// row, the variant for the shape class of `weights` (out x in elements)
// where the build has one (internal::for_shape).
const Variant &pick(const std::string &op, KernelKey key, int64_t tokens, const RunOptions &opt, bool cuda,
                    int64_t weights = 0, int64_t in = 0) {
    if (key.op == Op::matvec || key.op == Op::matmul) key.op = tokens == 1 ? Op::matvec : Op::matmul;
    const KernelRow *row = nullptr;
    if (opt.kernel.empty()) {
        row = internal::find_row(key);
        if (!row) {
            KernelKey any = key;
            any.norm = false;
            std::string what = key.weights ? std::string(to_string(key.format)) + " weights" : "these activations";
            if (key.pack) what = "packed " + what + " (R = " + std::to_string(key.pack) + "; they take 8-bit activations)";
            fail(op, internal::find_row(any) ? "no fused-norm kernel for " + what
                                             : "no kernel computes this for " + what);
        }
    } else {
        row = internal::find_row(opt.kernel);
        require(row != nullptr, op, "kernel '", opt.kernel, "' is not in the kernel table (qforge targets lists them)");
        const bool matmuls = (row->op == Op::matvec || row->op == Op::matmul) && (key.op == Op::matvec || key.op == Op::matmul);
        const bool same = row->weights == key.weights && (!row->weights || row->format == key.format) &&
                          (row->op == key.op || matmuls) && (!row->has_act || row->act == key.act) &&
                          row->norm == key.norm && row->out == key.out && row->group == key.group &&
                          row->pack == key.pack && row->epi == key.epi;
        require(same, op, "kernel '", opt.kernel, "' does not compute this operation");
    }
    return internal::for_shape(internal::find_variant(*row, opt.target, cuda), weights, in,
                               cuda ? 0 : internal::kernel_threads().load(), opt.shape_class);
}

// --- fused norm ----------------------------------------------------------------

void check_norm(const std::string &op, const ConstMatrix &x) {
    if (!x.norm) return;
    const Norm &n = *x.norm;
    require(n.weight != nullptr, op, "norm weight is a null pointer");
    require(n.kind == Norm::Kind::layer || n.bias == nullptr, op,
            "norm bias is given, but RMSNorm has none (use Norm::Kind::layer)");
    require(std::isfinite(n.eps) && n.eps >= 0, op, "norm eps = ", n.eps, " must be finite and >= 0");
}

// Activations [tokens, in], and their norm when they carry one.
void check_activations(const std::string &op, const ConstMatrix &x, int64_t in) {
    check_tokens(op, x.rows);
    check_matrix(op, "x", x.data, x.rows, x.cols, x.stride, x.rows, in);
    check_norm(op, x);
}

// The norm's arguments as the _norm kernels take them, after their inputs.
struct NormArgs {
    Halide::Runtime::Buffer<const float, 1> weight, bias;
    bool layer = false;
    float eps = 0;
    NormArgs(Place &p, const ConstMatrix &x) {
        if (!x.norm) return;
        weight = p.vec("norm weight", x.norm->weight, x.cols);
        bias = p.vec("norm bias", x.norm->bias, x.cols, /*whole=*/true);
        layer = x.norm->kind == Norm::Kind::layer;
        eps = x.norm->eps;
    }
};

// --- weights -------------------------------------------------------------------

int64_t groups(const Weights &w) { return (w.in + w.group_size - 1) / w.group_size; }

// Everything a format's traits ask of a Weights view.
void check_weights(const std::string &op, const Weights &w) {
    const FormatTraits &t = traits(w.format);
    const std::string name = std::string(t.name) + " weight";
    require(w.data != nullptr, op, name, " is a null pointer");
    require(w.out > 0 && w.in > 0, op, name, " shape [", w.out, ", ", w.in, "] must be positive");
    require(w.in % t.block_elements == 0, op, name, ": in = ", w.in, " is not a multiple of ", t.block_elements,
            " (rows are whole blocks of ", t.block_elements, " values)");
    if (w.pack_rows) {
        require(t.packed_block_bytes > 0, op, name, ": pack_rows = ", w.pack_rows, ", but ", t.name,
                " has no packed layout");
        require(w.pack_rows > 0 && w.pack_rows % 4 == 0, op, name, ": pack_rows = ", w.pack_rows,
                " is not a positive multiple of 4");
        require(w.in % t.packed_block_elements == 0, op, name, ": in = ", w.in, " is not whole packed blocks of ",
                t.packed_block_elements);
        require(w.row_stride == 0, op, name, ": a packed weight has no row stride (", w.row_stride, " given)");
        require(packed_bytes(w.format, w.out, w.in, w.pack_rows) <= kMaxDim, op, name, " is too large for 32-bit indexing");
        return;
    }
    const int64_t bytes = row_bytes(w.format, w.in);
    require(w.row_stride == 0 || w.row_stride >= bytes, op,
            name, " row stride ", w.row_stride, " is smaller than a row's ", bytes, " bytes");
    require(w.row_stride % (t.block_elements == 1 ? t.block_bytes : 1) == 0, op,
            name, " row stride ", w.row_stride, " is not whole ", t.block_bytes, "-byte values");
    require(w.out * dense_or(w.row_stride, bytes) <= kMaxDim, op, name, " is too large for 32-bit indexing");
    if (!t.separate_scales) return;
    require(w.scales != nullptr, op, t.name, " scales are a null pointer");
    require(std::find(t.group_sizes.begin(), t.group_sizes.end(), w.group_size) != t.group_sizes.end(), op,
            "group size ", w.group_size, " is not compiled in (", t.name, " has kernels for groups of ",
            [&] {
                std::string s;
                for (int g : t.group_sizes) s += (s.empty() ? "" : ", ") + std::to_string(g);
                return s;
            }(), ")");
    require(w.scales_stride == 0 || w.scales_stride >= groups(w), op,
            t.name, " scales row stride ", w.scales_stride, " is smaller than n_groups = ", groups(w));
    if (!t.zero_points) return;
    require(w.zeros != nullptr, op, t.name, " zero points are a null pointer");
    require(w.zeros_stride == 0 || w.zeros_stride >= groups(w), op,
            t.name, " zero points row stride ", w.zeros_stride, " is smaller than n_groups = ", groups(w));
}

KernelKey weights_key(const Weights &w, Op op) {
    KernelKey k;
    k.format = w.format;
    k.op = op;
    k.group = traits(w.format).separate_scales ? w.group_size : 0;
    k.pack = w.pack_rows;
    return k;
}

// The weight planes as the kernels take them: bytes [out, row bytes], or for
// dense formats their values (f32; f16 and bf16 as Halide's float16 and
// bfloat16), and the scale plane of formats that keep one apart.
struct WeightArgs {
    Halide::Runtime::Buffer<const void, 2> weight;
    Halide::Runtime::Buffer<const void, 2> scales;
    Halide::Runtime::Buffer<const void, 2> zeros;
    Halide::Runtime::Buffer<const uint8_t, 3> packed;  // [R * packed block bytes, blocks, tiles]
    bool is_packed = false;  // (a CUDA view of it has no host pointer)
    // pairs: weight tiles per output tile (2: matmul_glu's gate and up tiles).
    WeightArgs(Place &p, const Weights &w, int pairs = 1) {
        const FormatTraits &t = traits(w.format);
        if (w.pack_rows) {
            require(!p.cuda() || w.pack_rows == 32, "matmul", "packed weights on CUDA are tiles of 32 rows (a warp's "
                    "lanes), not ", w.pack_rows, ": upload the file's layout, or pack with R = 32");
            const int64_t chunk = w.pack_rows * t.packed_block_bytes, blocks = packed_row_blocks(w.format, w.in);
            halide_dimension_t dims[3] = {{0, static_cast<int32_t>(chunk), 1},
                                          {0, static_cast<int32_t>(blocks), static_cast<int32_t>(chunk)},
                                          {0, static_cast<int32_t>(pairs * ((w.out + w.pack_rows - 1) / w.pack_rows)),
                                           static_cast<int32_t>(chunk * blocks)}};
            // On CUDA the packed kernels are schedule variants so far
            // (targets.cmake, QF_TUNING_KERNELS): RunOptions::kernel names one.
            const auto *data = static_cast<const uint8_t *>(w.data);
            packed = p.cuda() ? p.view("weight", data, dims) : Halide::Runtime::Buffer<const uint8_t, 3>(data, 3, dims);
            is_packed = true;
            return;
        }
        const int64_t bytes = row_bytes(w.format, w.in), stride = dense_or(w.row_stride, bytes);
        const auto *data = static_cast<const uint8_t *>(w.data);
        if (t.block_elements > 1) {
            weight = p.view("weight", data, w.out, bytes, stride);
        } else {
            // Values of block_bytes each, viewed as such (dims in elements).
            const int64_t size = t.block_bytes;
            weight = p.view("weight", data, w.out, w.in * size, stride);
            halide_buffer_t *b = weight.raw_buffer();
            b->type = w.format == Format::bf16 ? halide_type_t(halide_type_bfloat, 16)
                                               : halide_type_t(halide_type_float, static_cast<uint8_t>(8 * size));
            b->dim[0].extent = static_cast<int32_t>(w.in);
            b->dim[1].stride = static_cast<int32_t>(stride / size);
        }
        if (t.separate_scales) {
            scales = p.view("scales", w.scales, w.out, groups(w), dense_or(w.scales_stride, groups(w)));
        }
        if (t.zero_points) {
            zeros = p.view("zero points", w.zeros, w.out, groups(w), dense_or(w.zeros_stride, groups(w)));
        }
    }
    halide_buffer_t *w() { return is_packed ? packed.raw_buffer() : weight.raw_buffer(); }
    halide_buffer_t *s() { return scales.raw_buffer(); }
    halide_buffer_t *z() { return zeros.raw_buffer(); }
};

// --- 8-bit activations (Q8_K, Q8_0) -----------------------------------------------

const char *act_name(ActType t) { return t == ActType::q8_k ? "Q8_K" : t == ActType::q8_0 ? "Q8_0" : "f32"; }

void check_q8k(const std::string &op, const Q8KActivations &a, int64_t in) {
    const char *name = act_name(a.type);
    require(a.type != ActType::f32, op, "8-bit activations have type f32");
    require(a.d && a.qs && a.bsums, op, name, " activations: d, qs or bsums is a null pointer");
    check_tokens(op, a.tokens);
    require(a.in == in, op, name, " activations have in = ", a.in, ", the weight has in = ", in);
    require(in % act_block(a.type) == 0, op, name, " activations: in = ", in, " is not whole blocks of ",
            act_block(a.type));
}

// The three planes, as inputs (const) or outputs.
template <typename F, typename I8, typename I16>
struct Q8KArgs {
    View<F> d;
    View<I8> qs;
    View<I16> bsums;
    Q8KArgs(Place &p, F *d_, I8 *qs_, I16 *bsums_, int64_t tokens, int64_t in, ActType t)
        : d(p.view("activation d", d_, tokens, in / act_block(t), in / act_block(t))),
          qs(p.view("activation qs", qs_, tokens, in, in)),
          bsums(p.view("activation sums", bsums_, tokens, in / act_sum_block(t), in / act_sum_block(t))) {}
};

}  // namespace

static int64_t checked_q8k_tokens(int64_t tokens, int64_t in, ActType t) {
    if (t == ActType::f32) throw Error("Q8KBuffer: type must be an 8-bit activation type (q8_k, q8_0)");
    if (tokens <= 0 || in <= 0 || in % act_block(t) != 0) {
        throw Error(str("Q8KBuffer: [", tokens, ", ", in, "] needs tokens > 0 and in a positive multiple of ",
                        act_block(t)));
    }
    return tokens;
}

Q8KBuffer::Q8KBuffer(int64_t tokens, int64_t in, ActType type)
    : tokens_(checked_q8k_tokens(tokens, in, type)), in_(in), type_(type), d_(tokens * (in / act_block(type))),
      qs_(tokens * in), bsums_(tokens * (in / act_sum_block(type))) {}

Q8KActivations Q8KBuffer::view() { return {d_.data(), qs_.data(), bsums_.data(), tokens_, in_, type_}; }

namespace {

std::string op_name(const Weights &w, const char *op) { return std::string(to_string(w.format)) + " " + op; }

// What every call on weights shares once its inputs are checked: where it
// runs, the variant its key picks, the weight views.
struct WeightCall {
    std::shared_lock<std::shared_mutex> pool{pool_mutex()};
    Place place;
    const Variant &v;
    WeightArgs wa;
    WeightCall(const std::string &op, const Weights &w, const KernelKey &key, int64_t tokens, const RunOptions &opt)
        : place(op, opt), v(pick(op, key, tokens, opt, place.cuda(), w.out * w.in, w.in)), wa(place, w, key.epi == internal::Epi::glu ? 2 : 1) {}
};

template <typename OutMatrix>
void dequant_to(const Weights &w, const OutMatrix &out, Out type, const RunOptions &opt) {
    const std::string op = op_name(w, "dequant");
    check_weights(op, w);
    check_matrix(op, "out", out.data, out.rows, out.cols, out.stride, w.out, w.in);
    KernelKey key = weights_key(w, Op::dequant);
    key.out = type;
    WeightCall c(op, w, key, 0, opt);
    const Variant &v = c.v;
    WeightArgs &wa = c.wa;
    auto ov = matrix_view(c.place, "out", out);
    switch (v.sig) {
    case Sig::dequant: return run(op, v.fn_as<Sig::dequant>()(wa.w(), ov.raw_buffer()));
    case Sig::dequant_scaled: return run(op, v.fn_as<Sig::dequant_scaled>()(wa.w(), wa.s(), ov.raw_buffer()));
    case Sig::dequant_scaled_zp:
        return run(op, v.fn_as<Sig::dequant_scaled_zp>()(wa.w(), wa.s(), wa.z(), ov.raw_buffer()));
    default: fail(op, "internal: not a dequantizer");
    }
}

}  // namespace

void dequant(const Weights &w, Matrix out, const RunOptions &opt) { dequant_to(w, out, Out::f32, opt); }

namespace internal {

void cutlass_int4_repack(const Weights &w, uint8_t *shuffled, uint16_t *scales_t, const RunOptions &opt) {
    const std::string op = "cutlass_int4_repack";
    check_weights(op, w);
    require(w.format == Format::int4g && w.pack_rows == 0, op, "takes int4g weights in the file's layout, not ",
            to_string(w.format), w.pack_rows ? " packed" : "");
    require(w.out % 16 == 0 && w.in % 16 == 0, op, "[", w.out, ", ", w.in,
            "]: rows and columns must be multiples of 16 (CUTLASS's layout atom)");
    KernelKey key = weights_key(w, Op::repack);
    key.group = 0;  // the layout is the same for every group size
    key.out = Out::cutlass;
    WeightCall c(op, w, key, 0, opt);
    const int64_t groups = w.in / w.group_size;
    halide_dimension_t wd[2] = {{0, static_cast<int32_t>(w.in / 2), 1},
                                {0, static_cast<int32_t>(w.out), static_cast<int32_t>(w.in / 2)}};
    halide_dimension_t sd[2] = {{0, static_cast<int32_t>(w.out), 1},
                                {0, static_cast<int32_t>(groups), static_cast<int32_t>(w.out)}};
    auto wv = c.place.view<uint8_t, 2>("shuffled", shuffled, wd);
    auto sv = c.place.view<uint16_t, 2>("scales_t", scales_t, sd);
    run(op, c.v.fn_as<Sig::repack>()(c.wa.w(), c.wa.s(), wv.raw_buffer(), sv.raw_buffer()));
}

}  // namespace internal
void dequant(const Weights &w, MatrixF16 out, const RunOptions &opt) { dequant_to(w, out, Out::f16, opt); }

namespace {

// The plain epilogue's checks (kernels.h, Epilogue): the activation kind
// passed to the kernel (-1: none), and the residual's shape and overlap.
int epilogue_kind(const std::string &op, const Epilogue &e, const Matrix &y, int64_t tokens, int64_t out) {
    if (const HeadNorms *h = e.heads) {
        require(!e.activate && !e.residual.data, op, "the epilogue's head norms come without an activation or residual");
        const int64_t D = h->head_dim;
        require(D > 0 && D <= kMaxDim, op, "head norms: head_dim = ", D, " must be positive");
        require(0 <= h->first && h->first <= h->split && h->split <= h->end && h->end <= out, op, "head norms: rows [",
                h->first, ", ", h->split, ", ", h->end, ") must be ordered within [0, out = ", out, "]");
        require(h->first % D == 0 && h->split % D == 0 && h->end % D == 0, op, "head norms: rows ", h->first, ", ",
                h->split, ", ", h->end, " are not multiples of head_dim = ", D);
        require(h->first == h->split || h->q_weight, op, "head norms: q_weight is a null pointer");
        require(h->split == h->end || h->k_weight, op, "head norms: k_weight is a null pointer");
        for (float eps : {h->q_eps, h->k_eps}) {
            require(std::isfinite(eps) && eps >= 0, op, "head norms: eps = ", eps, " must be finite and >= 0");
        }
    }
    const int kind = e.activate ? static_cast<int>(e.act) : -1;
    require(kind >= -1 && kind <= static_cast<int>(Activation::gelu_erf), op, "unknown activation ", kind);
    if (e.residual.data) {
        check_matrix(op, "residual", e.residual.data, e.residual.rows, e.residual.cols, e.residual.stride, tokens, out);
        require(!e.residual.norm, op, "the residual is added as it is: it carries no norm");
        const int64_t ys = y.stride ? y.stride : y.cols, rs = e.residual.stride ? e.residual.stride : e.residual.cols;
        auto at = [](const float *p) { return reinterpret_cast<uintptr_t>(p); };
        const uintptr_t r0 = at(e.residual.data), y0 = at(y.data);
        const uintptr_t r1 = at(e.residual.data + (tokens - 1) * rs + out), y1 = at(y.data + (tokens - 1) * ys + out);
        const bool same = r0 == y0 && rs == ys;
        require(same || r1 <= y0 || y1 <= r0, op, "the residual overlaps y without being y itself");
    }
    return kind;
}

// The residual a kernel takes: e's, or without one y itself, which it then
// does not read (has_residual = false).
struct ResidualArg {
    View<const float> view;
    bool has;
    halide_buffer_t *y;
    ResidualArg(Place &place, const ConstMatrix &residual, View<float> &yv)
        : view(residual.data ? matrix_view(place, "residual", residual) : View<const float>()),
          has(residual.data != nullptr), y(yv.raw_buffer()) {}
    halide_buffer_t *buffer() { return has ? view.raw_buffer() : y; }
};

}  // namespace

namespace {

// The matmul without its head norms, then the head_rms_norm pass over them:
// the f32-activation kernels (CUDA's layers among them) and packed ones
// whose tiles do not divide a head. On CUDA the norm cannot move into the
// matmul's store at a cost worth paying: the store would need a head's rows
// in one thread block (a head's sum of squares before any of its outputs),
// and a block of 128 rows (32 warps x 4) ran Q4_K decode of a 6144 x 4096
// QKV in 0.0407 ms against 0.0224 for the kernel's own 4-row blocks, where
// the pass costs about 0.004 (H100, scripts/tune.py's CUDA round of
// 2026-12-06; BENCHMARKS.md, "CUDA tuning through scripts/tune.py"). Blocks
// that finish a head together (the last one normalizing it) need a grid-wide
// counter Halide cannot express.
template <typename Matmul>
void heads_after(const Epilogue &e, Matrix y, const RunOptions &opt, Matmul &&plain_matmul) {
    Epilogue plain = e;
    plain.heads = nullptr;
    plain_matmul(plain);
    RunOptions run = opt;
    run.kernel.clear();  // a forced kernel names the matmul
    head_rms_norms(y, *e.heads, run);
}

// Whether the kernel for `key` (epi = head_norm) normalizes the heads in its
// store: packed weights whose tiles of R rows divide a head, and whose rows
// are whole heads (the kernel sums a head's squares over all its rows),
// unless the call forces a kernel without that epilogue.
bool fused_heads(const Weights &w, const HeadNorms &h, const KernelKey &key, const RunOptions &opt) {
    if (!opt.kernel.empty()) {
        const internal::KernelRow *row = internal::find_row(opt.kernel);
        return row && row->epi == internal::Epi::head_norm;
    }
    return w.pack_rows > 0 && h.head_dim % w.pack_rows == 0 && w.out % h.head_dim == 0 &&
           internal::find_row(key) != nullptr;
}

void matmul_head_norm(const std::string &op, const Weights &w, const Q8KActivations &a, const float *bias,
                      const HeadNorms &h, const KernelKey &key, Matrix y, const RunOptions &opt) {
    require(w.pack_rows > 0 && h.head_dim % w.pack_rows == 0, op, "the head_norm epilogue needs packed tiles of R "
            "rows (Weights::pack_rows = ", w.pack_rows, ") that divide head_dim = ", h.head_dim);
    require(w.out % h.head_dim == 0, op, "the head_norm epilogue needs whole heads: out = ", w.out,
            " is no multiple of head_dim = ", h.head_dim);
    WeightCall c(op, w, key, a.tokens, opt);
    Place &place = c.place;
    Q8KArgs<const float, const int8_t, const int16_t> q(place, a.d, a.qs, a.bsums, a.tokens, a.in, a.type);
    auto bv = place.vec("bias", bias, w.out);
    auto yv = matrix_view(place, "y", y);
    // [head_dim, 2]: q's weights, then k's (zeros for an empty range, never read).
    std::vector<float> hw(2 * h.head_dim, 0.0f);
    if (h.first < h.split) std::copy(h.q_weight, h.q_weight + h.head_dim, hw.begin());
    if (h.split < h.end) std::copy(h.k_weight, h.k_weight + h.head_dim, hw.begin() + h.head_dim);
    const auto D = static_cast<int32_t>(h.head_dim);
    halide_dimension_t dims[2] = {{0, D, 1}, {0, 2, D}};
    auto hv = place.view<const float, 2>("head weights", hw.data(), dims);
    run(op, c.v.fn_as<Sig::matmul_q8k_head_norm>()(c.wa.w(), q.d.raw_buffer(), q.qs.raw_buffer(), q.bsums.raw_buffer(),
                                                   bv.raw_buffer(), bias != nullptr, hv.raw_buffer(),
                                                   static_cast<int>(h.first), static_cast<int>(h.split),
                                                   static_cast<int>(h.end), h.q_eps, h.k_eps, yv.raw_buffer()));
}

}  // namespace

void matmul(const Weights &w, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt) {
    matmul(w, x, bias, Epilogue{}, y, opt);
}

void matmul(const Weights &w, ConstMatrix x, const float *bias, const Epilogue &e, Matrix y, const RunOptions &opt) {
    const std::string op = op_name(w, "matmul");
    check_weights(op, w);
    check_activations(op, x, w.in);
    check_matrix(op, "y", y.data, y.rows, y.cols, y.stride, x.rows, w.out);
    const int kind = epilogue_kind(op, e, y, x.rows, w.out);
    if (e.heads) return heads_after(e, y, opt, [&](const Epilogue &plain) { matmul(w, x, bias, plain, y, opt); });
    KernelKey key = weights_key(w, Op::matvec);
    key.norm = x.norm != nullptr;
    WeightCall c(op, w, key, x.rows, opt);
    const Variant &v = c.v;
    WeightArgs &wa = c.wa;
    Place &place = c.place;
    auto xv = matrix_view(place, "x", x);
    auto bv = place.vec("bias", bias, w.out);
    const bool has_bias = bias != nullptr;
    NormArgs n(place, x);
    auto yv = matrix_view(place, "y", y);
    ResidualArg r(place, e.residual, yv);
    halide_buffer_t *X = xv.raw_buffer(), *b = bv.raw_buffer(), *Y = yv.raw_buffer(), *R = r.buffer();
    halide_buffer_t *nw = n.weight.raw_buffer(), *nb = n.bias.raw_buffer();
    switch (v.sig) {
    case Sig::matmul: return run(op, v.fn_as<Sig::matmul>()(wa.w(), X, b, has_bias, R, r.has, kind, Y));
    case Sig::matmul_scaled: return run(op, v.fn_as<Sig::matmul_scaled>()(wa.w(), wa.s(), X, b, has_bias, R, r.has, kind, Y));
    case Sig::matmul_norm:
        return run(op, v.fn_as<Sig::matmul_norm>()(wa.w(), X, b, has_bias, nw, nb, n.layer, n.eps, R, r.has, kind, Y));
    case Sig::matmul_scaled_norm:
        return run(op, v.fn_as<Sig::matmul_scaled_norm>()(wa.w(), wa.s(), X, b, has_bias, nw, nb, n.layer, n.eps, R, r.has,
                                                           kind, Y));
    case Sig::matmul_scaled_zp:
        return run(op, v.fn_as<Sig::matmul_scaled_zp>()(wa.w(), wa.s(), X, b, has_bias, wa.z(), R, r.has, kind, Y));
    case Sig::matmul_scaled_zp_norm:
        return run(op, v.fn_as<Sig::matmul_scaled_zp_norm>()(wa.w(), wa.s(), X, b, has_bias, wa.z(), nw, nb, n.layer,
                                                              n.eps, R, r.has, kind, Y));
    default: fail(op, "internal: not an f32-activation matmul");
    }
}

void matmul(const Weights &w, const Q8KActivations &a, const float *bias, Matrix y, const RunOptions &opt) {
    matmul(w, a, bias, Epilogue{}, y, opt);
}

void matmul(const Weights &w, const Q8KActivations &a, const float *bias, const Epilogue &e, Matrix y,
            const RunOptions &opt) {
    const std::string op = op_name(w, a.type == ActType::q8_0 ? "matmul (Q8_0 activations)" : "matmul (Q8_K activations)");
    check_weights(op, w);
    check_q8k(op, a, w.in);
    check_matrix(op, "y", y.data, y.rows, y.cols, y.stride, a.tokens, w.out);
    const int kind = epilogue_kind(op, e, y, a.tokens, w.out);
    KernelKey key = weights_key(w, Op::matvec);
    key.act = a.type;
    if (e.heads) {
        key.epi = internal::Epi::head_norm;
        if (!fused_heads(w, *e.heads, key, opt)) {
            return heads_after(e, y, opt, [&](const Epilogue &plain) { matmul(w, a, bias, plain, y, opt); });
        }
        return matmul_head_norm(op, w, a, bias, *e.heads, key, y, opt);
    }
    WeightCall c(op, w, key, a.tokens, opt);
    Place &place = c.place;
    Q8KArgs<const float, const int8_t, const int16_t> q(place, a.d, a.qs, a.bsums, a.tokens, a.in, a.type);
    auto bv = place.vec("bias", bias, w.out);
    auto yv = matrix_view(place, "y", y);
    ResidualArg r(place, e.residual, yv);
    run(op, c.v.fn_as<Sig::matmul_q8k>()(c.wa.w(), q.d.raw_buffer(), q.qs.raw_buffer(), q.bsums.raw_buffer(),
                                         bv.raw_buffer(), bias != nullptr, r.buffer(), r.has, kind, yv.raw_buffer()));
}

void matmul_glu(const Weights &w, const Q8KActivations &a, const float *bias, Activation act, Matrix y,
                const RunOptions &opt) {
    const std::string op = op_name(w, "matmul_glu");
    require(w.pack_rows > 0, op, "the gate/up tile pairs are a packed layout (Weights::pack_rows; pack.h, pack_gate_up)");
    check_weights(op, w);
    require(packed_bytes(w.format, 2 * w.out, w.in, w.pack_rows) <= kMaxDim, op, "the gate/up weight is too large for "
            "32-bit indexing");
    check_q8k(op, a, w.in);
    check_matrix(op, "y", y.data, y.rows, y.cols, y.stride, a.tokens, w.out);
    const int kind = static_cast<int>(act);
    require(kind >= 0 && kind <= static_cast<int>(Activation::gelu_erf), op, "unknown activation ", kind);
    KernelKey key = weights_key(w, Op::matvec);
    key.act = a.type;
    key.epi = internal::Epi::glu;
    WeightCall c(op, w, key, a.tokens, opt);
    Place &place = c.place;
    Q8KArgs<const float, const int8_t, const int16_t> q(place, a.d, a.qs, a.bsums, a.tokens, a.in, a.type);
    auto bv = place.vec("bias", bias, 2 * w.out);
    auto yv = matrix_view(place, "y", y);
    run(op, c.v.fn_as<Sig::matmul_q8k_glu>()(c.wa.w(), q.d.raw_buffer(), q.qs.raw_buffer(), q.bsums.raw_buffer(),
                                             bv.raw_buffer(), bias != nullptr, kind, yv.raw_buffer()));
}

namespace {

// What the kernels of the activations alone (quantize, convert) share: the
// variant for `op` and `out` (its norm variant when x carries a norm), and
// the views of x and of its norm.
struct ActivationCall {
    std::shared_lock<std::shared_mutex> pool{pool_mutex()};
    Place place;
    const Variant &v;
    View<const float> x;
    NormArgs norm;
    ActivationCall(const std::string &op, Op kind, Out out, const ConstMatrix &xm, const RunOptions &opt)
        : place(op, opt), v(pick(op, key(kind, out, xm), xm.rows, opt, place.cuda())),
          x(matrix_view(place, "x", xm)), norm(place, xm) {}
    static KernelKey key(Op kind, Out out, const ConstMatrix &xm) {
        KernelKey k;
        k.weights = false;
        k.op = kind;
        k.norm = xm.norm != nullptr;
        k.out = out;
        return k;
    }
};

// The kernels between a block's matmuls (glu, head_norm): their variant.
struct ElementwiseCall {
    std::shared_lock<std::shared_mutex> pool{pool_mutex()};
    Place place;
    const Variant &v;
    ElementwiseCall(const std::string &op, Op kind, int64_t rows, const RunOptions &opt)
        : place(op, opt), v(pick(op, key(kind), rows, opt, place.cuda())) {}
    static KernelKey key(Op kind) {
        KernelKey k;
        k.weights = false;
        k.op = kind;
        return k;
    }
};

}  // namespace

void q8k_quantize(ConstMatrix x, const Q8KActivations &a, const RunOptions &opt) {
    const std::string op = a.type == ActType::q8_0 ? "q8_0_quantize" : "q8k_quantize";
    const char *name = act_name(a.type);
    require(a.type != ActType::f32, op, "the output's type must be q8_k or q8_0");
    check_tokens(op, x.rows);
    require(x.cols > 0 && x.cols % act_block(a.type) == 0, op,
            "x: in = ", x.cols, " is not a positive multiple of ", act_block(a.type), " (", name, " blocks)");
    check_activations(op, x, x.cols);
    require(a.d && a.qs && a.bsums, op, name, " output: d, qs or bsums is a null pointer");
    require(a.tokens == x.rows && a.in == x.cols, op,
            name, " output is [", a.tokens, ", ", a.in, "], x is [", x.rows, ", ", x.cols, "]");
    ActivationCall c(op, Op::quantize, a.type == ActType::q8_0 ? Out::q8_0 : Out::q8_k, x, opt);
    const Variant &v = c.v;
    NormArgs &n = c.norm;
    auto &xv = c.x;
    Q8KArgs<float, int8_t, int16_t> q(c.place, a.d, a.qs, a.bsums, a.tokens, a.in, a.type);
    halide_buffer_t *d = q.d.raw_buffer(), *qs = q.qs.raw_buffer(), *bs = q.bsums.raw_buffer();
    if (v.sig == Sig::quantize) return run(op, v.fn_as<Sig::quantize>()(xv.raw_buffer(), d, qs, bs));
    run(op, v.fn_as<Sig::quantize_norm>()(xv.raw_buffer(), n.weight.raw_buffer(), n.bias.raw_buffer(), n.layer, n.eps,
                                          d, qs, bs));
}

void f16_from_f32(ConstMatrix x, MatrixF16 out, const RunOptions &opt) {
    const std::string op = "f16_from_f32";
    check_activations(op, x, x.cols);
    check_matrix(op, "out", out.data, out.rows, out.cols, out.stride, x.rows, x.cols);
    ActivationCall c(op, Op::convert, Out::f16, x, opt);
    const Variant &v = c.v;
    NormArgs &n = c.norm;
    auto &xv = c.x;
    auto ov = matrix_view(c.place, "out", out);
    if (v.sig == Sig::convert) return run(op, v.fn_as<Sig::convert>()(xv.raw_buffer(), ov.raw_buffer()));
    run(op, v.fn_as<Sig::convert_norm>()(xv.raw_buffer(), n.weight.raw_buffer(), n.bias.raw_buffer(), n.layer, n.eps,
                                         ov.raw_buffer()));
}

void glu(ConstMatrix gate, ConstMatrix up, Activation act, Matrix out, const RunOptions &opt) {
    const std::string op = "glu";
    check_tokens(op, gate.rows);
    require(gate.cols > 0, op, "gate has ", gate.cols, " columns");
    check_matrix(op, "gate", gate.data, gate.rows, gate.cols, gate.stride, gate.rows, gate.cols);
    const bool gated = up.data != nullptr;
    if (gated) check_matrix(op, "up", up.data, up.rows, up.cols, up.stride, gate.rows, gate.cols);
    check_matrix(op, "out", out.data, out.rows, out.cols, out.stride, gate.rows, gate.cols);
    require(!gate.norm && !up.norm, op, "gate and up are matmul outputs: they carry no norm");
    const int kind = static_cast<int>(act);
    require(kind >= 0 && kind <= static_cast<int>(Activation::gelu_erf), op, "unknown activation ", kind);
    ElementwiseCall c(op, Op::glu, gate.rows, opt);
    const Variant &v = c.v;
    Place &place = c.place;
    auto g = matrix_view(place, "gate", gate);
    auto u = matrix_view(place, gated ? "up" : "gate", gated ? up : gate);  // plain: not read
    auto o = matrix_view(place, "out", out);
    run(op, v.fn_as<Sig::glu>()(g.raw_buffer(), u.raw_buffer(), gated, kind, o.raw_buffer()));
}

namespace {

// RMSNorm of x's heads in place, weight and eps for those below `split`,
// weight_1 and eps_1 for the rest: one kernel call.
void head_rms_norm_split(const std::string &op, Matrix x, int64_t head_dim, const float *weight, float eps,
                         int64_t split, const float *weight_1, float eps_1, const RunOptions &opt) {
    check_tokens(op, x.rows);
    require(head_dim > 0 && x.cols > 0 && x.cols % head_dim == 0, op, "x has ", x.cols,
            " columns, which is no whole number of heads of head_dim ", head_dim);
    check_matrix(op, "x", x.data, x.rows, x.cols, x.stride, x.rows, x.cols);
    const int64_t heads = x.cols / head_dim;
    require(split >= 0 && split <= heads, op, "split = ", split, " must be within [0, ", heads, "] heads");
    require(split == 0 || weight != nullptr, op, "weight is a null pointer");
    require(split == heads || weight_1 != nullptr, op, "weight_1 is a null pointer");
    for (float e : {eps, eps_1}) require(std::isfinite(e) && e >= 0, op, "eps = ", e, " must be finite and >= 0");
    // An empty range's weight is never read: the other stands in for it.
    if (!weight) weight = weight_1;
    if (!weight_1) weight_1 = weight;
    ElementwiseCall c(op, Op::head_norm, x.rows, opt);
    const Variant &v = c.v;
    Place &place = c.place;
    const auto D = static_cast<int32_t>(head_dim);
    halide_dimension_t dims[3] = {{0, D, 1},
                                  {0, static_cast<int32_t>(heads), D},
                                  {0, static_cast<int32_t>(x.rows), static_cast<int32_t>(dense_or(x.stride, x.cols))}};
    auto in = place.view<const float, 3>("x", x.data, dims);
    auto o = place.view<float, 3>("x", x.data, dims);
    auto w0 = place.vec("weight", weight, head_dim);
    auto w1 = place.vec("weight", weight_1, head_dim);
    run(op, v.fn_as<Sig::head_norm>()(in.raw_buffer(), w0.raw_buffer(), w1.raw_buffer(), static_cast<int>(split), eps,
                                      eps_1, o.raw_buffer()));
}

}  // namespace

void head_rms_norms(Matrix y, const HeadNorms &h, const RunOptions &opt) {
    if (h.first == h.end) return;
    const int64_t stride = y.stride ? y.stride : y.cols;
    // q's heads and k's are adjacent: one call normalizes both.
    require(h.head_dim > 0 && (h.split - h.first) % h.head_dim == 0, "head_rms_norms", "q's rows [", h.first, ", ",
            h.split, ") are no whole number of heads of head_dim ", h.head_dim);
    head_rms_norm_split("head_rms_norms", Matrix{y.data + h.first, y.rows, h.end - h.first, stride}, h.head_dim,
                        h.first < h.split ? h.q_weight : nullptr, h.q_eps, (h.split - h.first) / h.head_dim,
                        h.split < h.end ? h.k_weight : nullptr, h.k_eps, opt);
}

void head_rms_norm(Matrix x, int64_t head_dim, const float *weight, float eps, const RunOptions &opt) {
    require(weight != nullptr, "head_rms_norm", "weight is a null pointer");
    const int64_t heads = head_dim > 0 ? x.cols / head_dim : 0;
    head_rms_norm_split("head_rms_norm", x, head_dim, weight, eps, heads, weight, eps, opt);
}

void permute_columns(ConstMatrix x, const int32_t *order, Matrix out, const RunOptions &opt) {
    const std::string op = "permute_columns";
    check_tokens(op, x.rows);
    require(x.cols > 0, op, "x has ", x.cols, " columns");
    require(!x.norm, op, "x carries a norm: permute its weights with it, as a matrix of one row");
    check_matrix(op, "x", x.data, x.rows, x.cols, x.stride, x.rows, x.cols);
    check_matrix(op, "out", out.data, out.rows, out.cols, out.stride, x.rows, x.cols);
    require(order != nullptr, op, "order is a null pointer");
    require(x.data != out.data, op, "x and out are the same memory: a gather cannot run in place");
    if (opt.memory != Memory::cuda) {  // a loop of loads: no kernel to gain from
        Place place(op, opt);
        matrix_view(place, "x", x);  // its memory checks
        matrix_view(place, "out", out);
        for (int64_t i = 0; i < x.cols; ++i) {
            require(order[i] >= 0 && order[i] < x.cols, op, "order[", i, "] = ", order[i], " is outside [0, ", x.cols, ")");
        }
        const int64_t xs = x.stride ? x.stride : x.cols, os = out.stride ? out.stride : out.cols;
        for (int64_t n = 0; n < x.rows; ++n) {
            for (int64_t i = 0; i < x.cols; ++i) out.data[n * os + i] = x.data[n * xs + order[i]];
        }
        return;
    }
    ElementwiseCall c(op, Op::permute, x.rows, opt);
    Place &place = c.place;
    auto xv = matrix_view(place, "x", x);
    auto ov = matrix_view(place, "out", out);
    halide_dimension_t dim[1] = {{0, static_cast<int32_t>(x.cols), 1}};
    auto ord = place.view<const int32_t, 1>("order", order, dim);
    run(op, c.v.fn_as<Sig::permute>()(xv.raw_buffer(), ord.raw_buffer(), ov.raw_buffer()));
}

int set_num_threads(int n) {
    if (n < 0) throw Error("set_num_threads: n = " + std::to_string(n) + " must be >= 0 (0: one per core)");
    std::unique_lock<std::shared_mutex> lock(pool_mutex());  // waits for the calls in flight
    const int old = internal::kernel_threads();
    const int now = n > 0 ? n : internal::default_kernel_threads();
    // The pool owns the count; Halide's own pool, which runs none of the
    // kernels' loops, is told too, for any of its parallel-task entry points.
    halide_set_num_threads(now);
    internal::resize_thread_pool(now);  // the next parallel call starts `now` - 1 workers
    internal::kernel_threads() = now;  // what the packed decode kernels split by
    return old;
}

}  // namespace qforge

