// The tensor-core prefill path for int4 weights with f16 group scales on
// sm_90 (Hopper): CUTLASS's mixed-input GEMM (int4 x f16 -> f32, the int4
// operand upcast in registers, wgmma in f16), with the layer's bias in the
// epilogue. Our y[tokens][out] = x[tokens][in] * W[out][in]^T is CUTLASS's
// swapped problem (M = out, N = tokens): the narrow operand must be A for a
// TMA epilogue (CUTLASS example 55). A problem of few tiles (short rows,
// few tokens, long K) splits K over `splits` thread blocks a tile, which
// meet in a workspace (CUTLASS's stream-K scheduler in its split-K mode).
// Weights arrive in the layout of
// FORMATS.md, "CUTLASS int4 (sm_90)", written by the Halide generator
// cutlass_int4_shuffle.
#include "cutlass_int4g_kernels.cuh"

#include <cstdio>

// Unsplit calls launch as programmatic dependents (PDL) of the kernel before
// them on the stream (the activations' f16 conversion): their blocks start
// while it drains and wait for its writes in griddepcontrol.wait, which this
// translation unit compiles in (CUTLASS_ENABLE_GDC_FOR_SM90, CMakeLists.txt).
// The split-K kernels live apart: CUTLASS 4.2's stream-K scheduler does not
// compile with it.
namespace qf_cutlass {
namespace {

// The kernel a call's arguments pick. The runtime's weights are always in
// the shuffled layout; the plain one (tiles of 32 or 128 tokens, K 64) is
// built for the probe alone (bench/probes/cutlass_int4).
int dispatch(const QfCutlassInt4Args &a, char *err, int err_len, size_t *workspace_bytes) {
    if (a.shuffled) {
        return a.splits > 1 ? split_k(a, err, err_len, workspace_bytes)
                             : by_tile<true, false, true>(a, err, err_len, workspace_bytes);
    }
#ifdef QF_CUTLASS_PROBE_TILES
    if (a.splits <= 1 && a.tile_k == 64) {
        return a.tile_tokens <= 32 ? run<32, 64, false, false>(a, err, err_len, workspace_bytes)
                                   : run<128, 64, false, false>(a, err, err_len, workspace_bytes);
    }
#endif
    std::snprintf(err, err_len, "this build takes the shuffled weight layout only");
    return 1;
}

}  // namespace
}  // namespace qf_cutlass

extern "C" int qf_cutlass_int4_gemm(const QfCutlassInt4Args *a, char *err, int err_len) {
    return qf_cutlass::dispatch(*a, err, err_len, nullptr);
}

extern "C" size_t qf_cutlass_int4_workspace(const QfCutlassInt4Args *a) {
    size_t bytes = 0;
    char err[8];
    return qf_cutlass::dispatch(*a, err, sizeof err, &bytes) == 0 ? bytes : 0;
}
