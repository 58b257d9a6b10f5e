# The one list of targets qforge builds. Each entry is
#   name | family | Halide target string | features the machine must have |
#   integer-dot instructions (any one of them) that tests/test_asm.cpp
#   requires in the target's 8-bit-activation kernels; the first is the one
#   the hottest loop of its packed kernels must use
# Names are what the registry, tests, benchmarks and the CLI print. The family
# says which build compiles it (see targets/families.cmake): x86 and cuda in the
# x86-64 build, arm64 in the aarch64 cross build. Within a CPU family the
# multitarget ("auto") library tries the entries in the order given, best
# first, and falls back to the last one, so keep them ordered that way. CUDA
# entries are ordered best first too: the runtime runs the first one whose
# compute capability the device has.
set(QF_TARGETS
    # AMD's cores (Zen 4 and later) at the same level, with schedules of
    # their own (schedules/x86.cpp, kZen): "amd" is the CPU's vendor, which
    # Halide's multitarget dispatch cannot see, so "auto" libraries leave
    # this entry out (the registry's dispatch, QF_VARIANTS=all, picks it).
    "x86-zen4|x86|x86-64-linux-tune_znver4-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake-avx512_cannonlake-avx512_zen4|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl avx512ifma avx512vbmi avx512vbmi2 avx512vnni avx512bitalg avx512vpopcntdq avx512bf16 amd|vpdpbusd"
    "x86-avx512-vnni|x86|x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake-avx512_cannonlake-avx512_zen4|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl avx512ifma avx512vbmi avx512vbmi2 avx512vnni avx512bitalg avx512vpopcntdq avx512bf16|vpdpbusd"
    "x86-avx512|x86|x86-64-linux-sse41-avx-avx2-fma-f16c-avx512-avx512_skylake|sse4.1 avx avx2 fma f16c avx512f avx512cd avx512bw avx512dq avx512vl|vpmaddubsw vpmaddwd"
    "x86-avx2|x86|x86-64-linux-sse41-avx-avx2-fma-f16c|sse4.1 avx avx2 fma f16c|vpmaddubsw vpmaddwd"
    "x86-sse41|x86|x86-64-linux-sse41|sse4.1|pmaddubsw pmaddwd"
    # Halide 21 has no i8mm feature (it never emits smmla/usdot), so dotprod is the top ARM level.
    "arm64-dotprod|arm64|arm-64-linux-arm_dot_prod-arm_fp16|asimd asimddp asimdhp|sdot udot usdot"
    "arm64-neon|arm64|arm-64-linux|asimd|smull smull2 smlal smlal2 saddlp sadalp"
    # Halide 21's highest CUDA capability is 86; Hopper (90) runs its PTX.
    # The packed kernels (u4 weights x s8 activations) take dp4a.u32.s32.
    "cuda-sm86|cuda|x86-64-linux-cuda-cuda_capability_86|cuda sm86|dp4a.u32.s32 dp4a.s32.s32"
    "cuda-sm80|cuda|x86-64-linux-cuda-cuda_capability_80|cuda sm80|dp4a.u32.s32 dp4a.s32.s32"
)

# Every kernel: one row each, in columns (whitespace-separated, "-" for none):
#   format     the weight format (a row of runtime/src/formats.cpp), or "-" for
#              kernels of the activations alone (quantize, convert)
#   op         dequant | matvec (decode, one token) | matmul (prefill) |
#              quantize (activations to 8 bits) | convert (activations to f16) |
#              glu (an FFN's activation, gated or plain) | head_norm (RMSNorm per attention head) |
#              permute (activations' columns gathered into an act-order layer's order) |
#              repack (weights into another library's layout: out names it)
#   act        the activation type it reads: f32 | q8_k | q8_0 ("-" for dequant)
#   norm       "norm": it reads RMSNorm/LayerNorm(x), computed inline
#   out        its output: f32 | f16 | q8_k | q8_0 | cutlass (CUTLASS's sm_90 int4 layout)
#   group      int4g's and int4z's group size
#   pack       R: the kernel reads the packed layout of FORMATS.md ("Packed
#              layouts"), tiles of R rows interleaved ("-": the file's own
#              layout). R is a knob per target family: a row per family.
#   families   which target families build it: all, or a comma list (x86,arm64,cuda)
#   generator  the generator in generators/, and its params beyond those the
#              columns imply (mode from op, norm, group_size, out.type)
# targets/CMakeLists.txt turns each row into one library per target of its
# families (plus "auto" for the CPU families) and into a typed C++ row
# (qforge_kernel_table.inc) that the runtime, the tests and the benchmarks
# iterate over. Nothing parses the kernel's name: it is built from the
# columns (runtime/src/registry.cpp, kernel_name).
set(QF_KERNELS
#   format op       act  norm out  group pack families generator          params
    "int4g  dequant  -    -    f32  32    -    all      int4g_dequant      -"
    "int4g  dequant  -    -    f32  64    -    all      int4g_dequant      -"
    "int4g  dequant  -    -    f32  128   -    all      int4g_dequant      -"
    "q4_k   dequant  -    -    f32  -     -    all      q4k_dequant        -"
    "int4g  matvec   f32  -    f32  32    -    all      int4g_matmul       -"
    "int4g  matvec   f32  -    f32  64    -    all      int4g_matmul       -"
    "int4g  matvec   f32  -    f32  128   -    all      int4g_matmul       -"
    "int4g  matmul   f32  -    f32  32    -    all      int4g_matmul       -"
    "int4g  matmul   f32  -    f32  64    -    all      int4g_matmul       -"
    "int4g  matmul   f32  -    f32  128   -    all      int4g_matmul       -"
    "q4_k   matvec   f32  -    f32  -     -    all      q4k_matmul_f32     -"
    "q4_k   matmul   f32  -    f32  -     -    all      q4k_matmul_f32     -"
    "f32    matvec   f32  -    f32  -     -    all      dense_matmul       weight.type=float32"
    "f32    matmul   f32  -    f32  -     -    all      dense_matmul       weight.type=float32"
    "f16    matvec   f32  -    f32  -     -    all      dense_matmul       weight.type=float16"
    "f16    matmul   f32  -    f32  -     -    all      dense_matmul       weight.type=float16"
    "bf16   matvec   f32  -    f32  -     -    all      dense_matmul       weight.type=bfloat16"
    "bf16   matmul   f32  -    f32  -     -    all      dense_matmul       weight.type=bfloat16"
    "int4g  matvec   f32  norm f32  32    -    all      int4g_matmul       -"
    "int4g  matvec   f32  norm f32  64    -    all      int4g_matmul       -"
    "int4g  matvec   f32  norm f32  128   -    all      int4g_matmul       -"
    "int4g  matmul   f32  norm f32  32    -    all      int4g_matmul       -"
    "int4g  matmul   f32  norm f32  64    -    all      int4g_matmul       -"
    "int4g  matmul   f32  norm f32  128   -    all      int4g_matmul       -"
    "q4_k   matvec   f32  norm f32  -     -    all      q4k_matmul_f32     -"
    "q4_k   matmul   f32  norm f32  -     -    all      q4k_matmul_f32     -"
    "f32    matvec   f32  norm f32  -     -    all      dense_matmul       weight.type=float32"
    "f32    matmul   f32  norm f32  -     -    all      dense_matmul       weight.type=float32"
    "f16    matvec   f32  norm f32  -     -    all      dense_matmul       weight.type=float16"
    "f16    matmul   f32  norm f32  -     -    all      dense_matmul       weight.type=float16"
    "bf16   matvec   f32  norm f32  -     -    all      dense_matmul       weight.type=bfloat16"
    "bf16   matmul   f32  norm f32  -     -    all      dense_matmul       weight.type=bfloat16"
    "-      quantize f32  -    q8_k -     -    all      q8k_quantize       -"
    "-      quantize f32  norm q8_k -     -    all      q8k_quantize       -"
    "q4_k   matvec   q8_k -    f32  -     -    all      q4k_matmul_q8      -"
    "q4_k   matmul   q8_k -    f32  -     -    all      q4k_matmul_q8      -"
    "q4_k   matvec   q8_k -    f32  -     16   x86      q4k_packed_matmul_q8 -"
    "q4_k   matmul   q8_k -    f32  -     16   x86      q4k_packed_matmul_q8 -"
    "q4_k   matvec   q8_k -    f32  -     8    arm64    q4k_packed_matmul_q8 -"
    "q4_k   matmul   q8_k -    f32  -     8    arm64    q4k_packed_matmul_q8 -"
    "-      quantize f32  -    q8_0 -     -    all      q8_0_quantize      -"
    "-      quantize f32  norm q8_0 -     -    all      q8_0_quantize      -"
    "q4_0   matvec   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 -"
    "q4_0   matmul   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 -"
    "int4g  matvec   q8_0 -    f32  32    16   x86      block32_packed_matmul_q8 -"
    "int4g  matmul   q8_0 -    f32  32    16   x86      block32_packed_matmul_q8 -"
    "int4g  matvec   q8_0 -    f32  64    16   x86      block32_packed_matmul_q8 -"
    "int4g  matmul   q8_0 -    f32  64    16   x86      block32_packed_matmul_q8 -"
    "int4g  matvec   q8_0 -    f32  128   16   x86      block32_packed_matmul_q8 -"
    "int4g  matmul   q8_0 -    f32  128   16   x86      block32_packed_matmul_q8 -"
    "q4_0   matvec   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 -"
    "q4_0   matmul   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 -"
    "int4g  matvec   q8_0 -    f32  32    8    arm64    block32_packed_matmul_q8 -"
    "int4g  matmul   q8_0 -    f32  32    8    arm64    block32_packed_matmul_q8 -"
    "int4g  matvec   q8_0 -    f32  64    8    arm64    block32_packed_matmul_q8 -"
    "int4g  matmul   q8_0 -    f32  64    8    arm64    block32_packed_matmul_q8 -"
    "int4g  matvec   q8_0 -    f32  128   8    arm64    block32_packed_matmul_q8 -"
    "int4g  matmul   q8_0 -    f32  128   8    arm64    block32_packed_matmul_q8 -"
    "q4_1   matvec   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 has_min=true"
    "q4_1   matmul   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 has_min=true"
    "q5_0   matvec   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 bits=5"
    "q5_0   matmul   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 bits=5"
    "q5_1   matvec   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 bits=5,has_min=true"
    "q5_1   matmul   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 bits=5,has_min=true"
    "q4_1   matvec   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 has_min=true"
    "q4_1   matmul   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 has_min=true"
    "q5_0   matvec   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 bits=5"
    "q5_0   matmul   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 bits=5"
    "q5_1   matvec   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 bits=5,has_min=true"
    "q5_1   matmul   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 bits=5,has_min=true"
    "iq4_nl matvec   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 nonlinear=true"
    "iq4_nl matmul   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 nonlinear=true"
    "iq4_nl matvec   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 nonlinear=true"
    "iq4_nl matmul   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 nonlinear=true"
    "q8_0   matvec   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 bits=8"
    "q8_0   matmul   q8_0 -    f32  -     16   x86      block32_packed_matmul_q8 bits=8"
    "q8_0   matvec   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 bits=8"
    "q8_0   matmul   q8_0 -    f32  -     8    arm64    block32_packed_matmul_q8 bits=8"
    "q6_k   matvec   q8_k -    f32  -     16   x86      q6k_packed_matmul_q8 -"
    "q6_k   matmul   q8_k -    f32  -     16   x86      q6k_packed_matmul_q8 -"
    "q6_k   matvec   q8_k -    f32  -     8    arm64    q6k_packed_matmul_q8 -"
    "q6_k   matmul   q8_k -    f32  -     8    arm64    q6k_packed_matmul_q8 -"
    "q5_k   matvec   q8_k -    f32  -     16   x86      q4k_packed_matmul_q8 bits=5"
    "q5_k   matmul   q8_k -    f32  -     16   x86      q4k_packed_matmul_q8 bits=5"
    "q5_k   matvec   q8_k -    f32  -     8    arm64    q4k_packed_matmul_q8 bits=5"
    "q5_k   matmul   q8_k -    f32  -     8    arm64    q4k_packed_matmul_q8 bits=5"
    "q3_k   matvec   q8_k -    f32  -     16   x86      q6k_packed_matmul_q8 bits=3"
    "q3_k   matmul   q8_k -    f32  -     16   x86      q6k_packed_matmul_q8 bits=3"
    "q3_k   matvec   q8_k -    f32  -     8    arm64    q6k_packed_matmul_q8 bits=3"
    "q3_k   matmul   q8_k -    f32  -     8    arm64    q6k_packed_matmul_q8 bits=3"
    "q2_k   matvec   q8_k -    f32  -     16   x86      q6k_packed_matmul_q8 bits=2"
    "q2_k   matmul   q8_k -    f32  -     16   x86      q6k_packed_matmul_q8 bits=2"
    "q2_k   matvec   q8_k -    f32  -     8    arm64    q6k_packed_matmul_q8 bits=2"
    "q2_k   matmul   q8_k -    f32  -     8    arm64    q6k_packed_matmul_q8 bits=2"
    "iq4_xs matvec   q8_k -    f32  -     16   x86      q4k_packed_matmul_q8 nonlinear=true"
    "iq4_xs matmul   q8_k -    f32  -     16   x86      q4k_packed_matmul_q8 nonlinear=true"
    "iq4_xs matvec   q8_k -    f32  -     8    arm64    q4k_packed_matmul_q8 nonlinear=true"
    "iq4_xs matmul   q8_k -    f32  -     8    arm64    q4k_packed_matmul_q8 nonlinear=true"
    "int4g  dequant  -    -    f16  32    -    cuda     int4g_dequant      -"
    "int4g  dequant  -    -    f16  64    -    cuda     int4g_dequant      -"
    "int4g  dequant  -    -    f16  128   -    cuda     int4g_dequant      -"
    "q4_k   dequant  -    -    f16  -     -    cuda     q4k_dequant        -"
    "-      convert  f32  -    f16  -     -    cuda     f16_convert        -"
    "-      convert  f32  norm f16  -     -    cuda     f16_convert        -"
    # A decoder block's pieces between its matmuls (runtime/include/qforge/block.h).
    "-      glu      f32  -    f32  -     -    all      glu                -"
    "-      head_norm f32 -    f32  -     -    all      head_norm          -"
    # The host gathers in C++ (layers.cpp); on CUDA x is in device memory.
    "-      permute  f32  -    f32  -     -    cuda     permute_columns    -"
    # For CUTLASS's tensor-core GEMM (runtime/cuda): run on the device at the
    # first prefill; the x86 rows let CPU-only tests check the layout.
    "int4g  repack   -    -    cutlass -  -    x86,cuda cutlass_int4_shuffle -"
)

# The GGUF block formats whose weights dequantize one at a time
# (generators/ggml_blocks.h): each gets the same kernels from the two shared
# generators, so a new one is a name here (plus its entry in ggml_blocks.h
# and its row of runtime/src/formats.cpp).
set(QF_BLOCK_FORMATS q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q5_k q6_k iq4_nl iq4_xs)
foreach(fmt IN LISTS QF_BLOCK_FORMATS)
    list(APPEND QF_KERNELS
        "${fmt} dequant - - f32 - - all ggml_block_dequant format=${fmt}"
        "${fmt} dequant - - f16 - - cuda ggml_block_dequant format=${fmt}"
        "${fmt} matvec f32 - f32 - - all ggml_block_matmul format=${fmt}"
        "${fmt} matmul f32 - f32 - - all ggml_block_matmul format=${fmt}"
        "${fmt} matvec f32 norm f32 - - all ggml_block_matmul format=${fmt}"
        "${fmt} matmul f32 norm f32 - - all ggml_block_matmul format=${fmt}")
    # 8-bit activations of the format's block: Q8_K for the 256-blocks.
    # The CPU families read packed layouts (the rows above); CUDA the file's.
    set(act q8_0)
    if(fmt MATCHES "_k$" OR fmt STREQUAL "iq4_xs")
        set(act q8_k)
    endif()
    list(APPEND QF_KERNELS
        "${fmt} matvec ${act} - f32 - - cuda ggml_block_matmul_q8 format=${fmt}"
        "${fmt} matmul ${act} - f32 - - cuda ggml_block_matmul_q8 format=${fmt}")
endforeach()

# int4z (zero points: GPTQ, AWQ; FORMATS.md) runs int4g's generators with
# one more input, the zero-point plane.
foreach(g 32 64 128)
    list(APPEND QF_KERNELS
        "int4z dequant - - f32 ${g} - all int4g_dequant zero_points=true"
        "int4z dequant - - f16 ${g} - cuda int4g_dequant zero_points=true"
        "int4z matvec f32 - f32 ${g} - all int4g_matmul zero_points=true"
        "int4z matmul f32 - f32 ${g} - all int4g_matmul zero_points=true"
        "int4z matvec f32 norm f32 ${g} - all int4g_matmul zero_points=true"
        "int4z matmul f32 norm f32 ${g} - all int4g_matmul zero_points=true"
        "int4z matvec q8_0 - f32 ${g} 16 x86 block32_packed_matmul_q8 zero_points=true"
        "int4z matmul q8_0 - f32 ${g} 16 x86 block32_packed_matmul_q8 zero_points=true"
        "int4z matvec q8_0 - f32 ${g} 8 arm64 block32_packed_matmul_q8 zero_points=true"
        "int4z matmul q8_0 - f32 ${g} 8 arm64 block32_packed_matmul_q8 zero_points=true")
endforeach()

# Per-channel 8-bit weights (FORMATS.md, "int8 and fp8 rows"): the block
# generators' f32 kernels on every target; int8 also with Q8_0 activations,
# packed on the CPUs (the tile's head block holds its rows' scales) and over
# its rows on CUDA. fp8 has no integer kernel: E4M3 values are not integers.
foreach(fmt int8 fp8)
    list(APPEND QF_KERNELS
        "${fmt} dequant - - f32 - - all ggml_block_dequant format=${fmt}"
        "${fmt} matvec f32 - f32 - - all ggml_block_matmul format=${fmt}"
        "${fmt} matmul f32 - f32 - - all ggml_block_matmul format=${fmt}"
        "${fmt} matvec f32 norm f32 - - all ggml_block_matmul format=${fmt}"
        "${fmt} matmul f32 norm f32 - - all ggml_block_matmul format=${fmt}")
endforeach()
list(APPEND QF_KERNELS
    "int8 matvec q8_0 - f32 - 16 x86 block32_packed_matmul_q8 bits=8,row_scales=true"
    "int8 matmul q8_0 - f32 - 16 x86 block32_packed_matmul_q8 bits=8,row_scales=true"
    "int8 matvec q8_0 - f32 - 8 arm64 block32_packed_matmul_q8 bits=8,row_scales=true"
    "int8 matmul q8_0 - f32 - 8 arm64 block32_packed_matmul_q8 bits=8,row_scales=true"
    "int8 matvec q8_0 - f32 - - cuda ggml_block_matmul_q8 format=int8"
    "int8 matmul q8_0 - f32 - - cuda ggml_block_matmul_q8 format=int8")

# Every packed matmul once more with each of the other epilogues
# (generators/common.h): glu, an FFN's gate and up tiles in pairs, act(gate)
# * up written, half the rows read (runtime/include/qforge/block.h's FFN runs
# them); head_norm, per-head RMSNorm in the store (the q/k norms of a QKV
# projection: kernels.h, HeadNorms).
set(epilogue_rows "")
foreach(k IN LISTS QF_KERNELS)
    separate_arguments(cols UNIX_COMMAND "${k}")
    list(GET cols 6 pack)
    if (NOT pack STREQUAL "-")
        list(GET cols 9 params)
        list(REMOVE_AT cols 9)
        foreach(epi glu head_norm)
            set(p "epilogue=${epi}")
            if (NOT params STREQUAL "-")
                set(p "${params},${p}")
            endif ()
            set(row ${cols})
            list(APPEND row "${p}")
            list(JOIN row " " row)
            list(APPEND epilogue_rows "${row}")
        endforeach ()
    endif ()
endforeach()
list(APPEND QF_KERNELS ${epilogue_rows})

# int4g and int4z with Q8_0 activations on CUDA: packed tiles of 32 rows, a
# warp's lanes (schedules/cuda.cpp, block32_packed_q8); the plain store only
# (listed after the epilogue rows above). RunOptions::kernel or packed
# weights with pack_rows = 32 reach them; layers on CUDA keep the file's
# layout and f32 activations (bench/device/RULES.md).
foreach(g 32 64 128)
    list(APPEND QF_KERNELS
        "int4g matvec q8_0 - f32 ${g} 32 cuda block32_packed_matmul_q8 -"
        "int4g matmul q8_0 - f32 ${g} 32 cuda block32_packed_matmul_q8 -"
        "int4z matvec q8_0 - f32 ${g} 32 cuda block32_packed_matmul_q8 zero_points=true"
        "int4z matmul q8_0 - f32 ${g} 32 cuda block32_packed_matmul_q8 zero_points=true")
endforeach()

# Variants a target builds for one shape class of targets/knobs.json, of
# every row of a generator in one mode: the row once more with the generator
# parameter shape_class=CLASS, which takes the family's defaults for that
# class (schedules/cpu.h, cpu::Tuning: packed_decode_streams_short, ..._one_thread);
# a call in the class runs it (runtime/src/registry.cpp,
# for_shape). A line: target generator mode class. A QF_VARIANTS=host build
# gives its "auto" the lines of the target this CPU dispatches to. Rows with
# the head_norm epilogue are left out: they compute one tile at a time
# whatever the class.
set(QF_CLASS_VARIANTS
    # Zen 4: short rows' 32-block decode with one weight stream (schedules/x86.cpp, kZen).
    "x86-zen4 block32_packed_matmul_q8 decode short"
    # Zen 4: calls on one thread, eight streams (kZen).
    "x86-zen4 block32_packed_matmul_q8 decode one_thread"
)

# Schedule variants to time against the defaults on a device (configure with
# -DQF_TUNING=ON; bench/device/cuda_bench times them with QF_BENCH_TUNE=1).
# A row as in QF_KERNELS after a tag: the kernel is named kernel@tag, and
# RunOptions::kernel = "kernel@tag" runs it.
set(QF_TUNING_KERNELS
#   tag       format op      act norm out group pack families generator      params
    "b4w32r2   q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=4,lanes=32,tile_rows=2"
    "b8w32r2   q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=32,tile_rows=2"
    "b8w16r2   q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=16,tile_rows=2"
    "b8w16r1   q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=16,tile_rows=1"
    "b8w32r1u1 q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=32,tile_rows=1,unroll=1"
    "b8w32r1u4 q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=32,tile_rows=1,unroll=4"
    "b16w16r2  q4_k   matvec  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=16,lanes=16,tile_rows=2"
    "b4w32r1   int4g  matvec  f32 -    f32 128   -    cuda     int4g_matmul   vector_width=4,lanes=32,tile_rows=1"
    "b4w32r2u4 int4g  matvec  f32 -    f32 128   -    cuda     int4g_matmul   vector_width=4,lanes=32,tile_rows=2,unroll=4"
    "b4w16r2   int4g  matvec  f32 -    f32 128   -    cuda     int4g_matmul   vector_width=4,lanes=16,tile_rows=2"
    "b4w32r4   int4g  matvec  f32 -    f32 128   -    cuda     int4g_matmul   vector_width=4,lanes=32,tile_rows=4"
    "b8w16r2   int4g  matvec  f32 -    f32 128   -    cuda     int4g_matmul   vector_width=8,lanes=16,tile_rows=2"
    "c8        q4_k   dequant -   -    f16 -     -    cuda     q4k_dequant    vector_width=8"
    "b4w32r2t4 q4_k   matmul  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=4,lanes=32,tile_rows=2,tile_tokens=4"
    "b8w32r2t4 q4_k   matmul  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=32,tile_rows=2,tile_tokens=4"
    "b8w32r1t4 q4_k   matmul  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=32,tile_rows=1,tile_tokens=4"
    "b8w32r1t8 q4_k   matmul  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=8,lanes=32,tile_rows=1,tile_tokens=8"
    "b4w32r1t8 q4_k   matmul  f32 -    f32 -     -    cuda     q4k_matmul_f32 vector_width=4,lanes=32,tile_rows=1,tile_tokens=8"
    # Packed Q4_K on CUDA (a warp's lanes are a tile's 32 rows), its blocks over `streams` warps.
    "p32s4     q4_k   matvec  q8_k -    f32 -     32   cuda     q4k_packed_matmul_q8 streams=4"
    "p32s8     q4_k   matvec  q8_k -    f32 -     32   cuda     q4k_packed_matmul_q8 streams=8"
    "p32s16    q4_k   matvec  q8_k -    f32 -     32   cuda     q4k_packed_matmul_q8 streams=16"
    "p32s8u2   q4_k   matvec  q8_k -    f32 -     32   cuda     q4k_packed_matmul_q8 streams=8,unroll=2"
    "p32s16u2  q4_k   matvec  q8_k -    f32 -     32   cuda     q4k_packed_matmul_q8 streams=16,unroll=2"
    "p32s4     int4g  matvec  q8_0 -    f32 128   32   cuda     block32_packed_matmul_q8 streams=4"
    "p32s16    int4g  matvec  q8_0 -    f32 128   32   cuda     block32_packed_matmul_q8 streams=16"
    "p32s32    int4g  matvec  q8_0 -    f32 128   32   cuda     block32_packed_matmul_q8 streams=32"
)
