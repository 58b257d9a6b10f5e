// Shared by the fuzz harnesses: the input as a file (the readers open
// paths), and the invariants every accepted file must satisfy. Built with
// QF_HEAP_MAPPING, so the file's bytes are a heap block of exactly its size
// and ASan sees a read one byte past the end.
#pragma once

#include "qforge/gguf.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace qforge::fuzz {

[[noreturn]] inline void violated(const std::string &what) {
    std::fprintf(stderr, "invariant violated: %s\n", what.c_str());
    std::abort();
}

// One in-memory file per process (memfd), rewritten for each input.
inline std::string as_file(const uint8_t *data, size_t size) {
    static const int fd = memfd_create("qforge-fuzz", 0);
    if (fd < 0 || ftruncate(fd, 0) != 0) violated("memfd");
    for (size_t done = 0; done < size;) {
        const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
        if (n <= 0) violated("memfd write");
        done += static_cast<size_t>(n);
    }
    return "/proc/self/fd/" + std::to_string(fd);
}

// Every view lies inside the file, its byte count is its shape's exact
// storage size, and no two views share a byte. Touches every byte of every
// view (ASan reports one outside the file's block).
inline void check_views(const std::vector<TensorView> &views, uint64_t file_size) {
    const uint8_t *base = nullptr;
    uint64_t sum = 0;
    for (const auto &v : views) {
        if (v.offset > file_size || v.bytes > file_size - v.offset) violated("view '" + v.name + "' runs past the file");
        if (!base) base = v.data - v.offset;
        if (v.data != base + v.offset) violated("view '" + v.name + "': data and offset disagree");
        __int128 elements = 1;
        for (int64_t d : v.shape) {
            if (d < 0) violated("negative dimension in '" + v.name + "'");
            elements *= d;
        }
        const BlockShape bs = block_shape(v.type);
        if (elements % bs.elements != 0) violated("'" + v.name + "' is not whole blocks");
        if (elements / bs.elements * bs.bytes != static_cast<__int128>(v.bytes)) violated("'" + v.name + "': bytes != storage size");
        for (uint64_t i = 0; i < v.bytes; ++i) sum += v.data[i];
    }
    std::vector<const TensorView *> order;
    for (const auto &v : views) order.push_back(&v);
    std::sort(order.begin(), order.end(), [](auto *a, auto *b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i) {
        if (order[i - 1]->offset + order[i - 1]->bytes > order[i]->offset) violated("views overlap");
    }
    static volatile uint64_t sink;
    sink = sum;
}

}  // namespace qforge::fuzz
