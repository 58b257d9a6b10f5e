# The one list of targets qforge builds. Each entry is
#   name | Halide target string | CPU features the runtime must see to run it
# Names are what the registry, tests, benchmarks and the CLI print. The
# multitarget ("auto") library tries the x86 entries in the order given, best
# first, and falls back to the last one, so keep them ordered that way.
set(QF_X86_TARGETS
    "x86-avx512-vnni|x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake-avx512_cannonlake-avx512_zen4|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl avx512ifma avx512vbmi avx512vbmi2 avx512vnni avx512bitalg avx512vpopcntdq avx512bf16"
    "x86-avx512|x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl"
    "x86-avx2|x86-64-linux-sse41-avx-avx2-fma-f16c|sse4.1 avx avx2 fma f16c"
    "x86-sse41|x86-64-linux-sse41|sse4.1"
)

# Every kernel, built for every target above and once as a multitarget
# library. A row: registry name | generator | generator parameters.
# Adding a row here adds the kernel to the registry, and so to the tests and
# benchmarks that iterate over it.
set(QF_KERNELS
    "int4g_dequant_g32|int4g_dequant|group_size=32"
    "int4g_dequant_g64|int4g_dequant|group_size=64"
    "int4g_dequant_g128|int4g_dequant|group_size=128"
    "int4g_matvec_f32_g32|int4g_matmul|group_size=32 mode=decode"
    "int4g_matvec_f32_g64|int4g_matmul|group_size=64 mode=decode"
    "int4g_matvec_f32_g128|int4g_matmul|group_size=128 mode=decode"
    "int4g_matmul_f32_g32|int4g_matmul|group_size=32 mode=prefill"
    "int4g_matmul_f32_g64|int4g_matmul|group_size=64 mode=prefill"
    "int4g_matmul_f32_g128|int4g_matmul|group_size=128 mode=prefill"
    "q4k_dequant|q4k_dequant|"
    "q4k_matvec_f32|q4k_matmul_f32|mode=decode"
    "q4k_matmul_f32|q4k_matmul_f32|mode=prefill"
    "q8k_quantize|q8k_quantize|"
    "q4k_matvec_q8|q4k_matmul_q8|mode=decode"
    "q4k_matmul_q8|q4k_matmul_q8|mode=prefill"
)
