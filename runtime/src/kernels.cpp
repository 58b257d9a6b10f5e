// Entry points: validate every pointer and shape, wrap the caller's memory in
// halide_buffer_t views (no copies), run the chosen variant, turn Halide
// runtime errors into qforge::Error.
#include "qforge/kernels.h"

#include "cuda_device.h"
#include "registry.h"

#include "HalideBuffer.h"
#include "HalideRuntime.h"
#ifdef QF_HAVE_CUDA
#include "HalideRuntimeCuda.h"
#endif

#include <algorithm>
#include <cmath>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <sstream>

namespace qforge {
namespace {

using internal::find_variant;

// Halide reports errors through a callback; keep the message for the throw.
thread_local std::string halide_message;
void capture_halide_error(void *, const char *msg) { halide_message = msg; }

void install_error_handler() {
    static std::once_flag once;
    std::call_once(once, [] { halide_set_error_handler(capture_halide_error); });
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

// A [rows, cols] row-major matrix as a Halide buffer with dim 0 = cols.
template <typename T>
View<T> view2d(T *data, int64_t rows, int64_t cols, int64_t stride) {
    halide_dimension_t dims[2] = {{0, static_cast<int32_t>(cols), 1},
                                  {0, static_cast<int32_t>(rows), static_cast<int32_t>(stride)}};
    return View<T>(data, 2, dims);
}

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
        check_pointer(name, data);
        if (!cuda_) return view2d(data, rows, cols, stride);
        // The CUDA kernels assume their inputs' base is 16-byte aligned
        // (their vector loads); outputs may be any sub-view.
        if constexpr (std::is_const_v<T>) {
            require(reinterpret_cast<uintptr_t>(data) % kCudaAlignment == 0, op_,
                    name, " is not 16-byte aligned CUDA memory (the kernels load 16 bytes at a time; "
                          "cudaMalloc gives 256-byte alignment)");
        }
        halide_dimension_t dims[2] = {{0, static_cast<int32_t>(cols), 1},
                                      {0, static_cast<int32_t>(rows), static_cast<int32_t>(stride)}};
        View<T> v(nullptr, 2, dims);
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
                run.p = (new std::vector<float>(std::move(z)))->data();
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

std::string kernel_for(const RunOptions &opt, const std::string &decode, const std::string &prefill,
                       int64_t tokens) {
    if (!opt.kernel.empty()) {
        // kernel@tag: a schedule variant of the kernel (targets.cmake, QF_TUNING_KERNELS).
        const std::string base = opt.kernel.substr(0, opt.kernel.find('@'));
        if (base != decode && base != prefill) {
            throw Error("kernel '" + opt.kernel + "' does not compute this operation (expected " + decode +
                        " or " + prefill + ")");
        }
        return opt.kernel;
    }
    return tokens == 1 ? decode : prefill;
}

void run(const std::string &op, int rc) {
    if (rc != 0) fail(op, "kernel failed: " + halide_message);
}

// Arguments as the generated functions take them.
template <typename T, int D>
halide_buffer_t *arg(Halide::Runtime::Buffer<T, D> &b) { return b.raw_buffer(); }
inline bool arg(bool b) { return b; }
inline float arg(float f) { return f; }

// Runs variant v on its arguments, in its generated signature.
template <typename... A>
void invoke(const std::string &op, const internal::Variant &v, A &&...a) {
    auto fn = reinterpret_cast<int (*)(decltype(arg(a))...)>(v.fn);
    run(op, fn(arg(a)...));
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
    check_matrix(op, "x", x.data, x.rows, x.cols, x.stride, x.rows, in);
    check_norm(op, x);
}

// The kernel that reads norm(x) when x carries a norm.
std::string normed(const std::string &kernel, const ConstMatrix &x) { return x.norm ? kernel + "_norm" : kernel; }

// Runs v on `inputs`, then (when x carries a norm) the norm's weight, bias,
// kind and eps, then `outputs`: the generated order.
template <typename... In, typename... Out>
void invoke_x(const std::string &op, const internal::Variant &v, Place &p, const ConstMatrix &x,
              std::tuple<In &...> inputs, Out &...outputs) {
    std::apply(
        [&](auto &...in) {
            if (!x.norm) return invoke(op, v, in..., outputs...);
            auto weight = p.vec("norm weight", x.norm->weight, x.cols);
            auto bias = p.vec("norm bias", x.norm->bias, x.cols, /*whole=*/true);
            bool layer = x.norm->kind == Norm::Kind::layer;
            float eps = x.norm->eps;
            invoke(op, v, in..., weight, bias, layer, eps, outputs...);
        },
        inputs);
}

// What every f32-activation matmul shares once its weights are checked: x
// (with its norm) and y checked, the decode or prefill variant picked
// (kernel + "_matvec_f32" or "_matmul_f32", "_norm" when x carries a norm,
// then `suffix`), and run on the views `weights(place)` returns (a tuple),
// then x, bias, has_bias, the norm's arguments and y: the generated order.
template <typename WeightViews>
void run_matmul_f32(const std::string &op, const std::string &kernel, const std::string &suffix, int64_t out,
                    int64_t in, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt,
                    WeightViews weights) {
    check_tokens(op, x.rows);
    check_activations(op, x, in);
    check_matrix(op, "y", y.data, y.rows, y.cols, y.stride, x.rows, out);
    install_error_handler();
    Place place(op, opt);
    const auto &v = find_variant(kernel_for(opt, normed(kernel + "_matvec_f32", x) + suffix,
                                            normed(kernel + "_matmul_f32", x) + suffix, x.rows),
                                 opt.target, place.cuda());
    auto wv = weights(place);
    auto xv = matrix_view(place, "x", x);
    auto bv = place.vec("bias", bias, out);
    bool has_bias = bias != nullptr;
    auto yv = matrix_view(place, "y", y);
    std::apply([&](auto &...w) { invoke_x(op, v, place, x, std::tie(w..., xv, bv, has_bias), yv); }, wv);
}

// --- int4g -----------------------------------------------------------------

int64_t int4g_groups(const Int4gWeights &w) { return (w.in + w.group_size - 1) / w.group_size; }

void check_int4g(const std::string &op, const Int4gWeights &w) {
    require(w.weight != nullptr, op, "weight_4bit is a null pointer");
    require(w.scales != nullptr, op, "scales_4bit is a null pointer");
    require(w.out > 0 && w.in > 0, op, "weight shape [", w.out, ", ", w.in, "] must be positive");
    require(w.in % 2 == 0, op, "weight_4bit: in = ", w.in, " is odd; int4g packs two columns per byte");
    require(w.group_size == 32 || w.group_size == 64 || w.group_size == 128, op,
            "group size ", w.group_size, " is not compiled in (32, 64, 128)");
    require(w.weight_stride == 0 || w.weight_stride >= w.in / 2, op,
            "weight_4bit row stride ", w.weight_stride, " is smaller than in/2 = ", w.in / 2);
    require(w.scales_stride == 0 || w.scales_stride >= int4g_groups(w), op,
            "scales_4bit row stride ", w.scales_stride, " is smaller than n_groups = ", int4g_groups(w));
    require(w.out * dense_or(w.weight_stride, w.in / 2) <= kMaxDim, op, "weight_4bit is too large");
}

std::string group_suffix(const Int4gWeights &w) { return "_g" + std::to_string(w.group_size); }

View<const uint8_t> int4g_weight_view(Place &p, const Int4gWeights &w) {
    return p.view("weight_4bit", w.weight, w.out, w.in / 2, dense_or(w.weight_stride, w.in / 2));
}
View<const uint16_t> int4g_scales_view(Place &p, const Int4gWeights &w) {
    return p.view("scales_4bit", w.scales, w.out, int4g_groups(w), dense_or(w.scales_stride, int4g_groups(w)));
}

// --- Q4_K --------------------------------------------------------------------

constexpr int64_t kQK = 256, kQ4KBytes = 144;

void check_q4k(const std::string &op, const Q4KWeights &w) {
    require(w.data != nullptr, op, "Q4_K weight is a null pointer");
    require(w.out > 0 && w.in > 0, op, "weight shape [", w.out, ", ", w.in, "] must be positive");
    require(w.in % kQK == 0, op, "Q4_K weight: in = ", w.in, " is not a multiple of 256 (rows are whole super-blocks)");
    const int64_t row_bytes = w.in / kQK * kQ4KBytes;
    require(w.row_stride == 0 || w.row_stride >= row_bytes, op,
            "Q4_K row stride ", w.row_stride, " is smaller than a row's ", row_bytes, " bytes");
    require(w.out * dense_or(w.row_stride, row_bytes) <= kMaxDim, op, "Q4_K weight is too large");
}

View<const uint8_t> q4k_view(Place &p, const Q4KWeights &w) {
    const int64_t row_bytes = w.in / kQK * kQ4KBytes;
    return p.view("Q4_K weight", w.data, w.out, row_bytes, dense_or(w.row_stride, row_bytes));
}

void check_q8k(const std::string &op, const Q8KActivations &a, int64_t in) {
    require(a.d && a.qs && a.bsums, op, "Q8_K activations: d, qs or bsums is a null pointer");
    check_tokens(op, a.tokens);
    require(a.in == in, op, "Q8_K activations have in = ", a.in, ", the weight has in = ", in);
}

}  // namespace

static int64_t checked_q8k_tokens(int64_t tokens, int64_t in) {
    if (tokens <= 0 || in <= 0 || in % kQK != 0) {
        throw Error(str("Q8KBuffer: [", tokens, ", ", in, "] needs tokens > 0 and in a positive multiple of 256"));
    }
    return tokens;
}

Q8KBuffer::Q8KBuffer(int64_t tokens, int64_t in)
    : tokens_(checked_q8k_tokens(tokens, in)), in_(in), d_(tokens * (in / kQK)), qs_(tokens * in),
      bsums_(tokens * (in / 16)) {}

Q8KActivations Q8KBuffer::view() { return {d_.data(), qs_.data(), bsums_.data(), tokens_, in_}; }

namespace {

// "f32" outputs run `kernel`, f16 ones `kernel` with "_f16" before `suffix`.
std::string dequant_kernel(const std::string &kernel, const std::string &suffix, const Matrix &) { return kernel + suffix; }
std::string dequant_kernel(const std::string &kernel, const std::string &suffix, const MatrixF16 &) {
    return kernel + "_f16" + suffix;
}

// Every dequantizer: checks `out` against [rows, cols], picks the variant
// (dequant_kernel, or the forced one) and calls it with the weight views
// that `views(place)` returns as a tuple, then out.
template <typename Out, typename Views>
void run_dequant(const std::string &op, const std::string &kernel, const std::string &suffix, const Out &out,
                 int64_t rows, int64_t cols, const RunOptions &opt, Views views) {
    check_matrix(op, "out", out.data, out.rows, out.cols, out.stride, rows, cols);
    install_error_handler();
    Place place(op, opt);
    const auto &v =
        find_variant(opt.kernel.empty() ? dequant_kernel(kernel, suffix, out) : opt.kernel, opt.target, place.cuda());
    std::apply([&](auto &&...w) { invoke(op, v, w..., matrix_view(place, "out", out)); }, views(place));
}

template <typename Out>
void int4g_dequant_to(const Int4gWeights &w, Out out, const RunOptions &opt) {
    const std::string op = "int4g_dequant";
    check_int4g(op, w);
    run_dequant(op, op, group_suffix(w), out, w.out, w.in, opt,
                [&](Place &p) { return std::make_tuple(int4g_weight_view(p, w), int4g_scales_view(p, w)); });
}

template <typename Out>
void q4k_dequant_to(const Q4KWeights &w, Out out, const RunOptions &opt) {
    const std::string op = "q4k_dequant";
    check_q4k(op, w);
    run_dequant(op, op, "", out, w.out, w.in, opt, [&](Place &p) { return std::make_tuple(q4k_view(p, w)); });
}

}  // namespace

void int4g_dequant(const Int4gWeights &w, Matrix out, const RunOptions &opt) { int4g_dequant_to(w, out, opt); }
void int4g_dequant(const Int4gWeights &w, MatrixF16 out, const RunOptions &opt) { int4g_dequant_to(w, out, opt); }
void q4k_dequant(const Q4KWeights &w, Matrix out, const RunOptions &opt) { q4k_dequant_to(w, out, opt); }
void q4k_dequant(const Q4KWeights &w, MatrixF16 out, const RunOptions &opt) { q4k_dequant_to(w, out, opt); }

void f16_from_f32(ConstMatrix x, MatrixF16 out, const RunOptions &opt) {
    const std::string op = "f16_from_f32";
    check_tokens(op, x.rows);
    check_activations(op, x, x.cols);
    check_matrix(op, "out", out.data, out.rows, out.cols, out.stride, x.rows, x.cols);
    install_error_handler();
    Place place(op, opt);
    const auto &v = find_variant(opt.kernel.empty() ? normed(op, x) : opt.kernel, opt.target, place.cuda());
    auto xv = matrix_view(place, "x", x);
    auto ov = matrix_view(place, "out", out);
    invoke_x(op, v, place, x, std::tie(xv), ov);
}

void int4g_matmul(const Int4gWeights &w, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt) {
    const std::string op = "int4g_matmul";
    check_int4g(op, w);
    run_matmul_f32(op, "int4g", group_suffix(w), w.out, w.in, x, bias, y, opt, [&](Place &p) {
        return std::make_tuple(int4g_weight_view(p, w), int4g_scales_view(p, w));
    });
}

void q4k_matmul_f32(const Q4KWeights &w, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt) {
    const std::string op = "q4k_matmul_f32";
    check_q4k(op, w);
    run_matmul_f32(op, "q4k", "", w.out, w.in, x, bias, y, opt, [&](Place &p) { return std::make_tuple(q4k_view(p, w)); });
}

void q8k_quantize(ConstMatrix x, const Q8KActivations &a, const RunOptions &opt) {
    const std::string op = "q8k_quantize";
    check_tokens(op, x.rows);
    require(x.cols > 0 && x.cols % kQK == 0, op,
            "x: in = ", x.cols, " is not a positive multiple of 256 (Q8_K blocks)");
    check_activations(op, x, x.cols);
    require(a.d && a.qs && a.bsums, op, "Q8_K output: d, qs or bsums is a null pointer");
    require(a.tokens == x.rows && a.in == x.cols, op,
            "Q8_K output is [", a.tokens, ", ", a.in, "], x is [", x.rows, ", ", x.cols, "]");
    install_error_handler();
    Place place(op, opt);
    const auto &v = find_variant(kernel_for(opt, normed(op, x), normed(op, x), x.rows), opt.target, place.cuda());
    auto xv = matrix_view(place, "x", x);
    auto dv = place.view("Q8_K d", a.d, a.tokens, a.in / kQK, a.in / kQK);
    auto qv = place.view("Q8_K qs", a.qs, a.tokens, a.in, a.in);
    auto sv = place.view("Q8_K bsums", a.bsums, a.tokens, a.in / 16, a.in / 16);
    invoke_x(op, v, place, x, std::tie(xv), dv, qv, sv);
}

void q4k_matmul_q8(const Q4KWeights &w, const Q8KActivations &a, const float *bias, Matrix y,
                   const RunOptions &opt) {
    const std::string op = "q4k_matmul_q8";
    check_q4k(op, w);
    check_q8k(op, a, w.in);
    check_matrix(op, "y", y.data, y.rows, y.cols, y.stride, a.tokens, w.out);
    install_error_handler();
    Place place(op, opt);
    const auto &v = find_variant(kernel_for(opt, "q4k_matvec_q8", "q4k_matmul_q8", a.tokens), opt.target, place.cuda());
    auto wv = q4k_view(place, w);
    auto dv = place.view("Q8_K d", static_cast<const float *>(a.d), a.tokens, a.in / kQK, a.in / kQK);
    auto qv = place.view("Q8_K qs", static_cast<const int8_t *>(a.qs), a.tokens, a.in, a.in);
    auto sv = place.view("Q8_K bsums", static_cast<const int16_t *>(a.bsums), a.tokens, a.in / 16, a.in / 16);
    auto bv = place.vec("bias", bias, w.out);
    auto yv = matrix_view(place, "y", y);
    invoke(op, v, wv, dv, qv, sv, bv, bias != nullptr, yv);
}

// --- block formats and dense weights ------------------------------------------

namespace {

// Kernel-name prefix of each block format.
std::string block_prefix(const std::string &op, DType t) {
    switch (t) {
    case DType::q4_k: return "q4k";
    case DType::q6_k: return "q6k";
    case DType::q8_0: return "q8_0";
    case DType::q4_0: return "q4_0";
    default: fail(op, "weight type " + to_string(t) + " has no kernels (Q4_K, Q6_K, Q8_0, Q4_0 do)");
    }
}

void check_block(const std::string &op, const BlockWeights &w) {
    block_prefix(op, w.type);
    const BlockShape b = block_shape(w.type);
    const std::string name = to_string(w.type) + " weight";
    require(w.data != nullptr, op, name, " is a null pointer");
    require(w.out > 0 && w.in > 0, op, name, " shape [", w.out, ", ", w.in, "] must be positive");
    require(w.in % b.elements == 0, op,
            name, ": in = ", w.in, " is not a multiple of ", b.elements, " (rows are whole blocks)");
    const int64_t row_bytes = w.in / b.elements * b.bytes;
    require(w.row_stride == 0 || w.row_stride >= row_bytes, op,
            name, " row stride ", w.row_stride, " is smaller than a row's ", row_bytes, " bytes");
    require(w.out * dense_or(w.row_stride, row_bytes) <= kMaxDim, op, name, " is too large");
}

View<const uint8_t> block_view(Place &p, const BlockWeights &w) {
    const BlockShape b = block_shape(w.type);
    const int64_t row_bytes = w.in / b.elements * b.bytes;
    return p.view("weight", w.data, w.out, row_bytes, dense_or(w.row_stride, row_bytes));
}

}  // namespace

namespace {

template <typename Out>
void block_dequant_to(const BlockWeights &w, Out out, const RunOptions &opt) {
    const std::string op = "block_dequant";
    check_block(op, w);
    run_dequant(op, block_prefix(op, w.type) + "_dequant", "", out, w.out, w.in, opt,
                [&](Place &p) { return std::make_tuple(block_view(p, w)); });
}

}  // namespace

void block_dequant(const BlockWeights &w, Matrix out, const RunOptions &opt) { block_dequant_to(w, out, opt); }
void block_dequant(const BlockWeights &w, MatrixF16 out, const RunOptions &opt) { block_dequant_to(w, out, opt); }

void block_matmul_f32(const BlockWeights &w, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt) {
    const std::string op = "block_matmul_f32";
    check_block(op, w);
    run_matmul_f32(op, block_prefix(op, w.type), "", w.out, w.in, x, bias, y, opt,
                   [&](Place &p) { return std::make_tuple(block_view(p, w)); });
}

void dense_matmul(const DenseWeights &w, ConstMatrix x, const float *bias, Matrix y, const RunOptions &opt) {
    const std::string op = "dense_matmul";
    require(w.type == DType::f32 || w.type == DType::f16, op, "weight type ", to_string(w.type), " is not F32 or F16");
    check_matrix(op, "weight", w.data, w.out, w.in, w.stride, w.out, w.in);
    require(w.out > 0 && w.in > 0, op, "weight shape [", w.out, ", ", w.in, "] must be positive");
    const int64_t stride = dense_or(w.stride, w.in);
    run_matmul_f32(op, w.type == DType::f32 ? "f32" : "f16", "", w.out, w.in, x, bias, y, opt, [&](Place &p) {
        // The kernel reads f16 weights as halide float16: same bits as uint16.
        using Any = Halide::Runtime::Buffer<const void, 2>;
        Any wv = w.type == DType::f32 ? Any(p.view("weight", static_cast<const float *>(w.data), w.out, w.in, stride))
                                      : Any(p.view("weight", static_cast<const uint16_t *>(w.data), w.out, w.in, stride));
        if (w.type == DType::f16) wv.raw_buffer()->type = halide_type_t(halide_type_float, 16);
        return std::make_tuple(std::move(wv));
    });
}

int set_num_threads(int n) { return halide_set_num_threads(n); }

}  // namespace qforge
