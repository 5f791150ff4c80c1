/*
 * ek_im2col.h - im2col (gather) and col2im (scatter-add) over 3 spatial dims.
 *
 * 1-D and 2-D problems use unit sizes for the missing leading dims (D = KD = OD = 1, ...).
 * A "row" of the column matrix is one (channel, kd, kh, kw) tap; its columns are the
 * output positions (od, oh, ow) in row-major order.
 */
#include "ek_common.h"

#ifndef EK_IM2COL_ISA
#define EK_IM2COL_ISA

/*
 * col[r][p] for r = ((c * KD + kd) * KH + kh) * KW + kw, p = (od * OH + oh) * OW + ow:
 *     x[c][od*sd - pd + kd*dd][oh*sh - ph + kh*dh][ow*sw - pw + kw*dw], 0 outside the input.
 * Preconditions: x has C * D * H * W floats; col has C * KD*KH*KW * OD*OH*OW floats;
 * every size >= 1 (C >= 0), strides and dilations >= 1.
 */
EK_API void EK_FN(ek_im2col3d)(const float *EK_RESTRICT x, ptrdiff_t C, const ek_geom3 *g,
                               float *EK_RESTRICT col, int nthreads)
{
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t rows = C * kvol;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    const int threads = ek_nthreads_work(nthreads, rows, rows * L);
    ptrdiff_t r;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        const ptrdiff_t c = r / kvol, t = r % kvol;
        const ptrdiff_t kd = t / (g->KH * g->KW), kh = (t / g->KW) % g->KH, kw = t % g->KW;
        const float *xc = x + c * g->D * g->H * g->W;
        float *dst = col + r * L;
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
