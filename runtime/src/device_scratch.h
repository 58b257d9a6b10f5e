// Device memory of the layers (internal): copies of host bytes freed with
// their owner, and per-thread, per-stream scratch.
#pragma once

#include <cstdint>
#include <deque>
#include <utility>

#include "cuda_device.h"
#include "qforge/error.h"
#include "qforge/format.h"
#include "qforge/kernels.h"

namespace qforge::internal {

// A device copy of host bytes, freed with the layer.
struct DeviceBuffer {
    void *p = nullptr;
    size_t bytes = 0;
    DeviceBuffer() = default;
    DeviceBuffer(const void *host, size_t n) {
        if (!host || !n) return;
        p = cuda_alloc(n);
        bytes = n;
        cuda_upload(p, host, n);
    }
    static DeviceBuffer allocate(size_t n) {  // uninitialized
        DeviceBuffer b;
        b.p = cuda_alloc(n);
        b.bytes = n;
        return b;
    }
    DeviceBuffer(DeviceBuffer &&o) noexcept { *this = std::move(o); }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
        std::swap(p, o.p);
        std::swap(bytes, o.bytes);
        return *this;
    }
    ~DeviceBuffer() {
        try {
            if (p) cuda_free(p);
        } catch (const Error &) {
            // The driver is gone (process exit): nothing left to free.
        }
    }
};

// Device scratch of GPU layers (Q8_K planes, f16 operands), one per calling
// thread, stream and use: work on one stream runs in order, so the next call
// on it can reuse the memory without waiting, and no call allocates once the
// largest size has been seen.
class DeviceScratch {
public:
    // permuted: act-order x; cutlass_workspace: split-K's partial sums
    enum Use { q8k_planes, f16_weights, f16_activations, ffn_hidden, permuted, cutlass_workspace };

    void *get(void *stream, Use use, size_t bytes) {
        Entry *e = nullptr;
        for (Entry &c : entries_) {
            if (c.stream == stream && c.use == use) e = &c;
        }
        if (!e) {
            e = &entries_.emplace_back();
            e->stream = stream;
            e->use = use;
        }
        if (e->bytes < bytes) {
            cuda_synchronize();  // earlier calls may still read the old memory
            e->buf = DeviceBuffer();
            e->buf.p = cuda_alloc(bytes);
            e->bytes = bytes;
        }
        return e->buf.p;
    }

    Q8KActivations planes(void *stream, int64_t tokens, int64_t in, ActType type) {
        const size_t d_bytes = round_up(tokens * (in / act_block(type)) * 4), qs_bytes = round_up(tokens * in);
        const size_t bytes = d_bytes + qs_bytes + round_up(tokens * (in / act_sum_block(type)) * 2);
        auto *base = static_cast<uint8_t *>(get(stream, q8k_planes, bytes));
        return {reinterpret_cast<float *>(base), reinterpret_cast<int8_t *>(base + d_bytes),
                reinterpret_cast<int16_t *>(base + d_bytes + qs_bytes), tokens, in, type};
    }

private:
    static size_t round_up(int64_t b) { return (static_cast<size_t>(b) + 255) / 256 * 256; }
    struct Entry {
        void *stream = nullptr;
        Use use = q8k_planes;
        DeviceBuffer buf;
        size_t bytes = 0;
    };
    std::deque<Entry> entries_;
};

inline DeviceScratch &device_scratch() {
    thread_local DeviceScratch scratch;
    return scratch;
}

}  // namespace qforge::internal
