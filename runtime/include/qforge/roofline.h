// This machine's ceilings, measured: memory read bandwidth (buffers far
// beyond the last-level cache), peak f32 FMA throughput and peak int8
// dot-product throughput (u8 x s8 -> s32: vpdpbusd with AVX-512 VNNI, else
// vpmaddubsw + vpmaddwd). Each probe takes well under a second.
#pragma once

namespace qforge {

struct Roofline {
    double read_gbs = 0;       // GB/s reading, `threads` threads
    double fma_gflops = 0;     // GFLOP/s of f32 FMA (2 flops each), `threads` threads
    double int8_gops = 0;      // G int8 ops/s (multiply and add: 2 per byte pair), `threads` threads; 0 off x86
    int threads = 0;
};

// threads <= 0: one per core.
Roofline measure_roofline(int threads = 0);

}  // namespace qforge
