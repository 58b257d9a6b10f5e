"""qforge-tune for the CUDA family (scripts/tune.py --target cuda-...).

The same search as on a CPU (seeded random candidates, then coordinate
descent from the best, each candidate verified before it may win, timed
interleaved with the kernel's own schedule), in rounds, since Halide writes
the PTX here and a GPU runs it, and the two need not be one machine:

  1. plan: the round's candidates become schedule variants of the kernel
     (kernel@tag rows in build/tune/cuda_rows.txt, which the build reads as
     -DQF_TUNING_ROWS), and the build makes qforge_tests and
     qforge_cuda_bench with them. Every CUDA search of the build with a
     round pending shares that build, so one device run measures them all.
  2. measure (on the GPU: `tune.py --measure DIR`): each candidate's tests
     against the float64 references (the kernel table's suites run every
     variant), then `qforge_cuda_bench --tune KERNEL ROUNDS` times every
     candidate against the kernel on four decode shapes (Llama-3.1-8B's
     MLP both ways, its fused QKV and a 2048 x 2048 layer), rounds rotating, weights
     rotated past the L2, outputs compared with the kernel's.
  3. the next run of the same tune.py command reads the results, plans the
     next round or, when the descent is done, a confirmation round of the
     best alone in twice the rounds; a confirmed winner is written to the
     GPU's database (--db, default schedules/tuned/<gpu>.json), which a
     build applies with -DQF_TUNING_DB="<cpu db>;<gpu db>".
Where this machine has the GPU (nvidia-smi answers) and no --device-dir is
given, step 2 runs here and the rounds follow one another in one command.

A winner scores the geometric mean of its per-shape ratios (the kernel's
time over the candidate's, the median over rounds), must beat the kernel by
--min-gain and lose on no shape by more than 3%.
"""
import datetime
import fcntl
import glob
import hashlib
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = ["14336x4096", "4096x14336", "6144x4096", "2048x2048"]  # qforge_cuda_bench --tune's
BINARIES = ["qforge_tests", "qforge_cuda_bench"]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, **kw)


def mangle(s):
    return re.sub(r"[^A-Za-z0-9]", "_", s)


def key(knobs):
    return json.dumps(knobs, sort_keys=True)


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "gpu"


def gpu_here():
    p = sh("nvidia-smi --query-gpu=name --format=csv,noheader")
    return p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else ""


class Search:
    """One kernel's search on a CUDA target of a build: its state file, its candidates' rows."""

    def __init__(self, a, k, halide_version):
        self.a, self.k, self.halide = a, k, halide_version
        self.workdir = os.path.join(a.build, "tune")
        os.makedirs(self.workdir, exist_ok=True)
        self.path = os.path.join(self.workdir, f"{k.function}.cuda.json")
        self.state = {"kernel": a.kernel, "target": a.target, "function": k.function, "results": {}, "pending": {},
                      "next_tag": 0, "descended": [], "phase": "search"}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.state = json.load(f)
        row = self.kernel_row()
        self.row_cols = row.split()
        if len(self.row_cols) != 10:
            sys.exit(f"tune: the row of {k.function} in kernel_rows.tsv has {len(self.row_cols)} columns")

    def kernel_row(self):
        tail = "__" + mangle(self.a.target)
        if not self.k.function.endswith(tail):
            sys.exit(f"tune: {self.k.function} is not a function of {self.a.target}")
        cname = self.k.function[len("qf_"):-len(tail)]
        with open(os.path.join(self.a.build, "kernel_rows.tsv")) as f:
            for line in f:
                name, _, row = line.rstrip("\n").partition("\t")
                if name == cname:
                    return row
        sys.exit(f"tune: {cname} is not in {self.a.build}/kernel_rows.tsv (reconfigure the build)")

    def space(self, space):
        # Knobs the row sets itself are not the tuner's to change.
        own = self.row_cols[9]
        return {n: v for n, v in space.items() if not re.search(rf"(^|,){n}=", own)}

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.state, f, indent=1)

    def row_for(self, tag, knobs):
        cols = list(self.row_cols)
        cols[7] = "cuda"
        extra = ",".join(f"{n}={v}" for n, v in sorted(knobs.items()))
        cols[9] = extra if cols[9] == "-" else cols[9] + "," + extra
        return f"{tag} {' '.join(cols)}"

    # -- results --------------------------------------------------------------
    def ingest(self, results_path, verified):
        """A device run's lines for this kernel's pending candidates, into the results."""
        lines = []
        with open(results_path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    if r["kernel"] == self.a.kernel:
                        lines.append(r)
        for tag, knobs in self.state["pending"].items():
            name = f"{self.a.kernel}@{tag}"
            mine = [r for r in lines if r["candidate"] == name]
            res = {"knobs": knobs, "tag": tag, "shapes": {}}
            if not mine:
                res["failed"] = "not measured (the device run had no such variant: did it build?)"
            for r in mine:
                if r["failed"]:
                    res["failed"] = f"{r['shape']}: {r['failed']}"
                    continue
                ratios = [d / m for d, m in zip(r["default_ms"], r["ms"])]
                res["shapes"][r["shape"]] = {"default_ms": statistics.median(r["default_ms"]),
                                             "ms": statistics.median(r["ms"]), "ratio": statistics.median(ratios),
                                             "ratio_range": [min(ratios), max(ratios)], "rounds": len(ratios),
                                             "rel_diff": r["rel_diff"]}
                res["gpu"] = r["gpu"]
            if verified.get(name) is False:
                res["failed"] = "tests: " + verified.get(name + ":why", "failed")
            if "failed" not in res and res["shapes"]:
                rs = [s["ratio"] for s in res["shapes"].values()]
                res["ratio"] = math.exp(sum(math.log(x) for x in rs) / len(rs))
                res["worst"] = min(rs)
            if self.state["phase"] == "confirm":
                self.state["confirmation"] = res
            else:
                self.state["results"][key(knobs)] = res
        self.state["pending"] = {}
        self.save()

    def best(self):
        ok = [r for r in self.state["results"].values() if "ratio" in r and r["worst"] >= 0.97]
        return max(ok, key=lambda r: r["ratio"]) if ok else None

    # -- planning -------------------------------------------------------------
    def plan(self, space):
        """The next round's candidates (knobs by tag), or {} when the search is over."""
        a, st = self.a, self.state
        if a.autoschedulers:
            # One round: each autoscheduler's plan of the kernel against the hand schedule.
            names = ["Anderson2021"] if a.autoschedulers == "all" else a.autoschedulers.split(",")
            # parallelism: the H100's and H200's 132 SMs (Anderson2021 plans blocks for them).
            cands = [{"autoscheduler": n, "autoscheduler.parallelism": 132} for n in names]
            cands = [c for c in cands if key(c) not in st["results"]]
            st["phase"] = "autoschedulers" if cands else "done"
            return self.pend(cands)
        if st["phase"] in ("done", "autoschedulers"):
            return {}
        if st["phase"] == "confirm":
            return {}
        names = sorted(space)
        queue = []
        if not st["results"]:
            rng = random.Random(a.seed)
            for _ in range(a.random):
                queue.append({n: rng.choice(space[n]) for n in names if rng.random() < 0.5})
        else:
            # From the best that beats the kernel's own schedule by --min-gain,
            # else from that schedule: a device round is too dear to spend
            # walking from one candidate within noise of it to the next.
            b = self.best()
            center = b["knobs"] if b and b["ratio"] >= a.min_gain else {}
            if key(center) not in st["descended"]:
                st["descended"].append(key(center))
                for n in names:
                    for v in space[n]:
                        queue.append(dict(center, **{n: v}))
                    queue.append({m: w for m, w in center.items() if m != n})
        seen, cands = set(st["results"]), []
        for c in queue:
            if c and key(c) not in seen:
                seen.add(key(c))
                cands.append(c)
        cands = cands[: a.max_candidates]
        if not cands:
            b = self.best()
            if b and b["ratio"] >= a.min_gain:
                st["phase"] = "confirm"
                cands = [b["knobs"]]
            else:
                st["phase"] = "done"
                self.save()
                self.record_searched(f"the kernel's own schedule stays: no candidate beat it by {a.min_gain}x "
                                     "on every shape")
                return {}
        return self.pend(cands)

    def pend(self, cands):
        """Tags for a round's candidates (new ones, so that no two rounds' variants share a name), saved."""
        st, out = self.state, {}
        for c in cands:
            out[f"t{st['next_tag']}"] = c
            st["next_tag"] += 1
        st["pending"] = out
        self.save()
        return out

    def report_autoschedulers(self):
        """The autoschedulers' plans against the hand schedule (never written to a database)."""
        print("| schedule | " + " | ".join(SHAPES) + " | geometric mean |")
        print("| --- |" + " --- |" * (len(SHAPES) + 1))
        for r in self.state["results"].values():
            if "autoscheduler" not in r["knobs"]:
                continue
            if "failed" in r:
                print(f"| {r['knobs']['autoscheduler']} | failed: {r['failed'][:150]} |")
                continue
            cells = [f"{r['shapes'][n]['ms']:.4f} ms ({r['shapes'][n]['ratio']:.3f}x)" if n in r["shapes"] else "-" for n in SHAPES]
            print(f"| {r['knobs']['autoscheduler']} | " + " | ".join(cells) + f" | {r.get('ratio', float('nan')):.3f}x |")

    # -- the end --------------------------------------------------------------
    def gpu(self):
        for r in self.state["results"].values():
            if r.get("gpu"):
                return r["gpu"]
        return "unknown GPU"

    def database(self, gpu=None):
        gpu = gpu or self.gpu()
        path = self.a.db or os.path.join(ROOT, "schedules", "tuned", slug(gpu) + ".json")
        db = {"gpu": gpu, "features": [self.a.target], "halide": self.halide, "entries": []}
        if os.path.exists(path):
            with open(path) as f:
                db = json.load(f)
        return path, db

    def record_searched(self, result):
        """A search whose winner is the kernel's own schedule: recorded beside the entries (the build
        reads only those), so that the database says what was tried on this GPU."""
        st = self.state
        path, db = self.database()
        ok = [r for r in st["results"].values() if "ratio" in r]
        best = max(ok, key=lambda r: r["ratio"]) if ok else None
        rec = {"function": self.k.function, "kernel": self.a.kernel, "target": self.a.target,
               "candidates": len(st["results"]), "failed": len(st["results"]) - len(ok), "result": result,
               "best": {"params": best["knobs"], "ratio": round(best["ratio"], 3),
                        "shapes": {n: round(v["ratio"], 3) for n, v in best["shapes"].items()}} if best else None,
               "date": datetime.date.today().isoformat(), "halide": self.halide}
        db["searched"] = [e for e in db.get("searched", []) if e["function"] != self.k.function] + [rec]
        write_json(path, db)
        print(f"tune: recorded the search in {path}")

    def finish(self):
        """After the confirmation round: the database entry, or the reason there is none."""
        st, a = self.state, self.a
        c = st.get("confirmation")
        st["phase"] = "done"
        self.save()
        found = self.best()
        if not c or "ratio" not in c:
            print(f"tune: {a.kernel}: the confirmation failed ({(c or {}).get('failed', 'no result')}); the default stays")
            self.record_searched("the confirmation failed: " + (c or {}).get("failed", "no result"))
            return
        print(f"tune: {a.kernel}: confirmation {c['knobs']}: {c['ratio']:.3f}x (worst shape {c['worst']:.3f}x)")
        if c["ratio"] < a.min_gain or c["worst"] < 0.97:
            print(f"tune: {a.kernel}: the default stays (the confirmation did not beat it by {a.min_gain}x on every shape)")
            self.record_searched(f"the confirmation ({c['ratio']:.3f}x, worst shape {c['worst']:.3f}x) did not hold")
            return
        db_path, db = self.database(c.get("gpu"))
        first = c["shapes"][SHAPES[0]]
        entry = {"function": self.k.function, "kernel": a.kernel, "target": a.target, "params": c["knobs"],
                 "shape": SHAPES[0], "tokens": 1 if self.k.mode == "decode" else 8, "threads": 0,
                 "default_ms": round(first["default_ms"], 5), "tuned_ms": round(first["ms"], 5),
                 "ratio": round(c["ratio"], 3), "ratio_range": [round(min(s["ratio"] for s in c["shapes"].values()), 3),
                                                                round(max(s["ratio"] for s in c["shapes"].values()), 3)],
                 "rounds": first["rounds"], "search_ratio": round(found["ratio"], 3) if found else None,
                 "shapes": {n: {"default_ms": round(s["default_ms"], 5), "tuned_ms": round(s["ms"], 5),
                                "ratio": round(s["ratio"], 3)} for n, s in c["shapes"].items()},
                 "date": datetime.date.today().isoformat(), "halide": self.halide,
                 "command": "scripts/tune.py " + " ".join(sys.argv[1:])}
        db["entries"] = [e for e in db["entries"] if (e["function"], e.get("class")) != (self.k.function, None)] + [entry]
        write_json(db_path, db)
        print(f"tune: wrote {db_path} (build with -DQF_TUNING_DB=\"<cpu db>;{os.path.relpath(db_path, ROOT)}\")")


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_rows(build):
    """Every pending candidate of every CUDA search of the build, as QF_TUNING_ROWS; the kernels with one."""
    rows, kernels = [], []
    for path in sorted(glob.glob(os.path.join(build, "tune", "*.cuda.json"))):
        with open(path) as f:
            st = json.load(f)
        if not st.get("pending"):
            continue
        kernels.append({"kernel": st["kernel"], "target": st["target"],
                        "candidates": [f"{st['kernel']}@{t}" for t in st["pending"]],
                        "rounds": st.get("rounds", 3)})
        rows += st.get("rows", [])
    path = os.path.join(build, "tune", "cuda_rows.txt")
    with open(path, "w") as f:
        f.write("# scripts/tune.py's pending CUDA candidates (-DQF_TUNING_ROWS)\n" + "".join(r + "\n" for r in rows))
    return path, kernels


def build_round(a, ninja):
    rows_path, kernels = write_rows(a.build)
    p = sh(["cmake", "-S", ROOT, "-B", a.build, f"-DQF_TUNING_ROWS={rows_path}"])
    if p.returncode:
        sys.exit("tune: reconfiguring for the candidates failed:\n" + p.stdout[-1500:] + p.stderr[-1500:])
    p = sh([ninja, "-C", a.build] + BINARIES)
    if p.returncode:
        # A candidate the schedule refuses (a CompileError) fails the build;
        # the generator names it. Mark it failed and build the rest.
        return p.stdout[-3000:] + p.stderr[-1000:], kernels
    return "", kernels


def measure(run_dir):
    """The device side: verify and time every kernel of run_dir/plan.json."""
    with open(os.path.join(run_dir, "plan.json")) as f:
        plan = json.load(f)
    tests = os.path.join(run_dir, "qforge_tests")
    bench = os.path.join(run_dir, "qforge_cuda_bench")
    verified, out = {}, os.path.join(run_dir, "results.jsonl")
    lines = []
    for k in plan["kernels"]:
        target = mangle(k["target"])
        for c in k["candidates"]:
            p = sh([tests, f"--gtest_filter=*{mangle(c)}__{target}*", "--gtest_brief=1"])
            ran = re.search(r"\[  PASSED  \] (\d+) test", p.stdout)
            ok = p.returncode == 0 and ran and int(ran.group(1)) > 0
            verified[c] = bool(ok)
            if not ok:
                # The first failure's own words (a kernel's bounds error, a wrong value), not gtest's summary.
                out_lines = (p.stdout + p.stderr).strip().splitlines()
                why = [l for l in out_lines if "exception with description" in l or "Failure" in l or "Expected" in l]
                verified[c + ":why"] = (why or out_lines or ["no test ran"])[0][:300]
            print(f"tune: {c}: tests {'passed (' + ran.group(1) + ')' if ok else 'FAILED'}", flush=True)
        part = os.path.join(run_dir, f"results.{mangle(k['kernel'])}.jsonl")
        p = subprocess.run([bench, "--tune", k["kernel"], str(k["rounds"]), part])
        if p.returncode == 0 and os.path.exists(part):
            with open(part) as f:
                lines += f.readlines()
    with open(out, "w") as f:
        f.writelines(lines)
    with open(os.path.join(run_dir, "verified.json"), "w") as f:
        json.dump(verified, f, indent=1)
    print(f"tune: wrote {out} and verified.json; run the same tune.py command where the build is to go on")
    return 0


def run(a, k, space, ninja, halide_version):
    """One step of the CUDA search (see the module's comment)."""
    s = Search(a, k, halide_version)
    space = s.space(space)
    print(f"tune: {a.kernel} on {a.target} ({k.function}, generator {k.generator}, {k.mode}); "
          f"shapes {', '.join(SHAPES)}; phase {s.state['phase']}")
    print("tune: knobs " + ", ".join(f"{n} {v}" for n, v in space.items()))
    if a.dry_run:
        return 0
    # One tuner per build (tune.py's lock): a round reconfigures and relinks it.
    lock = open(os.path.join(s.workdir, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit(f"tune: another tune.py is running on {a.build}; wait for it")
    run_dir = os.path.abspath(a.device_dir or os.path.join(a.build, "tune", "device"))
    while True:
        if s.state["pending"]:
            res = os.path.join(run_dir, "results.jsonl")
            if not os.path.exists(res):
                print(f"tune: round pending; on the GPU run:  python3 scripts/tune.py --measure {run_dir}")
                return 0
            verified = {}
            if os.path.exists(os.path.join(run_dir, "verified.json")):
                with open(os.path.join(run_dir, "verified.json")) as f:
                    verified = json.load(f)
            confirming = s.state["phase"] == "confirm"
            s.ingest(res, verified)
            for r in sorted(s.state["results"].values(), key=lambda r: -r.get("ratio", 0))[:5]:
                print(f"tune:   {r['knobs']}: " + (f"{r['ratio']:.3f}x (worst {r['worst']:.3f}x)" if "ratio" in r else r.get("failed", "?")))
            if confirming:
                s.finish()
                os.replace(res, res + ".done")
                return 0
            os.replace(res, res + ".done")
            if a.autoschedulers:
                s.report_autoschedulers()
                return 0
        b = s.best()
        print(f"tune: {len(s.state['results'])} candidates measured; best "
              + (f"{b['knobs']} {b['ratio']:.3f}x" if b else "none yet"))
        cands = s.plan(space)
        if not cands:
            print(f"tune: {a.kernel}: the search is over; the default stays (no candidate beat it by {a.min_gain}x)")
            return 0
        s.state["rows"] = [s.row_for(t, c) for t, c in cands.items()]
        s.state["rounds"] = 2 * a.rounds if s.state["phase"] == "confirm" else a.rounds
        s.save()
        print(f"tune: round of {len(cands)} ({s.state['phase']}): " + "; ".join(f"{t} {c}" for t, c in cands.items()), flush=True)
        err, kernels = build_round(a, ninja)
        while err:
            bad = [t for t in s.state["pending"] if f"_at_{t}_" in err or f"@{t}" in err]
            if not bad:
                sys.exit("tune: the build with the candidates failed:\n" + err)
            # The generator's own words (a CompileError names the knob), not ninja's summary.
            why = [l for l in err.splitlines() if "Error" in l or "error:" in l or "must" in l] or err.strip().splitlines()[-1:]
            for t in bad:
                knobs = s.state["pending"].pop(t)
                s.state["results"][key(knobs)] = {"knobs": knobs, "tag": t, "failed": "build: " + why[0].strip()[:300]}
            s.state["rows"] = [s.row_for(t, c) for t, c in s.state["pending"].items()]
            s.save()
            err, kernels = build_round(a, ninja)
        os.makedirs(run_dir, exist_ok=True)
        for b_ in BINARIES:
            src = os.path.join(a.build, "tests" if b_ == "qforge_tests" else "bench", b_)
            shutil.copy2(src, os.path.join(run_dir, b_))
        with open(os.path.join(run_dir, "plan.json"), "w") as f:
            json.dump({"kernels": kernels}, f, indent=1)
        shutil.copy2(os.path.abspath(__file__), os.path.join(run_dir, "tune_cuda.py"))
        if a.device_dir or not gpu_here():
            print(f"tune: built {run_dir}; on the GPU run:  python3 {os.path.relpath(os.path.join(run_dir, 'tune_cuda.py'), ROOT)} {run_dir}"
                  f"\n  (or python3 scripts/tune.py --measure {run_dir}), then this command again")
            return 0
        measure(run_dir)


if __name__ == "__main__":
    # On the device: python3 tune_cuda.py DIR (the copy tune.py put there).
    sys.exit(measure(sys.argv[1]))
