#!/usr/bin/env python3
"""qforge-tune: search one kernel's schedule knobs on this machine.

Works on a configured build (scripts/test.sh's or -DQF_BENCH=ON -DBUILD_TESTING=ON
with any QF_VARIANTS). For each candidate (a set of the knobs that
targets/knobs.json allows for the kernel's generator and mode) it:
  1. regenerates the kernel's object with the candidate's generator
     parameters, under its own function name, and relinks qforge_tests and
     qforge_bench;
  2. runs every test of that variant (against the float64 references): a
     candidate that fails is out, whatever its speed;
  3. times it with qforge_bench (rotated weights, medians), interleaved round
     by round with the build's own kernel, so that the machine's noise
     cancels in the per-round ratio.
The search: the default, a few seeded random candidates, then coordinate
descent from the best (one knob at a time, every legal value); with --try,
only the candidates given (an A/B of a knob on this machine). A progress
line shows the best so far; --budget bounds the time; results go to a state
file as they come, so a second run with the same arguments resumes.
With --class small|short|one_thread|large (targets/knobs.json's shape classes) the search
runs on a layer of that class and the winner must not lose on any layer of
it; its entry holds for that class's calls only (the build generates the
kernel once more for it, and calls pick by their weights' size), so small
and large layers keep knobs of their own. Its candidates are built as the
class's variant is (shape_class=CLASS: the schedules' defaults for the
class where the target has its own, e.g. x86-zen4's small 32-block decode,
under the knobs a candidate sets); the default it is timed against is the
kernel's own variant.
At the end the build's own object is restored, and the winner (if it beats
the default by more than --min-gain) is written to the tuning database
(--db, default schedules/tuned/<this cpu>.json) with the CPU, its features,
Halide's version, the date and both times. A build applies a database with
-DQF_TUNING_DB=FILE (targets/CMakeLists.txt).

--autoschedulers NAME,... (or all) instead compares, on the same benchmark,
the hand schedule with Halide's autoschedulers (the plugins in Halide's wheel:
Adams2019, Li2018, Mullapudi2016) and with this CPU's tuning-database entry
for the kernel if it has one. Each is verified by the variant's tests first.
It prints a table and writes build/tune/autoschedulers.<function>.json; it
never writes the database.

On a CUDA target (--target cuda-sm86) the search runs in rounds that a GPU
measures, here or on another machine: scripts/tune_cuda.py says how.

Example:
  scripts/tune.py --build build --kernel q4k_matvec_q8_x16 --target x86-avx512-vnni --budget 900
  scripts/tune.py --build build-cuda --kernel q4k_matvec_f32 --target cuda-sm86 --device-dir .device/tune
  scripts/tune.py --build build --kernel q4k_matvec_q8_x16 --class small --budget 600
  scripts/tune.py --build build --kernel q4k_matvec_q8_x16 --try streams=1 --try streams=1,touch=-1
  scripts/tune.py --build build --kernel q4k_matvec_q8_x16 --autoschedulers all
"""
import glob
import argparse
import hashlib
import datetime
import fcntl
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, **kw)


def cpu_info():
    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", "unknown", platform.processor()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    keep = [f for f in flags if re.match(r"^(sse4_1|avx|avx2|fma|f16c|avx512\w*|avx_vnni|gfni|amx\w*|asimd\w*)$", f)]
    return model, sorted(keep)


def slug(model):
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:60] or "cpu"


AUTOSCHEDULERS = ["Adams2019", "Li2018", "Mullapudi2016"]


def autoscheduler_plugin(name):
    """The plugin of one of Halide's autoschedulers, from the wheel in .venv (or wherever halide imports from)."""
    dirs = glob.glob(os.path.join(ROOT, ".venv", "lib", "python*", "site-packages", "halide", "lib*"))
    try:
        import importlib.util
        spec = importlib.util.find_spec("halide")
        if spec and spec.origin:
            dirs += glob.glob(os.path.join(os.path.dirname(spec.origin), "lib*"))
    except ImportError:
        pass
    for d in dirs:
        lib = os.path.join(d, f"libautoschedule_{name.lower()}.so")
        if os.path.exists(lib):
            return lib
    sys.exit(f"tune: no plugin libautoschedule_{name.lower()}.so in Halide's wheel (looked in {dirs})")


def halide_version():
    try:
        from importlib.metadata import version
        return version("halide")
    except Exception:  # noqa: BLE001 - the version is informative only
        return "unknown"


class Kernel:
    """One variant of the build: its generator command, test filter and benchmark filter."""

    def __init__(self, build, kernel, target, ninja, shape_class=None):
        self.build, self.kernel, self.target, self.ninja = build, kernel, target, ninja
        # A candidate for a shape class is built as the build builds that
        # class's variant: with shape_class=CLASS (the schedules' defaults
        # for the class, under the knobs it sets).
        self.shape_class = shape_class
        self.cuda = target.startswith("cuda")
        qforge = os.path.join(build, "runtime", "qforge")
        info = json.loads(sh([qforge, "targets", "--json"], check=True).stdout)
        rows = [v for v in info["variants"] if v["kernel"] == kernel and v["target"] == target and not v.get("class")]
        if not rows:
            have = sorted({v["target"] for v in info["variants"] if v["kernel"] == kernel})
            sys.exit(f"tune: no variant {kernel} on {target} in {build} (built targets of it: {have or 'none'})")
        self.function = rows[0]["function"]
        self.prefetch_runs = info.get("prefetch", True)
        cmds = sh([ninja, "-C", build, "-t", "commands", f"targets/{self.function}.o"], check=True).stdout.strip()
        self.command = cmds.splitlines()[-1]
        if f"-f {self.function}" not in self.command:
            sys.exit(f"tune: cannot find the generator command of {self.function}")
        self.generator = re.search(r" -g (\S+)", self.command).group(1)
        m = re.search(r"\bmode=(\w+)", self.command)
        self.mode = m.group(1) if m else "decode"
        m = re.search(r"\bpack_rows=(\d+)", self.command)
        self.pack_rows = int(m.group(1)) if m else 0
        name = f"{kernel}__{target}"
        self.test_filter = "*" + re.sub(r"[^A-Za-z0-9]", "_", name) + "*"

    def space(self):
        with open(os.path.join(ROOT, "targets", "knobs.json")) as f:
            gens = json.load(f)["generators"]
        if self.generator not in gens:
            sys.exit(f"tune: targets/knobs.json has no knobs for generator {self.generator}")
        modes = gens[self.generator]
        if self.cuda:
            if "cuda" not in modes:
                sys.exit(f"tune: targets/knobs.json has no CUDA knobs for generator {self.generator}")
            modes = modes["cuda"]
        space = dict(modes.get(self.mode, {}))
        if self.pack_rows and "vector_width" in space:
            space["vector_width"] = [v for v in space["vector_width"] if self.pack_rows % v == 0 and v < self.pack_rows]
        if not self.prefetch_runs:
            space.pop("prefetch", None)  # this CPU runs the loop nest without it: the knob changes nothing here
        return {k: v for k, v in space.items() if v}

    def restore(self):
        """The build's own object of the kernel (no candidate's knobs, no class)."""
        return self.generate({}, candidate=False)

    def generate(self, knobs, candidate=True):
        extra = " ".join(f"{k}={v}" for k, v in sorted(knobs.items()))
        if candidate and self.shape_class:
            extra += f" shape_class={self.shape_class}"
        if "autoscheduler" in knobs:
            extra += " -p " + autoscheduler_plugin(knobs["autoscheduler"])
        p = sh(f"{self.command} {extra}")
        if p.returncode:
            return p.stderr[-800:] or "the generator failed"
        p = sh([self.ninja, "-C", self.build, "qforge_tests", "qforge_bench"])
        return p.stdout[-800:] if p.returncode else ""

    def verify(self):
        try:
            p = sh([os.path.join(self.build, "tests", "qforge_tests"), f"--gtest_filter={self.test_filter}"], timeout=900)
        except subprocess.TimeoutExpired:
            return "the tests ran past 900 s"
        ran = re.search(r"\[  PASSED  \] (\d+) test", p.stdout)
        if p.returncode or not ran or int(ran.group(1)) == 0:
            return (p.stdout + p.stderr)[-1500:] or "no test ran"
        return ""


def bench_ms(binary, filt, reps, own_variant=True):
    # own_variant: the kernel's own variant on every shape, the one each
    # candidate replaces, even in a build that holds variants of a tuning
    # database's shape classes; else the one a call of the shape runs.
    env = dict(os.environ, QF_BENCH_SHAPE_CLASS="-") if own_variant else None
    p = sh([binary, f"--benchmark_filter={filt}", f"--benchmark_repetitions={reps}", "--benchmark_min_time=0.2s",
            "--benchmark_report_aggregates_only=true", "--benchmark_format=json"], env=env)
    if p.returncode:
        raise RuntimeError(p.stderr[-800:])
    runs = json.loads(p.stdout)["benchmarks"]
    rows = [b for b in runs if b.get("aggregate_name") == "median"] or [b for b in runs if b.get("run_type") == "iteration"]
    if len(rows) != 1:
        raise RuntimeError(f"the filter {filt} matched {len(rows)} benchmarks")
    return rows[0]["real_time"] / 1e6 if rows[0]["time_unit"] == "ns" else rows[0]["real_time"]


def bench_shapes(binary, kernel, target):
    """Every layer shape qforge_bench times the kernel on (model.layer/OUTxIN), in its order."""
    p = sh([binary, "--benchmark_list_tests", f"--benchmark_filter=^{posix_escape(kernel)}/{posix_escape(target)}/"])
    shapes = []
    for line in p.stdout.split():
        parts = line.split("/")
        if len(parts) > 3 and parts[2] + "/" + parts[3] not in shapes:
            shapes.append(parts[2] + "/" + parts[3])
    return shapes


def shape_classes(refining=True):
    """targets/knobs.json's shape classes: name -> {"from", "below"} in weight elements (out x in), with
    "in_below" (rows under that many columns) and "threads_below" (calls on fewer threads) for a class that
    refines others (without `refining`: the others only)."""
    with open(os.path.join(ROOT, "targets", "knobs.json")) as f:
        c = json.load(f)["shape_classes"]
    return {n: v for n, v in c.items() if n != "about" and (refining or not refines(v))}


def refines(c):
    return "in_below" in c or "threads_below" in c


def in_class(shape, cls, threads=None):
    """Whether a qforge_bench shape (model.layer/OUTxIN), on `threads` threads where given, is in shape
    class `cls` (None: every shape is)."""
    if not cls:
        return True
    out, inn = (int(x) for x in shape.split("/")[1].split("x"))
    c = shape_classes()[cls]
    return (c["from"] <= out * inn < c["below"] and inn < c.get("in_below", inn + 1)
            and (threads is None or threads < c.get("threads_below", threads + 1)))


# The layer a class is tuned on by default: the largest square-ish projection of each.
CLASS_SHAPES = {"large": "llama-3.1-8b.q/4096x4096", "small": "qwen3-0.6b.o/1024x2048",
                "short": "qwen3-0.6b.q/2048x1024", "one_thread": "llama-3.1-8b.q/4096x4096"}


def posix_escape(s):
    """Benchmark filters are POSIX extended regular expressions: no \\- there."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", s)


def key(knobs):
    return json.dumps(knobs, sort_keys=True)


def db_file(a):
    return a.db or os.path.join(ROOT, "schedules", "tuned", slug(cpu_info()[0]) + ".json")


def compare_autoschedulers(a, k, measure, progress, workdir, tokens):
    """The hand schedule against Halide's autoschedulers and this CPU's tuned entry, one benchmark."""
    names = AUTOSCHEDULERS if a.autoschedulers == "all" else [n.strip() for n in a.autoschedulers.split(",")]
    unknown = [n for n in names if n not in AUTOSCHEDULERS]
    if unknown:
        sys.exit(f"tune: unknown autoscheduler {unknown} (Halide's wheel has {AUTOSCHEDULERS})")
    rows = []
    db_path = db_file(a)
    if os.path.exists(db_path):
        with open(db_path) as f:
            tuned = [e for e in json.load(f).get("entries", [])
                     if e["function"] == k.function and e.get("class") == a.shape_class]
        if tuned:
            rows.append(("tuned (" + os.path.relpath(db_path, ROOT) + ")", tuned[0]["params"]))
    for n in names:
        rows.append((n, {"autoscheduler": n, "autoscheduler.parallelism": os.cpu_count() or 1}))
    results = []
    try:
        for label, knobs in rows:
            res = measure(knobs)
            progress(knobs, res)
            results.append(dict(res, schedule=label))
    finally:
        k.restore()
    hand = [r["default_ms"] for r in results if "default_ms" in r]
    print(f"\n{a.kernel} on {a.target}, {a.shape}, {tokens} tokens, {a.threads} threads "
          f"(medians of {a.rounds} rounds interleaved with the hand schedule):")
    print("| schedule | ms | hand schedule ms | hand / this |")
    print("| --- | --- | --- | --- |")
    if hand:
        print(f"| hand (schedules/) | {statistics.median(hand):.4f} | - | 1.000 |")
    for r in results:
        if "ratio" in r:
            failed = "failed its tests: " + r["failed"].strip().splitlines()[-1][:60] + "; " if "failed" in r else ""
            print(f"| {r['schedule']} | {failed}{r['ms']:.4f} | {r['default_ms']:.4f} | {r['ratio']:.3f} "
                  f"({r['ratio_range'][0]:.3f}-{r['ratio_range'][1]:.3f}) |")
        else:
            why = r["failed"].strip().splitlines()
            print(f"| {r['schedule']} | failed: {why[-1][:120] if why else '?'} | - | - |")
    report = os.path.join(workdir, f"autoschedulers.{k.function}.{a.shape.replace('/', '_')}.t{tokens}.th{a.threads}.json")
    with open(report, "w") as f:
        json.dump({"kernel": a.kernel, "target": a.target, "function": k.function, "shape": a.shape, "tokens": tokens,
                   "threads": a.threads, "cpu": cpu_info()[0], "halide": halide_version(),
                   "date": datetime.date.today().isoformat(), "results": results}, f, indent=1)
    print(f"tune: wrote {report}")
    return 0


def tune_all(a, ninja):
    """--kernel all: every kernel of the target whose generator has knobs for its family and mode, one
    search after another (a CPU's budget split evenly; a GPU's rounds shared: scripts/tune_cuda.py)."""
    with open(os.path.join(ROOT, "targets", "knobs.json")) as f:
        gens = json.load(f)["generators"]
    info = json.loads(sh([os.path.join(a.build, "runtime", "qforge"), "targets", "--json"], check=True).stdout)
    names = sorted({v["kernel"] for v in info["variants"] if v["target"] == a.target and not v.get("class")
                    and "@" not in v["kernel"]})
    todo = []
    for name in names:
        k = Kernel(a.build, name, a.target, ninja)
        modes = gens.get(k.generator, {})
        modes = modes.get("cuda", {}) if k.cuda else modes
        if modes.get(k.mode):
            todo.append(name)
    if not todo:
        sys.exit(f"tune: no kernel on {a.target} has knobs in targets/knobs.json")
    print(f"tune: {len(todo)} kernels on {a.target}: {', '.join(todo)}", flush=True)
    argv = sys.argv[1:]
    i = argv.index("--kernel")
    worst = 0
    for name in todo:
        args = argv[:i] + ["--kernel", name] + argv[i + 2:]
        if "--target" not in args:
            args += ["--target", a.target]
        if not a.target.startswith("cuda"):
            args += ["--budget", str(a.budget / len(todo))]
        worst = max(worst, subprocess.run([sys.executable, os.path.abspath(__file__)] + args).returncode)
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.environ.get("QF_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--kernel", help="a kernel name as qforge targets --json lists it, e.g. q4k_matvec_q8_x16; "
                    "all: every kernel of the target with knobs, one after another (--budget split between them)")
    ap.add_argument("--target", default=None, help="a built target (default: auto where built, else the dispatched one)")
    ap.add_argument("--shape", default=None,
                    help="a qforge_bench shape: model.layer/OUTxIN (default: llama-3.1-8b.q/4096x4096, "
                         "or the --class's own: " + ", ".join(f"{c} {s}" for c, s in CLASS_SHAPES.items()) + ")")
    ap.add_argument("--class", dest="shape_class", default=None,
                    help="tune for one shape class of targets/knobs.json (small, short: small with rows under "
                         "2048 columns, large): the entry holds for calls on layers of that class only, and must "
                         "not lose on any of them")
    ap.add_argument("--tokens", type=int, default=None, help="default: 1 for decode kernels, 32 for prefill")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=600, help="seconds of search (the last candidate finishes)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds per candidate (the order alternates)")
    ap.add_argument("--random", type=int, default=4, help="seeded random candidates before the descent")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--try", dest="tries", action="append", default=[], metavar="KNOB=V[,KNOB=V]",
                    help="time this candidate against the default (repeatable); with --try only these are "
                         "measured (no random candidates, no descent), then confirmed and checked as a winner is")
    ap.add_argument("--min-gain", type=float, default=1.03, help="a winner must beat the default by this ratio")
    ap.add_argument("--db", default=None, help="the tuning database to add the winner to")
    ap.add_argument("--dry-run", action="store_true", help="print the kernel, its knob space and stop")
    ap.add_argument("--device-dir", default=None,
                    help="CUDA targets: where a round's binaries and plan go for a GPU elsewhere (scripts/tune_cuda.py)")
    ap.add_argument("--max-candidates", type=int, default=16, help="CUDA targets: candidates per device round")
    ap.add_argument("--measure", default=None, metavar="DIR",
                    help="on the GPU: verify and time the round planned in DIR (scripts/tune_cuda.py), then stop")
    ap.add_argument("--autoschedulers", default=None,
                    help="compare the hand schedule with these of Halide's autoschedulers (comma-separated, or all)")
    a = ap.parse_args()
    if a.measure:
        import tune_cuda
        return tune_cuda.measure(a.measure)
    if not a.kernel:
        ap.error("--kernel is required (or --measure DIR)")
    if a.shape_class and a.shape_class not in shape_classes():
        sys.exit(f"tune: --class {a.shape_class}: targets/knobs.json's shape classes are {sorted(shape_classes())}")
    if not a.shape:
        a.shape = CLASS_SHAPES.get(a.shape_class, CLASS_SHAPES["large"])
    if not in_class(a.shape, a.shape_class, a.threads):
        sys.exit(f"tune: {a.shape} on {a.threads} threads is not in shape class {a.shape_class}")

    ninja = shutil.which("ninja", path=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""))
    if not ninja:
        sys.exit("tune: ninja not found (scripts/setup.sh installs it into .venv)")
    qforge = os.path.join(a.build, "runtime", "qforge")
    if not a.target:
        info = json.loads(sh([qforge, "targets", "--json"], check=True).stdout)
        a.target = "auto" if any(v["target"] == "auto" for v in info["variants"]) else info["dispatched"]
    if a.kernel == "all":
        return tune_all(a, ninja)
    k = Kernel(a.build, a.kernel, a.target, ninja, a.shape_class)
    space = k.space()
    if k.cuda:
        import tune_cuda
        return tune_cuda.run(a, k, space, ninja, halide_version())
    tokens = a.tokens or (1 if k.mode == "decode" else 32)
    filt = f"^{posix_escape(a.kernel)}/{posix_escape(a.target)}/{posix_escape(a.shape)}/tokens:{tokens}/threads:{a.threads}/real_time$"
    print(f"tune: {a.kernel} on {a.target} ({k.function}, generator {k.generator}, {k.mode}); "
          f"{a.shape}, {tokens} tokens, {a.threads} threads")
    print("tune: knobs " + ", ".join(f"{n} {v}" for n, v in space.items()))
    tries = []  # --try's candidates, checked against the space before anything is built
    for t in a.tries:
        knobs = {}
        for kv in filter(None, t.split(",")):
            n, _, v = kv.partition("=")
            if n not in space or not v.lstrip("-").isdigit() or int(v) not in space[n]:
                sys.exit(f"tune: --try {t}: {kv} is not in the knob space ({space})")
            knobs[n] = int(v)
        tries.append(knobs)
    if a.dry_run:
        return 0

    # Before anything is rebuilt (minutes): a shape qforge_bench does not
    # time this kernel on would only fail after the default's rebuild.
    bench = os.path.join(a.build, "bench", "qforge_bench")
    if not os.path.exists(bench):
        sys.exit(f"tune: {bench} is missing (configure the build with -DQF_BENCH=ON)")
    shapes = bench_shapes(bench, a.kernel, a.target)
    if a.shape not in shapes:
        sys.exit(f"tune: --shape {a.shape}: qforge_bench times {a.kernel} on {a.target} on "
                 + (", ".join(shapes) if shapes else "no shape (is the build's qforge_bench current?)"))
    workdir = os.path.join(a.build, "tune")
    os.makedirs(workdir, exist_ok=True)
    # One tuner per build: each regenerates kernel objects and relinks the
    # binaries in place, so a second run would time the first one's objects.
    lock = open(os.path.join(workdir, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit(f"tune: another tune.py is running on {a.build}; wait for it (it regenerates objects in that build)")
    state_path = os.path.join(workdir, f"{k.function}.{a.shape.replace('/', '_')}.t{tokens}.th{a.threads}"
                                       f"{'.' + a.shape_class if a.shape_class else ''}"
                                       f"{'.autoschedulers' if a.autoschedulers else ''}.json")
    base_bench = os.path.join(workdir, "qforge_bench.default")
    err = k.restore()  # the build's own object, whatever an earlier run left
    if err:
        sys.exit("tune: cannot rebuild the default: " + err)
    # A state file measured against another build of the kernel (its
    # generator or schedules changed since) compares with code that is gone:
    # resume only where the default object is the same.
    with open(os.path.join(a.build, "targets", f"{k.function}.o"), "rb") as f:
        default_object = hashlib.sha256(f.read()).hexdigest()
    # Nor where it was timed in another number of rounds: asked for more
    # rounds, a rerun wants new measurements, not the old ones.
    state = {"results": {}, "default_object": default_object, "rounds": a.rounds}
    if os.path.exists(state_path):
        with open(state_path) as f:
            old = json.load(f)
        if old.get("default_object") != default_object:
            print(f"tune: {state_path} was measured against another build of the kernel; starting afresh")
        elif old.get("rounds") != a.rounds:
            print(f"tune: {state_path} was measured in {old.get('rounds', 'another number of')} rounds, not "
                  f"{a.rounds}; starting afresh")
        else:
            state = old
            print(f"tune: resuming, {len(state['results'])} candidates measured already ({state_path})")
    shutil.copy2(os.path.join(a.build, "bench", "qforge_bench"), base_bench)
    bench_ms(base_bench, filt, 1)  # the filter matches exactly one benchmark, or stop here

    start = time.time()

    def time_candidate(rounds, filt=filt):
        """The built candidate against the build's own binary, `rounds` interleaved rounds."""
        cand = os.path.join(workdir, "qforge_bench.candidate")
        shutil.copy2(os.path.join(a.build, "bench", "qforge_bench"), cand)
        bench_ms(cand, filt, 1)
        base, mine, ratios = [], [], []
        for r in range(rounds):
            # Which runs first alternates: the second of a pair finds the machine warmer.
            if r % 2 == 0:
                b = bench_ms(base_bench, filt, 3)
                c = bench_ms(cand, filt, 3)
            else:
                c = bench_ms(cand, filt, 3)
                b = bench_ms(base_bench, filt, 3)
            base.append(b)
            mine.append(c)
            ratios.append(b / c)
        return dict(default_ms=statistics.median(base), ms=statistics.median(mine), ratio=statistics.median(ratios),
                    ratio_range=[min(ratios), max(ratios)])

    def measure(knobs):
        kk = key(knobs)
        if kk in state["results"]:
            return state["results"][kk]
        res = {"knobs": knobs}
        err = k.generate(knobs)
        if not err:
            err = k.verify()
            if err:
                res["failed"] = "tests: " + err
        else:
            res["failed"] = "build: " + err
        # An autoscheduled kernel that fails its tests is still timed for the
        # comparison (it cannot win: only rows without "failed" can).
        if "failed" not in res or (a.autoschedulers and res["failed"].startswith("tests")):
            try:
                res.update(time_candidate(a.rounds))
            except RuntimeError as e:  # the kernel refuses the benchmark's call (an autoscheduled one may)
                res["failed"] = "bench: " + " ".join(l for l in str(e).splitlines() if "kernel failed" in l or "what()" in l)[-400:]
        state["results"][kk] = res
        with open(state_path, "w") as f:
            json.dump(state, f, indent=1)
        return res

    def best():
        ok = [r for r in state["results"].values() if "ratio" in r and "failed" not in r]
        return max(ok, key=lambda r: r["ratio"]) if ok else None

    # The candidate that sets no knob: the kernel's own variant, or with
    # --class the class's variant as the build makes it (its defaults).
    unset = f"the {a.shape_class} variant's defaults" if a.shape_class else "default"

    def progress(knobs, res):
        b = best()
        shown = ("failed" if "failed" in res else "") + (f" {res['ratio']:.3f}x" if "ratio" in res else "")
        bs = f"{b['ratio']:.3f}x {b['knobs'] or unset}" if b else "-"
        print(f"[{time.time() - start:6.0f}s/{a.budget:.0f}s] {len(state['results']):3d} tried | {knobs or unset}: "
              f"{shown} | best {bs}", flush=True)

    if a.autoschedulers:
        return compare_autoschedulers(a, k, measure, progress, workdir, tokens)

    rng = random.Random(a.seed)
    names = sorted(space)
    queue = [{}]
    queue += tries
    for _ in range(0 if a.tries else a.random):
        queue.append({n: rng.choice(space[n]) for n in names if rng.random() < 0.5})
    try:
        descended = set()
        while time.time() - start < a.budget:
            if not queue:
                if a.tries:
                    break  # only the candidates asked for
                b = best()
                center = b["knobs"] if b else {}
                if key(center) in descended:
                    break  # a full pass over every knob found nothing better: a local optimum
                descended.add(key(center))
                for n in names:
                    for v in space[n]:
                        c = dict(center)
                        c[n] = v
                        queue.append(c)
                    c = {m: w for m, w in center.items() if m != n}
                    queue.append(c)
                queue = [c for c in queue if key(c) not in state["results"]]
                if not queue:
                    break
            knobs = queue.pop(0)
            if key(knobs) in state["results"]:
                continue
            progress(knobs, measure(knobs))
    finally:
        # The build's own object back, however the search ends (Ctrl-C included):
        # a candidate left in place would be linked by the next build unnoticed.
        k.restore()
    b = best()
    if not b:
        sys.exit("tune: no candidate passed its tests")
    print(f"tune: best {b['knobs'] or unset}: {b['ms']:.4f} ms against {b['default_ms']:.4f} ms "
          f"({b['ratio']:.3f}x, rounds {b['ratio_range'][0]:.3f}-{b['ratio_range'][1]:.3f}x)")
    if not b["knobs"] or b["ratio"] < a.min_gain:
        if a.shape_class and not b["knobs"]:
            print(f"tune: the {a.shape_class} variant's defaults stay (no candidate setting knobs beat them by {a.min_gain}x)")
        else:
            print(f"tune: the default stays (no candidate beat it by {a.min_gain}x)")
        return 0
    # The best of many noisy candidates is biased upwards (a knob set to the
    # schedule's own default once won 1.032x): it must win again, in twice
    # the rounds, measured afresh, before it goes to the database.
    print(f"tune: confirming {b['knobs']} in {2 * a.rounds} fresh rounds", flush=True)
    try:
        err = k.generate(b["knobs"])
        if err:
            sys.exit("tune: cannot rebuild the best candidate: " + err)
        b = dict(b, found=b["ratio"], **time_candidate(2 * a.rounds))
        print(f"tune: confirmation {b['ms']:.4f} ms against {b['default_ms']:.4f} ms "
              f"({b['ratio']:.3f}x, rounds {b['ratio_range'][0]:.3f}-{b['ratio_range'][1]:.3f}x)")
        if b["ratio"] < a.min_gain:
            print(f"tune: the default stays (the confirmation did not beat it by {a.min_gain}x)")
            return 0
        # A database entry applies to every call of the function (of its
        # shape class, with --class): tuned on one layer, it must not lose on
        # the others (measured: knobs tuned on a 4096 x 4096 layer lost up to
        # 27% on 1024-row ones), nor on all threads.
        losses, worst, per_shape = [], None, []
        threads = sorted({a.threads, os.cpu_count() or 1})
        threads = [th for th in threads if in_class(a.shape, a.shape_class, th)]  # a class by threads: its own
        shapes = [sh_ for sh_ in bench_shapes(base_bench, a.kernel, a.target) if in_class(sh_, a.shape_class)]
        print(f"tune: checking {len(shapes)} shapes{' of class ' + a.shape_class if a.shape_class else ''} "
              f"x threads {threads} for losses", flush=True)
        for shape in shapes:
            for th in threads:
                f = (f"^{posix_escape(a.kernel)}/{posix_escape(a.target)}/{posix_escape(shape)}/tokens:{tokens}"
                     f"/threads:{th}/real_time$")
                r = time_candidate(2, f)
                worst = r["ratio"] if worst is None else min(worst, r["ratio"])
                lost = r["ratio_range"][1] < 1.0 and r["ratio"] < 0.97
                if lost:
                    losses.append(f"{shape} threads {th}: {r['ratio']:.3f}x")
                # Each layer's ratio, so that a rule by size can be read off a check that fails.
                print(f"tune:   {shape} threads {th}: {r['ratio']:.3f}x ({r['ratio_range'][0]:.3f}-"
                      f"{r['ratio_range'][1]:.3f}x){' lost' if lost else ''}", flush=True)
                per_shape.append({"shape": shape, "threads": th, "ratio": round(r["ratio"], 3)})
        b["checked"] = {"shapes": len(shapes), "threads": threads, "worst_ratio": round(worst, 3),
                        "per_shape": per_shape}
        if losses:
            print("tune: the default stays (the candidate loses on " + "; ".join(losses) + ")")
            return 0
    finally:
        k.restore()
    model, flags = cpu_info()
    db_path = db_file(a)
    db = {"cpu": model, "features": flags, "halide": halide_version(), "entries": []}
    if os.path.exists(db_path):
        with open(db_path) as f:
            db = json.load(f)
    entry = {"function": k.function, "kernel": a.kernel, "target": a.target, "params": b["knobs"],
             **({"class": a.shape_class} if a.shape_class else {}),
             "shape": a.shape, "tokens": tokens, "threads": a.threads, "default_ms": round(b["default_ms"], 5),
             "tuned_ms": round(b["ms"], 5), "ratio": round(b["ratio"], 3),
             "ratio_range": [round(x, 3) for x in b["ratio_range"]], "rounds": 2 * a.rounds,
             "search_ratio": round(b["found"], 3), "checked": b["checked"],
             "date": datetime.date.today().isoformat(), "halide": halide_version(),
             "command": "scripts/tune.py " + " ".join(sys.argv[1:])}
    db["entries"] = [e for e in db["entries"]
                     if (e["function"], e.get("class")) != (k.function, a.shape_class)] + [entry]
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    with open(db_path, "w") as f:
        json.dump(db, f, indent=2)
        f.write("\n")
    print(f"tune: wrote {db_path} (build with -DQF_TUNING_DB={os.path.relpath(db_path, ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
