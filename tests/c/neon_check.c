/*
 * neon_check.c - the C kernels on random data against naive double-precision references,
 * without Python: built natively (x86-64: every ISA level the CPU runs) and cross-compiled
 * for aarch64 twice, with the NEON paths and with -DEK_NO_NEON (portable code), then run
 * under qemu (tests/test_neon.py).
 *
 *     neon_check [--level L] [--dump FILE] [--quick] [-v]
 *
 * By hand, from the repository root:
 *     aarch64-linux-gnu-gcc -O2 -static -pthread -Iinclude tests/c/neon_check.c -o /tmp/nc -lm
 *     qemu-aarch64-static /tmp/nc            (add -DEK_NO_NEON for the portable code)
 *
 * Cases (deterministic inputs: a fixed LCG seeded per case, so every build sees the same
 * data):
 *   gemm       odd M / N / K around the register-tile edges (tails in rows, columns and K,
 *              several K and M blocks), op(A) / op(B) transposed or not, A and / or B
 *              pre-packed, padded leading dimensions, bias none / row / col, residual,
 *              accumulate, every activation, 1 or 3 threads (results must not depend on
 *              the thread count: each case is run twice and compared bit for bit)
 *   conv       im2col into packed panels (and the pointwise B-matrix path), packed weights
 *              with a residual, groups, strides, dilations
 *   depthwise  the padded-plane fast path (stride 1 / 2) and the general path, 1-D and 2-D
 *   pool       max / min (fast path stride 1 / 2, general path stride 3) and avg, ceil-mode
 *              output sizes, NaN in some windows
 *   unary      every activation over lengths 1..37 and a long row, with NaN / inf / +-0
 *   affine     per-channel scale + shift + activation
 *
 * Tolerance, relative to the output magnitude: max|got - ref| <= TOL * max(1, max|ref|)
 * per case (ref: the double-precision result, scale taken before the activation for the
 * GEMM-based ops); TOL = 1e-5 for GEMM / conv (float32 sums of up to ~1000 products of
 * numbers in [-1, 1)), 2e-6 for the others.  NaN must appear exactly where the reference
 * has one, infinities must match.
 *
 * --dump FILE writes every case's output (level 0 only) as records
 *   int32 tag-length, tag, int32 n, float32 scale, float32 data[n]
 * so that two builds (NEON and portable) can be compared element by element.
 *
 * Exit status: 0 when every check passed, 1 otherwise.
 */
/* the kernels' thread pool, compiled into this program (tiles of the 3-thread runs) */
#define EK_THREADPOOL_IMPL 1
#include "engine/ek_dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define TOL_GEMM 1e-5
#define TOL_ELT 2e-6

/* ------------------------------------------------------------------ utilities -- */

static uint64_t rng_state;

static void rng_seed(uint64_t s)
{
    rng_state = s * 6364136223846793005ULL + 1442695040888963407ULL;
}

static uint32_t rng_u32(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

/* uniform in [-1, 1) */
static float rng_f(void) { return (float)((double)rng_u32() / 2147483648.0 - 1.0); }

static int rng_int(int n) { return (int)(rng_u32() % (uint32_t)n); }

static float *falloc(ptrdiff_t n)
{
    float *p = (float *)malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void fill_rand(float *p, ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++) p[i] = rng_f();
}

static void fill_nan(float *p, ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++) p[i] = NAN;
}

static double act_ref(double x, int act, double p0, double p1)
{
    double t;
    switch (act) {
    case EK_ACT_RELU: return x < 0 ? 0 : x;
    case EK_ACT_RELU6: return x < 0 ? 0 : x > 6 ? 6 : x;
    case EK_ACT_LEAKY_RELU: return x < 0 ? x * p0 : x;
    case EK_ACT_CLIP: t = x < p0 ? p0 : x; return t > p1 ? p1 : t;
    case EK_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case EK_ACT_TANH: return tanh(x);
    case EK_ACT_SILU: return x / (1.0 + exp(-x));
    case EK_ACT_HARDSWISH: t = x + 3; t = t < 0 ? 0 : t > 6 ? 6 : t; return x * t / 6;
    case EK_ACT_HARDSIGMOID: t = x + 3; t = t < 0 ? 0 : t > 6 ? 6 : t; return t / 6;
    case EK_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case EK_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    case EK_ACT_ELU: return x > 0 ? x : p0 * expm1(x);
    case EK_ACT_SELU:
        return 1.0507009873554804934 * (x > 0 ? x : 1.6732632423543772848 * expm1(x));
    case EK_ACT_SOFTPLUS: return p0 * x > p1 ? x : log1p(exp(p0 * x)) / p0;
    case EK_ACT_MISH: return x * tanh(log1p(exp(x)));
    default: return x;
    }
}

static const char *const act_names[EK_ACT_COUNT] = {
    "none", "relu", "relu6", "leaky_relu", "clip", "sigmoid", "tanh", "silu", "hardswish",
    "hardsigmoid", "gelu", "gelu_tanh", "elu", "selu", "softplus", "mish"};

/* activation parameters of the tests (elu alpha, softplus beta and threshold) */
static float act_p0(int act)
{
    switch (act) {
    case EK_ACT_LEAKY_RELU: return 0.1f;
    case EK_ACT_CLIP: return -0.5f;
    case EK_ACT_ELU: return 0.7f;
    case EK_ACT_SOFTPLUS: return 1.5f;
    default: return 0.0f;
    }
}
static float act_p1(int act)
{
    return act == EK_ACT_CLIP ? 0.75f : act == EK_ACT_SOFTPLUS ? 4.0f : 0.0f;
}

/* ------------------------------------------------------------------ results -- */

typedef struct {
    long checks, fails;
    double max_rel;
    char worst[256];
} group_stat;

enum { G_GEMM, G_THREADS, G_CONV, G_DW, G_POOL, G_UNARY, G_AFFINE, G_COUNT };
static const char *const group_names[G_COUNT] = {"gemm", "gemm-threads", "conv", "depthwise",
                                                 "pool", "unary", "affine"};
static group_stat stats[G_COUNT];
static FILE *dump_file = NULL;
static int verbose = 0;

static void dump_case(const char *tag, const float *got, ptrdiff_t n, double scale)
{
    int32_t len = (int32_t)strlen(tag), nn = (int32_t)n;
    float sc = (float)scale;
    if (dump_file == NULL) return;
    fwrite(&len, 4, 1, dump_file);
    fwrite(tag, 1, (size_t)len, dump_file);
    fwrite(&nn, 4, 1, dump_file);
    fwrite(&sc, 4, 1, dump_file);
    fwrite(got, 4, (size_t)n, dump_file);
}

/*
 * got[i] vs ref[i] (i < n): |got - ref| <= tol * scale, NaN where ref is NaN, equal
 * infinities.  scale <= 0: per element max(1, |ref|).  Records the case in its group.
 */
static void check(int grp, const char *tag, const float *got, const double *ref, ptrdiff_t n,
                  double scale, double tol, int level)
{
    group_stat *st = &stats[grp];
    double worst = 0.0;
    ptrdiff_t i, bad = -1;
    for (i = 0; i < n; i++) {
        const double r = ref[i], gv = (double)got[i];
        const double sc = scale > 0 ? scale : (fabs(r) > 1.0 ? fabs(r) : 1.0);
        double rel;
        if (r != r || isinf(r)) {
            if (!(r != r ? gv != gv : gv == r)) { bad = i; worst = INFINITY; break; }
            continue;
        }
        if (gv != gv) { bad = i; worst = INFINITY; break; }
        rel = fabs(gv - r) / sc;
        if (rel > worst) {
            worst = rel;
            if (rel > tol) bad = i;
        }
    }
    st->checks++;
    if (worst > st->max_rel && !isinf(worst)) {
        st->max_rel = worst;
        snprintf(st->worst, sizeof(st->worst), "%s", tag);
    }
    if (bad >= 0) {
        st->fails++;
        if (st->fails <= 10)
            printf("FAIL [level %d] %s: element %ld got %.9g ref %.9g (rel %.3g > %.1g)\n",
                   level, tag, (long)bad, (double)got[bad], ref[bad], worst, tol);
    } else if (verbose) {
        printf("ok   [level %d] %s: rel %.3g\n", level, tag, worst);
    }
    if (level == 0) dump_case(tag, got, n, scale > 0 ? scale : 1.0);
}

/* ---------------------------------------------------------------------- gemm -- */

typedef struct {
    int M, N, K, ta, tb, pa, pb, bias_mode, resid, accum, act, threads;
    int pad_a, pad_b, pad_c;
} gemm_case;

/* Run one GEMM case at `level` with `threads` into C (pre-filled by the caller). */
static void gemm_run_at(int level, const gemm_case *c, const float *A, ptrdiff_t lda,
                        const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                        const float *bias, const float *R, ptrdiff_t ldr, int threads)
{
    ek_gemm_args g;
    float *pa = NULL, *pb = NULL, *work;
    ptrdiff_t ws;
    const int b_mode = c->pb ? EK_GEMM_B_PACKED : EK_GEMM_B_MATRIX;
    memset(&g, 0, sizeof(g));
    g.M = c->M; g.N = c->N; g.K = c->K;
    g.A = A; g.lda = lda; g.trans_a = c->ta;
    g.B = B; g.ldb = ldb; g.trans_b = c->tb;
    if (c->pa) {
        pa = falloc(EK_ISA_SEL(level, ek_gemm_pack_a_size)(c->M, c->K));
        EK_ISA_SEL(level, ek_gemm_pack_a)(c->M, c->K, A, lda, c->ta, pa);
        g.A = pa;
        g.a_packed = 1;
    }
    if (c->pb) {
        pb = falloc(EK_ISA_SEL(level, ek_gemm_pack_b_size)(c->K, c->N));
        EK_ISA_SEL(level, ek_gemm_pack_b)(c->K, c->N, B, ldb, c->tb, pb);
        g.B = pb;
        g.b_packed = 1;
    }
    g.C = C; g.ldc = ldc;
    g.bias = bias; g.bias_mode = c->bias_mode;
    g.R = R; g.ldr = ldr;
    g.accumulate = c->accum;
    g.act = c->act; g.p0 = act_p0(c->act); g.p1 = act_p1(c->act);
    ws = EK_ISA_SEL(level, ek_gemm_workspace)(c->M, c->N, c->K, c->pa, b_mode, threads);
    work = ws ? falloc(ws) : NULL;
    EK_ISA_SEL(level, ek_gemm_run)(&g, work, threads);
    free(work);
    free(pa);
    free(pb);
}

static void gemm_case_run(int level, const gemm_case *c, uint64_t seed)
{
    const ptrdiff_t M = c->M, N = c->N, K = c->K;
    const ptrdiff_t lda = (c->ta ? M : K) + c->pad_a, ldb = (c->tb ? K : N) + c->pad_b;
    const ptrdiff_t ldc = N + c->pad_c, ldr = N + 3;
    const ptrdiff_t asz = (c->ta ? K : M) * lda, bsz = (c->tb ? N : K) * ldb;
    float *A = falloc(asz), *B = falloc(bsz), *C = falloc(M * ldc), *C2 = falloc(M * ldc);
    float *bias = falloc(c->bias_mode == EK_BIAS_ROW ? M : N), *R = falloc(M * ldr);
    float *got = falloc(M * N);
    double *ref = (double *)malloc(sizeof(double) * (size_t)(M * N));
    double scale = 1.0;
    char tag[256];
    ptrdiff_t i, j, k;
    rng_seed(seed);
    fill_rand(A, asz);
    fill_rand(B, bsz);
    fill_rand(C, M * ldc);
    fill_rand(bias, c->bias_mode == EK_BIAS_ROW ? M : N);
    fill_rand(R, M * ldr);
    if (!c->accum) fill_nan(C, M * ldc);   /* write-only: NaN garbage must not leak */
    memcpy(C2, C, sizeof(float) * (size_t)(M * ldc));
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double s = c->accum ? (double)C[i * ldc + j] : 0.0;
            for (k = 0; k < K; k++)
                s += (double)(c->ta ? A[k * lda + i] : A[i * lda + k]) *
                     (double)(c->tb ? B[j * ldb + k] : B[k * ldb + j]);
            if (c->bias_mode == EK_BIAS_ROW) s += bias[i];
            if (c->bias_mode == EK_BIAS_COL) s += bias[j];
            if (c->resid) s += R[i * ldr + j];
            if (fabs(s) > scale) scale = fabs(s);
            ref[i * N + j] = act_ref(s, c->act, act_p0(c->act), act_p1(c->act));
        }
    gemm_run_at(level, c, A, lda, B, ldb, C, ldc, c->bias_mode ? bias : NULL,
                c->resid ? R : NULL, ldr, c->threads);
    for (i = 0; i < M; i++) memcpy(got + i * N, C + i * ldc, sizeof(float) * (size_t)N);
    snprintf(tag, sizeof(tag), "gemm M=%d N=%d K=%d ta=%d tb=%d pack=%s%s bias=%d res=%d "
             "acc=%d act=%s thr=%d", c->M, c->N, c->K, c->ta, c->tb, c->pa ? "A" : "",
             c->pb ? "B" : "", c->bias_mode, c->resid, c->accum, act_names[c->act], c->threads);
    check(G_GEMM, tag, got, ref, M * N, scale, TOL_GEMM, level);
    /* padding columns of C untouched */
    for (i = 0; i < M; i++)
        for (j = N; j < ldc; j++)
            if (memcmp(&C[i * ldc + j], &C2[i * ldc + j], sizeof(float)) != 0) {
                stats[G_GEMM].fails++;
                printf("FAIL [level %d] %s: wrote C[%ld][%ld] past N\n", level, tag, (long)i,
                       (long)j);
                i = M;
                break;
            }
    /* the same case with another thread count: bit-identical */
    {
        const int t2 = c->threads == 1 ? 4 : 1;
        float *C3 = falloc(M * ldc);
        memcpy(C3, C2, sizeof(float) * (size_t)(M * ldc));
        gemm_run_at(level, c, A, lda, B, ldb, C3, ldc, c->bias_mode ? bias : NULL,
                    c->resid ? R : NULL, ldr, t2);
        stats[G_THREADS].checks++;
        for (i = 0; i < M; i++)
            if (memcmp(C3 + i * ldc, C + i * ldc, sizeof(float) * (size_t)N) != 0) {
                stats[G_THREADS].fails++;
                printf("FAIL [level %d] %s: %d threads differ from %d\n", level, tag, t2,
                       c->threads);
                break;
            }
        free(C3);
    }
    free(A); free(B); free(C); free(C2); free(bias); free(R); free(got); free(ref);
}

static const int edge_m[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 23, 24,
                             25, 31, 33, 47, 64, 65};
static const int edge_n[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 20, 23,
                             24, 25, 31, 32, 33, 36, 47, 49, 50, 64, 97, 196};
static const int edge_k[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 27, 64, 65, 147, 300};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void gemm_tests(int level, int quick)
{
    const int ncases = quick ? 150 : 600;
    int t;
    for (t = 0; t < ncases; t++) {
        gemm_case c;
        rng_seed(1000 + (uint64_t)t);
        c.M = rng_int(3) ? edge_m[rng_int(NELEM(edge_m))] : 1 + rng_int(100);
        c.N = rng_int(3) ? edge_n[rng_int(NELEM(edge_n))] : 1 + rng_int(150);
        c.K = rng_int(3) ? edge_k[rng_int(NELEM(edge_k))] : 1 + rng_int(200);
        c.ta = rng_int(2);
        c.tb = rng_int(2);
        c.pa = rng_int(2);
        c.pb = rng_int(2);
        c.bias_mode = rng_int(3);
        c.resid = rng_int(2);
        c.accum = rng_int(2);
        c.act = t < EK_ACT_COUNT * 4 ? t % EK_ACT_COUNT : rng_int(EK_ACT_COUNT);
        c.threads = rng_int(2) ? 1 : 3;
        c.pad_a = rng_int(2) * 3;
        c.pad_b = rng_int(2) * 5;
        c.pad_c = rng_int(2) * 2;
        gemm_case_run(level, &c, 77 + (uint64_t)t);
    }
    {   /* several K blocks (load_c between them), several M / N blocks, threads */
        static const int big[][3] = {{300, 203, 777}, {17, 517, 1025}, {293, 61, 400}};
        for (t = 0; t < (quick ? 1 : 3); t++) {
            gemm_case c;
            memset(&c, 0, sizeof(c));
            c.M = big[t][0]; c.N = big[t][1]; c.K = big[t][2];
            c.ta = t == 1; c.tb = t == 2; c.pa = t == 2; c.pb = t == 0;
            c.bias_mode = 1 + t % 2; c.resid = 1; c.accum = t == 1;
            c.act = t == 0 ? EK_ACT_RELU : t == 1 ? EK_ACT_SILU : EK_ACT_HARDSWISH;
            c.threads = 3;
            gemm_case_run(level, &c, 5000 + (uint64_t)t);
        }
    }
}

/* ---------------------------------------------------------------------- conv -- */

static void conv_case(int level, int grp, uint64_t seed, ptrdiff_t N, ptrdiff_t C,
                      ptrdiff_t Cout, ptrdiff_t groups, ptrdiff_t H, ptrdiff_t W,
                      ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                      ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dwl, int act, int mode, int threads)
{
    /* mode 0: ek_conv3d (depthwise when grp == G_DW: ek_conv3d_depthwise with work);
       mode 1: packed weights + residual (depthwise: work = NULL, the general path) */
    const ptrdiff_t OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1;
    const ptrdiff_t OW = (W + 2 * pw - dwl * (KW - 1) - 1) / sw + 1;
    const ptrdiff_t Cg = C / groups, Cog = Cout / groups, L = OH * OW, kv = KH * KW;
    const ptrdiff_t xs = N * C * H * W, wsz = Cout * Cg * kv, ysz = N * Cout * L;
    float *x = falloc(xs), *w = falloc(wsz), *b = falloc(Cout), *y = falloc(ysz);
    float *R = falloc(ysz);
    double *ref = (double *)malloc(sizeof(double) * (size_t)ysz);
    double scale = 1.0;
    const float p0 = act_p0(act), p1 = act_p1(act);
    ek_geom3 g;
    char tag[256];
    ptrdiff_t n, co, oh, ow, ci, kh, kw;
    const int resid = grp == G_CONV && mode == 1;
    rng_seed(seed);
    fill_rand(x, xs);
    fill_rand(w, wsz);
    fill_rand(b, Cout);
    fill_rand(R, ysz);
    fill_nan(y, ysz);
    g.D = 1; g.H = H; g.W = W; g.KD = 1; g.KH = KH; g.KW = KW; g.OD = 1; g.OH = OH; g.OW = OW;
    g.sd = 1; g.sh = sh; g.sw = sw; g.pd = 0; g.ph = ph; g.pw = pw; g.dd = 1; g.dh = dh;
    g.dw = dwl;
    for (n = 0; n < N; n++)
        for (co = 0; co < Cout; co++) {
            const ptrdiff_t gi = co / Cog;
            for (oh = 0; oh < OH; oh++)
                for (ow = 0; ow < OW; ow++) {
                    double s = b[co];
                    for (ci = 0; ci < Cg; ci++)
                        for (kh = 0; kh < KH; kh++)
                            for (kw = 0; kw < KW; kw++) {
                                const ptrdiff_t ih = oh * sh - ph + kh * dh;
                                const ptrdiff_t iw = ow * sw - pw + kw * dwl;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                s += (double)w[((co * Cg + ci) * KH + kh) * KW + kw] *
                                     (double)x[((n * C + gi * Cg + ci) * H + ih) * W + iw];
                            }
                    if (resid) s += R[((n * Cout + co) * OH + oh) * OW + ow];
                    if (fabs(s) > scale) scale = fabs(s);
                    ref[((n * Cout + co) * OH + oh) * OW + ow] = act_ref(s, act, p0, p1);
                }
        }
    if (grp == G_DW) {
        const ptrdiff_t ws = mode == 0
            ? EK_ISA_SEL(level, ek_conv_depthwise_workspace)(N, Cout, &g, threads) : 0;
        float *work = ws ? falloc(ws) : NULL;
        EK_ISA_SEL(level, ek_conv3d_depthwise)(x, w, b, y, N, C, Cout, &g, act, p0, p1, work,
                                               threads);
        free(work);
    } else if (mode == 0) {
        const ptrdiff_t ws = EK_ISA_SEL(level, ek_conv_workspace)(C, Cout, groups, &g, threads);
        float *work = ws ? falloc(ws) : NULL;
        EK_ISA_SEL(level, ek_conv3d)(x, w, b, y, N, C, Cout, groups, &g, act, p0, p1, work,
                                     threads);
        free(work);
    } else {
        const ptrdiff_t ws = EK_ISA_SEL(level, ek_conv_packed_workspace)(C, Cout, groups, &g,
                                                                         threads);
        float *work = ws ? falloc(ws) : NULL;
        float *wpk = falloc(EK_ISA_SEL(level, ek_conv_pack_size)(Cout, Cg * kv, groups));
        EK_ISA_SEL(level, ek_conv_pack)(w, Cout, Cg * kv, groups, wpk);
        EK_ISA_SEL(level, ek_conv3d_packed)(x, wpk, b, R, y, N, C, Cout, groups, &g, act, p0,
                                            p1, work, threads);
        free(work);
        free(wpk);
    }
    snprintf(tag, sizeof(tag), "%s N=%ld C=%ld Cout=%ld G=%ld %ldx%ld k%ldx%ld s%ld,%ld "
             "p%ld,%ld d%ld,%ld act=%s mode=%d thr=%d", grp == G_DW ? "depthwise" : "conv",
             (long)N, (long)C, (long)Cout, (long)groups, (long)H, (long)W, (long)KH, (long)KW,
             (long)sh, (long)sw, (long)ph, (long)pw, (long)dh, (long)dwl, act_names[act],
             mode, threads);
    check(grp, tag, y, ref, ysz, scale, grp == G_DW ? TOL_ELT * 4 : TOL_GEMM, level);
    free(x); free(w); free(b); free(y); free(R); free(ref);
}

static void conv_tests(int level, int quick)
{
    /* C, Cout, groups, H, W, KH, KW, sh, sw, ph, pw, dh, dw */
    static const int cases[][13] = {
        {3, 8, 1, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1},   {5, 13, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1},
        {4, 6, 2, 12, 10, 3, 3, 2, 2, 1, 1, 1, 1},  {7, 17, 1, 14, 14, 1, 1, 1, 1, 0, 0, 1, 1},
        {16, 24, 1, 5, 9, 1, 1, 1, 1, 0, 0, 1, 1},  {6, 9, 3, 11, 13, 5, 5, 2, 2, 2, 2, 1, 1},
        {8, 12, 1, 10, 10, 3, 3, 1, 1, 2, 2, 2, 2}, {3, 20, 1, 17, 19, 7, 7, 2, 2, 3, 3, 1, 1},
        {32, 33, 1, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1},  {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},
        {2, 3, 1, 1, 29, 1, 5, 1, 1, 0, 2, 1, 1},   {10, 40, 2, 8, 9, 2, 3, 1, 2, 0, 1, 1, 1}};
    int t, mode;
    for (t = 0; t < NELEM(cases); t++)
        for (mode = 0; mode < 2; mode++) {
            const int *c = cases[t];
            const int act = (t * 5 + mode * 3) % EK_ACT_COUNT;
            if (quick && t % 3) continue;
            conv_case(level, G_CONV, 9000 + (uint64_t)(t * 2 + mode), 1 + (t % 2), c[0], c[1],
                      c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], act,
                      mode, t % 3 == 0 ? 3 : 1);
        }
}

static void depthwise_tests(int level, int quick)
{
    static const int sizes[][2] = {{1, 1},  {2, 3},   {3, 5},   {5, 7},   {7, 7},  {8, 8},
                                   {13, 9}, {14, 14}, {28, 28}, {9, 33},  {1, 37}, {4, 17},
                                   {6, 12}, {11, 4},  {16, 15}, {56, 56}};
    /* KH, KW, sh, sw, ph, pw, dh, dw */
    static const int geoms[][8] = {{3, 3, 1, 1, 1, 1, 1, 1}, {3, 3, 2, 2, 1, 1, 1, 1},
                                   {5, 5, 1, 1, 2, 2, 1, 1}, {5, 5, 2, 2, 2, 2, 1, 1},
                                   {7, 7, 1, 1, 3, 3, 1, 1}, {3, 3, 1, 1, 2, 2, 2, 2},
                                   {1, 1, 1, 1, 0, 0, 1, 1}, {3, 1, 1, 1, 1, 0, 1, 1},
                                   {1, 3, 1, 2, 0, 1, 1, 1}, {2, 2, 2, 2, 0, 0, 1, 1},
                                   {3, 3, 3, 3, 1, 1, 1, 1}, {4, 3, 1, 2, 0, 2, 1, 3}};
    int s, gi, mode;
    for (s = 0; s < NELEM(sizes); s++)
        for (gi = 0; gi < NELEM(geoms); gi++) {
            const int *q = geoms[gi];
            const int H = sizes[s][0], W = sizes[s][1];
            const int mult = (s + gi) % 3 == 0 ? 2 : 1, C = 1 + (s + gi) % 4;
            if (H + 2 * q[4] < q[6] * (q[0] - 1) + 1 || W + 2 * q[5] < q[7] * (q[1] - 1) + 1)
                continue;
            if (quick && (s + gi) % 3) continue;
            for (mode = 0; mode < 2; mode++) {
                const int act = (s * 7 + gi * 3 + mode) % EK_ACT_COUNT;
                if (mode == 1 && (s + gi) % 2) continue;
                conv_case(level, G_DW, 20000 + (uint64_t)(s * 100 + gi * 2 + mode),
                          1 + s % 2, C, C * mult, C, H, W, q[0], q[1], q[2], q[3], q[4], q[5],
                          q[6], q[7], act, mode, (s + gi) % 4 == 0 ? 3 : 1);
            }
        }
}

/* ---------------------------------------------------------------------- pool -- */

static void pool_case(int level, uint64_t seed, ptrdiff_t planes, ptrdiff_t H, ptrdiff_t W,
                      ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t ph,
                      ptrdiff_t pw, ptrdiff_t dh, ptrdiff_t dwl, int ceil_mode, int mode,
                      int nan, int threads)
{
    ptrdiff_t OH = (H + 2 * ph - dh * (KH - 1) - 1 + (ceil_mode ? sh - 1 : 0)) / sh + 1;
    ptrdiff_t OW = (W + 2 * pw - dwl * (KW - 1) - 1 + (ceil_mode ? sw - 1 : 0)) / sw + 1;
    float *x, *y;
    double *ref;
    ptrdiff_t p, oh, ow, kh, kw, i;
    ek_geom3 g;
    char tag[256];
    if (ceil_mode) {   /* PyTorch: the last window must start inside the input or left pad */
        if ((OH - 1) * sh >= H + ph) OH--;
        if ((OW - 1) * sw >= W + pw) OW--;
    }
    x = falloc(planes * H * W);
    y = falloc(planes * OH * OW);
    ref = (double *)malloc(sizeof(double) * (size_t)(planes * OH * OW));
    rng_seed(seed);
    fill_rand(x, planes * H * W);
    if (nan)
        for (i = 0; i < planes * H * W; i += 7 + rng_int(40)) x[i] = NAN;
    fill_nan(y, planes * OH * OW);
    g.D = 1; g.H = H; g.W = W; g.KD = 1; g.KH = KH; g.KW = KW; g.OD = 1; g.OH = OH; g.OW = OW;
    g.sd = 1; g.sh = sh; g.sw = sw; g.pd = 0; g.ph = ph; g.pw = pw; g.dd = 1; g.dh = dh;
    g.dw = dwl;
    for (p = 0; p < planes; p++)
        for (oh = 0; oh < OH; oh++)
            for (ow = 0; ow < OW; ow++) {
                double m = mode == EK_POOL_MAX ? -INFINITY : INFINITY, s = 0.0;
                ptrdiff_t cnt = 0, hs, he, ws, we;
                int seen_nan = 0;
                for (kh = 0; kh < KH; kh++)
                    for (kw = 0; kw < KW; kw++) {
                        const ptrdiff_t ih = oh * sh - ph + kh * dh;
                        const ptrdiff_t iw = ow * sw - pw + kw * dwl;
                        double v;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        v = x[(p * H + ih) * W + iw];
                        if (v != v) seen_nan = 1;
                        else if (mode == EK_POOL_MAX ? v > m : v < m) m = v;
                        s += v;
                        cnt++;
                    }
                if (mode == EK_POOL_AVG) {   /* count_include_pad = 1, end pad = begin pad */
                    hs = oh * sh - ph; he = EK_MIN(hs + KH, H + ph);
                    ws = ow * sw - pw; we = EK_MIN(ws + KW, W + pw);
                    m = s / (double)((he - hs) * (we - ws));
                } else if (seen_nan) {
                    m = NAN;
                }
                (void)cnt;
                ref[(p * OH + oh) * OW + ow] = m;
            }
    EK_ISA_SEL(level, ek_pool3d)(x, y, planes, &g, 0, ph, pw, mode, 1, threads);
    snprintf(tag, sizeof(tag), "pool %s P=%ld %ldx%ld k%ldx%ld s%ld,%ld p%ld,%ld d%ld,%ld "
             "ceil=%d nan=%d thr=%d", mode == EK_POOL_MAX ? "max" : mode == EK_POOL_MIN ? "min"
             : "avg", (long)planes, (long)H, (long)W, (long)KH, (long)KW, (long)sh, (long)sw,
             (long)ph, (long)pw, (long)dh, (long)dwl, ceil_mode, nan, threads);
    check(G_POOL, tag, y, ref, planes * OH * OW, 1.0, TOL_ELT, level);
    free(x); free(y); free(ref);
}

static void pool_tests(int level, int quick)
{
    static const int sizes[][2] = {{1, 1}, {2, 5}, {5, 7},   {7, 7},   {8, 9}, {13, 14},
                                   {1, 31}, {28, 28}, {17, 3}, {33, 10}};
    /* KH, KW, sh, sw, ph, pw, dh, dw */
    static const int geoms[][8] = {{2, 2, 2, 2, 0, 0, 1, 1}, {3, 3, 2, 2, 1, 1, 1, 1},
                                   {3, 3, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 1, 1},
                                   {5, 5, 1, 1, 2, 2, 1, 1}, {3, 3, 1, 1, 0, 0, 2, 2},
                                   {2, 3, 1, 2, 1, 0, 1, 1}, {3, 3, 3, 3, 1, 1, 1, 1},
                                   {1, 4, 1, 1, 0, 2, 1, 1}, {4, 2, 2, 1, 2, 1, 1, 2}};
    int s, gi, mode;
    for (s = 0; s < NELEM(sizes); s++)
        for (gi = 0; gi < NELEM(geoms); gi++) {
            const int *q = geoms[gi];
            const int H = sizes[s][0], W = sizes[s][1];
            if (H + 2 * q[4] < q[6] * (q[0] - 1) + 1 || W + 2 * q[5] < q[7] * (q[1] - 1) + 1)
                continue;
            if (q[4] * 2 > q[0] || q[5] * 2 > q[1]) continue;   /* pad <= kernel / 2 */
            for (mode = 0; mode < 3; mode++) {
                const int u = s * 31 + gi * 7 + mode;
                if (quick && u % 3) continue;
                if (mode == EK_POOL_AVG && (q[6] != 1 || q[7] != 1)) continue;
                pool_case(level, 30000 + (uint64_t)u, 1 + u % 3, H, W, q[0], q[1], q[2], q[3],
                          q[4], q[5], q[6], q[7], u % 2, mode,
                          mode != EK_POOL_AVG && u % 3 == 0, u % 5 == 0 ? 3 : 1);
            }
        }
}

/* --------------------------------------------------------------- elementwise -- */

static void unary_tests(int level, int quick)
{
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 3.0f, -3.0f, 6.0f, -6.0f, 0.5f,
                                    -0.5f, 0.75f, 1e-7f, -1e-7f, 20.0f, -20.0f, 90.0f, -90.0f,
                                    200.0f, -200.0f, INFINITY, -INFINITY, NAN};
    static const int lens[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 37, 1000, 8197};
    int act, li;
    for (act = 0; act < EK_ACT_COUNT; act++)
        for (li = 0; li < NELEM(lens); li++) {
            const ptrdiff_t n = lens[li];
            float *x = falloc(n), *y = falloc(n);
            double *ref = (double *)malloc(sizeof(double) * (size_t)n);
            const float p0 = act_p0(act), p1 = act_p1(act);
            char tag[128];
            ptrdiff_t i;
            if (quick && li % 2) { free(x); free(y); free(ref); continue; }
            rng_seed(40000 + (uint64_t)(act * 100 + li));
            for (i = 0; i < n; i++) {
                const int r = rng_int(4);
                x[i] = r == 0 ? special[rng_int(NELEM(special))]
                              : rng_f() * (r == 1 ? 12.0f : 4.0f);
            }
            for (i = 0; i < n; i++) ref[i] = act_ref(x[i], act, p0, p1);
            fill_nan(y, n);
            EK_ISA_SEL(level, ek_unary)(x, y, n, act, p0, p1, li % 3 == 0 ? 3 : 1);
            snprintf(tag, sizeof(tag), "unary %s n=%ld", act_names[act], (long)n);
            check(G_UNARY, tag, y, ref, n, 0.0, TOL_ELT, level);
            /* in place */
            EK_ISA_SEL(level, ek_unary)(x, x, n, act, p0, p1, 1);
            snprintf(tag, sizeof(tag), "unary %s n=%ld in-place", act_names[act], (long)n);
            check(G_UNARY, tag, x, ref, n, 0.0, TOL_ELT, level);
            free(x); free(y); free(ref);
        }
}

static void affine_tests(int level, int quick)
{
    static const int shapes[][3] = {{1, 3, 1}, {2, 5, 7}, {1, 16, 49}, {3, 7, 33},
                                    {1, 2, 1000}};
    int s, act;
    for (s = 0; s < NELEM(shapes); s++)
        for (act = 0; act < EK_ACT_COUNT; act++) {
            const ptrdiff_t O = shapes[s][0], C = shapes[s][1], I = shapes[s][2], n = O * C * I;
            float *x = falloc(n), *y = falloc(n), *sc = falloc(C), *sh = falloc(C);
            double *ref = (double *)malloc(sizeof(double) * (size_t)n);
            const float p0 = act_p0(act), p1 = act_p1(act);
            char tag[128];
            ptrdiff_t i;
            if (quick && (s + act) % 2) {
                free(x); free(y); free(sc); free(sh); free(ref);
                continue;
            }
            rng_seed(50000 + (uint64_t)(s * 100 + act));
            fill_rand(x, n);
            fill_rand(sc, C);
            fill_rand(sh, C);
            for (i = 0; i < n; i++) {
                x[i] *= 5.0f;
                ref[i] = act_ref((double)x[i] * sc[(i / I) % C] + sh[(i / I) % C], act, p0, p1);
            }
            EK_ISA_SEL(level, ek_channel_affine)(x, sc, sh, y, O, C, I, act, p0, p1, 1);
            snprintf(tag, sizeof(tag), "affine %ldx%ldx%ld %s", (long)O, (long)C, (long)I,
                     act_names[act]);
            check(G_AFFINE, tag, y, ref, n, 0.0, TOL_ELT, level);
            free(x); free(y); free(sc); free(sh); free(ref);
        }
}

/* ---------------------------------------------------------------------- main -- */

int main(int argc, char **argv)
{
    int lv, lo = 0, hi = ek_isa_max_level(), quick = 0, a, gi;
    long total = 0, failed = 0;
    ek_parallel_set_impl(ek_threadpool_entry());
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--level") && a + 1 < argc) {
            lo = hi = atoi(argv[++a]);
            if (lo < 0 || lo > ek_isa_max_level()) {
                printf("level %d unavailable (max %d)\n", lo, ek_isa_max_level());
                return 2;
            }
        } else if (!strcmp(argv[a], "--dump") && a + 1 < argc) {
            dump_file = fopen(argv[++a], "wb");
            if (dump_file == NULL) { perror("dump"); return 2; }
        } else if (!strcmp(argv[a], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[a], "-v")) {
            verbose = 1;
        } else {
            printf("usage: %s [--level L] [--dump FILE] [--quick] [-v]\n", argv[0]);
            return 2;
        }
    }
    printf("neon_check: EK_NEON=%d levels %d..%d threads=%s\n", EK_NEON, lo, hi,
           ek_parallel_impl != NULL ? "pool" : "none");
    for (lv = lo; lv <= hi; lv++) {
        ptrdiff_t geo[5];
        memset(stats, 0, sizeof(stats));
        EK_ISA_SEL(lv, ek_gemm_blocking)(geo);
        printf("level %d (%s): gemm %s, tile %ldx%ld\n", lv, ek_isa_names[lv],
               EK_ISA_SEL(lv, ek_gemm_kind)(), (long)geo[0], (long)geo[1]);
        gemm_tests(lv, quick);
        conv_tests(lv, quick);
        depthwise_tests(lv, quick);
        pool_tests(lv, quick);
        unary_tests(lv, quick);
        affine_tests(lv, quick);
        for (gi = 0; gi < G_COUNT; gi++) {
            const group_stat *st = &stats[gi];
            printf("  %-13s %5ld checks %3ld failed  max rel err %.3g%s%s\n", group_names[gi],
                   st->checks, st->fails, st->max_rel, st->worst[0] ? "  worst: " : "",
                   st->worst);
            total += st->checks;
            failed += st->fails;
        }
    }
    if (dump_file) fclose(dump_file);
    printf("neon_check: %ld checks, %ld failed: %s\n", total, failed, failed ? "FAIL" : "OK");
    return failed ? 1 : 0;
}
