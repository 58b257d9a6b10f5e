"""The tuner's ground: targets/knobs.json names only real generator knobs of
real generators, every tuning database in schedules/tuned/ is well formed
and sets only those knobs, and scripts/tune.py finds a packed kernel of
this build, its generator command and its knob space (--dry-run: nothing
is regenerated or timed here; tuning is a tool run, not a test), and the
generators that give Halide's autoschedulers their estimates compile under
one.

Usage: test_tune.py BUILD_DIR [unittest args]
"""
import glob
import json
import os
import re
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = None


def generator_knobs():
    with open(os.path.join(ROOT, "generators", "common.h")) as f:
        src = f.read()
    block = src[src.index("class KernelGenerator"):]
    return set(re.findall(r'GeneratorParam<int> (\w+)\{"\1"', block))


def generators():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "generators", "*.cpp")):
        with open(path) as f:
            names.update(re.findall(r"HALIDE_REGISTER_GENERATOR\([\w:]+, (\w+)\)", f.read()))
    return names


class Tune(unittest.TestCase):
    def test_knob_space(self):
        with open(os.path.join(ROOT, "targets", "knobs.json")) as f:
            space = json.load(f)
        knobs, gens = generator_knobs(), generators()
        self.assertTrue({"prefetch", "chains", "vector_width", "tile_tokens"} <= knobs, knobs)
        self.assertEqual(set(space["knobs"]) - knobs, set(), "knobs.json documents knobs no generator has")
        for gen, modes in space["generators"].items():
            self.assertIn(gen, gens, f"knobs.json: no generator {gen}")
            self.assertLessEqual(set(modes), {"decode", "prefill", "cuda"}, gen)
            families = [("cpu", {m: v for m, v in modes.items() if m != "cuda"}), ("cuda", modes.get("cuda", {}))]
            for family, fmodes in families:
                self.assertLessEqual(set(fmodes), {"decode", "prefill"}, f"{gen} {family}")
                for mode, ks in fmodes.items():
                    for k, values in ks.items():
                        self.assertIn(k, space["knobs"], f"{gen} {family} {mode}: {k} is not documented")
                        self.assertTrue(values and all(isinstance(v, int) and v != 0 for v in values),
                                        f"{gen} {family} {mode} {k}: legal values are nonzero ints (0 is the default)")

    def test_shape_classes(self):
        # A partition of layer sizes (the runtime's for_shape takes the one a
        # call falls in), refined by classes of short rows or of few threads,
        # with the classes tune.py tunes on by default.
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import tune
        classes = sorted((c["from"], c["below"]) for c in tune.shape_classes(refining=False).values())
        self.assertEqual(classes[0][0], 0)
        for (_, below), (lo, _) in zip(classes, classes[1:]):
            self.assertEqual(below, lo, "shape classes leave a gap or overlap")
        self.assertEqual(classes[-1][1], 2**63 - 1)
        for cls, shape in tune.CLASS_SHAPES.items():
            self.assertIn(cls, tune.shape_classes())
            self.assertTrue(tune.in_class(shape, cls, 1), shape)
        self.assertTrue(tune.in_class("qwen3-0.6b.k/1024x1024", "small"))
        self.assertFalse(tune.in_class("qwen3-0.6b.k/1024x1024", "large"))
        self.assertTrue(tune.in_class("llama-3.2-1b.q/2048x2048", "large"))
        self.assertTrue(tune.in_class("anything/1x1", None))
        # A refining class lies within one class of sizes or covers whole ones.
        for cls, c in tune.shape_classes().items():
            if tune.refines(c):
                inside = any(lo <= c["from"] and c["below"] <= below for lo, below in classes)
                whole = c["from"] in [lo for lo, _ in classes] and c["below"] in [b for _, b in classes]
                self.assertTrue(inside or whole, cls)
        self.assertTrue(tune.in_class("qwen3-0.6b.q/2048x1024", "short"))
        self.assertFalse(tune.in_class("qwen3-0.6b.o/1024x2048", "short"))
        self.assertTrue(tune.in_class("llama-3.1-8b.q/4096x4096", "one_thread", 1))
        self.assertFalse(tune.in_class("llama-3.1-8b.q/4096x4096", "one_thread", 2))

    def test_databases(self):
        with open(os.path.join(ROOT, "targets", "knobs.json")) as f:
            knobs = json.load(f)
        documented = set(knobs["knobs"])
        classes = set(knobs["shape_classes"]) - {"about"}
        for path in glob.glob(os.path.join(ROOT, "schedules", "tuned", "*.json")):
            with open(path) as f:
                db = json.load(f)
            for field in ("features", "halide", "entries"):
                self.assertIn(field, db, path)
            self.assertTrue("cpu" in db or "gpu" in db, f"{path}: a database names its CPU or its GPU")
            for e in db["entries"]:
                self.assertTrue(e["function"].startswith("qf_"), path)
                self.assertLessEqual(set(e["params"]), documented, f"{path}: {e['function']}")
                self.assertTrue(all(isinstance(v, int) for v in e["params"].values()), path)
                self.assertGreater(e["default_ms"], 0)
                self.assertGreater(e["tuned_ms"], 0)
                self.assertIn(e.get("class", "large"), classes, f"{path}: {e['function']}")
            for e in db.get("searched", []):  # searches that kept the kernel's own schedule
                self.assertTrue(e["function"].startswith("qf_"), path)
                self.assertIn("result", e, path)
            keys = [(e["function"], e.get("class")) for e in db["entries"]]
            self.assertEqual(len(keys), len(set(keys)), f"{path}: two entries for one function and class")

    def test_dry_run_finds_a_packed_kernel(self):
        qforge = os.path.join(BUILD, "runtime", "qforge")
        info = json.loads(subprocess.run([qforge, "targets", "--json"], capture_output=True, text=True,
                                         check=True).stdout)
        rows = [v for v in info["variants"] if v["kernel"] == "q4k_matvec_q8_x16"]
        self.assertTrue(rows, "no packed Q4_K decode variant in this build")
        for v in rows:
            self.assertTrue(v["function"].startswith("qf_q4_k_matvec_q8_k"), v)
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "tune.py"), "--build", BUILD, "--kernel",
                            rows[0]["kernel"], "--target", rows[0]["target"], "--dry-run"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("generator q4k_packed_matmul_q8, decode", p.stdout)
        self.assertIn("chains [1, 2, 4]", p.stdout)
        # --try: candidates checked against the knob space before anything is built.
        base = [sys.executable, os.path.join(ROOT, "scripts", "tune.py"), "--build", BUILD, "--kernel",
                rows[0]["kernel"], "--target", rows[0]["target"], "--dry-run"]
        p = subprocess.run(base + ["--try", "streams=1,touch=-1", "--try", "chains=4"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        for bad in ("streams=5", "no_knob=1", "streams=one"):
            p = subprocess.run(base + ["--try", bad], capture_output=True, text=True)
            self.assertNotEqual(p.returncode, 0, bad)
            self.assertIn("is not in the knob space", p.stderr, bad)
        # A shape that qforge_bench does not time: a clear error at once, not
        # after the minutes of rebuilding the default.
        p = subprocess.run(base[:-1] + ["--shape", "qwen3-0.6b.q", "--try", "chains=4"], capture_output=True, text=True,
                           timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue("--shape qwen3-0.6b.q: qforge_bench times" in p.stderr or "is missing" in p.stderr, p.stderr)
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "tune.py"), "--build", BUILD, "--kernel",
                            "no_such_kernel", "--dry-run"], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no variant no_such_kernel", p.stderr)

    def test_autoschedulers_plan_every_tuned_generator(self):
        # Halide's autoschedulers refuse a pipeline with an input or output
        # whose size they are not told: each generator that gives estimates
        # (common.h, autoscheduled()) must compile under one, and each plugin
        # tune.py --autoschedulers names must be in the wheel.
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import tune
        plugins = {n: tune.autoscheduler_plugin(n) for n in tune.AUTOSCHEDULERS}
        gen = os.path.join(BUILD, "qforge_generators")
        out = os.path.join(BUILD, "tune", "autoscheduled")
        os.makedirs(out, exist_ok=True)
        for g, params in [("q4k_packed_matmul_q8", ["pack_rows=16"]), ("q6k_packed_matmul_q8", ["pack_rows=16"]),
                          ("block32_packed_matmul_q8", ["pack_rows=16", "group_size=32"]),
                          ("int4g_matmul", ["group_size=32"]), ("int4g_matmul", ["group_size=32", "norm=true"]),
                          ("q4k_matmul_f32", [])]:
            for mode in ("decode", "prefill"):
                p = subprocess.run([gen, "-p", plugins["Li2018"], "-g", g, "-f", "k", "-e", "object", "-o", out,
                                    "target=host-no_runtime", f"mode={mode}", "autoscheduler=Li2018",
                                    "autoscheduler.parallelism=2"] + params, capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, f"{g} {mode}: {p.stderr[-600:]}")

    def test_tuned_vs_default_cases(self):
        # Which benchmarks the default-against-tuned table times per entry.
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import tuned_vs_default
        decode = {"kernel": "q4k_matvec_q8_x16", "tokens": 1}
        prefill = {"kernel": "q4k_matmul_q8_x16", "tokens": 32}
        self.assertEqual(tuned_vs_default.cases(decode, [1, 2]), [(1, 1), (1, 2)])
        self.assertEqual([t for t, _ in tuned_vs_default.cases(prefill, [1])], [8, 32, 128])
        p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "tuned_vs_default.py"), "--default", BUILD,
                            "--tuned", os.path.join(BUILD, "no_such_build"), "--db",
                            os.path.join(ROOT, "schedules", "tuned", "intel-r-xeon-r-processor.json")],
                           capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no_such_build", p.stderr)

    def test_cuda_rounds(self):
        # The CUDA search's bookkeeping without a GPU (scripts/tune_cuda.py):
        # a round's candidates become tagged rows of the kernel's own row,
        # a device run's results pick the best, the descent goes on from it,
        # and a confirmed winner is written to the GPU's database.
        import argparse
        import tempfile
        import types
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import tune_cuda
        with tempfile.TemporaryDirectory() as tmp:
            build = os.path.join(tmp, "build")
            os.makedirs(build)
            shutil_rows = os.path.join(BUILD, "kernel_rows.tsv")
            with open(shutil_rows) as f, open(os.path.join(build, "kernel_rows.tsv"), "w") as g:
                g.write(f.read())
            a = argparse.Namespace(build=build, kernel="q4k_matvec_f32", target="cuda-sm86", seed=1, random=3,
                                   max_candidates=40, min_gain=1.03, rounds=2, db=os.path.join(tmp, "gpu.json"),
                                   autoschedulers=None)
            k = types.SimpleNamespace(function="qf_q4_k_matvec_f32__f32_g__cuda_sm86", mode="decode",
                                      generator="q4k_matmul_f32")
            s = tune_cuda.Search(a, k, "21.0.0")
            space = s.space({"tile_rows": [1, 2, 4], "unroll": [1, 2]})
            winner = {"tile_rows": 2, "unroll": 2}

            def device(cands, confirm=False):
                # What qforge_cuda_bench --tune writes: the winner 1.25x on every shape, others 0.9x.
                path = os.path.join(tmp, "results.jsonl")
                with open(path, "w") as f:
                    for tag, knobs in cands.items():
                        for shape in tune_cuda.SHAPES:
                            r = 1.25 if knobs == winner else 0.9
                            f.write(json.dumps({"kernel": a.kernel, "candidate": f"{a.kernel}@{tag}", "shape": shape,
                                                "tokens": 1, "gpu": "NVIDIA Test GPU", "default_ms": [1.0, 1.0],
                                                "ms": [1 / r, 1 / r], "rel_diff": 0, "failed": ""}) + "\n")
                s.ingest(path, {})

            cands = s.plan(space)
            self.assertEqual(len(cands), 3)
            row = s.row_for("t0", {"tile_rows": 2})
            self.assertRegex(row, r"^t0 q4_k +matvec +f32 .* cuda +q4k_matmul_f32 +tile_rows=2$")
            cands[list(cands)[0]] = winner
            s.state["pending"] = cands
            device(cands)
            self.assertEqual(s.best()["knobs"], winner)
            for _ in range(10):
                cands = s.plan(space)
                if s.state["phase"] != "search":
                    break
                self.assertNotIn(tune_cuda.key(winner), [tune_cuda.key(c) for c in cands.values()])
                device(cands)
            self.assertEqual(s.state["phase"], "confirm")
            self.assertEqual(list(cands.values()), [winner])
            device(cands)
            s.finish()
            with open(a.db) as f:
                db = json.load(f)
            self.assertEqual(db["gpu"], "NVIDIA Test GPU")
            e = db["entries"][0]
            self.assertEqual((e["function"], e["params"], e["ratio"]), (k.function, winner, 1.25))
            self.assertEqual(set(e["shapes"]), set(tune_cuda.SHAPES))

            # Where nothing beats the kernel, the search ends there and the database records it.
            os.remove(s.path)
            a.db = os.path.join(tmp, "gpu2.json")
            s = tune_cuda.Search(a, k, "21.0.0")
            winner = None
            for _ in range(10):
                cands = s.plan(space)
                if not cands:
                    break
                device(cands)
            self.assertEqual(s.state["phase"], "done")
            with open(a.db) as f:
                db = json.load(f)
            self.assertEqual(db["entries"], [])
            self.assertEqual(db["searched"][0]["function"], k.function)
            self.assertEqual(db["searched"][0]["best"]["ratio"], 0.9)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
