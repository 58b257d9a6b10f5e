# The one list of targets qforge builds. Each entry is
#   name | family | Halide target string | features the machine must have
# Names are what the registry, tests, benchmarks and the CLI print. The family
# says which build compiles it (see targets/families.cmake): x86 and cuda in the
# x86-64 build, arm64 in the aarch64 cross build. Within a CPU family the
# multitarget ("auto") library tries the entries in the order given, best
# first, and falls back to the last one, so keep them ordered that way. CUDA
# entries are ordered best first too: the runtime runs the first one whose
# compute capability the device has.
set(QF_TARGETS
    "x86-avx512-vnni|x86|x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake-avx512_cannonlake-avx512_zen4|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl avx512ifma avx512vbmi avx512vbmi2 avx512vnni avx512bitalg avx512vpopcntdq avx512bf16"
    "x86-avx512|x86|x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl"
    "x86-avx2|x86|x86-64-linux-sse41-avx-avx2-fma-f16c|sse4.1 avx avx2 fma f16c"
    "x86-sse41|x86|x86-64-linux-sse41|sse4.1"
    # Halide 21 has no i8mm feature (it never emits smmla/usdot), so dotprod is the top ARM level.
    "arm64-dotprod|arm64|arm-64-linux-arm_dot_prod-arm_fp16|asimd asimddp asimdhp"
    "arm64-neon|arm64|arm-64-linux|asimd"
    # Halide 21's highest CUDA capability is 86; Hopper (90) runs its PTX.
    "cuda-sm86|cuda|x86-64-linux-cuda-cuda_capability_86|cuda sm86"
    "cuda-sm80|cuda|x86-64-linux-cuda-cuda_capability_80|cuda sm80"
)

# Every kernel, built for every target above and once as a multitarget
# library. A row: registry name | generator | generator parameters.
# Adding a row here adds the kernel to the registry, and so to the tests and
# benchmarks that iterate over it.
set(QF_KERNELS
    "int4g_dequant_g32|int4g_dequant|group_size=32 out.type=float32"
    "int4g_dequant_g64|int4g_dequant|group_size=64 out.type=float32"
    "int4g_dequant_g128|int4g_dequant|group_size=128 out.type=float32"
    "int4g_matvec_f32_g32|int4g_matmul|group_size=32 mode=decode"
    "int4g_matvec_f32_g64|int4g_matmul|group_size=64 mode=decode"
    "int4g_matvec_f32_g128|int4g_matmul|group_size=128 mode=decode"
    "int4g_matmul_f32_g32|int4g_matmul|group_size=32 mode=prefill"
    "int4g_matmul_f32_g64|int4g_matmul|group_size=64 mode=prefill"
    "int4g_matmul_f32_g128|int4g_matmul|group_size=128 mode=prefill"
    "q4k_dequant|q4k_dequant|out.type=float32"
    "q4k_matvec_f32|q4k_matmul_f32|mode=decode"
    "q4k_matmul_f32|q4k_matmul_f32|mode=prefill"
    "q8k_quantize|q8k_quantize|"
    "q4k_matvec_q8|q4k_matmul_q8|mode=decode"
    "q4k_matmul_q8|q4k_matmul_q8|mode=prefill"
    "q6k_dequant|ggml_block_dequant|format=q6_k out.type=float32"
    "q6k_matvec_f32|ggml_block_matmul|format=q6_k mode=decode"
    "q6k_matmul_f32|ggml_block_matmul|format=q6_k mode=prefill"
    "q8_0_dequant|ggml_block_dequant|format=q8_0 out.type=float32"
    "q8_0_matvec_f32|ggml_block_matmul|format=q8_0 mode=decode"
    "q8_0_matmul_f32|ggml_block_matmul|format=q8_0 mode=prefill"
    "q4_0_dequant|ggml_block_dequant|format=q4_0 out.type=float32"
    "q4_0_matvec_f32|ggml_block_matmul|format=q4_0 mode=decode"
    "q4_0_matmul_f32|ggml_block_matmul|format=q4_0 mode=prefill"
    "f32_matvec_f32|dense_matmul|weight.type=float32 mode=decode"
    "f32_matmul_f32|dense_matmul|weight.type=float32 mode=prefill"
    "f16_matvec_f32|dense_matmul|weight.type=float16 mode=decode"
    "f16_matmul_f32|dense_matmul|weight.type=float16 mode=prefill"
    # The same kernels reading RMSNorm/LayerNorm(x) (norm=true): the norm is
    # fused into the kernel, no normalised activations are written.
    "int4g_matvec_f32_norm_g32|int4g_matmul|group_size=32 mode=decode norm=true"
    "int4g_matmul_f32_norm_g32|int4g_matmul|group_size=32 mode=prefill norm=true"
    "int4g_matvec_f32_norm_g64|int4g_matmul|group_size=64 mode=decode norm=true"
    "int4g_matmul_f32_norm_g64|int4g_matmul|group_size=64 mode=prefill norm=true"
    "int4g_matvec_f32_norm_g128|int4g_matmul|group_size=128 mode=decode norm=true"
    "int4g_matmul_f32_norm_g128|int4g_matmul|group_size=128 mode=prefill norm=true"
    "q4k_matvec_f32_norm|q4k_matmul_f32|mode=decode norm=true"
    "q4k_matmul_f32_norm|q4k_matmul_f32|mode=prefill norm=true"
    "q8k_quantize_norm|q8k_quantize|norm=true"
    "q6k_matvec_f32_norm|ggml_block_matmul|format=q6_k mode=decode norm=true"
    "q6k_matmul_f32_norm|ggml_block_matmul|format=q6_k mode=prefill norm=true"
    "q8_0_matvec_f32_norm|ggml_block_matmul|format=q8_0 mode=decode norm=true"
    "q8_0_matmul_f32_norm|ggml_block_matmul|format=q8_0 mode=prefill norm=true"
    "q4_0_matvec_f32_norm|ggml_block_matmul|format=q4_0 mode=decode norm=true"
    "q4_0_matmul_f32_norm|ggml_block_matmul|format=q4_0 mode=prefill norm=true"
    "f32_matvec_f32_norm|dense_matmul|weight.type=float32 mode=decode norm=true"
    "f32_matmul_f32_norm|dense_matmul|weight.type=float32 mode=prefill norm=true"
    "f16_matvec_f32_norm|dense_matmul|weight.type=float16 mode=decode norm=true"
    "f16_matmul_f32_norm|dense_matmul|weight.type=float16 mode=prefill norm=true"
    # The CUDA prefill path (dequantize to f16, then cuBLAS): the weights of
    # every quantized format and the (normalised) activations as f16.
    "int4g_dequant_f16_g32|int4g_dequant|group_size=32 out.type=float16"
    "int4g_dequant_f16_g64|int4g_dequant|group_size=64 out.type=float16"
    "int4g_dequant_f16_g128|int4g_dequant|group_size=128 out.type=float16"
    "q4k_dequant_f16|q4k_dequant|out.type=float16"
    "q6k_dequant_f16|ggml_block_dequant|format=q6_k out.type=float16"
    "q8_0_dequant_f16|ggml_block_dequant|format=q8_0 out.type=float16"
    "q4_0_dequant_f16|ggml_block_dequant|format=q4_0 out.type=float16"
    "f16_from_f32|f16_convert|"
    "f16_from_f32_norm|f16_convert|norm=true"
)

# Schedule variants to time against the defaults on a device (configure with
# -DQF_TUNING=ON; bench/device/cuda_bench times them with QF_BENCH_TUNE=1).
# A row as in QF_KERNELS, named kernel@tag: the runtime runs it where
# RunOptions::kernel names it. Built for the CUDA targets only.
set(QF_TUNING_KERNELS
    "q4k_matvec_f32@b4w32r2|q4k_matmul_f32|mode=decode vector_width=4 lanes=32 tile_rows=2"
    "q4k_matvec_f32@b8w32r2|q4k_matmul_f32|mode=decode vector_width=8 lanes=32 tile_rows=2"
    "q4k_matvec_f32@b8w16r2|q4k_matmul_f32|mode=decode vector_width=8 lanes=16 tile_rows=2"
    "q4k_matvec_f32@b8w16r1|q4k_matmul_f32|mode=decode vector_width=8 lanes=16 tile_rows=1"
    "q4k_matvec_f32@b8w32r1u1|q4k_matmul_f32|mode=decode vector_width=8 lanes=32 tile_rows=1 unroll=1"
    "q4k_matvec_f32@b8w32r1u4|q4k_matmul_f32|mode=decode vector_width=8 lanes=32 tile_rows=1 unroll=4"
    "q4k_matvec_f32@b16w16r2|q4k_matmul_f32|mode=decode vector_width=16 lanes=16 tile_rows=2"
    "int4g_matvec_f32_g128@b4w32r1|int4g_matmul|group_size=128 mode=decode vector_width=4 lanes=32 tile_rows=1"
    "int4g_matvec_f32_g128@b4w32r2u4|int4g_matmul|group_size=128 mode=decode vector_width=4 lanes=32 tile_rows=2 unroll=4"
    "int4g_matvec_f32_g128@b4w16r2|int4g_matmul|group_size=128 mode=decode vector_width=4 lanes=16 tile_rows=2"
    "int4g_matvec_f32_g128@b4w32r4|int4g_matmul|group_size=128 mode=decode vector_width=4 lanes=32 tile_rows=4"
    "int4g_matvec_f32_g128@b8w16r2|int4g_matmul|group_size=128 mode=decode vector_width=8 lanes=16 tile_rows=2"
    "q4k_dequant_f16@c8|q4k_dequant|out.type=float16 vector_width=8"
    "q4k_matmul_f32@b4w32r2t4|q4k_matmul_f32|mode=prefill vector_width=4 lanes=32 tile_rows=2 tile_tokens=4"
    "q4k_matmul_f32@b8w32r2t4|q4k_matmul_f32|mode=prefill vector_width=8 lanes=32 tile_rows=2 tile_tokens=4"
    "q4k_matmul_f32@b8w32r1t4|q4k_matmul_f32|mode=prefill vector_width=8 lanes=32 tile_rows=1 tile_tokens=4"
    "q4k_matmul_f32@b8w32r1t8|q4k_matmul_f32|mode=prefill vector_width=8 lanes=32 tile_rows=1 tile_tokens=8"
    "q4k_matmul_f32@b4w32r1t8|q4k_matmul_f32|mode=prefill vector_width=4 lanes=32 tile_rows=1 tile_tokens=8"
)
