// The contract between generators/ (what a kernel computes) and schedules/
// (how one target family computes it). A generator builds its Funcs, fills
// one of the structs below and calls schedule(); the family whose
// `matches` accepts the target schedules it. A new target family is one new
// file in schedules/ that defines a ScheduleFamily and registers it.
#pragma once

#include "Halide.h"

#include <string>
#include <vector>

namespace qforge {

// Tunable knobs, set as generator parameters; 0 means the family's default.
struct Knobs {
    bool prefill = false;   // false: schedule for tokens = 1; true: for many tokens
    int vector_width = 0;
    int tile_rows = 0;
    int tile_tokens = 0;
    int rows_per_task = 0;
    int unroll = 0;
    int lanes = 0;   // GPU: lanes of a warp that share one row
    int prefetch = 0;  // packed CPU kernels: blocks the weight prefetch runs ahead; -1: none
    int chains = 0;    // packed CPU decode: independent accumulators of one block's integer dot
    int streams = 0;   // packed CPU: row tiles computed together, their weights read side by side
    int touch = 0;     // packed CPU decode: blocks the prefetcht0 of a tile's weights runs ahead; -1: none
    int touch_calls = 0;  // packed CPU decode: calls a block's touch is spread over (at most the kernel's pieces)
    // The shape class (targets/knobs.json) this variant serves, where the
    // target builds one for it (targets.cmake, QF_CLASS_VARIANTS); "": every
    // call. A family's defaults may differ by class (cpu::Tuning).
    std::string shape_class;
};

// Any weight format -> f32: out(c, r). Runs of `block` columns share their
// scales (1: no structure worth splitting on).
struct DequantFuncs {
    Halide::ImageParam weight;  // the raw weights (see GroupMatmulFuncs)
    Halide::Func out;
    Halide::Var c, r;
    int block = 1;
};

// Y(r, n) = bias + sum_c wq(c, r) x(c, n) for every format whose weights
// dequantize one at a time (int4g, Q4_0, Q8_0, Q6_K, dense f32/f16).
// `main` is RDom(p in 0..interleave-1, k in 0..group_size/interleave-1, g):
// the generator maps (p, k, g) to a column so that consecutive k are
// consecutive bytes of the format (the vector lanes). `tail` covers the
// columns of a last, partial group: a second update of acc, which
// whole-block formats do not have.
struct GroupMatmulFuncs {
    // The raw weight input, so that a schedule can state or specialize on
    // its layout (alignment, row stride): a GPU emits 16-byte loads only for
    // addresses it can prove aligned.
    Halide::ImageParam weight;
    Halide::ImageParam x;  // the activations, for the same reason
    Halide::Func y, acc, wq;  // y = acc; wq(c, r) is one dequantized weight
    Halide::Var r, n, c;
    Halide::RDom main, tail;
    int group_size;
    int interleave;
};

// Y(r, n) = bias + sum_{l,j,b} scale(j,b,r) q x - sum_{j,b} min(j,b,r) xsum(j,b,n).
// `main` is RDom(l in 0..31, j in 0..7, b); `mins` is RDom(j, b).
struct Q4KMatmulF32Funcs {
    Halide::ImageParam weight, x;  // the raw inputs (see GroupMatmulFuncs)
    Halide::Func y, acc, scale, neg_min, xsum, wq;  // y = acc; wq(l, j, b, r) = scale * q
    Halide::Var r, n;
    Halide::Var l, j, b;  // pure vars of scale/min/xsum/wq
    Halide::RDom main, mins;
};

// f32 -> Q8_K: per block (b, n) amax/first/iscale, then qs(c, n), d(b, n), bsums(g, n).
struct Q8KQuantizeFuncs {
    Halide::Func amax, first, iscale, qs, d, bsums;  // qs, d, bsums are the outputs
    Halide::Var c, b, g, n;
    Halide::RDom e;  // a block's 256 values: the reduction of amax and first
    // A group's 16 values, where bsums sums them in an update of its own
    // (CPUs: one vector reduction a group); undefined where the sum is
    // inline (CUDA: each thread's own loop, in the kernel of qs and d).
    Halide::RDom t;
};

// f32 -> Q8_0 planes: per block (b, n) amax and iscale, then qs(c, n), d(b, n), sums(b, n).
struct Q80QuantizeFuncs {
    Halide::Func amax{"amax"}, iscale{"iscale"}, qs, d, sums;  // qs, d, sums are the outputs
    Halide::Var c{"c"}, b{"b"}, n{"n"};
    Halide::RDom e;  // a block's 32 values: the reduction of amax and sums
};

// Y(r, n) = bias + sum_{k,b} ad*d*bdot(k,b,r,n) + sum_b ad*dmin*bmin(b,r,n)
// over a file's layout (Q4_K, and the ggml block formats on CUDA), bmin
// being the min sums with their sign (so that both are plain sums).
// dot4(k, j, b, r, n) is the sum of 4 x s8 products (the shape of
// vpdpbusd / sdot / dp4a) of group k of 32-column chunk j of block b; bdot
// scales the chunks' dot4 by their sub-block scales (`sub`: j), bmin sums
// the sub-blocks' mins against the activation sums (`msub`). A format
// without mins leaves bmin undefined and acc without its second update.
struct BlockMatmulQ8Funcs {
    Halide::ImageParam weight, x;  // the raw weights and a_qs (see GroupMatmulFuncs)
    Halide::Func y, acc, dot4, bdot, bmin, quants;  // y = acc
    Halide::Var r, n, k, j, b, l;
    Halide::RDom t, sub, msub, main, mins;
};

// The head_norm epilogue of a packed kernel (generators/common.h): pre(r,
// t, n) is the packed output plus bias, by tile like acc; y normalizes it
// per attention head of tiles_per_head tiles, sq(h, n) summing head h's
// squares over `e` (lane, tile). Undefined (no pre) in every other kernel.
// A schedule computes pre a head at a time and stores y from it.
struct HeadNormEpilogue {
    Halide::Func pre{"pre"}, sq{"head_sq"};
    Halide::RDom e;
    Halide::Expr tiles_per_head;
    bool defined() const { return pre.defined(); }
};

// How a packed kernel writes its integer dot, all exact and equal: what
// each target's instruction needs from the expression (../HALIDE_DOTS in
// the comments of cpu.h). u8s8_dot4: sums of 4 u8 x s8 products in i32
// (vpdpbusd). u8s8_pairs: pairs of u8 x s8 products saturating-added in i16
// (vpmaddubsw), summed in i16, widened by the scale multiply (vpmaddwd).
// s8_dot4: sums of 4 products whose nibbles narrow to s8 (sdot, dp4a).
enum class DotForm { u8s8_dot4, u8s8_pairs, s8_dot4 };

// The activations of a packed kernel are read through three Funcs, so
// that a prefill schedule can stage a token tile's worth once per task:
// act4(b4, kq, n) (byte b4 of the kq-th group of 4 of token n; staged with
// tokens interleaved per group, one pointer serves the whole tile), act_d
// (per block scale) and act_sum (per block or sub-block sums).
// Packed Q4_K x Q8_K: Y(o, n) = acc(o % R, o / R, n) + bias, with r the
// row within a tile of R (the vector lanes), t the tile, sb the super-block.
// part(kp, r, h, jp, sb, t, n): the integer dot of sub-block 2 jp + h over
// `dot` (kp has extent 1, or 2 for u8s8_pairs, whose i16 pair sums `pair`
// fill over `groups`). sacc sums part * scale over `subs` (kp, h, jp),
// macc the mins against the activation sums over `mins`; acc sums both,
// in f32, over `blocks`.
struct PackedQ4KFuncs {
    Halide::ImageParam weight, a_qs;  // a_qs: the Q8_K quants act4 reads (a GPU schedule declares their alignment)
    Halide::Func y, acc{"acc"}, sacc{"sacc"}, macc{"macc"}, part{"part"}, pair{"pair"};
    Halide::Func act4{"act4"}, act_d{"act_d"}, act_sum{"act_sum"};  // see PackedActs
    Halide::Var r{"r"}, t{"t"}, n{"n"}, o{"o"}, kp{"kp"}, h{"h"}, jp{"jp"}, sb{"sb"}, g{"g"};
    Halide::RDom dot, groups, subs, mins, blocks;
    int rows = 0;  // R
    int bits = 4;  // 4: Q4_K (or IQ4_XS), 5: Q5_K
    DotForm form = DotForm::u8s8_dot4;
    bool wide_part = false;  // IQ4_XS on u8s8_pairs: i32 part, pairs widened one by one (see PackedBlock32Funcs)
    bool lut = false;        // IQ4_XS: weights are levels looked up per index
    int pairs = 1;           // weight tiles per output tile: 2 with the glu epilogue (gate, up)
    HeadNormEpilogue head;   // the head_norm epilogue, where the kernel has it
};

// Packed 32-blocks (Q4_0, int4g, Q8_0) x Q8_0: Y(o, n) = acc(o % R, o / R,
// n) + bias; part(kp, r, kb, t, n) is block kb's integer dot over `dot`
// (for u8s8_pairs: sums over `groups` of the pairs in `pair`, in i16, or
// with wide_part in i32, kp then the first of `groups`), isum adds its
// `halves` to the zero-point correction, acc sums over `blocks` in f32.
struct PackedBlock32Funcs {
    Halide::ImageParam weight, a_qs;  // a_qs: the Q8_0 quants act4 reads (a GPU schedule declares their alignment)
    Halide::Func y, acc{"acc"}, isum{"isum"}, part{"part"}, pair{"pair"};
    Halide::Func act4{"act4"}, act_d{"act_d"}, act_sum{"act_sum"};
    Halide::Var r{"r"}, t{"t"}, n{"n"}, o{"o"}, kp{"kp"}, kb{"kb"}, g{"g"}, h{"h"};
    Halide::RDom dot, groups, halves, blocks;
    int rows = 0;
    DotForm form = DotForm::u8s8_dot4;
    bool wide_part = false;  // 8-bit weights: pairs are widened to i32 one by one
    bool lut = false;        // IQ4_NL: weights are levels looked up per index
    int pairs = 1;           // weight tiles per output tile: 2 with the glu epilogue (gate, up)
    HeadNormEpilogue head;   // the head_norm epilogue, where the kernel has it
};

// Packed Q6_K x Q8_K: as PackedQ4KFuncs, with part(kp, r, u, sb, t, n) the
// integer dot of unit u, `units` units per 16-value sub-block (1, or 2 for
// u8s8_pairs, whose i16 sums hold only two groups' pairs), pair(kp, r, G,
// ...) the pairs of group G; `subs` is (kp, u), `mins` the 16 sub-blocks.
struct PackedQ6KFuncs {
    Halide::ImageParam weight;
    Halide::Func y, acc{"acc"}, sacc{"sacc"}, macc{"macc"}, part{"part"}, pair{"pair"};
    Halide::Func act4{"act4"}, act_d{"act_d"}, act_sum{"act_sum"};
    Halide::Var r{"r"}, t{"t"}, n{"n"}, o{"o"}, kp{"kp"}, u{"unit"}, sb{"sb"}, G{"G"};
    Halide::RDom dot, groups, subs, mins, blocks;
    int rows = 0, units = 1;
    DotForm form = DotForm::u8s8_dot4;
    int pairs = 1;           // weight tiles per output tile: 2 with the glu epilogue (gate, up)
    HeadNormEpilogue head;   // the head_norm epilogue, where the kernel has it
};

// Per-token statistics of a fused RMSNorm/LayerNorm: sum and sq reduce
// over `reduction` (the columns of x); mean and inv are scalars of them.
// The normalised x itself is never a Func to schedule: it stays inline.
struct NormFuncs {
    Halide::Func sum{"norm_sum"}, mean{"norm_mean"}, sq{"norm_sq"}, inv{"norm_inv"};
    Halide::Var n{"n"};
    Halide::RDom reduction;
};

// RMSNorm per attention head: out(d, h, n) reads sq(h, n), the sum of
// squares of head h of token n over `e` (its D columns).
struct HeadNormFuncs {
    Halide::Func out, sq{"head_sq"};
    Halide::Var d{"d"}, h{"h"}, n{"n"};
    Halide::RDom e;
};

// The packed kernel families, for the hooks that differ between them.
enum class PackedKind { q4k, q6k, block32 };

// A packed kernel's weight touch, touch(p, t): 0, from which the kernel
// starts tile t's integer sums of piece p (of `pieces` a block: its
// sub-block dots, or the block's sums where pieces is 1), so that it is
// evaluated once per tile and piece. A family may make some of them calls
// that prefetch the tile's block b + ahead into L1 (prefetcht0), which
// Halide's prefetch directive cannot emit (it is always prefetchnta). The
// generator defines touch through ScheduleFamily::packed_touch before its
// algorithm uses it.
// touch(p, tile, n): n is the token, token_min the output's first token.
using PackedTouch = void (*)(Halide::Func touch, const Halide::ImageParam &weight, PackedKind, const Halide::Target &,
                             const Knobs &, int pieces, const Halide::Expr &token_min);

// One target family's schedules. Families register themselves statically.
struct ScheduleFamily {
    const char *name;
    bool (*matches)(const Halide::Target &);
    void (*dequant)(DequantFuncs &, const Halide::Target &, const Knobs &);
    void (*group_matmul)(GroupMatmulFuncs &, const Halide::Target &, const Knobs &);
    void (*q4k_matmul_f32)(Q4KMatmulF32Funcs &, const Halide::Target &, const Knobs &);
    void (*q8k_quantize)(Q8KQuantizeFuncs &, const Halide::Target &, const Knobs &);
    void (*block_matmul_q8)(BlockMatmulQ8Funcs &, const Halide::Target &, const Knobs &);
    void (*norm_stats)(NormFuncs &, const Halide::Target &, const Knobs &);
    DotForm (*dot_form)(const Halide::Target &);
    void (*q4k_packed_q8)(PackedQ4KFuncs &, const Halide::Target &, const Knobs &);
    void (*block32_packed_q8)(PackedBlock32Funcs &, const Halide::Target &, const Knobs &);
    void (*q8_0_quantize)(Q80QuantizeFuncs &, const Halide::Target &, const Knobs &);
    void (*q6k_packed_q8)(PackedQ6KFuncs &, const Halide::Target &, const Knobs &);
    void (*head_norm)(HeadNormFuncs &, const Halide::Target &, const Knobs &);
    PackedTouch packed_touch = nullptr;  // none: touch is 0
};

inline std::vector<const ScheduleFamily *> &schedule_families() {
    static std::vector<const ScheduleFamily *> families;
    return families;
}

struct RegisterScheduleFamily {
    explicit RegisterScheduleFamily(const ScheduleFamily *f) { schedule_families().push_back(f); }
};

// The family for `t`; a user_error names the target when there is none.
inline const ScheduleFamily &schedule_family_for(const Halide::Target &t) {
    for (const ScheduleFamily *f : schedule_families()) {
        if (f->matches(t)) return *f;
    }
    throw Halide::CompileError("qforge: no schedule family for target " + t.to_string());
}

}  // namespace qforge
