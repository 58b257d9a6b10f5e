"""Q4_K dequantization, bit for bit against gguf-py (llama.cpp's own Python).

Random blocks: any bytes with finite f16 d and dmin make a valid block; the
d/dmin draws include subnormal, negative and zero values. The C++ tool writes
the reference's and every runnable kernel variant's output; each must equal
gguf.quants.dequantize exactly (compared as bit patterns).
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize


def random_blocks(rng, rows, cols):
    nb = cols // 256
    data = rng.integers(0, 256, size=(rows * nb, 144), dtype=np.uint8)
    bits = rng.integers(0, 1 << 16, size=(rows * nb, 2), dtype=np.uint16)
    # Finite only: exponent 31 is inf/NaN; remap it to a random other exponent.
    exp = (bits >> 10) & 0x1F
    bits = np.where(exp == 31, bits & np.uint16(0x83FF), bits).astype(np.uint16)
    special = np.array([0x0001, 0x8001, 0x03FF, 0x83FF, 0x0000, 0x8000, 0x7BFF, 0xFBFF], dtype=np.uint16)
    bits[: min(len(special), len(bits)), 0] = special[: len(bits)]
    bits[: min(len(special), len(bits)), 1] = special[::-1][: len(bits)]
    data[:, 0:4] = bits.view(np.uint8).reshape(-1, 4)
    return data.reshape(rows, nb * 144)


def main():
    tool = sys.argv[1]
    rng = np.random.default_rng()
    for rows, cols in [(1, 256), (3, 512), (17, 4096), (5, 14336)]:
        data = random_blocks(rng, rows, cols)
        want = dequantize(data, GGMLQuantizationType.Q4_K).astype(np.float32).reshape(rows, cols)
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "w.bin"
            data.tofile(src)
            targets = subprocess.run([tool, str(src), str(rows), str(cols), d], check=True,
                                     capture_output=True, text=True).stdout.split()
            assert targets, "no runnable q4k_dequant variant"
            for name in ["reference"] + targets:
                got = np.fromfile(Path(d) / f"{name}.f32", dtype=np.float32).reshape(rows, cols)
                diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
                if diff.size:
                    i = diff[0]
                    raise SystemExit(f"{name} [{rows}x{cols}]: {diff.size} values differ from gguf-py; "
                                     f"first at {divmod(i, cols)}: {got.flat[i]!r} != {want.flat[i]!r}")
            print(f"{rows}x{cols}: reference and {len(targets)} variants ({', '.join(targets)}) bit-exact")


if __name__ == "__main__":
    main()
