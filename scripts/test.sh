#!/usr/bin/env bash
# The README's test command: installs what is missing, configures every
# variant (each target's own libraries, the ARM64 cross build under qemu,
# the ASan+UBSan and TSan builds with the fuzzers, CUDA where a toolkit is
# found), builds, runs every test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" tests
source "$root/scripts/env.sh"
cmake -S "$root" -B "$QF_BUILD_DIR" $QF_CMAKE_ARGS -DQF_VARIANTS=all -DQF_CUDA=auto -DQF_ARM64=ON -DQF_SANITIZERS=ON -DQF_LOWER_ONLY=ci -DBUILD_TESTING=ON -DQF_BENCH=ON
cmake --build "$QF_BUILD_DIR"
cd "$QF_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" "$@"
