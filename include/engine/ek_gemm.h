/*
 * ek_gemm.h - packed, cache-blocked single-precision GEMM with a fused epilogue.
 *
 *     C = act( [accumulate ? C : 0] + op(A) . op(B) + bias + R )
 *
 * Row-major; op(A) is M x K, op(B) is K x N, C is M x N with row stride ldc.
 *   op(A)(i, k) = trans_a ? A[k * lda + i] : A[i * lda + k]
 *   op(B)(k, j) = trans_b ? B[j * ldb + k] : B[k * ldb + j]
 * bias_mode: EK_BIAS_NONE, EK_BIAS_ROW (bias[i], M entries), EK_BIAS_COL (bias[j], N entries).
 * R (optional residual, row stride ldr) is added before the activation.
 *
 * Algorithm (Goto / BLIS): the register tile is MR x NR (AVX-512: 14 x 32, i.e. 28 zmm
 * accumulators fed by broadcast-A x packed-B FMAs; AVX2+FMA: 6 x 16; aarch64 NEON: 8 x 12,
 * 24 q-register accumulators fed by by-element FMAs (vfmaq_laneq_f32) from two A and three
 * B vectors; baseline: GNU vector extensions, 6 x 8 with FMA, 3 x 16 without).  A is
 * packed into MR-row micro-panels (k-major: panel[k][MR]), B into NR-column micro-panels
 * (panel[k][NR]), zero-padded.
 *
 *   - kc (K block) keeps an A micro-panel (MR x kc) in L1; nc (N block) keeps the packed
 *     B block (kc x nc) in half of L2.  Both come from the CPU's cache sizes (CPUID).
 *   - The M x N output is cut into mc x nc tasks, the tiles of one grid of the thread pool
 *     (ek_threadpool.h: taken one at a time), several per thread, so a thread slowed by a
 *     busy core does not hold the other one up.  Each task loops over the K blocks: pack its B block (or fill it
 *     through a callback: the convolution's im2col writes straight into packed panels),
 *     pack its A block unless A is pre-packed, then runs the micro-kernel over the tiles.
 *   - Weights are packed once at prepare time (ek_gemm_pack_a / ek_gemm_pack_b: full-K
 *     panels, valid for any blocking) and bound to the instruction set they were packed for.
 *   - The epilogue (previous C, bias, residual, activation) is applied in the micro-kernel's
 *     store of the last K block; tail tiles (m < MR rows, n < NR columns) use kernels
 *     specialised for their row count and masked stores, never a scratch tile.
 *   - Register tiles with few rows (m * vectors < 8) split K over several accumulator sets
 *     so that FMA latency, not throughput, is never the limit (GEMV-like M = 1); on
 *     AVX-512 a partial panel of <= 4 columns is computed by a kernel vectorised along the
 *     rows instead (N = 49 = 32 + 16 + 1 costs 3 vectors of work, not 4); on NEON one of
 *     1 or 2 columns (N = 49 = 4 * 12 + 1: 2 FMAs per k for the last column, not 8).
 *
 * Summation order of a C element depends only on K blocking and its row's tile height,
 * never on the thread count: results are identical for any nthreads.
 */
#include "ek_common.h"
#include "ek_cpu.h"

/* ------------------------------------------------------------------ ISA-independent -- */
#ifndef EK_GEMM_H
#define EK_GEMM_H

/*
 * A source of packed B blocks (instead of a B matrix): fill(ctx, k0, kc, j0, nc, dst) writes
 * op(B)[k0:k0+kc, j0:j0+nc] as ceil(nc / NR) panels of kc x NR floats (panel stride
 * kc * NR, columns past nc zero), NR being the micro-kernel width of the variant that
 * calls it (the callback is compiled per variant too).
 */
typedef void (*ek_fill_b_fn)(const void *ctx, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t j0,
                             ptrdiff_t nc, float *dst);

/* All arguments of one GEMM (ek_gemm_run). */
typedef struct {
    ptrdiff_t M, N, K;
    const float *A;          /* a_packed: buffer of ek_gemm_pack_a (same variant) */
    ptrdiff_t lda;
    int trans_a, a_packed;
    const float *B;          /* b_packed: buffer of ek_gemm_pack_b; NULL with fill_b */
    ptrdiff_t ldb;
    int trans_b, b_packed;
    ek_fill_b_fn fill_b;     /* optional B source (a_packed or not, b_packed == 0) */
    const void *fill_ctx;
    float *C;
    ptrdiff_t ldc;
    const float *bias;
    int bias_mode;
    const float *R;          /* residual added before the activation, or NULL */
    ptrdiff_t ldr;
    int accumulate, act;
    float p0, p1;
} ek_gemm_args;

/* How B reaches ek_gemm_run (sizes the workspace). */
enum ek_gemm_b_mode { EK_GEMM_B_MATRIX = 0, EK_GEMM_B_PACKED = 1, EK_GEMM_B_FILL = 2 };

/* Epilogue of one register tile (pointers already offset to the tile). */
typedef struct {
    const float *rb;         /* per-row bias (m entries) or NULL */
    const float *cb;         /* per-column bias (n entries) or NULL */
    const float *R;          /* residual tile or NULL */
    ptrdiff_t ldr;
    int act;
    float p0, p1;
} ek_gemm_epi;

/* Activations the vector epilogues apply in registers; the others run over the stored row. */
#define EK_ACT_IS_SIMPLE(a) ((a) <= EK_ACT_CLIP || (a) == EK_ACT_HARDSWISH || \
                             (a) == EK_ACT_HARDSIGMOID)

/* The end of a micro-kernel: its store (EK_UKR_STORE(last, act), defined by the kernel)
   once per activation, the activation a compile-time constant in each branch, so the
   unrolled store has no per-vector branch on it.  Uses the kernel's locals m, C, ldc, n,
   i, last, e; activations the vector store cannot apply run over the stored rows. */
#define EK_UKR_STORE_BY_ACT()                                                            \
    do {                                                                                 \
        if (!last) {                                                                     \
            EK_UKR_STORE(0, EK_ACT_NONE);                                                \
            break;                                                                       \
        }                                                                                \
        switch (e->act) {                                                                \
        case EK_ACT_NONE: EK_UKR_STORE(1, EK_ACT_NONE); break;                           \
        case EK_ACT_RELU: EK_UKR_STORE(1, EK_ACT_RELU); break;                           \
        case EK_ACT_RELU6: EK_UKR_STORE(1, EK_ACT_RELU6); break;                         \
        case EK_ACT_LEAKY_RELU: EK_UKR_STORE(1, EK_ACT_LEAKY_RELU); break;               \
        case EK_ACT_CLIP: EK_UKR_STORE(1, EK_ACT_CLIP); break;                           \
        case EK_ACT_HARDSWISH: EK_UKR_STORE(1, EK_ACT_HARDSWISH); break;                 \
        case EK_ACT_HARDSIGMOID: EK_UKR_STORE(1, EK_ACT_HARDSIGMOID); break;             \
        default:                                                                         \
            EK_UKR_STORE(1, EK_ACT_NONE);                                                \
            for (i = 0; i < m; i++)                                                      \
                EK_FN(ek_act_row)(C + i * ldc, C + i * ldc, n, e->act, e->p0, e->p1);    \
        }                                                                                \
    } while (0)

/* Cache sizes used by the blocking (bytes per core); detected once, overridable. */
static long ek_gemm_l1_bytes = 0, ek_gemm_l2_bytes = 0;

static void ek_gemm_set_caches(long l1d, long l2)
{
    ek_gemm_l1_bytes = l1d >= 4096 ? l1d : 32768;
    ek_gemm_l2_bytes = l2 >= 65536 ? l2 : 524288;
}

static void ek_gemm_init_caches(void)
{
    long l1, l2;
    ek_cpu_cache_sizes(&l1, &l2);
    ek_gemm_set_caches(l1, l2);
}

#endif /* EK_GEMM_H */

/* --------------------------------------------------------------- per ISA variant -- */
#ifndef EK_GEMM_ISA
#define EK_GEMM_ISA

/* ---------------------------------------------------------- scalar store -- */

/* Store an m x n tile t (row stride ts): C (+)= t, and on the last K block + bias, residual,
   activation.  The portable micro-kernel's store (and the reference for the others). */
EK_INLINE void EK_FN(ek_gemm_store)(const float *EK_RESTRICT t, ptrdiff_t ts, ptrdiff_t m,
                                    ptrdiff_t n, float *EK_RESTRICT C, ptrdiff_t ldc,
                                    int load_c, int last, const ek_gemm_epi *e)
{
    ptrdiff_t i, j;
    for (i = 0; i < m; i++) {
        float *c = C + i * ldc;
        const float *s = t + i * ts;
        if (load_c) {
            for (j = 0; j < n; j++) c[j] += s[j];
        } else {
            for (j = 0; j < n; j++) c[j] = s[j];
        }
        if (last) {
            if (e->rb) {
                const float bv = e->rb[i];
                for (j = 0; j < n; j++) c[j] += bv;
            }
            if (e->cb)
                for (j = 0; j < n; j++) c[j] += e->cb[j];
            if (e->R) {
                const float *r = e->R + i * e->ldr;
                for (j = 0; j < n; j++) c[j] += r[j];
            }
            if (n <= 4 && EK_ACT_IS_SIMPLE(e->act)) {   /* no call per row of a narrow tile */
                for (j = 0; j < n; j++) c[j] = EK_FN(ek_act1)(c[j], e->act, e->p0, e->p1);
            } else {
                EK_FN(ek_act_inplace)(c, n, e->act, e->p0, e->p1);
            }
        }
    }
}

/* Upper bounds of the cache blocks (the plan derives the actual ones from the caches). */
#ifndef EK_GEMM_KC
#define EK_GEMM_KC 384
#endif
#ifndef EK_GEMM_MC
#define EK_GEMM_MC (36 * EK_GEMM_MR)
#endif
#ifndef EK_GEMM_NC
#define EK_GEMM_NC 2048
#endif
/* Software prefetch distance (bytes) along the packed A panel: the weights stream from L3
   or memory on their first use in a layer, in runs the hardware prefetcher keeps losing
   (1344 = 24 k-steps of the 14-row panel; 16 to 64 k-steps measured alike, and 10 %
   faster than none on the 7x7 pointwise convs of MobileNetV2 in the network) */
#ifndef EK_GEMM_APF
#define EK_GEMM_APF 1344
#endif
/* M below which an unpacked operand pair takes the streaming small-M path. */
#ifndef EK_GEMM_SMALL_M
#define EK_GEMM_SMALL_M 4
#endif

/* ------------------------------------------------------ micro-kernels -- */
/* The register tile and micro-kernel of this instruction set: f32/gemm_<isa>.h. */
#include EK_ISA_FILE(f32, gemm)
#ifndef EK_GEMM_VEXT
#define EK_GEMM_VEXT 0
#endif


/* Micro-kernel geometry of this variant: out[0..4] = MR, NR, KC, MC, NC (upper bounds). */
EK_API void EK_FN(ek_gemm_blocking)(ptrdiff_t *out)
{
    out[0] = EK_GEMM_MR;
    out[1] = EK_GEMM_NR;
    out[2] = EK_GEMM_KC;
    out[3] = EK_GEMM_MC;
    out[4] = EK_GEMM_NC;
}

EK_API const char *EK_FN(ek_gemm_kind)(void) { return EK_GEMM_KIND; }

/* ---------------------------------------------------------------- packing -- */

/* Floats of a full pre-packed A (M x K) of this variant, 64-byte alignment slack included
   (-1 when that overflows or exceeds EK_SIZE_MAX; M, K >= 0). */
EK_API ptrdiff_t EK_FN(ek_gemm_pack_a_size)(ptrdiff_t M, ptrdiff_t K)
{
    if (M < 0 || M > EK_SIZE_MAX) return -1;
    return ek_szadd(ek_szmul((M + EK_GEMM_MR - 1) / EK_GEMM_MR * EK_GEMM_MR, K > 0 ? K : 1),
                    16);
}

/* Floats of a full pre-packed B (K x N) (-1 when too large, as above). */
EK_API ptrdiff_t EK_FN(ek_gemm_pack_b_size)(ptrdiff_t K, ptrdiff_t N)
{
    if (N < 0 || N > EK_SIZE_MAX) return -1;
    return ek_szadd(ek_szmul((N + EK_GEMM_NR - 1) / EK_GEMM_NR * EK_GEMM_NR, K > 0 ? K : 1),
                    16);
}

/* Rows per A panel (and register tile) for an M-row product: MR, or fewer where that
   splits M into the same number of panels more evenly (M = 16: 8 + 8, not 14 + 2 - a
   2-row tile runs its FMAs at a fraction of the rate of a full one).  Panels keep MR row
   slots (the micro-kernels' stride); the rows past mr in each are zero. */
EK_API ptrdiff_t EK_FN(ek_gemm_mr)(ptrdiff_t M)
{
    const ptrdiff_t MR = EK_GEMM_MR, np = (M + MR - 1) / MR;
    return M <= 0 ? MR : (M + np - 1) / np;
}

/* Pack op(A)[0:mc, 0:kc] (A already offset) into panels of mr rows (MR row slots) and panel
   stride ps (>= kc * MR): ap[p * ps + k * MR + i] = op(A)(p * mr + i, k) for i < mr, zero
   past mr and past mc. */
EK_API void EK_FN(ek_gemm_pack_a_blk)(ptrdiff_t mc, ptrdiff_t kc, const float *EK_RESTRICT A,
                                      ptrdiff_t lda, int trans_a, float *EK_RESTRICT ap,
                                      ptrdiff_t ps, ptrdiff_t mr)
{
    const ptrdiff_t MR = EK_GEMM_MR;
    ptrdiff_t r, i, k;
    for (r = 0; r < mc; r += mr) {
        const ptrdiff_t m = EK_MIN(mr, mc - r);
        float *dst = ap + (r / mr) * ps;
        if (trans_a) {
            for (k = 0; k < kc; k++) {
                const float *src = A + k * lda + r;
                for (i = 0; i < m; i++) dst[k * MR + i] = src[i];
                for (; i < MR; i++) dst[k * MR + i] = 0.0f;
            }
        } else if (m == MR) {
            /* MR source rows read in k order; written as k-major panels. */
            for (k = 0; k < kc; k++)
                for (i = 0; i < MR; i++) dst[k * MR + i] = A[(r + i) * lda + k];
        } else {
            for (k = 0; k < kc; k++) {
                for (i = 0; i < m; i++) dst[k * MR + i] = A[(r + i) * lda + k];
                for (; i < MR; i++) dst[k * MR + i] = 0.0f;
            }
        }
    }
}

/* Pack op(B)[0:kc, 0:nc] (B already offset) into NR-column panels of panel stride ps (>= kc *
   NR): bp[p * ps + k * NR + j] = op(B)(k, p * NR + j), columns past nc zero. */
EK_API void EK_FN(ek_gemm_pack_b_blk)(ptrdiff_t kc, ptrdiff_t nc, const float *EK_RESTRICT B,
                                      ptrdiff_t ldb, int trans_b, float *EK_RESTRICT bp,
                                      ptrdiff_t ps)
{
    const ptrdiff_t NR = EK_GEMM_NR;
    const ptrdiff_t nfull = nc / NR * NR;
    ptrdiff_t c, j, k;
    if (!trans_b) {
        /* Row by row: contiguous reads of B, NR-float contiguous writes. */
        for (k = 0; k < kc; k++) {
            const float *src = B + k * ldb;
            for (c = 0; c < nfull; c += NR)
                memcpy(bp + (c / NR) * ps + k * NR, src + c, NR * sizeof(float));
            if (nfull < nc) {
                float *dst = bp + (nfull / NR) * ps + k * NR;
                for (j = 0; j < nc - nfull; j++) dst[j] = src[nfull + j];
                for (; j < NR; j++) dst[j] = 0.0f;
            }
        }
    } else {
        for (c = 0; c < nc; c += NR) {
            const ptrdiff_t n = EK_MIN(NR, nc - c);
            float *dst = bp + (c / NR) * ps;
            if (n == NR) {
                /* 4 k at a time: NR rows of B read 4 floats each. */
                for (k = 0; k + 4 <= kc; k += 4)
                    for (j = 0; j < NR; j++) {
                        const float *src = B + (c + j) * ldb + k;
                        dst[k * NR + j] = src[0];
                        dst[(k + 1) * NR + j] = src[1];
                        dst[(k + 2) * NR + j] = src[2];
                        dst[(k + 3) * NR + j] = src[3];
                    }
                for (; k < kc; k++)
                    for (j = 0; j < NR; j++) dst[k * NR + j] = B[(c + j) * ldb + k];
            } else {
                for (k = 0; k < kc; k++) {
                    for (j = 0; j < n; j++) dst[k * NR + j] = B[(c + j) * ldb + k];
                    for (; j < NR; j++) dst[k * NR + j] = 0.0f;
                }
            }
        }
    }
}

/* Pre-pack the whole op(A) (M x K) into `buf` (ek_gemm_pack_a_size floats): full-K panels,
   usable by ek_gemm_run with a_packed for any blocking and thread count. */
EK_API void EK_FN(ek_gemm_pack_a)(ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t lda,
                                  int trans_a, float *buf)
{
    float *ap = ek_align64(buf);
    if (M <= 0 || K <= 0) return;
    EK_FN(ek_gemm_pack_a_blk)(M, K, A, lda, trans_a, ap, K * EK_GEMM_MR,
                              EK_FN(ek_gemm_mr)(M));
}

/* Pre-pack the whole op(B) (K x N) into `buf` (ek_gemm_pack_b_size floats). */
EK_API void EK_FN(ek_gemm_pack_b)(ptrdiff_t K, ptrdiff_t N, const float *B, ptrdiff_t ldb,
                                  int trans_b, float *buf)
{
    float *bp = ek_align64(buf);
    if (N <= 0 || K <= 0) return;
    EK_FN(ek_gemm_pack_b_blk)(K, N, B, ldb, trans_b, bp, K * EK_GEMM_NR);
}



/* ------------------------------------------------------------- driver -- */

/* Blocking of one call: derived from the sizes, the caches and the thread count. */
typedef struct {
    ptrdiff_t mc, nc, kc;   /* block sizes (mc multiple of mr, nc multiple of NR) */
    ptrdiff_t mr;           /* rows per A panel (ek_gemm_mr) */
    ptrdiff_t mt, nt;       /* number of blocks along M and N */
    int threads;            /* threads actually used */
    int small;              /* 1: unpacked small-M path, no workspace */
    int prefill;            /* 1: B packed / im2col-filled once into a shared buffer */
} EK_FN(ek_gemm_plan_t);

/* K block: an A micro-panel (MR x kc) in about half of L1, at most EK_GEMM_KC, balanced so
   that there is no thin last block.  Depends on M, K (and the cache), not on threads. */
EK_INLINE ptrdiff_t EK_FN(ek_gemm_kc)(ptrdiff_t M, ptrdiff_t K)
{
    ptrdiff_t kmax, nkb;
    if (ek_gemm_l1_bytes == 0) ek_gemm_init_caches();
    /* GEMV-like (a few rows): short K blocks, i.e. many concurrent streams through the
       packed B panels, measured fastest (memory-bound: 128 > 256 > K) */
    if (M <= 3) return K < 1 ? 1 : EK_MIN(K, 128);
    kmax = (ptrdiff_t)(ek_gemm_l1_bytes / 2) / (EK_GEMM_MR * (ptrdiff_t)sizeof(float));
    kmax = kmax / 16 * 16;
    if (kmax > EK_GEMM_KC) kmax = EK_GEMM_KC;
    if (kmax < 64) kmax = 64;
    if (K <= kmax) return K < 1 ? 1 : K;
    nkb = (K + kmax - 1) / kmax;
    return (K + nkb - 1) / nkb;
}

/* b_mode: EK_GEMM_B_MATRIX (packed per task), EK_GEMM_B_PACKED (pre-packed), EK_GEMM_B_FILL
   (packed per task by a callback). */
EK_API EK_FN(ek_gemm_plan_t) EK_FN(ek_gemm_plan)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                                 int a_packed, int b_mode, int nthreads)
{
    const int b_packed = b_mode == EK_GEMM_B_PACKED;
    EK_FN(ek_gemm_plan_t) p;
    const ptrdiff_t MR = EK_GEMM_MR, NR = EK_GEMM_NR;
    ptrdiff_t ncmax, target;
    memset(&p, 0, sizeof(p));
    p.threads = 1;
    if (M <= 0 || N <= 0) return p;
    if (nthreads < 1) nthreads = 1;
    if (K <= 0 || (M < EK_GEMM_SMALL_M && !a_packed && b_mode == EK_GEMM_B_MATRIX)) {
        p.small = 1;
        p.threads = ek_nthreads(nthreads, (N + 255) / 256);
        if (ek_mul_sat(ek_mul_sat(M, N), K > 0 ? K : 1) < 65536) p.threads = 1;
        return p;
    }
    p.kc = EK_FN(ek_gemm_kc)(M, K);
    /* packed B block in half of L2 */
    ncmax = (ptrdiff_t)(ek_gemm_l2_bytes / 2) / (p.kc * (ptrdiff_t)sizeof(float));
    ncmax = ncmax / NR * NR;
    if (ncmax > EK_GEMM_NC) ncmax = EK_GEMM_NC / NR * NR;
    if (ncmax < NR) ncmax = NR;
    p.nt = (N + ncmax - 1) / ncmax;
    p.mt = (M + EK_GEMM_MC - 1) / EK_GEMM_MC;
    if (nthreads > 1 && ek_mul_sat(ek_mul_sat(M, N), K) >= 262144) {
        /* Several tasks per thread for the dynamic schedule.  Splitting N costs a repack of
           A per task (none when A is pre-packed), splitting M a repack of B. */
        target = 4 * (ptrdiff_t)nthreads;
        while (p.mt * p.nt < target) {
            const ptrdiff_t ncols = (N + p.nt) / (p.nt + 1), nrows = (M + p.mt) / (p.mt + 1);
            const ptrdiff_t min_cols = a_packed || b_packed ? 2 * NR : 4 * NR;
            if (ncols >= min_cols && (ncols >= nrows || nrows < 4 * MR)) p.nt++;
            else if (nrows >= 2 * MR) p.mt++;
            else if (ncols >= NR) p.nt++;
            else if (nrows >= MR) p.mt++;
            else break;
        }
        p.threads = ek_nthreads(nthreads, p.mt * p.nt);
    }
    p.nc = ((N + p.nt - 1) / p.nt + NR - 1) / NR * NR;
    p.nt = (N + p.nc - 1) / p.nc;
    p.mr = EK_FN(ek_gemm_mr)(M);
    p.mc = ((M + p.mt - 1) / p.mt + p.mr - 1) / p.mr * p.mr;
    p.mt = (M + p.mc - 1) / p.mc;
    if (p.mt * p.nt < 2) p.threads = 1;
    /* Two or more M blocks would each im2col-fill the same B blocks: fill them once into
       a shared buffer (in parallel over the K blocks) when all of B takes <= 4 MB.
       ResNet-50 at 2 threads: layer4.0.conv2 (8 M blocks) 2.0 -> 1.5 ms, layer3.0.conv2
       (3 M blocks) 1.5 -> 1.2 ms, layer2.0.conv2 1.4 -> 1.3 ms.  Not for a plain B
       matrix: packing it is a cheap copy, and a block a task packs itself is hot in its
       own L2 (the shared buffer measured 10-30 % slower on ResNet-50's GEMMs at 2
       threads). */
    p.prefill = b_mode == EK_GEMM_B_FILL && p.mt >= 2 &&
                ek_mul_sat(K, (N + NR - 1) / NR * NR) <= ((ptrdiff_t)1 << 20);
    return p;
}

/* The workspace of a run on exactly `nthreads` threads (see ek_gemm_workspace). */
EK_INLINE ptrdiff_t EK_FN(ek_gemm_workspace_exact)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                                   int a_packed, int b_mode, int nthreads)
{
    EK_FN(ek_gemm_plan_t) p;
    const int b_packed = b_mode == EK_GEMM_B_PACKED;
    ptrdiff_t per;
    ptrdiff_t total;
    if (M < 0 || N < 0 || K < 0 || M > EK_SIZE_MAX || N > EK_SIZE_MAX || K > EK_SIZE_MAX)
        return -1;
    p = EK_FN(ek_gemm_plan)(M, N, K, a_packed, b_mode, nthreads);
    if (M <= 0 || N <= 0 || p.small) return 0;
    /* (mc, nc, kc are bounded by the blocking constants) */
    per = (a_packed ? 0 : EK_ROUND16(p.mc / p.mr * EK_GEMM_MR * p.kc)) +
          (b_packed || p.prefill ? 0 : EK_ROUND16(p.kc * p.nc));
    total = ek_szadd(ek_szmul(p.threads, per),
                     p.prefill ? ek_szround16(ek_szmul(K, (N + EK_GEMM_NR - 1) / EK_GEMM_NR *
                                                             EK_GEMM_NR))
                               : 0);
    return total <= 0 ? total : ek_szadd(total, 16);
}

/* Floats of workspace ek_gemm_run needs on nthreads threads or fewer (the runtime may cap
   a call's threads, ek_parallel_threads): 0 for the small-M and K == 0 paths; -1 when a
   size is negative or above EK_SIZE_MAX, or the workspace would be. */
EK_API ptrdiff_t EK_FN(ek_gemm_workspace)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int a_packed,
                                          int b_mode, int nthreads)
{
    ptrdiff_t most = 0;
    int t;
    if (nthreads > EK_NTHREADS_MAX) nthreads = EK_NTHREADS_MAX;
    for (t = 1; t <= EK_MAX(nthreads, 1); t++) {
        const ptrdiff_t need = EK_FN(ek_gemm_workspace_exact)(M, N, K, a_packed, b_mode, t);
        if (need < 0) return need;
        if (need > most) most = need;
    }
    return most;
}

/* Old interface: floats of workspace ek_sgemm needs. */
EK_API ptrdiff_t EK_FN(ek_sgemm_workspace)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int trans_b,
                                           int nthreads)
{
    (void)trans_b;
    return EK_FN(ek_gemm_workspace)(M, N, K, 0, EK_GEMM_B_MATRIX, nthreads);
}

/*
 * GEMV-like product with a row-major "transposed" B (a linear layer's weight W, N x K):
 * out[i][j] = sum_k X[i][k] W[j][k] for i < M (<= 3), j < n.  Four rows of W at a time
 * (four sequential streams, which memory-bound batch-1 FC layers need), each dotted with
 * the M rows of X in vector registers; horizontal sums at the end.
 */
#if defined(__GNUC__) && !defined(EK_NO_VECTOR_EXT)
typedef float EK_FN(ek_gv_vf) __attribute__((vector_size(EK_VW * 4)));
EK_INLINE EK_FN(ek_gv_vf) EK_FN(ek_gv_ld)(const float *p)
{
    EK_FN(ek_gv_vf) v;
    memcpy(&v, p, sizeof(v));
    return v;
}
EK_INLINE void EK_FN(ek_gemv_t_rows)(const int M_, const int R_, ptrdiff_t K,
                                     const float *EK_RESTRICT X, ptrdiff_t ldx,
                                     const float *EK_RESTRICT W, ptrdiff_t ldw, float *out,
                                     ptrdiff_t ldo)
{
    EK_FN(ek_gv_vf) acc[3][4];
    float s[3][4];
    ptrdiff_t k;
    int i, r, l;
    for (i = 0; i < M_; i++)
        for (r = 0; r < R_; r++) acc[i][r] = (EK_FN(ek_gv_vf)){0};
    for (k = 0; k + EK_VW <= K; k += EK_VW) {
        /* loads into plain locals: an array of vectors filled by memcpy is not kept in
           registers by gcc (it went through the stack, store-forwarding stalls) */
#if defined(__GNUC__)
        /* short rows (a few KB): the hardware prefetcher restarts on every new row, so the
           next group of R_ rows is requested into L2 while this one is summed (once per
           64-byte line) */
        if (((k * 4) & 63) == 0) {
            /* addresses computed as integers: past the last row they are only hints (a
               prefetch never faults), never pointers into memory we do not own */
            const uintptr_t next = (uintptr_t)(W + k) + (uintptr_t)(R_ * ldw) * 4u;
            int q;
            for (q = 0; q < R_; q++)
                __builtin_prefetch((const void *)(next + (uintptr_t)(q * ldw) * 4u), 0, 2);
        }
#endif
        const EK_FN(ek_gv_vf) w0 = EK_FN(ek_gv_ld)(W + k);
        const EK_FN(ek_gv_vf) w1 = R_ > 1 ? EK_FN(ek_gv_ld)(W + ldw + k) : w0;
        const EK_FN(ek_gv_vf) w2 = R_ > 2 ? EK_FN(ek_gv_ld)(W + 2 * ldw + k) : w0;
        const EK_FN(ek_gv_vf) w3 = R_ > 3 ? EK_FN(ek_gv_ld)(W + 3 * ldw + k) : w0;
        for (i = 0; i < M_; i++) {
            const EK_FN(ek_gv_vf) xv = EK_FN(ek_gv_ld)(X + i * ldx + k);
            acc[i][0] += xv * w0;
            if (R_ > 1) acc[i][1] += xv * w1;
            if (R_ > 2) acc[i][2] += xv * w2;
            if (R_ > 3) acc[i][3] += xv * w3;
        }
    }
    for (i = 0; i < M_; i++)
        for (r = 0; r < R_; r++) {
            float t = 0.0f;
            for (l = 0; l < EK_VW; l++) t += acc[i][r][l];
            s[i][r] = t;
        }
    for (; k < K; k++)
        for (i = 0; i < M_; i++)
            for (r = 0; r < R_; r++) s[i][r] += X[i * ldx + k] * W[r * ldw + k];
    for (i = 0; i < M_; i++)
        for (r = 0; r < R_; r++) out[i * ldo + r] = s[i][r];
}
#else
EK_INLINE void EK_FN(ek_gemv_t_rows)(const int M_, const int R_, ptrdiff_t K, const float *X,
                                     ptrdiff_t ldx, const float *W, ptrdiff_t ldw, float *out,
                                     ptrdiff_t ldo)
{
    int i, r;
    ptrdiff_t k;
    for (i = 0; i < M_; i++)
        for (r = 0; r < R_; r++) {
            float t = 0.0f;
            for (k = 0; k < K; k++) t += X[i * ldx + k] * W[r * ldw + k];
            out[i * ldo + r] = t;
        }
}
#endif

#define EK_GV_DEF(M_, R_)                                                                \
    static EK_NOINLINE void EK_FN(ek_gemv_t_##M_##_##R_)(                                \
        ptrdiff_t K, const float *X, ptrdiff_t ldx, const float *W, ptrdiff_t ldw,       \
        float *out, ptrdiff_t ldo)                                                       \
    {                                                                                    \
        EK_FN(ek_gemv_t_rows)(M_, R_, K, X, ldx, W, ldw, out, ldo);                      \
    }
EK_GV_DEF(1, 4) EK_GV_DEF(1, 1) EK_GV_DEF(2, 4) EK_GV_DEF(2, 1) EK_GV_DEF(3, 4) EK_GV_DEF(3, 1)
#undef EK_GV_DEF

/* out[i][j] (row stride ldo) for j < n: the rows W[0..n) */
EK_INLINE void EK_FN(ek_gemv_t_block)(ptrdiff_t M, ptrdiff_t n, ptrdiff_t K, const float *X,
                                      ptrdiff_t ldx, const float *W, ptrdiff_t ldw,
                                      float *out, ptrdiff_t ldo)
{
    ptrdiff_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *w = W + j * ldw;
        if (M == 1) EK_FN(ek_gemv_t_1_4)(K, X, ldx, w, ldw, out + j, ldo);
        else if (M == 2) EK_FN(ek_gemv_t_2_4)(K, X, ldx, w, ldw, out + j, ldo);
        else EK_FN(ek_gemv_t_3_4)(K, X, ldx, w, ldw, out + j, ldo);
    }
    for (; j < n; j++) {
        const float *w = W + j * ldw;
        if (M == 1) EK_FN(ek_gemv_t_1_1)(K, X, ldx, w, ldw, out + j, ldo);
        else if (M == 2) EK_FN(ek_gemv_t_2_1)(K, X, ldx, w, ldw, out + j, ldo);
        else EK_FN(ek_gemv_t_3_1)(K, X, ldx, w, ldw, out + j, ldo);
    }
}

/* C row segment = [C +] acc + bias + R, then the activation (the small path's store). */
EK_INLINE void EK_FN(ek_small_store)(const ek_gemm_args *g, ptrdiff_t i, ptrdiff_t j0,
                                     ptrdiff_t n, const float *acc)
{
    float *EK_RESTRICT c = g->C + i * g->ldc + j0;
    ptrdiff_t j;
    if (g->accumulate)
        for (j = 0; j < n; j++) c[j] += acc[j];
    else
        for (j = 0; j < n; j++) c[j] = acc[j];
    if (g->bias_mode == EK_BIAS_ROW) {
        const float bv = g->bias[i];
        for (j = 0; j < n; j++) c[j] += bv;
    } else if (g->bias_mode == EK_BIAS_COL) {
        for (j = 0; j < n; j++) c[j] += g->bias[j0 + j];
    }
    if (g->R) {
        const float *r = g->R + i * g->ldr + j0;
        for (j = 0; j < n; j++) c[j] += r[j];
    }
    EK_FN(ek_act_inplace)(c, n, g->act, g->p0, g->p1);
}

/* Column chunk t (EK_GEMM_SMALL_CH columns) of ek_gemm_small. */
#define EK_GEMM_SMALL_CH 256
static void EK_FN(ek_gemm_small_tile)(void *ctx, ptrdiff_t t, int worker)
{
    enum { CH = EK_GEMM_SMALL_CH };
    const ek_gemm_args *g = (const ek_gemm_args *)ctx;
    const ptrdiff_t M = g->M, N = g->N, K = g->K;
    const int gemv = K > 0 && g->trans_b && !g->trans_a && M <= 3;
    const ptrdiff_t j0 = t * CH, n = EK_MIN(CH, N - j0);
    const float *A = g->A, *B = g->B;
    const ptrdiff_t lda = g->lda, ldb = g->ldb;
    ptrdiff_t i, j, k;
    (void)worker;
    if (gemv) {
        float accm[3][CH];
        EK_FN(ek_gemv_t_block)(M, n, K, A, lda, B + j0 * ldb, ldb, &accm[0][0], CH);
        for (i = 0; i < M; i++) EK_FN(ek_small_store)(g, i, j0, n, accm[i]);
        return;
    }
    for (i = 0; i < M; i++) {
        float acc[CH];
        for (j = 0; j < n; j++) acc[j] = 0.0f;
        if (K > 0 && !g->trans_b) {
            for (k = 0; k < K; k++) {
                const float a = g->trans_a ? A[k * lda + i] : A[i * lda + k];
                const float *EK_RESTRICT b = B + k * ldb + j0;
                for (j = 0; j < n; j++) acc[j] += a * b[j];
            }
        } else if (K > 0) {
            for (j = 0; j < n; j++) {
                const float *EK_RESTRICT b = B + (j0 + j) * ldb;
                float s = 0.0f;
                for (k = 0; k < K; k++)
                    s += (g->trans_a ? A[k * lda + i] : A[i * lda + k]) * b[k];
                acc[j] = s;
            }
        }
        EK_FN(ek_small_store)(g, i, j0, n, acc);
    }
}

/* K == 0 (C = act([C] + bias + R)) and the unpacked streaming path for tiny M (< 4). */
EK_API void EK_FN(ek_gemm_small)(const ek_gemm_args *g, int threads)
{
    const ptrdiff_t nch = (g->N + EK_GEMM_SMALL_CH - 1) / EK_GEMM_SMALL_CH;
    ek_parallelize(threads, nch, EK_FN(ek_gemm_small_tile), (void *)g);
}

/*
 * The GEMM.  Preconditions (checked by the caller):
 *   M, N, K >= 0; unpacked A holds op(A) with leading dimension lda (>= K, or >= M when
 *   trans_a), unpacked B op(B) with ldb (>= N, or >= K when trans_b); a packed A / B is a
 *   buffer filled by ek_gemm_pack_a / ek_gemm_pack_b of this variant for the same M / N and
 *   K; C is M x N with ldc >= N and does not overlap A, B, bias, R or work; bias has M (ROW)
 *   or N (COL) entries when bias_mode != NONE; R (if not NULL) is M x N with ldr >= N;
 *   `work` has ek_gemm_workspace(M, N, K, a_packed, b_mode, nthreads) floats (NULL if 0),
 *   b_mode being how B is given (EK_GEMM_B_MATRIX / _PACKED / _FILL).
 * When accumulate == 0, C is write-only (its old contents, NaN included, are ignored).
 */
#if EK_GEMM_DIRECT_B
/*
 * One mc x nc x kc block with B read in place (unpacked, not transposed): 32-column strips
 * outermost, so each strip's kc rows are pulled into L1 once and reused by every row tile;
 * a last partial strip is packed (zero-padded) into bp.  Packing B pays when many row tiles
 * reuse it; with few (small M) copying it costs more than it saves.
 */
static void EK_FN(ek_gemm_direct_block)(const ek_gemm_args *g, ptrdiff_t mc, ptrdiff_t nc,
                                        ptrdiff_t kc, ptrdiff_t i0, ptrdiff_t j0, ptrdiff_t k0,
                                        const float *abase, ptrdiff_t aps, ptrdiff_t mr,
                                        float *bp, int load_c, int last,
                                        const float *row_bias, ek_gemm_epi *e)
{
    const ptrdiff_t NR = EK_GEMM_NR;
    const float *b_blk = g->B + k0 * g->ldb + j0;
    ptrdiff_t ir, jr;
    for (jr = 0; jr < nc; jr += NR) {
        const ptrdiff_t n = EK_MIN(NR, nc - jr);
        if (n < NR) EK_FN(ek_gemm_pack_b_blk)(kc, n, b_blk + jr, g->ldb, 0, bp, kc * NR);
        e->cb = (last && g->bias_mode == EK_BIAS_COL) ? g->bias + j0 + jr : NULL;
        for (ir = 0; ir < mc; ir += mr) {
            const ptrdiff_t m = EK_MIN(mr, mc - ir);
            const float *a = abase + (ir / mr) * aps;
            float *c = g->C + (i0 + ir) * g->ldc + j0 + jr;
            e->rb = (last && row_bias) ? row_bias + i0 + ir : NULL;
            e->R = (last && g->R) ? g->R + (i0 + ir) * g->ldr + j0 + jr : NULL;
            if (n == NR)
                EK_FN(ek_gemm_tile_direct)(m, kc, a, b_blk + jr, g->ldb, c, g->ldc, load_c,
                                           last, e);
            else
                EK_FN(ek_gemm_tile)(m, n, kc, a, bp, c, g->ldc, load_c, last, e);
        }
    }
}
#endif

/* One ek_gemm_run call, shared by its tile functions. */
typedef struct {
    const ek_gemm_args *g;
    EK_FN(ek_gemm_plan_t) p;
    const float *bias, *Apk, *Bpk;
    float *ws, *pre;
    ptrdiff_t a_sz, per, Np, nkb;
    int bias_mode, direct_b;
} EK_FN(ek_gemm_job);

/* Task t of the B prefill: K block t % nkb of N block t / nkb, packed (or im2col-filled)
   once into the shared buffer. */
static void EK_FN(ek_gemm_prefill_tile)(void *ctx, ptrdiff_t t, int worker)
{
    const EK_FN(ek_gemm_job) *job = (const EK_FN(ek_gemm_job) *)ctx;
    const ek_gemm_args *g = job->g;
    const EK_FN(ek_gemm_plan_t) p = job->p;
    const ptrdiff_t K = g->K, N = g->N, Np = job->Np, nkb = job->nkb;
    const ptrdiff_t k0 = (t % nkb) * p.kc, j0 = (t / nkb) * p.nc;
    const ptrdiff_t kc = EK_MIN(p.kc, K - k0), nc = EK_MIN(p.nc, N - j0);
    float *dst = job->pre + k0 * Np + (j0 / EK_GEMM_NR) * kc * EK_GEMM_NR;
    if (g->fill_b) {
        g->fill_b(g->fill_ctx, k0, kc, j0, nc, dst);
    } else {
        const float *b_blk = g->trans_b ? g->B + j0 * g->ldb + k0
                                        : g->B + k0 * g->ldb + j0;
        EK_FN(ek_gemm_pack_b_blk)(kc, nc, b_blk, g->ldb, g->trans_b, dst,
                                  kc * EK_GEMM_NR);
    }
    (void)worker;
}

/* Task t: the mc x nc block (t % mt, t / mt) of C over all of K (N-major: the M blocks of
   one N block run back to back and share its B). */
static void EK_FN(ek_gemm_block_tile)(void *ctx, ptrdiff_t t, int worker)
{
    const EK_FN(ek_gemm_job) *job = (const EK_FN(ek_gemm_job) *)ctx;
    const ek_gemm_args *g = job->g;
    const EK_FN(ek_gemm_plan_t) p = job->p;
    const ptrdiff_t M = g->M, N = g->N, K = g->K;
    const float *bias = job->bias;
    const int bias_mode = job->bias_mode;
    const ptrdiff_t MR = EK_GEMM_MR, NR = EK_GEMM_NR;
    const ptrdiff_t ib = t % p.mt, jb = t / p.mt;   /* N-major: M blocks share B */
    const ptrdiff_t i0 = ib * p.mc, j0 = jb * p.nc;
    const ptrdiff_t mc = EK_MIN(p.mc, M - i0), nc = EK_MIN(p.nc, N - j0);
    float *ap = job->ws ? job->ws + (ptrdiff_t)worker * job->per : NULL;
    float *bp = ap ? ap + job->a_sz : NULL;
    ek_gemm_epi e;
    ptrdiff_t k0, ir, jr;
    e.act = g->act;
    e.p0 = g->p0;
    e.p1 = g->p1;
    e.ldr = g->ldr;
    for (k0 = 0; k0 < K; k0 += p.kc) {
        const ptrdiff_t kc = EK_MIN(p.kc, K - k0);
        const int first = (k0 == 0), last = (k0 + kc >= K);
        const int load_c = !first || g->accumulate;
        const float *abase, *bbase;
        ptrdiff_t aps, bps;
        if (g->a_packed) {
            abase = job->Apk + (i0 / p.mr) * K * MR + k0 * MR;
            aps = K * MR;
        } else {
            const float *a_blk = g->trans_a ? g->A + k0 * g->lda + i0
                                            : g->A + i0 * g->lda + k0;
            EK_FN(ek_gemm_pack_a_blk)(mc, kc, a_blk, g->lda, g->trans_a, ap, kc * MR,
                                      p.mr);
            abase = ap;
            aps = kc * MR;
        }
#if EK_GEMM_DIRECT_B
        if (job->direct_b) {
            EK_FN(ek_gemm_direct_block)(g, mc, nc, kc, i0, j0, k0, abase, aps, p.mr, bp,
                                        load_c, last,
                                        bias_mode == EK_BIAS_ROW ? bias : NULL, &e);
            continue;
        }
#endif
        if (g->b_packed) {
            bbase = job->Bpk + (j0 / NR) * K * NR + k0 * NR;
            bps = K * NR;
        } else if (p.prefill) {
            bbase = job->pre + k0 * job->Np + (j0 / NR) * kc * NR;
            bps = kc * NR;
        } else if (g->fill_b) {
            g->fill_b(g->fill_ctx, k0, kc, j0, nc, bp);
            bbase = bp;
            bps = kc * NR;
        } else {
            const float *b_blk = g->trans_b ? g->B + j0 * g->ldb + k0
                                            : g->B + k0 * g->ldb + j0;
            EK_FN(ek_gemm_pack_b_blk)(kc, nc, b_blk, g->ldb, g->trans_b, bp, kc * NR);
            bbase = bp;
            bps = kc * NR;
        }
        for (ir = 0; ir < mc; ir += p.mr) {
            const ptrdiff_t m = EK_MIN(p.mr, mc - ir);
            const float *a = abase + (ir / p.mr) * aps;
            e.rb = (last && bias_mode == EK_BIAS_ROW) ? bias + i0 + ir : NULL;
            for (jr = 0; jr < nc; jr += NR) {
                const ptrdiff_t n = EK_MIN(NR, nc - jr);
                float *c = g->C + (i0 + ir) * g->ldc + j0 + jr;
                e.cb = (last && bias_mode == EK_BIAS_COL) ? bias + j0 + jr : NULL;
                e.R = (last && g->R) ? g->R + (i0 + ir) * g->ldr + j0 + jr : NULL;
                EK_FN(ek_gemm_tile)(m, n, kc, a, bbase + (jr / NR) * bps, c, g->ldc, load_c,
                                    last, &e);
            }
        }
    }
}

EK_API void EK_FN(ek_gemm_run)(const ek_gemm_args *g, float *work, int nthreads)
{
    EK_FN(ek_gemm_job) job;
    EK_FN(ek_gemm_plan_t) p;
    ptrdiff_t b_sz;
    const ptrdiff_t M = g->M, N = g->N, K = g->K;
    if (M <= 0 || N <= 0) return;
    memset(&job, 0, sizeof(job));
    job.g = g;
    job.bias = g->bias_mode != EK_BIAS_NONE ? g->bias : NULL;
    job.bias_mode = job.bias ? g->bias_mode : EK_BIAS_NONE;
    job.Apk = g->a_packed ? ek_align64((float *)g->A) : NULL;
    job.Bpk = g->b_packed ? ek_align64((float *)g->B) : NULL;
    job.Np = (N + EK_GEMM_NR - 1) / EK_GEMM_NR * EK_GEMM_NR;
    p = EK_FN(ek_gemm_plan)(M, N, K, g->a_packed,
                            g->b_packed ? EK_GEMM_B_PACKED
                                        : g->fill_b ? EK_GEMM_B_FILL : EK_GEMM_B_MATRIX,
                            nthreads);
    if (p.small) {
        ek_gemm_args h = *g;
        h.bias = job.bias;
        h.bias_mode = job.bias_mode;
        EK_FN(ek_gemm_small)(&h, p.threads);
        return;
    }
    job.p = p;
#if EK_GEMM_DIRECT_B
    /* few row tiles per block (M <= 42): reading B in place beats packing it (M = 16..32
       pointwise convs at 1 thread: 15-25 % faster; from M = 96 on packing wins) */
    job.direct_b = !g->b_packed && !g->fill_b && !g->trans_b && p.mc <= 3 * EK_GEMM_MR;
#endif
    job.a_sz = g->a_packed ? 0 : EK_ROUND16(p.mc / p.mr * EK_GEMM_MR * p.kc);
    b_sz = g->b_packed || p.prefill ? 0 : EK_ROUND16(p.kc * p.nc);
    job.per = job.a_sz + b_sz;
    job.ws = job.per || p.prefill ? ek_align64(work) : NULL;
    if (p.prefill) {
        /* B block (k0, j0) at pre + k0 Np + (j0 / NR) kc NR: the layout a task's own block
           would have, so the tasks below only change where they read it */
        job.nkb = (K + p.kc - 1) / p.kc;
        job.pre = job.ws + (ptrdiff_t)p.threads * job.per;
        ek_parallelize(p.threads, job.nkb * p.nt, EK_FN(ek_gemm_prefill_tile), &job);
    }
    ek_parallelize(p.threads, p.mt * p.nt, EK_FN(ek_gemm_block_tile), &job);
}

/*
 * C = act([accumulate ? C : 0] + op(A) op(B) + bias): the plain interface (both operands
 * packed on the fly).  Preconditions as ek_gemm_run; work has
 * ek_sgemm_workspace(M, N, K, trans_b, nthreads) floats.
 */
EK_API void EK_FN(ek_sgemm)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A,
                            ptrdiff_t lda, int trans_a, const float *B, ptrdiff_t ldb,
                            int trans_b, float *C, ptrdiff_t ldc, const float *bias,
                            int bias_mode, int accumulate, int act, float p0, float p1,
                            float *work, int nthreads)
{
    ek_gemm_args g;
    memset(&g, 0, sizeof(g));
    g.M = M; g.N = N; g.K = K;
    g.A = A; g.lda = lda; g.trans_a = trans_a;
    g.B = B; g.ldb = ldb; g.trans_b = trans_b;
    g.C = C; g.ldc = ldc;
    g.bias = bias; g.bias_mode = bias ? bias_mode : EK_BIAS_NONE;
    g.accumulate = accumulate; g.act = act; g.p0 = p0; g.p1 = p1;
    EK_FN(ek_gemm_run)(&g, work, nthreads);
}

#endif /* EK_GEMM_ISA */
