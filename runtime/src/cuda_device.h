// Internal: the CUDA device as seen through the driver API, loaded with
// dlopen so that qforge links and runs on machines without CUDA.
#pragma once

#include <string>

namespace qforge::internal {

struct CudaDevice {
    bool present = false;
    int major = 0, minor = 0;   // compute capability
    int multiprocessors = 0;
    std::string name;
    std::string why_absent;     // set when !present
};

// The device current for the calling thread's CUDA context, else device 0.
const CudaDevice &cuda_device();

// What the driver says `p` points at: device (or managed) memory, host
// memory, or memory it does not know (plain malloc).
enum class PointerKind { device, host, unknown };
PointerKind cuda_pointer_kind(const void *p);

// The context qforge's CUDA kernels run in: the calling thread's current
// context (the CUDA runtime's primary context when the app uses cudart),
// else device 0's primary context, made current. nullptr without CUDA.
void *cuda_context();

// Thin driver calls for tests and benchmarks; each throws qforge::Error
// naming the call when it fails.
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_upload(void *dst, const void *src, size_t bytes);
void cuda_download(void *dst, const void *src, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);   // device to device, on the default stream
void cuda_synchronize();
// Events on the default stream; elapsed milliseconds between two.
void *cuda_event();
void cuda_record(void *event);
float cuda_elapsed_ms(void *start, void *stop);

}  // namespace qforge::internal
