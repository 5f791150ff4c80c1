/*
 * ek_pool.h - max / min / average pooling and adaptive pooling over 3 spatial dims
 * (1-D and 2-D use unit leading dims), on `planes` = N * C independent planes.
 *
 * NaN: a max/min window containing NaN yields NaN (as PyTorch): the running value is
 * replaced when `v > m || v != v` and a NaN running value is never replaced.
 */
#include "ek_common.h"
#include <stdlib.h>

#ifndef EK_POOL_ISA
#define EK_POOL_ISA

#define EK_POOL_CHUNK 256

/* ---------------------------------------------------------- max / min fast path -- */
/*
 * 2-D (and 1-D) max / min pooling with width stride 1 or 2, any kernel, dilation, padding,
 * ceil_mode: each plane is copied into a buffer padded with -inf (+inf for min) wide and
 * tall enough for every window, so no output needs a bounds check; output rows are cut
 * into vector-wide chunks and EK_PL_NB chunks (across rows for narrow maps) are reduced at
 * once in vector registers.  Same NaN rule as the general path (v > m || v != v); on
 * aarch64 NEON's FMAX / FMIN implement it in one instruction.
 */
#define EK_PL_VW EK_VW
#define EK_PL_NB 4
#if defined(__GNUC__) && !defined(EK_NO_VECTOR_EXT)
#define EK_PL_VEC 1
typedef float EK_FN(ek_pl_vf) __attribute__((vector_size(EK_PL_VW * 4)));
typedef int EK_FN(ek_pl_vi) __attribute__((vector_size(EK_PL_VW * 4)));
#if EK_PL_VW == 16
#define EK_PL_EVEN {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#elif EK_PL_VW == 8
#define EK_PL_EVEN {0, 2, 4, 6, 8, 10, 12, 14}
#else
#define EK_PL_EVEN {0, 2, 4, 6}
#endif
#else
#define EK_PL_VEC 0
#endif

/* Padded-plane geometry (P pitch, Hp rows, cpr chunks per output row); 0: no fast path.
   The fast path reduces every tap of every window, inside the input or not, from a copy
   of the plane padded for all windows: it is taken only while the kernel is not much
   larger than the input (then that work is bounded by output size x input size) and the
   padded copy stays within a small multiple of the input and output planes.  A hostile
   kernel, stride, dilation or padding takes the general path, which visits only the taps
   inside the input.  (The geometry passed ek_geom3_check: no term below wraps.) */
EK_INLINE int EK_FN(ek_pool_fast_geom)(const ek_geom3 *g, ptrdiff_t *P, ptrdiff_t *Hp,
                                       ptrdiff_t *cpr)
{
    ptrdiff_t owr, size, bound;
    if (!EK_PL_VEC || g->KD != 1 || g->OD != 1 || g->D != 1 || g->sw > 2) return 0;
    if (g->KH > 2 * g->H + 16 || g->KW > 2 * g->W + 16) return 0;
    *cpr = (g->OW + EK_PL_VW - 1) / EK_PL_VW;
    owr = *cpr * EK_PL_VW;
    *P = EK_MAX(g->pw + g->W, g->sw * owr + (g->KW - 1) * g->dw);
    *Hp = EK_MAX(g->ph + g->H, (g->OH - 1) * g->sh + (g->KH - 1) * g->dh + 1);
    size = ek_szmul(*Hp, *P);
    bound = ek_szadd(ek_szmul(4, ek_szadd(ek_szmul(g->H, g->W), ek_szmul(g->OH, g->OW))),
                     65536);
    return size >= 0 && bound >= 0 && size <= bound;
}

#if EK_PL_VEC
EK_INLINE EK_FN(ek_pl_vf) EK_FN(ek_pl_load)(const int S, const float *t)
{
    EK_FN(ek_pl_vf) v;
    if (S == 1) {
        memcpy(&v, t, sizeof(v));
    } else {
        EK_FN(ek_pl_vf) lo, hi;
        const EK_FN(ek_pl_vi) sel = EK_PL_EVEN;
        memcpy(&lo, t, sizeof(lo));
        memcpy(&hi, t + EK_PL_VW, sizeof(hi));
        v = __builtin_shuffle(lo, hi, sel);
    }
    return v;
}

/* The plane kernel of this instruction set (ek_pool_plane): f32/pool_<isa>.h. */
#include EK_ISA_FILE(f32, pool)

#define EK_PL_DEF(S_, M_)                                                                \
    static EK_NOINLINE void EK_FN(ek_pool_plane_##S_##_##M_)(                            \
        const float *xp, float *y, const ek_geom3 *g, ptrdiff_t P, ptrdiff_t cpr)        \
    {                                                                                    \
        EK_FN(ek_pool_plane)(S_, M_, xp, y, g, P, cpr);                                  \
    }
EK_PL_DEF(1, 1) EK_PL_DEF(1, 0) EK_PL_DEF(2, 1) EK_PL_DEF(2, 0)
#undef EK_PL_DEF

typedef struct {
    const float *x;
    float *y;
    const ek_geom3 *g;
    float *bufs;                /* one padded plane (Hp x P) per worker */
    ptrdiff_t planes, P, Hp, cpr, ntiles;
    int is_max;
} EK_FN(ek_pool_fast_job);

static void EK_FN(ek_pool_fast_tile)(void *ctx, ptrdiff_t t, int worker)
{
    const EK_FN(ek_pool_fast_job) *j = (const EK_FN(ek_pool_fast_job) *)ctx;
    const ek_geom3 *g = j->g;
    const ptrdiff_t P = j->P, Hp = j->Hp, cpr = j->cpr;
    const ptrdiff_t inL = g->H * g->W, L = g->OH * g->OW;
    const float init = j->is_max ? -INFINITY : INFINITY;
    float *xp = j->bufs + (ptrdiff_t)worker * Hp * P;
    ptrdiff_t pl, p0, p1;
    ek_tile_span(t, j->ntiles, j->planes, &p0, &p1);
    for (pl = p0; pl < p1; pl++) {
        const float *xin = j->x + pl * inL;
        float *y = j->y + pl * L;
        ptrdiff_t r, i;
        for (r = 0; r < Hp; r++) {
            float *d = xp + r * P;
            const ptrdiff_t ih = r - g->ph;
            if (ih < 0 || ih >= g->H) {
                for (i = 0; i < P; i++) d[i] = init;
                continue;
            }
            for (i = 0; i < g->pw; i++) d[i] = init;
            memcpy(d + g->pw, xin + ih * g->W, (size_t)g->W * sizeof(float));
            for (i = g->pw + g->W; i < P; i++) d[i] = init;
        }
        if (g->sw == 1) {
            if (j->is_max) EK_FN(ek_pool_plane_1_1)(xp, y, g, P, cpr);
            else EK_FN(ek_pool_plane_1_0)(xp, y, g, P, cpr);
        } else {
            if (j->is_max) EK_FN(ek_pool_plane_2_1)(xp, y, g, P, cpr);
            else EK_FN(ek_pool_plane_2_0)(xp, y, g, P, cpr);
        }
    }
}

/* The fast path over all planes; returns 0 (nothing done) when it does not apply or its
   buffers cannot be allocated. */
static int EK_FN(ek_pool_fast)(const float *x, float *y, ptrdiff_t planes, const ek_geom3 *g,
                               int is_max, int nthreads)
{
    EK_FN(ek_pool_fast_job) j;
    const ptrdiff_t L = g->OH * g->OW;
    int threads;
    if (!EK_FN(ek_pool_fast_geom)(g, &j.P, &j.Hp, &j.cpr)) return 0;
    threads = ek_nthreads_work(nthreads, planes,
                               ek_mul_sat(ek_mul_sat(planes, L), g->KH * g->KW));
    j.bufs = (float *)malloc((size_t)(threads * j.Hp * j.P) * sizeof(float));
    if (j.bufs == NULL) return 0;
    j.x = x; j.y = y; j.g = g; j.planes = planes; j.is_max = is_max;
    j.ntiles = ek_tile_count(threads, planes);
    ek_parallelize(threads, j.ntiles, EK_FN(ek_pool_fast_tile), &j);
    free(j.bufs);
    return 1;
}
#else
static int EK_FN(ek_pool_fast)(const float *x, float *y, ptrdiff_t planes, const ek_geom3 *g,
                               int is_max, int nthreads)
{
    (void)x; (void)y; (void)planes; (void)g; (void)is_max; (void)nthreads;
    return 0;
}
#endif
#undef EK_PL_VEC
#undef EK_PL_EVEN
#undef EK_PL_NB
#undef EK_PL_VW

/* ------------------------------------------- max / min / avg x86 (AVX2 / AVX-512) -- */
/*
 * 2-D max / min / average pooling with square 2x2 / 3x3 windows, equal strides 1 or 2, no
 * dilation, pads below the window (GoogLeNet / ResNet / VGG / Inception / DenseNet pools,
 * ceil_mode or not), straight from the input (no padded copy).  Output rows in blocks of R
 * (AVX-512 8, or 7 for maps 7 * odd rows tall; AVX2 4) times one vector of columns.
 * Stride 1: each input row of the block's windows is reduced across the window columns
 * once and feeds every output row whose window holds it.  Stride 2: each output row's
 * window rows are reduced first, on the raw column vectors, then its columns once: even /
 * odd floats by in-lane shuffles (as in the depthwise kernel of ek_conv.h), the column
 * order restored in the store.  Columns outside the input are masked off in the loads
 * (filled with -inf, +inf for min, 0 for avg), rows outside it skipped.  Average: the
 * window sum times 1 / divisor, the divisor (count_include_pad or not, pad_end) being a
 * row factor times a column factor, both tabulated once per call.
 *
 * NaN (max / min): a window containing NaN yields NaN, as the general path.  A block is
 * first computed with plain max / min (which may drop a NaN) while the FMA unit sums the
 * squares of every loaded vector, NaN only if an input is NaN (infinities square to +inf);
 * a block whose probe is NaN is recomputed with NaN-propagating reductions (AVX-512: a
 * masked max keeping the new value where it is NaN; AVX2: OR of max(a, b) and max(b, a),
 * NaN when either is).  Sums propagate NaN by themselves.
 */
#if EKX
#define EKP_MAXCH 64


/* Reduction op: max / min of a (the new value) and b (the running one), `safe`: NaN when
   either is NaN, else plain max / min; or the sum (op EKP_AVG). */
#define EKP_AVG 2


/* Loads per input row and column vector: S == 1: K (at c + kw); S == 2: AVX-512 c + {0,
   VW} (and 2 VW for K == 3), AVX2 c + 2 m + {0, VW}. */
#define EKP_T(S, K) ((S) == 1 ? (K) : EKX_AVX512 ? (K) : 2 * (((K) + 1) / 2))

/* Offset of load t from the chunk's first column. */
EK_INLINE ptrdiff_t EK_FN(ekp_off)(int S, ptrdiff_t t)
{
    if (S == 1) return t;
    if (EKX_AVX512) return t * EKX_VW;
    return (t & ~(ptrdiff_t)1) + (t & 1) * EKX_VW;
}

/* One column vector of output rows oh0 .. oh0 + R - 1; rows[i]: input row S oh0 - ph + i
   (NULL outside the input), read from column c; cm: the chunk's load masks (M: masked
   loads).  Without `safe`, returns nonzero when an input was NaN (then the block must be
   redone with `safe`).  Average: the window sums times rinv[j] (row) times cinv (columns). */
EK_INLINE int EK_FN(ekp_block)(const int S, const int K, const int op, const int R,
                               const int M, const int safe, const float *const *rows,
                               ptrdiff_t c, const EKX_M *cm, EKX_V fill, float *out,
                               ptrdiff_t OW, int full, EKX_M sm, const float *rinv,
                               EKX_V cinv)
{
    const int T = EKP_T(S, K);
    EKX_V probe[2][4];             /* (independent FMA chains) */
    int i, j, t;
#define EKP_LOAD(i_, t_, dst)                                                              \
    do {                                                                                   \
        const float *p_ = rows[i_] + c + EK_FN(ekp_off)(S, t_);                            \
        (dst) = M ? ekx_ldf(p_, cm[t_], fill) : ekx_ld(p_);                                \
        if (!safe && op != EKP_AVG)                                                        \
            probe[(i_) & 1][t_] = ekx_fma((dst), (dst), probe[(i_) & 1][t_]);              \
    } while (0)
    for (t = 0; t < 4; t++) probe[0][t] = probe[1][t] = ekx_set1(0.0f);
    if (S == 2) {
        /* the window rows first, on the raw column vectors; then the window columns once
           per output row */
        EKX_V va[EKX_RB][4];
#pragma GCC unroll 24
        for (i = 0; i < 2 * (R - 1) + K; i++) {
            EKX_V raw[4];
#pragma GCC unroll 4
            for (t = 0; t < T; t++) {
                if (rows[i] == NULL) raw[t] = fill;
                else EKP_LOAD(i, t, raw[t]);
            }
#pragma GCC unroll 8
            for (j = 0; j < R; j++) {
                const int kh = i - 2 * j;
                EKX_V e, od, r;
                if (kh < 0 || kh >= K) continue;
#pragma GCC unroll 4
                for (t = 0; t < T; t++)
                    va[j][t] = kh == 0 ? raw[t] : EK_FN(ekx_red)(op, safe, raw[t], va[j][t]);
                if (kh != K - 1) continue;
                /* row j complete: its window columns */
                EK_FN(ekx_deint)(va[j][0], va[j][1], &e, &od);
                r = EK_FN(ekx_red)(op, safe, od, e);
                if (K > 2) {
                    EKX_V e1, o1;
#if EKX_AVX512
                    const __m512i ai = _mm512_castps_si512(va[j][0]);
                    const __m512i bi = _mm512_castps_si512(va[j][1]);
                    const __m512i ni = _mm512_castps_si512(va[j][2]);
                    EK_FN(ekx_deint)(_mm512_castsi512_ps(_mm512_alignr_epi32(bi, ai, 2)),
                                     _mm512_castsi512_ps(_mm512_alignr_epi32(ni, bi, 2)), &e1,
                                     &o1);
#else
                    EK_FN(ekx_deint)(va[j][2], va[j][3], &e1, &o1);
#endif
                    r = EK_FN(ekx_red)(op, safe, e1, r);
                }
                r = EK_FN(ekx_unperm)(r);
                if (op == EKP_AVG) r = EKX_MUL(EKX_MUL(r, ekx_set1(rinv[j])), cinv);
                if (full) ekx_st(out + j * OW, r);
                else ekx_stm(out + j * OW, sm, r);
            }
        }
    } else {
        /* each input row across the window columns once, then into every output row whose
           window holds it */
        EKX_V acc[EKX_RB];
#pragma GCC unroll 24
        for (i = 0; i < R - 1 + K; i++) {
            EKX_V h = fill;
            if (rows[i] != NULL) {
                EKX_V tv[3];
#pragma GCC unroll 3
                for (t = 0; t < K; t++) EKP_LOAD(i, t, tv[t]);
                h = tv[0];
#pragma GCC unroll 3
                for (t = 1; t < K; t++) h = EK_FN(ekx_red)(op, safe, tv[t], h);
            }
#pragma GCC unroll 8
            for (j = 0; j < R; j++) {
                const int kh = i - j;
                if (kh == 0) acc[j] = h;
                else if (kh > 0 && kh < K) acc[j] = EK_FN(ekx_red)(op, safe, h, acc[j]);
            }
        }
#pragma GCC unroll 8
        for (j = 0; j < R; j++) {
            EKX_V r = acc[j];
            if (op == EKP_AVG) r = EKX_MUL(EKX_MUL(r, ekx_set1(rinv[j])), cinv);
            if (full) ekx_st(out + j * OW, r);
            else ekx_stm(out + j * OW, sm, r);
        }
    }
#undef EKP_LOAD
    if (safe || op == EKP_AVG) return 0;
    for (t = 1; t < T; t++) probe[0][0] = EKX_ADD(probe[0][0], probe[0][t]);
    for (t = 0; t < T; t++) probe[0][0] = EKX_ADD(probe[0][0], probe[1][t]);
    return ekx_hasnan(probe[0][0]);
}

typedef struct {
    const ek_geom3 *g;
    ptrdiff_t cpr, T;
    const EKX_M *cm;               /* [cpr][T] load masks */
    const unsigned char *edge;     /* [cpr]: the chunk needs masked loads */
    EKX_M sm;                      /* store mask of a partial last chunk */
    const float *rinv;             /* average: [OH] 1 / row divisor factor */
    const EKX_V *cinv;             /* average: [cpr] 1 / column divisor factors */
} EK_FN(ekp_ctx);

#define EKP_BLK(R_, M_, safe_)                                                             \
    EK_FN(ekp_block)(S, K, op, R_, M_, safe_, rows, c, cm, fill, out, OW, full, cx->sm,    \
                     cx->rinv + oh0, cx->cinv[ci])
#if EKX_ALLMASKED
#define EKP_CHUNK(R_)                                                                      \
    do {                                                                                   \
        if (EKP_BLK(R_, 1, 0)) EKP_BLK(R_, 1, 1);                                          \
    } while (0)
#else
#define EKP_CHUNK(R_)                                                                      \
    do {                                                                                   \
        if (cx->edge[ci]) {                                                                \
            if (EKP_BLK(R_, 1, 0)) EKP_BLK(R_, 1, 1);                                      \
        } else {                                                                           \
            if (EKP_BLK(R_, 0, 0)) EKP_BLK(R_, 0, 1);                                      \
        }                                                                                  \
    } while (0)
#endif

/* One plane. */
EK_INLINE void EK_FN(ekp_plane)(const int S, const int K, const int op,
                                const EK_FN(ekp_ctx) *cx, const float *xin, float *yp)
{
    const ek_geom3 *g = cx->g;
    const ptrdiff_t OW = g->OW;
    const EKX_V fill = ekx_set1(op == 1 ? -INFINITY : op == 0 ? INFINITY : 0.0f);
    /* blocks of 7 rows where 8 do not divide the map and 7 do (GoogLeNet-like maps are
       7 * 2^k tall) */
    const int RB = EKX_RB == 8 && g->OH % 8 != 0 && g->OH % 7 == 0 ? 7 : EKX_RB;
    ptrdiff_t oh0 = 0;
    while (oh0 < g->OH) {
        const ptrdiff_t left = g->OH - oh0;
        const int R = left >= RB ? RB : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        const float *rows[2 * EKX_RB + 4];
        ptrdiff_t ci;
        int i;
        for (i = 0; i < S * (R - 1) + K; i++) {
            const ptrdiff_t ih = S * oh0 - g->ph + i;
            rows[i] = ih >= 0 && ih < g->H ? xin + ih * g->W : NULL;
        }
        for (ci = 0; ci < cx->cpr; ci++) {
            const ptrdiff_t ow0 = ci * EKX_VW, c = S * ow0 - g->pw;
            const EKX_M *cm = cx->cm + ci * cx->T;
            const int full = ow0 + EKX_VW <= OW;
            float *out = yp + oh0 * OW + ow0;
            if (R == EKX_RB) EKP_CHUNK(EKX_RB);
#if EKX_RB == 8
            else if (R == 7) EKP_CHUNK(7);
#endif
#if EKX_RB > 4
            else if (R == 4) EKP_CHUNK(4);
#endif
            else if (R == 2) EKP_CHUNK(2);
            else EKP_CHUNK(1);
        }
        oh0 += R;
    }
}
#undef EKP_CHUNK
#undef EKP_BLK

#define EKP_DEF(S_, K_, M_)                                                                \
    static EK_NOINLINE void EK_FN(ekp_plane_##S_##_##K_##_##M_)(const EK_FN(ekp_ctx) *cx,   \
                                                              const float *xin, float *yp) \
    {                                                                                      \
        EK_FN(ekp_plane)(S_, K_, M_, cx, xin, yp);                                         \
    }
EKP_DEF(1, 3, 1) EKP_DEF(1, 3, 0) EKP_DEF(2, 3, 1) EKP_DEF(2, 3, 0)
EKP_DEF(1, 2, 1) EKP_DEF(1, 2, 0) EKP_DEF(2, 2, 1) EKP_DEF(2, 2, 0)
EKP_DEF(1, 3, 2) EKP_DEF(2, 3, 2) EKP_DEF(1, 2, 2) EKP_DEF(2, 2, 2)
#undef EKP_DEF

typedef struct {
    const EK_FN(ekp_ctx) *cx;
    const float *x;
    float *y;
    ptrdiff_t inL, L, S, K;
    int op;
} EK_FN(ekp_job);

static void EK_FN(ekp_rows)(const void *args, ptrdiff_t p0, ptrdiff_t p1)
{
    const EK_FN(ekp_job) *j = (const EK_FN(ekp_job) *)args;
    const EK_FN(ekp_ctx) *cx = j->cx;
    const ptrdiff_t S = j->S, K = j->K;
    const int op = j->op;
    ptrdiff_t pl;
    for (pl = p0; pl < p1; pl++) {
        const float *xin = j->x + pl * j->inL;
        float *yp = j->y + pl * j->L;
#define EKP_CALL(S_, K_)                                                                   \
    do {                                                                                   \
        if (op == 1) EK_FN(ekp_plane_##S_##_##K_##_1)(cx, xin, yp);                        \
        else if (op == 0) EK_FN(ekp_plane_##S_##_##K_##_0)(cx, xin, yp);                   \
        else EK_FN(ekp_plane_##S_##_##K_##_2)(cx, xin, yp);                                \
    } while (0)
        if (K == 3) {
            if (S == 1) EKP_CALL(1, 3);
            else EKP_CALL(2, 3);
        } else {
            if (S == 1) EKP_CALL(1, 2);
            else EKP_CALL(2, 2);
        }
#undef EKP_CALL
    }
}

/* The x86 path over all planes; 0 (nothing done) when the geometry is not one it takes.
   mode, count_include_pad, pe_h, pe_w as ek_pool3d. */
static int EK_FN(ekp_pool)(const float *x, float *y, ptrdiff_t planes, const ek_geom3 *g,
                           int mode, int count_include_pad, ptrdiff_t pe_h, ptrdiff_t pe_w,
                           int nthreads)
{
    enum { MAXROWS = 1024 };
    const ptrdiff_t S = g->sw, K = g->KW, inL = g->H * g->W, L = g->OH * g->OW;
    const int op = mode == EK_POOL_MAX ? 1 : mode == EK_POOL_MIN ? 0 : EKP_AVG;
    EK_FN(ekp_ctx) cx;
    EKX_M cm[EKP_MAXCH * 4];
    EKX_V cinv[EKP_MAXCH];
    float rinv[MAXROWS];
    unsigned char edge[EKP_MAXCH];
    EK_FN(ekp_job) job;
    ptrdiff_t ci, t;
    if (g->KD != 1 || g->OD != 1 || g->D != 1 || g->KH != K || (K != 2 && K != 3) ||
        g->sh != S || S > 2 || g->dh != 1 || g->dw != 1 || g->ph >= K || g->pw >= K)
        return 0;
    cx.cpr = (g->OW + EKX_VW - 1) / EKX_VW;
    if (cx.cpr > EKP_MAXCH || (op == EKP_AVG && g->OH > MAXROWS)) return 0;
    cx.T = EKP_T(S, K);
    cx.g = g;
    for (ci = 0; ci < cx.cpr; ci++) {
        const ptrdiff_t c = S * ci * EKX_VW - g->pw;
        edge[ci] = 0;
        for (t = 0; t < cx.T; t++) {
            const ptrdiff_t o = c + EK_FN(ekp_off)((int)S, t);
            cm[ci * cx.T + t] = EK_FN(ekx_mask)(-o, g->W - o);
            if (o < 0 || o + EKX_VW > g->W) edge[ci] = 1;
        }
        cinv[ci] = ekx_set1(1.0f);
    }
    if (op == EKP_AVG) {
        /* divisor = row factor * column factor (PyTorch's, see ek_pool3d) */
        float f[EKX_VW];
        ptrdiff_t o, l;
        for (o = 0; o < g->OH; o++) {
            const ptrdiff_t s0 = o * S - g->ph, e = EK_MIN(s0 + K, g->H + pe_h);
            const ptrdiff_t n = count_include_pad
                                    ? e - s0 : EK_MAX(EK_MIN(e, g->H) - EK_MAX(s0, 0), 0);
            rinv[o] = 1.0f / (float)n;
        }
        for (ci = 0; ci < cx.cpr; ci++) {
            for (l = 0; l < EKX_VW; l++) {
                const ptrdiff_t s0 = (ci * EKX_VW + l) * S - g->pw;
                const ptrdiff_t e = EK_MIN(s0 + K, g->W + pe_w);
                const ptrdiff_t n = count_include_pad
                                        ? e - s0 : EK_MAX(EK_MIN(e, g->W) - EK_MAX(s0, 0), 0);
                f[l] = 1.0f / (float)n;
            }
            memcpy(&cinv[ci], f, sizeof(f));
        }
    }
    cx.cm = cm;
    cx.edge = edge;
    cx.sm = EK_FN(ekx_mask)(0, g->OW - (cx.cpr - 1) * EKX_VW);
    cx.rinv = rinv;
    cx.cinv = cinv;
    job.cx = &cx; job.x = x; job.y = y; job.inL = inL; job.L = L; job.S = S; job.K = K;
    job.op = op;
    ek_parallel_rows(ek_nthreads_work(nthreads, planes, planes * (inL + L)), planes,
                     EK_FN(ekp_rows), &job);
    return 1;
}
#undef EKP_AVG
#undef EKP_MAXCH
#undef EKP_T
#define EK_PLX 1
#else
#define EK_PLX 0
#endif

typedef struct {
    const float *x;
    float *y;
    const ek_geom3 *g;
    ptrdiff_t pe_d, pe_h, pe_w, kwlo, kwhi;
    int mode, count_include_pad, per_output;
} EK_FN(ek_pool3d_args);

/* Output rows [r0, r1) of ek_pool3d's general path (r: plane, od, oh). */
static void EK_FN(ek_pool3d_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_pool3d_args) *a = (const EK_FN(ek_pool3d_args) *)args;
    const float *EK_RESTRICT x = a->x;
    float *EK_RESTRICT y = a->y;
    const ek_geom3 *g = a->g;
    const ptrdiff_t inL = g->D * g->H * g->W;
    const ptrdiff_t pe_d = a->pe_d, pe_h = a->pe_h, pe_w = a->pe_w;
    const ptrdiff_t kwlo = a->kwlo, kwhi = a->kwhi;
    const int mode = a->mode, count_include_pad = a->count_include_pad;
    const int per_output = a->per_output;
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        const ptrdiff_t p = r / (g->OD * g->OH), od = (r / g->OH) % g->OD, oh = r % g->OH;
        const float *xp = x + p * inL;
        float *EK_RESTRICT yrow = y + r * g->OW;
        const ptrdiff_t d0 = od * g->sd - g->pd, h0 = oh * g->sh - g->ph;
        const ptrdiff_t sw = g->sw;
        ptrdiff_t ow, kd, kh, kw;
        if (mode != EK_POOL_AVG) {
            /* One pass per kernel tap over the output row: vectorisable selects. */
            const int is_max = (mode == EK_POOL_MAX);
            const float init = is_max ? -INFINITY : INFINITY;
            ptrdiff_t kdlo, kdhi, khlo, khhi;
            /* the kd / kh taps inside the input */
            EK_FN(ek_valid_range)(g->KD, g->D, g->dd, d0, &kdlo, &kdhi);
            EK_FN(ek_valid_range)(g->KH, g->H, g->dh, h0, &khlo, &khhi);
            for (ow = 0; ow < g->OW; ow++) yrow[ow] = init;
            for (kd = kdlo; kd < kdhi; kd++) {
                const ptrdiff_t id = d0 + kd * g->dd;
                for (kh = khlo; kh < khhi; kh++) {
                    const ptrdiff_t ih = h0 + kh * g->dh;
                    const float *EK_RESTRICT xr = xp + (id * g->H + ih) * g->W;
                    if (per_output) {
                        /* each output's own taps (in the same order as below) */
                        for (ow = 0; ow < g->OW; ow++) {
                            const ptrdiff_t w0 = ow * sw - g->pw;
                            ptrdiff_t lo, hi;
                            float m = yrow[ow];
                            EK_FN(ek_valid_range)(g->KW, g->W, g->dw, w0, &lo, &hi);
                            for (kw = lo; kw < hi; kw++) {
                                const float v = xr[w0 + kw * g->dw];
                                if (is_max ? (v > m || v != v) : (v < m || v != v)) m = v;
                            }
                            yrow[ow] = m;
                        }
                        continue;
                    }
                    for (kw = kwlo; kw < kwhi; kw++) {
                        const ptrdiff_t off = kw * g->dw - g->pw;
                        const float *EK_RESTRICT xs = xr + off;
                        ptrdiff_t lo, hi;
                        EK_FN(ek_valid_range)(g->OW, g->W, sw, off, &lo, &hi);
                        if (is_max) {
                            if (sw == 1) {
                                for (ow = lo; ow < hi; ow++) {
                                    const float v = xs[ow], m = yrow[ow];
                                    yrow[ow] = (v > m || v != v) ? v : m;
                                }
                            } else if (sw == 2) {
                                for (ow = lo; ow < hi; ow++) {
                                    const float v = xs[2 * ow], m = yrow[ow];
                                    yrow[ow] = (v > m || v != v) ? v : m;
                                }
                            } else {
                                for (ow = lo; ow < hi; ow++) {
                                    const float v = xr[ow * sw + off], m = yrow[ow];
                                    yrow[ow] = (v > m || v != v) ? v : m;
                                }
                            }
                        } else {
                            for (ow = lo; ow < hi; ow++) {
                                const float v = xr[ow * sw + off], m = yrow[ow];
                                yrow[ow] = (v < m || v != v) ? v : m;
                            }
                        }
                    }
                }
            }
        } else {
            /* Divisor pieces along D and H (constant over the row). */
            ptrdiff_t de = EK_MIN(d0 + g->KD, g->D + pe_d), he = EK_MIN(h0 + g->KH, g->H + pe_h);
            const ptrdiff_t dsz = de - d0, hsz = he - h0;
            const ptrdiff_t ds = EK_MAX(d0, 0), hs = EK_MAX(h0, 0);
            ptrdiff_t c0;
            de = EK_MIN(de, g->D);
            he = EK_MIN(he, g->H);
            for (c0 = 0; c0 < g->OW; c0 += EK_POOL_CHUNK) {
                const ptrdiff_t nc = EK_MIN(EK_POOL_CHUNK, g->OW - c0);
                double acc[EK_POOL_CHUNK];
                ptrdiff_t id, ih, j;
                for (j = 0; j < nc; j++) acc[j] = 0.0;
                for (id = ds; id < de; id++)
                    for (ih = hs; ih < he; ih++) {
                        const float *EK_RESTRICT xr = xp + (id * g->H + ih) * g->W;
                        if (per_output) {
                            for (j = 0; j < nc; j++) {
                                const ptrdiff_t w0 = (c0 + j) * sw - g->pw;
                                const ptrdiff_t lo = EK_MAX(w0, 0);
                                const ptrdiff_t hi = EK_MIN(w0 + g->KW, g->W);
                                ptrdiff_t i;
                                for (i = lo; i < hi; i++) acc[j] += (double)xr[i];
                            }
                            continue;
                        }
                        for (kw = kwlo; kw < kwhi; kw++) {
                            const ptrdiff_t off = kw - g->pw;
                            ptrdiff_t lo, hi;
                            EK_FN(ek_valid_range)(g->OW, g->W, sw, off, &lo, &hi);
                            lo = EK_MAX(lo, c0);
                            hi = EK_MIN(hi, c0 + nc);
                            for (ow = lo; ow < hi; ow++)
                                acc[ow - c0] += (double)xr[ow * sw + off];
                        }
                    }
                for (j = 0; j < nc; j++) {
                    const ptrdiff_t w0 = (c0 + j) * sw - g->pw;
                    ptrdiff_t we = EK_MIN(w0 + g->KW, g->W + pe_w);
                    const ptrdiff_t wsz = we - w0, ws = EK_MAX(w0, 0);
                    double div;
                    we = EK_MIN(we, g->W);
                    /* in double: the product of three hostile sizes may not fit 64 bits
                       (exact, as the integer product was, while below 2^53) */
                    if (count_include_pad)
                        div = (double)dsz * (double)hsz * (double)wsz;
                    else
                        div = (double)EK_MAX(de - ds, 0) * (double)EK_MAX(he - hs, 0) *
                              (double)EK_MAX(we - ws, 0);
                    yrow[c0 + j] = (float)(acc[j] / div);
                }
            }
        }
    }
}

/*
 * y[p][od][oh][ow] = reduce over the window of x[p]:
 *   window taps kd < KD, kh < KH, kw < KW at input position o*s - pad_begin + k*dil;
 *   taps outside the input are skipped (max/min) or count as zeros (avg).
 * mode: EK_POOL_MAX, EK_POOL_MIN, EK_POOL_AVG.  Average divisor (PyTorch), per dim:
 *   start = o*s - pb; end = min(start + k, in + pe); size = end - start;
 *   clipped = min(end, in) - max(start, 0);
 *   divisor = product of `size` if count_include_pad else product of `clipped`.
 * Average pooling ignores dilation (it must be 1).  An empty max window yields -inf
 * (+inf for min), an empty avg window with divisor 0 yields NaN (0/0).
 * g: D/H/W input sizes, KD/KH/KW kernel, OD/OH/OW output, sd.. strides, pd.. pad begin,
 * dd.. dilation.  pe_d/pe_h/pe_w: padding at the end (avg divisor only).
 * Work: only the taps that hit the input are visited (per output row the kd / kh ranges
 * are clipped to the input, and the kw loop to the taps some output of the row reads, or,
 * when that range is much wider than the input row - a kernel far larger than the input,
 * with a large stride - each output's own clipped range), so a hostile kernel size costs
 * at most output size x input extent, never kernel-size iterations.
 * Preconditions: x has planes*D*H*W floats, y has planes*OD*OH*OW floats (no overlap);
 * the geometry passed ek_geom3_check (with pe_d, pe_h, pe_w as its pad_end).
 */
EK_API void EK_FN(ek_pool3d)(const float *EK_RESTRICT x, float *EK_RESTRICT y,
                             ptrdiff_t planes, const ek_geom3 *g, ptrdiff_t pe_d,
                             ptrdiff_t pe_h, ptrdiff_t pe_w, int mode, int count_include_pad,
                             int nthreads)
{
    const ptrdiff_t rows = planes * g->OD * g->OH;
    /* (work estimate: the clipped taps, at most min(kernel, input) per dim) */
    const ptrdiff_t taps = ek_mul_sat(ek_mul_sat(EK_MIN(g->KD, g->D), EK_MIN(g->KH, g->H)),
                                      EK_MIN(g->KW, g->W));
    const int threads = ek_nthreads_work(nthreads, rows,
                                         ek_mul_sat(ek_mul_sat(rows, g->OW), taps));
    /* kw taps some output of a row reads: kw dw - pw in [-(OW - 1) sw, W) */
    const ptrdiff_t wspan = (g->OW - 1) * g->sw;
    ptrdiff_t kwlo, kwhi;
    int per_output;
    EK_FN(ek_pool3d_args) a;
#if EK_PLX
    if (EK_FN(ekp_pool)(x, y, planes, g, mode, count_include_pad, pe_h, pe_w, nthreads)) return;
#endif
    if (mode != EK_POOL_AVG && EK_FN(ek_pool_fast)(x, y, planes, g, mode == EK_POOL_MAX,
                                                   nthreads))
        return;
    EK_FN(ek_valid_range)(g->KW, wspan + g->W, mode == EK_POOL_AVG ? 1 : g->dw,
                          wspan - g->pw, &kwlo, &kwhi);
    /* tap by tap over the row (vectorisable) unless that range is far wider than the row */
    per_output = kwhi - kwlo > 2 * (g->W + g->OW) + 64;
    a.x = x; a.y = y; a.g = g; a.pe_d = pe_d; a.pe_h = pe_h; a.pe_w = pe_w; a.mode = mode;
    a.count_include_pad = count_include_pad; a.kwlo = kwlo; a.kwhi = kwhi;
    a.per_output = per_output;
    ek_parallel_rows(threads, rows, EK_FN(ek_pool3d_rows), &a);
}

/* Sum of n floats in double precision over 8 independent chains: a single chain is bound by
   the add latency (4 cycles per element: 55 us for MobileNetV2's 1280 x 7 x 7 global
   pool); 8 chains vectorise and run at load speed. */
EK_INLINE double EK_FN(ek_sum_f64)(const float *EK_RESTRICT x, ptrdiff_t n)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0;
    int j;
    for (; i + 8 <= n; i += 8)
        for (j = 0; j < 8; j++) s[j] += (double)x[i + j];
    for (j = 0; i < n; i++, j++) s[j] += (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

typedef struct {
    const float *x;
    float *y;
    const ek_geom3 *g;
    int mode;
} EK_FN(ek_adaptive_args);

/* Global average pooling of planes [p0, p1): one contiguous sum per plane, none of the
   window arithmetic (its integer divisions cost more than summing a 7 x 7 plane). */
static void EK_FN(ek_global_avg_rows)(const void *args, ptrdiff_t p0, ptrdiff_t p1)
{
    const EK_FN(ek_adaptive_args) *a = (const EK_FN(ek_adaptive_args) *)args;
    const ptrdiff_t inL = a->g->D * a->g->H * a->g->W;
    const double inv = 1.0 / (double)inL;
    ptrdiff_t r;
    for (r = p0; r < p1; r++) a->y[r] = (float)(EK_FN(ek_sum_f64)(a->x + r * inL, inL) * inv);
}

/* Output rows [r0, r1) of adaptive pooling (r: plane, od, oh). */
static void EK_FN(ek_adaptive_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_adaptive_args) *a = (const EK_FN(ek_adaptive_args) *)args;
    const float *EK_RESTRICT x = a->x;
    float *EK_RESTRICT y = a->y;
    const ek_geom3 *g = a->g;
    const ptrdiff_t inL = g->D * g->H * g->W;
    const int mode = a->mode;
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        const ptrdiff_t p = r / (g->OD * g->OH), od = (r / g->OH) % g->OD, oh = r % g->OH;
        const float *xp = x + p * inL;
        float *yrow = y + r * g->OW;
        const ptrdiff_t ds = (od * g->D) / g->OD, de = ((od + 1) * g->D + g->OD - 1) / g->OD;
        const ptrdiff_t hs = (oh * g->H) / g->OH, he = ((oh + 1) * g->H + g->OH - 1) / g->OH;
        ptrdiff_t ow;
        for (ow = 0; ow < g->OW; ow++) {
            const ptrdiff_t ws = (ow * g->W) / g->OW;
            const ptrdiff_t we = ((ow + 1) * g->W + g->OW - 1) / g->OW;
            ptrdiff_t id, ih, iw;
            if (mode == EK_POOL_AVG) {
                double s = 0.0;
                for (id = ds; id < de; id++) {
                    if (ws == 0 && we == g->W) {   /* whole rows: one contiguous run */
                        s += EK_FN(ek_sum_f64)(xp + (id * g->H + hs) * g->W, (he - hs) * g->W);
                        continue;
                    }
                    for (ih = hs; ih < he; ih++)
                        s += EK_FN(ek_sum_f64)(xp + (id * g->H + ih) * g->W + ws, we - ws);
                }
                yrow[ow] = (float)(s / (double)((de - ds) * (he - hs) * (we - ws)));
            } else {
                const int is_max = (mode == EK_POOL_MAX);
                float m = is_max ? -INFINITY : INFINITY;
                for (id = ds; id < de; id++)
                    for (ih = hs; ih < he; ih++) {
                        const float *xr = xp + (id * g->H + ih) * g->W;
                        for (iw = ws; iw < we; iw++) {
                            const float v = xr[iw];
                            if (is_max ? (v > m || v != v) : (v < m || v != v)) m = v;
                        }
                        if (m != m) goto done;
                    }
            done:
                yrow[ow] = m;
            }
        }
    }
}

/*
 * Adaptive pooling (PyTorch windows): along each dim, output o covers input
 * [floor(o*In/Out), ceil((o+1)*In/Out)).  mode: EK_POOL_MAX, EK_POOL_MIN or EK_POOL_AVG.
 * g: D/H/W input sizes and OD/OH/OW output sizes (other fields ignored).
 * Preconditions: x has planes*D*H*W floats, y planes*OD*OH*OW (no overlap); sizes >= 1.
 */
EK_API void EK_FN(ek_adaptive_pool3d)(const float *EK_RESTRICT x, float *EK_RESTRICT y,
                                      ptrdiff_t planes, const ek_geom3 *g, int mode,
                                      int nthreads)
{
    const ptrdiff_t inL = g->D * g->H * g->W;
    const ptrdiff_t rows = planes * g->OD * g->OH;
    const int threads = ek_nthreads_work(nthreads, rows, planes * inL);
    EK_FN(ek_adaptive_args) a;
    a.x = x; a.y = y; a.g = g; a.mode = mode;
    if (mode == EK_POOL_AVG && g->OD == 1 && g->OH == 1 && g->OW == 1)
        ek_parallel_rows(threads, planes, EK_FN(ek_global_avg_rows), &a);
    else
        ek_parallel_rows(threads, rows, EK_FN(ek_adaptive_rows), &a);
}

#undef EK_PLX

#endif /* EK_POOL_ISA */
