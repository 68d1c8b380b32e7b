// The machine's fp32 FMA peak with AVX2: 12 independent 8-wide FMA chains per thread (enough to
// cover two FMA pipes of 4-cycle latency), one thread per core. Not part of `cargo test`.
//
//   gcc -O2 -mavx2 -mfma -pthread bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak 2
//
// Each thread runs about 2 s; check the loop kept its 12 accumulators in registers with
// `objdump -d /tmp/fma_peak | grep -c vfmadd`.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <time.h>
#define ITERS 6000000000L
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void* run(void* out){
  __m256 a[12]; __m256 m=_mm256_set1_ps(0.999999f), c=_mm256_set1_ps(1e-7f);
  for(int i=0;i<12;i++) a[i]=_mm256_set1_ps((float)i);
  for(long n=0;n<ITERS/12;n++){
    #pragma GCC unroll 12
    for(int i=0;i<12;i++) a[i]=_mm256_fmadd_ps(a[i],m,c);
  }
  __m256 s=a[0]; for(int i=1;i<12;i++) s=_mm256_add_ps(s,a[i]);
  float f[8]; _mm256_storeu_ps(f,s); *(float*)out=f[0]; return 0;  // keeps the chains live
}
int main(int argc,char**argv){
  int th=argc>1?atoi(argv[1]):2; pthread_t t[8]; float o[8];
  double t0=now(); for(int i=0;i<th;i++) pthread_create(&t[i],0,run,&o[i]);
  for(int i=0;i<th;i++) pthread_join(t[i],0); double dt=now()-t0;
  printf("%d threads: %.1f GFLOP/s (%g)\n", th, (double)th*(ITERS/12*12)*16/dt/1e9, o[0]);
}
