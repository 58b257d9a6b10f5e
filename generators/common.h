// Shared pieces of the qforge generators: the schedule knobs every kernel
// exposes, and small helpers for reading the raw byte formats of FORMATS.md.
#pragma once

#include <cstdlib>
#include <type_traits>
#include <vector>

#include "Halide.h"

#include "activation.h"
#include "schedules/schedules.h"

namespace qforge {

using namespace Halide;

// A generator-time check: stops code generation with `what`.
inline void check(bool ok, const std::string &what) {
    if (!ok) throw CompileError("qforge: " + what);
}

// IEEE binary16 bits (uint16) to f32, exactly.
inline Expr f16_bits_to_f32(const Expr &bits) {
    return cast<float>(reinterpret(Float(16), cast<uint16_t>(bits)));
}

// Little-endian uint16 from two bytes.
inline Expr u16_le(const Expr &lo, const Expr &hi) {
    return cast<uint16_t>(lo) | (cast<uint16_t>(hi) << 8);
}

// `in` with its outer dimension (rows of a weight, tokens of an activation)
// clamped to the buffer. Schedules compute whole register tiles, and the
// last tile may reach past the last row: those lanes re-read the last row
// and are never stored. The inner dimension is left unclamped, so inner
// loops stay plain vector loads.
template <typename T>
Func clamp_outer(const T &in) {
    return BoundaryConditions::repeat_edge(
        in, {Range(), Range(in.dim(1).min(), in.dim(1).extent())});
}

// A packed kernel's weight input: runs of `run` bytes (one block of a tile
// of rows), blocks, tiles (FORMATS.md, "Packed layouts"); outputs start at
// row 0, so that row o is lane o % R of tile o / R.
template <typename W, typename Y>
void constrain_packed(W &weight, Y &y, int run) {
    weight.dim(0).set_bounds(0, run).set_stride(1);
    weight.dim(1).set_min(0).set_stride(run);
    weight.dim(2).set_min(0);
    y.dim(0).set_min(0);
}

// A packed weight [run, blocks, tiles] whose tile index is clamped to its
// last tile: a schedule may compute several tiles at once (the `streams`
// knob), and then the last group of a layer whose tile count it does not
// divide reaches past the tensor; those tiles' outputs are never stored.
template <typename W>
Func clamp_tiles(W &weight) {
    Var x("x"), b("b"), t("t");
    Func f("weight_tiles");
    f(x, b, t) = weight(x, b, min(t, weight.dim(2).extent() - 1));
    return f;
}

// The target family's weight touch for a packed kernel (PackedTouch in
// schedules.h): touch(p, t, n) for piece p of `pieces` a block (piece i of
// block b is b * pieces + i) of row tile t and token n (token_min: the
// output's first token), 0 where the family has none.
inline Func weight_touch(const ImageParam &weight, PackedKind kind, const Target &t, const Knobs &k, const Expr &token_min,
                         int pieces = 1) {
    Func touch("weight_touch");
    const ScheduleFamily &family = schedule_family_for(t);
    if (family.packed_touch) {
        family.packed_touch(touch, weight, kind, t, k, pieces, token_min);
    } else {
        Var b("b"), tile("tile"), n("n");
        touch(b, tile, n) = 0;
    }
    return touch;
}

// One term of a packed kernel's 4-byte integer dot, u4 weight `q` (uint8)
// times s8 activation `a`, as the target's instruction wants it: x86 keeps
// the nibble u8 (u8 x s8 is vpdpbusd); left plain, FindIntrinsics narrows
// it to s8, which ARM's sdot takes (../HALIDE_DOTS in schedules.h).
inline Expr packed_dot_term(DotForm form, const Expr &q, const Expr &a) {
    return form == DotForm::u8s8_dot4 ? cast<int32_t>(widening_mul(q, a)) : cast<int32_t>(q) * cast<int32_t>(a);
}

// IQ4_NL's and IQ4_XS's 16 non-linear levels (ggml's kvalues_iq4nl;
// FORMATS.md, "IQ4_NL").
constexpr int kIQ4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// value(q) for a 4-bit index q (uint8 in 0..15), as type t: a tree of 15
// selects on q's bits (4 bit tests, then 8 + 4 + 2 + 1 blends of constant
// vectors). Halide 21 lowers a vector load from a 16-entry table to one
// byte insert per lane on x86 and lane loads on ARM (its dynamic_shuffle,
// which would be pshufb/tbl, is lowered for Hexagon only), and mux() to a
// chain of 15 compares and 15 selects.
inline Expr nibble_lut(const Expr &q, int (*value)(int), Type t) {
    std::vector<Expr> level;
    for (int i = 0; i < 16; ++i) level.push_back(cast(t, value(i)));
    for (int bit = 0; bit < 4; ++bit) {
        Expr set = (q & cast<uint8_t>(1 << bit)) != cast<uint8_t>(0);
        std::vector<Expr> next;
        for (size_t i = 0; i < level.size(); i += 2) next.push_back(select(set, level[i + 1], level[i]));
        level = next;
    }
    return level[0];
}

// An IQ4 level as the weight operand of a packed integer dot, the way each
// DotForm takes s8 weights (as Q8_0's, block32_packed_matmul_q8.cpp):
// vpdpbusd wants u8, so level + 128 with zero point 128; vpmaddubsw
// saturates on 2 * 241 * 127, so |level| against the activation with the
// level's sign (levels 0..7 are the negative ones), zero point 0; sdot
// takes the s8 level.
inline Expr iq4_weight(DotForm form, const Expr &q) {
    if (form == DotForm::u8s8_dot4) return nibble_lut(q, [](int i) { return kIQ4Levels[i] + 128; }, UInt(8));
    if (form == DotForm::u8s8_pairs) return nibble_lut(q, [](int i) { return std::abs(kIQ4Levels[i]); }, UInt(8));
    return nibble_lut(q, [](int i) { return kIQ4Levels[i]; }, Int(8));
}
inline Expr iq4_act(DotForm form, const Expr &q, const Expr &a) {
    return form == DotForm::u8s8_pairs ? select(q < cast<uint8_t>(8), -a, a) : a;
}
inline int iq4_zero(DotForm form) { return form == DotForm::u8s8_dot4 ? 128 : 0; }

// Optional per-row bias: the caller passes a one-element buffer and has_bias
// = false when there is none. The index is clamped so that bounds inference
// asks only for what the buffer has.
inline Expr bias_or_zero(const Func &bias, const Expr &has_bias, const Expr &extent, const Expr &r) {
    return select(has_bias, bias(clamp(r, 0, extent - 1)), 0.0f);
}

// Whether a generator class declares kEpilogue: a matmul whose output goes
// through with_epilogue (or packed_output, which ends in it).
template <typename G, typename = void>
struct has_epilogue : std::false_type {};
template <typename G>
struct has_epilogue<G, std::void_t<decltype(G::kEpilogue)>> : std::true_type {};
// select(c, t, f) that evaluates only the side c picks: Halide's
// if_then_else, which LLVM codegen lowers to a branch when c is scalar (a
// per-call input here). A plain select evaluates both: in the kernels whose
// outputs are scalar code (one row's sum at a time: the f32 and file-layout
// ones) the unused activation then cost more than the matmul (measured: Q4_K
// f32, 8 tokens, 5.7 -> 8.2 ms). With the branch, LLVM unswitches the
// output loop: the plain call's output is a load and a store.
inline Expr lazy_select(const Expr &c, const Expr &t, const Expr &f) {
    return Internal::Call::make(t.type(), Internal::Call::if_then_else, {c, t, f}, Internal::Call::PureIntrinsic);
}

// Base of every qforge generator. The algorithm lives in the subclass; the
// knobs live here so that a tuner can set any of them on any kernel from the
// generator command line (e.g. `tile_rows=8`) without editing code. 0 means
// "the schedule's default for this target".
template <typename T>
class KernelGenerator : public Generator<T> {
public:
    GeneratorParam<std::string> mode{"mode", "decode"};  // decode | prefill: which schedule
    GeneratorParam<int> vector_width{"vector_width", 0}; // lanes of the widest type
    GeneratorParam<int> tile_rows{"tile_rows", 0};       // output rows per register tile
    GeneratorParam<int> tile_tokens{"tile_tokens", 0};   // tokens per register tile
    GeneratorParam<int> rows_per_task{"rows_per_task", 0};  // rows per parallel task
    GeneratorParam<int> unroll{"unroll", 0};             // unroll of the reduction loop
    GeneratorParam<int> lanes{"lanes", 0};               // GPU: lanes of a warp that share one row
    GeneratorParam<int> prefetch{"prefetch", 0};         // packed CPU: blocks the weight prefetch runs ahead (-1: none)
    GeneratorParam<int> touch{"touch", 0};               // packed CPU: blocks the prefetcht0 runs ahead (-1: none)
    GeneratorParam<int> touch_calls{"touch_calls", 0};   // packed CPU: calls a block's touch is spread over
    GeneratorParam<int> chains{"chains", 0};             // packed CPU decode: accumulator chains of one block's dot
    GeneratorParam<int> streams{"streams", 0};           // packed CPU: row tiles whose weights are read side by side
    GeneratorParam<std::string> shape_class{"shape_class", ""};  // the calls it serves (Knobs::shape_class)
    // true: the activations pass through RMSNorm or LayerNorm first (see
    // activations()), and the kernel takes four more inputs after its own:
    // norm_weight [in], norm_bias [in], layer_norm (subtract the mean), eps.
    GeneratorParam<bool> norm{"norm", false};
    // glu: the kernel's weight tiles come in pairs, gate tile then up tile
    // (FORMATS.md, "Gate/up tile pairs"), and it writes act(gate + b_g) *
    // (up + b_u) for each output, half the rows it reads (an FFN's SwiGLU or
    // GeGLU fused into its gate_up matmul); it takes one more input after
    // the others, the activation (ActivationKind). Packed kernels only.
    // Without glu, a matmul kernel (its class declares kEpilogue) ends in
    // the plain epilogue, chosen per call: act(acc + bias) where act_kind >=
    // 0 (-1: none), plus residual(o, n) where has_residual (an FFN's plain
    // GELU, a block's residual adds). It takes three more inputs after the
    // others (after the norm's): residual [out, tokens] (the caller passes y
    // itself when there is none; it is then not read), has_residual,
    // act_kind.
    // head_norm (packed kernels): RMSNorm per attention head in the store
    // (Qwen3's and Gemma 3's q/k norms; see packed_output), instead of the
    // plain epilogue's inputs: head_weight [D, 2] (column 0 for rows below
    // head_split, 1 from there on), head_first, head_split, head_end (rows
    // [head_first, head_end) are normalized, in heads of D rows; all
    // multiples of D, D a multiple of R), eps_0, eps_1 (each column's eps).
    GeneratorParam<std::string> epilogue{"epilogue", "none"};

    void configure() {
        check(std::string(epilogue) == "none" || glu() || head_norm(),
              "epilogue must be none, glu or head_norm, not " + std::string(epilogue));
        check(!head_norm() || has_epilogue<T>::value, "the head_norm epilogue is for matmul kernels");
        if (norm) {
            norm_weight_ = this->template add_input<Buffer<float, 1>>("norm_weight");
            norm_bias_ = this->template add_input<Buffer<float, 1>>("norm_bias");
            layer_norm_ = this->template add_input<bool>("layer_norm");
            eps_ = this->template add_input<float>("eps");
        }
        if (glu()) {
            act_kind_ = this->template add_input<int>("act_kind");
        } else if (head_norm()) {
            head_weight_ = this->template add_input<Buffer<float, 2>>("head_weight");
            head_first_ = this->template add_input<int>("head_first");
            head_split_ = this->template add_input<int>("head_split");
            head_end_ = this->template add_input<int>("head_end");
            head_eps_[0] = this->template add_input<float>("eps_0");
            head_eps_[1] = this->template add_input<float>("eps_1");
        } else if constexpr (has_epilogue<T>::value) {
            residual_ = this->template add_input<Buffer<float, 2>>("residual");
            has_residual_ = this->template add_input<bool>("has_residual");
            act_kind_ = this->template add_input<int>("act_kind");
        }
    }

protected:
    bool glu() const { return std::string(epilogue) == "glu"; }
    bool head_norm() const { return std::string(epilogue) == "head_norm"; }
    // Weight tiles per output tile: 2 for glu (a gate tile and an up tile).
    int tile_pairs() const { return glu() ? 2 : 1; }

    // Output v of row o, token n through the plain epilogue (see epilogue):
    // the activation and the residual, chosen per call, in the kernel's own
    // store rather than a pass over y; a call without them pays nothing for
    // them (lazy_select).
    Expr with_epilogue(const Expr &v, const Var &o, const Var &n) {
        static_assert(has_epilogue<T>::value, "a generator with an epilogue declares kEpilogue");
        check(!head_norm(), "the head_norm epilogue is the packed kernels' (packed_output)");
        Expr a = lazy_select(*act_kind_ >= 0, activation(*act_kind_, v), v);
        return a + lazy_select(*has_residual_, (*residual_)(o, n), 0.0f);
    }

    // Defines a packed kernel's output y: row o (tile o / R, lane o % R)
    // from acc(r, t, n), the sum over tile t's blocks, plus its bias; with
    // glu the activation of the gate tile's sum times the up tile's, each
    // with its bias (bias: [2 out], gate rows then up rows); with head_norm
    // that sum normalized per head (head's pre and sq, HeadNormEpilogue).
    void packed_output(GeneratorOutput<Buffer<float, 2>> &y, const Func &acc, const Func &bias, const Expr &has_bias,
                       const Expr &bias_extent, const Var &o, const Var &n, int R, HeadNormEpilogue &head) {
        Expr plain = acc(o % R, o / R, n) + bias_or_zero(bias, has_bias, bias_extent, o);
        if (glu()) {
            Expr gate = acc(o % R, 2 * (o / R), n) + bias_or_zero(bias, has_bias, bias_extent, o);
            Expr up = acc(o % R, 2 * (o / R) + 1, n) + bias_or_zero(bias, has_bias, bias_extent, y.dim(0).extent() + o);
            y(o, n) = activation(*act_kind_, gate) * up;
        } else if (head_norm()) {
            head_normed(y, acc, bias, has_bias, bias_extent, o, n, R, head);
        } else {
            y(o, n) = with_epilogue(plain, o, n);
        }
    }

    // y(o, n) = v / sqrt(mean of v^2 over o's head + eps) * weight, v the
    // sum plus its bias, for the rows the call normalizes (see epilogue).
    // v is pre(r, t, n), by tile like acc, so that a schedule computes a
    // head's tiles at once and acc's tile is pre's own loop (a row index
    // there, offset from the head's first row, kept acc off registers and
    // lost the bound on the weight's tiles). A head is whole tiles: a
    // tile's head is a scalar, (o / R) / (D / R), and its weights one vector.
    void head_normed(GeneratorOutput<Buffer<float, 2>> &y, const Func &acc, const Func &bias, const Expr &has_bias,
                     const Expr &bias_extent, const Var &o, const Var &n, int R, HeadNormEpilogue &head) {
        Func w = *head_weight_;
        const Expr D = head_weight_->dim(0).extent();
        Var r("r"), t("t"), h("h");
        head.pre(r, t, n) = acc(r, t, n) + bias_or_zero(bias, has_bias, bias_extent, t * R + r);
        head.tiles_per_head = D / R;
        head.e = RDom(0, R, 0, head.tiles_per_head, "he");  // a head's rows: lane, tile
        Expr x = head.pre(head.e.x, h * head.tiles_per_head + head.e.y, n);
        head.sq(h, n) = 0.0f;
        head.sq(h, n) += x * x;
        Expr hd = (o / R) / head.tiles_per_head, base = hd * D;
        Expr col = select(base < *head_split_, 0, 1);
        Expr eps = select(base < *head_split_, *head_eps_[0], *head_eps_[1]);
        Expr inv = 1.0f / sqrt(head.sq(hd, n) / cast<float>(D) + eps);
        Expr v = head.pre(o % R, o / R, n);
        // Row o - base of its head, written so that its bounds are plain
        // ([0, D)) and the lanes a ramp: one vector load, not a gather.
        Expr d = ((o / R) % head.tiles_per_head) * R + o % R;
        y(o, n) = select(base >= *head_first_ && base < *head_end_, v * inv * w(d, col), v);
    }

    // The activations a kernel reads: x (outer dimension clamped), or with
    // norm=true x normalised per token,
    //   RMSNorm:   x * inv(n) * weight,                inv = 1/sqrt(mean(x^2) + eps)
    //   LayerNorm: (x - mean(n)) * inv(n) * weight + bias, inv = 1/sqrt(var(x) + eps)
    // The normalised values are an inline expression, computed where the
    // kernel consumes them: only the per-token statistics are ever stored.
    Func activations(const GeneratorInput<Buffer<float, 2>> &x) {
        Func x_ = clamp_outer(x);
        if (!norm) return x_;
        NormFuncs f;
        Var c("c"), n = f.n;
        Expr in = x.dim(0).extent();
        RDom e(0, in, "e");
        f.sum(n) = 0.0f;
        f.sum(n) += x_(e, n);
        f.mean(n) = select(*layer_norm_, f.sum(n) / cast<float>(in), 0.0f);
        f.sq(n) = 0.0f;
        f.sq(n) += (x_(e, n) - f.mean(n)) * (x_(e, n) - f.mean(n));
        f.inv(n) = 1.0f / sqrt(f.sq(n) / cast<float>(in) + *eps_);
        f.reduction = e;
        // Under an autoscheduler the statistics are its to place too.
        if (!autoscheduled()) schedule_family_for(this->get_target()).norm_stats(f, this->get_target(), knobs());
        // norm_bias is always [in] (the runtime passes zeros when there is
        // none): a clamped index here would turn its vector loads into gathers.
        Func normed("normed");
        normed(c, n) = (x_(c, n) - f.mean(n)) * f.inv(n) * (*norm_weight_)(c) + (*norm_bias_)(c);
        return normed;
    }

    // Halide's autoschedulers (Adams2019, Li2018, Mullapudi2016: a generator
    // run with autoscheduler=NAME and the plugin, -p; scripts/tune.py
    // --autoschedulers) plan from estimates of every input and output. The
    // call they plan for is scripts/tune.py's default benchmark: a 4096 x
    // 4096 layer (Llama-3.1-8B's q), 1 token in decode, 32 in prefill. A
    // generator asks autoscheduled() after its algorithm and, when true,
    // gives its own inputs' estimates and leaves out its hand schedule.
    static constexpr int kEstimateOut = 4096, kEstimateIn = 4096;
    int estimate_tokens() const { return knobs().prefill ? 32 : 1; }
    bool autoscheduled() const { return this->using_autoscheduler(); }
    // Estimates of y, its bias and the inputs configure() adds.
    void estimate_epilogue(GeneratorOutput<Buffer<float, 2>> &y, GeneratorInput<Buffer<float, 1>> &bias,
                           GeneratorInput<bool> &has_bias) {
        const int tokens = estimate_tokens();
        y.set_estimates({{0, kEstimateOut}, {0, tokens}});
        bias.set_estimates({{0, kEstimateOut * tile_pairs()}});
        has_bias.set_estimate(false);
        if (norm) {
            norm_weight_->set_estimates({{0, kEstimateIn}});
            norm_bias_->set_estimates({{0, kEstimateIn}});
            layer_norm_->set_estimate(false);
            eps_->set_estimate(1e-5f);
        }
        if (act_kind_) act_kind_->set_estimate(-1);
        if (head_weight_) {
            head_weight_->set_estimates({{0, 128}, {0, 2}});
            head_first_->set_estimate(0);
            head_split_->set_estimate(kEstimateOut / 2);
            head_end_->set_estimate(kEstimateOut);
            for (auto *e : head_eps_) e->set_estimate(1e-6f);
        }
        if (residual_) {
            residual_->set_estimates({{0, kEstimateOut}, {0, tokens}});
            has_residual_->set_estimate(false);
        }
    }

    Knobs knobs() const {
        Knobs k;
        k.prefill = std::string(mode) == "prefill";
        check(k.prefill || std::string(mode) == "decode",
              "mode must be decode or prefill, not " + std::string(mode));
        k.vector_width = vector_width;
        k.tile_rows = tile_rows;
        k.tile_tokens = tile_tokens;
        k.rows_per_task = rows_per_task;
        k.unroll = unroll;
        k.lanes = lanes;
        k.prefetch = prefetch;
        k.chains = chains;
        k.streams = streams;
        k.touch = touch;
        k.touch_calls = touch_calls;
        k.shape_class = shape_class;
        return k;
    }

private:
    GeneratorInput<Buffer<float, 1>> *norm_weight_ = nullptr, *norm_bias_ = nullptr;
    GeneratorInput<bool> *layer_norm_ = nullptr;
    GeneratorInput<float> *eps_ = nullptr;
    GeneratorInput<int> *act_kind_ = nullptr;
    GeneratorInput<Buffer<float, 2>> *residual_ = nullptr;
    GeneratorInput<bool> *has_residual_ = nullptr;
    GeneratorInput<Buffer<float, 2>> *head_weight_ = nullptr;
    GeneratorInput<int> *head_first_ = nullptr, *head_split_ = nullptr, *head_end_ = nullptr;
    GeneratorInput<float> *head_eps_[2] = {nullptr, nullptr};
};

}  // namespace qforge
