// Internal to runtime/cuda: the CUTLASS GEMM kernels of cutlass_int4g.cu,
// as templates that its two translation units instantiate (the split-K
// ones apart: cutlass_int4g_split.cu).
#pragma once

#include "cutlass_int4g.h"

#include <cstdio>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/mixed_dtype_utils.hpp"
#include "cutlass/util/packed_stride.hpp"

using namespace cute;

namespace qf_cutlass {

using Mma = cutlass::half_t;
using Quant = cutlass::int4b_t;
using Out = float;
using LayoutW = cutlass::layout::RowMajor;     // A: out x in, K-major
using LayoutX = cutlass::layout::ColumnMajor;  // B: in x tokens, K-major
using LayoutY = cutlass::layout::ColumnMajor;  // D: out x tokens, out fastest

template <int TileN, int TileK, bool Shuffled, bool SplitK>
struct Config {
    using TileShape = Shape<_128, Int<TileN>, Int<TileK>>;
    using ClusterShape = Shape<_1, _1, _1>;
    using StrideW = cutlass::detail::TagToStrideA_t<LayoutW>;
    // The shuffled layout puts the 16 nibbles a thread reads for one wgmma
    // next to each other (one 64-bit load), the values of 8 in the order
    // 0,2,4,6,1,3,5,7 (8 upcasts from 2 shifts).
    using ValueShuffle = Layout<Shape<_2, _4>, Stride<_4, _1>>;
    using AtomQuant = decltype(cutlass::compute_memory_reordering_atom<Mma, Layout<Shape<_1, _1>>, ValueShuffle>());
    using LayoutWShuffled = decltype(tile_to_shape(AtomQuant{}, Layout<Shape<int, int, int>, StrideW>{}));
    using WLayoutArg = std::conditional_t<Shuffled, LayoutWShuffled, LayoutW>;

    using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
        cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutY, 4, Out, LayoutY, 4,
        cutlass::epilogue::TmaWarpSpecializedCooperative,
        cutlass::epilogue::fusion::LinCombPerRowBias<Out, float, float, Out>>::CollectiveOp;
    using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, cute::tuple<Quant, Mma>, WLayoutArg, 32, Mma, LayoutX, 8,
        float, TileShape, ClusterShape,
        cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
        cutlass::gemm::KernelTmaWarpSpecializedCooperative>::CollectiveOp;
    // The persistent scheduler where K is not split: the stream-K one costs
    // a workspace and its fix-up even with one split.
    using Scheduler = std::conditional_t<SplitK, cutlass::gemm::StreamKScheduler, cutlass::gemm::PersistentScheduler>;
    using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop, Epilogue, Scheduler>;
    using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

template <int TileN, int TileK, bool Shuffled, bool SplitK, bool Pdl = false>
int run(const QfCutlassInt4Args &a, char *err, int err_len, size_t *workspace_bytes) {
    using C = Config<TileN, TileK, Shuffled, SplitK>;
    using Gemm = typename C::Gemm;
    const int m = static_cast<int>(a.out), n = static_cast<int>(a.tokens), k = static_cast<int>(a.in);
    auto stride_w = cutlass::make_cute_packed_stride(typename C::StrideW{}, make_shape(m, k, 1));
    auto w_layout = [&] {
        if constexpr (Shuffled) {
            return tile_to_shape(typename C::AtomQuant{}, make_shape(m, k, 1));
        } else {
            return stride_w;
        }
    }();
    using StrideX = typename Gemm::GemmKernel::StrideB;
    using StrideY = typename Gemm::GemmKernel::StrideD;
    using StrideS = typename Gemm::CollectiveMainloop::StrideScale;
    auto stride_x = cutlass::make_cute_packed_stride(StrideX{}, make_shape(n, k, 1));
    StrideY stride_y = cutlass::make_cute_packed_stride(StrideY{}, make_shape(m, n, 1));
    cute::get<1>(stride_y) = a.ldy;
    auto stride_s = cutlass::make_cute_packed_stride(StrideS{}, make_shape(m, k / a.group, 1));
    typename Gemm::Arguments args{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {m, n, k, 1},
        {static_cast<const Quant *>(a.weight), w_layout, reinterpret_cast<const Mma *>(a.x16), stride_x,
         reinterpret_cast<const Mma *>(a.scales16), stride_s, a.group},
        {{}, nullptr, stride_y, a.y, stride_y}};
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.thread.beta = 0.0f;
    args.epilogue.thread.bias_ptr = a.bias;
    if constexpr (SplitK) {
        args.scheduler.splits = a.splits;
        args.scheduler.decomposition_mode = cutlass::gemm::kernel::detail::DecompositionMode::SplitK;
    }
    if (workspace_bytes) {
        *workspace_bytes = Gemm::get_workspace_size(args);
        return 0;
    }
    Gemm gemm;
    cutlass::Status s = gemm.can_implement(args);
    if (s != cutlass::Status::kSuccess) {
        std::snprintf(err, err_len, "CUTLASS cannot run out %lld x in %lld x tokens %lld, group %d: %s",
                      static_cast<long long>(a.out), static_cast<long long>(a.in), static_cast<long long>(a.tokens),
                      a.group, cutlass::cutlassGetStatusString(s));
        return 1;
    }
    if (Gemm::get_workspace_size(args) > a.workspace_bytes) {
        std::snprintf(err, err_len, "CUTLASS wants %zu bytes of workspace, was given %zu",
                      Gemm::get_workspace_size(args), a.workspace_bytes);
        return 1;
    }
    s = gemm.run(args, a.workspace, static_cast<cudaStream_t>(a.stream), nullptr, Pdl);
    if (s != cutlass::Status::kSuccess) {
        std::snprintf(err, err_len, "CUTLASS GEMM failed: %s (%s)", cutlass::cutlassGetStatusString(s),
                      cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    return 0;
}

// The kernel of a call's tile: 16, 32 or 128 tokens, K 64 or 128.
template <bool Shuffled, bool SplitK, bool Pdl = false>
int by_tile(const QfCutlassInt4Args &a, char *err, int err_len, size_t *workspace_bytes) {
    const bool k128 = a.tile_k == 128;
    if (a.tile_tokens <= 16) {
        return k128 ? run<16, 128, Shuffled, SplitK, Pdl>(a, err, err_len, workspace_bytes)
                    : run<16, 64, Shuffled, SplitK, Pdl>(a, err, err_len, workspace_bytes);
    }
    if (a.tile_tokens <= 32) {
        return k128 ? run<32, 128, Shuffled, SplitK, Pdl>(a, err, err_len, workspace_bytes)
                    : run<32, 64, Shuffled, SplitK, Pdl>(a, err, err_len, workspace_bytes);
    }
    return k128 ? run<128, 128, Shuffled, SplitK, Pdl>(a, err, err_len, workspace_bytes)
                : run<128, 64, Shuffled, SplitK, Pdl>(a, err, err_len, workspace_bytes);
}

// The split-K kernels (cutlass_int4g_split.cu).
int split_k(const QfCutlassInt4Args &a, char *err, int err_len, size_t *workspace_bytes);

}  // namespace qf_cutlass
