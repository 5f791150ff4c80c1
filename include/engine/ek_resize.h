/*
 * ek_resize.h - interpolation (nearest N-d up to 3 spatial dims, bilinear 2-D) driven by
 * precomputed per-dim source-index / weight tables, so that every coordinate rule
 * (PyTorch's nearest, bilinear with align_corners True / False, explicit scale factors)
 * is decided once at prepare time and the kernel is a pure gather.
 */
#include "ek_common.h"

#ifndef EK_RESIZE_ISA
#define EK_RESIZE_ISA

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
    const int threads = ek_nthreads_work(nthreads, rows, rows * g->OW);
    ptrdiff_t r;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        const ptrdiff_t p = r / (g->OD * g->OH), od = (r / g->OH) % g->OD, oh = r % g->OH;
        const float *src = x + ((p * g->D + idx_d[od]) * g->H + idx_h[oh]) * g->W;
        float *dst = y + r * g->OW;
        ptrdiff_t ow;
        for (ow = 0; ow < g->OW; ow++) dst[ow] = src[idx_w[ow]];
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
    const int threads = ek_nthreads_work(nthreads, rows, rows * OW * 4);
    ptrdiff_t r;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        const ptrdiff_t p = r / OH, oh = r % OH;
        const float *r0 = x + (p * H + h0[oh]) * W;
        const float *r1 = x + (p * H + h1[oh]) * W;
        const float a0 = lh0[oh], a1 = lh1[oh];
        float *dst = y + r * OW;
        ptrdiff_t ow;
        for (ow = 0; ow < OW; ow++) {
            const ptrdiff_t c0 = w0[ow], c1 = w1[ow];
            const float b0 = lw0[ow], b1 = lw1[ow];
            dst[ow] = a0 * (b0 * r0[c0] + b1 * r0[c1]) + a1 * (b0 * r1[c0] + b1 * r1[c1]);
        }
    }
}

#endif /* EK_RESIZE_ISA */
