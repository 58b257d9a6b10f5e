// AVX2 packed Q4_K decode's per-32-byte instruction mix (one load, vpand,
// vpsrlw + vpand, two vpmaddubsw, two vpaddw, half a vpbroadcastd), chained as
// the kernel chains it, over a buffer of argv[1] bytes (L1-sized: the
// instruction bound; far larger: from DRAM). Cycles assume 2.5 GHz (BENCHMARKS.md,
// "Why AVX2 Q4_K decode stays near 7 GB/s"). x86-64 with AVX2 only.
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define UNIT(off, A, B) \
 "vmovdqu " #off "(%0), %%ymm1\n vpand %%ymm1, %%ymm15, %%ymm2\n vpmaddubsw %%ymm0, %%ymm2, %%ymm2\n vpsrlw $4, %%ymm1, %%ymm1\n vpand %%ymm1, %%ymm15, %%ymm1\n vpmaddubsw %%ymm14, %%ymm1, %%ymm1\n vpaddw %%ymm2, %%ymm" #A ", %%ymm" #A "\n vpaddw %%ymm1, %%ymm" #B ", %%ymm" #B "\n"
#define UNIT2(off, A, B) \
 "vmovdqu " #off "(%0), %%ymm5\n vpand %%ymm5, %%ymm15, %%ymm6\n vpmaddubsw %%ymm0, %%ymm6, %%ymm6\n vpsrlw $4, %%ymm5, %%ymm5\n vpand %%ymm5, %%ymm15, %%ymm5\n vpmaddubsw %%ymm14, %%ymm5, %%ymm5\n vpaddw %%ymm6, %%ymm" #A ", %%ymm" #A "\n vpaddw %%ymm5, %%ymm" #B ", %%ymm" #B "\n"
int main(int argc,char**argv){
  size_t sz = argc>1 ? atol(argv[1]) : 16384;  // bytes streamed per pass
  char *buf = aligned_alloc(64, sz + 4096); for (size_t i=0;i<sz+4096;i++) buf[i]=i*7;
  int act[64]; for(int i=0;i<64;i++) act[i]=i*12345;
  long reps = (4L<<30)/sz; double t=now();
  for (long r=0;r<reps;r++) for (char *p=buf; p<buf+sz; p+=256) {
    __asm__ volatile(
      "vpbroadcastd (%1), %%ymm0\n vpbroadcastd 4(%1), %%ymm14\n"
      UNIT(0,3,4) UNIT2(32,7,8)
      "vpbroadcastd 8(%1), %%ymm0\n vpbroadcastd 12(%1), %%ymm14\n"
      UNIT(64,9,10) UNIT2(96,11,12)
      "vpbroadcastd 16(%1), %%ymm0\n vpbroadcastd 20(%1), %%ymm14\n"
      UNIT(128,3,4) UNIT2(160,7,8)
      "vpbroadcastd 24(%1), %%ymm0\n vpbroadcastd 28(%1), %%ymm14\n"
      UNIT(192,9,10) UNIT2(224,11,12)
      :: "r"(p), "r"(act) : "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm14","memory");
  }
  double dt=now()-t; double units = (double)reps*sz/32;
  printf("%zu B: %.2f cycles per 32-byte unit (2.5 GHz) = %.0f cycles per 2304-B tile, %.1f GB/s\n", sz, dt*2.5e9/units, dt*2.5e9/units*64, reps*(double)sz/dt/1e9);
}
