#!/usr/bin/env python3
"""mix.c's loop with and without its loads and broadcasts, in ymm and in xmm
halves: writes each variant's C file to a temporary directory, compiles it
with gcc -mavx2 and runs it (cycles per unit assume 2.5 GHz; BENCHMARKS.md,
"Why AVX2 Q4_K decode stays near 7 GB/s")."""
import os, subprocess, tempfile

PROG = '''#include <stdio.h>
#include <time.h>
#include <stdlib.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){ size_t sz=16384; char*buf=aligned_alloc(64,sz); for(size_t i=0;i<sz;i++)buf[i]=i*7; int act[64]={1};
%s
}'''


def unit(reg, width, off, a, b, r1, r2, load):
    src = f"vmovdqu {off}(%0), %%{reg}{r1}\n" if load else f"vpxor %%{reg}13, %%{reg}13, %%{reg}{r1}\n"
    return src + (f"vpand %%{reg}{r1}, %%{reg}15, %%{reg}{r2}\n vpmaddubsw %%{reg}0, %%{reg}{r2}, %%{reg}{r2}\n"
                  f" vpsrlw $4, %%{reg}{r1}, %%{reg}{r1}\n vpand %%{reg}{r1}, %%{reg}15, %%{reg}{r1}\n"
                  f" vpmaddubsw %%{reg}14, %%{reg}{r1}, %%{reg}{r1}\n vpaddw %%{reg}{r2}, %%{reg}{a}, %%{reg}{a}\n"
                  f" vpaddw %%{reg}{r1}, %%{reg}{b}, %%{reg}{b}\n")


def body(reg, width, load, bcast):
    s, accs = "", [(3, 4), (7, 8), (9, 10), (11, 12)]
    for i in range(8):
        if i % 2 == 0 and bcast:
            s += f"vpbroadcastd {i * 4}(%1), %%{reg}0\n vpbroadcastd {i * 4 + 4}(%1), %%{reg}14\n"
        r1, r2 = (1, 2) if i % 2 == 0 else (5, 6)
        s += unit(reg, width, i * width, *accs[i % 4], r1, r2, load)
    return s


def test(reg, width, name, load, bcast):
    b = body(reg, width, load, bcast).replace("\n", '\\n"\n"')
    return (f'{{ long reps=(2L<<30)/sz; double t=now(); for(long r=0;r<reps;r++) for(char*p=buf;p<buf+sz;p+={8 * width}) '
            f'__asm__ volatile("{b}" :: "r"(p),"r"(act) : "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7",'
            f'"xmm8","xmm9","xmm10","xmm11","xmm12","xmm14","memory");\n'
            f' double dt=now()-t; printf("%-28s %.2f cycles per {width}-byte unit\\n", "{reg} {name}", '
            f'dt*2.5e9/(reps*(double)sz/{width})); }}\n')


tests = "".join(test(reg, width, name, load, bcast) for reg, width in (("ymm", 32), ("xmm", 16))
                for name, load, bcast in (("load+bcast", 1, 1), ("load, no bcast", 1, 0),
                                          ("no load, bcast", 0, 1), ("no load, no bcast", 0, 0)))
with tempfile.TemporaryDirectory() as d:
    c, exe = os.path.join(d, "variants.c"), os.path.join(d, "variants")
    with open(c, "w") as f:
        f.write(PROG % tests)
    subprocess.run(["gcc", "-O2", "-mavx2", "-o", exe, c], check=True)
    subprocess.run([exe], check=True)
