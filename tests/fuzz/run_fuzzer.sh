#!/usr/bin/env bash
# run_fuzzer.sh FUZZER SEEDS CORPUS SECONDS [keep]: one fuzzer, from its
# seeds (and, with keep, the corpus of earlier runs; the tests start
# afresh), for SECONDS; exits non-zero on any finding (crash, sanitizer report, broken
# invariant, an exception other than qforge::Error, a hang, 2 GB of memory)
# and prints libFuzzer's final statistics (executions, coverage).
set -euo pipefail
fuzzer="$1" seeds="$2" corpus="$3" seconds="$4"
[ "${5:-}" = keep ] || rm -rf "$corpus" "$corpus.findings"
mkdir -p "$corpus" "$corpus.findings"
exec "$fuzzer" "$corpus" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$corpus.findings/"
