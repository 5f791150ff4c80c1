/*
 * ek_conv.h - N-d convolution and transposed convolution (1-D/2-D/3-D as 3 spatial dims
 * with unit sizes), NCDHW float32, PyTorch weight layouts, fused bias + activation.
 *
 *   conv:           per image and group, one packed GEMM W_g (Cout/G x C/G*kvol) . col
 *                   (C/G*kvol x OD*OH*OW) with the bias, residual and activation in its
 *                   epilogue.  The column matrix is never materialised: each GEMM task
 *                   im2cols its K x N block straight into packed panels in its slice of the
 *                   workspace.  1x1 / stride 1 / no padding convs use the input as B
 *                   directly (no im2col).  Weights may be pre-packed once (ek_conv_pack).
 *   depthwise:      direct kernel (groups == C, Cout = multiplier * C), parallel over
 *                   (image, output channel); x86 3x3 / 5x5: blocks of output rows sharing
 *                   their input rows, loaded straight from the input (ekx_dw_run).
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

/* How the GEMM's B operand (the column matrix) is produced: the input itself for a
   pointwise conv, else im2col into packed panels. */
EK_INLINE int EK_FN(ek_conv_b_mode)(const ek_geom3 *g)
{
    return EK_FN(ek_conv_is_pointwise)(g) ? EK_GEMM_B_MATRIX : EK_GEMM_B_FILL;
}

/* Padded copy of one group's input (im2col path only; 0 when not needed). */
EK_INLINE ptrdiff_t EK_FN(ek_conv_pad_floats)(ptrdiff_t Cg, const ek_geom3 *g)
{
    return EK_FN(ek_conv_is_pointwise)(g) ? 0 : EK_FN(ek_im2col_pad_size)(Cg, g);
}

/* Workspace of ek_conv3d / ek_conv3d_packed (a_packed): the padded input copy and the
   GEMM's per-thread panels; -1 when a size overflows or exceeds EK_SIZE_MAX. */
EK_INLINE ptrdiff_t EK_FN(ek_conv_ws)(ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                                      const ek_geom3 *g, int a_packed, int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t K = ek_szmul(ek_szmul(ek_szmul(Cg, g->KD), g->KH), g->KW);
    const ptrdiff_t L = ek_szmul(ek_szmul(g->OD, g->OH), g->OW);
    if (K < 0 || L < 0) return -1;
    return ek_szadd(EK_FN(ek_conv_pad_floats)(Cg, g),
                    EK_FN(ek_gemm_workspace)(Coutg, L, K, a_packed, EK_FN(ek_conv_b_mode)(g),
                                             nthreads));
}

/* Floats of workspace ek_conv3d (weights as given) needs (-1: too large, see above). */
EK_API ptrdiff_t EK_FN(ek_conv_workspace)(ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                                          const ek_geom3 *g, int nthreads)
{
    return EK_FN(ek_conv_ws)(C, Cout, groups, g, 0, nthreads);
}

/* Floats of workspace ek_conv3d_packed needs (-1: too large). */
EK_API ptrdiff_t EK_FN(ek_conv_packed_workspace)(ptrdiff_t C, ptrdiff_t Cout,
                                                 ptrdiff_t groups, const ek_geom3 *g,
                                                 int nthreads)
{
    return EK_FN(ek_conv_ws)(C, Cout, groups, g, 1, nthreads);
}

/* Floats of the pre-packed weights of a conv with Cout outputs, K = C/groups * kvol
   (-1: too large). */
EK_API ptrdiff_t EK_FN(ek_conv_pack_size)(ptrdiff_t Cout, ptrdiff_t K, ptrdiff_t groups)
{
    return ek_szmul(groups, EK_FN(ek_gemm_pack_a_size)(Cout / groups, K));
}

/* Pack the weights w (Cout x K, PyTorch layout flattened) once, group by group, into buf
   (ek_conv_pack_size floats): the A operands of the per-group GEMMs. */
EK_API void EK_FN(ek_conv_pack)(const float *w, ptrdiff_t Cout, ptrdiff_t K, ptrdiff_t groups,
                                float *buf)
{
    const ptrdiff_t Coutg = Cout / groups, sz = EK_FN(ek_gemm_pack_a_size)(Coutg, K);
    ptrdiff_t gi;
    for (gi = 0; gi < groups; gi++)
        EK_FN(ek_gemm_pack_a)(Coutg, K, w + gi * Coutg * K, K, 0, buf + gi * sz);
}

/* The convolution proper: w is either the weights (packed == 0) or ek_conv_pack's buffer. */
EK_INLINE void EK_FN(ek_conv3d_impl)(const float *x, const float *w, int packed,
                                     const float *bias, const float *R, float *y, ptrdiff_t N,
                                     ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                                     const ek_geom3 *g, int act, float p0, float p1,
                                     float *work, int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t K = Cg * g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    const ptrdiff_t inL = g->D * g->H * g->W;
    const int pointwise = EK_FN(ek_conv_is_pointwise)(g);
    const ptrdiff_t psz = EK_FN(ek_gemm_pack_a_size)(Coutg, K);
    const ptrdiff_t padf = EK_FN(ek_conv_pad_floats)(Cg, g);
    float *xpad = padf ? work : NULL;          /* padded input copy, then GEMM panels */
    float *gwork = padf ? work + padf : work;
    ptrdiff_t Dp = g->D, Hp = g->H, Wp = g->W;
    ptrdiff_t n, gi;
    if (padf) EK_FN(ek_im2col_padded_dims)(g, &Dp, &Hp, &Wp);
    for (n = 0; n < N; n++) {
        for (gi = 0; gi < groups; gi++) {
            const float *xg = x + (n * C + gi * Cg) * inL;
            const ptrdiff_t yoff = (n * Cout + gi * Coutg) * L;
            EK_FN(ek_im2col_ctx) ctx;
            ek_gemm_args a;
            memset(&a, 0, sizeof(a));
            a.M = Coutg; a.N = L; a.K = K;
            if (packed) {
                a.A = w + gi * psz;
                a.a_packed = 1;
            } else {
                a.A = w + gi * Coutg * K;
                a.lda = K;
            }
            if (pointwise) {
                a.B = xg;
                a.ldb = L;
            } else {
                if (padf) EK_FN(ek_im2col_pad)(xg, Cg, g, xpad, nthreads);
                ctx.x = padf ? xpad : xg;
                ctx.Dp = Dp;
                ctx.Hp = Hp;
                ctx.Wp = Wp;
                ctx.g = g;
                a.fill_b = EK_FN(ek_im2col_fill);
                a.fill_ctx = &ctx;
            }
            a.C = y + yoff;
            a.ldc = L;
            a.bias = bias ? bias + gi * Coutg : NULL;
            a.bias_mode = bias ? EK_BIAS_ROW : EK_BIAS_NONE;
            a.R = R ? R + yoff : NULL;
            a.ldr = L;
            a.act = act; a.p0 = p0; a.p1 = p1;
            EK_FN(ek_gemm_run)(&a, gwork, nthreads);
        }
    }
}

/*
 * y = act(conv(x, w) + bias).
 *   x: N x C x D x H x W;  w: Cout x (C/groups) x KD x KH x KW;  bias: Cout or NULL;
 *   y: N x Cout x OD x OH x OW (write-only; must not overlap x, w, bias or work).
 * Per image and group one GEMM W_g (Cout/G x K) . col (K x L), K = C/G * kvol; the column
 * matrix is produced block by block into packed panels (ek_im2col_fill), or is the input
 * itself for a 1x1 stride-1 unpadded conv.  Bias and activation in the GEMM epilogue.
 * Preconditions: groups >= 1 divides C and Cout; all sizes >= 1; work has
 * ek_conv_workspace(C, Cout, groups, g, nthreads) floats (NULL allowed when that is 0).
 */
EK_API void EK_FN(ek_conv3d)(const float *x, const float *w, const float *bias, float *y,
                             ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                             const ek_geom3 *g, int act, float p0, float p1, float *work,
                             int nthreads)
{
    EK_FN(ek_conv3d_impl)(x, w, 0, bias, NULL, y, N, C, Cout, groups, g, act, p0, p1, work,
                          nthreads);
}

/*
 * ek_conv3d with weights pre-packed by ek_conv_pack (same variant) and an optional
 * residual R (same shape as y, added before the activation; may not overlap y).
 * work: ek_conv_packed_workspace(C, Cout, groups, g, nthreads) floats.
 */
EK_API void EK_FN(ek_conv3d_packed)(const float *x, const float *wpk, const float *bias,
                                    const float *R, float *y, ptrdiff_t N, ptrdiff_t C,
                                    ptrdiff_t Cout, ptrdiff_t groups, const ek_geom3 *g,
                                    int act, float p0, float p1, float *work, int nthreads)
{
    EK_FN(ek_conv3d_impl)(x, wpk, 1, bias, R, y, N, C, Cout, groups, g, act, p0, p1, work,
                          nthreads);
}

/* ------------------------------------------------------------------ depthwise -- */

/*
 * Depthwise 2-D fast path.  The input plane is copied into a zero-padded buffer (pitch P,
 * origin at (-ph, -pw), wide enough that every 16-column chunk of every output row reads
 * inside it), so no output needs a bounds check.  The output rows are cut into 16-column
 * chunks ("items", row-major over the plane, the last chunk of a row partial); EK_DW_NB
 * items at a time are computed with two accumulators each (even / odd kernel rows), i.e.
 * 2 * EK_DW_NB independent FMA chains even for 7-wide maps, every tap a contiguous
 * (stride 1) or deinterleaved (stride 2) 16-float load.  relu / relu6 are applied in
 * registers, other activations over the finished plane.  (aarch64 NEON: row pairs sharing
 * their input rows instead, see ek_dw_pairs.)
 */
/* chunk width = one vector register of the variant (a wider GNU vector would be split and
   spilled on narrower ISAs) */
#define EK_DW_VW EK_VW
#define EK_DW_NB 4
#ifndef EK_DW_GEOM_DEFINED
#define EK_DW_GEOM_DEFINED
typedef struct {
    ptrdiff_t P, Hp, cpr, xsize;   /* pitch, padded rows, chunks per output row, floats */
} ek_dw_geom;
#endif

/* The padded-plane path, when it applies and its plane stays within a small multiple of
   the input and output planes (a hostile stride, dilation or padding would make it huge:
   such convs take the general path, which needs no workspace).  The geometry passed
   ek_geom3_check: every term below is at most ~2^33. */
EK_INLINE int EK_FN(ek_dw_fast)(const ek_geom3 *g, ek_dw_geom *d)
{
    const ptrdiff_t s = g->sw;
    ptrdiff_t owr, bound;
    if (g->KD != 1 || g->OD != 1 || g->D != 1 || s > 2) return 0;
    d->cpr = (g->OW + EK_DW_VW - 1) / EK_DW_VW;
    owr = d->cpr * EK_DW_VW;
    /* a chunk at ow0 reads columns s * ow0 + kw * dw + [0, 16 s) */
    d->P = EK_MAX(g->pw + g->W, s * owr + (g->KW - 1) * g->dw);
    /* (NEON computes output rows in pairs: room for the windows of one more row) */
    d->Hp = EK_MAX(g->ph + g->H, (g->OH - 1 + EK_NEON) * g->sh + (g->KH - 1) * g->dh + 1);
    d->xsize = ek_szmul(d->Hp, d->P);
    bound = ek_szadd(ek_szmul(4, ek_szadd(ek_szmul(g->H, g->W), ek_szmul(g->OH, g->OW))),
                     65536);
    return d->xsize >= 0 && bound >= 0 && d->xsize <= bound;
}

/*
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
#if EKX
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
#else
#define EK_DWX 0
#endif

/* Floats of workspace ek_conv3d_depthwise needs (x86 path: a zero row; else one padded
   plane per thread). */
EK_API ptrdiff_t EK_FN(ek_conv_depthwise_workspace)(ptrdiff_t N, ptrdiff_t Cout,
                                                    const ek_geom3 *g, int nthreads)
{
    ek_dw_geom d;
    const ptrdiff_t planes = N * Cout;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    /* (the same work estimate as ek_conv3d_depthwise: the same thread count) */
    const int threads = ek_nthreads_work(
        nthreads, planes, ek_mul_sat(ek_mul_sat(planes, L), ek_mul_sat(ek_mul_sat(g->KD, g->KH),
                                                                       g->KW)));
#if EK_DWX
    ek_dwx_geom dx;
    if (EK_FN(ek_dwx_fast)(g, &dx)) return dx.zlen + 16;
#endif
    if (!EK_FN(ek_dw_fast)(g, &d)) return 0;
    return ek_szadd(ek_szmul(threads, ek_szround16(d.xsize)), 16);
}

#if defined(__GNUC__) && !defined(EK_NO_VECTOR_EXT)
typedef float EK_FN(ek_dw_vf) __attribute__((vector_size(EK_DW_VW * 4)));
typedef int EK_FN(ek_dw_vi) __attribute__((vector_size(EK_DW_VW * 4)));
#define ek_dw_vf EK_FN(ek_dw_vf)
#define ek_dw_vi EK_FN(ek_dw_vi)
#if EK_DW_VW == 16
#define EK_DW_EVEN {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#elif EK_DW_VW == 8
#define EK_DW_EVEN {0, 2, 4, 6, 8, 10, 12, 14}
#else
#define EK_DW_EVEN {0, 2, 4, 6}
#endif
#define EK_DW_VEC 1
#else
#define EK_DW_VEC 0
#endif

/* Short copies and fills inline (a libc call costs more than one row's work). */
EK_INLINE void EK_FN(ek_dw_copy)(float *EK_RESTRICT d, const float *EK_RESTRICT s, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#if EK_DW_VEC
    for (; i + EK_DW_VW <= n; i += EK_DW_VW) {
        ek_dw_vf v;
        memcpy(&v, s + i, sizeof(v));
        memcpy(d + i, &v, sizeof(v));
    }
    if (i < n && n >= EK_DW_VW) {    /* tail: one overlapping vector ending at n */
        ek_dw_vf v;
        memcpy(&v, s + n - EK_DW_VW, sizeof(v));
        memcpy(d + n - EK_DW_VW, &v, sizeof(v));
        return;
    }
#endif
#ifdef EK_VEC_STRIDED_COPY
    if (i < n && EK_FN(ek_vec_copy_strided)(d + i, s + i, n - i, 1)) return;
#endif
    for (; i < n; i++) d[i] = s[i];
}

EK_INLINE void EK_FN(ek_dw_zero)(float *d, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#if EK_DW_VEC
    const ek_dw_vf z = {0};
    for (; i + EK_DW_VW <= n; i += EK_DW_VW) memcpy(d + i, &z, sizeof(z));
#endif
    for (; i < n; i++) d[i] = 0.0f;
}

#if EK_DW_VEC
/* One 16-float tap load at t: contiguous (S == 1) or the even floats of 32 (S == 2). */
#define EK_DW_LOAD(S, t, xv)                                                               \
    do {                                                                                   \
        if ((S) == 1) {                                                                    \
            memcpy(&(xv), (t), sizeof(ek_dw_vf));                                          \
        } else {                                                                           \
            ek_dw_vf lo_, hi_;                                                             \
            const ek_dw_vi sel_ = EK_DW_EVEN;                                              \
            memcpy(&lo_, (t), sizeof(lo_));                                                \
            memcpy(&hi_, (t) + EK_DW_VW, sizeof(hi_));                                     \
            (xv) = __builtin_shuffle(lo_, hi_, sel_);                                      \
        }                                                                                  \
    } while (0)

/* All output chunks of one plane from its padded copy xp (column stride S). */
EK_INLINE void EK_FN(ek_dw_plane)(const int S, const float *xp, const float *wp, float b,
                                  float *yp, const ek_geom3 *g, const ek_dw_geom *d, int act)
{
    enum { NB = EK_DW_NB, VW = EK_DW_VW };
    const ptrdiff_t total = g->OH * d->cpr, P = d->P, KH = g->KH, KW = g->KW;
    const ptrdiff_t rstep = g->dh * P, dw = g->dw;
    ptrdiff_t it, oh = 0, c = 0;     /* (oh, c): row and chunk of item `it` */
    for (it = 0; it < total; it += NB) {
        ek_dw_vf acc0[NB], acc1[NB];
        const float *base[NB];
        ptrdiff_t kh, kw, q, qoh = oh, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + qoh * g->sh * P + S * qc * VW;
            acc0[q] = (ek_dw_vf){0} + b;
            acc1[q] = (ek_dw_vf){0};
            if (it + q + 1 < total && ++qc == d->cpr) { qc = 0; qoh++; }
        }
        /* kernel rows in pairs: two independent accumulators per item */
        for (kh = 0; kh + 1 < KH; kh += 2) {
            const float *w0 = wp + kh * KW, *w1 = w0 + KW;
            const ptrdiff_t r0 = kh * rstep, r1 = r0 + rstep;
            for (kw = 0; kw < KW; kw++) {
                const float a0 = w0[kw], a1 = w1[kw];
                for (q = 0; q < NB; q++) {
                    ek_dw_vf x0, x1;
                    EK_DW_LOAD(S, base[q] + r0 + kw * dw, x0);
                    EK_DW_LOAD(S, base[q] + r1 + kw * dw, x1);
                    acc0[q] += a0 * x0;
                    acc1[q] += a1 * x1;
                }
            }
        }
        if (kh < KH) {
            const float *w0 = wp + kh * KW;
            const ptrdiff_t r0 = kh * rstep;
            for (kw = 0; kw < KW; kw++) {
                const float a0 = w0[kw];
                for (q = 0; q < NB; q++) {
                    ek_dw_vf x0;
                    EK_DW_LOAD(S, base[q] + r0 + kw * dw, x0);
                    acc0[q] += a0 * x0;
                }
            }
        }
        for (q = 0; q < NB && it + q < total; q++) {
            ek_dw_vf v = acc0[q] + acc1[q];
            const ptrdiff_t ow = c * VW;
            if (act == EK_ACT_RELU || act == EK_ACT_RELU6) {  /* NaN passes, as scalar */
                const ek_dw_vi neg = v < 0.0f;
                v = (ek_dw_vf)((ek_dw_vi)v & ~neg);
                if (act == EK_ACT_RELU6) {
                    const ek_dw_vi big = v > 6.0f;
                    const ek_dw_vf six = (ek_dw_vf){0} + 6.0f;
                    v = (ek_dw_vf)(((ek_dw_vi)v & ~big) | ((ek_dw_vi)six & big));
                }
            }
            if (ow + VW <= g->OW) {
                memcpy(yp + oh * g->OW + ow, &v, sizeof(v));
            } else {
#if EKX_AVX512
                const __mmask16 m = (__mmask16)((1u << (g->OW - ow)) - 1u);
                __m512 vv;
                memcpy(&vv, &v, sizeof(vv));
                _mm512_mask_storeu_ps(yp + oh * g->OW + ow, m, vv);
#else
                float lanes[EK_DW_VW];
                ptrdiff_t t;
                memcpy(lanes, &v, sizeof(lanes));
                for (t = 0; t < g->OW - ow; t++) yp[oh * g->OW + ow + t] = lanes[t];
#endif
            }
            if (++c == d->cpr) { c = 0; oh++; }
        }
    }
}
#undef EK_DW_LOAD

static EK_NOINLINE void EK_FN(ek_dw_plane_s1)(const float *xp, const float *wp, float b,
                                              float *yp, const ek_geom3 *g,
                                              const ek_dw_geom *d, int act)
{
    EK_FN(ek_dw_plane)(1, xp, wp, b, yp, g, d, act);
}

static EK_NOINLINE void EK_FN(ek_dw_plane_s2)(const float *xp, const float *wp, float b,
                                              float *yp, const ek_geom3 *g,
                                              const ek_dw_geom *d, int act)
{
    EK_FN(ek_dw_plane)(2, xp, wp, b, yp, g, d, act);
}
#define EK_DW_FUSED_ACT(a) ((a) == EK_ACT_RELU || (a) == EK_ACT_RELU6)
#else
static void EK_FN(ek_dw_plane_sn)(const int S, const float *xp, const float *wp, float b,
                                  float *yp, const ek_geom3 *g, const ek_dw_geom *d, int act)
{
    ptrdiff_t oh, ow, kh, kw;
    (void)act;
    for (oh = 0; oh < g->OH; oh++)
        for (ow = 0; ow < g->OW; ow++) {
            float acc = b;
            for (kh = 0; kh < g->KH; kh++)
                for (kw = 0; kw < g->KW; kw++)
                    acc += wp[kh * g->KW + kw] *
                           xp[(oh * g->sh + kh * g->dh) * d->P + S * ow + kw * g->dw];
            yp[oh * g->OW + ow] = acc;
        }
}
#define EK_FN_DW_S1(...) EK_FN(ek_dw_plane_sn)(1, __VA_ARGS__)
static void EK_FN(ek_dw_plane_s1)(const float *xp, const float *wp, float b, float *yp,
                                  const ek_geom3 *g, const ek_dw_geom *d, int act)
{
    EK_FN(ek_dw_plane_sn)(1, xp, wp, b, yp, g, d, act);
}
static void EK_FN(ek_dw_plane_s2)(const float *xp, const float *wp, float b, float *yp,
                                  const ek_geom3 *g, const ek_dw_geom *d, int act)
{
    EK_FN(ek_dw_plane_sn)(2, xp, wp, b, yp, g, d, act);
}
#undef EK_FN_DW_S1
#define EK_DW_FUSED_ACT(a) 0
#endif

#if EK_NEON
/*
 * NEON (aarch64), maps of 2 rows or more: output rows in pairs.  An item is (row pair,
 * 4-column chunk) with two accumulators, top row and bottom row.  Input row `off` of a
 * pair is kernel row off / dh of the top window and (off - sh) / dh of the bottom one
 * (when whole and in range); a row both windows read (2 of the 4 rows of a 3x3 stride-1
 * pair) is loaded once and feeds both, so a 3x3 stride-1 tap costs 2/3 of a load instead
 * of 1.  EK_DW_NB items at a time: 8 independent FMA chains.  Stride-2
 * columns with one de-interleaving load (vld2q).  The simple activations (relu, relu6,
 * leaky_relu, clip, hardswish, hardsigmoid) are applied in registers.  An odd last row is
 * computed and not stored (ek_dw_fast sizes the padded plane for it).
 */
EK_INLINE float32x4_t EK_FN(ek_dw_ld)(const int S, const float *t)
{
    return S == 1 ? vld1q_f32(t) : vld2q_f32(t).val[0];
}

EK_INLINE void EK_FN(ek_dw_pairs)(const int S, const float *xp, const float *wp, float b,
                                  float *yp, const ek_geom3 *g, const ek_dw_geom *d, int act,
                                  float p0, float p1)
{
    enum { NB = EK_DW_NB, VW = EK_DW_VW };
    const ptrdiff_t P = d->P, KH = g->KH, KW = g->KW, sh = g->sh, dh = g->dh, dw = g->dw;
    const ptrdiff_t npr = (g->OH + 1) / 2, total = npr * d->cpr;
    const ptrdiff_t noff = sh + (KH - 1) * dh + 1;     /* input rows of a pair's windows */
    const int simple = EK_ACT_IS_SIMPLE(act);
    ptrdiff_t it, pr = 0, c = 0;     /* (pr, c): row pair and chunk of item `it` */
    for (it = 0; it < total; it += NB) {
        float32x4_t top[NB], bot[NB];
        const float *base[NB];
        ptrdiff_t off, kw, q, qpr = pr, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + 2 * qpr * sh * P + S * qc * VW;
            top[q] = bot[q] = vdupq_n_f32(b);
            if (it + q + 1 < total && ++qc == d->cpr) { qc = 0; qpr++; }
        }
        for (off = 0; off < noff; off++) {
            /* kernel row of the top window (kt) and of the bottom one (kb) reading input
               row `off` of the pair, -1 if none */
            const ptrdiff_t ob = off - sh;
            const ptrdiff_t kt = off % dh == 0 && off / dh < KH ? off / dh : -1;
            const ptrdiff_t kb = ob >= 0 && ob % dh == 0 && ob / dh < KH ? ob / dh : -1;
            const ptrdiff_t ro = off * P;
            if (kt >= 0 && kb >= 0) {
                for (kw = 0; kw < KW; kw++) {
                    const float at = wp[kt * KW + kw], ab = wp[kb * KW + kw];
#pragma GCC unroll 4
                    for (q = 0; q < NB; q++) {
                        const float32x4_t x = EK_FN(ek_dw_ld)(S, base[q] + ro + kw * dw);
                        top[q] = vfmaq_n_f32(top[q], x, at);
                        bot[q] = vfmaq_n_f32(bot[q], x, ab);
                    }
                }
            } else if (kt >= 0) {
                for (kw = 0; kw < KW; kw++) {
                    const float a = wp[kt * KW + kw];
#pragma GCC unroll 4
                    for (q = 0; q < NB; q++)
                        top[q] = vfmaq_n_f32(top[q], EK_FN(ek_dw_ld)(S, base[q] + ro + kw * dw),
                                             a);
                }
            } else if (kb >= 0) {
                for (kw = 0; kw < KW; kw++) {
                    const float a = wp[kb * KW + kw];
#pragma GCC unroll 4
                    for (q = 0; q < NB; q++)
                        bot[q] = vfmaq_n_f32(bot[q], EK_FN(ek_dw_ld)(S, base[q] + ro + kw * dw),
                                             a);
                }
            }
        }
        /* (a fully unrolled loop: constant indices keep top / bot in registers) */
#pragma GCC unroll 4
        for (q = 0; q < NB; q++) {
            const ptrdiff_t ow = c * VW, n = EK_MIN(VW, g->OW - ow), oh = 2 * pr;
            float32x4_t t = top[q], u = bot[q];
            if (it + q >= total) continue;
            if (simple) {
                t = EK_FN(ek_act_neon)(t, act, p0, p1);
                u = EK_FN(ek_act_neon)(u, act, p0, p1);
            }
            EK_FN(ek_neon_st_part)(yp + oh * g->OW + ow, t, n);
            if (oh + 1 < g->OH) EK_FN(ek_neon_st_part)(yp + (oh + 1) * g->OW + ow, u, n);
            if (++c == d->cpr) { c = 0; pr++; }
        }
    }
}

static EK_NOINLINE void EK_FN(ek_dw_pairs_s1)(const float *xp, const float *wp, float b,
                                              float *yp, const ek_geom3 *g,
                                              const ek_dw_geom *d, int act, float p0, float p1)
{
    EK_FN(ek_dw_pairs)(1, xp, wp, b, yp, g, d, act, p0, p1);
}

static EK_NOINLINE void EK_FN(ek_dw_pairs_s2)(const float *xp, const float *wp, float b,
                                              float *yp, const ek_geom3 *g,
                                              const ek_dw_geom *d, int act, float p0, float p1)
{
    EK_FN(ek_dw_pairs)(2, xp, wp, b, yp, g, d, act, p0, p1);
}
#endif

typedef struct {
    const float *x, *w, *bias;
    float *y;
    float *ws;                  /* one padded plane per worker (fast path), else NULL */
    const ek_geom3 *g;
    const ek_dw_geom *d;
    ptrdiff_t C, Cout, planes, ntiles;
    int act;
    float p0, p1;
} EK_FN(ek_dw_job);

/* Planes of tile t (image, output channel) of ek_conv3d_depthwise's portable paths. */
static void EK_FN(ek_dw_tile)(void *ctx, ptrdiff_t t, int worker)
{
    const EK_FN(ek_dw_job) *j = (const EK_FN(ek_dw_job) *)ctx;
    const ek_geom3 *g = j->g;
    const ek_dw_geom *d = j->d;
    const ptrdiff_t C = j->C, Cout = j->Cout, mult = Cout / C;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t inL = g->D * g->H * g->W, L = g->OD * g->OH * g->OW;
    const float *x = j->x, *w = j->w, *bias = j->bias;
    float *y = j->y, *ws = j->ws;
    const int act = j->act, fast = ws != NULL;
    const float p0 = j->p0, p1 = j->p1;
    ptrdiff_t pl, q0, q1;
    ek_tile_span(t, j->ntiles, j->planes, &q0, &q1);
    for (pl = q0; pl < q1; pl++) {
        const ptrdiff_t n = pl / Cout, co = pl % Cout, c = co / mult;
        const float *xin = x + (n * C + c) * inL;
        const float *wp = w + co * kvol;
        const float b = bias ? bias[co] : 0.0f;
        float *yp = y + pl * L;
        ptrdiff_t od, oh, ow, kd, kh, kw;
        if (fast) {
            float *xp = ws + (ptrdiff_t)worker * EK_ROUND16(d->xsize);
            ptrdiff_t r;
            /* zero-padded copy: buffer row r is input row r - ph, column q is q - pw */
            EK_FN(ek_dw_zero)(xp, g->ph * d->P);
            for (r = 0; r < g->H && r + g->ph < d->Hp; r++) {
                float *dr = xp + (r + g->ph) * d->P;
                EK_FN(ek_dw_zero)(dr, g->pw);
                EK_FN(ek_dw_copy)(dr + g->pw, xin + r * g->W, g->W);
                EK_FN(ek_dw_zero)(dr + g->pw + g->W, d->P - g->pw - g->W);
            }
            EK_FN(ek_dw_zero)(xp + (g->ph + r) * d->P, d->xsize - (g->ph + r) * d->P);
#if EK_NEON
            if (g->OH > 1) {
                if (g->sw == 1) EK_FN(ek_dw_pairs_s1)(xp, wp, b, yp, g, d, act, p0, p1);
                else EK_FN(ek_dw_pairs_s2)(xp, wp, b, yp, g, d, act, p0, p1);
                if (!EK_ACT_IS_SIMPLE(act)) EK_FN(ek_act_inplace)(yp, L, act, p0, p1);
                continue;
            }
#endif
            if (g->sw == 1) EK_FN(ek_dw_plane_s1)(xp, wp, b, yp, g, d, act);
            else EK_FN(ek_dw_plane_s2)(xp, wp, b, yp, g, d, act);
            if (!EK_DW_FUSED_ACT(act)) EK_FN(ek_act_inplace)(yp, L, act, p0, p1);
            continue;
        }
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
                        xrow = xin + (id * g->H + ih) * g->W;
                        for (kw = 0; kw < g->KW; kw++) {
                            const float wv = wp[(kd * g->KH + kh) * g->KW + kw];
                            const ptrdiff_t off = kw * g->dw - g->pw;
                            ptrdiff_t lo, hi;
                            EK_FN(ek_valid_range)(g->OW, g->W, g->sw, off, &lo, &hi);
                            if (g->sw == 1) {
                                const float *EK_RESTRICT xs = xrow + off;
                                for (ow = lo; ow < hi; ow++) row[ow] += wv * xs[ow];
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

/*
 * Depthwise convolution: groups == C, Cout = mult * C; output channel co reads input
 * channel co / mult with filter w[co] (1 x KD x KH x KW).  Same layouts and
 * preconditions as ek_conv3d; work has ek_conv_depthwise_workspace(N, Cout, g, nthreads)
 * floats (may be NULL: then every case takes the general path).
 *
 * Direct kernel, tiles of (image, channel) planes on the thread pool.  x86 (AVX2 /
 * AVX-512), 2-D 3x3 / 5x5, equal strides 1 or 2, no dilation: ekx_dw_run above.  Other
 * 2-D / 1-D with width stride 1 or 2: the padded-plane kernel above.  Otherwise (3-D, other
 * strides): output rows accumulated tap by tap in vectorised loops over the valid range.
 */
EK_API void EK_FN(ek_conv3d_depthwise)(const float *x, const float *w, const float *bias,
                                       float *y, ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout,
                                       const ek_geom3 *g, int act, float p0, float p1,
                                       float *work, int nthreads)
{
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    const ptrdiff_t planes = N * Cout;
    const int threads = ek_nthreads_work(nthreads, planes,
                                         ek_mul_sat(ek_mul_sat(planes, L),
                                                    ek_mul_sat(ek_mul_sat(g->KD, g->KH), g->KW)));
    ek_dw_geom d;
    const int fast = EK_FN(ek_dw_fast)(g, &d) && work != NULL;
    float *ws = fast ? ek_align64(work) : NULL;
    EK_FN(ek_dw_job) j;
#if EK_DWX
    ek_dwx_geom dx;
    if (work != NULL && EK_FN(ek_dwx_fast)(g, &dx)) {
        EK_FN(ekx_dw_run)(x, w, bias, y, N, C, Cout, g, &dx, act, p0, p1, ek_align64(work),
                          threads);
        return;
    }
#endif
    j.x = x; j.w = w; j.bias = bias; j.y = y; j.ws = ws; j.g = g; j.d = &d; j.C = C;
    j.Cout = Cout; j.planes = planes; j.act = act; j.p0 = p0; j.p1 = p1;
    j.ntiles = ek_tile_count(threads, planes);
    ek_parallelize(threads, j.ntiles, EK_FN(ek_dw_tile), &j);
}
#undef EK_DW_FUSED_ACT
#undef EK_DWX
#undef EK_DW_VEC
#undef EK_DW_NB
#undef EK_DW_VW
#undef EK_DW_EVEN
#undef ek_dw_vf
#undef ek_dw_vi

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
    const ptrdiff_t kvol = ek_szmul(ek_szmul(g->KD, g->KH), g->KW);
    const ptrdiff_t inL = ek_szmul(ek_szmul(g->D, g->H), g->W);
    const ptrdiff_t M = ek_szmul(Coutg, kvol);
    if (inL < 0) return -1;
    if (EK_FN(ek_convt_is_pointwise)(g))
        return EK_FN(ek_sgemm_workspace)(Coutg, inL, Cg, 0, nthreads);
    if (M < 0) return -1;
    return ek_szadd(ek_szround16(ek_szmul(M, inL)),
                    EK_FN(ek_sgemm_workspace)(M, inL, Cg, 0, nthreads));
}

typedef struct {
    const float *col, *bias;
    float *y;
    const ek_geom3 *back;
    ptrdiff_t kvol, inL, L;
    int act;
    float p0, p1;
} EK_FN(ek_convt_job);

/* Output channels [c0, c1) of one (image, group) of ek_conv_transpose3d: scatter-add of
   their column rows, bias, activation. */
static void EK_FN(ek_convt_rows)(const void *args, ptrdiff_t c0, ptrdiff_t c1)
{
    const EK_FN(ek_convt_job) *j = (const EK_FN(ek_convt_job) *)args;
    const ptrdiff_t L = j->L;
    ptrdiff_t co;
    for (co = c0; co < c1; co++) {
        float *yp = j->y + co * L;
        const float b = j->bias ? j->bias[co] : 0.0f;
        ptrdiff_t i;
        for (i = 0; i < L; i++) yp[i] = 0.0f;
        EK_FN(ek_col2im3d_plane)(j->col + co * j->kvol * j->inL, j->back, yp);
        if (b != 0.0f)
            for (i = 0; i < L; i++) yp[i] += b;
        EK_FN(ek_act_inplace)(yp, L, j->act, j->p0, j->p1);
    }
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
    EK_FN(ek_convt_job) j;
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
    j.back = &back; j.kvol = kvol; j.inL = inL; j.L = L; j.act = act; j.p0 = p0; j.p1 = p1;
    for (n = 0; n < N; n++) {
        for (gi = 0; gi < groups; gi++) {
            float *col = work;
            float *gemm_ws = work + EK_ROUND16(M * inL);
            const int threads = ek_nthreads_work(nthreads, Coutg, Coutg * (L + kvol * inL));
            /* col (M x inL) = W_g^T (M x Cg) . x_g (Cg x inL); W_g is stored Cg x M. */
            EK_FN(ek_sgemm)(M, inL, Cg, w + gi * Cg * M, M, 1, x + (n * C + gi * Cg) * inL,
                            inL, 0, col, inL, NULL, EK_BIAS_NONE, 0, EK_ACT_NONE, 0.0f, 0.0f,
                            gemm_ws, nthreads);
            j.col = col; j.y = y + (n * Cout + gi * Coutg) * L;
            j.bias = bias ? bias + gi * Coutg : NULL;
            ek_parallel_rows(threads, Coutg, EK_FN(ek_convt_rows), &j);
        }
    }
}

#endif /* EK_CONV_ISA */
