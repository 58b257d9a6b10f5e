"""Dequantization of every GGUF block format qforge runs, bit for bit
against gguf-py (llama.cpp's own Python, `gguf.quants`).

Random blocks: any bytes with finite f16 scale fields make a valid block;
the scale draws include subnormal, negative and zero values. The C++ tool
writes the reference's and every runnable kernel variant's output; each
must equal gguf.quants.dequantize exactly (compared as bit patterns).
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf.quants import dequantize

# qforge's name, gguf-py's type, byte offsets of the block's f16 fields
# (FORMATS.md).
FORMATS = [
    ("q4_0", T.Q4_0, [0]),
    ("q4_1", T.Q4_1, [0, 2]),
    ("q5_0", T.Q5_0, [0]),
    ("q5_1", T.Q5_1, [0, 2]),
    ("q8_0", T.Q8_0, [0]),
    ("q2_k", T.Q2_K, [80, 82]),
    ("q3_k", T.Q3_K, [108]),
    ("q4_k", T.Q4_K, [0, 2]),
    ("q5_k", T.Q5_K, [0, 2]),
    ("q6_k", T.Q6_K, [208]),
    ("iq4_nl", T.IQ4_NL, [0]),
    ("iq4_xs", T.IQ4_XS, [0]),
]

SPECIAL = np.array([0x0001, 0x8001, 0x03FF, 0x83FF, 0x0000, 0x8000, 0x7BFF, 0xFBFF], dtype=np.uint16)


def random_blocks(rng, qtype, f16_fields, rows, cols):
    block, size = GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    data = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for k, at in enumerate(f16_fields):
        bits = rng.integers(0, 1 << 16, size=nb, dtype=np.uint16)
        # Finite only: exponent 31 is inf/NaN; keep the sign and mantissa, exponent 0.
        bits = np.where(((bits >> 10) & 0x1F) == 31, bits & np.uint16(0x83FF), bits).astype(np.uint16)
        special = SPECIAL if k % 2 == 0 else SPECIAL[::-1]
        bits[: min(len(special), nb)] = special[:nb]
        data[:, at:at + 2] = bits.view(np.uint8).reshape(nb, 2)
    return data.reshape(rows, cols // block * size)


def main():
    tool = sys.argv[1]
    rng = np.random.default_rng()
    for name, qtype, f16_fields in FORMATS:
        block = GGML_QUANT_SIZES[qtype][0]
        for rows, cols in [(1, 256), (3, 512), (17, 4096), (5, 14336), (2, 896)]:
            if cols % block:
                continue
            data = random_blocks(rng, qtype, f16_fields, rows, cols)
            want = dequantize(data, qtype).astype(np.float32).reshape(rows, cols)
            with tempfile.TemporaryDirectory() as d:
                src = Path(d) / "w.bin"
                data.tofile(src)
                targets = subprocess.run([tool, name, str(src), str(rows), str(cols), d], check=True,
                                         capture_output=True, text=True).stdout.split()
                assert targets, f"no runnable {name} dequant variant"
                for impl in ["reference"] + targets:
                    got = np.fromfile(Path(d) / f"{impl}.f32", dtype=np.float32).reshape(rows, cols)
                    diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
                    if diff.size:
                        i = diff[0]
                        raise SystemExit(f"{name} {impl} [{rows}x{cols}]: {diff.size} values differ from gguf-py; "
                                         f"first at {divmod(i, cols)}: {got.flat[i]!r} != {want.flat[i]!r}")
            print(f"{name} {rows}x{cols}: reference and {len(targets)} variants ({', '.join(targets)}) bit-exact")


if __name__ == "__main__":
    main()
