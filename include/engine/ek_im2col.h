/*
 * ek_im2col.h - im2col (gather) and col2im (scatter-add) over 3 spatial dims.
 *
 * 1-D and 2-D problems use unit sizes for the missing leading dims (D = KD = OD = 1, ...).
 * A "row" of the column matrix is one (channel, kd, kh, kw) tap; its columns are the
 * output positions (od, oh, ow) in row-major order.
 */
#include "ek_common.h"
#include "ek_gemm.h"

#ifndef EK_IM2COL_ISA
#define EK_IM2COL_ISA

typedef struct {
    const float *x;
    float *out;
    ptrdiff_t C;
    const ek_geom3 *g;
} EK_FN(ek_im2col_args);

static void EK_FN(ek_im2col3d_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_im2col_args) *a = (const EK_FN(ek_im2col_args) *)args;
    const ek_geom3 *g = a->g;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        const ptrdiff_t c = r / kvol, t = r % kvol;
        const ptrdiff_t kd = t / (g->KH * g->KW), kh = (t / g->KW) % g->KH, kw = t % g->KW;
        const float *xc = a->x + c * g->D * g->H * g->W;
        float *dst = a->out + r * L;
        const ptrdiff_t offd = kd * g->dd - g->pd, offh = kh * g->dh - g->ph;
        const ptrdiff_t offw = kw * g->dw - g->pw;
        ptrdiff_t wlo, whi, od, oh, ow;
        EK_FN(ek_valid_range)(g->OW, g->W, g->sw, offw, &wlo, &whi);
        for (od = 0; od < g->OD; od++) {
            const ptrdiff_t id = od * g->sd + offd;
            if (id < 0 || id >= g->D) {
                memset(dst, 0, (size_t)(g->OH * g->OW) * sizeof(float));
                dst += g->OH * g->OW;
                continue;
            }
            for (oh = 0; oh < g->OH; oh++, dst += g->OW) {
                const ptrdiff_t ih = oh * g->sh + offh;
                const float *src;
                if (ih < 0 || ih >= g->H) {
                    memset(dst, 0, (size_t)g->OW * sizeof(float));
                    continue;
                }
                src = xc + (id * g->H + ih) * g->W + offw;
                for (ow = 0; ow < wlo; ow++) dst[ow] = 0.0f;
                if (g->sw == 1) {
                    if (whi > wlo)
                        memcpy(dst + wlo, src + wlo, (size_t)(whi - wlo) * sizeof(float));
                } else {
                    for (ow = wlo; ow < whi; ow++) dst[ow] = src[ow * g->sw];
                }
                for (ow = whi; ow < g->OW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

/*
 * col[r][p] for r = ((c * KD + kd) * KH + kh) * KW + kw, p = (od * OH + oh) * OW + ow:
 *     x[c][od*sd - pd + kd*dd][oh*sh - ph + kh*dh][ow*sw - pw + kw*dw], 0 outside the input.
 * Preconditions: x has C * D * H * W floats; col has C * KD*KH*KW * OD*OH*OW floats;
 * every size >= 1 (C >= 0), strides and dilations >= 1.
 */
EK_API void EK_FN(ek_im2col3d)(const float *EK_RESTRICT x, ptrdiff_t C, const ek_geom3 *g,
                               float *EK_RESTRICT col, int nthreads)
{
    const ptrdiff_t rows = C * g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    EK_FN(ek_im2col_args) a;
    a.x = x; a.out = col; a.C = C; a.g = g;
    ek_parallel_rows(ek_nthreads_work(nthreads, rows, rows * L), rows,
                     EK_FN(ek_im2col3d_rows), &a);
}

/*
 * im2col straight into packed GEMM panels (the B operand of the convolution's GEMM).
 *
 * The column matrix is never built whole: ek_gemm_run asks, per task and K block, for the
 * block col[k0:k0+kc][j0:j0+nc] in NR-column panels (ek_fill_b_fn), and this writes it
 * into the task's slice of the workspace.  Rows are taps (c, kd, kh, kw), columns output
 * positions (od, oh, ow).  The input is first copied once per (image, group) into a
 * zero-padded buffer (ek_im2col_pad; skipped when the conv needs no padding), so that every
 * tap of every output position lies inside it: a row of a block is then a few runs of
 * consecutive ow (one per output row), each a plain strided copy, cut at panel boundaries.
 * The runs of a block are listed once per call and reused for all its kc rows.
 */
typedef struct {
    const float *x;          /* the group's (padded) input: C x Dp x Hp x Wp */
    ptrdiff_t Dp, Hp, Wp;    /* its dims; position (d, h, w) of the conv at (d+pd, h+ph, w+pw)
                                when padded, (d, h, w) when not */
    const ek_geom3 *g;
} EK_FN(ek_im2col_ctx);

/* Dims of the padded input a conv reads (every tap of every output inside). */
EK_INLINE void EK_FN(ek_im2col_padded_dims)(const ek_geom3 *g, ptrdiff_t *Dp, ptrdiff_t *Hp,
                                            ptrdiff_t *Wp)
{
    *Dp = (g->OD - 1) * g->sd + (g->KD - 1) * g->dd + 1;
    *Hp = (g->OH - 1) * g->sh + (g->KH - 1) * g->dh + 1;
    *Wp = (g->OW - 1) * g->sw + (g->KW - 1) * g->dw + 1;
}

/* 1 when the conv reads outside the input (needs the padded copy). */
EK_INLINE int EK_FN(ek_im2col_needs_pad)(const ek_geom3 *g)
{
    ptrdiff_t Dp, Hp, Wp;
    EK_FN(ek_im2col_padded_dims)(g, &Dp, &Hp, &Wp);
    return g->pd > 0 || g->ph > 0 || g->pw > 0 || Dp > g->D || Hp > g->H || Wp > g->W;
}

/* Floats of the padded copy of C channels (0 when not needed; -1 when C Dp Hp Wp
   overflows or exceeds EK_SIZE_MAX).  The geometry passed ek_geom3_check: each of Dp, Hp,
   Wp is at most EK_DIM_MAX, their product is what can wrap. */
EK_INLINE ptrdiff_t EK_FN(ek_im2col_pad_size)(ptrdiff_t C, const ek_geom3 *g)
{
    ptrdiff_t Dp, Hp, Wp;
    if (!EK_FN(ek_im2col_needs_pad)(g)) return 0;
    EK_FN(ek_im2col_padded_dims)(g, &Dp, &Hp, &Wp);
    return ek_szround16(ek_szmul(ek_szmul(ek_szmul(C, Dp), Hp), Wp));
}

static void EK_FN(ek_im2col_pad_rows)(const void *args, ptrdiff_t c0, ptrdiff_t c1)
{
    const EK_FN(ek_im2col_args) *a = (const EK_FN(ek_im2col_args) *)args;
    const ek_geom3 *g = a->g;
    ptrdiff_t Dp, Hp, Wp, c;
    EK_FN(ek_im2col_padded_dims)(g, &Dp, &Hp, &Wp);
    for (c = c0; c < c1; c++) {
        float *dst = a->out + c * Dp * Hp * Wp;
        const float *src = a->x + c * g->D * g->H * g->W;
        const ptrdiff_t w0 = EK_MIN(g->pw, Wp), wn = EK_MAX(0, EK_MIN(g->W, Wp - g->pw));
        ptrdiff_t d, h, i;
        for (d = 0; d < Dp; d++) {
            const ptrdiff_t id = d - g->pd;
            for (h = 0; h < Hp; h++, dst += Wp) {
                const ptrdiff_t ih = h - g->ph;
                if (id < 0 || id >= g->D || ih < 0 || ih >= g->H) {
                    memset(dst, 0, (size_t)Wp * sizeof(float));
                    continue;
                }
                for (i = 0; i < w0; i++) dst[i] = 0.0f;
                memcpy(dst + w0, src + (id * g->H + ih) * g->W, (size_t)wn * sizeof(float));
                for (i = w0 + wn; i < Wp; i++) dst[i] = 0.0f;
            }
        }
    }
}

/* Copy C channels of x (C x D x H x W) into xp (C x Dp x Hp x Wp), zero outside. */
EK_API void EK_FN(ek_im2col_pad)(const float *EK_RESTRICT x, ptrdiff_t C, const ek_geom3 *g,
                                 float *EK_RESTRICT xp, int nthreads)
{
    ptrdiff_t Dp, Hp, Wp;
    EK_FN(ek_im2col_args) a;
    EK_FN(ek_im2col_padded_dims)(g, &Dp, &Hp, &Wp);
    a.x = x; a.out = xp; a.C = C; a.g = g;
    ek_parallel_rows(ek_nthreads_work(nthreads, C, ek_mul_sat(ek_mul_sat(C * Dp, Hp), Wp)), C,
                     EK_FN(ek_im2col_pad_rows), &a);
}

/* lanes [l0, l1) of a virtual packed row (panel p at row + p * ps) = 0 */
EK_INLINE void EK_FN(ek_pk_zero)(float *row, ptrdiff_t ps, ptrdiff_t l0, ptrdiff_t l1)
{
    const ptrdiff_t NR = EK_GEMM_NR;
    while (l0 < l1) {
        const ptrdiff_t p = l0 / NR, e = EK_MIN(l1, (p + 1) * NR);
        float *d = row + p * ps + (l0 - p * NR);
        ptrdiff_t i;
        for (i = 0; i < e - l0; i++) d[i] = 0.0f;
        l0 = e;
    }
}

/* n (<= NR) lanes d[0..n) = src[0], src[sw], ... (one panel, no split) */
EK_INLINE void EK_FN(ek_pk_piece)(float *EK_RESTRICT d, const float *EK_RESTRICT src,
                                  ptrdiff_t n, ptrdiff_t sw)
{
    ptrdiff_t i;
#ifdef EK_VEC_STRIDED_COPY
    if (EK_FN(ek_vec_copy_strided)(d, src, n, sw)) return;
#endif
    if (sw == 1) {
        for (i = 0; i < n; i++) d[i] = src[i];
    } else {
        for (i = 0; i < n; i++) d[i] = src[i * sw];
    }
}

/* A run: lanes [l0, l0 + n) of the block, source offset off (floats) in the input plane,
   already cut at panel boundaries. */
typedef struct {
    int l0, n;
    ptrdiff_t off;
} EK_FN(ek_im2col_run);

/* Runs listed per fill call; a block needing more is filled in slices.  >= 2 NR so that a
   slice always holds at least one whole panel. */
#ifndef EK_IM2COL_MAXRUNS
#define EK_IM2COL_MAXRUNS 384
#endif
#if EK_IM2COL_MAXRUNS < 64
#error "EK_IM2COL_MAXRUNS must be >= 64"
#endif

/* ek_fill_b_fn of the convolution: ctx is an ek_im2col_ctx of this variant. */
static void EK_FN(ek_im2col_fill)(const void *vctx, ptrdiff_t k0, ptrdiff_t kc, ptrdiff_t j0,
                                  ptrdiff_t nc, float *dst)
{
    const EK_FN(ek_im2col_ctx) *ctx = (const EK_FN(ek_im2col_ctx) *)vctx;
    const ek_geom3 *g = ctx->g;
    const ptrdiff_t NR = EK_GEMM_NR, ps = kc * NR;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW, ohw = g->OH * g->OW;
    const ptrdiff_t Wp = ctx->Wp, HWp = ctx->Hp * ctx->Wp, plane = ctx->Dp * HWp;
    const ptrdiff_t ncp = (nc + NR - 1) / NR * NR;
    EK_FN(ek_im2col_run) runs[EK_IM2COL_MAXRUNS];
    ptrdiff_t nruns = 0, jj = 0, kk;
    ptrdiff_t od = j0 / ohw, oh = (j0 % ohw) / g->OW, ow = j0 % g->OW;
    /* the block's runs: one per output row, cut at panel boundaries (same for every k) */
    while (jj < nc) {
        ptrdiff_t run = EK_MIN(g->OW - ow, nc - jj);
        const ptrdiff_t base = (od * g->sd) * HWp + (oh * g->sh) * Wp + ow * g->sw;
        ptrdiff_t done = 0;
        while (done < run) {
            const ptrdiff_t l = jj + done, p = l / NR;
            const ptrdiff_t n = EK_MIN(run - done, (p + 1) * NR - l);
            if (nruns == EK_IM2COL_MAXRUNS) break;
            runs[nruns].l0 = (int)l;
            runs[nruns].n = (int)n;
            runs[nruns].off = base + done * g->sw;
            nruns++;
            done += n;
        }
        if (done < run) break;                  /* run list full: rest below */
        jj += run;
        ow += run;
        if (ow == g->OW) {
            ow = 0;
            if (++oh == g->OH) { oh = 0; od++; }
        }
    }
    if (jj < nc) {
        /* more runs than the list holds (tiny OW): the block in two slices, the first a
           whole number of panels (>= 1: every run is at least one column) */
        const ptrdiff_t part = jj / NR * NR;
        EK_FN(ek_im2col_fill)(vctx, k0, kc, j0, part, dst);
        EK_FN(ek_im2col_fill)(vctx, k0, kc, j0 + part, nc - part, dst + part * kc);
        return;
    }
    for (kk = 0; kk < kc; kk++) {
        const ptrdiff_t k = k0 + kk;
        const ptrdiff_t c = k / kvol, t = k % kvol;
        const ptrdiff_t kd = t / (g->KH * g->KW), kh = (t / g->KW) % g->KH, kw = t % g->KW;
        const float *src = ctx->x + c * plane + kd * g->dd * HWp + kh * g->dh * Wp +
                           kw * g->dw;
        float *row = dst + kk * NR;
        ptrdiff_t r;
        for (r = 0; r < nruns; r++) {
            const ptrdiff_t l0 = runs[r].l0, p = l0 / NR;
            EK_FN(ek_pk_piece)(row + p * ps + (l0 - p * NR), src + runs[r].off, runs[r].n,
                               g->sw);
        }
        if (ncp > nc) EK_FN(ek_pk_zero)(row, ps, nc, ncp);
    }
}

/*
 * Transposed-convolution scatter for one output channel plane: for every tap (kd, kh, kw)
 * and input position (id, ih, iw),
 *     y[id*sd - pd + kd*dd][ih*sh - ph + kh*dh][iw*sw - pw + kw*dw] += col[tap][id][ih][iw]
 * skipping targets outside the output.  Here the geometry is read "backwards": g->D/H/W
 * are the sizes of the *output* plane y and g->OD/OH/OW those of the input grid (the
 * columns of col); y is not cleared.
 * Preconditions: col has KD*KH*KW * OD*OH*OW floats; y has D*H*W floats.
 */
EK_API void EK_FN(ek_col2im3d_plane)(const float *EK_RESTRICT col, const ek_geom3 *g,
                                     float *EK_RESTRICT y)
{
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    ptrdiff_t kd, kh, kw, id, ih, iw;
    for (kd = 0; kd < g->KD; kd++)
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++) {
                const float *src = col + ((kd * g->KH + kh) * g->KW + kw) * L;
                const ptrdiff_t offd = kd * g->dd - g->pd, offh = kh * g->dh - g->ph;
                const ptrdiff_t offw = kw * g->dw - g->pw;
                ptrdiff_t wlo, whi;
                EK_FN(ek_valid_range)(g->OW, g->W, g->sw, offw, &wlo, &whi);
                for (id = 0; id < g->OD; id++) {
                    const ptrdiff_t od = id * g->sd + offd;
                    if (od < 0 || od >= g->D) continue;
                    for (ih = 0; ih < g->OH; ih++) {
                        const ptrdiff_t oh = ih * g->sh + offh;
                        const float *s = src + (id * g->OH + ih) * g->OW;
                        float *d;
                        if (oh < 0 || oh >= g->H) continue;
                        d = y + (od * g->H + oh) * g->W + offw;
                        if (g->sw == 1) {
                            for (iw = wlo; iw < whi; iw++) d[iw] += s[iw];
                        } else {
                            for (iw = wlo; iw < whi; iw++) d[iw * g->sw] += s[iw];
                        }
                    }
                }
            }
}

#endif /* EK_IM2COL_ISA */
