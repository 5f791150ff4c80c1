/*
 * ek_eltwise.h - elementwise kernels: unary activations, per-channel affine, prelu and
 * broadcasting binary arithmetic (add, sub, mul, div) up to 6-D.
 */
#include "ek_common.h"

#ifndef EK_ELTWISE_ISA
#define EK_ELTWISE_ISA

#define EK_ELT_CHUNK 8192

typedef struct {
    const float *x;
    float *y;
    ptrdiff_t n;
    int act;
    float p0, p1;
} EK_FN(ek_unary_job);

static void EK_FN(ek_unary_tile)(void *ctx, ptrdiff_t c, int worker)
{
    const EK_FN(ek_unary_job) *j = (const EK_FN(ek_unary_job) *)ctx;
    const ptrdiff_t i0 = c * EK_ELT_CHUNK;
    (void)worker;
    EK_FN(ek_act_row)(j->x + i0, j->y + i0, EK_MIN(EK_ELT_CHUNK, j->n - i0), j->act, j->p0,
                      j->p1);
}

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
    EK_FN(ek_unary_job) j;
    j.x = x; j.y = y; j.n = n; j.act = act; j.p0 = p0; j.p1 = p1;
    ek_parallelize(ek_nthreads_work(nthreads, nch, n * cost), nch, EK_FN(ek_unary_tile), &j);
}

typedef struct {
    const float *x, *scale, *shift, *w;
    float *y;
    ptrdiff_t C, inner, nw;
    int act;
    float p0, p1;
} EK_FN(ek_plane_args);

static void EK_FN(ek_channel_affine_rows)(const void *args, ptrdiff_t p0, ptrdiff_t p1)
{
    const EK_FN(ek_plane_args) *j = (const EK_FN(ek_plane_args) *)args;
    const ptrdiff_t inner = j->inner;
    ptrdiff_t pl;
    for (pl = p0; pl < p1; pl++) {
        const ptrdiff_t c = pl % j->C;
        const float s = j->scale ? j->scale[c] : 1.0f, b = j->shift ? j->shift[c] : 0.0f;
        const float *xs = j->x + pl * inner;
        float *ys = j->y + pl * inner;
        ptrdiff_t i;
        for (i = 0; i < inner; i++) ys[i] = xs[i] * s + b;
        EK_FN(ek_act_inplace)(ys, inner, j->act, j->p0, j->p1);
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
    EK_FN(ek_plane_args) j;
    memset(&j, 0, sizeof(j));
    j.x = x; j.scale = scale; j.shift = shift; j.y = y; j.C = C; j.inner = inner;
    j.act = act; j.p0 = p0; j.p1 = p1;
    ek_parallel_rows(ek_nthreads_work(nthreads, planes, planes * inner), planes,
                     EK_FN(ek_channel_affine_rows), &j);
}

static void EK_FN(ek_prelu_rows)(const void *args, ptrdiff_t p0, ptrdiff_t p1)
{
    const EK_FN(ek_plane_args) *j = (const EK_FN(ek_plane_args) *)args;
    ptrdiff_t pl;
    for (pl = p0; pl < p1; pl++) {
        const float a = j->nw == 1 ? j->w[0] : j->w[pl % j->C];
        const float *xs = j->x + pl * j->inner;
        float *ys = j->y + pl * j->inner;
        ptrdiff_t i;
        for (i = 0; i < j->inner; i++) {
            const float v = xs[i];
            ys[i] = v < 0.0f ? v * a : v;
        }
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
    EK_FN(ek_plane_args) j;
    memset(&j, 0, sizeof(j));
    j.x = x; j.w = w; j.nw = nw; j.y = y; j.C = C; j.inner = inner;
    ek_parallel_rows(ek_nthreads_work(nthreads, planes, planes * inner), planes,
                     EK_FN(ek_prelu_rows), &j);
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
    case EK_BIN_MAX: EK_BIN_LOOP(u > v || u != u ? u : v); break;
    case EK_BIN_MIN: EK_BIN_LOOP(u < v || u != u ? u : v); break;
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
typedef struct {
    int op, ndim;
    const ptrdiff_t *shape, *a_strides, *b_strides;
    const float *a, *b;
    float *out;
    ptrdiff_t rows, inner, rpc, ncol;
} EK_FN(ek_binary_job);

/* Work item c: a column chunk of a long row, or a group of whole short rows. */
static void EK_FN(ek_binary_tile)(void *ctx, ptrdiff_t c, int worker)
{
    const EK_FN(ek_binary_job) *j = (const EK_FN(ek_binary_job) *)ctx;
    const int ndim = j->ndim;
    const ptrdiff_t *shape = j->shape, *as = j->a_strides, *bs = j->b_strides;
    const ptrdiff_t inner = j->inner, sa = as[ndim - 1], sb = bs[ndim - 1];
    const ptrdiff_t rg = c / j->ncol, cc = c % j->ncol;
    const ptrdiff_t r0 = rg * j->rpc, r1 = EK_MIN(j->rows, r0 + j->rpc);
    const ptrdiff_t j0 = cc * EK_ELT_CHUNK;
    const ptrdiff_t nj = j->ncol == 1 ? inner : EK_MIN(EK_ELT_CHUNK, inner - j0);
    ptrdiff_t idx[EK_BIN_MAXDIM];
    ptrdiff_t offa = 0, offb = 0, r, rem = r0;
    int k;
    (void)worker;
    /* multi-index of row r0 over dims 0..ndim-2 */
    for (k = ndim - 2; k >= 0; k--) {
        idx[k] = rem % shape[k];
        rem /= shape[k];
        offa += idx[k] * as[k];
        offb += idx[k] * bs[k];
    }
    for (r = r0; r < r1; r++) {
        EK_FN(ek_binary_row)(j->op, j->a + offa + j0 * sa, sa, j->b + offb + j0 * sb, sb,
                             j->out + r * inner + j0, nj);
        /* increment the multi-index */
        for (k = ndim - 2; k >= 0; k--) {
            idx[k]++;
            offa += as[k];
            offb += bs[k];
            if (idx[k] < shape[k]) break;
            offa -= idx[k] * as[k];
            offb -= idx[k] * bs[k];
            idx[k] = 0;
        }
    }
}

EK_API void EK_FN(ek_binary_nd)(int op, int ndim, const ptrdiff_t *shape, const float *a,
                                const ptrdiff_t *a_strides, const float *b,
                                const ptrdiff_t *b_strides, float *out, int nthreads)
{
    EK_FN(ek_binary_job) j;
    ptrdiff_t total, nch;
    j.op = op; j.ndim = ndim; j.shape = shape; j.a = a; j.a_strides = a_strides;
    j.b = b; j.b_strides = b_strides; j.out = out;
    j.inner = shape[ndim - 1];
    j.rows = ek_lead_rows(ndim, shape);
    total = j.rows * j.inner;
    if (total <= 0) return;
    /* Work items of about EK_ELT_CHUNK elements: column chunks of long rows, or groups of
       whole short rows. */
    if (j.inner >= EK_ELT_CHUNK) {
        j.rpc = 1;
        j.ncol = (j.inner + EK_ELT_CHUNK - 1) / EK_ELT_CHUNK;
    } else {
        j.rpc = EK_ELT_CHUNK / j.inner;
        j.ncol = 1;
    }
    nch = ((j.rows + j.rpc - 1) / j.rpc) * j.ncol;
    ek_parallelize(ek_nthreads_work(nthreads, nch, total), nch, EK_FN(ek_binary_tile), &j);
}

#endif /* EK_ELTWISE_ISA */
