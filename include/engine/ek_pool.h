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
#if EK_ISA_LEVEL >= 2
#define EK_PL_VW 16
#elif EK_ISA_LEVEL == 1
#define EK_PL_VW 8
#else
#define EK_PL_VW 4
#endif
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

/* Padded-plane geometry (P pitch, Hp rows, cpr chunks per output row); 0: no fast path. */
EK_INLINE int EK_FN(ek_pool_fast_geom)(const ek_geom3 *g, ptrdiff_t *P, ptrdiff_t *Hp,
                                       ptrdiff_t *cpr)
{
    ptrdiff_t owr;
    if (!EK_PL_VEC || g->KD != 1 || g->OD != 1 || g->D != 1 || g->sw > 2) return 0;
    *cpr = (g->OW + EK_PL_VW - 1) / EK_PL_VW;
    owr = *cpr * EK_PL_VW;
    *P = EK_MAX(g->pw + g->W, g->sw * owr + (g->KW - 1) * g->dw);
    *Hp = EK_MAX(g->ph + g->H, (g->OH - 1) * g->sh + (g->KH - 1) * g->dh + 1);
    return 1;
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

#if EK_NEON
/* One plane: xp is its padded copy, y its output.  NEON: FMAX / FMIN return NaN when
   either operand is NaN, which is the (v > m || v != v) rule with a NaN running value
   never replaced, in one instruction; stride-2 taps with one de-interleaving load. */
EK_INLINE void EK_FN(ek_pool_plane)(const int S, const int is_max, const float *xp,
                                    float *y, const ek_geom3 *g, ptrdiff_t P, ptrdiff_t cpr)
{
    enum { NB = EK_PL_NB, VW = EK_PL_VW };
    const ptrdiff_t total = g->OH * cpr;
    const float init = is_max ? -INFINITY : INFINITY;
    ptrdiff_t it, oh = 0, c = 0;
    for (it = 0; it < total; it += NB) {
        float32x4_t acc[NB];
        const float *base[NB];
        ptrdiff_t kh, kw, q, qoh = oh, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + qoh * g->sh * P + S * qc * VW;
            acc[q] = vdupq_n_f32(init);
            if (it + q + 1 < total && ++qc == cpr) { qc = 0; qoh++; }
        }
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++) {
                const ptrdiff_t off = kh * g->dh * P + kw * g->dw;
#pragma GCC unroll 4
                for (q = 0; q < NB; q++) {
                    const float32x4_t v = S == 1 ? vld1q_f32(base[q] + off)
                                                 : vld2q_f32(base[q] + off).val[0];
                    acc[q] = is_max ? vmaxq_f32(acc[q], v) : vminq_f32(acc[q], v);
                }
            }
        /* (fully unrolled: constant indices keep acc in registers) */
#pragma GCC unroll 4
        for (q = 0; q < NB; q++) {
            const ptrdiff_t ow = c * VW;
            if (it + q >= total) continue;
            EK_FN(ek_neon_st_part)(y + oh * g->OW + ow, acc[q], EK_MIN(VW, g->OW - ow));
            if (++c == cpr) { c = 0; oh++; }
        }
    }
}
#else
/* One plane: xp is its padded copy, y its output. */
EK_INLINE void EK_FN(ek_pool_plane)(const int S, const int is_max, const float *xp,
                                    float *y, const ek_geom3 *g, ptrdiff_t P, ptrdiff_t cpr)
{
    enum { NB = EK_PL_NB, VW = EK_PL_VW };
    const ptrdiff_t total = g->OH * cpr;
    const float init = is_max ? -INFINITY : INFINITY;
    ptrdiff_t it, oh = 0, c = 0;
    for (it = 0; it < total; it += NB) {
        EK_FN(ek_pl_vf) acc[NB];
        const float *base[NB];
        ptrdiff_t kh, kw, q, qoh = oh, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + qoh * g->sh * P + S * qc * VW;
            acc[q] = (EK_FN(ek_pl_vf)){0} + init;
            if (it + q + 1 < total && ++qc == cpr) { qc = 0; qoh++; }
        }
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++) {
                const ptrdiff_t off = kh * g->dh * P + kw * g->dw;
                for (q = 0; q < NB; q++) {
                    const EK_FN(ek_pl_vf) v = EK_FN(ek_pl_load)(S, base[q] + off);
                    const EK_FN(ek_pl_vi) take = (is_max ? (v > acc[q]) : (v < acc[q])) |
                                                 (v != v);
                    acc[q] = (EK_FN(ek_pl_vf))(((EK_FN(ek_pl_vi))v & take) |
                                               ((EK_FN(ek_pl_vi))acc[q] & ~take));
                }
            }
        for (q = 0; q < NB && it + q < total; q++) {
            const ptrdiff_t ow = c * VW, n = EK_MIN(VW, g->OW - ow);
            float lanes[EK_PL_VW];
            ptrdiff_t t;
            memcpy(lanes, &acc[q], sizeof(lanes));
            for (t = 0; t < n; t++) y[oh * g->OW + ow + t] = lanes[t];
            if (++c == cpr) { c = 0; oh++; }
        }
    }
}
#endif

#define EK_PL_DEF(S_, M_)                                                                \
    static EK_NOINLINE void EK_FN(ek_pool_plane_##S_##_##M_)(                            \
        const float *xp, float *y, const ek_geom3 *g, ptrdiff_t P, ptrdiff_t cpr)        \
    {                                                                                    \
        EK_FN(ek_pool_plane)(S_, M_, xp, y, g, P, cpr);                                  \
    }
EK_PL_DEF(1, 1) EK_PL_DEF(1, 0) EK_PL_DEF(2, 1) EK_PL_DEF(2, 0)
#undef EK_PL_DEF

/* The fast path over all planes; returns 0 (nothing done) when it does not apply or its
   buffers cannot be allocated. */
static int EK_FN(ek_pool_fast)(const float *x, float *y, ptrdiff_t planes, const ek_geom3 *g,
                               int is_max, int nthreads)
{
    ptrdiff_t P, Hp, cpr, pl;
    const ptrdiff_t inL = g->H * g->W, L = g->OH * g->OW;
    int threads, failed = 0;
    if (!EK_FN(ek_pool_fast_geom)(g, &P, &Hp, &cpr)) return 0;
    threads = ek_nthreads_work(nthreads, planes, planes * L * g->KH * g->KW);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        float *xp = (float *)malloc((size_t)(Hp * P) * sizeof(float));
        const float init = is_max ? -INFINITY : INFINITY;
        if (xp == NULL) {
#ifdef _OPENMP
#pragma omp atomic write
#endif
            failed = 1;
        }
#ifdef _OPENMP
#pragma omp barrier
#pragma omp for schedule(dynamic, 8)
#endif
        for (pl = 0; pl < planes; pl++) {
            const float *xin = x + pl * inL;
            ptrdiff_t r, i;
            if (failed) continue;
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
                if (is_max) EK_FN(ek_pool_plane_1_1)(xp, y + pl * L, g, P, cpr);
                else EK_FN(ek_pool_plane_1_0)(xp, y + pl * L, g, P, cpr);
            } else {
                if (is_max) EK_FN(ek_pool_plane_2_1)(xp, y + pl * L, g, P, cpr);
                else EK_FN(ek_pool_plane_2_0)(xp, y + pl * L, g, P, cpr);
            }
        }
        free(xp);
    }
    return !failed;
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
 * Preconditions: x has planes*D*H*W floats, y has planes*OD*OH*OW floats (no overlap);
 * all sizes, strides, dilations >= 1.
 */
EK_API void EK_FN(ek_pool3d)(const float *EK_RESTRICT x, float *EK_RESTRICT y,
                             ptrdiff_t planes, const ek_geom3 *g, ptrdiff_t pe_d,
                             ptrdiff_t pe_h, ptrdiff_t pe_w, int mode, int count_include_pad,
                             int nthreads)
{
    const ptrdiff_t inL = g->D * g->H * g->W;
    const ptrdiff_t rows = planes * g->OD * g->OH;
    const int threads = ek_nthreads_work(nthreads, rows,
                                         rows * g->OW * g->KD * g->KH * g->KW);
    ptrdiff_t r;
    if (mode != EK_POOL_AVG && EK_FN(ek_pool_fast)(x, y, planes, g, mode == EK_POOL_MAX,
                                                   nthreads))
        return;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
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
            for (ow = 0; ow < g->OW; ow++) yrow[ow] = init;
            for (kd = 0; kd < g->KD; kd++) {
                const ptrdiff_t id = d0 + kd * g->dd;
                if (id < 0 || id >= g->D) continue;
                for (kh = 0; kh < g->KH; kh++) {
                    const ptrdiff_t ih = h0 + kh * g->dh;
                    const float *EK_RESTRICT xr;
                    if (ih < 0 || ih >= g->H) continue;
                    xr = xp + (id * g->H + ih) * g->W;
                    for (kw = 0; kw < g->KW; kw++) {
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
                        for (kw = 0; kw < g->KW; kw++) {
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
                    ptrdiff_t we = EK_MIN(w0 + g->KW, g->W + pe_w), div;
                    const ptrdiff_t wsz = we - w0, ws = EK_MAX(w0, 0);
                    we = EK_MIN(we, g->W);
                    if (count_include_pad)
                        div = dsz * hsz * wsz;
                    else
                        div = EK_MAX(de - ds, 0) * EK_MAX(he - hs, 0) * EK_MAX(we - ws, 0);
                    yrow[c0 + j] = (float)(acc[j] / (double)div);
                }
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
    ptrdiff_t r;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
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
                for (id = ds; id < de; id++)
                    for (ih = hs; ih < he; ih++) {
                        const float *xr = xp + (id * g->H + ih) * g->W;
                        for (iw = ws; iw < we; iw++) s += (double)xr[iw];
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

#endif /* EK_POOL_ISA */
