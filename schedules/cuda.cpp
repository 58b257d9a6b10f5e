// The CUDA family. Decode (tokens = 1) gives each output row to one warp:
// the 32 lanes take interleaved slices of the row's blocks (or groups), so a
// warp's loads cover contiguous bytes, and the lanes' partial sums meet
// through warp shuffles (Halide's gpu_lanes). Prefill gives each thread one
// output (a first cut: weights are re-read through L1/L2 per token). Per-call side products (Q8_K statistics, x sums) run as their
// own small kernels; nothing is ever computed on the host.
#include "schedules.h"

#include <algorithm>

namespace qforge {
namespace {

using namespace Halide;

constexpr TailStrategy kGuard = TailStrategy::GuardWithIf;
constexpr int kWarp = 32;

int pick(int knob, int fallback) { return knob > 0 ? knob : fallback; }

// Rows of y over warps (decode): `warps` rows per thread block, one warp per
// row. Returns the loop at which a warp's lane-partial sums live.
LoopLevel warp_per_row(Func y, Var r, Var n, const Knobs &k) {
    Var ro("ro"), ri("ri"), rl("rl");
    y.split(r, ro, ri, pick(k.rows_per_task, 4), kGuard)
        .split(ri, ri, rl, 1)
        .reorder(rl, ri, ro, n)
        .gpu_blocks(ro, n)
        .gpu_threads(ri, rl);
    return LoopLevel(y, ri);
}

// The lane-partial sums `intm(u, ...)` of an rfactored reduction, one per lane.
void lanes(Func intm, Var u, Var r, Var n, LoopLevel at) {
    // All 32 lanes, even when a short row leaves some without work (they
    // hold zeros): a constant extent keeps the partial sums in registers.
    intm.compute_at(at)
        .store_in(MemoryType::Register)
        .bound(u, 0, kWarp)
        .bound_extent(r, 1)
        .bound_extent(n, 1)
        .gpu_lanes(u);
    intm.update().gpu_lanes(u);
}

// Prefill: each thread owns a tile of `tr` rows x `tt` tokens; a block is
// 16 x 8 threads.
void thread_tiles(Func y, Var r, Var n, int tr, int tt) {
    Var ro("ro"), ri("ri"), no("no"), ni("ni"), rt("rt"), nt("nt"), rb("rb"), nb("nb");
    y.split(r, rt, ri, tr, kGuard)
        .split(n, nt, ni, tt, kGuard)
        .split(rt, rb, rt, 16, kGuard)
        .split(nt, nb, nt, 8, kGuard)
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

void dequant(DequantFuncs &f, const Target &, const Knobs &k) {
    // Eight columns (four int4 bytes) per thread.
    Var co("co"), ci("ci"), cb("cb"), ct("ct"), rb("rb"), rt("rt");
    f.out.split(f.c, co, ci, pick(k.vector_width, 8), kGuard)
        .unroll(ci)
        .gpu_tile(co, f.r, cb, rb, ct, rt, 64, 4, kGuard);
}

void group_matmul(GroupMatmulFuncs &f, const Target &, const Knobs &k) {
    RVar p = f.main.x, kk = f.main.y, g = f.main.z;
    if (!k.prefill) {
        // Lane u takes groups u, u + 32, ...: a warp reads 32 consecutive groups.
        LoopLevel warp = warp_per_row(f.y, f.r, f.n, k);
        RVar go("go"), gl("gl");
        Var u("u");
        Func intm = f.acc.update(0).split(g, go, gl, kWarp).rfactor(gl, u);
        lanes(intm, u, f.r, f.n, warp);
        intm.update().reorder(p, kk, go).unroll(p).unroll(kk);
        if (f.acc.num_update_definitions() > 1) {
            f.acc.update(1).unscheduled();  // a last, partial group: under G columns per lane
        }
        return;
    }
    // One output per thread. (Register tiles of rows x tokens per thread
    // trapped on the device with Halide 21: see the issue note.)
    thread_tiles(f.y, f.r, f.n, 1, 1);
    f.acc.update(0).unroll(p);
    if (f.acc.num_update_definitions() > 1) f.acc.update(1).unscheduled();
}

// The per-sub-block sums of x, once per call as a small kernel of their own
// (a lane cannot index its registers by a fused sub-block number).
void xsum_kernel(Q4KMatmulF32Funcs &f) {
    own_kernel(f.xsum, f.j, f.b, 8, 32);
    Var xo("xo"), xi("xi"), yo("yo"), yi("yi");
    f.xsum.update().gpu_tile(f.j, f.b, xo, yo, xi, yi, 8, 32, kGuard);
}

void q4k_matmul_f32(Q4KMatmulF32Funcs &f, const Target &, const Knobs &k) {
    RVar ml = f.main.x, mj = f.main.y, mb = f.main.z;
    RVar nj = f.mins.x, nb = f.mins.y;
    if (!k.prefill) {
        // Lane u takes blocks u, u + 32, ...: per lane, whole 144-byte blocks.
        // (A lane per sub-block would read less per lane, but a fused lane
        // index defeats bounds inference: every lane then unpacks all eight.)
        LoopLevel warp = warp_per_row(f.y, f.r, f.n, k);
        Var u("u"), v("v");
        RVar bo("bo"), bl("bl"), no("no"), nl("nl");
        Func intm = f.acc.update(0).split(mb, bo, bl, kWarp).rfactor(bl, u);
        lanes(intm, u, f.r, f.n, warp);
        intm.update().reorder(ml, mj, bo).unroll(ml);
        Func mins = f.acc.update(1).split(nb, no, nl, kWarp).rfactor(nl, v);
        lanes(mins, v, f.r, f.n, warp);
        mins.update().reorder(nj, no).unroll(nj);
        xsum_kernel(f);
        return;
    }
    xsum_kernel(f);
    thread_tiles(f.y, f.r, f.n, 1, 1);   // one output per thread, as for int4g
    f.acc.update(0).unroll(ml);
    f.acc.update(1).unscheduled();
}

void q8k_quantize(Q8KQuantizeFuncs &f, const Target &, const Knobs &) {
    // One thread per 256-value block for the statistics; they feed qs and d.
    for (Func s : {f.amax, f.first}) {
        own_kernel(s, f.b, f.n, 32, 4);
        Var bo("bo"), bi("bi"), no("no"), ni("ni");
        s.update().gpu_tile(f.b, f.n, bo, no, bi, ni, 32, 4, kGuard);
    }
    own_kernel(f.iscale, f.b, f.n, 32, 4);
    Var co("co"), ci("ci"), no("no"), ni("ni"), bo("bo"), bi("bi"), go("go"), gi("gi");
    f.qs.gpu_tile(f.c, f.n, co, no, ci, ni, 128, 1, kGuard);
    f.d.gpu_tile(f.b, f.n, bo, no, bi, ni, 32, 4, kGuard);
    f.bsums.gpu_tile(f.g, f.n, go, no, gi, ni, 64, 1, kGuard);
    f.bsums.update().gpu_tile(f.g, f.n, go, no, gi, ni, 64, 1, kGuard);
}

void q4k_matmul_q8(Q4KMatmulQ8Funcs &f, const Target &, const Knobs &k) {
    RVar mk = f.main.x, mb = f.main.y;
    // dot4 is four u4 x s8 products: one dp4a.
    f.dot4.update().atomic().vectorize(f.t);
    if (!k.prefill) {
        // Lane u takes blocks u, u + 32, ...: per lane, whole blocks, eight
        // dp4a per sub-block.
        LoopLevel warp = warp_per_row(f.y, f.r, f.n, k);
        Var u("u");
        RVar bo("bo"), bl("bl");
        Func intm = f.acc.update(0).split(mb, bo, bl, kWarp).rfactor(bl, u);
        lanes(intm, u, f.r, f.n, warp);
        intm.update().reorder(mk, bo);
        f.bdot.update().unroll(f.sub);
        f.acc.update(1).unscheduled();
        // The min term (one product per block) stays serial in every lane:
        // rfactor cannot prove `acc - term` associative.
        f.bmin.update().unroll(f.sub);
        return;
    }
    thread_tiles(f.y, f.r, f.n, 1, 1);   // one output per thread, as for int4g
    f.acc.update(0).unscheduled();
    f.acc.update(1).unscheduled();
    f.bdot.update().unroll(f.sub);
    f.bmin.update().unroll(f.sub);
}

// Statistics of a fused norm: a block per token whose 32 threads sum
// interleaved columns (coalesced loads), then one thread adds their sums.
// mean and 1/std stay inline: scalars per token, hoisted out of the loops.
void norm_stats(NormFuncs &f, const Target &, const Knobs &) {
    for (Func s : {f.sum, f.sq}) {
        RVar eo("eo"), ei("ei");
        Var u("u");
        Func intm = s.update().split(f.reduction.x, eo, ei, kWarp, kGuard).rfactor(ei, u);
        s.compute_root().gpu_blocks(f.n);
        s.update().gpu_blocks(f.n);
        intm.compute_at(s, f.n).gpu_threads(u);
        intm.update().gpu_threads(u);
    }
}

bool is_cuda(const Target &t) { return t.has_feature(Target::CUDA); }

const ScheduleFamily cuda_family = {
    "cuda", is_cuda, dequant, group_matmul, q4k_matmul_f32, q8k_quantize, q4k_matmul_q8, norm_stats,
};
const RegisterScheduleFamily registered{&cuda_family};

}  // namespace
}  // namespace qforge
