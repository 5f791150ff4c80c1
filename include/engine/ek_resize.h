/*
 * ek_resize.h - interpolation (nearest N-d up to 3 spatial dims, bilinear 2-D) driven by
 * precomputed per-dim source-index / weight tables, so that every coordinate rule
 * (PyTorch's nearest, bilinear with align_corners True / False, explicit scale factors)
 * is decided once at prepare time and the kernel is a pure gather.
 */
#include "ek_common.h"

#ifndef EK_RESIZE_ISA
#define EK_RESIZE_ISA

typedef struct {
    const float *x;
    float *y;
    const ek_geom3 *g;
    ptrdiff_t H, W, OH, OW;
    const ptrdiff_t *idx_d, *idx_h, *idx_w;            /* nearest */
    const ptrdiff_t *h0, *h1, *w0, *w1;                /* bilinear */
    const float *lh0, *lh1, *lw0, *lw1;
} EK_FN(ek_resize_args);

static void EK_FN(ek_resize_nearest_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_resize_args) *a = (const EK_FN(ek_resize_args) *)args;
    const ek_geom3 *g = a->g;
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        const ptrdiff_t p = r / (g->OD * g->OH), od = (r / g->OH) % g->OD, oh = r % g->OH;
        const float *src = a->x + ((p * g->D + a->idx_d[od]) * g->H + a->idx_h[oh]) * g->W;
        float *dst = a->y + r * g->OW;
        ptrdiff_t ow;
        for (ow = 0; ow < g->OW; ow++) dst[ow] = src[a->idx_w[ow]];
    }
}

/*
 * Nearest: y[p][od][oh][ow] = x[p][idx_d[od]][idx_h[oh]][idx_w[ow]].
 * g: D/H/W input sizes, OD/OH/OW output sizes (other fields ignored).
 * Preconditions: x has planes*D*H*W floats, y planes*OD*OH*OW (no overlap);
 * idx_d has OD entries in [0, D), idx_h OH entries in [0, H), idx_w OW entries in [0, W).
 */
EK_API void EK_FN(ek_resize_nearest3d)(const float *EK_RESTRICT x, float *EK_RESTRICT y,
                                       ptrdiff_t planes, const ek_geom3 *g,
                                       const ptrdiff_t *idx_d, const ptrdiff_t *idx_h,
                                       const ptrdiff_t *idx_w, int nthreads)
{
    const ptrdiff_t rows = planes * g->OD * g->OH;
    EK_FN(ek_resize_args) a;
    memset(&a, 0, sizeof(a));
    a.x = x; a.y = y; a.g = g; a.idx_d = idx_d; a.idx_h = idx_h; a.idx_w = idx_w;
    ek_parallel_rows(ek_nthreads_work(nthreads, rows, rows * g->OW), rows,
                     EK_FN(ek_resize_nearest_rows), &a);
}

static void EK_FN(ek_resize_bilinear_rows)(const void *args, ptrdiff_t q0, ptrdiff_t q1)
{
    const EK_FN(ek_resize_args) *a = (const EK_FN(ek_resize_args) *)args;
    const ptrdiff_t H = a->H, W = a->W, OH = a->OH, OW = a->OW;
    ptrdiff_t r;
    for (r = q0; r < q1; r++) {
        const ptrdiff_t p = r / OH, oh = r % OH;
        const float *r0 = a->x + (p * H + a->h0[oh]) * W;
        const float *r1 = a->x + (p * H + a->h1[oh]) * W;
        const float a0 = a->lh0[oh], a1 = a->lh1[oh];
        float *dst = a->y + r * OW;
        ptrdiff_t ow;
        for (ow = 0; ow < OW; ow++) {
            const ptrdiff_t c0 = a->w0[ow], c1 = a->w1[ow];
            const float b0 = a->lw0[ow], b1 = a->lw1[ow];
            dst[ow] = a0 * (b0 * r0[c0] + b1 * r0[c1]) + a1 * (b0 * r1[c0] + b1 * r1[c1]);
        }
    }
}

/*
 * Bilinear 2-D: with per-dim tables (source indices i0, i1 and weights l0, l1),
 *     y[p][oh][ow] = lh0 * (lw0 * x[h0][w0] + lw1 * x[h0][w1])
 *                  + lh1 * (lw0 * x[h1][w0] + lw1 * x[h1][w1])
 * (h0 = h0_tab[oh], ..., lw1 = lw1_tab[ow]), the PyTorch evaluation order.
 * Preconditions: x has planes*H*W floats, y planes*OH*OW (no overlap); the h tables have
 * OH entries, indices in [0, H); the w tables OW entries, indices in [0, W).
 */
EK_API void EK_FN(ek_resize_bilinear2d)(const float *EK_RESTRICT x, float *EK_RESTRICT y,
                                        ptrdiff_t planes, ptrdiff_t H, ptrdiff_t W,
                                        ptrdiff_t OH, ptrdiff_t OW, const ptrdiff_t *h0,
                                        const ptrdiff_t *h1, const float *lh0,
                                        const float *lh1, const ptrdiff_t *w0,
                                        const ptrdiff_t *w1, const float *lw0,
                                        const float *lw1, int nthreads)
{
    const ptrdiff_t rows = planes * OH;
    EK_FN(ek_resize_args) a;
    memset(&a, 0, sizeof(a));
    a.x = x; a.y = y; a.H = H; a.W = W; a.OH = OH; a.OW = OW;
    a.h0 = h0; a.h1 = h1; a.lh0 = lh0; a.lh1 = lh1; a.w0 = w0; a.w1 = w1; a.lw0 = lw0;
    a.lw1 = lw1;
    ek_parallel_rows(ek_nthreads_work(nthreads, rows, rows * OW * 4), rows,
                     EK_FN(ek_resize_bilinear_rows), &a);
}

#endif /* EK_RESIZE_ISA */
