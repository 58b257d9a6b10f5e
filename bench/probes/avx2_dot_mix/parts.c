// The same instructions as mix.c with no dependences between them: what the
// ports allow (BENCHMARKS.md, "Why AVX2 Q4_K decode stays near 7 GB/s").
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define N 200000000L
#define T(name, body, clob...) { double t=now(); for(long i=0;i<N/8;i++) __asm__ volatile(body body body body body body body body ::: clob); double dt=now()-t; printf("%-40s %.2f cycles/iter\n", name, dt*2.5e9/N); }
int main(){
 T("2 maddubs", "vpmaddubsw %%ymm0,%%ymm1,%%ymm2\n vpmaddubsw %%ymm0,%%ymm1,%%ymm3\n", "xmm2","xmm3")
 T("2 maddubs + 2 and", "vpmaddubsw %%ymm0,%%ymm1,%%ymm2\n vpmaddubsw %%ymm0,%%ymm1,%%ymm3\n vpand %%ymm0,%%ymm1,%%ymm4\n vpand %%ymm0,%%ymm1,%%ymm5\n", "xmm2","xmm3","xmm4","xmm5")
 T("2 maddubs + 1 srl", "vpmaddubsw %%ymm0,%%ymm1,%%ymm2\n vpmaddubsw %%ymm0,%%ymm1,%%ymm3\n vpsrlw $4,%%ymm1,%%ymm4\n", "xmm2","xmm3","xmm4")
 T("2 maddubs + 2 add", "vpmaddubsw %%ymm0,%%ymm1,%%ymm2\n vpmaddubsw %%ymm0,%%ymm1,%%ymm3\n vpaddw %%ymm0,%%ymm1,%%ymm4\n vpaddw %%ymm0,%%ymm1,%%ymm5\n", "xmm2","xmm3","xmm4","xmm5")
 T("2 maddubs + 2 and + srl + 2 add", "vpmaddubsw %%ymm0,%%ymm1,%%ymm2\n vpmaddubsw %%ymm0,%%ymm1,%%ymm3\n vpand %%ymm0,%%ymm1,%%ymm4\n vpand %%ymm0,%%ymm1,%%ymm5\n vpsrlw $4,%%ymm1,%%ymm6\n vpaddw %%ymm0,%%ymm1,%%ymm7\n vpaddw %%ymm0,%%ymm1,%%ymm8\n", "xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8")
 T("1 load + 2 maddubs", "vmovdqu (%%rsp),%%ymm9\n vpmaddubsw %%ymm0,%%ymm1,%%ymm2\n vpmaddubsw %%ymm0,%%ymm1,%%ymm3\n", "xmm2","xmm3","xmm9")
 T("xmm: 4 maddubs + 4 and + 2 srl + 4 add", "vpmaddubsw %%xmm0,%%xmm1,%%xmm2\n vpmaddubsw %%xmm0,%%xmm1,%%xmm3\n vpmaddubsw %%xmm0,%%xmm1,%%xmm10\n vpmaddubsw %%xmm0,%%xmm1,%%xmm11\n vpand %%xmm0,%%xmm1,%%xmm4\n vpand %%xmm0,%%xmm1,%%xmm5\n vpand %%xmm0,%%xmm1,%%xmm12\n vpand %%xmm0,%%xmm1,%%xmm13\n vpsrlw $4,%%xmm1,%%xmm6\n vpsrlw $4,%%xmm1,%%xmm14\n vpaddw %%xmm0,%%xmm1,%%xmm7\n vpaddw %%xmm0,%%xmm1,%%xmm8\n vpaddw %%xmm0,%%xmm1,%%xmm9\n vpaddw %%xmm0,%%xmm1,%%xmm15\n", "xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15")
}
