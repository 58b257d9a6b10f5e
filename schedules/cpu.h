// The CPU schedules shared by the x86 and ARM families (schedules/x86.cpp,
// schedules/arm.cpp), parameterised by a family's Tuning (its default tile
// sizes). Decode (tokens = 1) streams weight rows: rows are split into
// parallel tasks, a small tile of rows shares each activation load, and the
// reduction over columns is rfactored into vector lanes. Prefill tiles rows
// x tokens in registers and stages one block of unpacked weights in L1.
#pragma once

#include "schedules.h"

#include <algorithm>
#include <vector>

namespace qforge::cpu {

// Tokens per packed prefill tile: {16-register targets, 32-register ones
// (AVX-512, NEON)}. The tile's accumulators and per-token partial sums must
// stay in registers; measured from the assembly of the innermost loop
// (x86, R = 16): AVX-512 VNNI Q4_K at 8 tokens 2.0 instructions per
// vpdpbusd (4 tokens: 2.2). AVX2 spills from 2 tokens (Q4_K: 419 stack
// moves per 256 vpmaddubsw, whole super-block unrolled) yet measures fastest
// at 4, where each weight load and unpack serves more dots (x86.cpp).
struct TileTokens {
    int narrow, wide;
};
// A knob measured apart for those two kinds of target.
using ByWidth = TileTokens;

// A packed kernel default per kernel family: Q4_K (with Q5_K, IQ4_XS),
// Q6_K (with Q3_K, Q2_K), the 32-blocks.
struct PerPacked {
    int q4k, q6k, block32;
    int of(PackedKind kind) const { return kind == PackedKind::q4k ? q4k : kind == PackedKind::q6k ? q6k : block32; }
};
// PerPacked measured apart for the two kinds of target (see ByWidth).
struct PerPackedByWidth {
    PerPacked narrow, wide;
};

// A family's defaults, used where a knob is 0.
struct Tuning {
    int decode_tile_rows;
    int prefill_tile_rows;
    int prefill_tile_tokens;
    int decode_rows_per_task;
    int prefill_rows_per_task;
    // Stage one block's unpacked u8 quants in L1 before the integer dot
    // (x86: the u8 x s8 shape of vpdpbusd). Left inline, the nibbles are
    // provably under 128 and become s8, the shape of ARM's sdot.
    bool stage_quants;
    TileTokens packed_q4k_tile_tokens;      // tokens per register tile of the packed prefill kernels
    TileTokens packed_block32_tile_tokens;
    int packed_prefill_rows_per_task;  // rows sharing one staging of a token tile's activations
    int packed_decode_tasks_per_thread;  // parallel tasks a packed decode kernel splits its rows into, per thread
    int packed_decode_min_parallel_bytes;  // below this many weight bytes, one task
    ByWidth packed_prefetch_blocks;    // Q4_K super-blocks the decode's weight prefetch runs ahead (0: none)
    int packed_decode_chains;          // independent accumulators of one block's integer dot in decode
    int packed_q6k_prefetch_blocks;    // as packed_prefetch_blocks, for packed Q6_K
    ByWidth packed_q5k_prefetch_blocks;  // as packed_prefetch_blocks, for packed Q5_K
    // Tokens per register tile of the IQ4 kernels (levels looked up by a
    // select tree: the more tokens share one lookup, the better).
    TileTokens packed_iq4_tile_tokens;
    TileTokens packed_q56k_tile_tokens;  // as packed_q4k_tile_tokens, for packed Q5_K and Q6_K
    // Outer sub-block dims of a packed K-quant prefill tile (T > 1) kept as
    // loops rather than unrolled (0: the whole super-block unrolled).
    ByWidth packed_subblock_loops;
    // Row tiles a packed kernel computes together, a block of each in turn,
    // so that that many weight streams are in flight (0 or 1: one).
    PerPackedByWidth packed_decode_streams;
    PerPacked packed_prefill_streams;
    // Decode: blocks ahead of the loop that a tile's weights are prefetched
    // into L1 with prefetcht0 (packed_touch; 0: none), and the calls a
    // block's prefetches are spread over.
    PerPackedByWidth packed_decode_touch;
    PerPacked packed_decode_touch_calls;
    // Prefill: the same, in a call's first token tile only (the pass that
    // streams a task's weights from DRAM; the later token tiles find them
    // in L2), one call a block.
    PerPackedByWidth packed_prefill_touch;
    // Decode: row tiles computed together in the variants built for calls
    // of the "short" shape class (small layers of rows under 2048 columns,
    // targets/knobs.json; a target builds them where targets.cmake's
    // QF_CLASS_VARIANTS says so); 0: as packed_decode_streams. A stream per
    // tile pays its start (the prefetchers' training) once per row, so
    // short rows may want fewer.
    PerPackedByWidth packed_decode_streams_short = {};
    // The same for the "one_thread" class (calls on one kernel thread,
    // whatever their shape, unless "short" holds them): one thread's weight
    // stream leaves its core's loads less to overlap than two threads' do.
    PerPackedByWidth packed_decode_streams_one_thread = {};
};

using namespace Halide;

inline int pick(int knob, int fallback) { return knob > 0 ? knob : fallback; }

inline int f32_lanes(const Target &t, const Knobs &k) {
    return pick(k.vector_width, t.natural_vector_size<float>());
}

constexpr TailStrategy kGuard = TailStrategy::GuardWithIf;

// Targets with 32 vector registers (AVX-512, NEON) rather than 16; a
// ByWidth knob takes its `wide` value there.
inline bool wide_target(const Target &t) { return t.arch == Target::ARM || t.has_feature(Target::AVX512); }

// Rows of an f32 decode tile: the family's default, cut until the tile's
// accumulators (rows x vectors a row) take at most half the vector
// registers, the rest holding the activations and the dequantized weights.
// int4g g128 on x86-avx2 (8 vectors a row) drops to one row: llama-3.1-8b q
// 6.33-6.50 ms against 6.49-6.65 with two (qforge_bench, one thread, 3
// alternating runs, a 2-core Zen 1 EPYC).
inline int f32_decode_rows(int rows, int vectors_per_row, const Target &t) {
    const int budget = (wide_target(t) ? 32 : 16) / 2;
    return std::max(1, std::min(rows, budget / vectors_per_row));
}

// Lanes of a packed tile's row vectors (0: all R rows in one vector): the
// vector_width knob of a packed kernel where it is below R. Each packed
// schedule computes it once and passes it to the helpers below.
// x86-avx512-vnni with 8 (ymm vpdpbusd, 16 rows in two vectors): Q4_K
// decode 1.11-1.15x ggml on one thread of an Intel Xeon against 1.00-1.02x
// with zmm; not measured on AMD, so not the default.
inline int packed_lanes(const Knobs &k, int R) { return k.vector_width > 0 && k.vector_width < R ? k.vector_width : 0; }

// A packed tile's rows as vectors: one R-lane vector (V = 0), or vectors of
// V rows, unrolled.
template <typename S>
S vec_rows(S s, const Var &r, int V) {
    if (V <= 0) return s.vectorize(r);
    Var rv(r.name() + "_v" + std::to_string(V));
    return s.split(r, r, rv, V).vectorize(rv).unroll(r);
}

// Rows split into tiles of `tile_rows` rows (and `tile_tokens` tokens in
// prefill), tiles grouped into parallel tasks of about `rows_per_task` rows
// (in prefill, one task per rows x token-tile pair). Returns the loop level
// at which a tile's accumulators live.
inline LoopLevel tile_output(Func y, Var r, Var n, const Knobs &k, int tile_rows, int tile_tokens,
                      int rows_per_task) {
    Var rt("rt"), ri("ri"), rc("rc"), nt("nt"), ni("ni");
    const int tiles_per_task = std::max(rows_per_task / tile_rows, 1);
    // Tiles first, then tasks of whole tiles: every guard sits on the tile's
    // own loop, so a producer computed at the tile is clamped to real rows.
    std::vector<VarOrRVar> order;
    if (tile_rows > 1) {
        y.split(r, rt, ri, tile_rows, kGuard);
        order.push_back(ri);
    } else {
        y.rename(r, rt);
    }
    if (k.prefill && tile_tokens > 1) {
        y.split(n, nt, ni, tile_tokens, kGuard);
        order.push_back(ni);
    } else {
        y.rename(n, nt);
    }
    y.split(rt, rc, rt, tiles_per_task, kGuard);
    if (k.prefill) {
        // Tasks over rows and token tiles both; consecutive tasks share rows.
        Var task("task");
        order.insert(order.end(), {rt, nt, rc});
        y.reorder(order).fuse(nt, rc, task).parallel(task);
    } else {
        order.insert(order.end(), {rt, rc, nt});
        y.reorder(order).parallel(rc);
    }
    return LoopLevel(y, rt);
}

// Accumulators of one register tile: lanes innermost in storage, and the
// tile's full constant extent even for the last, partial tile (inputs are
// row-clamped by the generators), so LLVM keeps them in registers.
inline void register_tile(Func f, Var u, Var r, Var n, int tile_rows, int tile_tokens) {
    f.reorder_storage(u, r, n).bound_extent(r, tile_rows).bound_extent(n, tile_tokens);
}

// The `unroll` knob: unroll the reduction over blocks/groups by that factor.
// Returns the loop that now walks one block (where per-block staging goes).
inline RVar unroll_reduction(Stage s, RVar rv, const Knobs &k) {
    if (k.unroll <= 1) return rv;
    RVar outer(rv.name() + "_o"), inner(rv.name() + "_i");
    s.split(rv, outer, inner, k.unroll, kGuard).unroll(inner);
    return inner;
}

template <const Tuning &D>
void dequant(DequantFuncs &f, const Target &t, const Knobs &k) {
    Var ro("ro"), ri("ri"), co("co"), ci("ci");
    f.out.split(f.r, ro, ri, pick(k.rows_per_task, 8), kGuard).parallel(ro);
    if (f.block >= 16) {
        // One block's scales per vector.
        f.out.split(f.c, co, ci, f.block).vectorize(ci, std::min(f.block, 2 * f32_lanes(t, k)));
    } else {
        f.out.vectorize(f.c, 2 * f32_lanes(t, k), kGuard);
    }
}

template <const Tuning &D>
void group_matmul(GroupMatmulFuncs &f, const Target &t, const Knobs &k) {
    const int V = f32_lanes(t, k);
    const int run = f.group_size / f.interleave;  // lanes of the rfactored reduction
    const int lanes = std::min(V, run);
    const int vectors = run / lanes;
    const int tile_rows = pick(k.tile_rows, k.prefill ? std::max(1, 2 * D.prefill_tile_rows / vectors)
                                                      : f32_decode_rows(D.decode_tile_rows, vectors, t));
    const int tile_tokens = pick(k.tile_tokens, k.prefill ? D.prefill_tile_tokens : 1);
    LoopLevel tile = tile_output(f.y, f.r, f.n, k, tile_rows, tile_tokens,
                                 pick(k.rows_per_task, k.prefill ? D.prefill_rows_per_task : D.decode_rows_per_task));

    Var u("u"), uo("uo"), ui("ui");
    RVar p = f.main.x, kk = f.main.y, g = f.main.z;
    Func intm = f.acc.update(0).rfactor(kk, u);
    if (f.acc.num_update_definitions() > 1) {
        f.acc.update(1).unscheduled();  // the tail of a partial last group: under G columns
    }
    f.acc.compute_at(tile).bound_extent(f.r, tile_rows).bound_extent(f.n, tile_tokens);
    register_tile(intm, u, f.r, f.n, tile_rows, tile_tokens);
    intm.compute_at(tile).vectorize(u, lanes, kGuard);
    intm.update()
        .split(u, uo, ui, lanes, kGuard)
        .reorder(ui, p, uo, f.r, f.n, g)
        .vectorize(ui)
        .unroll(p)
        .unroll(uo)
        .unroll(f.r)
        .unroll(f.n);
    const RVar group = unroll_reduction(intm.update(), g, k);
    if (k.prefill) {
        // One group of the tile's rows dequantized into L1, reused by every token.
        f.wq.compute_at(intm, group).vectorize(f.c, V, kGuard);
    }
}

template <const Tuning &D>
void q4k_matmul_f32(Q4KMatmulF32Funcs &f, const Target &t, const Knobs &k) {
    const int V = f32_lanes(t, k);
    const int lanes = std::min(V, 32);
    const int tile_rows = pick(k.tile_rows, k.prefill ? D.prefill_tile_rows : f32_decode_rows(D.decode_tile_rows, 32 / lanes, t));
    const int tile_tokens = pick(k.tile_tokens, k.prefill ? D.prefill_tile_tokens : 1);
    LoopLevel tile = tile_output(f.y, f.r, f.n, k, tile_rows, tile_tokens,
                                 pick(k.rows_per_task, k.prefill ? D.prefill_rows_per_task : D.decode_rows_per_task));

    // Per-sub-block sums of x: once per call, shared by every row.
    f.xsum.compute_root().parallel(f.n);
    f.xsum.update().unscheduled();
    // Sub-block scales and mins of the tile's rows, decoded once per row.
    f.scale.compute_at(tile).vectorize(f.j);
    f.neg_min.compute_at(tile).vectorize(f.j);

    Var u("u"), uo("uo"), ui("ui"), v("v");
    RVar ml = f.main.x, mj = f.main.y, mb = f.main.z;
    Func intm = f.acc.update(0).rfactor(ml, u);
    Func mins = f.acc.update(1).rfactor(f.mins.x, v);
    f.acc.compute_at(tile).bound_extent(f.r, tile_rows).bound_extent(f.n, tile_tokens);
    register_tile(intm, u, f.r, f.n, tile_rows, tile_tokens);
    register_tile(mins, v, f.r, f.n, tile_rows, tile_tokens);
    intm.compute_at(tile).vectorize(u, lanes);
    intm.update()
        .split(u, uo, ui, lanes)
        .reorder(ui, uo, f.r, f.n, mj, mb)
        .vectorize(ui)
        .unroll(uo)
        .unroll(f.r)
        .unroll(f.n)
        .unroll(mj);
    const RVar block = unroll_reduction(intm.update(), mb, k);
    mins.compute_at(tile).vectorize(v);
    mins.update().reorder(v, f.r, f.n, f.mins.y).vectorize(v).unroll(f.r).unroll(f.n);
    if (k.prefill) {
        f.wq.compute_at(intm, block).vectorize(f.l, lanes);
    }
}

// Tokens a task of the activation quantizers: one call quantizes a
// token of 1024 values in under a microsecond, and each of their stages is
// a parallel loop of its own, so two threads slowed 8 tokens down (1 thread
// 5.2 us, 2 threads 11.9; Q8_K, in 1024) where one task runs on the
// calling thread alone.
constexpr int kQuantizeTokens = 16;

template <const Tuning &D>
void q8k_quantize(Q8KQuantizeFuncs &f, const Target &t, const Knobs &k) {
    const int V = f32_lanes(t, k);
    // Per-block statistics feed both qs and d: computed once, before either.
    for (Func s : {f.amax, f.first, f.iscale}) {
        s.compute_root().parallel(f.n, kQuantizeTokens, kGuard);
    }
    // amax and first reduce a block in vector lanes (rfactor), then across
    // them: as scalar loops they cost more than the rest of the quantizer,
    // most of all with a fused norm inline (measured: q8k_quantize_norm made
    // a Llama-3.1-8B QKV decode 18% slower than norm-then-quantize).
    for (Func s : {f.amax, f.first}) {
        RVar eo("eo"), ei("ei");
        Var u("u");
        Func lanes = s.update().split(f.e.x, eo, ei, V).rfactor(ei, u);
        s.update().parallel(f.n, kQuantizeTokens, kGuard);
        lanes.compute_at(s, f.b).vectorize(u);
        lanes.update().vectorize(u);
    }
    // qs a block at a time (in is a multiple of 256, from 0): its scale one
    // broadcast, where lanes that Halide cannot prove share a block gather
    // it lane by lane (96 inserts in the loop).
    Var cb("cb"), ci("ci");
    f.qs.output_buffer().dim(0).set_min(0);
    f.qs.split(f.c, cb, ci, 256, TailStrategy::RoundUp).vectorize(ci, V).parallel(f.n, kQuantizeTokens, kGuard);
    f.d.parallel(f.n, kQuantizeTokens, kGuard);
    // bsums rounds its 16 values again (the generator writes it from the
    // values, not from qs): a group's 16 contiguous values in one vector,
    // reduced across its lanes.
    f.bsums.vectorize(f.g, V, kGuard).parallel(f.n, kQuantizeTokens, kGuard);
    f.bsums.update().reorder(f.t.x, f.g, f.n).atomic().vectorize(f.t.x).parallel(f.n, kQuantizeTokens, kGuard);
}

template <const Tuning &D>
void q8_0_quantize(Q80QuantizeFuncs &f, const Target &t, const Knobs &k) {
    const int V = f32_lanes(t, k);
    // A block's 32 contiguous values reduced in vectors: with a block a
    // lane, every lane loads x 32 values apart, a scalar load and insert
    // each (as q8k_quantize's bsums did: 8 tokens of 1024, 14.3 -> 9.8 us).
    f.amax.compute_root().parallel(f.n, kQuantizeTokens, kGuard).vectorize(f.b, V, kGuard);
    f.amax.update().reorder(f.e.x, f.b, f.n).atomic().vectorize(f.e.x).parallel(f.n, kQuantizeTokens, kGuard);
    f.iscale.compute_root().parallel(f.n, kQuantizeTokens, kGuard).vectorize(f.b, V, kGuard);
    // A block of qs at a time (in is a multiple of 32, from 0): its scale
    // one broadcast (q8k_quantize's qs).
    Var cb("cb"), ci("ci");
    f.qs.output_buffer().dim(0).set_min(0);
    f.qs.split(f.c, cb, ci, 32, TailStrategy::RoundUp).vectorize(ci).parallel(f.n, kQuantizeTokens, kGuard);
    f.d.vectorize(f.b, V, kGuard).parallel(f.n, kQuantizeTokens, kGuard);
    f.sums.parallel(f.n, kQuantizeTokens, kGuard);
    f.sums.update().reorder(f.e.x, f.b, f.n).atomic().vectorize(f.e.x).parallel(f.n, kQuantizeTokens, kGuard);
}

// Statistics of a fused norm, once per call before the kernel (every
// normalised value needs them): per token, vector partial sums of x and of
// its squared deviations, then two scalars.
template <const Tuning &D>
void norm_stats(NormFuncs &f, const Target &t, const Knobs &k) {
    const int V = f32_lanes(t, k);
    for (Func s : {f.sum, f.sq}) {
        RVar eo("eo"), ei("ei");
        Var u("u");
        Func intm = s.update().split(f.reduction.x, eo, ei, V, kGuard).rfactor(ei, u);
        s.compute_root().parallel(f.n);
        s.update().parallel(f.n);
        intm.compute_at(s, f.n).vectorize(u);
        intm.update().vectorize(u);
    }
    f.mean.compute_root();
    f.inv.compute_root();
}

template <const Tuning &D>
void block_matmul_q8(BlockMatmulQ8Funcs &f, const Target &t, const Knobs &k) {
    const int tile_rows = pick(k.tile_rows, k.prefill ? D.prefill_tile_rows : D.decode_tile_rows);
    const int tile_tokens = pick(k.tile_tokens, k.prefill ? D.prefill_tile_tokens : 1);
    LoopLevel tile = tile_output(f.y, f.r, f.n, k, tile_rows, tile_tokens,
                                 pick(k.rows_per_task, k.prefill ? D.prefill_rows_per_task : D.decode_rows_per_task));

    Var u("u");
    RVar mk = f.main.x, mb = f.main.y;
    Func intm = f.acc.update(0).rfactor(mk, u);
    if (f.bmin.defined()) f.acc.update(1).unscheduled();  // the min term: one scalar per block
    f.acc.compute_at(tile).bound_extent(f.r, tile_rows).bound_extent(f.n, tile_tokens);
    register_tile(intm, u, f.r, f.n, tile_rows, tile_tokens);
    intm.compute_at(tile).vectorize(u);
    intm.update().reorder(u, f.n, f.r, mb).vectorize(u).unroll(f.n).unroll(f.r);
    const RVar block = unroll_reduction(intm.update(), mb, k);

    // One block's integer dot products: 8 lanes of dot4, one per group of 4 bytes.
    f.bdot.compute_at(intm, f.n).vectorize(f.k);
    f.bdot.update().vectorize(f.k).unroll(f.sub);
    f.dot4.compute_at(f.bdot, f.sub).vectorize(f.k);
    f.dot4.update().atomic(true).vectorize(f.t).vectorize(f.k);
    if (f.bmin.defined()) {
        f.bmin.compute_at(f.acc, f.mins.x);
        f.bmin.update().atomic(true).vectorize(f.msub);
    }
    if (D.stage_quants) {
        f.quants.compute_at(intm, block).vectorize(f.l, 32);
    }
}

// Tokens per register tile of a packed kernel.
inline int packed_tile_T(const Knobs &k, int prefill_tokens) { return pick(k.tile_tokens, k.prefill ? prefill_tokens : 1); }

// The loops of a packed kernel that its per-block Funcs are scheduled at.
struct PackedLoops {
    RVar block;          // acc's loop over blocks
    LoopLevel per_tile;  // where one block of one tile is computed
};

// Packed Q4_K x Q8_K. Lanes are rows of the tile (R of them), so every
// vector op serves R rows and the activation bytes are broadcast; a tile
// is rows x tokens (tokens: tile_tokens in prefill, 1 in decode), and one
// pass over a tile's packed bytes serves all its tokens. A sub-block's
// integer dot is folded into sacc as soon as it is done, so only the tile's
// acc, sacc and one part per token stay live in registers.
// The output of a packed kernel: tiles of R rows (the lanes) x T tokens,
// tiles grouped into parallel tasks; acc(r, t, n) is the tile's
// accumulator, reduced over `blocks`. Returns the loop over blocks.
// In prefill, a task is `rows_per_task` rows x all tokens: for each token
// tile its activations are staged once (act4 interleaved by token, so that
// one pointer serves the tile and no token index is clamped in the loop)
// and reused by every row tile of the task, whose packed weights stay in L2.
// With the head_norm epilogue (`head`), a task is whole heads: each head's
// pre (its tiles, as above) is computed for the token tile, then its sums
// of squares, then y's stores, while the head is in L1.
template <const Tuning &D>
PackedLoops packed_tiles(Func y, Func acc, ImageParam weight, Var o, Var n, Var r, Var t, RDom blocks, int R, int pairs,
                         const Knobs &k, Func act4, Func act_d, Func act_sum, int prefill_tokens, int streams,
                         HeadNormEpilogue head) {
    const int T = packed_tile_T(k, prefill_tokens);
    const int V = packed_lanes(k, R);
    // S row tiles at once, a block of each in turn, so that S streams of
    // weights are in flight (the generators clamp the tile index for a
    // last, partial group).
    const int S = head.defined() ? 1 : std::max(pick(k.streams, streams), 1);
    Expr tiles_per_task = std::max(pick(k.rows_per_task, k.prefill ? D.packed_prefill_rows_per_task : D.decode_rows_per_task) / R, 1);
    if (!k.prefill && k.rows_per_task == 0) {
        // Decode: a few long contiguous runs (one per task) rather than many
        // short ones, so that each thread's stream stays prefetched; and one
        // task, on the calling thread, for a layer too small to gain from
        // two. Measured (x86-avx512-vnni, 2-core EPYC, packed Q4_K streamed
        // from DRAM by a scratch harness, not committed: matmul on packed
        // weights rotated through copies larger than L3): 2 threads vs 1 were
        // 0.95x at 152 KB, 1.07x at 303 KB, 1.11x at 606 KB, 0.99x at 1.2 MB,
        // 1.15x at 2.4 MB, 1.10x at 4.9 MB, 1.26x at 9.7 MB.
        // The tasks scale with the threads that the runtime runs now
        // (qf_num_threads, targets/kernel_threads.cpp): a count fixed for two
        // cores would leave the rest of a larger machine idle.
        Expr tiles = (y.output_buffer().dim(0).extent() + (R - 1)) / R;
        Expr bytes = cast<int64_t>(tiles) * pairs * weight.dim(0).extent() * weight.dim(1).extent();
        Expr threads = max(Internal::Call::make(Int(32), "qf_num_threads", {}, Internal::Call::PureExtern), 1);
        Expr tasks = D.packed_decode_tasks_per_thread * threads;
        tiles_per_task = select(bytes < cast<int64_t>(D.packed_decode_min_parallel_bytes), tiles,
                                max(tiles_per_task, (tiles + (tasks - 1)) / tasks));
    }
    Var ot("ot"), ri("ri"), task("task"), nt("nt"), ni("ni"), hh("hh"), os("os");
    y.split(o, ot, ri, R, kGuard);
    vec_rows(y, ri, V);
    if (S > 1) {
        y.split(ot, ot, os, S, kGuard);
        tiles_per_task = max((tiles_per_task + (S - 1)) / S, 1);
    }
    // The loop of the tiles' (or the heads') tasks, and the loop of one tile.
    Var unit = ot;
    LoopLevel tile_at(y, ot);
    if (head.defined()) {
        y.split(ot, hh, ot, head.tiles_per_head, kGuard);
        tiles_per_task = max(tiles_per_task / head.tiles_per_head, 1);
        unit = hh;
    }
    y.split(unit, task, unit, tiles_per_task, kGuard);
    if (head.defined()) {
        if (k.prefill) {
            y.split(n, nt, ni, T, kGuard).reorder(ri, ni, ot, hh, nt, task);
        } else {
            y.rename(n, nt).reorder(ri, ot, nt, hh, task);
        }
        // pre: the head's tiles (acc at each), stored once per token tile
        // (a task's heads x T tokens; not malloc per head); then its sums
        // of squares, rfactored into the R lanes.
        const std::vector<Var> pa = head.pre.args();  // r, t, n
        head.pre.compute_at(y, hh).store_at(y, k.prefill ? nt : task).reorder(pa[0], pa[2], pa[1]);
        vec_rows(head.pre, pa[0], V);
        const std::vector<Var> sa = head.sq.args();  // h, n
        head.sq.compute_at(y, hh).bound_extent(sa[0], 1).bound_extent(sa[1], T);
        Var u("u");
        Func lanes = head.sq.update().rfactor(head.e.x, u);
        lanes.compute_at(head.sq, Var::outermost()).vectorize(u);
        lanes.update().reorder(u, head.e.y).vectorize(u);
        tile_at = LoopLevel(head.pre, pa[1]);
    }
    if (k.prefill) {
        if (!head.defined() && S > 1) {
            y.split(n, nt, ni, T, kGuard).reorder(ri, ni, os, ot, nt, task);
        } else if (!head.defined()) {
            y.split(n, nt, ni, T, kGuard).reorder(ri, ni, ot, nt, task);
        }
        const std::vector<Var> a4 = act4.args();
        act4.compute_at(y, nt).reorder_storage(a4[0], a4[2], a4[1]).reorder(a4[0], a4[2], a4[1]).vectorize(a4[0]).unroll(a4[2]);
        for (Func f : {act_d, act_sum}) {
            std::vector<Var> order = f.args();  // tokens (the last) first
            std::rotate(order.begin(), order.end() - 1, order.end());
            f.compute_at(y, nt).reorder_storage(order);
        }
    } else {
        if (!head.defined() && S > 1) {
            y.rename(n, nt).reorder(ri, os, ot, nt, task);
        } else if (!head.defined()) {
            y.rename(n, nt).reorder(ri, ot, nt, task);
        }
        // The per-block activation sums, once per call rather than once per
        // row tile (Q4_K's pair up bsums: 24 scalar instructions a
        // super-block in the loop otherwise).
        act_sum.compute_root();
    }
    y.parallel(task);
    // One tile: its row tile t is exactly one (o / R over R aligned rows;
    // with the glu epilogue a gate tile and an up tile, one after the
    // other), which bounds inference cannot prove by itself.
    vec_rows(acc.compute_at(tile_at).bound_extent(r, R).bound_extent(t, pairs * S).bound_extent(n, T), r, V).unroll(n);
    if (S > 1) {
        // A block of each tile in turn (glu: of each gate and up tile).
        vec_rows(acc.update().reorder(r, n, t, blocks.x), r, V).unroll(n).unroll(t);
        return {unroll_reduction(acc.update(), blocks.x, k), LoopLevel(acc, t)};
    }
    vec_rows(acc.update().reorder(r, n, blocks.x, t), r, V).unroll(n);  // glu: the gate tile, then the up tile
    const RVar block = unroll_reduction(acc.update(), blocks.x, k);
    return {block, LoopLevel(acc, block)};
}

// A ByWidth knob's value for this target.
inline int by_width(const ByWidth &k, const Target &t) { return wide_target(t) ? k.wide : k.narrow; }

// A PerPackedByWidth knob's values for this target.
inline const PerPacked &by_width(const PerPackedByWidth &k, const Target &t) { return wide_target(t) ? k.wide : k.narrow; }

// A packed family's streams default in k's mode (and shape class) on target t.
template <const Tuning &D>
int packed_streams(PackedKind kind, const Knobs &k, const Target &t) {
    const PerPackedByWidth *by_class = k.prefill                        ? nullptr
                                       : k.shape_class == "short"      ? &D.packed_decode_streams_short
                                       : k.shape_class == "one_thread" ? &D.packed_decode_streams_one_thread
                                                                       : nullptr;
    if (by_class) {
        if (const int s = by_width(*by_class, t).of(kind); s > 0) return s;
    }
    return (k.prefill ? D.packed_prefill_streams : by_width(D.packed_decode_streams, t)).of(kind);
}

// Tokens per packed prefill tile (TileTokens, in Tuning) for this target.
inline int packed_tile_tokens(const TileTokens &tt, const Target &t) { return by_width(tt, t); }

// Whether this CPU runs the software prefetch: a call into the runtime
// (qf_cpu_prefetch, runtime/src/cpu_features.cpp), made once per tile.
// Halide lowers every prefetch to prefetchnta. On AMD (Zen) that brings
// the weights into L1 ahead of use: AVX2 packed Q4_K decode 1.1-1.45x
// faster on a 2-core EPYC. On an Intel Xeon the same instructions made the
// AVX2 Q4_K decode kernel 2.8x slower and packed Q6_K 1.5x slower
// (BENCHMARKS.md, "Software prefetch by CPU vendor"; no counters in that
// VM: likely the NTA fills skip L2, so its streamer never trains). The
// kernel holds both loop nests; the runtime picks one by the CPU's vendor.
inline Expr cpu_wants_prefetch() {
    return Internal::Call::make(Int(32), "qf_cpu_prefetch", {}, Internal::Call::Extern) != 0;
}

// Software prefetch of the packed weights `ahead` blocks ahead of the block
// loop (the family's default; the `prefetch` knob overrides it): one
// thread's stream is regular, but the loop's work per cache line is small
// enough that hardware prefetch alone leaves DRAM latency exposed.
inline void prefetch_weights(Func acc, ImageParam weight, RVar block, const Knobs &k, int ahead) {
    if (k.prefetch != 0) ahead = std::max(k.prefetch, 0);
    if (ahead > 0) {
        acc.update().specialize(cpu_wants_prefetch()).prefetch(weight, block, block, ahead,
                                                               PrefetchBoundStrategy::NonFaulting);
    }
}

// The weight touch (PackedTouch, schedules.h) of a packed kernel (decode;
// prefill in its first token tile, Tuning::packed_prefill_touch): prefetcht0 of block b + ahead of the S tiles that the loop computes
// together, a call into the runtime (qf_cpu_touch,
// runtime/src/cpu_features.cpp) with the weight buffer's host pointer and
// the first tile's offset, once per group and `calls`-th of a block (of
// the kernel's pieces, every pieces / calls-th calls). The runtime skips
// it on CPUs that run the prefetchnta nest instead (cpu_wants_prefetch).
// Tiles past the tensor are not fetched; a prefetch is a hint, so a
// kernel that groups its tiles otherwise (head_norm: one at a time; glu:
// gate and up tiles) calls it once per tile and fetches tiles it reads
// later.
template <const Tuning &D>
void packed_touch(Func touch, const ImageParam &weight, PackedKind kind, const Target &t, const Knobs &k, int pieces,
                  const Expr &token_min) {
    const int ahead = k.touch != 0 ? std::max(k.touch, 0)
                                   : by_width(k.prefill ? D.packed_prefill_touch : D.packed_decode_touch, t).of(kind);
    Var p("p"), tile("tile"), n("n");
    if (ahead == 0) {
        touch(p, tile, n) = 0;
        return;
    }
    // A call stores and reloads the tiles' accumulators (every vector
    // register is caller-saved), so one serves the group; a block's lines
    // in one call wait for the core's fill buffers (a Q4_K tile's super-
    // block is 37), so it is spread over several.
    // Prefill calls once a block: a call site costs its spills in every
    // token tile, also those that skip it (below).
    int calls = std::min(pieces, std::max(pick(k.touch_calls, k.prefill ? 1 : D.packed_decode_touch_calls.of(kind)), 1));
    while (pieces % calls != 0) --calls;
    const int step = pieces / calls;
    using namespace Internal;
    Expr buffer = Variable::make(type_of<halide_buffer_t *>(), weight.name() + ".buffer", weight.parameter());
    Expr host = Call::make(Handle(), Call::buffer_get_host, {buffer}, Call::Extern);
    // Past a tile's last block, its stream goes on with the next group of
    // S tiles (a short row, e.g. 4 super-blocks, would otherwise leave
    // each tile's first blocks unfetched: BENCHMARKS.md, "Decode prefetches
    // its weights into L1"). The runtime picks the block and the tiles: the
    // loop passes the block index and the group's offset, which does not
    // change within a group, so no address arithmetic joins the hottest loop.
    const int S = std::max(pick(k.streams, packed_streams<D>(kind, k, t)), 1);
    const int bytes = weight.type().bytes();
    Expr here = cast<int64_t>(tile) * weight.dim(2).stride() * bytes;
    // A block's `calls` runs, each a whole number of bytes (the kernels'
    // blocks are a multiple of `calls`; were one not, a line could be
    // missed, which only costs time).
    Expr call = Call::make(Int(32), "qf_cpu_touch",
                           {host, here, cast<int64_t>(weight.dim(2).stride()) * bytes, weight.dim(2).extent() - tile,
                            p / step + ahead * calls, weight.dim(1).extent() * calls,
                            weight.dim(1).stride() * bytes / calls, S},
                           Call::Extern);
    // The kernels unroll the pieces of a block and the tiles of a group,
    // so both conditions fold to constants.
    Expr first = const_true();
    if (step > 1) first = p % step == 0;
    if (S > 1) first = first && tile % S == 0;
    // Prefill: a tile's tokens share its weights, so the first token of the
    // call's first token tile fetches them (the tile unrolls its tokens, so
    // the token's place in it folds; the tile's place is one compare).
    if (k.prefill) first = first && n == token_min;
    touch(p, tile, n) = select(first, call, 0);
}

// A packed kernel's integer dot `part`, computed at `at`: for u8s8_pairs
// the i16 pair sums `pair` (vpmaddubsw) summed over `groups`; otherwise
// 4-byte dot products (vpdpbusd, sdot) over dot.x, unrolled over the rest.
// `per_group`: pure dims of part computed inside the group loop (u8s8_pairs).
inline void packed_dot(Func part, Func pair, Var kp, Var r, Var n, const RDom &dot, const RDom &groups, DotForm form,
                       const LoopLevel &at, int chains, int V, bool wide = false, std::vector<Var> per_group = {}) {
    if (form == DotForm::u8s8_pairs && wide) {
        // i32 part: each pair vector widened by a factor-2 i16 -> i32 sum
        // over groups[0] (vpmaddwd by ones), the other groups unrolled.
        part.compute_at(at).vectorize(r).unroll(n);
        Stage pu = part.update();
        std::vector<VarOrRVar> order = {groups[0], r, n};
        for (int i = 1; i < groups.dimensions(); ++i) order.push_back(groups[i]);
        pu.reorder(order).atomic().vectorize(groups[0]).vectorize(r).unroll(n);
        for (int i = 1; i < groups.dimensions(); ++i) pu.unroll(groups[i]);
        pair.compute_at(part, groups[1]).bound_extent(kp, 2).vectorize(kp).vectorize(r).unroll(n);
        pair.update().atomic(true).reorder(dot.x, kp, r, n).vectorize(dot.x).vectorize(kp).vectorize(r).unroll(n);
    } else if (form == DotForm::u8s8_pairs) {
        part.compute_at(at).bound_extent(kp, 2).reorder_storage(kp, r, n).vectorize(kp).vectorize(r).unroll(n);
        Stage pu = part.update();
        // Tokens innermost: one load and unpack of a group's weights serves all of them.
        std::vector<VarOrRVar> order = {kp, r, n};
        for (Var v : per_group) order.push_back(v);
        for (int i = 0; i < groups.dimensions(); ++i) order.push_back(groups[i]);
        pu.reorder(order).vectorize(kp).vectorize(r).unroll(n);
        for (Var v : per_group) pu.unroll(v);
        for (int i = 0; i < groups.dimensions(); ++i) pu.unroll(groups[i]);
        pair.compute_at(part, groups[0]).bound_extent(kp, 2).vectorize(kp).vectorize(r).unroll(n);
        pair.update().atomic(true).reorder(dot.x, kp, r, n).vectorize(dot.x).vectorize(kp).vectorize(r).unroll(n);
        for (Var v : per_group) pair.unroll(v).update().unroll(v);
    } else {
        vec_rows(part.compute_at(at), r, V).unroll(n);
        // The 4 bytes of a group are the dot instruction's reduction. In
        // decode (one token) the groups are summed in `chains` accumulators
        // (rfactor), not one: a single chain of dependent vpdpbusd is
        // latency-bound.
        Stage pu = part.update();
        std::vector<VarOrRVar> order = {dot.x, r, n};
        if (chains > 1) {
            RVar go("go"), gi("gi");
            Var u("u");
            const int groups_ = *as_const_int(dot[1].extent());
            Func intm = pu.split(dot[1], go, gi, groups_ / chains).rfactor(go, u);
            vec_rows(pu, r, V).unroll(n).unroll(go);
            vec_rows(intm.compute_at(part, r), r, V).unroll(u).unroll(n);
            std::vector<VarOrRVar> io = {dot.x, r, n, u, gi};
            for (int i = 2; i < dot.dimensions(); ++i) io.push_back(dot[i]);
            Stage iu = intm.update();
            vec_rows(iu.reorder(io).atomic().vectorize(dot.x), r, V).unroll(n).unroll(u).unroll(gi);
            for (int i = 2; i < dot.dimensions(); ++i) iu.unroll(dot[i]);
            return;
        }
        for (int i = 1; i < dot.dimensions(); ++i) order.push_back(dot[i]);
        vec_rows(pu.reorder(order).atomic().vectorize(dot.x), r, V).unroll(n);
        for (int i = 1; i < dot.dimensions(); ++i) pu.unroll(dot[i]);
    }
}

// The K-quants' per-block integer sums, computed per block of `acc`:
// sacc (the sub-block dots `part` times their scales, over subs = (kp,
// sub-block dims...)) and macc (scales or mins against the activation sums,
// over mins). Returns where `part` is computed: at subs[part_level], once
// per sub-block (1) or per pair of them (2, Q4_K's two nibbles).
inline LoopLevel scaled_sums(Func sacc, Func macc, const LoopLevel &per_tile, Var r, Var n, const RDom &subs, const RDom &mins,
                             DotForm form, int V, bool wide = false, int part_level = 1, int loops = 0) {
    // i16 halves only where the pairs were not widened one by one.
    const bool halves = form == DotForm::u8s8_pairs && !wide;
    for (Func s : {sacc, macc}) {
        vec_rows(s.compute_at(per_tile), r, V).unroll(n);
    }
    vec_rows(macc.update().reorder(r, n, mins.x), r, V).unroll(n).unroll(mins.x);
    Stage su = sacc.update();
    std::vector<VarOrRVar> order;
    if (halves) {
        // part's two i16 halves against the scale: a factor-2 i16 dot (vpmaddwd).
        order = {subs.x, r, n};
    } else {
        order = {r, n, subs.x};
    }
    for (int i = 1; i < subs.dimensions(); ++i) order.push_back(subs[i]);
    su.reorder(order);
    if (halves) {
        su.atomic().vectorize(subs.x).vectorize(r).unroll(n);
    } else {
        vec_rows(su, r, V).unroll(n).unroll(subs.x);
    }
    for (int i = 1; i < subs.dimensions() - loops; ++i) su.unroll(subs[i]);
    return LoopLevel(sacc, subs[part_level]);
}

// Per-head RMSNorm: a token's head sums first (rfactored into vector
// lanes), then its outputs, tokens in parallel.
template <const Tuning &D>
void head_norm(HeadNormFuncs &f, const Target &t, const Knobs &k) {
    const int V = f32_lanes(t, k);
    f.out.parallel(f.n).vectorize(f.d, V, kGuard);
    RVar eo("eo"), ei("ei");
    Var u("u");
    Func intm = f.sq.update().split(f.e.x, eo, ei, V, kGuard).rfactor(ei, u);
    f.sq.compute_at(f.out, f.n);
    intm.compute_at(f.sq, Var::outermost()).vectorize(u);
    intm.update().vectorize(u);
}

template <const Tuning &D>
void q4k_packed_q8(PackedQ4KFuncs &f, const Target &t, const Knobs &k) {
    const int tokens = packed_tile_tokens(f.lut    ? D.packed_iq4_tile_tokens
                                          : f.bits == 5 ? D.packed_q56k_tile_tokens
                                                        : D.packed_q4k_tile_tokens,
                                          t);
    const PackedLoops nest = packed_tiles<D>(f.y, f.acc, f.weight, f.o, f.n, f.r, f.t, f.blocks, f.rows, f.pairs, k,
                                               f.act4, f.act_d, f.act_sum, tokens, packed_streams<D>(PackedKind::q4k, k, t), f.head);
    prefetch_weights(f.acc, f.weight, nest.block, k,
                     f.bits == 5 ? by_width(D.packed_q5k_prefetch_blocks, t)
                                 : k.prefill ? 0 : by_width(D.packed_prefetch_blocks, t));
    // u8s8_pairs, Q4_K, one token a tile: a group's weight bytes hold both
    // nibbles (sub-blocks 2 jp and 2 jp + 1), and computing both in the group
    // loop uses each load and each activation broadcast once for the whole
    // tile. With one nibble at a time LLVM kept the loads live across the two
    // passes and spilled the broadcasts (AVX2 decode: 795 -> 724 instructions
    // and 163 -> 21 stack references a super-block); with 8 tokens a tile
    // (AVX-512) the doubled accumulators spill instead (1213 -> 1555).
    const bool both_nibbles = f.form == DotForm::u8s8_pairs && !f.wide_part && f.bits == 4 && packed_tile_T(k, tokens) == 1;
    // Several tokens a tile, the whole super-block unrolled: LLVM schedules
    // one token's dots after another's and spills the unpacked weights in
    // between (AVX2 Q4_K, 4 tokens: 2459 instructions and 974 stack
    // references per super-block). A loop over the 4 sub-block pairs keeps
    // the tile's order: 4 x 479 instructions, 92 stack references (the raw
    // weights, kept for the second nibble). Measured (2-core EPYC, x86-avx2,
    // qforge_compare --threads 2, 3 alternating runs, llama-3.1-8b q
    // 4096x4096): 128 tokens 32.5 ms with 1 token a tile, 17.7 with 4 and
    // the loop, 25.2 with 8; 8 tokens 2.39, 1.75, 1.83 ms.
    const int loops = packed_tile_T(k, tokens) > 1 && !f.lut ? by_width(D.packed_subblock_loops, t) : 0;
    const int V = packed_lanes(k, f.rows);
    packed_dot(f.part, f.pair, f.kp, f.r, f.n, f.dot, f.groups, f.form,
               scaled_sums(f.sacc, f.macc, nest.per_tile, f.r, f.n, f.subs, f.mins, f.form, V, f.wide_part,
                           both_nibbles ? 2 : 1, loops),
               k.prefill ? 1 : pick(k.chains, D.packed_decode_chains), V, f.wide_part,
               both_nibbles ? std::vector<Var>{f.h} : std::vector<Var>{});
}

// Packed Q6_K x Q8_K: as q4k_packed_q8, a unit (sub-block, or half of one
// for u8s8_pairs) at a time.
template <const Tuning &D>
void q6k_packed_q8(PackedQ6KFuncs &f, const Target &t, const Knobs &k) {
    const PackedLoops loops = packed_tiles<D>(f.y, f.acc, f.weight, f.o, f.n, f.r, f.t, f.blocks, f.rows, f.pairs, k, f.act4,
                                              f.act_d, f.act_sum, packed_tile_tokens(D.packed_q56k_tile_tokens, t),
                                              packed_streams<D>(PackedKind::q6k, k, t), f.head);
    prefetch_weights(f.acc, f.weight, loops.block, k, D.packed_q6k_prefetch_blocks);
    const int V = packed_lanes(k, f.rows);
    packed_dot(f.part, f.pair, f.kp, f.r, f.n, f.dot, f.groups, f.form,
               scaled_sums(f.sacc, f.macc, loops.per_tile, f.r, f.n, f.subs, f.mins, f.form, V),
               k.prefill ? 1 : pick(k.chains, D.packed_decode_chains), V);
}

// Packed 32-blocks x Q8_0: as q4k_packed_q8, one block's dot at a time.
template <const Tuning &D>
void block32_packed_q8(PackedBlock32Funcs &f, const Target &t, const Knobs &k) {
    const PackedLoops loops = packed_tiles<D>(
        f.y, f.acc, f.weight, f.o, f.n, f.r, f.t, f.blocks, f.rows, f.pairs, k, f.act4, f.act_d, f.act_sum,
        packed_tile_tokens(f.lut ? D.packed_iq4_tile_tokens : D.packed_block32_tile_tokens, t),
        packed_streams<D>(PackedKind::block32, k, t), f.head);
    prefetch_weights(f.acc, f.weight, loops.block, k, k.prefill ? 0 : 8 * by_width(D.packed_prefetch_blocks, t));
    const int V = packed_lanes(k, f.rows);
    vec_rows(f.isum.compute_at(loops.per_tile), f.r, V).unroll(f.n);
    if (f.form == DotForm::u8s8_pairs && !f.wide_part) {
        // The two i16 halves widened and added: a factor-2 reduction (vpmaddwd by ones).
        f.isum.update().reorder(f.halves.x, f.r, f.n).atomic().vectorize(f.halves.x).vectorize(f.r).unroll(f.n);
    } else {
        vec_rows(f.isum.update().reorder(f.r, f.n, f.halves.x), f.r, V).unroll(f.n);
    }
    packed_dot(f.part, f.pair, f.kp, f.r, f.n, f.dot, f.groups, f.form, loops.per_tile,
               k.prefill ? 1 : pick(k.chains, D.packed_decode_chains), V, f.wide_part);
}

// A CPU family's schedules: cpu.h's, with the defaults D (one table per
// family, or per kind of core within one: x86's kZen).
template <const Tuning &D>
ScheduleFamily family(const char *name, bool (*matches)(const Target &), DotForm (*dot_form)(const Target &)) {
    return {name,
            matches,
            dequant<D>,
            group_matmul<D>,
            q4k_matmul_f32<D>,
            q8k_quantize<D>,
            block_matmul_q8<D>,
            norm_stats<D>,
            dot_form,
            q4k_packed_q8<D>,
            block32_packed_q8<D>,
            q8_0_quantize<D>,
            q6k_packed_q8<D>,
            head_norm<D>,
            packed_touch<D>};
}

}  // namespace qforge::cpu
