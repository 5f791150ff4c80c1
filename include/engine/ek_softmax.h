/*
 * ek_softmax.h - softmax / log_softmax over one axis of x viewed as (outer, axis, inner).
 * Numerically stable: the maximum along the axis is subtracted before exp; the sums of
 * exponentials accumulate in double.  A slice containing NaN or +inf, or only -inf, gives
 * NaN (as PyTorch).  exp is the vectorisable ek_expf (<= 1.4 ulp).
 */
#include "ek_common.h"

#ifndef EK_SOFTMAX_ISA
#define EK_SOFTMAX_ISA

#define EK_SOFTMAX_BLOCK 64
#define EK_SOFTMAX_TMP 256

/* max of n >= 1 contiguous floats (4 independent lanes so that it vectorises). */
EK_INLINE float EK_FN(ek_row_max)(const float *x, ptrdiff_t n)
{
    float m4[4];
    float m;
    ptrdiff_t i = 0;
    int u;
    if (n < 4) {
        m = x[0];
        for (i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
        return m;
    }
    for (u = 0; u < 4; u++) m4[u] = x[u];
    for (i = 4; i + 4 <= n; i += 4)
        for (u = 0; u < 4; u++) m4[u] = x[i + u] > m4[u] ? x[i + u] : m4[u];
    m = m4[0];
    for (u = 1; u < 4; u++) m = m4[u] > m ? m4[u] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* sum of n floats in double (4 lanes). */
EK_INLINE double EK_FN(ek_row_sum)(const float *x, ptrdiff_t n)
{
    double s4[4] = {0.0, 0.0, 0.0, 0.0};
    ptrdiff_t i = 0;
    int u;
    for (; i + 4 <= n; i += 4)
        for (u = 0; u < 4; u++) s4[u] += (double)x[i + u];
    for (; i < n; i++) s4[0] += (double)x[i];
    return (s4[0] + s4[1]) + (s4[2] + s4[3]);
}

typedef struct {
    const float *x;
    float *y;
    ptrdiff_t axis, inner, nblk;
    int use_log;
} EK_FN(ek_softmax_args);

static void EK_FN(ek_softmax_rows)(const void *args, ptrdiff_t it0, ptrdiff_t it1)
{
    const EK_FN(ek_softmax_args) *sa = (const EK_FN(ek_softmax_args) *)args;
    const float *x = sa->x;
    float *y = sa->y;
    const ptrdiff_t axis = sa->axis, inner = sa->inner, nblk = sa->nblk;
    const int use_log = sa->use_log;
    ptrdiff_t it;
    for (it = it0; it < it1; it++) {
        const ptrdiff_t o = it / nblk, i0 = (it % nblk) * EK_SOFTMAX_BLOCK;
        const ptrdiff_t nb = EK_MIN(EK_SOFTMAX_BLOCK, inner - i0);
        const float *xs = x + o * axis * inner + i0;
        float *ys = y + o * axis * inner + i0;
        ptrdiff_t a, i;
        if (inner == 1) {
            /* contiguous slice */
            float m = EK_FN(ek_row_max)(xs, axis);
            double s = 0.0;
            if (m != m) m = 0.0f;  /* NaN in x: the result is NaN below anyway */
            if (use_log) {
                float tmp[EK_SOFTMAX_TMP];
                double lse;
                for (a = 0; a < axis; a += EK_SOFTMAX_TMP) {
                    const ptrdiff_t nt = EK_MIN(EK_SOFTMAX_TMP, axis - a);
                    for (i = 0; i < nt; i++) tmp[i] = EK_FN(ek_expf)(xs[a + i] - m);
                    s += EK_FN(ek_row_sum)(tmp, nt);
                }
                lse = (double)m + log(s);
                for (a = 0; a < axis; a++) ys[a] = (float)((double)xs[a] - lse);
            } else {
                float inv;
                for (a = 0; a < axis; a++) ys[a] = EK_FN(ek_expf)(xs[a] - m);
                s = EK_FN(ek_row_sum)(ys, axis);
                inv = (float)(1.0 / s);
                for (a = 0; a < axis; a++) ys[a] *= inv;
            }
        } else {
            float m[EK_SOFTMAX_BLOCK];
            double s[EK_SOFTMAX_BLOCK];
            for (i = 0; i < nb; i++) { m[i] = xs[i]; s[i] = 0.0; }
            for (a = 1; a < axis; a++) {
                const float *xa = xs + a * inner;
                for (i = 0; i < nb; i++) m[i] = xa[i] > m[i] ? xa[i] : m[i];
            }
            for (i = 0; i < nb; i++) m[i] = m[i] != m[i] ? 0.0f : m[i];
            if (use_log) {
                double lse[EK_SOFTMAX_BLOCK];
                for (a = 0; a < axis; a++) {
                    const float *xa = xs + a * inner;
                    for (i = 0; i < nb; i++) s[i] += (double)EK_FN(ek_expf)(xa[i] - m[i]);
                }
                for (i = 0; i < nb; i++) lse[i] = (double)m[i] + log(s[i]);
                for (a = 0; a < axis; a++) {
                    const float *xa = xs + a * inner;
                    float *ya = ys + a * inner;
                    for (i = 0; i < nb; i++) ya[i] = (float)((double)xa[i] - lse[i]);
                }
            } else {
                float inv[EK_SOFTMAX_BLOCK];
                for (a = 0; a < axis; a++) {
                    const float *xa = xs + a * inner;
                    float *ya = ys + a * inner;
                    for (i = 0; i < nb; i++) {
                        const float e = EK_FN(ek_expf)(xa[i] - m[i]);
                        ya[i] = e;
                        s[i] += (double)e;
                    }
                }
                for (i = 0; i < nb; i++) inv[i] = (float)(1.0 / s[i]);
                for (a = 0; a < axis; a++) {
                    float *ya = ys + a * inner;
                    for (i = 0; i < nb; i++) ya[i] *= inv[i];
                }
            }
        }
    }
}

/*
 * y = softmax(x) (log_softmax when `use_log` != 0) along the middle dim.
 * Preconditions: x and y have outer*axis*inner floats (x == y allowed); axis >= 1.
 */
EK_API void EK_FN(ek_softmax)(const float *x, float *y, ptrdiff_t outer, ptrdiff_t axis,
                              ptrdiff_t inner, int use_log, int nthreads)
{
    EK_FN(ek_softmax_args) a;
    ptrdiff_t items;
    if (axis <= 0) return;
    a.x = x; a.y = y; a.axis = axis; a.inner = inner; a.use_log = use_log;
    a.nblk = (inner + EK_SOFTMAX_BLOCK - 1) / EK_SOFTMAX_BLOCK;
    items = outer * a.nblk;
    ek_parallel_rows(ek_nthreads_work(nthreads, items, outer * axis * inner * 4), items,
                     EK_FN(ek_softmax_rows), &a);
}

#endif /* EK_SOFTMAX_ISA */
