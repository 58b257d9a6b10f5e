#include "cutlass.h"

#include <algorithm>
#include <string>

#include "cuda_device.h"
#include "device_scratch.h"
#include "qforge/error.h"
#ifdef QF_HAVE_CUTLASS
#include "cutlass_int4g.h"
#endif

namespace qforge::internal {

std::string cutlass_absent() {
#ifndef QF_HAVE_CUTLASS
    return std::string("CUTLASS's GEMM is not built: ") + QF_NO_CUTLASS_WHY;
#else
    const CudaDevice &d = cuda_device();
    if (!d.present) return "no CUDA device: " + d.why_absent;
    if (d.major != 9 || d.minor != 0) {
        return "CUTLASS's int4 GEMM is built for sm_90 (Hopper); " + d.name + " is sm_" + std::to_string(d.major) +
               std::to_string(d.minor);
    }
    return "";
#endif
}

std::string cutlass_int4_shape_absent(int64_t out, int64_t in, int group) {
    if (out % 16 || in % 16) {
        return "[" + std::to_string(out) + ", " + std::to_string(in) + "]: rows and columns must be multiples of 16";
    }
    if (group < 64 || in % group) {
        return "group " + std::to_string(group) + ": must be at least 64 (the GEMM's K tile) and divide in = " +
               std::to_string(in);
    }
    return "";
}

CutlassTile cutlass_tile(int64_t tokens, int group) {
    // bench/device/RULES.md, "CUTLASS tiles": the narrowest tile of tokens
    // that holds the call, and K steps of 128 where a group holds whole
    // ones, except in a 128-token tile at most half full.
    const int t = tokens <= 16 ? 16 : tokens <= 32 ? 32 : 128;
    const bool k128 = group % 128 == 0 && !(t == 128 && tokens <= 64);
    return {t, k128 ? 128 : 64};
}

int cutlass_splits(int64_t out, int64_t in, int64_t tokens, int tile_tokens, int multiprocessors) {
    // Split K only where the tiles fill less than half the machine, into
    // as many splits as fill it, each of at least kMinSplitK columns
    // (bench/device/RULES.md, "CUTLASS split-K").
    constexpr int64_t kMinSplitK = 1024, kMaxSplits = 8;
    const int64_t tiles = (out + 127) / 128 * ((tokens + tile_tokens - 1) / tile_tokens);
    if (tiles * 2 > multiprocessors) return 1;
    return static_cast<int>(std::max<int64_t>(1, std::min({multiprocessors / tiles, in / kMinSplitK, kMaxSplits})));
}

void cutlass_int4_gemm(const uint8_t *shuffled, const uint16_t *scales_t, int group, const uint16_t *x16,
                       const float *bias, float *y, int64_t out, int64_t in, int64_t tokens, int64_t ldy, void *stream) {
    const std::string op = "cutlass_int4_gemm";
    if (const std::string why = cutlass_absent(); !why.empty()) throw Error(op + ": " + why);
    if (const std::string why = cutlass_int4_shape_absent(out, in, group); !why.empty()) throw Error(op + ": " + why);
    if (ldy % 4) throw Error(op + ": y's row stride " + std::to_string(ldy) + " must be a multiple of 4 floats (TMA)");
#ifdef QF_HAVE_CUTLASS
    const CutlassTile tile = cutlass_tile(tokens, group);
    QfCutlassInt4Args a{shuffled, scales_t, x16, bias, y, out, in, tokens, ldy, group, tile.tokens, tile.k, 1,
                        cutlass_splits(out, in, tokens, tile.tokens, cuda_device().multiprocessors), nullptr, 0, stream};
    a.workspace_bytes = qf_cutlass_int4_workspace(&a);
    if (a.workspace_bytes) {
        a.workspace = device_scratch().get(stream, DeviceScratch::cutlass_workspace, a.workspace_bytes);
    }
    char err[512] = {0};
    if (qf_cutlass_int4_gemm(&a, err, sizeof err) != 0) throw Error(op + ": " + err);
#else
    (void)shuffled, (void)scales_t, (void)x16, (void)bias, (void)y, (void)tokens, (void)stream;
#endif
}

}  // namespace qforge::internal
