// The thread count the packed CPU decode kernels split their rows by
// (schedules/cpu.h, packed_tiles, calls qf_num_threads once per call).
// It lives in its own small library, linked after every kernel library, so
// that any program linking the kernels resolves it, whatever else of the
// runtime it pulls in (a fuzzer linking only the file readers included).
#pragma once

#include <atomic>

namespace qforge::internal {
// Halide's default until set_num_threads changes it: HL_NUM_THREADS (or
// HL_NUMTHREADS), else one per core.
std::atomic<int> &kernel_threads();
// The count for "0" (one per core, unless HL_NUM_THREADS says otherwise).
int default_kernel_threads();
}  // namespace qforge::internal

extern "C" int qf_num_threads();
