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

/* The row kernels of this instruction set (x86 rows, NEON row pairs): f32/dwconv_<isa>.h. */
#include EK_ISA_FILE(f32, dwconv)

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
    /* (the NEON row pairs (EK_DW_PAIRS) compute output rows in pairs: room for the windows
       of one more row) */
    d->Hp = EK_MAX(g->ph + g->H, (g->OH - 1 + EK_DW_PAIRS) * g->sh + (g->KH - 1) * g->dh + 1);
    d->xsize = ek_szmul(d->Hp, d->P);
    bound = ek_szadd(ek_szmul(4, ek_szadd(ek_szmul(g->H, g->W), ek_szmul(g->OH, g->OW))),
                     65536);
    return d->xsize >= 0 && bound >= 0 && d->xsize <= bound;
}

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
#if EK_DW_PAIRS
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
#undef EK_DW_PAIRS
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
