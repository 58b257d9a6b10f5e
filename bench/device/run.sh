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

echo "== CUDA correctness tests (every kernel's CUDA variants, the CPU tests' cases, layers on device memory)"
"$carried/qforge_tests" --gtest_filter='*cuda*:Registry.*:Layers.Cuda*' --gtest_brief=1 2>&1 | tee "$out/tests.txt" | tail -15
tests_rc=${PIPESTATUS[0]}

echo "== qforge CUDA kernels"
"$carried/qforge_cuda_bench" "$out/qforge.tsv" 2>&1 | tee "$out/qforge.txt"
echo "== peers (PyTorch)"
python3 "$here/peers.py" "$out/peers.tsv" 2>&1 | tee "$out/peers.txt"
echo "== tests exit code: $tests_rc"
exit "$tests_rc"
