// Memory for the weights the CPU kernels stream on every call (the packed
// layouts), backed by transparent huge pages where Linux offers them.
//
// Decode reads every weight byte once per call, so with 4 KiB pages each
// call walks the page tables once per 4 KiB of weights, and the hardware
// prefetchers stop at every page boundary. Linux's default THP mode is
// "madvise": only memory that asks gets 2 MiB pages, and it must ask
// before its pages are first touched. BENCHMARKS.md, "Packed weights on
// huge pages", has what it is worth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace qforge::internal {

// Allocations of at least this many bytes are mapped on their own, 2 MiB
// aligned and advised MADV_HUGEPAGE. From 4 KiB up to it they share 16 MiB
// chunks mapped the same way (64-byte aligned), so that a small model's
// layers get huge pages too; smaller ones come from operator new.
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// False where every size comes from operator new: off Linux, and under
// ASan, whose heap red zones catch a kernel reading past its weights.
bool weights_on_huge_pages();

void *allocate_weight_memory(size_t bytes);
void free_weight_memory(void *p, size_t bytes);

template <class T>
struct WeightAllocator {
    using value_type = T;
    WeightAllocator() = default;
    template <class U>
    WeightAllocator(const WeightAllocator<U> &) {}
    T *allocate(size_t n) {
        if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
        return static_cast<T *>(allocate_weight_memory(n * sizeof(T)));
    }
    void deallocate(T *p, size_t n) { free_weight_memory(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const WeightAllocator<U> &) const { return true; }
};

using WeightBytes = std::vector<uint8_t, WeightAllocator<uint8_t>>;

}  // namespace qforge::internal
