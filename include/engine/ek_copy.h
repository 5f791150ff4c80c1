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

EK_API void EK_FN(ek_copy_nd)(int ndim, const ptrdiff_t *shape, const float *src,
                              const ptrdiff_t *src_strides, float *dst,
                              const ptrdiff_t *dst_strides, int nthreads)
{
    const ptrdiff_t W = shape[ndim - 1], rows = ek_lead_rows(ndim, shape);
    EK_FN(ek_copy_args) a;
    if (rows <= 0 || W <= 0) return;
    a.ndim = ndim; a.shape = shape; a.src = src; a.src_strides = src_strides; a.dst = dst;
    a.dst_strides = dst_strides;
    ek_parallel_rows(ek_nthreads_work(nthreads, rows, rows * W), rows, EK_FN(ek_copy_rows),
                     &a);
}

#endif /* EK_COPY_ISA */
