// The x86-64 family (SSE4.1, AVX2, AVX-512, AVX-512 VNNI): the shared CPU
// schedules of cpu.h with x86's tile sizes. Two rows per decode tile keep
// the f32 accumulators of a 16-lane AVX-512 rfactor within 32 zmm registers.
#include "cpu.h"

namespace qforge {
namespace {

constexpr cpu::Tuning kX86 = {
    /*decode_tile_rows=*/2, /*prefill_tile_rows=*/2, /*prefill_tile_tokens=*/4,
    /*decode_rows_per_task=*/16, /*prefill_rows_per_task=*/32,
    /*stage_quants=*/true, /*packed_q4k_tile_tokens=*/{4, 8},
    // AVX2 32-blocks at 4 tokens a tile: 4.7 instructions per vpmaddubsw
    // in the hottest loop (56 stack references per 64) against 5.0 at 2.
    // int4g g32, llama-3.1-8b q 4096x4096, 2 threads (qforge_compare, a
    // scratch build swapping only these kernels, 2 alternating runs, per-
    // round ratio to the faster ggml Q4_0 path): 8 tokens 4.61 -> 2.86 ms
    // (1.59x -> 2.65x ggml), 128 tokens 55.3 -> 38.0 ms (1.99x -> 2.17x).
    /*packed_block32_tile_tokens=*/{4, 8},
    /*packed_prefill_rows_per_task=*/128, /*packed_decode_tasks_per_thread=*/4,
    /*packed_decode_min_parallel_bytes=*/1 << 20,
    // Decode only. AVX2 (2-core EPYC, x86-avx2, qforge_compare --tokens 1
    // --threads 1, 3 alternating runs of a build with 8 and one without):
    // Q4_K 1.11-1.45x faster, 12.9-13.6 GB/s against 9.2-11.6. One core
    // streams DRAM at 17-20 GB/s with nothing else to do, at 12-13 GB/s
    // with a kernel's work between its loads (a synthetic loop as fast as
    // ours from cache), and at 16-17 GB/s again with prefetches 8-32 KB
    // ahead: a packed Q4_K super-block of 16 rows is 2368 bytes. AVX-512
    // (VNNI): 4 measured no faster, so none there.
    /*packed_prefetch_blocks=*/{8, 0},
    /*packed_decode_chains=*/2,  // 4: Q4_K measured 35% slower, Q4_0 ~8% faster
    // Packed Q6_K streams its 6 runs per super-block at 7.6 GB/s from DRAM
    // without it, 12-21 GB/s with 1 (4096x4096 decode, 1 thread, 16 rotating
    // copies, x86-avx512-vnni on a 2-core EPYC whose one-core read is 18 GB/s);
    // 2 and 4 were no better. Q4_K, Q4_0 and Q8_0 measured no gain from 1-4.
    /*packed_q6k_prefetch_blocks=*/1,
    // Packed Q5_K decode (4096x4096, medians of 3 alternating rounds, a scratch
    // build swapping only this kernel): AVX-512 VNNI 1.31 -> 0.62 ms with 1
    // (one thread; two threads 0.77-1.08 -> 0.52-0.63), AVX2 1.07 -> 1.43 ms.
    /*packed_q5k_prefetch_blocks=*/{0, 1},
    // AVX2 prefill, 4096x4096, 1 thread, 32 / 128 tokens: IQ4_XS 135 / - ms
    // at 1 token a tile (f32 activations: 129 ms at 32), 53 / 195 at 4,
    // 35 / 146 at 8; IQ4_NL 33 / - at 2, 23 / 88 at 4, 24 / 73 at 8.
    /*packed_iq4_tile_tokens=*/{8, 8},
    // AVX2, 2 tokens a tile: Q6_K prefill 1.5x faster than at 1 (4096x4096,
    // one thread, 8 / 32 / 128 tokens: 17.1 / 64.8 / 258 ms -> 11.0 / 42.0 /
    // 168; hottest loop 8.0 instructions a vpmaddubsw instead of 12.2), and
    // 4 no faster than 1; Q5_K, Q3_K and Q2_K within 3% either way. Q5_K at
    // 4 spills with the sub-block loop (779 instructions, 200 stack
    // references per 128 vpmaddubsw).
    /*packed_q56k_tile_tokens=*/{2, 8},
    /*packed_subblock_loops=*/{1, 0},  // AVX2: see q4k_packed_q8 (cpu.h)
    // One thread reading one contiguous run leaves DRAM latency exposed;
    // several runs read side by side keep more lines in flight. A C loop
    // over 9.7 MB copies, one vpdpbusd per 64 bytes: 9.0 GB/s with one
    // stream, 10.8 with 2, 12.0 with 4, 12.5 with 8 (2-core Intel Xeon VM,
    // AVX-512 VNNI). The kernels, 4096x4096 from DRAM, one thread, qforge_bench
    // medians of 3, two rounds (BENCHMARKS.md, "Decode with several weight
    // streams"): Q4_K 0.96-0.98 ms with 1, 0.86-0.90 with 2, 0.97-0.98 with
    // 4; int4g g32 1.00-1.01, 0.78-0.81, 0.68-0.70 (8: 0.65-0.70); Q6_K
    // 1.63-1.66, 1.53-1.54, 1.84-1.87. With the weight touch (one call per
    // block for the group, packed_touch), Q4_K: 0.89-0.92 ms with 2,
    // 0.85-0.87 with 3 or 4; two threads 0.49-0.50 -> 0.47. AVX2 Q4_K
    // on a 2-core Zen 1 EPYC (x86-avx2, where the kernel is bound by its
    // instructions, not DRAM: as fast from cache), qforge_compare, per-
    // round ratio to the faster ggml path over 3 alternating runs (both
    // without the touch): llama-3.1-8b q 0.82x with 2, 0.98x with 1 (two
    // threads 0.64x, 0.89x); qwen3-0.6b q 0.70x, 1.05x (0.67x, 0.93x).
    // {Q4_K, Q6_K, 32-blocks}, for AVX2, then AVX-512.
    /*packed_decode_streams=*/{{1, 2, 4}, {4, 2, 4}},
    // Prefill, 16 rows x the token tile each: 32-blocks at 2, 4096x4096,
    // 2 rounds: 8 tokens 1.70-1.72 -> 1.36-1.38 ms on one thread, 0.93-0.96
    // -> 0.77 on two; 128 tokens 15.4-15.5 -> 14.6-14.7 and 8.1-8.3 ->
    // 7.7-7.8 (qwen3-0.6b q 2048x1024 on two threads: 1.23-1.24 -> 1.34-1.41).
    // Q4_K at 2 was slower (8 tokens 2.01 -> 2.23-2.30 ms, 128: 16.9 -> 18.0-18.3).
    /*packed_prefill_streams=*/{1, 1, 2},
    // Where the vendor's prefetchnta nest does not run (Intel), decode with
    // a tile's weights prefetched into L1 (prefetcht0) this many blocks
    // ahead (2-core Intel Xeon VM, x86-avx512-vnni, qforge_bench medians of
    // 3, alternating rounds; llama-3.1-8b q 4096x4096, one / two threads):
    // Q4_K 1.01-1.05 -> 0.95-0.97 / 0.57-0.59 -> 0.53-0.54 ms (2 and 4
    // ahead no better); Q6_K 1.79 -> 1.47-1.48 / 0.95 -> 0.77-0.81 (2:
    // 1.53-1.56); int4g g32 0.80-0.82 -> 0.72-0.74 / 0.46-0.47 -> 0.42 (8:
    // 0.76). Small layers (qwen3-0.6b) move by up to about 10% either way
    // (BENCHMARKS.md, "Decode prefetches its weights into L1"). A C loop
    // streaming 2368-byte blocks: t0 1.35-1.5x, t1 and t2 a little less,
    // nta 0.7x. One call per block for a group of S tiles, not per tile
    // (the call spills the tiles' accumulators): Q4_K 0.95 -> 0.89-0.92 ms,
    // int4g g32 qwen3-0.6b q 0.053-0.055 -> 0.049, Q6_K 0.134 -> 0.11.
    // {Q4_K, Q6_K, 32-blocks}, AVX2 then AVX-512. None on AVX2: there
    // the CPUs are mostly AMD, whose kernels run the prefetchnta nest and
    // where the call returns at once, costing its spills (AVX2 Q4_K's
    // loop, 2 tiles: 1533 instructions and 117 stack references with it,
    // 1471 and 45 without; 2-core Zen 1 EPYC, qforge_compare per-round
    // ratio to ggml, 3 alternating runs: llama-3.1-8b q 0.65x -> 0.70x,
    // 8b gate 0.66x -> 0.72x). Untimed on an Intel AVX2 CPU.
    /*packed_decode_touch=*/{{0, 0, 0}, {1, 1, 4}},
    // A block's prefetches spread over calls, one per sub-block dot or
    // group of them (llama-3.1-8b q / gate, one thread, alternating
    // rounds): Q4_K with 1 call 0.885-0.889 / 3.03-3.06 ms, with 8 (one a
    // sub-block) 0.78-0.82 / 2.73-2.80 (touch 2 ahead: 0.80-0.83 / 2.88-2.95);
    // Q6_K with 1 call 1.53 / 5.08-5.16, with 4 1.29-1.30 / 4.42-4.56, 8
    // 1.30-1.32 / 4.68-4.86, 16 1.39-1.45 / 4.82-5.01. The 32-blocks (288
    // bytes a block of a tile) call once a block. The vpmaddubsw form
    // (AVX2) touches once a block.
    /*packed_decode_touch_calls=*/{8, 4, 1},
    // Prefill: the same touch, one call a block in the call's first token
    // tile (packed_touch). Packed Q4_K, 2-core Intel Xeon (Sapphire Rapids,
    // x86-avx512-vnni), two threads, qforge_compare, 2 alternating rounds,
    // none -> this: 8 tokens llama-3.1-8b q 0.974 -> 0.795 ms, 8b gate
    // 3.03 -> 2.42, 3.2-1b gate 0.953 -> 0.749, qwen3-0.6b q 0.134 -> 0.111;
    // 128 tokens 28.1 -> 24.7, 8.36 -> 8.34, 8.03 -> 7.51, 1.17 -> 1.06;
    // 512 tokens (8b q) 32.0 both. A call a sub-block (as decode) was a
    // little faster at 8 tokens (0.706 ms) and 10-15% slower at 128 and 512
    // (its 8 call sites spill in every token tile); a call per token of the
    // tile (before the token test) 10-40% slower at 128. The 32-blocks
    // (int4g g32) gain nothing at 8 tokens (0.590 -> 0.635 ms) and lose
    // 10-20% at 128. Untimed on x86-avx512 (vpmaddubsw) and on AMD, whose
    // runtime call returns at once (its kernels run the prefetchnta nest).
    /*packed_prefill_touch=*/{{0, 0, 0}, {1, 0, 0}},
};

// AMD's cores with AVX-512 (x86-zen4, and host builds that Halide tunes for
// a Zen core): x86's defaults but for packed Q4_K decode (and Q5_K and
// IQ4_XS, which share its defaults). One stream where Intel's Xeon wanted
// four, and no weight touch: the runtime skips it on AMD (its call returns
// at once), and its call sites spill the accumulators (Q4_K's hottest loop
// at one stream: 357 instructions and 137 stack references a super-block
// with them, 246 and 0 without). Measured on a 2-core EPYC 9004 (Zen 4),
// 4096x4096 from DRAM, one thread, scripts/tune.py --try against the x86
// defaults (4 interleaved rounds, medians; two runs): Q4_K 0.85 ms -> 0.45
// with one stream, 0.90 -> 0.42 with one stream and no touch (two streams 1.50x, prefetchnta
// 1-4 blocks ahead 0.78-0.81x); Q5_K and IQ4_XS with x86's defaults 0.35x
// and 0.47x of these. Not taken: Q6_K without the touch sites, 1.47x faster
// (1.63 -> 1.12 ms; one stream 1.23x, both 1.12x), since Q3_K and Q2_K,
// which share its defaults, were 1.17x and 1.33x slower so (cpu::Tuning has
// no default per format); the 32-blocks (int4g g32, 0.38 ms) within 1%
// either way without the touch or with one stream, 0.82x with two, and
// through the layers (qforge_compare, decode, one thread, 4 shapes) 4-9%
// slower without the touch sites; prefill without them, 8 tokens on two
// threads, -9% to +6%.
// The 32-blocks' decode on short rows (shape class "short": layers under
// 4M weights, rows under 2048 columns; the variants targets.cmake builds
// for it): one stream. A tile's row of 1024 columns is 9 KB, and four
// streams of 9 KB restart the prefetchers every 36 KB. int4g g32 against
// x86's four streams (scripts/tune.py --try, interleaved rounds, the
// 2-core EPYC 9004; BENCHMARKS.md, the Zen 4 sections of 2026-12-07 later
// and evening): qwen3-0.6b q 2048x1024 1.53-1.61x and 1.65x (8
// rounds) faster on one thread, 1.37x (1.28-1.55) on two. Longer rows keep
// four: one stream lost on qwen3-0.6b o 1024x2048 (0.85x, one thread),
// down 1024x3072 (0.95x, two) and llama-3.1-8b q (0.90-0.92x; 0.84x on
// two); eight won on one thread (1.14-1.26x) but not on two (0.96-1.15x,
// and 5-18% slower through the layers on three of four shapes). Hence
// eight in the variants for calls on one thread (shape class "one_thread";
// short rows keep "short"'s one stream): BENCHMARKS.md, the Zen 4 sections
// of 2026-12-07 later and night.
constexpr cpu::Tuning zen_tuning() {
    cpu::Tuning t = kX86;
    t.packed_decode_streams.wide.q4k = 1;
    t.packed_decode_touch.wide.q4k = 0;
    t.packed_decode_streams_short.wide.block32 = 1;
    t.packed_decode_streams_one_thread.wide.block32 = 8;
    return t;
}
constexpr cpu::Tuning kZen = zen_tuning();

// Halide 21 emits vpdpbusd only for targets with avx512_zen4 (or
// avx512_sapphirerapids); every other x86 target takes vpmaddubsw.
DotForm x86_dot_form(const Halide::Target &t) {
    using T = Halide::Target;
    return t.has_feature(T::AVX512_Zen4) || t.has_feature(T::AVX512_SapphireRapids) ? DotForm::u8s8_dot4
                                                                                     : DotForm::u8s8_pairs;
}

bool is_x86_cpu(const Halide::Target &t) {
    return t.arch == Halide::Target::X86 && !t.has_gpu_feature();
}

// A target Halide tunes for one of AMD's Zen cores (tune_znver1..5).
bool is_zen_cpu(const Halide::Target &t) {
    using P = Halide::Target::Processor;
    switch (t.processor_tune) {
        case P::ZnVer1: case P::ZnVer2: case P::ZnVer3: case P::ZnVer4: case P::ZnVer5: return is_x86_cpu(t);
        default: return false;
    }
}

// Registered first: schedule_family_for takes the first family that matches.
const ScheduleFamily zen_family = cpu::family<kZen>("x86-zen", is_zen_cpu, x86_dot_form);
const RegisterScheduleFamily zen_registered{&zen_family};

const ScheduleFamily x86_family = cpu::family<kX86>("x86", is_x86_cpu, x86_dot_form);
const RegisterScheduleFamily registered{&x86_family};

}  // namespace
}  // namespace qforge
