#include "weight_memory.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace qforge::internal {
namespace {

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QF_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define QF_ASAN 1
#endif

// Under ASan the weights stay on its heap, whose red zones catch a kernel
// that reads past its packed bytes; in a chunk it would read the next
// layer's, in a mapping of its own the rest of a page.
#if defined(__linux__) && defined(MADV_HUGEPAGE) && !defined(QF_ASAN)
#define QF_WEIGHT_HUGE_PAGES 1

// Smaller allocations share chunks of this size, so that the layers of a
// small model (a 1024 x 1024 Q4_K layer is 0.6 MB) sit on huge pages too.
// A chunk is given back when the last allocation in it is freed: weights
// loaded together are freed together, and at most a chunk's worth stays
// mapped for one long-lived layer.
constexpr size_t kChunkBytes = size_t{16} << 20;
constexpr size_t kSmallest = 4096;  // below: operator new
constexpr size_t kAlign = 64;

size_t page_rounded(size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

// `bytes` (a multiple of 4 KiB) at an `align`-aligned address, advised
// MADV_HUGEPAGE before anything touches it.
uint8_t *map_aligned(size_t bytes, size_t align) {
    void *m = mmap(nullptr, bytes + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t base = reinterpret_cast<uintptr_t>(m);
    const uintptr_t aligned = (base + align - 1) / align * align;
    if (aligned > base) munmap(m, aligned - base);
    const uintptr_t end = base + bytes + align;
    if (end > aligned + bytes) munmap(reinterpret_cast<void *>(aligned + bytes), end - (aligned + bytes));
    madvise(reinterpret_cast<void *>(aligned), bytes, MADV_HUGEPAGE);  // advice: with THP "never", 4 KiB pages
    return reinterpret_cast<uint8_t *>(aligned);
}

class Chunks {
public:
    void *allocate(size_t bytes) {
        const size_t size = (bytes + kAlign - 1) / kAlign * kAlign;
        std::lock_guard<std::mutex> lock(mutex_);
        if (!current_ || chunks_[current_].used + size > kChunkBytes) {
            // A full chunk stays until its last allocation is freed.
            current_ = reinterpret_cast<uintptr_t>(map_aligned(kChunkBytes, kChunkBytes));
            chunks_[current_] = Chunk{};
        }
        Chunk &c = chunks_[current_];
        void *p = reinterpret_cast<void *>(current_ + c.used);
        c.used += size;
        ++c.live;
        return p;
    }

    void free(void *p) {
        const uintptr_t base = reinterpret_cast<uintptr_t>(p) / kChunkBytes * kChunkBytes;
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = chunks_.find(base);
        if (it == chunks_.end()) {
            // Only WeightAllocator frees here, and its size picks the same
            // path both ways: a pointer from elsewhere is a bug of ours.
            std::fprintf(stderr, "qforge: internal error: freeing %p, which no weight chunk holds\n", p);
            std::abort();
        }
        if (--it->second.live > 0) return;
        if (base == current_) {
            it->second.used = 0;  // empty again: the next allocations reuse it from the start
        } else {
            munmap(reinterpret_cast<void *>(base), kChunkBytes);
            chunks_.erase(it);
        }
    }

private:
    struct Chunk {
        size_t used = 0, live = 0;
    };
    std::mutex mutex_;
    std::unordered_map<uintptr_t, Chunk> chunks_;  // by base address, kChunkBytes-aligned
    uintptr_t current_ = 0;                         // the chunk the next allocation comes from
};

Chunks &chunks() {
    static Chunks *c = new Chunks;  // never destroyed: layers may outlive static destruction
    return *c;
}
#endif

}  // namespace

bool weights_on_huge_pages() {
#ifdef QF_WEIGHT_HUGE_PAGES
    return true;
#else
    return false;
#endif
}

void *allocate_weight_memory(size_t bytes) {
#ifdef QF_WEIGHT_HUGE_PAGES
    if (bytes >= kHugePageBytes) return map_aligned(page_rounded(bytes), kHugePageBytes);
    if (bytes >= kSmallest) return chunks().allocate(bytes);
#endif
    return ::operator new(bytes);
}

void free_weight_memory(void *p, [[maybe_unused]] size_t bytes) {
    if (!p) return;
#ifdef QF_WEIGHT_HUGE_PAGES
    if (bytes >= kHugePageBytes) {
        munmap(p, page_rounded(bytes));
        return;
    }
    if (bytes >= kSmallest) {
        chunks().free(p);
        return;
    }
#endif
    ::operator delete(p);
}

}  // namespace qforge::internal
