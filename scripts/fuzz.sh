#!/usr/bin/env bash
# Runs the fuzzers (tests/fuzz: the GGUF reader, the safetensors reader, the
# CLI's file-opening paths) for as long as you like, each on its own core:
#   scripts/fuzz.sh [SECONDS]          default 600 each, all three at once
#   scripts/fuzz.sh SECONDS gguf       one of them
# Needs the test command's build (its asan/ sub-build holds the fuzzers).
# Each keeps its corpus in build/asan/fuzz/long/NAME (the seeds, then what
# every run found: a run resumes where the last one stopped) and
# writes any finding to build/asan/fuzz/long/NAME.findings/; its log,
# ending with libFuzzer's statistics (executions, coverage), is
# build/asan/fuzz/NAME.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-600}"
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(gguf safetensors cli)
asan="${QF_BUILD_DIR:-$root/build}/asan"
[ -x "$asan/tests/qforge_fuzz_gguf" ] || { echo "fuzz.sh: no fuzzers in $asan: run ./scripts/test.sh first" >&2; exit 2; }
"$asan/tests/qforge_fuzz_seeds" "$asan/fuzz/seeds" >/dev/null
pids=()
for name in "${names[@]}"; do
  "$root/tests/fuzz/run_fuzzer.sh" "$asan/tests/qforge_fuzz_$name" "$asan/fuzz/seeds/$name" "$asan/fuzz/long/$name" "$seconds" keep \
    > "$asan/fuzz/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!names[@]}"; do
  name="${names[$i]}"
  if wait "${pids[$i]}"; then result=ok; else result="FOUND SOMETHING (see $asan/fuzz/long/$name.findings)"; status=1; fi
  stats=$(grep -E "stat::number_of_executed_units|cov: " "$asan/fuzz/$name.log" | tail -2 | tr '\n' ' ')
  echo "fuzz $name: $result; $stats"
done
exit $status
