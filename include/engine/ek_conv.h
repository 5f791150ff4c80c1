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

/* Floats of workspace ek_conv3d (weights as given) needs: the padded input copy and the
   GEMM's per-thread panels. */
EK_API ptrdiff_t EK_FN(ek_conv_workspace)(ptrdiff_t C, ptrdiff_t Cout, ptrdiff_t groups,
                                          const ek_geom3 *g, int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t K = Cg * g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    return EK_FN(ek_conv_pad_floats)(Cg, g) +
           EK_FN(ek_gemm_workspace)(Coutg, L, K, 0, EK_FN(ek_conv_b_mode)(g), nthreads);
}

/* Floats of workspace ek_conv3d_packed needs. */
EK_API ptrdiff_t EK_FN(ek_conv_packed_workspace)(ptrdiff_t C, ptrdiff_t Cout,
                                                 ptrdiff_t groups, const ek_geom3 *g,
                                                 int nthreads)
{
    const ptrdiff_t Cg = C / groups, Coutg = Cout / groups;
    const ptrdiff_t K = Cg * g->KD * g->KH * g->KW;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    return EK_FN(ek_conv_pad_floats)(Cg, g) +
           EK_FN(ek_gemm_workspace)(Coutg, L, K, 1, EK_FN(ek_conv_b_mode)(g), nthreads);
}

/* Floats of the pre-packed weights of a conv with Cout outputs, K = C/groups * kvol. */
EK_API ptrdiff_t EK_FN(ek_conv_pack_size)(ptrdiff_t Cout, ptrdiff_t K, ptrdiff_t groups)
{
    return groups * EK_FN(ek_gemm_pack_a_size)(Cout / groups, K);
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
#if EK_ISA_LEVEL >= 2
#define EK_DW_VW 16
#elif EK_ISA_LEVEL == 1
#define EK_DW_VW 8
#else
#define EK_DW_VW 4
#endif
#define EK_DW_NB 4
#ifndef EK_DW_GEOM_DEFINED
#define EK_DW_GEOM_DEFINED
typedef struct {
    ptrdiff_t P, Hp, cpr, xsize;   /* pitch, padded rows, chunks per output row, floats */
} ek_dw_geom;
#endif

EK_INLINE int EK_FN(ek_dw_fast)(const ek_geom3 *g, ek_dw_geom *d)
{
    const ptrdiff_t s = g->sw;
    ptrdiff_t owr;
    if (g->KD != 1 || g->OD != 1 || g->D != 1 || s > 2) return 0;
    d->cpr = (g->OW + EK_DW_VW - 1) / EK_DW_VW;
    owr = d->cpr * EK_DW_VW;
    /* a chunk at ow0 reads columns s * ow0 + kw * dw + [0, 16 s) */
    d->P = EK_MAX(g->pw + g->W, s * owr + (g->KW - 1) * g->dw);
    /* (NEON computes output rows in pairs: room for the windows of one more row) */
    d->Hp = EK_MAX(g->ph + g->H, (g->OH - 1 + EK_NEON) * g->sh + (g->KH - 1) * g->dh + 1);
    d->xsize = d->Hp * d->P;
    return 1;
}

/* Floats of workspace ek_conv3d_depthwise needs (one padded plane per thread). */
EK_API ptrdiff_t EK_FN(ek_conv_depthwise_workspace)(ptrdiff_t N, ptrdiff_t Cout,
                                                    const ek_geom3 *g, int nthreads)
{
    ek_dw_geom d;
    const ptrdiff_t planes = N * Cout;
    const ptrdiff_t L = g->OD * g->OH * g->OW;
    const int threads = ek_nthreads_work(nthreads, planes, planes * L * g->KH * g->KW);
    if (!EK_FN(ek_dw_fast)(g, &d)) return 0;
    return (ptrdiff_t)threads * EK_ROUND16(d.xsize) + 16;
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
#if EK_ISA_LEVEL >= 2
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, s + i));
        return;
    }
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
#if EK_ISA_LEVEL >= 2
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

/*
 * Depthwise convolution: groups == C, Cout = mult * C; output channel co reads input
 * channel co / mult with filter w[co] (1 x KD x KH x KW).  Same layouts and
 * preconditions as ek_conv3d; work has ek_conv_depthwise_workspace(N, Cout, g, nthreads)
 * floats (may be NULL: then every case takes the general path).
 *
 * Direct kernel, parallel over (image, channel) planes (dynamic schedule).  2-D / 1-D with
 * width stride 1 or 2: the padded-plane kernel above.  Otherwise (3-D, other strides):
 * output rows accumulated tap by tap in vectorised loops over the valid range.
 */
EK_API void EK_FN(ek_conv3d_depthwise)(const float *x, const float *w, const float *bias,
                                       float *y, ptrdiff_t N, ptrdiff_t C, ptrdiff_t Cout,
                                       const ek_geom3 *g, int act, float p0, float p1,
                                       float *work, int nthreads)
{
    const ptrdiff_t mult = Cout / C;
    const ptrdiff_t kvol = g->KD * g->KH * g->KW;
    const ptrdiff_t inL = g->D * g->H * g->W, L = g->OD * g->OH * g->OW;
    const ptrdiff_t planes = N * Cout;
    const int threads = ek_nthreads_work(nthreads, planes, planes * L * kvol);
    ek_dw_geom d;
    const int fast = EK_FN(ek_dw_fast)(g, &d) && work != NULL;
    float *ws = fast ? ek_align64(work) : NULL;
    ptrdiff_t pl;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4) if (threads > 1)
#endif
    for (pl = 0; pl < planes; pl++) {
        const ptrdiff_t n = pl / Cout, co = pl % Cout, c = co / mult;
        const float *xin = x + (n * C + c) * inL;
        const float *wp = w + co * kvol;
        const float b = bias ? bias[co] : 0.0f;
        float *yp = y + pl * L;
        ptrdiff_t od, oh, ow, kd, kh, kw;
        if (fast) {
            float *xp = ws + (ptrdiff_t)ek_thread_id() * EK_ROUND16(d.xsize);
            ptrdiff_t r;
            /* zero-padded copy: buffer row r is input row r - ph, column q is q - pw */
            EK_FN(ek_dw_zero)(xp, g->ph * d.P);
            for (r = 0; r < g->H && r + g->ph < d.Hp; r++) {
                float *dr = xp + (r + g->ph) * d.P;
                EK_FN(ek_dw_zero)(dr, g->pw);
                EK_FN(ek_dw_copy)(dr + g->pw, xin + r * g->W, g->W);
                EK_FN(ek_dw_zero)(dr + g->pw + g->W, d.P - g->pw - g->W);
            }
            EK_FN(ek_dw_zero)(xp + (g->ph + r) * d.P, d.xsize - (g->ph + r) * d.P);
#if EK_NEON
            if (g->OH > 1) {
                if (g->sw == 1) EK_FN(ek_dw_pairs_s1)(xp, wp, b, yp, g, &d, act, p0, p1);
                else EK_FN(ek_dw_pairs_s2)(xp, wp, b, yp, g, &d, act, p0, p1);
                if (!EK_ACT_IS_SIMPLE(act)) EK_FN(ek_act_inplace)(yp, L, act, p0, p1);
                continue;
            }
#endif
            if (g->sw == 1) EK_FN(ek_dw_plane_s1)(xp, wp, b, yp, g, &d, act);
            else EK_FN(ek_dw_plane_s2)(xp, wp, b, yp, g, &d, act);
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
#undef EK_DW_FUSED_ACT
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
