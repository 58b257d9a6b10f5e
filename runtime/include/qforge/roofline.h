// This machine's ceilings, measured: memory read bandwidth (buffers far
// beyond the last-level cache) and peak f32 FMA throughput. Each probe takes
// well under a second.
#pragma once

namespace qforge {

struct Roofline {
    double read_gbs = 0;       // GB/s reading, `threads` threads
    double fma_gflops = 0;     // GFLOP/s of f32 FMA (2 flops each), `threads` threads
    int threads = 0;
};

// threads <= 0: one per core.
Roofline measure_roofline(int threads = 0);

}  // namespace qforge
