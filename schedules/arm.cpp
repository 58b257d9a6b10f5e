// The ARM64 family (NEON, and NEON with the dotprod extension): the shared
// CPU schedules of cpu.h with ARM's tile sizes. NEON has 32 128-bit
// registers but only 4 f32 lanes, so an f32 decode row takes twice AVX2's
// accumulators: 2 rows a tile, as on x86. 4 rows (untimed on an ARM core:
// these kernels run here under qemu only) kept 32 accumulators for Q5_K and
// made the fully unrolled blocks 3-4x as slow to compile (Q5_K with the norm
// 70 s against 18 s, IQ4_XS 59 s against 18 s; x86-avx2 4-5 s). It did not
// spill less: Q5_K's listing has 0.68 stack loads/stores a fmla at 4 rows,
// 1.11 at 2. Time both on an ARM core before trusting either.
#include "cpu.h"

namespace qforge {
namespace {

constexpr cpu::Tuning kArm = {
    /*decode_tile_rows=*/2, /*prefill_tile_rows=*/2, /*prefill_tile_tokens=*/4,
    /*decode_rows_per_task=*/16, /*prefill_rows_per_task=*/32,
    /*stage_quants=*/false, /*packed_q4k_tile_tokens=*/{4, 4}, /*packed_block32_tile_tokens=*/{4, 4},
    /*packed_prefill_rows_per_task=*/128, /*packed_decode_tasks_per_thread=*/4,
    /*packed_decode_min_parallel_bytes=*/1 << 20,
    /*packed_prefetch_blocks=*/{0, 0}, /*packed_decode_chains=*/2,
    /*packed_q6k_prefetch_blocks=*/0,  // untimed on ARM (qemu only)
    /*packed_q5k_prefetch_blocks=*/{0, 0},
    /*packed_iq4_tile_tokens=*/{4, 4},  // as the other packed kernels (untimed)
    /*packed_q56k_tile_tokens=*/{4, 4},
    /*packed_subblock_loops=*/{0, 0},
    // x86 gains from 2-4 (x86.cpp); not measured on an ARM core.
    /*packed_decode_streams=*/{{1, 1, 1}, {1, 1, 1}},
    /*packed_prefill_streams=*/{1, 1, 1},
    /*packed_decode_touch=*/{{0, 0, 0}, {0, 0, 0}},
    /*packed_decode_touch_calls=*/{1, 1, 1},
    /*packed_prefill_touch=*/{{0, 0, 0}, {0, 0, 0}},
};

// sdot/udot take operands of one sign: the nibbles narrow to s8 beside s8 activations.
DotForm arm_dot_form(const Halide::Target &) { return DotForm::s8_dot4; }

bool is_arm_cpu(const Halide::Target &t) {
    return t.arch == Halide::Target::ARM && t.bits == 64 && !t.has_gpu_feature();
}

const ScheduleFamily arm_family = cpu::family<kArm>("arm64", is_arm_cpu, arm_dot_form);
const RegisterScheduleFamily registered{&arm_family};

}  // namespace
}  // namespace qforge
