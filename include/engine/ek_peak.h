/*
 * ek_peak.h - the machine's measured floating-point peak, the yardstick of every GEMM
 * efficiency figure (`engine config --peak`, tools/bench.py gemm).
 *
 * Each thread runs EK_PEAK_CHAINS independent multiply-add chains on registers of the
 * variant's width (EK_VW floats) for about `seconds`: enough chains to cover the FMA
 * latency times the FMA units of any core here, nothing loaded or stored.  With FMA (the
 * AVX2 and AVX-512 variants, NEON) a multiply-add is one instruction; the baseline x86
 * variant (SSE2) issues a multiply and an add.  Either way it counts 2 flops.
 */
#include "ek_common.h"

#ifndef EK_PEAK_ISA
#define EK_PEAK_ISA

#include <time.h>

#define EK_PEAK_CHAINS 12         /* + 2 constants: 16 registers (AVX2, SSE2; NEON has 32) */
#define EK_PEAK_STEPS 4096        /* multiply-adds per chain between two clock reads */
#ifndef EK_PEAK_MAXT
#define EK_PEAK_MAXT 256          /* threads one measurement uses at most */
#endif

typedef struct {
    double seconds;
    int nthreads, started;
    double flops[EK_PEAK_MAXT], busy[EK_PEAK_MAXT];
} EK_FN(ek_peak_job);

static double EK_FN(ek_peak_now)(void)
{
    struct timespec ts;
#if defined(CLOCK_MONOTONIC)
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    timespec_get(&ts, TIME_UTC);
#endif
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if EK_VEXT
typedef float EK_FN(ek_peak_vec) __attribute__((vector_size(EK_VW * sizeof(float))));
#endif

static void EK_FN(ek_peak_tile)(void *ctx, ptrdiff_t t, int worker)
{
    EK_FN(ek_peak_job) *j = (EK_FN(ek_peak_job) *)ctx;
    double t0, t1, wait;
    long rounds = 0;
    int c, s;
    /* start together: a thread inside this tile cannot take another one, so every tile
       runs on its own thread at the same time (up to 1 s for the pool's workers to come) */
#if defined(__GNUC__) || defined(__clang__)
    __atomic_add_fetch(&j->started, 1, __ATOMIC_SEQ_CST);
    wait = EK_FN(ek_peak_now)();
    while (__atomic_load_n(&j->started, __ATOMIC_SEQ_CST) < j->nthreads &&
           EK_FN(ek_peak_now)() - wait < 1.0) {
    }
#else
    wait = 0.0;
    (void)wait;
#endif
    t0 = t1 = EK_FN(ek_peak_now)();
#if EK_VEXT
    EK_FN(ek_peak_vec) acc[EK_PEAK_CHAINS], m, a;
    for (c = 0; c < EK_VW; c++) {
        m[c] = 0.999999f;         /* the chains stay finite and normal for ever */
        a[c] = 1e-3f;
    }
#else
    float acc[EK_PEAK_CHAINS], m = 0.999999f, a = 1e-3f;
#endif
    for (c = 0; c < EK_PEAK_CHAINS; c++) acc[c] = a * (float)(c + 1);
    do {
        for (s = 0; s < EK_PEAK_STEPS; s++) {
#pragma GCC unroll 12
            for (c = 0; c < EK_PEAK_CHAINS; c++) acc[c] = acc[c] * m + a;
        }
        rounds++;
        t1 = EK_FN(ek_peak_now)();
    } while (t1 - t0 < j->seconds);
    /* keep the chains alive: their sum decides nothing but must be computed */
    for (c = 1; c < EK_PEAK_CHAINS; c++) acc[0] += acc[c];
#if EK_VEXT
    j->busy[t] = t1 - t0 + 0.0 * (double)acc[0][0];
    j->flops[t] = 2.0 * EK_VW * EK_PEAK_CHAINS * (double)EK_PEAK_STEPS * (double)rounds;
#else
    j->busy[t] = t1 - t0 + 0.0 * (double)acc[0];
    j->flops[t] = 2.0 * EK_PEAK_CHAINS * (double)EK_PEAK_STEPS * (double)rounds;
#endif
    (void)worker;
}

/* Floating-point operations per second of `nthreads` threads together (each runs its
   chains for about `seconds`, in [1e-3, 10]); nthreads in [1, EK_PEAK_MAXT]. */
EK_API double EK_FN(ek_fma_peak)(double seconds, int nthreads)
{
    EK_FN(ek_peak_job) j;
    double total = 0.0;
    int i;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > EK_PEAK_MAXT) nthreads = EK_PEAK_MAXT;
    memset(&j, 0, sizeof(j));
    j.nthreads = nthreads;
    j.seconds = seconds < 1e-3 ? 1e-3 : (seconds > 10.0 ? 10.0 : seconds);
    ek_parallelize(nthreads, nthreads, EK_FN(ek_peak_tile), &j);
    for (i = 0; i < nthreads; i++)
        if (j.busy[i] > 0.0) total += j.flops[i] / j.busy[i];
    return total;
}

#endif /* EK_PEAK_ISA */
