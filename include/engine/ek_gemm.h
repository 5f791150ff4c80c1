/*
 * ek_gemm.h - cache-blocked single-precision GEMM with a fused epilogue.
 *
 *     C = act( [accumulate ? C : 0] + op(A) . op(B) + bias )
 *
 * Row-major; op(A) is M x K, op(B) is K x N, C is M x N with row stride ldc.
 *   op(A)(i, k) = trans_a ? A[k * lda + i] : A[i * lda + k]
 *   op(B)(k, j) = trans_b ? B[j * ldb + k] : B[k * ldb + j]
 * bias_mode: EK_BIAS_NONE, EK_BIAS_ROW (bias[i], M entries), EK_BIAS_COL (bias[j], N entries).
 *
 * Algorithm (Goto/BLIS style): the M x N output is cut into mc x nc tasks spread over the
 * threads (OpenMP, dynamic schedule).  For each K block of kc, a task packs its A block into
 * MR-row micro-panels and its B block into NR-column micro-panels in its own slice of the
 * workspace, then runs an MR x NR register-blocked micro-kernel written as plain loops that
 * gcc -O3 vectorises (NR = 2 vectors of the target ISA).  The epilogue (accumulate, bias,
 * activation) is applied while storing the last K block.  Tiny M (a matrix-vector product)
 * takes an unpacked path that streams B once.
 *
 * Tuning knobs (define before including): EK_GEMM_MR, EK_GEMM_NR, EK_GEMM_MC, EK_GEMM_KC,
 * EK_GEMM_NC.
 */
#include "ek_common.h"

#ifndef EK_GEMM_ISA
#define EK_GEMM_ISA

/* Vector width in floats of the micro-kernel (the target ISA's register width). */
#ifndef EK_GEMM_VW
#if defined(__AVX512F__)
#define EK_GEMM_VW 16
#elif defined(__AVX__)
#define EK_GEMM_VW 8
#else
#define EK_GEMM_VW 4
#endif
#endif
/* GNU vector extensions (gcc, clang) give the micro-kernel explicit vector registers; any
   other compiler gets the plain C99 loops (which gcc also auto-vectorises, less well). */
#if !defined(EK_GEMM_VEXT)
#if defined(__GNUC__) && !defined(EK_NO_VECTOR_EXT)
#define EK_GEMM_VEXT 1
#else
#define EK_GEMM_VEXT 0
#endif
#endif
/* Register tile MR x NR: 12 accumulator registers out of 16.  With FMA one tile row is
   2 vectors (6 x 2VW); without FMA a multiply needs a temporary register, and a 3 x 4VW
   tile (fewer broadcasts of A) measured fastest on SSE2. */
#ifndef EK_GEMM_MR
#if !EK_GEMM_VEXT
#define EK_GEMM_MR 4
#elif defined(__FMA__)
#define EK_GEMM_MR 6
#else
#define EK_GEMM_MR 3
#endif
#endif
#ifndef EK_GEMM_NR
#if !EK_GEMM_VEXT
#define EK_GEMM_NR 8
#elif defined(__FMA__)
#define EK_GEMM_NR (2 * EK_GEMM_VW)
#else
#define EK_GEMM_NR (4 * EK_GEMM_VW)
#endif
#endif
#if EK_GEMM_VEXT && (EK_GEMM_NR % EK_GEMM_VW) != 0
#error "EK_GEMM_NR must be a multiple of EK_GEMM_VW"
#endif
#ifndef EK_GEMM_MC
#define EK_GEMM_MC 192
#endif
#ifndef EK_GEMM_KC
#define EK_GEMM_KC 256
#endif
#ifndef EK_GEMM_NC
#define EK_GEMM_NC 1024
#endif
/* M below which the unpacked matrix-vector path is used. */
#ifndef EK_GEMM_SMALL_M
#define EK_GEMM_SMALL_M 4
#endif

/* Blocking of one call: derived from the sizes and the thread count only. */
typedef struct {
    ptrdiff_t mc, nc, kc;   /* block sizes (mc multiple of MR, nc multiple of NR) */
    ptrdiff_t mt, nt;       /* number of blocks along M and N */
    int threads;            /* threads actually used */
    int small;              /* 1: unpacked small-M path, no workspace */
} EK_FN(ek_gemm_plan_t);

EK_API EK_FN(ek_gemm_plan_t) EK_FN(ek_gemm_plan)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                                 int trans_b, int nthreads)
{
    EK_FN(ek_gemm_plan_t) p;
    const ptrdiff_t MR = EK_GEMM_MR, NR = EK_GEMM_NR;
    ptrdiff_t max_nt;
    memset(&p, 0, sizeof(p));
    if (M <= 0 || N <= 0) { p.threads = 1; return p; }
    p.small = (M < EK_GEMM_SMALL_M) || K <= 0;
    (void)trans_b;
    if (p.small) {
        p.threads = ek_nthreads(nthreads, (N + 63) / 64);
        if (M * N * (K > 0 ? K : 1) < 65536) p.threads = 1;
        return p;
    }
    p.kc = K < EK_GEMM_KC ? K : EK_GEMM_KC;
    /* Balance the K blocks: no tiny tail block. */
    {
        ptrdiff_t nkb = (K + p.kc - 1) / p.kc;
        p.kc = (K + nkb - 1) / nkb;
    }
    p.mt = (M + EK_GEMM_MC - 1) / EK_GEMM_MC;
    p.mc = (((M + p.mt - 1) / p.mt) + MR - 1) / MR * MR;
    p.mt = (M + p.mc - 1) / p.mc;
    p.nt = (N + EK_GEMM_NC - 1) / EK_GEMM_NC;
    max_nt = (N + NR - 1) / NR;
    if (nthreads < 1) nthreads = 1;
#ifndef _OPENMP
    nthreads = 1;
#endif
    if (nthreads > 1) {
        /* Enough tasks for every thread, and a multiple of the thread count when the
           number of tasks is small (balance). */
        while (p.nt < max_nt && (p.mt * p.nt < nthreads ||
               (p.mt * p.nt < 8 * nthreads && (p.mt * p.nt) % nthreads != 0)))
            p.nt++;
    }
    p.nc = (((N + p.nt - 1) / p.nt) + NR - 1) / NR * NR;
    p.nt = (N + p.nc - 1) / p.nc;
    p.threads = ek_nthreads(nthreads, p.mt * p.nt);
    if (M * N * K < 200000) p.threads = 1;
    return p;
}

/* Floats of workspace ek_sgemm needs for these sizes (0 for the small-M path). */
EK_API ptrdiff_t EK_FN(ek_sgemm_workspace)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int trans_b,
                                           int nthreads)
{
    EK_FN(ek_gemm_plan_t) p = EK_FN(ek_gemm_plan)(M, N, K, trans_b, nthreads);
    if (M <= 0 || N <= 0 || p.small) return 0;
    return (ptrdiff_t)p.threads * (EK_ROUND16(p.mc * p.kc) + EK_ROUND16(p.kc * p.nc)) + 16;
}

/* Pack op(A)[i0:i0+mc, k0:k0+kc] into MR-row micro-panels: ap[panel][k][MR], zero-padded. */
EK_API void EK_FN(ek_gemm_pack_a)(ptrdiff_t mc, ptrdiff_t kc, const float *EK_RESTRICT A,
                                  ptrdiff_t lda, int trans_a, float *EK_RESTRICT ap)
{
    const ptrdiff_t MR = EK_GEMM_MR;
    ptrdiff_t r, i, k;
    for (r = 0; r < mc; r += MR) {
        ptrdiff_t m = EK_MIN(MR, mc - r);
        float *dst = ap + r * kc;
        if (trans_a) {
            for (k = 0; k < kc; k++) {
                const float *src = A + k * lda + r;
                for (i = 0; i < m; i++) dst[k * MR + i] = src[i];
                for (; i < MR; i++) dst[k * MR + i] = 0.0f;
            }
        } else {
            for (i = 0; i < m; i++) {
                const float *src = A + (r + i) * lda;
                for (k = 0; k < kc; k++) dst[k * MR + i] = src[k];
            }
            for (; i < MR; i++)
                for (k = 0; k < kc; k++) dst[k * MR + i] = 0.0f;
        }
    }
}

/* Pack op(B)[k0:k0+kc, j0:j0+nc] into NR-column micro-panels: bp[panel][k][NR]. */
EK_API void EK_FN(ek_gemm_pack_b)(ptrdiff_t kc, ptrdiff_t nc, const float *EK_RESTRICT B,
                                  ptrdiff_t ldb, int trans_b, float *EK_RESTRICT bp)
{
    const ptrdiff_t NR = EK_GEMM_NR;
    const ptrdiff_t nfull = nc / NR * NR;
    ptrdiff_t c, j, k;
    if (!trans_b) {
        /* Row by row: contiguous (prefetch-friendly) reads of B, scattered panel writes. */
        for (k = 0; k < kc; k++) {
            const float *src = B + k * ldb;
            for (c = 0; c < nfull; c += NR) {
                float *dst = bp + c * kc + k * NR;
                for (j = 0; j < NR; j++) dst[j] = src[c + j];
            }
            if (nfull < nc) {
                float *dst = bp + nfull * kc + k * NR;
                for (j = 0; j < nc - nfull; j++) dst[j] = src[nfull + j];
                for (; j < NR; j++) dst[j] = 0.0f;
            }
        }
    } else {
        for (c = 0; c < nc; c += NR) {
            const ptrdiff_t n = EK_MIN(NR, nc - c);
            float *dst = bp + c * kc;
            for (j = 0; j < n; j++) {
                const float *src = B + (c + j) * ldb;
                for (k = 0; k < kc; k++) dst[k * NR + j] = src[k];
            }
            for (; j < NR; j++)
                for (k = 0; k < kc; k++) dst[k * NR + j] = 0.0f;
        }
    }
}

/* out[MR][NR] = sum_k a[k][MR] (x) b[k][NR]: the register-blocked micro-kernel.
   Precondition: a has kc * MR floats, b has kc * NR floats, out has MR * NR floats. */
#if EK_GEMM_VEXT
typedef float EK_FN(ek_vf) __attribute__((vector_size(EK_GEMM_VW * 4)));
EK_INLINE void EK_FN(ek_gemm_ukernel)(ptrdiff_t kc, const float *EK_RESTRICT a,
                                      const float *EK_RESTRICT b, float *EK_RESTRICT out)
{
    enum { NV = EK_GEMM_NR / EK_GEMM_VW };
    EK_FN(ek_vf) acc[EK_GEMM_MR][NV];
    ptrdiff_t k;
    int i, j;
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < NV; j++) acc[i][j] = (EK_FN(ek_vf)){0};
    for (k = 0; k < kc; k++) {
        EK_FN(ek_vf) bv[NV];
        for (j = 0; j < NV; j++) memcpy(&bv[j], b + j * EK_GEMM_VW, sizeof(bv[j]));
        for (i = 0; i < EK_GEMM_MR; i++) {
            const float ai = a[i];
            for (j = 0; j < NV; j++) acc[i][j] += bv[j] * ai;
        }
        a += EK_GEMM_MR;
        b += EK_GEMM_NR;
    }
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < NV; j++)
            memcpy(out + i * EK_GEMM_NR + j * EK_GEMM_VW, &acc[i][j], sizeof(acc[i][j]));
}
#else
EK_INLINE void EK_FN(ek_gemm_ukernel)(ptrdiff_t kc, const float *EK_RESTRICT a,
                                      const float *EK_RESTRICT b, float *EK_RESTRICT out)
{
    float acc[EK_GEMM_MR][EK_GEMM_NR];
    ptrdiff_t k;
    int i, j;
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < EK_GEMM_NR; j++) acc[i][j] = 0.0f;
    for (k = 0; k < kc; k++) {
        for (i = 0; i < EK_GEMM_MR; i++) {
            const float ai = a[i];
            for (j = 0; j < EK_GEMM_NR; j++) acc[i][j] += ai * b[j];
        }
        a += EK_GEMM_MR;
        b += EK_GEMM_NR;
    }
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < EK_GEMM_NR; j++) out[i * EK_GEMM_NR + j] = acc[i][j];
}
#endif

/* Store an m x n (<= MR x NR) tile: first K block overwrites (or adds when accumulating),
   later blocks add; the last block adds the bias and applies the activation. */
EK_API void EK_FN(ek_gemm_store)(const float *EK_RESTRICT t, ptrdiff_t m, ptrdiff_t n,
                                 float *EK_RESTRICT C, ptrdiff_t ldc, int add, int last,
                                 const float *rbias, const float *cbias, int act, float p0,
                                 float p1)
{
    ptrdiff_t i, j;
    for (i = 0; i < m; i++) {
        float *c = C + i * ldc;
        const float *s = t + i * EK_GEMM_NR;
        if (add) {
            for (j = 0; j < n; j++) c[j] += s[j];
        } else {
            for (j = 0; j < n; j++) c[j] = s[j];
        }
        if (last) {
            if (rbias) {
                const float bv = rbias[i];
                for (j = 0; j < n; j++) c[j] += bv;
            }
            if (cbias)
                for (j = 0; j < n; j++) c[j] += cbias[j];
            EK_FN(ek_act_inplace)(c, n, act, p0, p1);
        }
    }
}

/* Unpacked path for tiny M or K == 0 (matrix-vector-like): parallel over column chunks. */
EK_API void EK_FN(ek_gemm_small)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A,
                                 ptrdiff_t lda, int trans_a, const float *B, ptrdiff_t ldb,
                                 int trans_b, float *C, ptrdiff_t ldc, const float *bias,
                                 int bias_mode, int accumulate, int act, float p0, float p1,
                                 int threads)
{
    const ptrdiff_t CH = 256;
    const ptrdiff_t nch = (N + CH - 1) / CH;
    ptrdiff_t t;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (t = 0; t < nch; t++) {
        const ptrdiff_t j0 = t * CH, n = EK_MIN(CH, N - j0);
        ptrdiff_t i, j, k;
        for (i = 0; i < M; i++) {
            float *EK_RESTRICT c = C + i * ldc + j0;
            float acc[256];
            for (j = 0; j < n; j++) acc[j] = 0.0f;
            if (!trans_b) {
                for (k = 0; k < K; k++) {
                    const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                    const float *EK_RESTRICT b = B + k * ldb + j0;
                    for (j = 0; j < n; j++) acc[j] += a * b[j];
                }
            } else {
                for (j = 0; j < n; j++) {
                    const float *EK_RESTRICT b = B + (j0 + j) * ldb;
                    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    float s;
                    int u;
                    k = 0;
                    if (!trans_a) {
                        const float *EK_RESTRICT a = A + i * lda;
                        for (; k + 8 <= K; k += 8)
                            for (u = 0; u < 8; u++) s8[u] += a[k + u] * b[k + u];
                        s = ((s8[0] + s8[1]) + (s8[2] + s8[3])) +
                            ((s8[4] + s8[5]) + (s8[6] + s8[7]));
                        for (; k < K; k++) s += a[k] * b[k];
                    } else {
                        s = 0.0f;
                        for (; k < K; k++) s += A[k * lda + i] * b[k];
                    }
                    acc[j] = s;
                }
            }
            if (accumulate)
                for (j = 0; j < n; j++) c[j] += acc[j];
            else
                for (j = 0; j < n; j++) c[j] = acc[j];
            if (bias_mode == EK_BIAS_ROW) {
                const float bv = bias[i];
                for (j = 0; j < n; j++) c[j] += bv;
            } else if (bias_mode == EK_BIAS_COL) {
                for (j = 0; j < n; j++) c[j] += bias[j0 + j];
            }
            EK_FN(ek_act_inplace)(c, n, act, p0, p1);
        }
    }
}

/*
 * C = act([accumulate ? C : 0] + op(A) op(B) + bias).
 *
 * Preconditions (checked by the caller):
 *   M, N, K >= 0; A holds op(A) with leading dimension lda (>= K, or >= M when trans_a);
 *   B holds op(B) with ldb (>= N, or >= K when trans_b); C is M x N with ldc >= N and does
 *   not overlap A, B or bias; bias has M (ROW) or N (COL) entries when bias_mode != NONE;
 *   `work` has ek_sgemm_workspace(M, N, K, trans_b, nthreads) floats (may be NULL if 0).
 * When accumulate == 0, C is write-only (its old contents, NaN included, are ignored).
 */
EK_API void EK_FN(ek_sgemm)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A,
                            ptrdiff_t lda, int trans_a, const float *B, ptrdiff_t ldb,
                            int trans_b, float *C, ptrdiff_t ldc, const float *bias,
                            int bias_mode, int accumulate, int act, float p0, float p1,
                            float *work, int nthreads)
{
    EK_FN(ek_gemm_plan_t) p;
    ptrdiff_t ntasks, t, a_sz, b_sz;
    float *ws;
    if (M <= 0 || N <= 0) return;
    if (bias == NULL) bias_mode = EK_BIAS_NONE;
    p = EK_FN(ek_gemm_plan)(M, N, K, trans_b, nthreads);
    if (p.small) {
        EK_FN(ek_gemm_small)(M, N, K, A, lda, trans_a, B, ldb, trans_b, C, ldc, bias,
                             bias_mode, accumulate, act, p0, p1, p.threads);
        return;
    }
    ntasks = p.mt * p.nt;
    a_sz = EK_ROUND16(p.mc * p.kc);
    b_sz = EK_ROUND16(p.kc * p.nc);
    ws = ek_align64(work);
#ifdef _OPENMP
#pragma omp parallel for num_threads(p.threads) schedule(dynamic, 1) if (p.threads > 1)
#endif
    for (t = 0; t < ntasks; t++) {
        const ptrdiff_t MR = EK_GEMM_MR, NR = EK_GEMM_NR;
        const ptrdiff_t ib = t % p.mt, jb = t / p.mt; /* N-major: M blocks share B in cache */
        const ptrdiff_t i0 = ib * p.mc, j0 = jb * p.nc;
        const ptrdiff_t mc = EK_MIN(p.mc, M - i0), nc = EK_MIN(p.nc, N - j0);
        float *ap = ws + (ptrdiff_t)ek_thread_id() * (a_sz + b_sz);
        float *bp = ap + a_sz;
        float tile[EK_GEMM_MR * EK_GEMM_NR];
        ptrdiff_t k0, ir, jr;
        for (k0 = 0; k0 < K; k0 += p.kc) {
            const ptrdiff_t kc = EK_MIN(p.kc, K - k0);
            const int first = (k0 == 0), last = (k0 + kc >= K);
            const float *a_blk = trans_a ? A + k0 * lda + i0 : A + i0 * lda + k0;
            const float *b_blk = trans_b ? B + j0 * ldb + k0 : B + k0 * ldb + j0;
            EK_FN(ek_gemm_pack_a)(mc, kc, a_blk, lda, trans_a, ap);
            EK_FN(ek_gemm_pack_b)(kc, nc, b_blk, ldb, trans_b, bp);
            for (jr = 0; jr < nc; jr += NR) {
                const ptrdiff_t n = EK_MIN(NR, nc - jr);
                for (ir = 0; ir < mc; ir += MR) {
                    const ptrdiff_t m = EK_MIN(MR, mc - ir);
                    EK_FN(ek_gemm_ukernel)(kc, ap + ir * kc, bp + jr * kc, tile);
                    EK_FN(ek_gemm_store)(tile, m, n, C + (i0 + ir) * ldc + j0 + jr, ldc,
                                         !first || accumulate, last,
                                         bias_mode == EK_BIAS_ROW ? bias + i0 + ir : NULL,
                                         bias_mode == EK_BIAS_COL ? bias + j0 + jr : NULL,
                                         act, p0, p1);
                }
            }
        }
    }
}

#endif /* EK_GEMM_ISA */
