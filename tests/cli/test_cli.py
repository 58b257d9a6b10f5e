"""End-to-end tests of the qforge command line and of its file loaders.

GGUF files come from gguf-py's GGUFWriter, safetensors files from the small
independent writer below (json + struct, not qforge's). Dequantized values are
compared bit for bit with gguf-py (GGUF types) or numpy (int4g); matmuls with
a float64 numpy reference. Then a table of bad inputs, each with its expected
error text and exit code, and no output file left behind.

Usage: test_cli.py QFORGE_BINARY [unittest args]
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import gguf
from gguf.constants import GGMLQuantizationType as T

QFORGE = None
RNG = np.random.default_rng(int(os.environ.get("QF_SEED", "0")) or None)


def run(*args, expect=0):
    p = subprocess.run([QFORGE, *map(str, args)], capture_output=True, text=True)
    if p.returncode != expect:
        raise AssertionError(f"qforge {' '.join(map(str, args))}: exit {p.returncode}, expected {expect}\n"
                             f"stdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-2000:]}")
    return p


def write_safetensors(path, tensors, metadata=None, header_patch=None):
    """tensors: name -> (dtype string, shape, raw bytes)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if header_patch:
        header_patch(header)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I32": np.int32, "I8": np.int8,
              "F8_E4M3": np.uint8}[e["dtype"]]
        out[name] = np.frombuffer(data[b:end], dtype=dt).reshape(e["shape"])
    return out, header.get("__metadata__", {})


def random_blocks(rows, cols, qtype, d_offset, min_offset=None):
    """Random blocks of qtype with a realistic f16 scale at d_offset (and a min at min_offset)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = RNG.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)

    def f16(lo, hi):
        return RNG.uniform(lo, hi, size=(rows, cols // block)).astype(np.float16).view(np.uint8).reshape(rows, cols // block, 2)

    raw[:, :, d_offset:d_offset + 2] = f16(-0.02, 0.02)
    if qtype == T.Q4_K and min_offset is None:
        min_offset = 2
    if min_offset is not None:
        raw[:, :, min_offset:min_offset + 2] = f16(0, 0.02)
    return raw.reshape(rows, -1)


def fp8_e4m3(codes):
    """OCP FP8 E4M3 codes (uint8) to float32 by the definition (FORMATS.md)."""
    c = codes.astype(np.int32)
    s, e, m = c >> 7, (c >> 3) & 15, c & 7
    v = np.where(e == 0, m * 2.0 ** -9, 2.0 ** (e - 7) * (1 + m / 8.0))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return np.where(s == 1, -v, v).astype(np.float32)


def int4g_dequant(w4, scales, in_, g):
    lo, hi = (w4 & 15).astype(np.int32) - 8, (w4 >> 4).astype(np.int32) - 8
    q = np.stack([lo, hi], axis=-1).reshape(w4.shape[0], in_)
    s = np.repeat(scales.astype(np.float32), g, axis=1)[:, :in_]
    return q.astype(np.float32) * s


def gptq_pack(intweight, zeros, v2=False):
    """AutoGPTQ's pack() loops (qlinear_cuda_old), in numpy: intweight [in, out], zeros [groups, out]."""
    in_, out = intweight.shape
    qweight = np.zeros((in_ // 8, out), dtype=np.uint32)
    i, row = 0, 0
    while row < qweight.shape[0]:
        for j in range(i, i + 8):
            qweight[row] |= intweight[j].astype(np.uint32) << np.uint32(4 * (j - i))
        i += 8
        row += 1
    z = zeros.astype(np.uint32) - np.uint32(0 if v2 else 1)  # v1 stores zero - 1
    qzeros = np.zeros((zeros.shape[0], out // 8), dtype=np.uint32)
    i, col = 0, 0
    while col < qzeros.shape[1]:
        for j in range(i, i + 8):
            qzeros[:, col] |= z[:, j] << np.uint32(4 * (j - i))
        i += 8
        col += 1
    return qweight.view(np.int32), qzeros.view(np.int32)


def awq_pack(intweight, zeros):
    """AutoAWQ's WQLinear_GEMM.from_linear packing, in numpy: intweight [in, out], zeros [groups, out]."""
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    def pack(m):
        q = np.zeros((m.shape[0], m.shape[1] // 8), dtype=np.uint32)
        for col in range(m.shape[1] // 8):
            for i in range(8):
                q[:, col] |= m[:, col * 8 + order_map[i]].astype(np.uint32) << np.uint32(i * 4)
        return q.view(np.int32)
    return pack(intweight), pack(zeros)


class Files(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        d = cls.dir.name
        cls.out, cls.in_ = 40, 512
        # GGUF through gguf-py: one tensor of every type with a layer, a bias, metadata.
        cls.gguf_path = os.path.join(d, "model.gguf")
        w = gguf.GGUFWriter(cls.gguf_path, "llama")
        w.add_uint32("test.count", 7)
        w.add_string("test.name", "qforge")
        w.add_float32("test.eps", 1e-5)
        w.add_array("test.list", [1, 2, 3])
        # A tokenizer-like string array (kept compactly by the reader) and a float array must survive a rewrite.
        w.add_array("test.tokens", ["<s>", "", "h\u00e9llo", "x" * 40])
        w.add_array("test.scores", [0.5, -1.25])
        cls.dense = RNG.uniform(-0.05, 0.05, size=(cls.out, cls.in_)).astype(np.float32)
        cls.bias = RNG.uniform(-1, 1, size=cls.out).astype(np.float32)
        w.add_tensor("f32.weight", cls.dense)
        w.add_tensor("f32.bias", cls.bias)
        w.add_tensor("f16.weight", cls.dense.astype(np.float16))
        w.add_tensor("q8_0.weight", gguf.quants.quantize(cls.dense, T.Q8_0), raw_dtype=T.Q8_0)
        w.add_tensor("q4_0.weight", gguf.quants.quantize(cls.dense, T.Q4_0), raw_dtype=T.Q4_0)
        w.add_tensor("q4_k.weight", random_blocks(cls.out, cls.in_, T.Q4_K, 0), raw_dtype=T.Q4_K)
        w.add_tensor("q6_k.weight", random_blocks(cls.out, cls.in_, T.Q6_K, 208), raw_dtype=T.Q6_K)
        for t in (T.Q4_1, T.Q5_0, T.Q5_1):
            w.add_tensor(t.name.lower() + ".weight", gguf.quants.quantize(cls.dense, t), raw_dtype=t)
        # The other types of llama.cpp's mixes: random valid blocks (gguf-py quantizes none of them).
        for t, offsets in ((T.Q2_K, (80, 82)), (T.Q3_K, (108,)), (T.Q5_K, (0, 2)), (T.IQ4_NL, (0,)), (T.IQ4_XS, (0,))):
            w.add_tensor(t.name.lower() + ".weight", random_blocks(cls.out, cls.in_, t, *offsets), raw_dtype=t)
        w.add_tensor("norm.weight", np.ones(cls.in_, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        cls.reader = gguf.GGUFReader(cls.gguf_path)
        # safetensors, independent writer: dense f32/f16 and two int4g layers (with and without bias).
        cls.st_path = os.path.join(d, "model.safetensors")
        g, in4 = 32, 96
        cls.w4 = RNG.integers(0, 256, size=(cls.out, in4 // 2), dtype=np.uint8)
        cls.s4 = RNG.uniform(0.001, 0.01, size=(cls.out, in4 // g)).astype(np.float16)
        cls.in4, cls.g = in4, g
        write_safetensors(cls.st_path, {
            "dense.weight": ("F32", cls.dense.shape, cls.dense.tobytes()),
            "dense.bias": ("F32", cls.bias.shape, cls.bias.tobytes()),
            "half.weight": ("F16", cls.dense.shape, cls.dense.astype(np.float16).tobytes()),
            "lin.weight_4bit": ("U8", cls.w4.shape, cls.w4.tobytes()),
            "lin.scales_4bit": ("F16", cls.s4.shape, cls.s4.tobytes()),
            "lin.bias": ("F16", (cls.out,), cls.bias.astype(np.float16).tobytes()),
            "nob.weight_4bit": ("U8", cls.w4.shape, cls.w4.tobytes()),
            "nob.scales_4bit": ("F16", cls.s4.shape, cls.s4.tobytes()),
        }, metadata={"format": "pt"})

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def dequant(self, file, tensor):
        out = self.path("deq.f32")
        run("dequant", file, "--tensor", tensor, "-o", out)
        return np.fromfile(out, dtype=np.float32)

    def test_inspect_gguf(self):
        j = json.loads(run("inspect", self.gguf_path, "--json").stdout)
        self.assertEqual(j["format"], "gguf")
        self.assertEqual(j["version"], 3)
        meta = {m["key"]: m["value"] for m in j["metadata"]}
        self.assertEqual(meta["test.count"], "7")
        self.assertEqual(meta["test.name"], "qforge")
        self.assertEqual(meta["test.list"], "[1, 2, 3]")
        ours = {t["name"]: t for t in j["tensors"]}
        for t in self.reader.tensors:
            self.assertIn(t.name, ours)
            self.assertEqual(ours[t.name]["type"], t.tensor_type.name)
            self.assertEqual(ours[t.name]["bytes"], int(t.n_bytes))
            self.assertEqual(ours[t.name]["shape"], "x".join(str(int(s)) for s in reversed(t.shape)))
        text = run("inspect", self.gguf_path).stdout
        self.assertIn("q6_k.weight", text)

    def test_inspect_safetensors(self):
        j = json.loads(run("inspect", self.st_path, "--json").stdout)
        self.assertEqual(j["format"], "safetensors")
        names = {t["name"]: t for t in j["tensors"]}
        self.assertEqual(names["lin.weight_4bit"]["type"], "U8")
        self.assertEqual(names["lin.scales_4bit"]["shape"], f"{self.out}x{self.in4 // self.g}")

    def test_dequant_gguf_bit_exact_with_gguf_py(self):
        for t in self.reader.tensors:
            if t.name == "norm.weight":
                continue
            with self.subTest(tensor=t.name):
                ours = self.dequant(self.gguf_path, t.name)
                theirs = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
                self.assertTrue(np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)))

    def test_dequant_int4g(self):
        ours = self.dequant(self.st_path, "lin").reshape(self.out, self.in4)
        ref = int4g_dequant(self.w4, self.s4, self.in4, self.g)
        self.assertTrue(np.array_equal(ours, ref))

    def matmul(self, file, tensor, w, bias, tokens, activations="f32", tol=1e-5, extra=()):
        x = RNG.uniform(-1, 1, size=(tokens, w.shape[1])).astype(np.float32)
        xf, yf = self.path("x.f32"), self.path("y.f32")
        x.tofile(xf)
        run("matmul", file, "--tensor", tensor, "--input", xf, "--tokens", tokens, "-o", yf, "--activations",
            activations, *extra)
        y = np.fromfile(yf, dtype=np.float32).reshape(tokens, w.shape[0])
        ref = x.astype(np.float64) @ w.astype(np.float64).T + (0 if bias is None else bias.astype(np.float64))
        err = np.abs(y - ref).max() / np.abs(ref).max()
        self.assertLess(err, tol, f"{tensor} tokens={tokens}")

    def test_matmul_every_gguf_type(self):
        for t in self.reader.tensors:
            if t.name in ("norm.weight", "f32.bias"):
                continue
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(self.out, self.in_)
            bias = self.bias if t.name == "f32.weight" else None
            for tokens in (1, 5):
                with self.subTest(tensor=t.name, tokens=tokens):
                    self.matmul(self.gguf_path, t.name, w, bias, tokens)
        w = gguf.quants.dequantize(self.reader.tensors[5].data, T.Q4_K).reshape(self.out, self.in_)
        self.matmul(self.gguf_path, "q4_k.weight", w, None, 3, activations="q8", tol=3e-2)
        # A named target: only where this build made a library for it (QF_VARIANTS=all, as CI builds).
        variants = json.loads(run("targets", "--json").stdout)["variants"]
        if any(v["target"] == "x86-avx2" and v["kernel"] == "q4k_matmul_f32" for v in variants):
            self.matmul(self.gguf_path, "q4_k.weight", w, None, 2, extra=("--target", "x86-avx2"))

    def test_matmul_safetensors(self):
        ref = int4g_dequant(self.w4, self.s4, self.in4, self.g)
        self.matmul(self.st_path, "lin", ref, self.bias.astype(np.float16).astype(np.float32), 4)
        self.matmul(self.st_path, "nob", ref, None, 1)
        self.matmul(self.st_path, "dense.weight", self.dense, self.bias, 3)
        self.matmul(self.st_path, "half.weight", self.dense.astype(np.float16).astype(np.float32), None, 2)

    def test_pack(self):
        # A packed GGUF opens in gguf-py and inspect, keeps every other tensor
        # and key, dequantizes to the original's bits, and multiplies as the
        # original does, on this CPU's family and on another's (repacked, said once).
        for target in ("auto", "x86", "arm64"):
            with self.subTest(target=target):
                out = self.path(f"packed-{target}.gguf")
                j = json.loads(run("pack", self.gguf_path, "-o", out, "--target", target, "--json").stdout)
                packed = {t["tensor"] for t in j["tensors"]}
                self.assertEqual(packed, {"q4_k.weight", "q6_k.weight", "q4_0.weight", "q8_0.weight", "q4_1.weight",
                                          "q5_0.weight", "q5_1.weight", "q2_k.weight", "q3_k.weight", "q5_k.weight",
                                          "iq4_nl.weight", "iq4_xs.weight"})
                self.assertGreater(j["ms_per_gb"], 0)
                r = gguf.GGUFReader(out)
                self.assertIn("qforge.pack.q4_k.weight.rows", r.fields)
                self.assertIn("test.name", r.fields)
                self.assertEqual({t.name for t in r.tensors}, {t.name for t in self.reader.tensors})
                self.assertIn("q4_k.weight", run("inspect", out).stdout)
                for t in self.reader.tensors:
                    if t.name in ("norm.weight", "f32.bias"):
                        continue
                    ours, want = self.dequant(out, t.name), self.dequant(self.gguf_path, t.name)
                    self.assertTrue(np.array_equal(ours.view(np.uint32), want.view(np.uint32)), t.name)
                for name, qt in (("q4_k.weight", T.Q4_K), ("q6_k.weight", T.Q6_K), ("q4_0.weight", T.Q4_0),
                                 ("q8_0.weight", T.Q8_0), ("q4_1.weight", T.Q4_1), ("q5_0.weight", T.Q5_0),
                                 ("q5_1.weight", T.Q5_1), ("q2_k.weight", T.Q2_K), ("q3_k.weight", T.Q3_K),
                                 ("q5_k.weight", T.Q5_K), ("iq4_nl.weight", T.IQ4_NL), ("iq4_xs.weight", T.IQ4_XS)):
                    src = next(t for t in self.reader.tensors if t.name == name)
                    w = gguf.quants.dequantize(src.data, qt).reshape(self.out, self.in_)
                    for tokens in (1, 6):
                        self.matmul(out, name, w, None, tokens, activations="auto", tol=3e-2)
                    self.matmul(out, name, w, None, 2, activations="f32")  # the exact path, from packed bytes
                xf, yf = self.path("x.f32"), self.path("y.f32")
                RNG.uniform(-1, 1, size=(1, self.in_)).astype(np.float32).tofile(xf)
                p = run("matmul", out, "--tensor", "q4_k.weight", "--input", xf, "--tokens", 1, "-o", yf)
                self.assertEqual("repacked" in p.stderr, target == "arm64", p.stderr)
        out = self.path("packed-int4g.gguf")
        j = json.loads(run("pack", self.st_path, "-o", out, "--json").stdout)
        self.assertEqual({t["tensor"] for t in j["tensors"]}, {"lin", "nob"})
        ref = int4g_dequant(self.w4, self.s4, self.in4, self.g)
        self.assertTrue(np.array_equal(self.dequant(out, "lin").reshape(self.out, self.in4), ref))
        self.matmul(out, "lin", ref, self.bias.astype(np.float16).astype(np.float32), 4, activations="auto", tol=3e-2)
        self.matmul(out, "nob", ref, None, 1, activations="auto", tol=3e-2)
        self.matmul(out, "dense.weight", self.dense, self.bias, 3)

    def test_gptq_and_awq_checkpoints(self):
        # Checkpoints packed by AutoGPTQ's and AutoAWQ's own loops (above),
        # with their config.json: inspect says what they are, dequant gives
        # the checkpoint's values bit for bit (act-order included), matmul
        # runs them, and pack writes a GGUF whose int4z tiles multiply alike.
        out, in_ = 24, 256
        for kind, G, act_order in (("gptq", 64, False), ("gptq", 32, True), ("awq", 128, False)):
            with self.subTest(kind=kind, group=G, act_order=act_order):
                d = self.path(f"{kind}-{G}-{int(act_order)}")
                os.makedirs(d, exist_ok=True)
                groups = in_ // G
                q = RNG.integers(0, 16, size=(in_, out), dtype=np.uint32)
                z = RNG.integers(1, 16, size=(groups, out), dtype=np.uint32)
                sc = RNG.uniform(0.001, 0.02, size=(groups, out)).astype(np.float16)
                g_idx = np.arange(in_, dtype=np.int32) // G
                if act_order:
                    perm = RNG.permutation(in_)
                    g_idx[perm] = np.arange(in_, dtype=np.int32) // G
                bias = RNG.uniform(-1, 1, size=out).astype(np.float16)
                pre = "model.layers.0.self_attn.q_proj"
                if kind == "gptq":
                    qw, qz = gptq_pack(q, z)
                    tensors = {pre + ".g_idx": ("I32", (in_,), g_idx.tobytes())}
                    config = {"quant_method": "gptq", "bits": 4, "group_size": G, "desc_act": act_order, "sym": False}
                else:
                    qw, qz = awq_pack(q, z)
                    tensors = {}
                    config = {"quant_method": "awq", "bits": 4, "group_size": G, "version": "gemm", "zero_point": True}
                tensors.update({pre + ".qweight": ("I32", qw.shape, qw.tobytes()),
                                pre + ".qzeros": ("I32", qz.shape, qz.tobytes()),
                                pre + ".scales": ("F16", sc.shape, sc.tobytes()),
                                pre + ".bias": ("F16", bias.shape, bias.tobytes())})
                st = os.path.join(d, "model.safetensors")
                write_safetensors(st, tensors, metadata={"format": "pt"})
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump({"model_type": "llama", "quantization_config": config}, f)
                # The checkpoint's own math: W[o, c] = (q[c, o] - z[g(c), o]) * s[g(c), o].
                w = ((q.astype(np.float32) - z[g_idx].astype(np.float32)) * sc[g_idx].astype(np.float32)).T
                j = json.loads(run("inspect", st, "--json").stdout)
                self.assertEqual(j["quantization"]["method"], kind)
                self.assertEqual(j["quantization"]["layers"], 1)
                self.assertEqual(j["quantization"]["runs_as"], "int4z")
                self.assertIn("run as int4z", run("inspect", st).stdout)
                ours = self.dequant(st, pre).reshape(out, in_)
                self.assertTrue(np.array_equal(ours, w.astype(np.float32)))
                b32 = bias.astype(np.float32)
                for tokens in (1, 5):
                    self.matmul(st, pre, w, b32, tokens)
                    self.matmul(st, pre, w, b32, tokens, activations="auto", tol=3e-2)
                packed = os.path.join(d, "packed.gguf")
                pj = json.loads(run("pack", st, "-o", packed, "--json").stdout)
                if act_order:  # the columns' inputs travel as <name>.input_order
                    self.assertIn(pre + ".input_order", {t.name for t in gguf.GGUFReader(packed).tensors})
                self.assertEqual({t["tensor"] for t in pj["tensors"]}, {pre})
                self.assertTrue(np.array_equal(self.dequant(packed, pre).reshape(out, in_), w.astype(np.float32)))
                self.matmul(packed, pre, w, b32, 3, activations="auto", tol=3e-2)

    def test_quantize_int4z_as_gptq(self):
        # --to int4z writes a GPTQ checkpoint (default layout, config in its
        # metadata) that qforge reads back and multiplies.
        out = self.path("int4z.safetensors")
        j = json.loads(run("quantize", self.st_path, "-o", out, "--to", "int4z:32", "--json").stdout)
        rows = {t["tensor"]: t for t in j["tensors"]}
        self.assertEqual(rows["dense.weight"]["to"], "int4z:32")
        self.assertLess(rows["dense.weight"]["rmse"], 0.003)
        st, meta = read_safetensors(out)
        self.assertEqual(st["dense.qweight"].dtype, np.int32)
        self.assertEqual(json.loads(meta["quantization_config"])["quant_method"], "gptq")
        self.assertIn("run as int4z", run("inspect", out).stdout)
        w = self.dequant(out, "dense").reshape(self.out, self.in_)
        self.assertLess(np.sqrt(np.mean((w - self.dense) ** 2)), 0.003)
        self.matmul(out, "dense", w, self.bias, 3)

    def test_quantize_int8_and_fp8_as_compressed_tensors(self):
        # --to int8 / fp8 writes compressed-tensors' layout (codes and
        # NAME.weight_scale [out, 1]); qforge reads it back, dequantizes it to
        # the checkpoint's own math (numpy here) bit for bit, and multiplies.
        for fmt, dtype in (("int8", "I8"), ("fp8", "F8_E4M3")):
            out = self.path(fmt + ".safetensors")
            j = json.loads(run("quantize", self.st_path, "-o", out, "--to", fmt, "--json").stdout)
            rows = {t["tensor"]: t for t in j["tensors"]}
            self.assertEqual(rows["dense.weight"]["to"], fmt)
            tensors, _ = read_safetensors(out)
            codes, scale = tensors["dense.weight"], tensors["dense.weight_scale"]
            self.assertEqual(codes.shape, (self.out, self.in_))
            self.assertEqual(scale.shape, (self.out, 1))
            with open(out, "rb") as f:
                self.assertIn(('"dtype":"%s"' % dtype).encode(), f.read(4096))
            want = scale * (codes.astype(np.float32) if fmt == "int8" else fp8_e4m3(codes))
            got = self.dequant(out, "dense.weight").reshape(self.out, self.in_)
            self.assertTrue(np.array_equal(got, want.astype(np.float32)))
            self.assertLess(np.sqrt(np.mean((got - self.dense) ** 2)), 0.05 * (0.01 if fmt == "int8" else 0.05))
            ij = json.loads(run("inspect", out, "--json").stdout)
            self.assertEqual(ij["channel_quantization"][fmt + "_layers"], 2)  # dense.weight and half.weight
            self.assertIn("run as int8 / fp8", run("inspect", out).stdout)
            self.matmul(out, "dense.weight", got, self.bias, 3)
            if fmt == "int8":  # int8 packs (its tiles carry their rows' scales); fp8 has no packed kernels
                packed = self.path("int8_packed.gguf")
                run("pack", out, "-o", packed, "--target", "x86")
                self.assertTrue(np.array_equal(self.dequant(packed, "dense.weight").reshape(self.out, self.in_), got))
                self.matmul(packed, "dense.weight", got, self.bias, 3, activations="auto", tol=3e-2)
            else:
                p = run("pack", out, "-o", self.path("fp8_packed.gguf"), "--target", "x86", expect=1)
                self.assertIn("has no packed layout", p.stderr)

    def test_quantize_with_act_scales_smoothquant(self):
        # --act-scales folds SmoothQuant's scales into the layers that read a
        # norm (q/k/v after input_layernorm, gate/up after
        # post_attention_layernorm) and into that norm's weight: the checkpoint
        # computes the same block, and its 8-bit weights err less on inputs
        # with outlier channels.
        h, f = 64, 128
        pre = "model.layers.0."
        gamma = RNG.uniform(0.5, 1.5, size=h).astype(np.float32)
        ws = {n: RNG.normal(0, 0.05, size=shape).astype(np.float32) for n, shape in (
            ("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (h, h)), ("self_attn.v_proj", (h, h)),
            ("self_attn.o_proj", (h, h)), ("mlp.gate_proj", (f, h)), ("mlp.up_proj", (f, h)), ("mlp.down_proj", (h, f)))}
        tensors = {pre + n + ".weight": ("F32", w.shape, w.tobytes()) for n, w in ws.items()}
        tensors[pre + "input_layernorm.weight"] = ("F32", (h,), gamma.tobytes())
        tensors[pre + "post_attention_layernorm.weight"] = ("F32", (h,), gamma.tobytes())
        src = self.path("llama.safetensors")
        write_safetensors(src, tensors)
        amax = RNG.uniform(0.5, 2.0, size=h).astype(np.float32)
        amax[[3, 17, 40]] = 60.0  # outlier channels, as LLM activations have
        acts = self.path("act_scales.safetensors")
        write_safetensors(acts, {pre + n: ("F32", (h if "down" not in n else f,),
                                           (amax if "down" not in n else np.ones(f, np.float32)).tobytes()) for n in ws})
        out, plain = self.path("smooth.safetensors"), self.path("plain.safetensors")
        j = json.loads(run("quantize", src, "-o", out, "--to", "int8", "--act-scales", acts, "--alpha", "0.5", "--json").stdout)
        run("quantize", src, "-o", plain, "--to", "int8")
        sm = j["smoothing"]
        self.assertEqual(sm["layers"], 5)
        self.assertLess(sm["out_rmse"], sm["out_rmse_before"])
        self.assertEqual(len(sm["unsmoothed"]), 2)  # o_proj and down_proj read no norm
        rows = {t["tensor"]: t for t in j["tensors"]}
        self.assertEqual(rows[pre + "self_attn.q_proj.weight"]["smooth"], 0.5)
        # The norm's weight is gamma / s, s from the three projections that read it.
        wmax = np.max(np.abs(np.concatenate([ws["self_attn." + p + "_proj"] for p in "qkv"])), axis=0)
        s_ = np.sqrt(np.maximum(amax, 1e-5)) / np.sqrt(np.maximum(wmax, 1e-5))
        st, _ = read_safetensors(out)
        self.assertTrue(np.allclose(st[pre + "input_layernorm.weight"], gamma / s_, rtol=1e-5))
        # The block's q projection on inputs with those outliers: smoothed beats plain int8.
        x = RNG.uniform(-1, 1, size=(64, h)).astype(np.float32) * amax
        xn = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True) + 1e-6)
        exact = (xn * gamma) @ ws["self_attn.q_proj"].T.astype(np.float64)
        wq_s = self.dequant(out, pre + "self_attn.q_proj.weight").reshape(h, h)
        wq_p = self.dequant(plain, pre + "self_attn.q_proj.weight").reshape(h, h)
        def q8_0(v):  # activations as the 8-bit kernels take them: blocks of 32, d = max|v| / 127
            b = v.reshape(v.shape[0], -1, 32)
            d = np.abs(b).max(axis=2, keepdims=True) / 127
            return (np.round(b / np.where(d == 0, 1, d)) * d).reshape(v.shape)
        err_s = np.sqrt(np.mean((q8_0(xn * st[pre + "input_layernorm.weight"]) @ wq_s.T.astype(np.float64) - exact) ** 2))
        err_p = np.sqrt(np.mean((q8_0(xn * gamma) @ wq_p.T.astype(np.float64) - exact) ** 2))
        self.assertLess(err_s, 0.75 * err_p)  # 0.47x at worst over 40 seeds of this setup
        # Errors name the layer and what is missing.
        p = run("quantize", src, "-o", self.path("bad.safetensors"), "--to", "int8", "--act-scales", acts, "--override",
                pre + "self_attn.o_proj.weight=int8+smooth=0.5", expect=1)
        self.assertIn("o_proj", p.stderr)
        self.assertIn("no norm", p.stderr)
        partial = self.path("partial_acts.safetensors")
        write_safetensors(partial, {pre + "self_attn.q_proj": ("F32", (h,), amax.tobytes())})
        p = run("quantize", src, "-o", self.path("bad.safetensors"), "--to", "int8", "--act-scales", partial, expect=1)
        self.assertIn("no activation scales for layer 'model.layers.0.self_attn.k_proj.weight'", p.stderr)
        p = run("quantize", src, "-o", self.path("bad.safetensors"), "--to", "int8+smooth=0.5", expect=1)
        self.assertIn("no --act-scales", p.stderr)

    def test_quantize_q4k_readable_by_gguf_py(self):
        out = self.path("q.gguf")
        j = json.loads(run("quantize", self.gguf_path, "-o", out, "--to", "q4_k", "--override", "f16.weight=f16",
                           "--json").stdout)
        self.assertLessEqual(j["q4_k_rmse"]["ours"], j["q4_k_rmse"]["minmax"])
        r = gguf.GGUFReader(out)
        types = {t.name: t.tensor_type for t in r.tensors}
        self.assertEqual(types["f32.weight"], T.Q4_K)
        self.assertEqual(types["f16.weight"], T.F16)
        self.assertEqual(types["q6_k.weight"], T.Q6_K)  # copied unchanged
        self.assertEqual(r.fields["test.name"].contents(), "qforge")
        self.assertEqual(r.fields["test.tokens"].contents(), ["<s>", "", "h\u00e9llo", "x" * 40])
        self.assertEqual(r.fields["test.scores"].contents(), [0.5, -1.25])
        self.assertEqual(r.fields["test.list"].contents(), [1, 2, 3])
        t = [t for t in r.tensors if t.name == "f32.weight"][0]
        theirs = gguf.quants.dequantize(t.data, T.Q4_K).astype(np.float32).reshape(self.out, self.in_)
        ours = self.dequant(out, "f32.weight").reshape(self.out, self.in_)
        self.assertTrue(np.array_equal(ours, theirs))
        rmse = np.sqrt(np.mean((theirs - self.dense) ** 2))
        self.assertLess(rmse, 0.05 * 0.1)
        self.assertTrue(any(abs(row["rmse"] - rmse) < 1e-6 for row in j["tensors"] if row["tensor"] == "f32.weight"))

    def test_quantize_int4g(self):
        out = self.path("q.safetensors")
        run("quantize", self.st_path, "-o", out, "--to", "int4g:32")
        tensors, meta = read_safetensors(out)
        self.assertEqual(meta["dense.group_size"], "32")
        ref = int4g_dequant(tensors["dense.weight_4bit"], tensors["dense.scales_4bit"], self.in_, 32)
        self.assertLess(np.sqrt(np.mean((ref - self.dense) ** 2)), 0.05 * 0.15)
        ours = self.dequant(out, "dense").reshape(self.out, self.in_)
        self.assertTrue(np.array_equal(ours, ref))
        self.assertIn("lin.weight_4bit", tensors)  # already int4g: copied

    def test_bench_and_targets(self):
        j = json.loads(run("bench", self.gguf_path, "--tokens", "1,3", "--threads", "1", "--json").stdout)
        linears = [t for t in self.reader.tensors if t.name.endswith(".weight") and t.name != "norm.weight"]
        self.assertEqual(len(j["layers"]), len(linears) * 2)  # every linear layer, both token counts
        self.assertEqual([t["tokens"] for t in j["totals"]], [1, 3])
        self.assertGreater(j["load_ms_per_gb"], 0)  # load (packing) time is reported
        self.assertGreaterEqual(j["packed_layers"], 4 if "x86" in j["target"] else 0)  # q4_k, q6_k, q4_0, q8_0 pack here
        self.assertEqual(j["skipped"], [])
        for t in j["totals"]:
            self.assertGreater(t["tokens_per_s"], 0)
            self.assertGreater(t["roof_ms"], 0)
        self.bench_moe_tied_and_unsupported()
        j = json.loads(run("targets", "--json").stdout)
        self.assertIn(j["dispatched"], [t["target"] for t in j["targets"]])
        self.assertIsInstance(j["prefetch"], bool)  # by the CPU's vendor, unless QF_PREFETCH says
        for forced in ("0", "1"):
            p = subprocess.run([QFORGE, "targets", "--json"], capture_output=True, text=True,
                               env={**os.environ, "QF_PREFETCH": forced}, check=True)
            self.assertEqual(json.loads(p.stdout)["prefetch"], forced == "1")
        for cmd in ("demo", "inspect", "dequant", "matmul", "quantize", "bench", "pack", "block", "targets"):
            self.assertIn("Usage", run(cmd, "--help").stdout)

    def test_block_from_gguf_written_by_gguf_py(self):
        """qforge block: a Qwen3 block (q/k norms, GQA, q_dim != hidden) written by gguf-py, Q8_0 projections."""
        hidden, heads, kv_heads, hd, ffn = 256, 4, 2, 96, 288
        path = os.path.join(self.dir.name, "qwen3.gguf")
        w = gguf.GGUFWriter(path, "qwen3")
        w.add_block_count(1)
        w.add_embedding_length(hidden)
        w.add_feed_forward_length(ffn)
        w.add_head_count(heads)
        w.add_head_count_kv(kv_heads)
        w.add_key_length(hd)
        w.add_value_length(hd)
        w.add_layer_norm_rms_eps(1e-6)
        q8 = lambda rows, cols: gguf.quants.quantize(RNG.normal(0, 0.05, (rows, cols)).astype(np.float32), T.Q8_0)
        for name, rows, cols in [("attn_q", heads * hd, hidden), ("attn_k", kv_heads * hd, hidden),
                                 ("attn_v", kv_heads * hd, hidden), ("attn_output", hidden, heads * hd),
                                 ("ffn_gate", ffn, hidden), ("ffn_up", ffn, hidden), ("ffn_down", hidden, ffn)]:
            w.add_tensor(f"blk.0.{name}.weight", q8(rows, cols), raw_dtype=T.Q8_0)
        for name, n in [("attn_norm", hidden), ("ffn_norm", hidden), ("attn_q_norm", hd), ("attn_k_norm", hd)]:
            w.add_tensor(f"blk.0.{name}.weight", RNG.uniform(0.5, 1.5, n).astype(np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        j = json.loads(run("block", path, "--tokens", "1,3", "--threads", "1", "--json").stdout)
        self.assertEqual((j["architecture"], j["hidden"], j["ffn"], j["heads"], j["kv_heads"], j["head_dim"]),
                         ("qwen3", hidden, ffn, heads, kv_heads, hd))
        self.assertTrue(j["qk_norm"])
        self.assertEqual(j["activation"], "silu")
        self.assertEqual([t["tokens"] for t in j["timings"]], [1, 3])
        self.assertIn("Usage", run("block", "--help").stdout)
        p = run("block", path, "--index", "1", expect=1)
        self.assertIn("block_count = 1", p.stderr)

    # ---- bad inputs: (file maker, command, exit code, text the error must contain) ----

    def gguf_bytes(self):
        with open(self.gguf_path, "rb") as f:
            return bytearray(f.read())

    def hand_gguf(self, tensors, data_bytes, version=3):
        """A GGUF with no metadata and the given (name, dims, type, offset) tensor infos."""
        b = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), 0))
        for name, dims, ttype, off in tensors:
            b += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(dims))
            b += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, off)
        b += bytes((-len(b)) % 32) + bytes(data_bytes)
        return b

    # Small real models whose widths are no multiple of 256, typed per tensor
    # the way llama.cpp's Q4_K_M / IQ4_XS mixes fall back (Q5_0, Q8_0, IQ4_NL
    # where rows are not whole super-blocks): (name, hidden, q_dim, kv_dim, ffn).
    SMALL_MODELS = [
        ("qwen2-0.5b", 896, 896, 128, 4864),
        ("gemma3-270m", 640, 1024, 256, 2048),
        ("smollm2-360m", 960, 960, 320, 2560),
    ]

    def test_small_model_shapes(self):
        def typed(out, in_, ktype, fallback):
            if in_ % 256 == 0:
                offsets = {T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,), T.Q3_K: (108,), T.Q2_K: (80, 82),
                           T.IQ4_XS: (0,)}[ktype]
                return random_blocks(out, in_, ktype, *offsets), ktype
            if fallback == T.IQ4_NL:
                return random_blocks(out, in_, T.IQ4_NL, 0), T.IQ4_NL
            w = RNG.uniform(-0.05, 0.05, size=(out, in_)).astype(np.float32)
            return gguf.quants.quantize(w, fallback), fallback

        for name, hidden, q_dim, kv_dim, ffn in self.SMALL_MODELS:
            path = self.path(f"{name}.gguf")
            w = gguf.GGUFWriter(path, "llama")
            layers = [  # tensor, out, in, K-quant type, fallback for rows of no whole super-blocks
                ("blk.0.attn_q.weight", q_dim, hidden, T.Q4_K, T.Q5_0),
                ("blk.0.attn_k.weight", kv_dim, hidden, T.Q4_K, T.Q5_0),
                ("blk.0.attn_v.weight", kv_dim, hidden, T.Q6_K, T.Q8_0),
                ("blk.0.attn_output.weight", hidden, q_dim, T.Q5_K, T.Q5_1),
                ("blk.0.ffn_gate.weight", ffn, hidden, T.Q3_K, T.Q4_1),
                ("blk.0.ffn_up.weight", ffn, hidden, T.IQ4_XS, T.IQ4_NL),
                ("blk.0.ffn_down.weight", hidden, ffn, T.Q6_K, T.Q8_0),
                ("output.weight", 512, hidden, T.Q2_K, T.Q5_0),
            ]
            tensors = {}
            for tensor, out, in_, ktype, fallback in layers:
                data, qt = typed(out, in_, ktype, fallback)
                w.add_tensor(tensor, data, raw_dtype=qt)
                tensors[tensor] = (data, qt, out, in_)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            for tensor, (data, qt, out, in_) in tensors.items():
                ref = gguf.quants.dequantize(data, qt).astype(np.float32).reshape(out, in_)
                with self.subTest(model=name, tensor=tensor, type=qt.name):
                    self.assertTrue(np.array_equal(self.dequant(path, tensor).view(np.uint32).reshape(out, in_),
                                                   ref.view(np.uint32)))
                    self.matmul(path, tensor, ref, None, 3)
                    self.matmul(path, tensor, ref, None, 1, activations="auto", tol=3e-2)
            j = json.loads(run("bench", path, "--tokens", "1,4", "--threads", "1", "--json").stdout)
            self.assertEqual(j["skipped"], [], name)
            self.assertEqual(len(j["layers"]), 2 * len(layers), name)

    def bench_moe_tied_and_unsupported(self):
        # Experts in a 3-D stack, a tied output head (no output.weight) and a
        # type without kernels: bench times the first two and names the third.
        path = self.path("moe.gguf")
        w = gguf.GGUFWriter(path, "llama")
        w.add_uint32("llama.expert_used_count", 2)
        experts = RNG.uniform(-0.05, 0.05, size=(4, self.out, self.in_)).astype(np.float32)
        w.add_tensor("blk.0.ffn_gate_exps.weight", gguf.quants.quantize(experts, T.Q8_0), raw_dtype=T.Q8_0)
        w.add_tensor("blk.0.attn_q.weight", RNG.integers(0, 256, size=(self.out, self.in_ // 256 * 66), dtype=np.uint8),
                     raw_dtype=T.IQ2_XXS)
        w.add_tensor("blk.0.ffn_down.weight", random_blocks(self.out, self.in_, T.Q5_K, 0, 2), raw_dtype=T.Q5_K)
        w.add_tensor("token_embd.weight", gguf.quants.quantize(self.dense, T.Q8_0), raw_dtype=T.Q8_0)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        j = json.loads(run("bench", path, "--tokens", "1", "--threads", "1", "--json").stdout)
        rows = {r["tensor"]: r for r in j["layers"]}
        self.assertEqual(set(rows), {"blk.0.ffn_gate_exps.weight", "blk.0.ffn_down.weight",
                                     "output.weight (tied: token_embd.weight)"})
        self.assertEqual(rows["blk.0.ffn_gate_exps.weight"]["shape"], f"4x{self.out}x{self.in_} (per expert)")
        self.assertEqual(rows["output.weight (tied: token_embd.weight)"]["shape"], f"{self.out}x{self.in_}")
        self.assertEqual([(s["tensor"], s["type"]) for s in j["skipped"]], [("blk.0.attn_q.weight", "IQ2_XXS")])
        self.assertIn("no kernels", j["skipped"][0]["reason"])
        self.assertEqual(j["experts_used"], 2)
        text = run("bench", path, "--tokens", "1", "--threads", "1").stdout
        self.assertIn("not run (1)", text)
        self.assertIn("tokens/s", text)
        # pack packs the stack expert by expert: its dequant is the original's,
        # and bench runs it from the packed bytes (repacked for arm64 on x86).
        stack = "blk.0.ffn_gate_exps.weight"
        for target in ("x86", "arm64"):
            out = self.path(f"moe-packed-{target}.gguf")
            p = json.loads(run("pack", path, "-o", out, "--target", target, "--json").stdout)
            shapes = {t["tensor"]: t["shape"] for t in p["tensors"]}
            self.assertEqual(shapes[stack], f"4x{self.out}x{self.in_}", target)
            self.assertIn("blk.0.ffn_down.weight", shapes)
            r = gguf.GGUFReader(out)
            self.assertEqual(r.fields[f"qforge.pack.{stack}.experts"].parts[-1][0], 4)
            self.assertTrue(np.array_equal(self.dequant(out, stack).view(np.uint32), self.dequant(path, stack).view(np.uint32)))
            j = json.loads(run("bench", out, "--tokens", "1", "--threads", "1", "--json").stdout)
            rows = {r["tensor"]: r for r in j["layers"]}
            self.assertEqual(rows[stack]["shape"], f"4x{self.out}x{self.in_} (per expert)", target)
            self.assertEqual([s["tensor"] for s in j["skipped"]], ["blk.0.attn_q.weight"])

    def test_bad_inputs(self):
        good = self.gguf_bytes()
        st_tensors = {"lin.weight_4bit": ("U8", (4, 16), bytes(64)), "lin.scales_4bit": ("F16", (4, 1), bytes(8))}

        def st(patch=None, tensors=None):
            return lambda p: write_safetensors(p, tensors or st_tensors, header_patch=patch)

        def raw(b):
            def make(p):
                with open(p, "wb") as f:
                    f.write(bytes(b))
            return make

        def st_text(text, data=b""):
            """A safetensors file with this exact header text (for JSON json.dumps cannot write)."""
            return raw(struct.pack("<Q", len(text)) + text.encode() + data)

        def meta(**kv):
            return st(lambda h: h.update({"__metadata__": {k.replace("_", ".", 1): v for k, v in kv.items()}}))

        entry = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'

        cases = [
            ("truncated GGUF", raw(good[:100]), ["inspect"], "at byte"),
            ("truncated GGUF data", raw(good[:-100]), ["inspect"], "past the end of the file"),
            ("not a model file", raw(b"hello world, this is not a model"), ["inspect"], "header length"),
            ("tensor offset past the end", raw(self.hand_gguf([("a.weight", (32, 2), 0, 4096)], bytes(256))),
             ["inspect"], "past the end of the file"),
            ("overlapping tensors", raw(self.hand_gguf([("a.weight", (32, 2), 0, 0), ("b.weight", (32, 2), 0, 128)],
                                                       bytes(512))), ["inspect"], "overlap"),
            ("unknown ggml type", raw(self.hand_gguf([("a.weight", (32, 2), 99, 0)], bytes(256))), ["inspect"],
             "unknown ggml type 99"),
            ("GGUF version 1", raw(self.hand_gguf([], b"", version=1)), ["inspect"], "version 1"),
            ("wrong dtype", st(lambda h: h["lin.weight_4bit"].update(dtype="Q9")), ["inspect"], "unsupported dtype 'Q9'"),
            ("shape mismatch", st(lambda h: h["lin.weight_4bit"].update(shape=[4, 17])), ["inspect"], "needs 68 bytes"),
            ("safetensors offsets past the end", st(lambda h: h["lin.scales_4bit"].update(data_offsets=[64, 999])),
             ["inspect"], "past the end of the file"),
            # Hostile headers (issue 17): each a class of reader bug, fixed at its root.
            ("int4g group size past int's range", meta(lin_group_size=str(2 ** 32 + 32)),
             ["dequant", "--tensor", "lin", "-o", "OUT"], "larger than 2^31 - 1"),
            ("int4g group size with trailing garbage", meta(lin_group_size="32abc"),
             ["dequant", "--tensor", "lin", "-o", "OUT"], "'32abc' is not an integer"),
            ("deeply nested JSON header", st_text('{"x":' + "[" * 100000 + "]" * 100000 + "}"), ["inspect"],
             "nests deeper than 16 levels"),
            ("duplicate JSON key", st_text('{"a":' + entry + ',"a":' + entry + "}", b"\0"), ["inspect"],
             "key 'a' appears twice"),
            ("dimension past int64", st_text('{"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,1]}}',
                                             b"\0"), ["inspect"], "not an integer in [0, 2^63)"),
            # shape x element size past 2^64: the byte count wrapped to 0 and matched empty data_offsets
            ("byte count that wraps", st_text('{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}'),
             ["inspect"], "more than 2^63 bytes"),
            ("GGUF byte count that wraps", raw(self.hand_gguf([("a.weight", (2 ** 22, 2 ** 40), 0, 0)], bytes(256))),
             ["inspect"], "more than 2^63 bytes"),
            # Resource limits (README, "Hostile files"; tests/test_limits.cpp measures them)
            ("GGUF with more than 2^16 keys", raw(b"GGUF" + struct.pack("<IQQ", 3, 0, 2 ** 16 + 1) + bytes(2 ** 20)),
             ["inspect"], "at most 65536"),
            ("GGUF key past 65535 bytes", raw(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 70000) + b"k" * 70000 + bytes(16)),
             ["inspect"], "limit 65535"),
            ("safetensors entry of more than 256 values",
             st_text('{"a":{"dtype":"U8","shape":[' + "0," * 300 + '0],"data_offsets":[0,0]}}'), ["inspect"],
             "holds more than 256 values"),
            ("int4g scales of the wrong shape",
             st(tensors={"lin.weight_4bit": ("U8", (4, 16), bytes(64)), "lin.scales_4bit": ("F16", (3, 1), bytes(6))}),
             ["dequant", "--tensor", "lin", "-o", "OUT"], "scales_4bit"),
            ("int4g bias of the wrong shape",
             st(tensors={**st_tensors, "lin.bias": ("F32", (5,), bytes(20))}),
             ["matmul", "--tensor", "lin", "--input", "X1x32", "--tokens", "1", "-o", "OUT"], "bias"),
            ("no such tensor", raw(good), ["dequant", "--tensor", "nope.weight", "-o", "OUT"], "no tensor named 'nope.weight'"),
            ("X of the wrong size", raw(good), ["matmul", "--tensor", "q4_k.weight", "--input", "X1x32", "--tokens", "1",
                                                "-o", "OUT"], "needs 512 f32 values"),
            ("tokens = 0", raw(good), ["matmul", "--tensor", "q4_k.weight", "--input", "X1x32", "--tokens", "0",
                                       "-o", "OUT"], "at least 1"),
            ("q8 activations on F16", raw(good), ["matmul", "--tensor", "f16.weight", "--input", "X1x512", "--tokens",
                                                  "1", "--activations", "q8", "-o", "OUT"],
             "q8 is for formats with 8-bit kernels (int4g, int4z, q4_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q5_k, "
             "iq4_nl, iq4_xs, int8)"),
            ("unknown target", raw(good), ["matmul", "--tensor", "q4_k.weight", "--input", "X1x512", "--tokens", "1",
                                           "--target", "x86-avx1024", "-o", "OUT"], "x86-avx1024"),
            ("plan: unknown layer", raw(good), ["quantize", "-o", "OUT", "--to", "q4_k", "--override", "zz.weight=q4_k"],
             "no such layer"),
            ("plan: odd group size", raw(good), ["quantize", "-o", "OUT", "--to", "int4g:33"], "group size"),
            ("plan: int4g into GGUF", raw(good), ["quantize", "-o", "OUT", "--to", "q4_k", "--override", "f32.weight=int4g"],
             "cannot go into the GGUF"),
        ]
        np.zeros(32, np.float32).tofile(self.path("X1x32"))
        np.zeros(512, np.float32).tofile(self.path("X1x512"))
        for name, make, cmd, needle in cases:
            with self.subTest(case=name):
                f, out = self.path("bad.bin"), self.path("out.bin")
                if os.path.exists(out):
                    os.remove(out)
                make(f)
                args = [a.replace("OUT", out).replace("X1x32", self.path("X1x32")).replace("X1x512", self.path("X1x512"))
                        for a in cmd]
                p = run(args[0], f, *args[1:], expect=1)
                self.assertIn(needle, p.stderr)
                self.assertTrue(p.stderr.startswith("qforge: error:"), p.stderr)
                self.assertFalse(os.path.exists(out), "a partial output file was left behind")
                self.assertFalse(any(n.endswith(".qforge-tmp") for n in os.listdir(self.dir.name)))
        # A FIFO is refused at once (opening one for reading would wait for a writer).
        fifo = self.path("model.fifo")
        os.mkfifo(fifo)
        p = subprocess.run([QFORGE, "inspect", fifo], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("not a regular file", p.stderr)
        # Names and metadata with terminal escape codes are printed escaped, never raw.
        evil = self.path("evil.safetensors")
        write_safetensors(evil, {"evil\x1b[2J.weight": ("U8", (1,), b"\0")}, metadata={"k\x1b]0;x\x07": "v\x1b[31m"})
        p = run("inspect", evil)
        self.assertNotIn("\x1b", p.stdout)
        self.assertNotIn("\x07", p.stdout)
        self.assertIn("evil\\x1b[2J.weight", p.stdout)
        # A zero-length dimension, which safetensors allows, is an empty tensor, not an error.
        empty = self.path("empty.safetensors")
        write_safetensors(empty, {"empty.weight": ("F32", (0, 4), b""), "x.weight": ("F32", (1, 4), bytes(16))})
        self.assertIn("empty.weight", run("inspect", empty).stdout)
        run("dequant", empty, "--tensor", "empty.weight", "-o", self.path("empty.f32"))
        self.assertEqual(os.path.getsize(self.path("empty.f32")), 0)
        # Usage errors exit with 2.
        run("matmul", expect=2)
        run("frobnicate", expect=2)


if __name__ == "__main__":
    QFORGE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
