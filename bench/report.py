"""BENCHMARKS.md and one chart per format from qforge_compare's JSON lines.

Usage: python bench/report.py results.jsonl BENCHMARKS.md CHART_DIR "command" "date"

Each implementation's time is the median over rounds of its per-round
median; a ratio against ggml is computed per round (implementations are
interleaved within a round) and reported as the median with its range.
"""
import collections
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Which peers each qforge implementation is measured against: per round,
# the faster of ggml's two CPU paths (plain buffer and repacked), and which
# arithmetic ceiling binds each implementation's inner loop.
# qforge-q4_k-before runs what main ran before the packed kernels (f32
# activations for decode, Q8_K over the file's layout for batches).
PEERS = {"qforge-q4_k": ("ggml-q4_k", "ggml-q4_k-repack"), "qforge-q4_k-before": ("ggml-q4_k", "ggml-q4_k-repack"),
         "qforge-q4_k-f32": ("ggml-q4_k", "ggml-q4_k-repack"),
         "qforge-int4g-g32": ("ggml-q4_0", "ggml-q4_0-repack"), "qforge-q4_0": ("ggml-q4_0", "ggml-q4_0-repack"),
         "qforge-q8_0": ("ggml-q8_0",), "qforge-q6_k": ("ggml-q6_k",), "qforge-iq4_xs": ("ggml-iq4_xs",)}
FAMILY_TITLE = {"q4_k": "Q4_K", "q4_0": "int4g G=32 / Q4_0", "q8_0": "Q8_0", "q6_k": "Q6_K", "iq4_xs": "IQ4_XS"}
# Every packed qforge layer quantizes its activations to 8 bits.
INT8_QFORGE = {"qforge-q4_k", "qforge-int4g-g32", "qforge-q4_0", "qforge-q8_0", "qforge-q6_k", "qforge-iq4_xs"}


def int8_path(impl, tokens):
    """ggml always quantizes activations to 8 bits; qforge's packed layers do too."""
    return impl.startswith("ggml") or impl in INT8_QFORGE or (impl == "qforge-q4_k-before" and tokens > 1)


def load(path):
    roof, rows = {}, collections.defaultdict(dict)
    meta = {}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r.get("roofline"):
            # The probe runs before and after; keep the better reading of each ceiling.
            best = roof.setdefault(r["threads"], dict(r))
            for k in ("read_gbs", "fma_gflops", "int8_gops"):
                best[k] = max(best[k], r[k])
            meta = {"cpu": r["cpu"], "ggml": r["ggml"]}
            continue
        key = (r["family"], r["model"], r["layer"], r["out"], r["in"], r["tokens"], r["threads"])
        rows[key].setdefault(r["impl"], {})[r["round"]] = r
    return roof, rows, meta


def ceiling(r, roof, impl):
    """Seconds the roofline allows, and which ceiling binds."""
    rf = roof[r["threads"]]
    flops = 2.0 * r["out"] * r["in"] * r["tokens"]
    t_bw = r["weight_bytes"] / (rf["read_gbs"] * 1e9)
    peak, name = (rf["int8_gops"], "int8") if int8_path(impl, r["tokens"]) and rf["int8_gops"] else (rf["fma_gflops"], "FMA")
    t_cmp = flops / (peak * 1e9)
    return (t_bw, "BW") if t_bw >= t_cmp else (t_cmp, name)


def summarise(rows, roof):
    out = []
    for key, impls in sorted(rows.items()):
        family, model, layer, o, i, tokens, threads = key
        entry = {"key": key, "impls": {}}
        for impl, by_round in impls.items():
            ms = statistics.median(r["ms"] for r in by_round.values())
            any_row = next(iter(by_round.values()))
            t_roof, bound = ceiling(any_row, roof, impl)
            entry["impls"][impl] = {"ms": ms, "roof": t_roof * 1e3 / ms, "bound": bound,
                                    "gflops": 2.0 * o * i * tokens / (ms * 1e-3) / 1e9,
                                    "gbs": any_row["weight_bytes"] / (ms * 1e-3) / 1e9, "rounds": by_round}
        for ours, peers in PEERS.items():
            peers = [p for p in peers if p in impls]
            if ours in impls and peers:
                ratios = [min(impls[p][k]["ms"] for p in peers) / impls[ours][k]["ms"]
                          for k in impls[ours] if all(k in impls[p] for p in peers)]
                if ratios:
                    entry.setdefault("ratio", {})[ours] = (statistics.median(ratios), min(ratios), max(ratios))
        out.append(entry)
    return out


def fmt_ratio(r):
    return f"{r[0]:.2f}x ({r[1]:.2f}–{r[2]:.2f})"


GOALS = [
    # name, tokens, threads ("1" or "all"), minimum ratio vs ggml-repack, minimum fraction of read bandwidth
    ("decode, 1 thread", 1, "1", 1.0, 0.90),
    ("decode, all threads", 1, "all", 1.2, None),
    ("8 tokens, all threads", 8, "all", 2.0, None),
    ("prefill 128, all threads", 128, "all", 1.5, None),
    ("prefill 512, all threads", 512, "all", 1.5, None),
]


KEEP_MARKER = "<!-- Sections below are written by hand and kept by bench/report.py. -->"


def goals_table(summary, cores):
    lines = ["| goal | format | shape | qforge vs ggml (faster path) | before (same run) | needed | qforge of read BW | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, tokens, th, need, bw_need in GOALS:
        threads = 1 if th == "1" else cores
        for ours, fam in (("qforge-q4_k", "Q4_K"), ("qforge-int4g-g32", "int4g G=32 vs Q4_0")):
            for e in summary:
                family, model, layer, o, i, t, n = e["key"]
                if t != tokens or n != threads or ours not in e.get("ratio", {}):
                    continue
                r = e["ratio"][ours]
                bw = e["impls"][ours]["roof"] if e["impls"][ours]["bound"] == "BW" else None
                ok = r[0] >= need and (bw_need is None or (bw is not None and bw >= bw_need))
                bw_s = f"{bw:.0%}" if bw is not None else "–"
                need_s = f">= {need}x" + (f", >= {bw_need:.0%} BW" if bw_need else "")
                before = e["ratio"].get("qforge-q4_k-before") if ours == "qforge-q4_k" else None
                before_s = fmt_ratio(before) if before else "–"
                lines.append(f"| {name} | {fam} | {model} {layer} {o}x{i} | {fmt_ratio(r)} | {before_s} | {need_s} | {bw_s} | "
                             f"{'met' if ok else '**missed**'} |")
    return "\n".join(lines)


def family_tables(summary, family):
    impl_names = sorted({k for e in summary if e["key"][0] == family for k in e["impls"]})
    head = "| shape | tokens | threads | " + " | ".join(impl_names) + " | vs ggml (faster path) |"
    lines = [head, "|" + " --- |" * (len(impl_names) + 4)]
    for e in summary:
        fam, model, layer, o, i, t, n = e["key"]
        if fam != family:
            continue
        cells = []
        for k in impl_names:
            v = e["impls"].get(k)
            cells.append(f"{v['ms']:.3f} ms · {v['roof']:.0%} {v['bound']}" if v else "")
        ratio = "; ".join(f"{k}: {fmt_ratio(r)}" for k, r in e.get("ratio", {}).items())
        lines.append(f"| {model} {layer} {o}x{i} | {t} | {n} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def chart(summary, roof, family, out_png, cores):
    # The Llama-3.1-8B q projection (the shape with every token count), all threads.
    pts = collections.defaultdict(list)
    shape = None
    for e in summary:
        fam, model, layer, o, i, t, n = e["key"]
        if fam != family or model != "llama-3.1-8b" or layer != "q" or n != cores:
            continue
        shape = (o, i)
        for k, v in e["impls"].items():
            pts[k].append((t, v["gflops"]))
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, p in sorted(pts.items()):
        p.sort()
        ax.plot([a for a, _ in p], [b for _, b in p], marker="o", label=k)
    rf = roof[cores]
    bytes_per_weight = {"q4_k": 144 / 256, "q4_0": 18 / 32, "q8_0": 34 / 32, "q6_k": 210 / 256, "iq4_xs": 136 / 256}[family]
    toks = sorted({t for p in pts.values() for t, _ in p})
    for peak, style, name in ((rf["int8_gops"], "--", "int8 dot peak"), (rf["fma_gflops"], ":", "f32 FMA peak")):
        if peak:
            ax.plot(toks, [min(rf["read_gbs"] * 2 * t / bytes_per_weight, peak) for t in toks], "k" + style,
                    label=f"roofline ({name}, {rf['read_gbs']:.0f} GB/s)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"{FAMILY_TITLE[family]}: {shape[0]}x{shape[1]} (Llama-3.1-8B q), {cores} threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return True


def main():
    results, md_path, chart_dir, command, date = sys.argv[1:6]
    roof, rows, meta = load(results)
    cores = max(roof)
    summary = summarise(rows, roof)
    chart_dir = Path(chart_dir)
    chart_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# qforge against ggml: benchmarks\n",
          f"Measured {date} on {meta['cpu']} ({cores} cores), one run of `{command}`. "
          f"ggml {meta['ggml']} from llama-cpp-python's source distribution (bench/peers/setup.sh). "
          "Times are medians over rounds of per-round medians; implementations are interleaved within "
          "each round, and every ratio is computed per round, then reported as median (min–max). "
          "`ggml-*-repack` loads the weights through ggml's CPU_REPACK buffer type (its AVX2 8x8 "
          "interleaved Q4_0/Q4_K kernels); Q8_0 has no repacking in this ggml. Both sides take f32 "
          "activations and quantize them inside their own time where they use 8-bit dot products. "
          "`qforge-q4_k`, `qforge-int4g-g32` and `qforge-q4_0` are layers as users get them: packed at "
          "load (FORMATS.md, \"Packed layouts\") with 8-bit activations (Q8_K, Q8_0); `qforge-q4_k-f32` "
          "is the exact f32-activation path, `qforge-q4_k-before` what main ran before packed layouts "
          "(f32 decode, Q8_K over the file's layout for batches), measured in the same run.\n",
          "A cell is `time · fraction of the binding ceiling`: BW = weight bytes over the measured read "
          "bandwidth (decode, small batches), int8 / FMA = arithmetic over the measured int8 dot-product "
          "or f32 FMA peak (prefill; int8 for paths that quantize activations, FMA for f32 paths).\n",
          "The sections after this run's tables are written by hand, each with its machine, target and "
          "date; they hold the A/B measurements of single kernels and the other machines' runs.\n",
          "## Roofline probe (`qforge::measure_roofline`)\n",
          "| threads | read GB/s | f32 FMA GFLOP/s | int8 dot Gop/s |", "| --- | --- | --- | --- |"]
    for t, r in sorted(roof.items()):
        md.append(f"| {t} | {r['read_gbs']:.1f} | {r['fma_gflops']:.0f} | {r['int8_gops']:.0f} |")
    md += ["", "## Goals (ratios against the faster of ggml's two CPU paths, per round)\n",
           goals_table(summary, cores), ""]
    for family in ("q4_k", "q4_0", "q8_0", "q6_k", "iq4_xs"):
        md += [f"## {FAMILY_TITLE[family]}\n"]
        png = chart_dir / f"{family}.png"
        if chart(summary, roof, family, png, cores):
            md += [f"![{FAMILY_TITLE[family]}]({png.as_posix()})\n"]
        md += [family_tables(summary, family), ""]
    # Sections written by hand (other benchmarks, other machines) follow the
    # marker and are kept as they are.
    old = Path(md_path).read_text() if Path(md_path).exists() else ""
    kept = old[old.index(KEEP_MARKER):] if KEEP_MARKER in old else KEEP_MARKER + "\n"
    Path(md_path).write_text("\n".join(md) + "\n" + kept)


if __name__ == "__main__":
    main()
