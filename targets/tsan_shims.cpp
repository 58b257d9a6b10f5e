// The TSan build's Halide runtime (LLVM 20) calls __tsan_memcpy and
// __tsan_memset, which clang 14's TSan runtime does not define yet; these
// go through the intercepted libc calls, so TSan still sees the accesses.
#include <cstddef>
#include <cstring>

extern "C" void *__tsan_memcpy(void *dst, const void *src, size_t n) { return std::memcpy(dst, src, n); }
extern "C" void *__tsan_memset(void *dst, int c, size_t n) { return std::memset(dst, c, n); }
extern "C" void *__tsan_memmove(void *dst, const void *src, size_t n) { return std::memmove(dst, src, n); }
