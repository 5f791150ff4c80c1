/*
 * ek_eltwise.h - elementwise kernels: unary activations, per-channel affine, prelu and
 * broadcasting binary arithmetic (add, sub, mul, div) up to 6-D.
 */
#include "ek_common.h"

#ifndef EK_ELTWISE_ISA
#define EK_ELTWISE_ISA

#define EK_ELT_CHUNK 8192

/*
 * y[i] = act(x[i]) for i < n (ek_common.h activation codes).  x == y (in place) allowed;
 * otherwise x and y must not overlap.  Preconditions: x and y have n floats.
 */
EK_API void EK_FN(ek_unary)(const float *x, float *y, ptrdiff_t n, int act, float p0,
                            float p1, int nthreads)
{
    const ptrdiff_t nch = (n + EK_ELT_CHUNK - 1) / EK_ELT_CHUNK;
    const int cost = (act >= EK_ACT_SIGMOID && act != EK_ACT_HARDSWISH &&
                      act != EK_ACT_HARDSIGMOID) ? 8 : 1;
    const int threads = ek_nthreads_work(nthreads, nch, n * cost);
    ptrdiff_t c;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (c = 0; c < nch; c++) {
        const ptrdiff_t i0 = c * EK_ELT_CHUNK;
        EK_FN(ek_act_row)(x + i0, y + i0, EK_MIN(EK_ELT_CHUNK, n - i0), act, p0, p1);
    }
}

/*
 * Per-channel affine + activation on x viewed as (outer, C, inner):
 *     y[o][c][i] = act(x[o][c][i] * scale[c] + shift[c])
 * (batch_norm with precomputed scale = w / sqrt(var + eps), shift = b - mean * scale).
 * scale or shift may be NULL (1 / 0).  x == y allowed.
 * Preconditions: x, y have outer*C*inner floats; scale, shift have C floats.
 */
EK_API void EK_FN(ek_channel_affine)(const float *x, const float *scale, const float *shift,
                                     float *y, ptrdiff_t outer, ptrdiff_t C, ptrdiff_t inner,
                                     int act, float p0, float p1, int nthreads)
{
    const ptrdiff_t planes = outer * C;
    const int threads = ek_nthreads_work(nthreads, planes, planes * inner);
    ptrdiff_t pl;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (pl = 0; pl < planes; pl++) {
        const ptrdiff_t c = pl % C;
        const float s = scale ? scale[c] : 1.0f, b = shift ? shift[c] : 0.0f;
        const float *xs = x + pl * inner;
        float *ys = y + pl * inner;
        ptrdiff_t i;
        for (i = 0; i < inner; i++) ys[i] = xs[i] * s + b;
        EK_FN(ek_act_inplace)(ys, inner, act, p0, p1);
    }
}

/*
 * prelu on x viewed as (outer, C, inner): y = x < 0 ? w[c] * x : x (NaN passes through).
 * nw == 1: one weight for all channels; else nw == C.  x == y allowed.
 * Preconditions: x, y have outer*C*inner floats; w has nw floats.
 */
EK_API void EK_FN(ek_prelu)(const float *x, const float *w, ptrdiff_t nw, float *y,
                            ptrdiff_t outer, ptrdiff_t C, ptrdiff_t inner, int nthreads)
{
    const ptrdiff_t planes = outer * C;
    const int threads = ek_nthreads_work(nthreads, planes, planes * inner);
    ptrdiff_t pl;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (pl = 0; pl < planes; pl++) {
        const float a = nw == 1 ? w[0] : w[pl % C];
        const float *xs = x + pl * inner;
        float *ys = y + pl * inner;
        ptrdiff_t i;
        for (i = 0; i < inner; i++) {
            const float v = xs[i];
            ys[i] = v < 0.0f ? v * a : v;
        }
    }
}

#define EK_BIN_LOOP(EXPR)                                                              \
    do {                                                                               \
        if (sa == 1 && sb == 1) {                                                      \
            for (i = 0; i < n; i++) { const float u = a[i], v = b[i]; o[i] = (EXPR); } \
        } else if (sa == 1 && sb == 0) {                                               \
            const float v = b[0];                                                      \
            for (i = 0; i < n; i++) { const float u = a[i]; o[i] = (EXPR); }           \
        } else if (sa == 0 && sb == 1) {                                               \
            const float u = a[0];                                                      \
            for (i = 0; i < n; i++) { const float v = b[i]; o[i] = (EXPR); }           \
        } else {                                                                       \
            for (i = 0; i < n; i++) {                                                  \
                const float u = a[i * sa], v = b[i * sb];                              \
                o[i] = (EXPR);                                                         \
            }                                                                          \
        }                                                                              \
    } while (0)

/* o[i] = a[i*sa] (op) b[i*sb] for i < n. */
EK_API void EK_FN(ek_binary_row)(int op, const float *a, ptrdiff_t sa, const float *b,
                                 ptrdiff_t sb, float *o, ptrdiff_t n)
{
    ptrdiff_t i;
    switch (op) {
    case EK_BIN_ADD: EK_BIN_LOOP(u + v); break;
    case EK_BIN_SUB: EK_BIN_LOOP(u - v); break;
    case EK_BIN_MUL: EK_BIN_LOOP(u * v); break;
    default: EK_BIN_LOOP(u / v); break;
    }
}

#define EK_BIN_MAXDIM 6

/*
 * out = a (op) b with broadcasting, op in ek_binop (IEEE arithmetic: x/0 = +-inf or NaN).
 * out is C-contiguous with shape[0..ndim); a and b are read at element offsets
 * sum_d idx[d] * a_strides[d] (0 for a broadcast dim), likewise b.
 * ndim in [1, 6] (callers collapse dims and pass shape (1) for scalars).
 * out may alias a or b only when that operand has the output's contiguous strides.
 * Preconditions: shape[d] >= 0; for every index the offsets lie inside a and b:
 *   sum_d (shape[d]-1) * stride[d] < size of the operand (strides >= 0).
 */
EK_API void EK_FN(ek_binary_nd)(int op, int ndim, const ptrdiff_t *shape, const float *a,
                                const ptrdiff_t *a_strides, const float *b,
                                const ptrdiff_t *b_strides, float *out, int nthreads)
{
    const ptrdiff_t inner = shape[ndim - 1];
    const ptrdiff_t sa = a_strides[ndim - 1], sb = b_strides[ndim - 1];
    ptrdiff_t rows = 1, total, rpc, ncol, nch, c;
    int d, threads;
    for (d = 0; d < ndim - 1; d++) rows *= shape[d];
    total = rows * inner;
    if (total <= 0) return;
    /* Work items of about EK_ELT_CHUNK elements: column chunks of long rows, or groups of
       whole short rows. */
    if (inner >= EK_ELT_CHUNK) {
        rpc = 1;
        ncol = (inner + EK_ELT_CHUNK - 1) / EK_ELT_CHUNK;
    } else {
        rpc = EK_ELT_CHUNK / inner;
        ncol = 1;
    }
    nch = ((rows + rpc - 1) / rpc) * ncol;
    threads = ek_nthreads_work(nthreads, nch, total);
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (c = 0; c < nch; c++) {
        const ptrdiff_t rg = c / ncol, cc = c % ncol;
        const ptrdiff_t r0 = rg * rpc, r1 = EK_MIN(rows, r0 + rpc);
        const ptrdiff_t j0 = cc * EK_ELT_CHUNK;
        const ptrdiff_t nj = ncol == 1 ? inner : EK_MIN(EK_ELT_CHUNK, inner - j0);
        ptrdiff_t idx[EK_BIN_MAXDIM];
        ptrdiff_t offa = 0, offb = 0, r, rem = r0;
        int k;
        /* multi-index of row r0 over dims 0..ndim-2 */
        for (k = ndim - 2; k >= 0; k--) {
            idx[k] = rem % shape[k];
            rem /= shape[k];
            offa += idx[k] * a_strides[k];
            offb += idx[k] * b_strides[k];
        }
        for (r = r0; r < r1; r++) {
            EK_FN(ek_binary_row)(op, a + offa + j0 * sa, sa, b + offb + j0 * sb, sb,
                                 out + r * inner + j0, nj);
            /* increment the multi-index */
            for (k = ndim - 2; k >= 0; k--) {
                idx[k]++;
                offa += a_strides[k];
                offb += b_strides[k];
                if (idx[k] < shape[k]) break;
                offa -= idx[k] * a_strides[k];
                offb -= idx[k] * b_strides[k];
                idx[k] = 0;
            }
        }
    }
}

#endif /* EK_ELTWISE_ISA */
