// cuBLAS through dlopen (see cublas.h). The few declarations below are
// cuBLAS's C ABI (cublas_api.h, stable across 12 and 13).
#include "cublas.h"

#include "cuda_device.h"
#include "qforge/error.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace qforge::internal {
namespace {

using Handle = void *;
constexpr int kOpN = 0, kOpT = 1;            // cublasOperation_t
constexpr int kR16F = 2, kR32F = 0;          // cudaDataType_t
constexpr int kCompute32F = 68;              // CUBLAS_COMPUTE_32F
constexpr int kGemmDefault = -1;             // CUBLAS_GEMM_DEFAULT (tensor cores allowed)

struct Api {
    Cublas info;
    int (*create)(Handle *) = nullptr;
    int (*set_stream)(Handle, void *) = nullptr;
    int (*gemm_ex)(Handle, int, int, int, int, int, const void *, const void *, int, int, const void *, int, int,
                   const void *, void *, int, int, int, int) = nullptr;
    int (*sger)(Handle, int, int, const float *, const float *, int, const float *, int, float *, int) = nullptr;
};

template <typename F>
bool load(void *lib, const char *name, F &fn) {
    fn = reinterpret_cast<F>(dlsym(lib, name));
    return fn != nullptr;
}

const Api &api() {
    static Api a;
    static std::once_flag once;
    std::call_once(once, [] {
        std::vector<std::string> names;
        if (const char *env = std::getenv("QF_CUBLAS")) names.push_back(env);
        names.insert(names.end(), {"libcublas.so.13", "libcublas.so.12", "libcublas.so"});
        void *lib = nullptr;
        for (const auto &n : names) {
            if ((lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
        }
        if (!lib) {
            a.info.why_absent = "no libcublas.so.13/.12 found (set QF_CUBLAS to its path)";
            return;
        }
        if (!load(lib, "cublasCreate_v2", a.create) || !load(lib, "cublasSetStream_v2", a.set_stream) ||
            !load(lib, "cublasGemmEx", a.gemm_ex) || !load(lib, "cublasSger_v2", a.sger)) {
            a.info.why_absent = "libcublas lacks cublasCreate_v2, cublasSetStream_v2, cublasGemmEx or cublasSger_v2";
            return;
        }
        a.info.present = true;
    });
    return a;
}

void check(int status, const char *call) {
    if (status != 0) throw Error(std::string(call) + " failed with cuBLAS status " + std::to_string(status));
}

// At least n ones in device memory (the rank-1 update that adds the bias).
const float *ones(int64_t n) {
    static std::mutex mutex;
    static int64_t have = 0;
    static void *p = nullptr;
    std::lock_guard<std::mutex> lock(mutex);
    if (have < n) {
        const int64_t grown = std::max<int64_t>(n, 2 * have);
        std::vector<float> host(grown, 1.0f);
        void *q = cuda_alloc(grown * sizeof(float));  // the old run stays: calls in flight may read it
        cuda_upload(q, host.data(), grown * sizeof(float));
        p = q;
        have = grown;
    }
    return static_cast<const float *>(p);
}

}  // namespace

const Cublas &cublas() { return api().info; }

void cublas_gemm_f16(const uint16_t *w16, const uint16_t *x16, const float *bias, float *y, int64_t out,
                     int64_t in, int64_t tokens, int64_t ldy, void *stream) {
    const Api &a = api();
    if (!a.info.present) throw Error("cuBLAS: " + a.info.why_absent);
    cuda_context();  // the caller's context (or the primary one) is current
    thread_local Handle handle = nullptr;
    if (!handle) check(a.create(&handle), "cublasCreate");
    check(a.set_stream(handle, stream), "cublasSetStream");
    // Column-major view: Y^T [out, tokens] = (W [in, out])^T X^T [in, tokens].
    const float one = 1.0f, zero = 0.0f;
    const int m = static_cast<int>(out), n = static_cast<int>(tokens), k = static_cast<int>(in);
    check(a.gemm_ex(handle, kOpT, kOpN, m, n, k, &one, w16, kR16F, k, x16, kR16F, k, &zero, y, kR32F,
                    static_cast<int>(ldy), kCompute32F, kGemmDefault),
          "cublasGemmEx");
    if (bias) check(a.sger(handle, m, n, &one, bias, 1, ones(n), 1, y, static_cast<int>(ldy)), "cublasSger");
}

}  // namespace qforge::internal
