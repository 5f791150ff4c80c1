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

EK_API void EK_FN(ek_copy_nd)(int ndim, const ptrdiff_t *shape, const float *src,
                              const ptrdiff_t *src_strides, float *dst,
                              const ptrdiff_t *dst_strides, int nthreads)
{
    const ptrdiff_t W = shape[ndim - 1];
    const ptrdiff_t sw = src_strides[ndim - 1], dw = dst_strides[ndim - 1];
    ptrdiff_t rows = 1, r;
    int d, threads;
    for (d = 0; d < ndim - 1; d++) rows *= shape[d];
    if (rows <= 0 || W <= 0) return;
    threads = ek_nthreads_work(nthreads, rows, rows * W);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        ptrdiff_t rem = r, so = 0, doff = 0, i;
        const float *s;
        float *t;
        for (d = ndim - 2; d >= 0; d--) {
            ptrdiff_t idx = rem % shape[d];
            rem /= shape[d];
            so += idx * src_strides[d];
            doff += idx * dst_strides[d];
        }
        s = src + so;
        t = dst + doff;
        if (sw == 1 && dw == 1) {
            memcpy(t, s, (size_t)W * sizeof(float));
        } else {
            for (i = 0; i < W; i++) t[i * dw] = s[i * sw];
        }
    }
}

#endif /* EK_COPY_ISA */
