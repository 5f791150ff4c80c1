/*
 * ek_copy.h - strided N-d copy (up to 6 dims): the one data-movement kernel behind concat,
 * split, permute (transpose) and channel shuffle, so those ops run inside the nogil
 * executor instead of through NumPy.
 *
 *     dst[i_0 * ds_0 + ... ] = src[i_0 * ss_0 + ...]   for every index i < shape
 *
 * Strides are in elements and non-negative.  Rows of the last dim with unit strides on both
 * sides are copied with memcpy; the rows are shared among the threads.  The caller checks
 * that every address touched lies inside both arrays (max offset = sum (shape-1) * stride).
 */
#include "ek_common.h"

#ifndef EK_COPY_ISA
#define EK_COPY_ISA

#include <string.h>

#define EK_COPY_MAXDIM 6

typedef struct {
    int ndim;
    const ptrdiff_t *shape, *src_strides, *dst_strides;
    const float *src;
    float *dst;
    int q;                      /* ek_copy_blocks: the dim contiguous in the source */
} EK_FN(ek_copy_args);

static void EK_FN(ek_copy_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_copy_args) *a = (const EK_FN(ek_copy_args) *)args;
    const int ndim = a->ndim;
    const ptrdiff_t W = a->shape[ndim - 1];
    const ptrdiff_t sw = a->src_strides[ndim - 1], dw = a->dst_strides[ndim - 1];
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        ptrdiff_t rem = r, so = 0, doff = 0, i;
        const float *s;
        float *t;
        int d;
        for (d = ndim - 2; d >= 0; d--) {
            ptrdiff_t idx = rem % a->shape[d];
            rem /= a->shape[d];
            so += idx * a->src_strides[d];
            doff += idx * a->dst_strides[d];
        }
        s = a->src + so;
        t = a->dst + doff;
        if (sw == 1 && dw == 1) {
            memcpy(t, s, (size_t)W * sizeof(float));
        } else {
            for (i = 0; i < W; i++) t[i * dw] = s[i * sw];
        }
    }
}

/*
 * A transpose: the last dim is gathered (destination stride 1, source stride > 1) while
 * another dim q is contiguous in the source (NCHW <-> NHWC permutes).  Row by row that
 * reads one float per cache line; instead, 16 x 16 blocks (16 values of q by 16 of the
 * last dim) go through a small buffer, so both sides move whole lines.  ConvNeXt-Tiny's
 * permutes: 1 ns per element row by row.  A tile is one q block of one outer index (the
 * dims other than q and the last) over the whole last dim.
 */
#define EK_COPY_TB 16

static void EK_FN(ek_copy_blocks)(const void *args, ptrdiff_t t0, ptrdiff_t t1)
{
    const EK_FN(ek_copy_args) *a = (const EK_FN(ek_copy_args) *)args;
    const int ndim = a->ndim, q = a->q;
    const ptrdiff_t W = a->shape[ndim - 1], Q = a->shape[q];
    const ptrdiff_t sw = a->src_strides[ndim - 1], dq = a->dst_strides[q];
    const ptrdiff_t nqb = (Q + EK_COPY_TB - 1) / EK_COPY_TB;
    float buf[EK_COPY_TB][EK_COPY_TB];
    ptrdiff_t t;
    for (t = t0; t < t1; t++) {
        ptrdiff_t rem = t / nqb, so = 0, doff = 0, i0, i, j;
        const ptrdiff_t q0 = (t % nqb) * EK_COPY_TB, qn = EK_MIN(EK_COPY_TB, Q - q0);
        int d;
        for (d = ndim - 2; d >= 0; d--) {
            ptrdiff_t idx;
            if (d == q) continue;
            idx = rem % a->shape[d];
            rem /= a->shape[d];
            so += idx * a->src_strides[d];
            doff += idx * a->dst_strides[d];
        }
        so += q0;                                   /* q's source stride is 1 */
        doff += q0 * dq;
        for (i0 = 0; i0 < W; i0 += EK_COPY_TB) {
            const ptrdiff_t in = EK_MIN(EK_COPY_TB, W - i0);
            if (in == EK_COPY_TB && qn == EK_COPY_TB) {     /* constant bounds: unrolled */
                for (i = 0; i < EK_COPY_TB; i++) {
                    const float *sp = a->src + so + (i0 + i) * sw;
                    for (j = 0; j < EK_COPY_TB; j++) buf[j][i] = sp[j];
                }
                for (j = 0; j < EK_COPY_TB; j++) {
                    float *tp = a->dst + doff + j * dq + i0;
                    for (i = 0; i < EK_COPY_TB; i++) tp[i] = buf[j][i];
                }
                continue;
            }
            for (i = 0; i < in; i++) {
                const float *sp = a->src + so + (i0 + i) * sw;
                for (j = 0; j < qn; j++) buf[j][i] = sp[j];
            }
            for (j = 0; j < qn; j++) {
                float *tp = a->dst + doff + j * dq + i0;
                for (i = 0; i < in; i++) tp[i] = buf[j][i];
            }
        }
    }
}

/* The dim that is contiguous in the source when the last one is gathered (-1: none). */
static int EK_FN(ek_copy_transposed_dim)(int ndim, const ptrdiff_t *shape,
                                         const ptrdiff_t *ss, const ptrdiff_t *ds)
{
    int d;
    if (ds[ndim - 1] != 1 || ss[ndim - 1] == 1 || shape[ndim - 1] < EK_COPY_TB) return -1;
    for (d = 0; d < ndim - 1; d++)
        if (ss[d] == 1 && shape[d] >= EK_COPY_TB) return d;
    return -1;
}

/* Merge dims d, d + 1 wherever both sides walk them as one (stride of d = extent times
   stride of d + 1), and drop dims of extent 1: fewer, longer rows (NHWC -> NCHW's rows of W
   become rows of H W).  Returns the new ndim; the result addresses the same elements. */
static int EK_FN(ek_copy_coalesce)(int ndim, const ptrdiff_t *shape, const ptrdiff_t *ss,
                                   const ptrdiff_t *ds, ptrdiff_t *sh2, ptrdiff_t *ss2,
                                   ptrdiff_t *ds2)
{
    int d, n = 0;
    for (d = 0; d < ndim; d++) {
        if (shape[d] == 1 && !(d == ndim - 1 && n == 0)) continue;
        if (n > 0 && ss2[n - 1] == shape[d] * ss[d] && ds2[n - 1] == shape[d] * ds[d]) {
            sh2[n - 1] *= shape[d];
            ss2[n - 1] = ss[d];
            ds2[n - 1] = ds[d];
            continue;
        }
        sh2[n] = shape[d];
        ss2[n] = ss[d];
        ds2[n] = ds[d];
        n++;
    }
    return n;
}

EK_API void EK_FN(ek_copy_nd)(int ndim, const ptrdiff_t *shape_in, const float *src,
                              const ptrdiff_t *ss_in, float *dst, const ptrdiff_t *ds_in,
                              int nthreads)
{
    ptrdiff_t shape[EK_COPY_MAXDIM], src_strides[EK_COPY_MAXDIM], dst_strides[EK_COPY_MAXDIM];
    ptrdiff_t W, rows;
    EK_FN(ek_copy_args) a;
    int d;
    for (d = 0; d < ndim; d++)
        if (shape_in[d] <= 0) return;
    ndim = EK_FN(ek_copy_coalesce)(ndim, shape_in, ss_in, ds_in, shape, src_strides,
                                   dst_strides);
    W = shape[ndim - 1];
    rows = ek_lead_rows(ndim, shape);
    a.ndim = ndim; a.shape = shape; a.src = src; a.src_strides = src_strides; a.dst = dst;
    a.dst_strides = dst_strides;
    a.q = EK_FN(ek_copy_transposed_dim)(ndim, shape, src_strides, dst_strides);
    if (a.q >= 0) {
        const ptrdiff_t tiles = rows / shape[a.q] *
                                ((shape[a.q] + EK_COPY_TB - 1) / EK_COPY_TB);
        ek_parallel_rows(ek_nthreads_work(nthreads, tiles, rows * W), tiles,
                         EK_FN(ek_copy_blocks), &a);
        return;
    }
    ek_parallel_rows(ek_nthreads_work(nthreads, rows, rows * W), rows, EK_FN(ek_copy_rows),
                     &a);
}

#endif /* EK_COPY_ISA */
