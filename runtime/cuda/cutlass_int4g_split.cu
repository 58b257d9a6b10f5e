// CUTLASS's split-K int4 GEMMs (cutlass_int4g_kernels.cuh), compiled without
// CUTLASS_ENABLE_GDC_FOR_SM90: with it, CUTLASS 4.2's stream-K scheduler
// fails to compile (sm90_tile_scheduler_stream_k.hpp, is_last_tile binds a
// const member to a non-const reference), so these launch without PDL.
#include "cutlass_int4g_kernels.cuh"

namespace qf_cutlass {

int split_k(const QfCutlassInt4Args &a, char *err, int err_len, size_t *workspace_bytes) {
    return by_tile<true, true>(a, err, err_len, workspace_bytes);
}

}  // namespace qf_cutlass
