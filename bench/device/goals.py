"""The goals of the CUDA issue from one device run: qforge_cuda_bench's TSV
(and peers.py's, for PyTorch's int4 kernel), as one table.

  decode:  a layer's 1-token call (the runtime's own pick) at >= 80% of the
           device's copy bandwidth, Q4_K and int4g g128;
  small:   the Halide kernels (CUDA cores) against cuBLAS fp16, >= 2x at 4
           tokens and >= 1x at 16;
  tensor:  int4g through CUTLASS against cuBLAS fp16, >= 2x at 16 tokens and
           >= 0.9x at 512.
cuBLAS fp16 is `cublas_f16_peer/cublas`: an eager_f16 layer of the same
values, its f16 weights read on every call.
Usage: goals.py QFORGE_TSV [PEERS_TSV]
"""
import csv
import sys

SHAPES = [(14336, 4096), (4096, 14336)]


def load(path):
    rows = {}
    try:
        with open(path) as f:
            for r in csv.reader(f, delimiter="\t"):
                if len(r) >= 7:
                    rows[(r[0], int(r[1]), int(r[2]), int(r[3]))] = (float(r[4]), float(r[6]))
    except OSError:
        pass
    return rows


def main():
    q = load(sys.argv[1])
    peers = load(sys.argv[2]) if len(sys.argv) > 2 else {}
    print("| goal | shape | qforge | peer | ratio / % | target | met |")
    print("| --- | --- | --- | --- | --- | --- | --- |")

    def line(goal, shape, ours, peer, value, target, met):
        print(f"| {goal} | {shape[0]}x{shape[1]} | {ours} | {peer} | {value} | {target} | {'yes' if met else 'no'} |")

    for shape in SHAPES:
        for name in ("layer_q4k/auto", "layer_int4g_g128/auto"):
            r = q.get((name, *shape, 1))
            if r:
                line("decode " + name.split("/")[0], shape, f"{r[0]:.4f} ms", "copy", f"{r[1]:.1f}%", ">= 80%", r[1] >= 80)
    for goal, suffix, tokens, need in (("small, Halide", "/halide", 4, 2.0), ("small, Halide", "/halide", 16, 1.0),
                                       ("tensor cores", "/cutlass", 16, 2.0), ("tensor cores", "/cutlass", 512, 0.9)):
        for shape in SHAPES:
            peer = q.get(("cublas_f16_peer/cublas", *shape, tokens))
            names = ("layer_q4k", "layer_int4g_g128") if suffix == "/halide" else ("layer_int4g_g128",)
            for name in names:
                r = q.get((name + suffix, *shape, tokens))
                if not r or not peer:
                    continue
                ratio = peer[0] / r[0]
                line(f"{goal}, {tokens} tokens, {name}", shape, f"{r[0]:.4f} ms", f"{peer[0]:.4f} ms", f"{ratio:.2f}x",
                     f">= {need}x", ratio >= need)
            torch_int4 = peers.get(("torch_int4pack_mm", *shape, tokens))
            if torch_int4 and peer and suffix == "/cutlass":
                print(f"| (PyTorch int4, {tokens} tokens) | {shape[0]}x{shape[1]} | {torch_int4[0]:.4f} ms | "
                      f"{peer[0]:.4f} ms | {peer[0] / torch_int4[0]:.2f}x | | |")


if __name__ == "__main__":
    main()
