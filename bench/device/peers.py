"""Peers of the CUDA kernels, in the same device run (bench/device/run.sh):
cuBLAS fp16 through torch.nn.functional.linear and PyTorch's int4
weight-only kernel torch._weight_int4pack_mm (bf16, group 128), on the
shapes of cuda_bench.cpp, with rotating weights to defeat the L2 and CUDA
events (median of 100). Prints rows in cuda_bench's format."""
import statistics
import sys

import torch


def median_ms(fn, reps=100):
    for i in range(5):
        fn(i)
    torch.cuda.synchronize()
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(reps + 1)]
    ev[0].record()
    for i in range(reps):
        fn(i)
        ev[i + 1].record()
    torch.cuda.synchronize()
    return statistics.median(ev[i].elapsed_time(ev[i + 1]) for i in range(reps))


def copies(nbytes):
    return max(2, (400 << 20) // nbytes + 1)


def main():
    out_tsv = open(sys.argv[1], "w") if len(sys.argv) > 1 else None
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    copy_bw = 2 * a.numel() / (median_ms(lambda i: b.copy_(a), 20) * 1e-3)
    print(f"torch copy: {copy_bw / 1e9:.0f} GB/s")

    def row(name, out, inn, tok, ms, nbytes, flops):
        gbs = nbytes / (ms * 1e-3) / 1e9
        line = (f"{name:<22} {out:6d}x{inn:<6d} {tok:5d} {ms:10.4f} {gbs:9.1f} "
                f"{100 * nbytes / (ms * 1e-3) / copy_bw:7.1f}% {flops / (ms * 1e-3) / 1e12:9.1f} {'-':>10} {'-':>8}  torch")
        print(line, flush=True)
        if out_tsv:
            out_tsv.write(f"{name}\t{out}\t{inn}\t{tok}\t{ms:.5f}\t{gbs:.1f}\t"
                          f"{100 * nbytes / (ms * 1e-3) / copy_bw:.2f}\t{flops / (ms * 1e-3) / 1e12:.2f}\tnan\tnan\ttorch\n")
            out_tsv.flush()

    torch.manual_seed(0)
    for out, inn in [(14336, 4096), (4096, 14336)]:
        wbytes = out * inn * 2
        n = copies(wbytes)
        ws = [torch.randn(out, inn, dtype=torch.float16, device="cuda") * 0.02 for _ in range(n)]
        packed = None
        try:
            q = torch.randint(0, 16, (out, inn), dtype=torch.int32, device="cuda")
            qu8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
            w4 = torch._convert_weight_to_int4pack(qu8, 8)
            sz = torch.randn(inn // 128, out, 2, dtype=torch.bfloat16, device="cuda") * 0.01
            n4 = copies(out * inn // 2)
            packed = [w4.clone() for _ in range(n4)]
        except Exception as e:  # an API change is reported, not fatal
            print(f"int4pack unavailable: {e}")
        for tok in [1, 2, 16, 128, 512]:
            x = torch.randn(tok, inn, dtype=torch.float16, device="cuda")
            ms = median_ms(lambda i: torch.nn.functional.linear(x, ws[i % n]))
            row("cublas_fp16", out, inn, tok, ms, wbytes + 2 * tok * (inn + out), 2 * out * inn * tok)
            if packed is not None:
                xb = x.to(torch.bfloat16)
                ms = median_ms(lambda i: torch._weight_int4pack_mm(xb, packed[i % len(packed)], 128, sz))
                row("torch_int4pack_mm", out, inn, tok, ms, out * inn // 2 + out * (inn // 128) * 4
                    + 2 * tok * (inn + out), 2 * out * inn * tok)
        del ws, packed


if __name__ == "__main__":
    main()
