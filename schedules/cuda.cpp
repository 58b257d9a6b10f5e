// The CUDA family. The matmuls with f32 activations give a warp 2 rows
// (decode; Q4_K: 1 row of 8-byte lane chunks) or 2 rows x 4 tokens
// (batches); a lane takes 4-quant chunks of the rows, so a warp's loads are
// whole contiguous lines and, where Halide can prove the alignment (the
// kernels are specialized on it), vector loads; the lanes' partial sums
// meet through warp shuffles (Halide's gpu_lanes), in a tree (lanes). Q4_K with Q8_K
// activations gives a row 8 lanes (4 rows a warp) for decode and a thread
// one output for batches. Large batches run as dequantize-to-f16 + cuBLAS
// in the layers (runtime/include/qforge/layers.h), since Halide 21 cannot
// emit tensor-core instructions. Per-call side products (x sums, a fused
// norm's statistics) run as small kernels of their own, the Q8_K
// statistics inside the quantizer's one kernel; nothing is computed on the
// host.
#include "schedules.h"

#include <algorithm>
#include <optional>
#include <string>

namespace qforge {
namespace {

using namespace Halide;

constexpr TailStrategy kGuard = TailStrategy::GuardWithIf;
constexpr int kWarp = 32;

int pick(int knob, int fallback) { return knob > 0 ? knob : fallback; }

// The family's schedule defaults, in one place: what a knob of 0 means
// (targets/knobs.json's "cuda" members bound the knobs that override them;
// the comments where each is used say what was measured).
struct CudaTuning {
    int warp_rows, warp_tokens;  // batches: rows and tokens a warp (see warp_rows)
    int warps;                   // file-layout f32 kernels: warps a thread block at 32 lanes a row
    int in_flight;               // chunks (blocks) a loop iteration, for loads in flight
    int dequant_threads[2];      // dequantizers' thread block: column chunks x rows
    int tile_threads[2];         // batches' thread tiles (thread_tiles): rows x tokens
    int xsum_threads[2];         // Q4_K's x sums kernel: sub-blocks x blocks
    int q8_block_rows;           // 8-bit-activation decode: rows (of 8 lanes) a thread block
    int packed_streams;          // packed kernels: warps a tile's blocks are split over
};
// Rows and tokens per warp: decode is one token; batches take 4 (x is read
// through clamp_outer, so a tile past the last token re-reads it and is
// never stored).
constexpr CudaTuning kCuda = {2, 4, 4, 2, {64, 4}, {16, 8}, {8, 32}, 16, 8};

// Rows of y over warps: `rows` rows per warp, `warps` warps per thread
// block, and (batches) `tokens` tokens per warp. A warp's rows share its
// loads of x and its tokens share its loads and unpacking of the weights:
// the unrolled rows and tokens compute the same addresses and nibbles,
// which LLVM merges. x's traffic through L1 exceeds the weights' (4 bytes a
// column against half a byte), so rows divide the larger stream. A batch's
// token tiles of the same rows are neighbouring thread blocks, so the
// weights they re-read come from L2. Returns the loop at which a warp's
// lane-partial sums live.
LoopLevel warp_rows(Func y, Var r, Var n, const Knobs &k, int rows, int tokens, int warps = kCuda.warps) {
    Var ro("ro"), ri("ri"), rl("rl"), rr("rr"), no("no"), nn("nn");
    y.split(r, ro, ri, pick(k.rows_per_task, warps) * rows, kGuard).split(ri, ri, rr, rows).split(ri, ri, rl, 1);
    if (tokens == 1) {
        y.reorder(rr, rl, ri, ro, n).unroll(rr).gpu_blocks(ro, n).gpu_threads(ri, rl);
    } else {
        y.split(n, no, nn, tokens, kGuard)
            .reorder(rr, nn, rl, ri, no, ro)
            .unroll(rr)
            .unroll(nn)
            .gpu_blocks(no, ro)
            .gpu_threads(ri, rl);
    }
    return LoopLevel(y, ri);
}

// The lane-partial sums `intm(u, r, n)` of an rfactored reduction, one per
// lane, row and token of the warp, and their meeting: `acc`'s update
// `stage` (what rfactor left of it) sums them over the RVar `lane`.
// In decode, where a row has the whole warp, they meet in a tree (below
// says why only there): each level adds lane w + half to lane w (one
// shfl.down a row and token), down to two lanes that `acc` reads. Read one
// by one (Halide's lowering of the plain sum over `lane`), they cost
// `width` dependent shfl.idx a row and token at the end of every warp. A
// last level of one lane breaks Halide's rule for lane storage (a
// register's index must be affine in the lane), so two lanes are left.
void lanes(Func intm, Var u, Func acc, int stage, RVar lane, Var r, Var n, LoopLevel at, int width = kWarp,
           int rows = 1, int tokens = 1) {
    // All the lanes of a level, even when a short row leaves some without
    // work (they hold zeros): a constant extent keeps the sums in registers.
    auto in_registers = [&](Func f, Var w, int extent) {
        if (extent < width) f.align_storage(w, kWarp);  // a level's register holds a warp's lanes, also where fewer work
        f.compute_at(at)
            .store_in(MemoryType::Register)
            .bound(w, 0, extent)
            .bound_extent(r, rows)
            .bound_extent(n, tokens)
            .reorder_storage(w, r, n)   // lane-major: a warp's registers are its rows
            .unroll(r)
            .unroll(n)
            .gpu_lanes(w);
    };
    in_registers(intm, u, width);
    intm.update().gpu_lanes(u);
    // Only a whole warp's lanes: where a row has fewer (8, the 8-bit block
    // decode), Halide maps a level's narrower lanes and the rows onto the
    // warp's lanes differently from intm's, and the shuffles read other
    // rows' sums (seen on the device: iq4_xs_matvec_q8 off by 1e0). And
    // only decode: with 2 rows x 4 tokens a warp, Q4_K's batches ran 1.4x
    // slower with the tree (H200, 2 tokens 0.0597 -> 0.0829 ms at
    // 14336x4096), though their loops are the same PTX (BENCHMARKS.md,
    // "CUDA: a warp's lanes meet in a shuffle tree").
    if (width != kWarp || tokens != 1) return;
    RVar left = lane;
    for (int half = width / 2; half >= 2; half /= 2) {
        const std::string level = std::to_string(half);
        RVar hi("hi" + level), lo("lo" + level);
        Var w("w" + level);
        Func step = acc.update(stage).split(left, hi, lo, half).rfactor(lo, w);
        in_registers(step, w, half);
        step.update().unroll(hi).unroll(r).unroll(n).gpu_lanes(w);
        left = lo;
    }
}

// Prefill: each thread owns a tile of `tr` rows x `tt` tokens; a block is
// kCuda.tile_threads (16 x 8) threads.
void thread_tiles(Func y, Var r, Var n, int tr, int tt) {
    Var ro("ro"), ri("ri"), no("no"), ni("ni"), rt("rt"), nt("nt"), rb("rb"), nb("nb");
    y.split(r, rt, ri, tr, kGuard)
        .split(n, nt, ni, tt, kGuard)
        .split(rt, rb, rt, kCuda.tile_threads[0], kGuard)
        .split(nt, nb, nt, kCuda.tile_threads[1], kGuard)
        .reorder(ri, ni, rt, nt, rb, nb)
        .unroll(ri)
        .unroll(ni)
        .gpu_blocks(rb, nb)
        .gpu_threads(rt, nt);
}

// A Func computed as its own kernel over two dimensions.
void own_kernel(Func f, Var x, Var y, int tx, int ty) {
    Var xo("xo"), xi("xi"), yo("yo"), yi("yi");
    f.compute_root().gpu_tile(x, y, xo, yo, xi, yi, tx, ty, kGuard);
}

// Vector loads need addresses Halide can prove aligned, so the weight and
// activation bases are declared 16-byte aligned (the runtime checks every
// CUDA input pointer) and the kernels are specialized on rows whose byte
// stride keeps that: other strides run the same loop with narrower loads.
constexpr int kAlign = 16;

Expr aligned_rows(ImageParam w) {
    w.set_host_alignment(kAlign);
    w.dim(0).set_min(0);
    return (w.dim(1).stride() * w.type().bytes()) % kAlign == 0;
}

void dequant(DequantFuncs &f, const Target &, const Knobs &k) {
    Var co("co"), ci("ci"), cb("cb"), ct("ct"), rb("rb"), rt("rt");
    if (f.block % 32 == 0 && k.vector_width == 0) {
        // Whole-block formats (Q4_K, Q6_K, Q8_0, Q4_0): eight columns a
        // thread share one scale and one nibble shift, so on rows Halide can
        // prove aligned their quant bytes are one load and their outputs one
        // 16-byte store, a warp's stores 512 contiguous bytes. Q4_K -> f16 on
        // the H100: 0.061 ms (82% of copy) against 0.108 unrolled; a thread
        // per 32 columns was 0.167.
        f.out.split(f.c, co, ci, 8).vectorize(ci).gpu_tile(co, f.r, cb, rb, ct, rt, kCuda.dequant_threads[0], kCuda.dequant_threads[1], kGuard);
        OutputImageParam out = f.out.output_buffer();
        out.set_host_alignment(kAlign);
        f.out.specialize(aligned_rows(f.weight) && (out.dim(1).stride() * out.type().bytes()) % kAlign == 0);
        return;
    }
    // int4g: eight columns (four bytes) a thread, unrolled; vectorized, its
    // nibble pairs and per-column scales became byte gathers (Halide 21).
    f.out.split(f.c, co, ci, pick(k.vector_width, 8), kGuard)
        .unroll(ci)
        .gpu_tile(co, f.r, cb, rb, ct, rt, kCuda.dequant_threads[0], kCuda.dequant_threads[1], kGuard);
}

// Chunks (blocks) per loop iteration, for more loads in flight per warp.
// Measured on the H100 (decode, Llama MLP shapes): 2 beat 1 for int4g (10%
// and 23% faster) and tied for Q4_K; 4 lost 10-30% to 2.
int in_flight(const Knobs &k) { return pick(k.unroll, kCuda.in_flight); }

void group_matmul(GroupMatmulFuncs &f, const Target &, const Knobs &k) {
    RVar p = f.main.x, kk = f.main.y, g = f.main.z;
    // Lane u takes 4-consecutive-quant chunks u, u + 32, ... of the row
    // (int4g: 4 bytes, 8 columns): a warp's weight load is 128 contiguous
    // bytes and its x load 1 KB, both whole lines, where longer chunks per
    // lane would spread one x load over 32 lines.
    const int rows = pick(k.tile_rows, kCuda.warp_rows), tokens = k.prefill ? pick(k.tile_tokens, kCuda.warp_tokens) : 1;
    const int width = pick(k.lanes, kWarp);
    LoopLevel warp = warp_rows(f.y, f.r, f.n, k, rows, tokens, kCuda.warps * kWarp / width);
    const int run = f.group_size / f.interleave;  // consecutive quants in a group
    const int vec = std::min(run, pick(k.vector_width, 4));
    RVar ko("ko"), ki("ki"), chunk("chunk"), co("co"), cl("cl");
    Var u("u");
    Stage s = f.acc.update(0);
    if (run > vec) {
        s.split(kk, ko, ki, vec).fuse(ko, g, chunk);
    } else {
        s.rename(kk, ki).rename(g, chunk);
    }
    Func intm = s.split(chunk, co, cl, width, kGuard).rfactor(cl, u);
    lanes(intm, u, f.acc, 0, cl, f.r, f.n, warp, width, rows, tokens);
    // Several chunks per iteration, for more loads in flight per warp.
    RVar c2("c2"), kv("kv");
    intm.update()
        .split(co, co, c2, in_flight(k), kGuard)
        .split(ki, ki, kv, std::min(vec, 4))
        .reorder(kv, ki, p, f.n, f.r, c2, co)
        .unroll(ki)
        .unroll(p)
        .unroll(f.n)
        .unroll(f.r)
        .unroll(c2)
        .atomic()
        .vectorize(kv);
    if (f.acc.num_update_definitions() > 1) {
        f.acc.update(1).unscheduled();  // a last, partial group: under G columns per lane
    }
    f.y.specialize(aligned_rows(f.weight) && aligned_rows(f.x));
}

// The per-sub-block sums of x, once per call as a small kernel of their own
// (a lane cannot index its registers by a fused sub-block number): one
// kernel, not two, since every launch costs microseconds next to a decode:
// the kernel is a wrapper whose threads each compute one sum in registers.
void xsum_kernel(Q4KMatmulF32Funcs &f) {
    Func sums = f.xsum.in();
    Var xo("xo"), xi("xi"), yo("yo"), yi("yi");
    sums.compute_root().gpu_tile(f.j, f.b, xo, yo, xi, yi, kCuda.xsum_threads[0], kCuda.xsum_threads[1], kGuard).gpu_blocks(f.n);
    f.xsum.compute_at(sums, xi);
    f.xsum.update().unroll(f.xsum.rvars(0)[0]);   // 32 independent loads, not a chain
}

void q4k_matmul_f32(Q4KMatmulF32Funcs &f, const Target &, const Knobs &k) {
    RVar ml = f.main.x, mj = f.main.y, mb = f.main.z;
    RVar nj = f.mins.x, nb = f.mins.y;
    // A row's `width` lanes each take `bytes` consecutive quant bytes of a
    // 32-byte run (low nibbles: sub-block 2 jo, high: 2 jo + 1, so a lane
    // decodes two scales a block); 128 / bytes lanes cover a block, and a
    // row's lanes cover width * bytes / 128 consecutive blocks a step.
    // Decode takes 8 bytes, one row a warp: the scale decoding spreads over
    // twice the weights of 4 bytes, while a warp's x load still covers whole
    // 32-byte sectors (16 bytes scatter it over 16 lines). Measured on the
    // H100 (targets.cmake, QF_TUNING_KERNELS): 0.037 / 0.040 ms against
    // 0.040 / 0.053 ms for 4 bytes and 2 rows (14336x4096 / 4096x14336);
    // batches keep 4 bytes x 2 rows x 4 tokens (8 bytes lost 10-50%).
    // Also measured there and dropped, since the loop is not bound by one
    // kind of instruction but by its count (8.3 SASS instructions a weight)
    // and latency: quants made f32 from the bits of 2^23 + q (an OR and a
    // subtract, no conversion) ran 0-7% slower (int4g too): ptxas already
    // makes 16 of the loop's 36 conversions I2FP (an ALU conversion on
    // sm_90), and the OR/subtract pairs made the loop longer (311 SASS
    // instructions against 267); f16x2 products
    // (q from the bits 0x6400 | q, x rounded to f16, a lane per 8-quant run,
    // 2 rows a warp) ran 8% / 38% slower in the same run: 7.0 instructions
    // a weight, most of them the lane's scale decoding and loads, with a
    // 3e-4 relative error.
    const int rows = pick(k.tile_rows, k.prefill ? kCuda.warp_rows : 1), tokens = k.prefill ? pick(k.tile_tokens, kCuda.warp_tokens) : 1;
    const int bytes = pick(k.vector_width, k.prefill ? 4 : 8);
    const int width = pick(k.lanes, kWarp);
    const int per_block = 128 / bytes;   // lanes a block
    if (bytes <= 0 || 32 % bytes != 0 || width % per_block != 0 || kWarp % width != 0) {
        throw CompileError("q4k_matmul_f32 on CUDA: vector_width (quant bytes a lane, " + std::to_string(bytes) +
                           ") must divide 32, and lanes (" + std::to_string(width) +
                           ") divide 32 and be a multiple of 128 / vector_width");
    }
    LoopLevel warp = warp_rows(f.y, f.r, f.n, k, rows, tokens, kCuda.warps * kWarp / width);
    Var u("u"), v("v");
    RVar lo("lo"), li("li"), jo("jo"), jh("jh"), lane("lane"), mbo("mbo"), mbi("mbi");
    Func intm = f.acc.update(0)
                    .split(ml, lo, li, bytes)
                    .split(mj, jo, jh, 2)
                    .split(mb, mbo, mbi, width / per_block, kGuard)
                    .fuse(lo, jo, lane)
                    .fuse(lane, mbi, lane)
                    .rfactor(lane, u);
    lanes(intm, u, f.acc, 0, lane, f.r, f.n, warp, width, rows, tokens);
    RVar b2("b2"), lv("lv");
    intm.update()
        .split(mbo, mbo, b2, in_flight(k), kGuard)   // several blocks per iteration: more loads in flight
        .split(li, li, lv, 4)
        .reorder(lv, li, jh, f.n, f.r, b2, mbo)
        .unroll(li)
        .unroll(jh)
        .unroll(f.n)
        .unroll(f.r)
        .unroll(b2)
        .atomic()
        .vectorize(lv);
    // The min term: lane v takes blocks v, v + width, ... (eight products each).
    RVar no("no"), nl("nl");
    Func mins = f.acc.update(1).split(nb, no, nl, width, kGuard).rfactor(nl, v);
    lanes(mins, v, f.acc, 1, nl, f.r, f.n, warp, width, rows, tokens);
    mins.update().reorder(nj, f.n, f.r, no).unroll(nj).unroll(f.n).unroll(f.r);
    xsum_kernel(f);
    f.y.specialize(aligned_rows(f.weight) && aligned_rows(f.x));
}

// A block statistic `s` (a reduction over `e`) computed at `at`, a thread
// block's loop: lane u of one warp folds values u, u + 32, ... (loads a
// warp apart, not one thread's 256 dependent ones), then one thread folds
// the 32 lanes in shared memory.
// Returns the lanes' Func.
Func warp_reduce(Func s, const RDom &e, const LoopLevel &at) {
    RVar eo("eo"), ei("ei");
    Var u("u");
    Func intm = s.update().split(e.x, eo, ei, kWarp, kGuard).rfactor(ei, u);
    s.compute_at(at);
    intm.compute_at(at).gpu_threads(u);
    intm.update().gpu_threads(u);
    return intm;
}

// f32 -> Q8_K planes in one kernel: a thread block per 256-value block
// and token, its amax and first at its start (shared memory), then qs a
// thread per value, d and the 16 bsums fused into the same loop nest
// (compute_with: the outputs do not read each other). As a kernel per
// stage (9, a thread's 256 dependent loads per statistic) it took
// 0.038-0.053 ms a call on the H100; as 3 kernels 0.0139.
void q8k_quantize(Q8KQuantizeFuncs &f, const Target &, const Knobs &) {
    Var cb("cb"), ci("ci"), gi("gi");
    f.qs.split(f.c, cb, ci, 256, kGuard).gpu_blocks(cb, f.n).gpu_threads(ci);
    for (Func s : {f.amax, f.first}) warp_reduce(s, f.e, LoopLevel(f.qs, cb));
    // Loops fuse by name: the outputs share their first Var (the generator's
    // f.c), each split into cb.
    Var bi("bi");
    f.d.split(f.b, cb, bi, 1).gpu_blocks(cb, f.n).compute_with(f.qs, cb);
    f.bsums.split(f.g, cb, gi, 16, kGuard).gpu_blocks(cb, f.n).gpu_threads(gi).compute_with(f.qs, cb);
}

void block_matmul_q8(BlockMatmulQ8Funcs &f, const Target &, const Knobs &k) {
    RVar mk = f.main.x, mb = f.main.y;
    // dot4 is four 8-bit products: one dp4a.
    f.dot4.update().atomic().vectorize(f.t);
    const bool mins = f.bmin.defined();
    const std::optional<int64_t> chunks = Internal::as_const_int(f.sub.x.extent());
    if (!k.prefill && chunks == 1) {
        // Blocks of 32 (Q4_0, Q8_0, IQ4_NL, ...): a block is one scale for
        // its 32 columns, so a lane takes whole blocks (v, v + 8, ...; its
        // 8 dp4a unrolled) and loads and converts each block's scales once.
        // With a lane per 4 columns, as for Q4_K, those loads and the f32
        // product came once per dp4a. H200, 4096x4096 decode: Q4_0 0.040 ->
        // 0.025 ms, Q5_0 0.050 -> 0.028, IQ4_NL 0.049 -> 0.037 (f32
        // activations: 0.013, 0.020, 0.029; the int8 q - 8 of Q4_0/Q5_0 is
        // split by LLVM into 16-bit pieces, ~20 instructions a dp4a).
        LoopLevel warp = warp_rows(f.y, f.r, f.n, k, 1, 1, kCuda.q8_block_rows);
        Var u("u"), v("v");
        RVar bo("bo"), bl("bl"), no("no"), nl("nl");
        Func intm = f.acc.update(0).split(mb, bo, bl, 8, kGuard).rfactor(bl, u);
        lanes(intm, u, f.acc, 0, bl, f.r, f.n, warp, 8);
        intm.update().reorder(mk, bo).unroll(mk);
        if (mins) {
            Func m = f.acc.update(1).split(f.mins.x, no, nl, 8, kGuard).rfactor(nl, v);
            lanes(m, v, f.acc, 1, nl, f.r, f.n, warp, 8);
        }
        f.y.specialize(aligned_rows(f.weight) && aligned_rows(f.x));
        return;
    }
    if (!k.prefill) {
        // Eight lanes per row, four rows per warp: lane k takes four-byte
        // column k of every 32-column chunk (Q4_K: the same four quant bytes
        // of each of its 32-byte runs: eight dp4a, one per sub-block), so a
        // row's 8 lanes read whole 32-byte sectors. Lanes are the pure
        // column k of bdot (not a fused index), so bounds inference gives
        // each lane one k. Sixteen rows (128 threads) per thread block.
        // Measured and dropped (H100, BENCHMARKS.md, "CUDA: the Q8_K quantizer in one kernel"):
        // a lane per row as in the packed kernel, its loads 32 rows apart
        // (0.066 ms against 0.027 at 14336x4096), and 16 or 32 lanes a row
        // taking 2 or 4 blocks a step (0.076, 0.095).
        LoopLevel warp = warp_rows(f.y, f.r, f.n, k, 1, 1, kCuda.q8_block_rows);
        Var u("u"), v("v");
        RVar no("no"), nl("nl");
        Func intm = f.acc.update(0).rfactor(mk, u);
        lanes(intm, u, f.acc, 0, mk, f.r, f.n, warp, 8);
        f.bdot.update().unroll(f.sub);
        if (mins) {
            // The min term: lane v takes blocks v, v + 8, ...
            Func m = f.acc.update(1).split(f.mins.x, no, nl, 8, kGuard).rfactor(nl, v);
            lanes(m, v, f.acc, 1, nl, f.r, f.n, warp, 8);
            f.bmin.update().unroll(f.msub);
        }
        f.y.specialize(aligned_rows(f.weight) && aligned_rows(f.x));
        return;
    }
    thread_tiles(f.y, f.r, f.n, 1, 1);   // one output per thread, as for int4g
    f.acc.update(0).unscheduled();
    f.bdot.update().unroll(f.sub);
    if (mins) {
        f.acc.update(1).unscheduled();
        f.bmin.update().unroll(f.msub);
    }
}

// f32 -> Q8_0 planes in three kernels: qs (a thread block per 8 blocks
// of 32, a thread per value; the 8 amax by 8 threads at its start, 32
// loads each, unrolled), d (a thread per block, its own amax) and sums (a
// thread per block, from qs). Fusing d and sums into qs's kernel as for
// Q8_K (compute_with) failed in Halide 21's lowering ("Simplify only works
// on code where every name is unique": qs.s0.c.fused.cb.block_id_x.loop_extent).
void q8_0_quantize(Q80QuantizeFuncs &f, const Target &, const Knobs &) {
    Var cb("cb"), ci("ci"), bo("bo"), bi("bi"), no("no"), ni("ni");
    Func amax_d = f.amax.clone_in(f.d);  // before amax is scheduled: a clone copies the schedule
    f.qs.split(f.c, cb, ci, 256, kGuard).gpu_blocks(cb, f.n).gpu_threads(ci);
    f.amax.compute_at(f.qs, cb).gpu_threads(f.b);
    f.amax.update().gpu_threads(f.b).unroll(f.e.x);
    f.d.gpu_tile(f.b, f.n, bo, no, bi, ni, 32, 4, kGuard);
    amax_d.compute_at(f.d, bi);
    amax_d.update().unroll(f.e.x);
    f.sums.gpu_tile(f.b, f.n, bo, no, bi, ni, 32, 4, kGuard);
}

// Statistics of a fused norm: a block per token whose 32 threads sum
// interleaved columns (coalesced loads), then one thread adds their sums.
// mean and 1/std stay inline: scalars per token, hoisted out of the loops.
void norm_stats(NormFuncs &f, const Target &, const Knobs &) {
    for (Func s : {f.sum, f.sq}) {
        // Both stages of s inside one kernel: its wrapper's.
        Func w = s.in();
        w.compute_root().gpu_blocks(f.n);
        warp_reduce(s, f.reduction, LoopLevel(w, f.n));
    }
}

// Per-head RMSNorm in one kernel: a block per (head, token) sums its
// squares in a warp's lanes (shared memory, then one thread), then its
// warp writes the head. In place it stays safe: a block reads only its own
// head, all of it before the barrier that precedes the first write.
void head_norm(HeadNormFuncs &f, const Target &, const Knobs &) {
    RVar eo("eo"), ei("ei");
    Var u("u"), dob("do"), di("di");
    Func intm = f.sq.update().split(f.e.x, eo, ei, kWarp, kGuard).rfactor(ei, u);
    f.out.split(f.d, dob, di, kWarp, kGuard).reorder(di, dob, f.h, f.n).gpu_blocks(f.h, f.n).gpu_threads(di);
    f.sq.compute_at(f.out, f.h);
    intm.compute_at(f.out, f.h).gpu_threads(u);
    intm.update().gpu_threads(u);
}

// A packed kernel's tiles on warps: thread block ot is tile ot, lane r its
// row r, and the tile's blocks split over `split` warps (warp u takes
// blocks u, u + split, ...; `bo` the loop over them), whose partial sums
// meet in shared memory. Returns the warps' Func (rfactor of acc).
// F: PackedQ4KFuncs or PackedBlock32Funcs; `generator` names it in errors.
template <typename F>
Func packed_tile_warps(const char *generator, F &f, int split, RVar bo) {
    const int R = f.rows;
    if (R != kWarp || f.form != DotForm::u8s8_dot4 || f.pairs != 1 || f.head.defined()) {
        throw CompileError(std::string(generator) + " on CUDA: pack_rows must be " + std::to_string(kWarp) +
                           " (a warp's lanes), without the glu or head_norm epilogue");
    }
    Func y = f.y, acc = f.acc;
    Var o = f.o, n = f.n, r = f.r, t = f.t;
    RVar blocks = f.blocks.x;
    Var ot("ot"), ri("ri"), u("u");
    y.split(o, ot, ri, R, kGuard).reorder(ri, ot, n).gpu_blocks(ot, n).gpu_threads(ri);
    RVar bi("bi");
    Func intm = acc.update().split(blocks, bo, bi, split, kGuard).rfactor(bi, u);
    acc.compute_at(y, ri);
    intm.compute_at(y, ot)
        .store_in(MemoryType::GPUShared)
        .bound_extent(r, R)
        .bound_extent(t, 1)
        .bound_extent(n, 1)
        .bound(u, 0, split)
        .gpu_threads(r, u);
    intm.update().reorder(bo, r, u).gpu_threads(r, u);
    return intm;
}

// Packed Q4_K x Q8_K (FORMATS.md, "Packed Q4_K"), tiles of R = 32 rows:
// lane r of a warp is row r of its tile, so a warp's 4-byte loads of one
// group are R * 4 contiguous bytes and every lane reads the same activation
// bytes (one broadcast); the sub-block scales and mins are bytes already,
// so no lane decodes any, and a 4-byte group is one dp4a per nibble (the
// high nibble in place, times 16: no shift). A tile's super-blocks are
// split over `split` warps of its thread block (warp u takes blocks u, u +
// split, ...), so that a layer of a few hundred tiles still has enough
// loads in flight; the warps' partial sums meet in shared memory. `split`
// is the `streams` knob. H100, decode (bench/device/cuda_bench, QF_BENCH_TUNE,
// 2 runs): 14336x4096 (16 super-blocks a row) 0.0258-0.0262 ms with 4,
// 0.0241-0.0244 with 8, 0.0324-0.0325 with 16; 4096x14336 (56) 0.0498,
// 0.0327, 0.0280-0.0283: best near 2-4 super-blocks a warp. Two super-blocks
// an iteration (unroll=2) were 15-60% slower. Reached so far through
// RunOptions::kernel only (the QF_TUNING_KERNELS rows p32s*).
void q4k_packed_q8(PackedQ4KFuncs &f, const Target &, const Knobs &k) {
    RVar bo("bo");
    Func intm = packed_tile_warps("q4k_packed_matmul_q8", f, pick(k.streams, kCuda.packed_streams), bo);
    RVar block_var = bo;
    if (k.unroll > 1) {  // several super-blocks an iteration: more loads in flight
        RVar bu("bu");
        intm.update().split(bo, bo, bu, k.unroll, kGuard).unroll(bu);
        block_var = bu;
    }
    LoopLevel block(intm, block_var);  // one super-block of a lane's row
    f.sacc.compute_at(block).store_in(MemoryType::Register);
    for (int i = 0; i < f.subs.dimensions(); ++i) f.sacc.update().unroll(f.subs[i]);
    f.macc.compute_at(block).store_in(MemoryType::Register);
    f.macc.update().unroll(f.mins.x);
    const std::vector<Var> pa = f.part.args();  // kp, r, h, jp, sb, t, n
    f.part.compute_at(block).store_in(MemoryType::Register).bound_extent(pa[0], 1).unroll(pa[0]).unroll(pa[2]).unroll(pa[3]);
    f.part.update().atomic().vectorize(f.dot.x).unroll(f.dot.y).unroll(pa[0]).unroll(pa[2]).unroll(pa[3]);
    // The activations stay inline: every lane loads the same bytes (one
    // broadcast a warp), and the bsums' pair sums are 16 such loads a block.
    // Lane loads of 4 weight bytes (and the broadcast 4 activation bytes)
    // are one 32-bit load each where Halide can prove their alignment.
    f.weight.set_host_alignment(kAlign);
    f.a_qs.set_host_alignment(kAlign);
    f.a_qs.dim(0).set_min(0);
    f.y.specialize(f.weight.dim(2).stride() % kAlign == 0 && f.a_qs.dim(1).stride() % kAlign == 0);
}

// Packed 32-blocks x Q8_0 (FORMATS.md, "Packed Q4_0 and int4g", "Packed
// Q8_0", "Packed int8"), tiles of R = 32 rows, as q4k_packed_q8: lane r is
// row r of the tile, a tile's blocks are split over `streams` warps (warp u
// takes blocks u, u + streams, ...), sums meet in shared memory. A block is
// 8 dp4a a lane (4 groups x 2 nibbles) against its scale and zero point;
// the high nibbles' byte shift is most of the loop (133 PTX instructions a
// block, 80 of them cvt/prmt/shr). H100, int4g g128 decode (QF_BENCH_TUNE,
// rows p32s*): 14336x4096 0.0410 / 0.0296 / 0.0374 / 0.0650 ms with 4 / 8 /
// 16 / 32 warps, 4096x14336 0.1078 / 0.0611 / 0.0393 / 0.0321: best near
// 14-16 blocks a warp; the f32 kernel takes 0.0276 / 0.0310.
void block32_packed_q8(PackedBlock32Funcs &f, const Target &, const Knobs &k) {
    RVar bo("bo");
    Func intm = packed_tile_warps("block32_packed_matmul_q8", f, pick(k.streams, kCuda.packed_streams), bo);
    LoopLevel block(intm, bo);  // one block of a lane's row
    f.isum.compute_at(block).store_in(MemoryType::Register);
    f.isum.update().unroll(f.halves.x);
    f.part.compute_at(block).store_in(MemoryType::Register).bound_extent(f.kp, 1).unroll(f.kp);
    Stage pu = f.part.update().atomic().vectorize(f.dot.x);
    for (int i = 1; i < f.dot.dimensions(); ++i) pu.unroll(f.dot[i]);
    f.weight.set_host_alignment(kAlign);
    f.a_qs.set_host_alignment(kAlign);
    f.a_qs.dim(0).set_min(0);
    f.y.specialize(f.weight.dim(2).stride() % kAlign == 0 && f.a_qs.dim(1).stride() % kAlign == 0);
}

DotForm cuda_dot_form(const Target &) { return DotForm::u8s8_dot4; }

bool is_cuda(const Target &t) { return t.has_feature(Target::CUDA); }

const ScheduleFamily cuda_family = {
    "cuda", is_cuda, dequant, group_matmul, q4k_matmul_f32, q8k_quantize, block_matmul_q8, norm_stats,
    cuda_dot_form, q4k_packed_q8, block32_packed_q8, q8_0_quantize, nullptr, head_norm,
};
const RegisterScheduleFamily registered{&cuda_family};

}  // namespace
}  // namespace qforge
