#!/usr/bin/env python3
"""A tuned build against the default one, per tuning-database entry, in one run.

Usage:
  scripts/tuned_vs_default.py --default BUILD --tuned BUILD_WITH_DB --db schedules/tuned/<cpu>.json
      [--threads 1,2] [--rounds 3]

Both builds must make the same variants (QF_VARIANTS) with -DQF_BENCH=ON; the
tuned one is configured with -DQF_TUNING_DB=<the same database>. For every
entry of the database it times the entry's kernel on the entry's shape with
each build's qforge_bench, round by round with the order alternating, at the
entry's own token count (with --all-shapes: on every layer, those outside
a class entry's class included) and, for a prefill kernel, at 8, 32 and 128 tokens
too, on each thread count. It prints one markdown row per case: both
medians and the per-round ratio default / tuned (above 1: the tuned build is
faster). A case where the tuned build is slower in every round and by more
than 3% in the median (the tuner's own bar) is marked.
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tune import bench_ms, bench_shapes, in_class, posix_escape  # noqa: E402 - the tuner's timing, shared


def cases(entry, threads):
    tokens = [entry["tokens"]]
    if "_matmul" in entry["kernel"]:  # a prefill kernel: the small-batch and prefill sizes too
        tokens = sorted(set(tokens + [8, 32, 128]))
    return [(t, th) for t in tokens for th in threads]


def shapes(binary, entry, entries):
    """Every layer of the kernel, those outside the entry's shape class too
    (the tuned build must not lose there either); only the class's own where
    another entry of the same function times the others."""
    own = not any(e is not entry and e["function"] == entry["function"] for e in entries)
    return [s for s in bench_shapes(binary, entry["kernel"], entry["target"]) if own or in_class(s, entry.get("class"))] \
        or [entry["shape"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--default", required=True, help="a build without a tuning database")
    ap.add_argument("--tuned", required=True, help="the same build configured with -DQF_TUNING_DB")
    ap.add_argument("--db", required=True, help="the tuning database the tuned build applies")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--all-shapes", action="store_true",
                    help="every layer shape qforge_bench has for the kernel, not only the entry's own")
    a = ap.parse_args()
    with open(a.db) as f:
        db = json.load(f)
    binaries = [os.path.join(b, "bench", "qforge_bench") for b in (a.default, a.tuned)]
    for b in binaries:
        if not os.path.exists(b):
            sys.exit(f"tuned_vs_default: no {b} (configure with -DQF_BENCH=ON and build qforge_bench)")
    threads = [int(t) for t in a.threads.split(",")]
    print(f"{db.get('cpu', '?')}; {a.db}; {a.rounds} rounds, order alternating; ratio = default / tuned")
    print("| kernel | target | params | shape | tokens | threads | default ms | tuned ms | ratio (rounds) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for e in db["entries"]:
        for shape, (tokens, th) in [(sh, c) for sh in (shapes(binaries[0], e, db["entries"]) if a.all_shapes else [e["shape"]])
                                    for c in cases(e, threads)]:
            filt = (f"^{posix_escape(e['kernel'])}/{posix_escape(e['target'])}/{posix_escape(shape)}"
                    f"/tokens:{tokens}/threads:{th}/real_time$")
            d, t, r = [], [], []
            for i in range(a.rounds):
                order = binaries if i % 2 == 0 else binaries[::-1]
                ms = {b: bench_ms(b, filt, 3, own_variant=False) for b in order}
                d.append(ms[binaries[0]])
                t.append(ms[binaries[1]])
                r.append(d[-1] / t[-1])
            # Beyond noise: slower in every round, and by more than the tuner's own 3% bar.
            lost = " **loses**" if max(r) < 1.0 and statistics.median(r) < 0.97 else ""
            params = ", ".join(f"{k}={v}" for k, v in sorted(e["params"].items()))
            if e.get("class"):
                params += f" ({e['class']} layers)"
            print(f"| {e['kernel']} | {e['target']} | {params} | {shape} | {tokens} | {th} | "
                  f"{statistics.median(d):.4f} | {statistics.median(t):.4f} | {statistics.median(r):.3f} "
                  f"({min(r):.3f}-{max(r):.3f}){lost} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
