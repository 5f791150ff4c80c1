/*
 * ek_threadpool.h - the runtime's thread pool, as the kernels see it: a grid of tiles.
 *
 * A kernel never starts threads.  It cuts its work into independent tiles (a GEMM into
 * M x N blocks, a depthwise conv into channel planes, an elementwise op into chunks) and
 * hands the grid to
 *
 *     ek_parallelize(threads, ntiles, tile_fn, ctx)
 *
 * which calls tile_fn(ctx, t, worker) once for every t in [0, ntiles) and returns when all
 * have run.  `worker` in [0, threads) names the thread running the tile, for per-thread
 * scratch (two tiles running at the same time never share a worker number).  Tiles are
 * taken one at a time from a shared counter, so a thread slowed down (by another process
 * on its core, or a costlier tile) takes fewer of them.  A tile function may call
 * ek_parallelize itself: the inner grid then runs on the calling thread.
 *
 * The pool (EK_THREADPOOL_IMPL below) belongs to the calling thread: each thread that
 * calls ek_parallelize with threads > 1 gets its own persistent team of threads - 1
 * workers, created on first use, grown on demand and joined when that thread exits; so
 * several Python threads running sessions at once never wait for each other.  The caller
 * runs tiles too.  Between two grids the workers spin for EK_POOL_SPIN_US microseconds
 * (a layer of a network follows the previous one within a few) and then sleep on a
 * condition variable, leaving their core to whoever needs it.
 *
 * One pool serves the process: the kernel extension (engine._kernels._lib) defines
 * EK_THREADPOOL_IMPL, compiles it and wires its entry point in at import
 * (ek_parallel_set_impl).  Until then, without pthreads, or with threads <= 1,
 * ek_parallelize runs the tiles in order on the calling thread.  A standalone C program
 * (tests/c/neon_check.c) defines EK_THREADPOOL_IMPL itself.
 */
#ifndef EK_THREADPOOL_H
#define EK_THREADPOOL_H

#include <stddef.h>

/* One tile of a grid: ctx is the kernel's argument block, t the tile, worker the thread. */
typedef void (*ek_tile_fn)(void *ctx, ptrdiff_t t, int worker);
typedef void (*ek_parallelize_fn)(int threads, ptrdiff_t ntiles, ek_tile_fn fn, void *ctx);

/* The process's pool entry point in this translation unit (NULL: run tiles in order). */
static ek_parallelize_fn ek_parallel_impl = NULL;

static void ek_parallel_set_impl(ek_parallelize_fn impl) { ek_parallel_impl = impl; }

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define EK_THREAD_LOCAL _Thread_local
#else
#define EK_THREAD_LOCAL __thread
#endif

/* The most threads the calling thread's calls may use (0: as many as asked).  The runtime
   lowers it for a whole run when fewer threads measure faster, e.g. while another process
   holds a core (engine/runtime/threads.py); kernel entries then tile for the threads they
   get (ek_bind.h), with the same results. */
static EK_THREAD_LOCAL int ek_parallel_cap = 0;

static inline int ek_parallel_set_cap(int cap)
{
    const int old = ek_parallel_cap;
    ek_parallel_cap = cap > 0 ? cap : 0;
    return old;
}

/* The threads a call asking for `threads` gets on this thread: at most the cap. */
static inline int ek_parallel_threads(int threads)
{
    return ek_parallel_cap > 0 && threads > ek_parallel_cap ? ek_parallel_cap : threads;
}

/* Run fn(ctx, t, worker) for t in [0, ntiles) on up to `threads` threads (see above). */
static inline void ek_parallelize(int threads, ptrdiff_t ntiles, ek_tile_fn fn, void *ctx)
{
    ptrdiff_t t;
    threads = ek_parallel_threads(threads);
    if (threads > 1 && ntiles > 1 && ek_parallel_impl != NULL) {
        ek_parallel_impl(threads, ntiles, fn, ctx);
        return;
    }
    for (t = 0; t < ntiles; t++) fn(ctx, t, 0);
}

/* ------------------------------------------------------------------ the pool -- */
#ifdef EK_THREADPOOL_IMPL

#if !defined(_WIN32) && (defined(__GNUC__) || defined(__clang__))
#define EK_POOL_PTHREADS 1
#else
#define EK_POOL_PTHREADS 0
#endif

/* Largest team (the Python layer refuses more threads than engine.limits.MAX_THREADS). */
#define EK_POOL_MAX_THREADS 1024

#if EK_POOL_PTHREADS
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Microseconds an idle worker (and a caller waiting for its workers) spins before it
   sleeps (yields).  Long enough to bridge the gap between two layers, short enough that
   between two runs a core is handed back.  ENGINE_POOL_SPIN_US overrides it. */
#ifndef EK_POOL_SPIN_US
#define EK_POOL_SPIN_US 200
#endif

#if defined(__x86_64__) || defined(__i386__)
#define EK_POOL_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define EK_POOL_PAUSE() __asm__ __volatile__("yield")
#else
#define EK_POOL_PAUSE() ((void)0)
#endif

#define EK_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define EK_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define EK_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define EK_FETCH_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)

typedef struct ek_pool {
    /* the open grid: valid while `state` is (generation << 1) | 1 */
    ek_tile_fn fn;
    void *ctx;
    ptrdiff_t ntiles;
    int use;                    /* threads taking part, caller included */
    ptrdiff_t next;             /* next tile to hand out */
    int next_worker;            /* next worker number to hand out (the caller is 0) */
    unsigned long state;        /* (generation << 1) | open */
    int active;                 /* workers inside the current grid */
    int sleepers;               /* workers blocked on `wake` */
    int stop;
    int nworkers;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
} ek_pool;

static long ek_pool_spin_ns = (long)EK_POOL_SPIN_US * 1000;
static pthread_key_t ek_pool_key;
static pthread_once_t ek_pool_once = PTHREAD_ONCE_INIT;
static __thread ek_pool *ek_pool_mine = NULL;  /* the pool this thread owns */
static __thread int ek_pool_depth = 0;          /* > 0 inside a tile (or a worker) */

static long long ek_pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Take tiles of the open grid until none is left. */
static void ek_pool_work(ek_pool *p, int worker)
{
    const ptrdiff_t n = p->ntiles;
    for (;;) {
        const ptrdiff_t t = EK_FETCH_ADD(&p->next, (ptrdiff_t)1);
        if (t >= n) break;
        p->fn(p->ctx, t, worker);
    }
}

static void *ek_pool_worker_main(void *arg)
{
    ek_pool *p = (ek_pool *)arg;
    unsigned long seen = EK_LOAD(&p->state) >> 1;
    ek_pool_depth = 1;          /* a tile that parallelizes runs its grid in place */
    for (;;) {
        unsigned long s = EK_LOAD(&p->state);
        if ((s >> 1) == seen || !(s & 1)) {
            /* nothing new: spin, then sleep */
            const long long until = ek_pool_now_ns() + ek_pool_spin_ns;
            int spins = 0;
            while (((s = EK_LOAD(&p->state)) >> 1) == seen || !(s & 1)) {
                if (EK_LOAD(&p->stop)) return NULL;
                EK_POOL_PAUSE();
                if (++spins < 64) continue;
                spins = 0;
                if (ek_pool_now_ns() < until) continue;
                pthread_mutex_lock(&p->mu);
                EK_ADD(&p->sleepers, 1);
                while ((((s = EK_LOAD(&p->state)) >> 1) == seen || !(s & 1)) &&
                       !EK_LOAD(&p->stop))
                    pthread_cond_wait(&p->wake, &p->mu);
                EK_ADD(&p->sleepers, -1);
                pthread_mutex_unlock(&p->mu);
                break;
            }
            if (EK_LOAD(&p->stop)) return NULL;
            continue;
        }
        seen = s >> 1;
        /* join grid `seen` unless it closed meanwhile (the caller then waits for
           `active` to drop back before it returns or opens another grid) */
        EK_ADD(&p->active, 1);
        if (EK_LOAD(&p->state) == s) {
            const int w = EK_FETCH_ADD(&p->next_worker, 1);
            if (w < p->use) ek_pool_work(p, w);
        }
        EK_ADD(&p->active, -1);
    }
}

static void ek_pool_destroy(ek_pool *p)
{
    int i;
    if (p == NULL) return;
    pthread_mutex_lock(&p->mu);
    EK_STORE(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->nworkers; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

static void ek_pool_key_destroy(void *p) { ek_pool_destroy((ek_pool *)p); }

/* In a forked child the workers do not exist: the pool of the thread that forked is
   abandoned (not freed: its mutex may be held by a thread that no longer exists), and a
   new one is made on first use. */
static void ek_pool_atfork_child(void)
{
    ek_pool_mine = NULL;
    pthread_setspecific(ek_pool_key, NULL);
}

static void ek_pool_init_once(void)
{
    const char *env = getenv("ENGINE_POOL_SPIN_US");
    if (env != NULL && *env) {
        char *end = NULL;
        const long v = strtol(env, &end, 10);
        if (end != env && v >= 0 && v <= 1000000) ek_pool_spin_ns = v * 1000;
    }
    pthread_key_create(&ek_pool_key, ek_pool_key_destroy);
    pthread_atfork(NULL, NULL, ek_pool_atfork_child);
}

/* This thread's pool with at least `workers` workers; NULL when threads cannot be made
   (the caller then runs the grid itself). */
static ek_pool *ek_pool_get(int workers)
{
    ek_pool *p = ek_pool_mine;
    pthread_t *grown;
    pthread_once(&ek_pool_once, ek_pool_init_once);
    if (p == NULL) {
        p = (ek_pool *)calloc(1, sizeof(ek_pool));
        if (p == NULL) return NULL;
        if (pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
        if (pthread_cond_init(&p->wake, NULL) != 0) {
            pthread_mutex_destroy(&p->mu);
            free(p);
            return NULL;
        }
        ek_pool_mine = p;
        pthread_setspecific(ek_pool_key, p);
    }
    if (p->nworkers >= workers) return p;
    grown = (pthread_t *)realloc(p->threads, (size_t)workers * sizeof(pthread_t));
    if (grown == NULL) return p->nworkers > 0 ? p : NULL;
    p->threads = grown;
    while (p->nworkers < workers) {
        if (pthread_create(&p->threads[p->nworkers], NULL, ek_pool_worker_main, p) != 0)
            break;
        p->nworkers++;
    }
    return p->nworkers > 0 ? p : NULL;
}

static void ek_pool_parallelize(int threads, ptrdiff_t ntiles, ek_tile_fn fn, void *ctx)
{
    ek_pool *p;
    unsigned long gen;
    ptrdiff_t t;
    int use = threads;
    if (use > EK_POOL_MAX_THREADS) use = EK_POOL_MAX_THREADS;
    if ((ptrdiff_t)use > ntiles) use = (int)ntiles;
    p = (use > 1 && ek_pool_depth == 0) ? ek_pool_get(use - 1) : NULL;
    if (p == NULL) {
        /* nested, single-threaded or no threads to be had: in order, here */
        ek_pool_depth++;
        for (t = 0; t < ntiles; t++) fn(ctx, t, 0);
        ek_pool_depth--;
        return;
    }
    if (use > p->nworkers + 1) use = p->nworkers + 1;
    /* publish the grid, then open it */
    p->fn = fn;
    p->ctx = ctx;
    p->ntiles = ntiles;
    p->use = use;
    EK_STORE(&p->next, (ptrdiff_t)0);
    EK_STORE(&p->next_worker, 1);
    gen = (EK_LOAD(&p->state) >> 1) + 1;
    EK_STORE(&p->state, (gen << 1) | 1UL);
    if (EK_LOAD(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    ek_pool_depth++;
    ek_pool_work(p, 0);
    ek_pool_depth--;
    /* close it: a worker arriving from now on backs off; wait for those inside */
    EK_STORE(&p->state, gen << 1);
    if (EK_LOAD(&p->active) > 0) {
        const long long until = ek_pool_now_ns() + ek_pool_spin_ns;
        int spins = 0;
        while (EK_LOAD(&p->active) > 0) {
            EK_POOL_PAUSE();
            if (++spins < 64) continue;
            spins = 0;
            if (ek_pool_now_ns() >= until) sched_yield();
        }
    }
}

#elif defined(_OPENMP)
/* No pthreads (MSVC): an OpenMP team per grid, tiles from the same shared counter. */
#include <omp.h>
static void ek_pool_parallelize(int threads, ptrdiff_t ntiles, ek_tile_fn fn, void *ctx)
{
    volatile long long next = 0;
    int use = threads;
    if ((ptrdiff_t)use > ntiles) use = (int)ntiles;
#pragma omp parallel num_threads(use)
    {
        const int w = omp_get_thread_num();
        for (;;) {
            long long t;
#pragma omp atomic capture
            t = next++;
            if (t >= ntiles) break;
            fn(ctx, (ptrdiff_t)t, w);
        }
    }
}
#define EK_POOL_OPENMP 1
#endif

/* The entry point to hand to ek_parallel_set_impl (NULL: this build has no threads). */
static ek_parallelize_fn ek_threadpool_entry(void)
{
#if EK_POOL_PTHREADS || defined(EK_POOL_OPENMP)
    return ek_pool_parallelize;
#else
    return NULL;
#endif
}

#endif /* EK_THREADPOOL_IMPL */
#endif /* EK_THREADPOOL_H */
