#!/usr/bin/env bash
# The README's test command: installs what is missing, configures, builds, runs every test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
source "$root/scripts/env.sh"
cmake -S "$root" -B "$QF_BUILD_DIR" $QF_CMAKE_ARGS
cmake --build "$QF_BUILD_DIR"
cd "$QF_BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" "$@"
