// CUDA driver queries through dlopen (see cuda_device.h).
#include "cuda_device.h"

#include <dlfcn.h>

#include <cstdint>
#include <string>

#include "qforge/kernels.h"

namespace qforge::internal {
namespace {

// The few driver API entry points used here, with the driver's ABI types.
using CUresult = int;
using CUdevice = int;
using CUcontext = void *;
constexpr int kAttrMajor = 75, kAttrMinor = 76;   // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*
constexpr int kAttrMultiprocessors = 16;          // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
constexpr int kPointerMemoryType = 2;             // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr unsigned kMemHost = 1, kMemDevice = 2, kMemUnified = 4;

struct Driver {
    void *lib = nullptr;
    CUresult (*cuInit)(unsigned) = nullptr;
    CUresult (*cuDeviceGet)(CUdevice *, int) = nullptr;
    CUresult (*cuDeviceGetCount)(int *) = nullptr;
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice) = nullptr;
    CUresult (*cuDeviceGetName)(char *, int, CUdevice) = nullptr;
    CUresult (*cuCtxGetCurrent)(CUcontext *) = nullptr;
    CUresult (*cuCtxGetDevice)(CUdevice *) = nullptr;
    CUresult (*cuPointerGetAttribute)(void *, int, uintptr_t) = nullptr;
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice) = nullptr;
    CUresult (*cuCtxSetCurrent)(CUcontext) = nullptr;
    CUresult (*cuMemAlloc)(uintptr_t *, size_t) = nullptr;
    CUresult (*cuMemFree)(uintptr_t) = nullptr;
    CUresult (*cuMemcpyHtoD)(uintptr_t, const void *, size_t) = nullptr;
    CUresult (*cuMemcpyDtoH)(void *, uintptr_t, size_t) = nullptr;
    CUresult (*cuMemcpyDtoD)(uintptr_t, uintptr_t, size_t) = nullptr;
    CUresult (*cuCtxSynchronize)() = nullptr;
    CUresult (*cuEventCreate)(void **, unsigned) = nullptr;
    CUresult (*cuEventRecord)(void *, void *) = nullptr;
    CUresult (*cuEventSynchronize)(void *) = nullptr;
    CUresult (*cuEventElapsedTime)(float *, void *, void *) = nullptr;
    std::string error;
};

template <typename F>
bool load(void *lib, const char *name, F &fn) {
    fn = reinterpret_cast<F>(dlsym(lib, name));
    return fn != nullptr;
}

const Driver &driver() {
    static const Driver d = [] {
        Driver d;
        d.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!d.lib) {
            d.error = "no CUDA driver (libcuda.so.1 not found)";
            return d;
        }
        bool ok = load(d.lib, "cuInit", d.cuInit) && load(d.lib, "cuDeviceGet", d.cuDeviceGet) &&
                  load(d.lib, "cuDeviceGetCount", d.cuDeviceGetCount) &&
                  load(d.lib, "cuDeviceGetAttribute", d.cuDeviceGetAttribute) &&
                  load(d.lib, "cuDeviceGetName", d.cuDeviceGetName) &&
                  load(d.lib, "cuCtxGetCurrent", d.cuCtxGetCurrent) &&
                  load(d.lib, "cuCtxGetDevice", d.cuCtxGetDevice) &&
                  load(d.lib, "cuPointerGetAttribute", d.cuPointerGetAttribute) &&
                  load(d.lib, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain) &&
                  load(d.lib, "cuCtxSetCurrent", d.cuCtxSetCurrent) && load(d.lib, "cuMemAlloc_v2", d.cuMemAlloc) &&
                  load(d.lib, "cuMemFree_v2", d.cuMemFree) && load(d.lib, "cuMemcpyHtoD_v2", d.cuMemcpyHtoD) &&
                  load(d.lib, "cuMemcpyDtoH_v2", d.cuMemcpyDtoH) && load(d.lib, "cuMemcpyDtoD_v2", d.cuMemcpyDtoD) &&
                  load(d.lib, "cuCtxSynchronize", d.cuCtxSynchronize) &&
                  load(d.lib, "cuEventCreate", d.cuEventCreate) && load(d.lib, "cuEventRecord", d.cuEventRecord) &&
                  load(d.lib, "cuEventSynchronize", d.cuEventSynchronize) &&
                  load(d.lib, "cuEventElapsedTime", d.cuEventElapsedTime);
        if (!ok) {
            d.error = "the CUDA driver lacks a driver API entry point qforge needs";
            d.lib = nullptr;
        } else if (d.cuInit(0) != 0) {
            d.error = "cuInit failed (no usable CUDA device or driver)";
            d.lib = nullptr;
        }
        return d;
    }();
    return d;
}

}  // namespace

const CudaDevice &cuda_device() {
    static const CudaDevice dev = [] {
        CudaDevice c;
        const Driver &d = driver();
        if (!d.lib) {
            c.why_absent = d.error;
            return c;
        }
        int count = 0;
        if (d.cuDeviceGetCount(&count) != 0 || count == 0) {
            c.why_absent = "the CUDA driver reports no device";
            return c;
        }
        CUdevice dev = 0;
        CUcontext ctx = nullptr;
        if (d.cuCtxGetCurrent(&ctx) != 0 || !ctx || d.cuCtxGetDevice(&dev) != 0) {
            d.cuDeviceGet(&dev, 0);
        }
        char name[256] = {0};
        d.cuDeviceGetName(name, sizeof(name) - 1, dev);
        c.name = name;
        d.cuDeviceGetAttribute(&c.major, kAttrMajor, dev);
        d.cuDeviceGetAttribute(&c.minor, kAttrMinor, dev);
        d.cuDeviceGetAttribute(&c.multiprocessors, kAttrMultiprocessors, dev);
        c.present = true;
        return c;
    }();
    return dev;
}

PointerKind cuda_pointer_kind(const void *p) {
    const Driver &d = driver();
    if (!d.lib || !p) return PointerKind::unknown;
    unsigned type = 0;
    if (d.cuPointerGetAttribute(&type, kPointerMemoryType, reinterpret_cast<uintptr_t>(p)) != 0) {
        return PointerKind::unknown;   // memory the driver never saw: plain host memory
    }
    if (type == kMemDevice || type == kMemUnified) return PointerKind::device;
    return type == kMemHost ? PointerKind::host : PointerKind::unknown;
}

namespace {

const Driver &ready_driver() {
    const Driver &d = driver();
    if (!d.lib) throw Error("CUDA: " + d.error);
    cuda_context();
    return d;
}

void check(CUresult rc, const char *call) {
    if (rc != 0) throw Error(std::string("CUDA: ") + call + " failed with error " + std::to_string(rc));
}

}  // namespace

void *cuda_context() {
    const Driver &d = driver();
    if (!d.lib) return nullptr;
    CUcontext ctx = nullptr;
    if (d.cuCtxGetCurrent(&ctx) == 0 && ctx) return ctx;
    CUdevice dev = 0;
    if (d.cuDeviceGet(&dev, 0) != 0 || d.cuDevicePrimaryCtxRetain(&ctx, dev) != 0) return nullptr;
    return d.cuCtxSetCurrent(ctx) == 0 ? ctx : nullptr;
}

void *cuda_alloc(size_t bytes) {
    uintptr_t p = 0;
    check(ready_driver().cuMemAlloc(&p, bytes), "cuMemAlloc");
    return reinterpret_cast<void *>(p);
}
void cuda_free(void *p) {
    if (p) check(ready_driver().cuMemFree(reinterpret_cast<uintptr_t>(p)), "cuMemFree");
}
void cuda_upload(void *dst, const void *src, size_t bytes) {
    check(ready_driver().cuMemcpyHtoD(reinterpret_cast<uintptr_t>(dst), src, bytes), "cuMemcpyHtoD");
}
void cuda_download(void *dst, const void *src, size_t bytes) {
    check(ready_driver().cuMemcpyDtoH(dst, reinterpret_cast<uintptr_t>(src), bytes), "cuMemcpyDtoH");
}
void cuda_copy(void *dst, const void *src, size_t bytes) {
    check(ready_driver().cuMemcpyDtoD(reinterpret_cast<uintptr_t>(dst), reinterpret_cast<uintptr_t>(src), bytes),
          "cuMemcpyDtoD");
}
void cuda_synchronize() { check(ready_driver().cuCtxSynchronize(), "cuCtxSynchronize"); }
void *cuda_event() {
    void *e = nullptr;
    check(ready_driver().cuEventCreate(&e, 0), "cuEventCreate");
    return e;
}
void cuda_record(void *event) { check(ready_driver().cuEventRecord(event, nullptr), "cuEventRecord"); }
float cuda_elapsed_ms(void *start, void *stop) {
    const Driver &d = ready_driver();
    check(d.cuEventSynchronize(stop), "cuEventSynchronize");
    float ms = 0;
    check(d.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
    return ms;
}

}  // namespace qforge::internal
