#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, runs the built-in default workload.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
source "$root/scripts/env.sh"
cmake -S "$root" -B "$QF_BUILD_DIR" $QF_CMAKE_ARGS >/dev/null
cmake --build "$QF_BUILD_DIR" --target qforge_cli
"$QF_BUILD_DIR/runtime/qforge" "$@"
