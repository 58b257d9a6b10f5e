// CUTLASS's int4 x f16 GEMM (runtime/cuda/cutlass_int4g*.cu) on its own,
// against cuBLAS's f16 GEMM on the same values (dequantized once): both tile
// sizes, the plain and the shuffled weight layout (shuffled by CuTe's own
// reorder_tensor), tiles of 16 tokens and K tiles of 128, split-K, 1 to 512 tokens, on 14336x4096, 4096x14336 and 4096x4096 with
// groups of 128; weights rotate over 4 copies past the L2. Prints each
// time (CUDA events around 20 calls, median of 9), its ratio to cuBLAS and its error
// against cuBLAS's output. What the tile rule in runtime/cuda/cutlass.cpp
// is to be set from. Build (sm_90, the .venv's nvidia-cutlass headers):
//   C=$(.venv/bin/python -c "import cutlass_library, os; print(os.path.dirname(cutlass_library.__file__))")/source
//   F="-std=c++17 -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -diag-suppress 20012
//      -I$C/include -I$C/tools/util/include -Iruntime/cuda"
//   nvcc $F -DQF_CUTLASS_PROBE_TILES -DCUTLASS_ENABLE_GDC_FOR_SM90 -c runtime/cuda/cutlass_int4g.cu -o g.o
//   nvcc $F -DQF_CUTLASS_PROBE_TILES bench/probes/cutlass_int4/probe.cu runtime/cuda/cutlass_int4g_split.cu g.o -lcublas -o cutlass_probe
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/util/mixed_dtype_utils.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "cutlass_int4g.h"
using namespace cute;
#define CK(x) do { auto e = (x); if (e) { printf("%s:%d err %d\n", __FILE__, __LINE__, (int)e); exit(1);} } while (0)

__global__ void dequant(const uint8_t* wq, const __half* st, __half* w16, int out, int in, int g) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i >= (int64_t)out * in) return;
  int r = i / in, c = i % in;
  uint8_t b = wq[(int64_t)r * (in / 2) + c / 2];
  int s = (c & 1) ? (int8_t)(b & 0xF0) >> 4 : (int8_t)(b << 4) >> 4;
  w16[i] = __float2half(__half2float(st[(int64_t)(c / g) * out + r]) * s);
}

int main() {
  cublasHandle_t h; CK(cublasCreate(&h));
  int shapes[3][2] = {{14336, 4096}, {4096, 14336}, {4096, 4096}};
  int toks[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  const int G = 128, COP = 4;
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  void* ws = nullptr; size_t ws_bytes = 0;  // split-K's workspace, grown as asked
  for (auto& sh : shapes) {
    int out = sh[0], in = sh[1];
    size_t wb = (size_t)out * in / 2;
    std::vector<uint8_t> hw(wb); for (auto& b : hw) b = rand();
    std::vector<__half> hs((size_t)out * (in / G)); for (auto& s : hs) s = __float2half(0.001f + 0.01f * (rand() / (float)RAND_MAX));
    uint8_t *wq[COP], *wsh[COP]; __half *st, *w16[2];
    for (int c = 0; c < COP; c++) { CK(cudaMalloc(&wq[c], wb)); CK(cudaMemcpy(wq[c], hw.data(), wb, cudaMemcpyHostToDevice)); CK(cudaMalloc(&wsh[c], wb)); }
    CK(cudaMalloc(&st, hs.size() * 2)); CK(cudaMemcpy(st, hs.data(), hs.size() * 2, cudaMemcpyHostToDevice));
    for (int c = 0; c < 2; c++) { CK(cudaMalloc(&w16[c], (size_t)out * in * 2)); dequant<<<((size_t)out * in + 255) / 256, 256>>>(wq[0], st, w16[c], out, in, G); }
    // shuffled copies
    {
      using Mma = cutlass::half_t;
      using ValueShuffle = Layout<Shape<_2, _4>, Stride<_4, _1>>;
      using AtomQuant = decltype(cutlass::compute_memory_reordering_atom<Mma, Layout<Shape<_1, _1>>, ValueShuffle>());
      auto shape = make_shape(out, in, 1);
      auto stride = make_stride((int64_t)in, _1{}, (int64_t)out * in);
      auto src = make_layout(shape, stride);
      auto dst = tile_to_shape(AtomQuant{}, shape);
      for (int c = 0; c < COP; c++) cutlass::reorder_tensor((cutlass::int4b_t*)wq[c], src, (cutlass::int4b_t*)wsh[c], dst);
      CK(cudaDeviceSynchronize());
    }
    __half* x16; float *y, *yr; float* bias;
    CK(cudaMalloc(&x16, (size_t)512 * in * 2)); CK(cudaMalloc(&y, (size_t)512 * out * 4)); CK(cudaMalloc(&yr, (size_t)512 * out * 4)); CK(cudaMalloc(&bias, out * 4));
    std::vector<__half> hx((size_t)512 * in); for (auto& v : hx) v = __float2half(rand() / (float)RAND_MAX - 0.5f);
    CK(cudaMemcpy(x16, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice));
    std::vector<float> hb(out); for (auto& v : hb) v = rand() / (float)RAND_MAX; CK(cudaMemcpy(bias, hb.data(), out * 4, cudaMemcpyHostToDevice));
    for (int n : toks) {
      // 20 calls back to back between two events (the host's launch work
      // overlaps the GPU's, as in a model's stream of layers), median of 9.
      auto time = [&](auto fn) { std::vector<float> ts; for (int r = 0; r < 9; r++) { cudaEventRecord(e0); for (int i = 0; i < 20; i++) fn(r * 20 + i); cudaEventRecord(e1); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); ts.push_back(ms / 20);} std::sort(ts.begin(), ts.end()); return ts[ts.size()/2]; };
      float one = 1, zero = 0;
      auto cub = [&](int i) { CK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w16[i % 2], CUDA_R_16F, in, x16, CUDA_R_16F, in, &zero, yr, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)); };
      float tc = time(cub);
      std::vector<float> ref((size_t)n * out), got((size_t)n * out);
      cub(0); CK(cudaMemcpy(ref.data(), yr, ref.size() * 4, cudaMemcpyDeviceToHost));
      printf("%dx%d tokens %3d cublas_f16 %.4f ms", out, in, n, tc);
      // The plain layout at its two tiles, then the shuffled one at 16, 32
      // or 128 tokens a tile (the first two up to 32 tokens), K tiles of 64
      // and 128, split-K over 1, 2, 4 (the probe's build of
      // cutlass_int4g.cu, -DQF_CUTLASS_PROBE_TILES, has them all).
      struct Case { int tile, shuf, splits, tile_k; };
      std::vector<Case> cases = {{32, 0, 1, 64}, {128, 0, 1, 64}};
      for (int tile : {16, 32, 128}) {
        if ((n <= 32) != (tile <= 32)) continue;
        for (int tk : {64, 128}) for (int sp : {1, 2, 4}) cases.push_back({tile, 1, sp, tk});
      }
      for (Case c : cases) {
        char err[256];
        auto args = [&](int i) { return QfCutlassInt4Args{c.shuf ? wsh[i % COP] : wq[i % COP], (const uint16_t*)st, (const uint16_t*)x16, nullptr, y, out, in, n, out, G, c.tile, c.tile_k, c.shuf, c.splits, ws, ws_bytes, nullptr}; };
        { QfCutlassInt4Args a = args(0); size_t need = qf_cutlass_int4_workspace(&a); if (need > ws_bytes) { if (ws) cudaFree(ws); CK(cudaMalloc(&ws, need)); ws_bytes = need; } }
        auto cu = [&](int i) { QfCutlassInt4Args a = args(i);
          if (qf_cutlass_int4_gemm(&a, err, 256)) { printf("\nERR %s\n", err); exit(1);} };
        float t = time(cu);
        cu(0); CK(cudaDeviceSynchronize()); CK(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost));
        double mx = 0, md = 0; for (size_t i = 0; i < got.size(); i++) { mx = std::max(mx, (double)fabs(ref[i])); md = std::max(md, (double)fabs(ref[i] - got[i])); }
        printf(" | t%d%s_k%d_s%d %.4f (%.2fx, err %.1e)", c.tile, c.shuf ? "s" : "", c.tile_k, c.splits, t, tc / t, md / mx);
      }
      // bias check, with and without split-K
      for (int sp : {1, 4}) { QfCutlassInt4Args a{wsh[0], (const uint16_t*)st, (const uint16_t*)x16, bias, y, out, in, n, out, G, 128, 64, 1, sp, ws, ws_bytes, nullptr}; char err[256];
        if (qf_cutlass_int4_workspace(&a) > ws_bytes) { cudaFree(ws); ws_bytes = qf_cutlass_int4_workspace(&a); CK(cudaMalloc(&ws, ws_bytes)); a.workspace = ws; a.workspace_bytes = ws_bytes; }
        if (qf_cutlass_int4_gemm(&a, err, 256)) { printf("\nERR %s\n", err); exit(1); }
        CK(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost)); double md = 0, mx = 0; for (size_t i = 0; i < got.size(); i++) { double r = ref[i] + hb[i % out]; mx = std::max(mx, fabs(r)); md = std::max(md, fabs(r - got[i])); } printf(" | bias%s err %.1e", sp > 1 ? "+splitk4" : "", md / mx); }
      printf("\n"); fflush(stdout);
    }
    for (int c = 0; c < COP; c++) { cudaFree(wq[c]); cudaFree(wsh[c]); } cudaFree(st); cudaFree(w16[0]); cudaFree(w16[1]); cudaFree(x16); cudaFree(y); cudaFree(yr); cudaFree(bias);
  }
  printf("done\n");
}
