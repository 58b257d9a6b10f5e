"""Per-kernel GPU time and limits of the decode rows, from Nsight Compute's
CSV (bench/device/run.sh runs qforge_cuda_bench with QF_BENCH_QUICK=1 under
`ncu --metrics ... --csv`). A row's event-timed latency minus its kernels'
GPU time is what launching costs; DRAM % and issue % say whether a kernel is
bound by memory or by instructions. A bench row repeats the same launches, so
a stretch of launches whose kernel (name, grid, block) was seen since the
stretch began is one row (or consecutive rows of the same kernels); medians
over each stretch's launches of each kernel."""
import csv
import statistics
import sys
from collections import OrderedDict

METRICS = {
    "gpu__time_duration.sum": "us",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram%",
    "smsp__issue_active.avg.pct_of_peak_sustained_active": "issue%",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occup%",
}
UNIT = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}


def main():
    rows = [r for r in csv.reader(open(sys.argv[1])) if r]
    head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    cols = rows[head]
    at = {c: cols.index(c) for c in ("ID", "Kernel Name", "Grid Size", "Block Size", "Metric Name", "Metric Unit",
                                     "Metric Value")}
    launches = OrderedDict()  # ID -> (key, {metric: value})
    for r in rows[head + 1:]:
        if len(r) < len(cols) or r[at["Metric Name"]] not in METRICS:
            continue
        value = float(r[at["Metric Value"]].replace(",", ""))
        if r[at["Metric Name"]] == "gpu__time_duration.sum":
            value *= UNIT.get(r[at["Metric Unit"]], 1.0)
        key = (r[at["Kernel Name"]], r[at["Grid Size"]], r[at["Block Size"]])
        launches.setdefault(r[at["ID"]], (key, {}))[1][METRICS[r[at["Metric Name"]]]] = value
    stretches = []  # [OrderedDict key -> [values]]
    for key, values in launches.values():
        if not stretches or (key not in stretches[-1] and any(len(v) > 1 for v in stretches[-1].values())):
            stretches.append(OrderedDict())
        stretches[-1].setdefault(key, []).append(values)
    groups = [(key, vs) for st in stretches for key, vs in st.items()]
    names = list(METRICS.values())
    print(f"{'kernel':<52} {'grid':>14} {'block':>12} {'n':>4} " + " ".join(f"{n:>7}" for n in names))
    for (name, grid, block), vs in groups:
        med = [statistics.median(v[n] for v in vs if n in v) if any(n in v for v in vs) else float("nan") for n in names]
        print(f"{name[:52]:<52} {grid:>14} {block:>12} {len(vs):4d} " + " ".join(f"{m:7.1f}" for m in med))


if __name__ == "__main__":
    main()
