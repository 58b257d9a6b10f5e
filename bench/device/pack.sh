#!/usr/bin/env bash
# Builds the CUDA test and benchmark binaries here (they need Halide to
# generate, nothing but the NVIDIA driver to run) and copies them to .device/,
# the folder the device run carries. Then: run bench/device/run.sh there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/scripts/env.sh"
# CUDA variants need no toolkit to generate (Halide writes the PTX), so build
# them here even where none is installed.
cmake -S "$root" -B "$QF_BUILD_DIR" $QF_CMAKE_ARGS -DQF_CUDA=ON -DQF_VARIANTS=all -DBUILD_TESTING=ON -DQF_BENCH=ON >/dev/null
cmake --build "$QF_BUILD_DIR" --target qforge_tests qforge_cuda_bench
mkdir -p "$root/.device"
cp "$QF_BUILD_DIR/tests/qforge_tests" "$QF_BUILD_DIR/bench/qforge_cuda_bench" "$root/.device/"
du -sh "$root/.device"
