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
/* Sums in EK_MOM_LANES independent double accumulators (element i into lane i % LANES,
   added pairwise at the end): the loops vectorise without reassociating anything, and the
   result is the same at every instruction-set level.  One accumulator was a chain of
   dependent adds, ~4 cycles per element (ConvNeXt's layer norms: 2.2 ns per element). */
#define EK_MOM_LANES 8

EK_INLINE double EK_FN(ek_lanes_total)(const double *a)
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

EK_INLINE void EK_FN(ek_moments)(const float *x, ptrdiff_t n, double eps, double *mean,
                                 double *rstd)
{
    double s[EK_MOM_LANES] = {0.0}, v[EK_MOM_LANES] = {0.0}, mu, var;
    const ptrdiff_t nv = n / EK_MOM_LANES * EK_MOM_LANES;
    ptrdiff_t i;
    int k;
    for (i = 0; i < nv; i += EK_MOM_LANES)
        for (k = 0; k < EK_MOM_LANES; k++) s[k] += (double)x[i + k];
    for (; i < n; i++) s[i % EK_MOM_LANES] += (double)x[i];
    mu = n > 0 ? EK_FN(ek_lanes_total)(s) / (double)n : 0.0;
    for (i = 0; i < nv; i += EK_MOM_LANES)
        for (k = 0; k < EK_MOM_LANES; k++) {
            const double d = (double)x[i + k] - mu;
            v[k] += d * d;
        }
    for (; i < n; i++) {
        const double d = (double)x[i] - mu;
        v[i % EK_MOM_LANES] += d * d;
    }
    var = n > 0 ? EK_FN(ek_lanes_total)(v) / (double)n : 0.0;
    *mean = mu;
    *rstd = 1.0 / sqrt(var + eps);
}

/* Arguments of the normalisation kernels, shared by their tile functions. */
typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    ptrdiff_t C, inner, groups, L, size;
    ptrdiff_t items, nblk;
    float eps, alpha, beta_exp, k;
} EK_FN(ek_norm_job);

/* Runs rows(j, i0, i1) over the job's items on the threads the work is worth. */
static void EK_FN(ek_norm_run)(EK_FN(ek_norm_job) *j, ptrdiff_t work, int nthreads,
                               ek_rows_fn rows)
{
    ek_parallel_rows(ek_nthreads_work(nthreads, j->items, work), j->items, rows, j);
}

static void EK_FN(ek_group_norm_rows)(const void *args, ptrdiff_t i0, ptrdiff_t i1)
{
    const EK_FN(ek_norm_job) *jb = (const EK_FN(ek_norm_job) *)args;
    const ptrdiff_t groups = jb->groups, inner = jb->inner, Cg = jb->C / groups;
    const float *gamma = jb->gamma, *beta = jb->beta;
    ptrdiff_t it;
    for (it = i0; it < i1; it++) {
        const ptrdiff_t g = it % groups;
        const float *xs = jb->x + it * Cg * inner;
        float *ys = jb->y + it * Cg * inner;
        double mean, rstd;
        ptrdiff_t j, i;
        float mh, ml;
        EK_FN(ek_moments)(xs, Cg * inner, (double)jb->eps, &mean, &rstd);
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
    EK_FN(ek_norm_job) j;
    memset(&j, 0, sizeof(j));
    j.x = x; j.gamma = gamma; j.beta = beta; j.y = y; j.C = C; j.inner = inner;
    j.groups = groups; j.eps = eps; j.items = N * groups;
    EK_FN(ek_norm_run)(&j, N * C * inner * 3, nthreads, EK_FN(ek_group_norm_rows));
}

static void EK_FN(ek_layer_norm_rows)(const void *args, ptrdiff_t r0, ptrdiff_t r1)
{
    const EK_FN(ek_norm_job) *j = (const EK_FN(ek_norm_job) *)args;
    const ptrdiff_t L = j->L;
    const float *gamma = j->gamma, *beta = j->beta;
    ptrdiff_t r;
    for (r = r0; r < r1; r++) {
        const float *xs = j->x + r * L;
        float *ys = j->y + r * L;
        double mean, rstd;
        float mh, ml, s;
        ptrdiff_t l;
        EK_FN(ek_moments)(xs, L, (double)j->eps, &mean, &rstd);
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
    EK_FN(ek_norm_job) j;
    memset(&j, 0, sizeof(j));
    j.x = x; j.gamma = gamma; j.beta = beta; j.y = y; j.L = L; j.eps = eps; j.items = rows;
    EK_FN(ek_norm_run)(&j, rows * L * 3, nthreads, EK_FN(ek_layer_norm_rows));
}

#define EK_LRN_BLOCK 256

static void EK_FN(ek_lrn_rows)(const void *args, ptrdiff_t t0, ptrdiff_t t1)
{
    const EK_FN(ek_norm_job) *j = (const EK_FN(ek_norm_job) *)args;
    const ptrdiff_t C = j->C, inner = j->inner, size = j->size, nblk = j->nblk;
    const float a = j->alpha / (float)size, beta = j->beta_exp, k = j->k;
    ptrdiff_t it;
    for (it = t0; it < t1; it++) {
        const ptrdiff_t n = it / nblk, i0 = (it % nblk) * EK_LRN_BLOCK;
        const ptrdiff_t nb = EK_MIN(EK_LRN_BLOCK, inner - i0);
        const float *EK_RESTRICT xs = j->x + n * C * inner + i0;
        float *EK_RESTRICT ys = j->y + n * C * inner + i0;
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

/*
 * Local response normalisation across channels of x viewed as (N, C, inner) (PyTorch):
 *     y = x / (k + alpha / size * sum_{c' = c - size/2 .. c + (size-1)/2, clipped} x[c']^2)^beta
 * Preconditions: size >= 1; x, y have N*C*inner floats and do not overlap.
 */
EK_API void EK_FN(ek_lrn)(const float *EK_RESTRICT x, float *EK_RESTRICT y, ptrdiff_t N,
                          ptrdiff_t C, ptrdiff_t inner, ptrdiff_t size, float alpha,
                          float beta, float k, int nthreads)
{
    EK_FN(ek_norm_job) j;
    memset(&j, 0, sizeof(j));
    j.x = x; j.y = y; j.C = C; j.inner = inner; j.size = size; j.alpha = alpha;
    j.beta_exp = beta; j.k = k;
    j.nblk = (inner + EK_LRN_BLOCK - 1) / EK_LRN_BLOCK;
    j.items = N * j.nblk;
    EK_FN(ek_norm_run)(&j, ek_mul_sat(N * C * inner, size + 4), nthreads,
                       EK_FN(ek_lrn_rows));
}

#endif /* EK_NORM_ISA */
