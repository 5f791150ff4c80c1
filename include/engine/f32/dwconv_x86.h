/*
 * f32/dwconv_x86.h - the x86 depthwise row kernel, shared by f32/dwconv_avx2.h and
 * f32/dwconv_avx512.h: written on the x86 lane layer of f32/vec_<isa>.h (EKX), with
 * EKX_AVX512 branches where AVX-512 has a better instruction (lane shifts, masked loads,
 * flat mode).  Defines EK_DWX 1 and ekx_dw_run / ek_dwx_fast for ek_conv.h.
 *
 * x86 (AVX2 / AVX-512) depthwise path for square 3x3 / 5x5 kernels with equal strides 1 or
 * 2, no dilation and pads below the kernel size (every depthwise layer of the MobileNet /
 * EfficientNet family).  No padded copy: the taps are loaded straight from the input rows.
 *
 * Row mode: output rows in blocks of R (AVX-512 8, or 7 for stride-1 maps 7 * odd tall;
 * AVX2 4) times one vector of columns.  Each input row of the block's windows is loaded
 * once and feeds every output row whose window holds it (3x3 stride 1: (R + 2) x 3 loads
 * for 9 R FMAs), two accumulators per output row (even / odd kw: short FMA chains).
 * Stride 2: a row's vectors are split into their even / odd floats, taps kw = 0 / 1 of a
 * pair, kw = 2 of the pair 2 columns on (AVX-512 shifts it out of the loaded vectors with
 * valignd; with pad 1 the loads are 16-aligned: rows of 16 n floats load aligned), by one
 * in-lane shuffle per tap vector, all in the same permuted column order, which the store
 * restores once per output vector - no gathers, no lane-crossing permutes per tap.  Input
 * rows outside the image read a zero row (the workspace); columns outside it are masked
 * off in the loads (masks per column vector computed once per call; AVX2 loads interior
 * vectors unmasked).  Flat mode (AVX-512, stride-1 "same" maps of at most 256 floats,
 * e.g. 7 x 7): the plane as one flat array, each tap one masked load per 16 outputs at a
 * fixed offset (masks per vector and tap), so a vector spans several output rows.
 *
 * The bias starts the accumulators; none / relu / relu6 / clip are one max + min in the
 * store (NaN passes, as in the scalar code), other activations run over the finished
 * plane.  Parallel over (image, channel) planes, dynamic chunks of a quarter of a thread's
 * share.
 */
#define EKX_MAXCH 64         /* column vectors per output row (OW <= 64 VW) */
#define EKX_FLAT_MAX 16      /* flat mode: at most this many vectors per plane */
/* flat mode when it needs < 2/3 of row mode's vectors (a flat tap costs a masked load per
   FMA; measured: 7 x 7 flat, 14 x 14 rows) */
#define EKX_FLAT_COST(nflat, nrow) (3 * (nflat) < 2 * (nrow))
/* keeps a loaded vector in a register (gcc would otherwise fold the load into every FMA
   that uses it: one load per tap again) */
#if defined(__GNUC__)
#define EKX_REG(v) __asm__("" : "+v"(v))
#else
#define EKX_REG(v) ((void)0)
#endif

#ifndef EK_DWX_GEOM_DEFINED
#define EK_DWX_GEOM_DEFINED
typedef struct {
    ptrdiff_t cpr;       /* column vectors per output row */
    ptrdiff_t T;         /* loads per input row and column vector: S == 1: K (at c + kw),
                            S == 2: AVX-512 c + {0, VW, 2 VW}, AVX2 c + 2 m + {0, VW} */
    ptrdiff_t zlen;      /* floats of the zero row (workspace) */
    ptrdiff_t nv;        /* flat mode: vectors per plane (0: row mode) */
    int S, K;
    int A;               /* AVX-512 3x3 stride 2 pad 1: loads at c + {-15, 1, 17} */
} ek_dwx_geom;
#endif

EK_INLINE int EK_FN(ek_dwx_fast)(const ek_geom3 *g, ek_dwx_geom *d)
{
    const ptrdiff_t VW = EKX_VW, S = g->sw, K = g->KW;
    if (g->KD != 1 || g->OD != 1 || g->D != 1 || g->KH != K || (K != 3 && K != 5) ||
        g->sh != S || S > 2 || g->dh != 1 || g->dw != 1 || g->ph >= K || g->pw >= K)
        return 0;
    d->S = (int)S;
    d->K = (int)K;
    d->cpr = (g->OW + VW - 1) / VW;
    if (d->cpr > EKX_MAXCH) return 0;
    d->T = S == 1 ? K : EKX_AVX512 ? 3 : 2 * ((K + 1) / 2);
    d->A = EKX_AVX512 && S == 2 && K == 3 && g->pw == 1;
    /* a chunk reads columns S ow0 - pw + [0, S VW + K): the zero row stands for input rows
       outside the image, from 16 floats before its origin */
    d->zlen = EK_ROUND16(16 + S * (d->cpr + 1) * VW + 2 * K + 16);
    d->nv = 0;
#if EKX_AVX512
    /* flat mode (small "same" maps, stride 1): the plane as one flat vector of H W floats,
       every tap a masked load at a fixed offset; wins where row mode leaves most lanes
       idle */
    if (S == 1 && g->OW == g->W && g->OH == g->H && g->OH * g->OW <= EKX_FLAT_MAX * VW &&
        EKX_FLAT_COST((g->OH * g->OW + VW - 1) / VW, g->OH * d->cpr))
        d->nv = (g->OH * g->OW + VW - 1) / VW;
#endif
    return 1;
}

/* One column vector (columns ow0 .. ow0 + VW - 1) of output rows oh0 .. oh0 + R - 1.
   rows[i]: input row S oh0 - ph + i (or the zero row), read from column c = S ow0 - pw;
   cm: the chunk's T load masks (M: masked loads). */
EK_INLINE void EK_FN(ekx_dw_block)(const int S, const int K, const int A, const int R,
                                   const int M,
                                   const float *const *rows, ptrdiff_t c, const EKX_M *cm,
                                   const EKX_V *wv, EKX_V bias, EKX_V lo, EKX_V hi,
                                   float *out, ptrdiff_t OW, int full, EKX_M sm, int nst)
{
    /* two accumulators per row (odd kw into the second): shorter FMA chains */
    EKX_V acc[EKX_RB], acc1[EKX_RB];
    int j, i, kw, m;
#pragma GCC unroll 8
    for (j = 0; j < R; j++) {
        acc[j] = bias;
        acc1[j] = ekx_set1(0.0f);
    }
#pragma GCC unroll 24
    for (i = 0; i < S * (R - 1) + K; i++) {
        const float *row = rows[i] + c;
        EKX_V xv[6];
        if (S == 1) {
#pragma GCC unroll 5
            for (kw = 0; kw < K; kw++) {
                xv[kw] = M ? ekx_ldz(row + kw, cm[kw]) : ekx_ld(row + kw);
                EKX_REG(xv[kw]);
            }
        } else if (EKX_AVX512 && A) {
#if EKX_AVX512
            /* 3x3, pad 1: loads at the 16-aligned a = c + 1 = 2 ow0 (aligned when the rows
               are): v[-1], v[0], v[1]; kw = 1, 2 are the even / odd floats of (v[0], v[1]),
               kw = 0 the odd ones of that pair shifted back by 2 */
            const __m512 p = ekx_ldz(row - 15, cm[0]), a = ekx_ldz(row + 1, cm[1]);
            const __m512 b = ekx_ldz(row + 17, cm[2]);
            const __m512i pi = _mm512_castps_si512(p), ai = _mm512_castps_si512(a);
            const __m512i bi = _mm512_castps_si512(b);
            EKX_V unused;
            EK_FN(ekx_deint)(_mm512_castsi512_ps(_mm512_alignr_epi32(ai, pi, 14)),
                             _mm512_castsi512_ps(_mm512_alignr_epi32(bi, ai, 14)), &unused,
                             &xv[0]);
            EK_FN(ekx_deint)(a, b, &xv[1], &xv[2]);
            EKX_REG(xv[0]);
            EKX_REG(xv[1]);
            EKX_REG(xv[2]);
#endif
        } else if (EKX_AVX512) {
#if EKX_AVX512
            /* three loads (c, c + 16, c + 32); the pairs at c + 2 m shifted out of them */
            const __m512 a = ekx_ldz(row, cm[0]), b = ekx_ldz(row + 16, cm[1]);
            const __m512 n = ekx_ldz(row + 32, cm[2]);
            EK_FN(ekx_deint)(a, b, &xv[0], &xv[1]);
            EKX_REG(xv[0]);
            EKX_REG(xv[1]);
#pragma GCC unroll 2
            for (m = 1; m < (K + 1) / 2; m++) {
                const __m512i ai = _mm512_castps_si512(a), bi = _mm512_castps_si512(b);
                const __m512i ni = _mm512_castps_si512(n);
                const __m512 a2 = _mm512_castsi512_ps(EK_FN(ekx_alignr_2m)(bi, ai, m));
                const __m512 b2 = _mm512_castsi512_ps(EK_FN(ekx_alignr_2m)(ni, bi, m));
                EK_FN(ekx_deint)(a2, b2, &xv[2 * m], &xv[2 * m + 1]);
                EKX_REG(xv[2 * m]);
                if (2 * m + 1 < K) EKX_REG(xv[2 * m + 1]);
            }
#endif
        } else {
#pragma GCC unroll 3
            for (m = 0; m < (K + 1) / 2; m++) {
                const float *t = row + 2 * m;
                const EKX_V a = M ? ekx_ldz(t, cm[2 * m]) : ekx_ld(t);
                const EKX_V b = M ? ekx_ldz(t + EKX_VW, cm[2 * m + 1]) : ekx_ld(t + EKX_VW);
                EK_FN(ekx_deint)(a, b, &xv[2 * m], &xv[2 * m + 1]);
                EKX_REG(xv[2 * m]);
                if (2 * m + 1 < K) EKX_REG(xv[2 * m + 1]);
            }
        }
#pragma GCC unroll 8
        for (j = 0; j < R; j++) {
            const int kh = i - S * j;
            if (kh < 0 || kh >= K) continue;
#pragma GCC unroll 5
            for (kw = 0; kw < K; kw++) {
                if (EKX_SPLIT && (kw & 1)) acc1[j] = ekx_fma(wv[kh * K + kw], xv[kw], acc1[j]);
                else acc[j] = ekx_fma(wv[kh * K + kw], xv[kw], acc[j]);
            }
        }
    }
#pragma GCC unroll 8
    for (j = 0; j < R; j++) {
        EKX_V v = ekx_min(hi, ekx_max(lo, EKX_SPLIT ? EKX_ADD(acc[j], acc1[j]) : acc[j]));
        if (j >= nst) break;
        if (S == 2) v = EK_FN(ekx_unperm)(v);
        if (full) ekx_st(out + j * OW, v);
        else ekx_stm(out + j * OW, sm, v);
    }
}

typedef struct {
    const ek_dwx_geom *d;
    const ek_geom3 *g;
    const float *zr;               /* zero row */
    const EKX_M *cm;               /* [cpr][T] load masks */
    const unsigned char *edge;     /* [cpr]: the chunk needs masked loads */
    EKX_M sm;                      /* store mask of a partial last chunk */
#if EKX_AVX512
    const __mmask16 *fmk;          /* flat mode: [vector][tap] load masks */
#endif
} EK_FN(ekx_dw_ctx);

#if EKX_ALLMASKED
#define EKX_DW_CHUNK(R_)                                                                   \
    EK_FN(ekx_dw_block)(S, K, A, R_, 1, rows, c, cm, wv, bias, lo, hi, out, OW, full, cx->sm,  \
                        nst)
#else
#define EKX_DW_CHUNK(R_)                                                                   \
    do {                                                                                   \
        if (cx->edge[ci])                                                                  \
            EK_FN(ekx_dw_block)(S, K, A, R_, 1, rows, c, cm, wv, bias, lo, hi, out, OW,    \
                                full, cx->sm, nst);                                        \
        else                                                                               \
            EK_FN(ekx_dw_block)(S, K, A, R_, 0, rows, c, cm, wv, bias, lo, hi, out, OW,    \
                                full, cx->sm, nst);                                        \
    } while (0)
#endif

/* One plane: input xin, filter wp, output yp. */
EK_INLINE void EK_FN(ekx_dw_plane)(const int S, const int K, const int A,
                                   const EK_FN(ekx_dw_ctx) *cx,
                                   const float *xin, const float *wp, float b, float lof,
                                   float hif, float *yp)
{
    const ek_dwx_geom *d = cx->d;
    const ek_geom3 *g = cx->g;
    const ptrdiff_t OW = g->OW, T = d->T;
    const EKX_V bias = ekx_set1(b), lo = ekx_set1(lof), hi = ekx_set1(hif);
    /* MobileNet-like maps are 7 * 2^k tall: stride 1, blocks of 7 where 8 do not divide
       (measured: 14 x 14 maps 12 % faster; stride 2 slower, it takes partial blocks) */
    const int RB = S == 1 && EKX_RB == 8 && g->OH % 8 != 0 && g->OH % 7 == 0 ? 7 : EKX_RB;
    EKX_V wv[25];
    ptrdiff_t oh0 = 0;
    int t;
    for (t = 0; t < K * K; t++) wv[t] = ekx_set1(wp[t]);
#if EKX_AVX512
    if (S == 1 && d->nv) {
        const ptrdiff_t L = g->OH * OW;
        ptrdiff_t k0;
        int kh, kw, q;
        for (k0 = 0; k0 < d->nv; k0 += 4) {
            __m512 acc[4];
            const __mmask16 *mk = cx->fmk + k0 * K * K;
#pragma GCC unroll 4
            for (q = 0; q < 4; q++) acc[q] = bias;
#pragma GCC unroll 5
            for (kh = 0; kh < K; kh++)
#pragma GCC unroll 5
                for (kw = 0; kw < K; kw++) {
                    const float *tp = xin + k0 * 16 + (kh - g->ph) * g->W + kw - g->pw;
#pragma GCC unroll 4
                    for (q = 0; q < 4; q++)
                        acc[q] = ekx_fma(wv[kh * K + kw],
                                         ekx_ldz(tp + q * 16, mk[q * K * K + kh * K + kw]),
                                         acc[q]);
                }
#pragma GCC unroll 4
            for (q = 0; q < 4; q++) {
                const ptrdiff_t o = (k0 + q) * 16;
                const __m512 v = ekx_min(hi, ekx_max(lo, acc[q]));
                if (o + 16 <= L) ekx_st(yp + o, v);
                else if (o < L) ekx_stm(yp + o, EK_FN(ekx_mask)(0, L - o), v);
            }
        }
        return;
    }
#endif
    while (oh0 < g->OH) {
        const ptrdiff_t left = g->OH - oh0;
        /* stride 2: a full block also for the last 3/4 of one, its rows past the map
           reading zero rows and not stored (fewer, longer blocks; measured a loss for
           stride 1) */
        const int R = left >= RB || (S == 2 && 4 * left >= 3 * RB) ? RB
                      : left >= 4                                ? 4
                      : left >= 2                                ? 2 : 1;
        const int nst = (int)EK_MIN(left, R);
        const float *rows[2 * EKX_RB + 4];
        ptrdiff_t ci;
        int i;
        for (i = 0; i < S * (R - 1) + K; i++) {
            const ptrdiff_t ih = S * oh0 - g->ph + i;
            rows[i] = ih >= 0 && ih < g->H ? xin + ih * g->W : cx->zr;
        }
        for (ci = 0; ci < d->cpr; ci++) {
            const ptrdiff_t ow0 = ci * EKX_VW, c = S * ow0 - g->pw;
            const EKX_M *cm = cx->cm + ci * T;
            const int full = ow0 + EKX_VW <= OW;
            float *out = yp + oh0 * OW + ow0;
            if (R == EKX_RB) EKX_DW_CHUNK(EKX_RB);
#if EKX_RB == 8
            else if (R == 7) EKX_DW_CHUNK(7);
#endif
#if EKX_RB > 4
            else if (R == 4) EKX_DW_CHUNK(4);
#endif
            else if (R == 2) EKX_DW_CHUNK(2);
            else EKX_DW_CHUNK(1);
        }
        oh0 += nst;
    }
}
#undef EKX_DW_CHUNK

#define EKX_DW_DEF(S_, K_, A_)                                                             \
    static EK_NOINLINE void EK_FN(ekx_dw_plane_##S_##_##K_##_##A_)(                        \
        const EK_FN(ekx_dw_ctx) *cx, const float *xin, const float *wp, float b, float lo,  \
        float hi, float *yp)                                                               \
    {                                                                                      \
        EK_FN(ekx_dw_plane)(S_, K_, A_, cx, xin, wp, b, lo, hi, yp);                       \
    }
EKX_DW_DEF(1, 3, 0) EKX_DW_DEF(2, 3, 0) EKX_DW_DEF(1, 5, 0) EKX_DW_DEF(2, 5, 0)
#if EKX_AVX512
EKX_DW_DEF(2, 3, 1)
#endif
#undef EKX_DW_DEF

typedef struct {
    const EK_FN(ekx_dw_ctx) *cx;
    const float *x, *w, *bias;
    float *y;
    ptrdiff_t C, Cout;
    int act, fused;
    float p0, p1, lo, hi;
} EK_FN(ekx_dw_job);

/* Planes [p0, p1) (image, output channel) of the x86 depthwise path. */
static void EK_FN(ekx_dw_rows)(const void *args, ptrdiff_t q0, ptrdiff_t q1)
{
    const EK_FN(ekx_dw_job) *j = (const EK_FN(ekx_dw_job) *)args;
    const EK_FN(ekx_dw_ctx) *cxp = j->cx;
    const ek_dwx_geom *d = cxp->d;
    const ek_geom3 *g = cxp->g;
    const ptrdiff_t C = j->C, Cout = j->Cout, mult = Cout / C;
    const ptrdiff_t inL = g->H * g->W, L = g->OH * g->OW, KK = d->K * d->K;
    const float *x = j->x, *w = j->w, *bias = j->bias;
    float *y = j->y;
    const float lo = j->lo, hi = j->hi, p0 = j->p0, p1 = j->p1;
    const int act = j->act, fused = j->fused;
    ptrdiff_t pl;
    for (pl = q0; pl < q1; pl++) {
        const ptrdiff_t co = pl % Cout;
        const float *xin = x + ((pl / Cout) * C + co / mult) * inL, *wp = w + co * KK;
        const float b = bias ? bias[co] : 0.0f;
        float *yp = y + pl * L;
        if (d->K == 3) {
            if (d->S == 1) EK_FN(ekx_dw_plane_1_3_0)(cxp, xin, wp, b, lo, hi, yp);
#if EKX_AVX512
            else if (d->A) EK_FN(ekx_dw_plane_2_3_1)(cxp, xin, wp, b, lo, hi, yp);
#endif
            else EK_FN(ekx_dw_plane_2_3_0)(cxp, xin, wp, b, lo, hi, yp);
        } else {
            if (d->S == 1) EK_FN(ekx_dw_plane_1_5_0)(cxp, xin, wp, b, lo, hi, yp);
            else EK_FN(ekx_dw_plane_2_5_0)(cxp, xin, wp, b, lo, hi, yp);
        }
        if (!fused) EK_FN(ek_act_inplace)(yp, L, act, p0, p1);
    }
}

/* The whole depthwise op on this path (see ek_conv3d_depthwise); ws: d->zlen floats. */
static void EK_FN(ekx_dw_run)(const float *x, const float *w, const float *bias, float *y,
                              ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout, const ek_geom3 *g,
                              const ek_dwx_geom *d, int act, float p0, float p1, float *ws,
                              int threads)
{
    const ptrdiff_t planes = N * Cout, L = g->OH * g->OW;
    const int fused = act == EK_ACT_NONE || act == EK_ACT_RELU || act == EK_ACT_RELU6 ||
                      act == EK_ACT_CLIP;
    const float lo = act == EK_ACT_RELU || act == EK_ACT_RELU6 ? 0.0f
                     : act == EK_ACT_CLIP                     ? p0 : -INFINITY;
    const float hi = act == EK_ACT_RELU6 ? 6.0f : act == EK_ACT_CLIP ? p1 : INFINITY;
    EK_FN(ekx_dw_job) job;
    EK_FN(ekx_dw_ctx) cx;
    EKX_M cm[EKX_MAXCH * 6];
    unsigned char edge[EKX_MAXCH];
#if EKX_AVX512
    __mmask16 fmk[(EKX_FLAT_MAX + 4) * 25];
#endif
    ptrdiff_t ci, t;
    (void)L;  /* (the AVX-512 lane masks only) */
    /* load t of chunk ci reads columns c + off_t + [0, VW), c = S ci VW - pw */
    for (ci = 0; ci < d->cpr; ci++) {
        const ptrdiff_t c = d->S * ci * EKX_VW - g->pw;
        edge[ci] = 0;
        for (t = 0; t < d->T; t++) {
            const ptrdiff_t o = c + (d->S == 1         ? t
                                     : d->A              ? 16 * t - 15
                                     : EKX_AVX512 ? t * EKX_VW
                                                         : (t & ~(ptrdiff_t)1) + (t & 1) * EKX_VW);
            cm[ci * d->T + t] = EK_FN(ekx_mask)(-o, g->W - o);
            if (o < 0 || o + EKX_VW > g->W) edge[ci] = 1;
        }
    }
#if EKX_AVX512
    if (d->nv) {
        /* lane o of the plane, tap (kh, kw): input (o / W + kh - ph, o % W + kw - pw) */
        const ptrdiff_t K = d->K, KK2 = K * K, nvr = (d->nv + 3) / 4 * 4;
        ptrdiff_t k, l, kh, kw, oh = 0, ow = 0;
        memset(fmk, 0, sizeof(fmk[0]) * (size_t)(nvr * KK2));
        for (k = 0; k < d->nv; k++)
            for (l = 0; l < 16; l++) {
                if (k * 16 + l >= L) break;
                for (kh = 0; kh < K; kh++) {
                    const ptrdiff_t ih = oh + kh - g->ph;
                    if (ih < 0 || ih >= g->H) continue;
                    for (kw = 0; kw < K; kw++) {
                        const ptrdiff_t iw = ow + kw - g->pw;
                        if (iw >= 0 && iw < g->W)
                            fmk[k * KK2 + kh * K + kw] |= (__mmask16)(1u << l);
                    }
                }
                if (++ow == g->OW) { ow = 0; oh++; }
            }
    }
    cx.fmk = fmk;
#endif
    memset(ws, 0, (size_t)d->zlen * sizeof(float));
    cx.d = d;
    cx.g = g;
    cx.zr = ws + 16;
    cx.cm = cm;
    cx.edge = edge;
    cx.sm = EK_FN(ekx_mask)(0, g->OW - (d->cpr - 1) * EKX_VW);
    job.cx = &cx; job.x = x; job.w = w; job.bias = bias; job.y = y; job.C = C;
    job.Cout = Cout; job.act = act; job.fused = fused; job.p0 = p0; job.p1 = p1;
    job.lo = lo; job.hi = hi;
    ek_parallel_rows(threads, planes, EK_FN(ekx_dw_rows), &job);
}
#undef EKX_MAXCH
#undef EKX_FLAT_MAX
#undef EKX_FLAT_COST
#undef EKX_REG
#define EK_DWX 1
#define EK_DW_PAIRS 0
