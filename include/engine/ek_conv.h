/*
 * ek_conv.h - N-d convolution and transposed convolution (1-D/2-D/3-D as 3 spatial dims
 * with unit sizes), NCDHW float32, PyTorch weight layouts, fused bias + activation.
 *
 *   conv:           per image and group, im2col into the workspace, then one GEMM
 *                   W_g (Cout/G x C/G*kvol) . col (C/G*kvol x OD*OH*OW) with the bias and the
 *                   activation in the GEMM epilogue.  1x1 / stride 1 / no padding convs use
 *                   the input as the GEMM's B directly (no im2col).
 *   depthwise:      direct kernel (groups == C, Cout = multiplier * C), one output row at a
 *                   time, parallel over (image, output channel).
 *   conv_transpose: per image and group, col = W_g^T . x_g by GEMM into the workspace, then
 *                   col2im scatter-add into the zeroed output plane, + bias, activation;
 *                   parallel over output channels.
 *
 * Geometry (ek_geom3): D/H/W input sizes, KD/KH/KW kernel, OD/OH/OW output sizes, strides,
 * padding at the beginning of each dim (the end padding is implied by the output size),
 * dilations.  Output sizes are the caller's (shape inference); outputs positions whose
 * windows fall outside the padded input read zeros, never out of bounds.
 */
#include "ek_common.h"
#include "ek_gemm.h"
#include "ek_im2col.h"

#ifndef EK_CONV_ISA
#define EK_CONV_ISA

EK_INLINE int EK_FN(ek_conv_is_pointwise)(const ek_geom3 *g)
{
    return g->KD == 1 && g->KH == 1 && g->KW == 1 && g->sd == 1 && g->sh == 1 &&
           g->sw == 1 && g->pd == 0 && g->ph == 0 && g->pw == 0 && g->OD == g->D &&
           g->OH == g->H && g->OW == g->W;
}

/* Floats of workspace ek_conv3d needs (im2col buffer + GEMM packing buffers). */
EK_API ptrdiff_t EK_FN(ek_conv_workspace)(ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                                          const ek_geom3 *g, int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t K = Cg * g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    ptrdiff_t col = EK_FN(ek_conv_is_pointwise)(g) ? 0 : EK_ROUND16(K * L);
    return col + EK_FN(ek_sgemm_workspace)(Coutg, L, K, 0, nthreads);
}

/*
 * y = act(conv(x, w) + bias).
 *   x: N x C x D x H x W;  w: Cout x (C/groups) x KD x KH x KW;  bias: Cout or NULL;
 *   y: N x Cout x OD x OH x OW (write-only; must not overlap x, w, bias or work).
 * Preconditions: groups >= 1 divides C and Cout; all sizes >= 1; work has
 * ek_conv_workspace(C, Cout, groups, g, nthreads) floats (NULL allowed when that is 0).
 */
EK_API void EK_FN(ek_conv3d)(const float *x, const float *w, const float *bias, float *y,
                             ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                             const ek_geom3 *g, int act, float p0, float p1, float *work,
                             int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t K = Cg * g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    const ptrdiff_t inL = g->D * g->H * g->W;
    const int pointwise = EK_FN(ek_conv_is_pointwise)(g);
    float *col = work;
    float *gemm_ws = pointwise ? work : work + EK_ROUND16(K * L);
    ptrdiff_t n, gi;
    for (n = 0; n < N; n++) {
        for (gi = 0; gi < groups; gi++) {
            const float *xg = x + (n * C + gi * Cg) * inL;
            const float *B = xg;
            if (!pointwise) {
                EK_FN(ek_im2col3d)(xg, Cg, g, col, nthreads);
                B = col;
            }
            EK_FN(ek_sgemm)(Coutg, L, K, w + gi * Coutg * K, K, 0, B, L, 0,
                            y + (n * Cout + gi * Coutg) * L, L,
                            bias ? bias + gi * Coutg : NULL, EK_BIAS_ROW, 0, act, p0, p1,
                            gemm_ws, nthreads);
        }
    }
}

/*
 * Depthwise convolution: groups == C, Cout = mult * C; output channel co reads input
 * channel co / mult with filter w[co] (1 x KD x KH x KW).  Same layouts and
 * preconditions as ek_conv3d (no workspace).
 */
EK_API void EK_FN(ek_conv3d_depthwise)(const float *x, const float *w, const float *bias,
                                       float *y, ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout,
                                       const ek_geom3 *g, int act, float p0, float p1,
                                       int nthreads)
{
    const ptrdiff_t mult = Cout / C;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t inL = g->D * g->H * g->W, L = g->OD * g->OH * g->OW;
    const ptrdiff_t planes = N * Cout;
    const int threads = ek_nthreads_work(nthreads, planes, planes * L * kvol);
    ptrdiff_t pl;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (pl = 0; pl < planes; pl++) {
        const ptrdiff_t n = pl / Cout, co = pl % Cout, c = co / mult;
        const float *xp = x + (n * C + c) * inL;
        const float *wp = w + co * kvol;
        const float b = bias ? bias[co] : 0.0f;
        float *yp = y + pl * L;
        ptrdiff_t od, oh, ow, kd, kh, kw;
        for (od = 0; od < g->OD; od++) {
            for (oh = 0; oh < g->OH; oh++) {
                float *EK_RESTRICT row = yp + (od * g->OH + oh) * g->OW;
                for (ow = 0; ow < g->OW; ow++) row[ow] = b;
                for (kd = 0; kd < g->KD; kd++) {
                    const ptrdiff_t id = od * g->sd + kd * g->dd - g->pd;
                    if (id < 0 || id >= g->D) continue;
                    for (kh = 0; kh < g->KH; kh++) {
                        const ptrdiff_t ih = oh * g->sh + kh * g->dh - g->ph;
                        const float *EK_RESTRICT xrow;
                        if (ih < 0 || ih >= g->H) continue;
                        xrow = xp + (id * g->H + ih) * g->W;
                        for (kw = 0; kw < g->KW; kw++) {
                            const float wv = wp[(kd * g->KH + kh) * g->KW + kw];
                            const ptrdiff_t off = kw * g->dw - g->pw;
                            ptrdiff_t lo, hi;
                            EK_FN(ek_valid_range)(g->OW, g->W, g->sw, off, &lo, &hi);
                            if (g->sw == 1) {
                                const float *EK_RESTRICT xs = xrow + off;
                                for (ow = lo; ow < hi; ow++) row[ow] += wv * xs[ow];
                            } else if (g->sw == 2) {
                                const float *EK_RESTRICT xs = xrow + off;
                                for (ow = lo; ow < hi; ow++) row[ow] += wv * xs[2 * ow];
                            } else {
                                for (ow = lo; ow < hi; ow++)
                                    row[ow] += wv * xrow[ow * g->sw + off];
                            }
                        }
                    }
                }
                EK_FN(ek_act_inplace)(row, g->OW, act, p0, p1);
            }
        }
    }
}

EK_INLINE int EK_FN(ek_convt_is_pointwise)(const ek_geom3 *g)
{
    return EK_FN(ek_conv_is_pointwise)(g);
}

/* Floats of workspace ek_conv_transpose3d needs (column buffer + GEMM packing). */
EK_API ptrdiff_t EK_FN(ek_conv_transpose_workspace)(ptrdiff_t C, ptrdiff_t Cout,
                                                    ptrdiff_t groups, const ek_geom3 *g,
                                                    int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t inL = g->D * g->H * g->W;
    if (EK_FN(ek_convt_is_pointwise)(g))
        return EK_FN(ek_sgemm_workspace)(Coutg, inL, Cg, 0, nthreads);
    return EK_ROUND16(Coutg * kvol * inL) +
           EK_FN(ek_sgemm_workspace)(Coutg * kvol, inL, Cg, 0, nthreads);
}

/*
 * y = act(conv_transpose(x, w) + bias).
 *   x: N x C x D x H x W (the transposed conv's input);  w: C x (Cout/groups) x KD x KH x KW
 *   (PyTorch layout);  bias: Cout or NULL;  y: N x Cout x OD x OH x OW (write-only).
 *   Input position i of a dim contributes to outputs i*s - p + k*d (p = padding begin);
 *   output_padding is expressed by the output size.
 * Preconditions: groups >= 1 divides C and Cout; all sizes >= 1; work has
 * ek_conv_transpose_workspace(C, Cout, groups, g, nthreads) floats; y does not overlap
 * x, w, bias or work.
 */
EK_API void EK_FN(ek_conv_transpose3d)(const float *x, const float *w, const float *bias,
                                       float *y, ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout,
                                       ptrdiff_t groups, const ek_geom3 *g, int act,
                                       float p0, float p1, float *work, int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t inL = g->D * g->H * g->W, L = g->OD * g->OH * g->OW;
    const ptrdiff_t M = Coutg * kvol;
    ek_geom3 back;   /* col2im view: "input" grid = x positions, "output" plane = y */
    ptrdiff_t n, gi;
    if (EK_FN(ek_convt_is_pointwise)(g)) {
        /* y_g = W_g^T . x_g: a GEMM straight into the output. */
        for (n = 0; n < N; n++)
            for (gi = 0; gi < groups; gi++)
                EK_FN(ek_sgemm)(Coutg, inL, Cg, w + gi * Cg * Coutg, Coutg, 1,
                                x + (n * C + gi * Cg) * inL, inL, 0,
                                y + (n * Cout + gi * Coutg) * L, L,
                                bias ? bias + gi * Coutg : NULL, EK_BIAS_ROW, 0, act, p0, p1,
                                work, nthreads);
        return;
    }
    back = *g;
    back.D = g->OD; back.H = g->OH; back.W = g->OW;
    back.OD = g->D; back.OH = g->H; back.OW = g->W;
    for (n = 0; n < N; n++) {
        for (gi = 0; gi < groups; gi++) {
            float *col = work;
            float *gemm_ws = work + EK_ROUND16(M * inL);
            const int threads = ek_nthreads_work(nthreads, Coutg, Coutg * (L + kvol * inL));
            ptrdiff_t co;
            /* col (M x inL) = W_g^T (M x Cg) . x_g (Cg x inL); W_g is stored Cg x M. */
            EK_FN(ek_sgemm)(M, inL, Cg, w + gi * Cg * M, M, 1, x + (n * C + gi * Cg) * inL,
                            inL, 0, col, inL, NULL, EK_BIAS_NONE, 0, EK_ACT_NONE, 0.0f, 0.0f,
                            gemm_ws, nthreads);
            (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
            for (co = 0; co < Coutg; co++) {
                float *yp = y + (n * Cout + gi * Coutg + co) * L;
                const float b = bias ? bias[gi * Coutg + co] : 0.0f;
                ptrdiff_t i;
                for (i = 0; i < L; i++) yp[i] = 0.0f;
                EK_FN(ek_col2im3d_plane)(col + co * kvol * inL, &back, yp);
                if (b != 0.0f)
                    for (i = 0; i < L; i++) yp[i] += b;
                EK_FN(ek_act_inplace)(yp, L, act, p0, p1);
            }
        }
    }
}

#endif /* EK_CONV_ISA */
