// Internal: the table of compiled kernel variants (kernel x target), built
// from targets/ by CMake. Tests and benchmarks iterate over it.
#pragma once

#include <string>
#include <vector>

namespace qforge::internal {

using AnyFn = void (*)();

struct Variant {
    const char *kernel;   // e.g. "q4k_matvec_q8"
    const char *target;   // e.g. "x86-avx2", or "auto"
    AnyFn fn;             // the generated function; its signature is the kernel's
};

struct TargetRow {
    const char *name;
    const char *family;         // "x86", "arm64" or "cuda"
    const char *halide_target;
    const char *features;       // space-separated machine features it needs
};

const std::vector<Variant> &variants();
const std::vector<TargetRow> &target_rows();

// The variant of `kernel` for `target` ("auto" or a target name) on memory
// `cuda` or host; throws qforge::Error if it is not compiled in, this
// machine cannot run it, or it does not run on that memory.
const Variant &find_variant(const std::string &kernel, const std::string &target, bool cuda = false);
bool is_cuda_target(const std::string &target);

// Variants of `kernel` this CPU can run, "auto" included.
std::vector<const Variant *> runnable_variants(const std::string &kernel);

// One feature name as in targets.cmake: a CPU feature, or "cuda" (a CUDA
// device and driver) and "smNN" (its compute capability is at least N.N).
bool machine_has(const std::string &feature);

}  // namespace qforge::internal
