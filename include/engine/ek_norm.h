/*
 * ek_norm.h - normalisation kernels: group normalisation (covers instance_norm and
 * group_norm), layer normalisation and local response normalisation.  (Batch norm at
 * inference is a per-channel affine: ek_channel_affine in ek_eltwise.h.)
 *
 * Statistics are two-pass in double (mean, then the biased variance of x - mean).
 */
#include "ek_common.h"

#ifndef EK_NORM_ISA
#define EK_NORM_ISA

/* mean and 1/sqrt(var + eps) of n contiguous floats (two-pass, double). */
EK_INLINE void EK_FN(ek_moments)(const float *x, ptrdiff_t n, double eps, double *mean,
                                 double *rstd)
{
    double s = 0.0, v = 0.0, mu;
    ptrdiff_t i;
    for (i = 0; i < n; i++) s += (double)x[i];
    mu = n > 0 ? s / (double)n : 0.0;
    for (i = 0; i < n; i++) {
        const double d = (double)x[i] - mu;
        v += d * d;
    }
    v = n > 0 ? v / (double)n : 0.0;
    *mean = mu;
    *rstd = 1.0 / sqrt(v + eps);
}

/*
 * Group normalisation of x viewed as (N, C, inner) with C split into `groups` contiguous
 * groups of C/groups channels; statistics over each (n, group) = (C/groups) * inner values:
 *     y[n][c][i] = (x[n][c][i] - mean) * rstd * gamma[c] + beta[c]
 * gamma / beta may be NULL (1 / 0).  instance_norm is groups == C.  x == y allowed.
 * Preconditions: groups >= 1 divides C; x, y have N*C*inner floats; gamma, beta C floats.
 */
EK_API void EK_FN(ek_group_norm)(const float *x, const float *gamma, const float *beta,
                                 float *y, ptrdiff_t N, ptrdiff_t C, ptrdiff_t inner,
                                 ptrdiff_t groups, float eps, int nthreads)
{
    const ptrdiff_t Cg = C / groups;
    const ptrdiff_t items = N * groups;
    const int threads = ek_nthreads_work(nthreads, items, N * C * inner * 3);
    ptrdiff_t it;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (it = 0; it < items; it++) {
        const ptrdiff_t g = it % groups;
        const float *xs = x + it * Cg * inner;
        float *ys = y + it * Cg * inner;
        double mean, rstd;
        ptrdiff_t j, i;
        float mh, ml;
        EK_FN(ek_moments)(xs, Cg * inner, (double)eps, &mean, &rstd);
        /* mean split in two floats: (x - mh) - ml keeps the centring accurate in float
           even when |mean| >> std. */
        mh = (float)mean;
        ml = (float)(mean - (double)mh);
        for (j = 0; j < Cg; j++) {
            const ptrdiff_t c = g * Cg + j;
            const float sc = (float)(rstd * (gamma ? (double)gamma[c] : 1.0));
            const float sh = beta ? beta[c] : 0.0f;
            const float *xc = xs + j * inner;
            float *yc = ys + j * inner;
            for (i = 0; i < inner; i++) yc[i] = ((xc[i] - mh) - ml) * sc + sh;
        }
    }
}

/*
 * Layer normalisation over the trailing L elements of each of `rows` rows:
 *     y[r][l] = (x[r][l] - mean_r) * rstd_r * gamma[l] + beta[l]
 * gamma / beta may be NULL.  x == y allowed.
 * Preconditions: x, y have rows*L floats; gamma, beta have L floats.
 */
EK_API void EK_FN(ek_layer_norm)(const float *x, const float *gamma, const float *beta,
                                 float *y, ptrdiff_t rows, ptrdiff_t L, float eps,
                                 int nthreads)
{
    const int threads = ek_nthreads_work(nthreads, rows, rows * L * 3);
    ptrdiff_t r;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (r = 0; r < rows; r++) {
        const float *xs = x + r * L;
        float *ys = y + r * L;
        double mean, rstd;
        float mh, ml, s;
        ptrdiff_t l;
        EK_FN(ek_moments)(xs, L, (double)eps, &mean, &rstd);
        mh = (float)mean;
        ml = (float)(mean - (double)mh);
        s = (float)rstd;
        if (gamma && beta)
            for (l = 0; l < L; l++) ys[l] = ((xs[l] - mh) - ml) * s * gamma[l] + beta[l];
        else if (gamma)
            for (l = 0; l < L; l++) ys[l] = ((xs[l] - mh) - ml) * s * gamma[l];
        else if (beta)
            for (l = 0; l < L; l++) ys[l] = ((xs[l] - mh) - ml) * s + beta[l];
        else
            for (l = 0; l < L; l++) ys[l] = ((xs[l] - mh) - ml) * s;
    }
}

#define EK_LRN_BLOCK 256

/*
 * Local response normalisation across channels of x viewed as (N, C, inner) (PyTorch):
 *     y = x / (k + alpha / size * sum_{c' = c - size/2 .. c + (size-1)/2, clipped} x[c']^2)^beta
 * Preconditions: size >= 1; x, y have N*C*inner floats and do not overlap.
 */
EK_API void EK_FN(ek_lrn)(const float *EK_RESTRICT x, float *EK_RESTRICT y, ptrdiff_t N,
                          ptrdiff_t C, ptrdiff_t inner, ptrdiff_t size, float alpha,
                          float beta, float k, int nthreads)
{
    const ptrdiff_t nblk = (inner + EK_LRN_BLOCK - 1) / EK_LRN_BLOCK;
    const ptrdiff_t items = N * nblk;
    const int threads = ek_nthreads_work(nthreads, items,
                                         ek_mul_sat(N * C * inner, size + 4));
    const float a = alpha / (float)size;
    ptrdiff_t it;
    (void)threads;  /* unused without OpenMP */
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (it = 0; it < items; it++) {
        const ptrdiff_t n = it / nblk, i0 = (it % nblk) * EK_LRN_BLOCK;
        const ptrdiff_t nb = EK_MIN(EK_LRN_BLOCK, inner - i0);
        const float *xs = x + n * C * inner + i0;
        float *ys = y + n * C * inner + i0;
        float acc[EK_LRN_BLOCK];
        ptrdiff_t c, cc, i;
        for (c = 0; c < C; c++) {
            const ptrdiff_t lo = EK_MAX(0, c - size / 2), hi = EK_MIN(C - 1, c + (size - 1) / 2);
            for (i = 0; i < nb; i++) acc[i] = 0.0f;
            for (cc = lo; cc <= hi; cc++) {
                const float *xc = xs + cc * inner;
                for (i = 0; i < nb; i++) acc[i] += xc[i] * xc[i];
            }
            for (i = 0; i < nb; i++)
                ys[c * inner + i] = xs[c * inner + i] / powf(k + a * acc[i], beta);
        }
    }
}

#endif /* EK_NORM_ISA */
