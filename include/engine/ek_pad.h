/*
 * ek_pad.h - N-d padding (up to 6 dims): constant, reflect and replicate (PyTorch
 * F.pad semantics).  Negative pads crop.  Every source index is computed so that it is
 * inside the input whatever the pads (reflect folds periodically), so no argument can make
 * the kernel read out of bounds.
 */
#include "ek_common.h"

#ifndef EK_PAD_ISA
#define EK_PAD_ISA

#define EK_PAD_MAXDIM 6

/* Source index of output position o along a dim of n input elements (n >= 1) with pb
   padding before, or -1 for "constant value". */
EK_INLINE ptrdiff_t EK_FN(ek_pad_src)(ptrdiff_t o, ptrdiff_t pb, ptrdiff_t n, int mode)
{
    ptrdiff_t i = o - pb;
    if (i >= 0 && i < n) return i;
    if (mode == EK_PAD_CONSTANT) return -1;
    if (mode == EK_PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    /* reflect (edge not repeated): period 2(n-1) */
    if (n == 1) return 0;
    {
        const ptrdiff_t period = 2 * (n - 1);
        i %= period;
        if (i < 0) i += period;
        return i < n ? i : period - i;
    }
}

/*
 * y (C-contiguous, out_shape) = pad(x (C-contiguous, in_shape)):
 *     y[o_0..o_{nd-1}] = x[src_0(o_0)]...[src(o)] or `value` where a src is -1 (constant).
 * out_shape[d] = in_shape[d] + pad_begin[d] + pad_end[d] (computed by the caller).
 * Preconditions: 1 <= ndim <= 6; in_shape[d] >= 1 (when the output is non-empty);
 * out_shape[d] >= 0; x and y sizes are the products of the shapes; no overlap.
 */
EK_API void EK_FN(ek_pad_nd)(const float *EK_RESTRICT x, float *EK_RESTRICT y, int ndim,
                             const ptrdiff_t *in_shape, const ptrdiff_t *out_shape,
                             const ptrdiff_t *pad_begin, int mode, float value, int nthreads)
{
    const ptrdiff_t OW = out_shape[ndim - 1], W = in_shape[ndim - 1];
    const ptrdiff_t pb = pad_begin[ndim - 1];
    ptrdiff_t rows = 1, r, lo, hi;
    int d, threads;
    for (d = 0; d < ndim - 1; d++) rows *= out_shape[d];
    if (rows <= 0 || OW <= 0) return;
    /* interior of the last dim: output [lo, hi) copies input [lo - pb, hi - pb) */
    lo = EK_MAX(0, EK_MIN(OW, pb));
    hi = EK_MAX(lo, EK_MIN(OW, pb + W));
    threads = ek_nthreads_work(nthreads, rows, rows * OW);
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        float *dst = y + r * OW;
        ptrdiff_t rem = r, off = 0, stride = W, o;
        int k, fill = 0;
        for (k = ndim - 2; k >= 0; k--) {
            const ptrdiff_t ok = rem % out_shape[k];
            const ptrdiff_t s = EK_FN(ek_pad_src)(ok, pad_begin[k], in_shape[k], mode);
            rem /= out_shape[k];
            if (s < 0) { fill = 1; break; }
            off += s * stride;
            stride *= in_shape[k];
        }
        if (fill) {
            for (o = 0; o < OW; o++) dst[o] = value;
            continue;
        }
        {
            const float *src = x + off;
            for (o = 0; o < lo; o++) {
                const ptrdiff_t s = EK_FN(ek_pad_src)(o, pb, W, mode);
                dst[o] = s < 0 ? value : src[s];
            }
            if (hi > lo) memcpy(dst + lo, src + (lo - pb), (size_t)(hi - lo) * sizeof(float));
            for (o = hi; o < OW; o++) {
                const ptrdiff_t s = EK_FN(ek_pad_src)(o, pb, W, mode);
                dst[o] = s < 0 ? value : src[s];
            }
        }
    }
}

#endif /* EK_PAD_ISA */
