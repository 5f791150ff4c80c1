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
typedef struct {
    const float *x;
    float *y;
    int ndim, mode;
    const ptrdiff_t *in_shape, *out_shape, *pad_begin;
    float value;
    ptrdiff_t lo, hi;       /* interior of the last dim: output [lo, hi) copies input */
} EK_FN(ek_pad_args);

static void EK_FN(ek_pad_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_pad_args) *a = (const EK_FN(ek_pad_args) *)args;
    const int ndim = a->ndim, mode = a->mode;
    const ptrdiff_t OW = a->out_shape[ndim - 1], W = a->in_shape[ndim - 1];
    const ptrdiff_t pb = a->pad_begin[ndim - 1], lo = a->lo, hi = a->hi;
    const float value = a->value;
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        float *dst = a->y + r * OW;
        ptrdiff_t rem = r, off = 0, stride = W, o;
        int k, fill = 0;
        for (k = ndim - 2; k >= 0; k--) {
            const ptrdiff_t ok = rem % a->out_shape[k];
            const ptrdiff_t s = EK_FN(ek_pad_src)(ok, a->pad_begin[k], a->in_shape[k], mode);
            rem /= a->out_shape[k];
            if (s < 0) { fill = 1; break; }
            off += s * stride;
            stride *= a->in_shape[k];
        }
        if (fill) {
            for (o = 0; o < OW; o++) dst[o] = value;
            continue;
        }
        {
            const float *src = a->x + off;
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

EK_API void EK_FN(ek_pad_nd)(const float *EK_RESTRICT x, float *EK_RESTRICT y, int ndim,
                             const ptrdiff_t *in_shape, const ptrdiff_t *out_shape,
                             const ptrdiff_t *pad_begin, int mode, float value, int nthreads)
{
    const ptrdiff_t OW = out_shape[ndim - 1], W = in_shape[ndim - 1];
    const ptrdiff_t pb = pad_begin[ndim - 1], rows = ek_lead_rows(ndim, out_shape);
    EK_FN(ek_pad_args) a;
    if (rows <= 0 || OW <= 0) return;
    a.x = x; a.y = y; a.ndim = ndim; a.mode = mode; a.in_shape = in_shape;
    a.out_shape = out_shape; a.pad_begin = pad_begin; a.value = value;
    a.lo = EK_MAX(0, EK_MIN(OW, pb));
    a.hi = EK_MAX(a.lo, EK_MIN(OW, pb + W));
    ek_parallel_rows(ek_nthreads_work(nthreads, rows, rows * OW), rows, EK_FN(ek_pad_rows), &a);
}

#endif /* EK_PAD_ISA */
