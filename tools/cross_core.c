/*
 * cross_core.c - what it costs one core to read data another core just wrote.
 *
 *     gcc -O3 -march=native -pthread -o /tmp/cross_core tools/cross_core.c && /tmp/cross_core
 *
 * Two threads pinned to CPUs 0 and 1 (or the two given on the command line).  It prints
 * the round trip of a cache line bounced between them, and the read bandwidth of a 1 MiB
 * block (an activation of a mid-sized layer) just written by the other core against the
 * same block just written by the reading core itself.  On a multi-threaded run every layer
 * whose split differs from the previous layer's reads part of its input this way, so the
 * ratio bounds what a second thread can gain on small layers (BENCHMARKS.md, Known gaps).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES (1 << 20)
#define ROUNDS 20
#define BOUNCES 200000

static volatile long flag __attribute__((aligned(64)));
static float *buf;
static int cpu_a = 0, cpu_b = 1;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    if (pthread_setaffinity_np(pthread_self(), sizeof(s), &s) != 0)
        fprintf(stderr, "cannot pin to CPU %d (running unpinned)\n", cpu);
}

/* 16 independent partial sums (one vector): bandwidth-bound, not add-latency-bound */
__attribute__((noinline)) static float sum(const float *b, size_t n)
{
    float p[16] = {0}, s = 0.0f;
    size_t i, j;
    for (i = 0; i + 16 <= n; i += 16)
        for (j = 0; j < 16; j++) p[j] += b[i + j];
    for (j = 0; j < 16; j++) s += p[j];
    return s;
}

__attribute__((noinline)) static void fill(float *b, size_t n, float v)
{
    size_t i;
    for (i = 0; i < n; i++) b[i] = v + (float)i;
}

static void *other(void *arg)
{
    long i;
    int r;
    (void)arg;
    pin(cpu_b);
    for (i = 0; i < BOUNCES; i++) {
        while (flag != 2 * i + 1) {}
        flag = 2 * i + 2;
    }
    for (r = 0; r < ROUNDS; r++) {
        while (flag != -(2 * r + 1)) {}
        fill(buf, BYTES / sizeof(float), (float)r);
        flag = -(2 * r + 2);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const size_t n = BYTES / sizeof(float);
    pthread_t t;
    double t0, remote = 0.0, local = 0.0, s = 0.0;
    long i;
    int r;
    if (argc == 3) {
        cpu_a = atoi(argv[1]);
        cpu_b = atoi(argv[2]);
    }
    buf = (float *)aligned_alloc(64, BYTES);
    if (buf == NULL) return 1;
    memset(buf, 0, BYTES);
    pin(cpu_a);
    flag = 0;
    if (pthread_create(&t, NULL, other, NULL) != 0) return 1;
    t0 = now();
    for (i = 0; i < BOUNCES; i++) {
        flag = 2 * i + 1;
        while (flag != 2 * i + 2) {}
    }
    printf("CPU %d <-> CPU %d: cache-line round trip %.0f ns\n", cpu_a, cpu_b,
           (now() - t0) / BOUNCES * 1e9);
    for (r = 0; r < ROUNDS; r++) {
        flag = -(2 * r + 1);
        while (flag != -(2 * r + 2)) {}
        t0 = now();
        s += sum(buf, n);                    /* written by the other core */
        remote += now() - t0;
        fill(buf, n, (float)r);
        t0 = now();
        s += sum(buf, n);                    /* written by this core */
        local += now() - t0;
    }
    pthread_join(t, NULL);
    printf("reading 1 MiB written by the other core: %.1f GB/s; by this core: %.1f GB/s "
           "(checksum %g)\n", ROUNDS * (double)BYTES / remote / 1e9,
           ROUNDS * (double)BYTES / local / 1e9, s);
    free(buf);
    return 0;
}
