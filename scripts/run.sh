#!/usr/bin/env bash
# The README's main job: installs what is missing, builds what this host runs
# (the CLI and the kernels' dispatcher libraries, compiled for this machine's
# CPU only: no per-target libraries, no CUDA, no tests, no ARM cross build),
# runs the built-in default workload.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
source "$root/scripts/env.sh"
cmake -S "$root" -B "$QF_BUILD_DIR" $QF_CMAKE_ARGS -DQF_VARIANTS=host -DQF_CUDA=OFF -DQF_ARM64=OFF -DQF_SANITIZERS=OFF -DBUILD_TESTING=OFF -DQF_BENCH=OFF >/dev/null
cmake --build "$QF_BUILD_DIR" --target qforge_cli
"$QF_BUILD_DIR/runtime/qforge" "$@"
