#!/usr/bin/env bash
# The whole device side, from a tree built on a machine with Halide
# (bench/device/pack.sh) and carried to the GPU machine: the CUDA
# correctness tests, the kernel benchmarks, the PyTorch peers, one table.
# Usage: bench/device/run.sh [carried dir, default .device] [output dir, default $OUT or .]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
carried="${1:-.device}"
out="${2:-${OUT:-.}}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

# The runtime dlopens libcublas (layers' prefill path). Where the loader
# does not find it (CUDA's lib64 outside ld.so.conf), point QF_CUBLAS at it.
if [ -z "${QF_CUBLAS:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.1[23] '; then
    for lib in /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda/lib64/libcublas.so.12 \
               $(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib", "libcublas.so.13"))' 2>/dev/null); do
        if [ -e "$lib" ]; then export QF_CUBLAS="$lib"; break; fi
    done
fi
echo "cuBLAS: ${QF_CUBLAS:-found by the dynamic loader}" | tee -a "$out/gpu.txt"

echo "== CUDA correctness tests (every kernel's CUDA variants, the CPU tests' cases, layers on device memory)"
"$carried/qforge_tests" --gtest_filter='*cuda*:*F16FromF32*:Registry.*:Layers.Cuda*' --gtest_brief=1 2>&1 | tee "$out/tests.txt" | tail -15
tests_rc=${PIPESTATUS[0]}

echo "== qforge CUDA kernels"
"$carried/qforge_cuda_bench" "$out/qforge.tsv" 2>&1 | tee "$out/qforge.txt"
echo "== peers (PyTorch)"
python3 "$here/peers.py" "$out/peers.tsv" 2>&1 | tee "$out/peers.txt"
if command -v ncu >/dev/null; then
    echo "== GPU time per kernel of the decode rows (Nsight Compute; the rest of a row's time is launching)"
    QF_BENCH_QUICK=1 ncu --clock-control none --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active --csv --log-file "$out/ncu.csv" \
        "$carried/qforge_cuda_bench" > "$out/ncu.out" 2> "$out/ncu.err" &&
        python3 "$here/kernel_times.py" "$out/ncu.csv" | tee "$out/kernel_times.txt" ||
        { echo "ncu failed:"; tail -5 "$out/ncu.err"; }
fi
echo "== the goals (bench/device/goals.py)"
python3 "$here/goals.py" "$out/qforge.tsv" "$out/peers.tsv" 2>&1 | tee "$out/goals.txt"
echo "== tests exit code: $tests_rc"
# The same, as the page bench/device/RESULTS.md is made of.
{
    echo "$(head -1 "$out/gpu.txt"); $(date -u +%F)"
    echo
    echo "CUDA correctness tests on the device: $(grep -E '^\[  (PASSED|FAILED) ' "$out/tests.txt" | tr '\n' ' ')"
    for part in goals qforge peers kernel_times; do
        [ -s "$out/$part.txt" ] || continue
        echo
        echo '```'
        cat "$out/$part.txt"
        echo '```'
    done
} > "$out/RESULTS.md"
exit "$tests_rc"
