#!/usr/bin/env bash
# qforge against ggml, the eager-dequant baseline and the scalar reference,
# in one run on this machine, then BENCHMARKS.md and one chart per format.
# Builds the peers first if they are missing (bench/peers/setup.sh).
# Usage: bench/compare.sh [--quick] [--rounds N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash bench/peers/setup.sh
source scripts/env.sh
# shellcheck disable=SC2086
cmake -S . -B "$QF_BUILD_DIR" $QF_CMAKE_ARGS -DQF_GGML_DIR="$root/bench/.peers" > /dev/null
cmake --build "$QF_BUILD_DIR" --target qforge_compare
results="$QF_BUILD_DIR/compare-results.jsonl"
# OpenBLAS's idle workers spin for about 2^28 cycles by default, long enough
# to steal the cores of whatever runs next; 2^4 lets them sleep at once.
export OPENBLAS_THREAD_TIMEOUT=4
echo "compare: running (implementations interleaved per round; rows go to $results)"
: > "$results"
for threads in 1 "$(nproc)"; do
  HL_NUM_THREADS=$threads "$QF_BUILD_DIR/bench/qforge_compare" --threads "$threads" "$@"
done | tee "$results" | python -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    if "impl" not in r:
        print("roofline", r, flush=True)
        continue
    print("%(family)-5s %(model)-13s %(layer)-5s t=%(tokens)-4d th=%(threads)d round %(round)d %(impl)-20s %(ms)9.3f ms" % r,
          flush=True)
'
python bench/report.py "$results" BENCHMARKS.md bench/charts "bench/compare.sh $*" "$(date -u +%Y-%m-%d)"
echo "compare: wrote BENCHMARKS.md and bench/charts/"
