/*
 * threadpool_check.c - include/engine/ek_threadpool.h without Python (tests/test_threadpool.py
 * builds and runs it, plain and, where the compiler has it, under ThreadSanitizer).
 *
 *     gcc -O2 -pthread -Iinclude tests/c/threadpool_check.c -o /tmp/tp && /tmp/tp
 *
 * Checks, each over many grids of random sizes and thread counts:
 *   exact        every tile runs exactly once, with a worker number < threads that no
 *                other tile running at the same moment has
 *   nested       a tile that parallelizes runs its inner grid completely (in place, on
 *                the thread of the tile, unless the outer grid was a single tile)
 *   callers      several threads, each with its own pool, parallelize at the same time
 *   sleep        grids separated by pauses longer than the spin time (workers asleep)
 *   fork         a forked child parallelizes (a new pool) and exits cleanly (skipped with
 *                THREADPOOL_NO_FORK set)
 *   exit         a thread that made a pool exits (its workers are joined)
 *
 * Exit status 0 when every check passed.
 */
#define EK_THREADPOOL_IMPL 1
#include "engine/ek_threadpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                          \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, "\n");                                                        \
            __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);                           \
        }                                                                                 \
    } while (0)

static unsigned rng(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

typedef struct {
    int *hits;              /* per tile */
    int *busy;              /* per worker number: tiles running now */
    int threads;
    ptrdiff_t ntiles;
    int inner;              /* > 0: each tile parallelizes a grid of this many tiles */
    int *inner_hits;
} grid;

typedef struct {
    int *hits;
    int in_place;           /* the outer grid had several tiles on several threads */
} inner_grid;

static void inner_tile(void *ctx, ptrdiff_t t, int worker)
{
    inner_grid *g = (inner_grid *)ctx;
    CHECK(!g->in_place || worker == 0, "nested grid tile ran on worker %d, not in place",
          worker);
    __atomic_add_fetch(&g->hits[t], 1, __ATOMIC_SEQ_CST);
}

static void tile(void *ctx, ptrdiff_t t, int worker)
{
    grid *g = (grid *)ctx;
    CHECK(worker >= 0 && worker < g->threads, "worker %d outside [0, %d)", worker, g->threads);
    if (worker < 0 || worker >= g->threads) return;
    CHECK(__atomic_add_fetch(&g->busy[worker], 1, __ATOMIC_SEQ_CST) == 1,
          "worker number %d used by two tiles at once", worker);
    __atomic_add_fetch(&g->hits[t], 1, __ATOMIC_SEQ_CST);
    if (g->inner > 0) {
        inner_grid ig;
        ig.hits = g->inner_hits + t * g->inner;
        ig.in_place = g->threads > 1 && g->ntiles > 1;
        ek_parallelize(g->threads, g->inner, inner_tile, &ig);
    }
    if ((t & 7) == 0) {     /* some tiles take longer */
        volatile int spin = 0;
        while (spin < 2000) spin++;
    }
    __atomic_add_fetch(&g->busy[worker], -1, __ATOMIC_SEQ_CST);
}

static void run_grid(int threads, ptrdiff_t ntiles, int inner)
{
    grid g;
    ptrdiff_t t;
    memset(&g, 0, sizeof(g));
    g.hits = (int *)calloc((size_t)ntiles + 1, sizeof(int));
    g.busy = (int *)calloc((size_t)threads, sizeof(int));
    g.inner_hits = inner ? (int *)calloc((size_t)(ntiles * inner) + 1, sizeof(int)) : NULL;
    g.threads = threads;
    g.ntiles = ntiles;
    g.inner = inner;
    ek_parallelize(threads, ntiles, tile, &g);
    for (t = 0; t < ntiles; t++)
        CHECK(g.hits[t] == 1, "tile %td of %td ran %d times (threads %d)", t, ntiles,
              g.hits[t], threads);
    for (t = 0; t < ntiles * inner; t++)
        CHECK(g.inner_hits[t] == 1, "nested tile %td ran %d times", t, g.inner_hits[t]);
    free(g.hits);
    free(g.busy);
    free(g.inner_hits);
}

static void check_exact(unsigned seed, int grids)
{
    int i;
    for (i = 0; i < grids; i++) {
        const int threads = 1 + (int)(rng(&seed) % 6);
        const ptrdiff_t ntiles = (ptrdiff_t)(rng(&seed) % 300);
        run_grid(threads, ntiles, 0);
    }
}

static void check_nested(void)
{
    int i;
    for (i = 0; i < 200; i++) run_grid(1 + i % 4, 1 + i % 37, 1 + i % 5);
}

static void *caller_main(void *arg)
{
    check_exact((unsigned)(size_t)arg, 2000);
    return NULL;
}

static void check_callers(void)
{
    pthread_t th[4];
    int i;
    for (i = 0; i < 4; i++) pthread_create(&th[i], NULL, caller_main, (void *)(size_t)(i + 7));
    for (i = 0; i < 4; i++) pthread_join(th[i], NULL);
}

static void check_sleep(void)
{
    int i;
    struct timespec ts = {0, 3 * 1000 * 1000};   /* 3 ms: above the spin time */
    for (i = 0; i < 20; i++) {
        run_grid(3, 64, 0);
        nanosleep(&ts, NULL);
    }
}

static void check_fork(void)
{
    pid_t pid;
    int status = 0;
    if (getenv("THREADPOOL_NO_FORK")) return;   /* ThreadSanitizer cannot follow it */
    run_grid(3, 100, 0);            /* the parent has a pool */
    pid = fork();
    if (pid == 0) {
        check_exact(99, 300);
        _exit(failures ? 1 : 0);
    }
    CHECK(pid > 0, "fork failed");
    if (pid <= 0) return;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child failed (status %d)",
          status);
    run_grid(3, 100, 0);            /* and the parent's pool still works */
}

static void check_exit(void)
{
    int i;
    for (i = 0; i < 20; i++) {      /* 20 threads, each makes a pool of 3 workers and exits */
        pthread_t th;
        pthread_create(&th, NULL, caller_main, (void *)(size_t)(100 + i));
        pthread_join(th, NULL);
    }
}

int main(void)
{
    ek_parallel_set_impl(ek_threadpool_entry());
    CHECK(ek_parallel_impl != NULL, "this build has no thread pool");
    check_exact(1, 5000);
    check_nested();
    check_callers();
    check_sleep();
    check_fork();
    check_exit();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("threadpool: all checks passed\n");
    return 0;
}
