/*
 * ek_bind.h - the one declaration of every kernel's binding.
 *
 * A kernel the runtime calls is bound as an argument struct, `ek_<family>_call` (declared
 * once, here; kernels of one family share it), and an entry `name_entry(const void *args)`
 * that unpacks it (defined here once per instruction set, like every kernel).
 * ek_dispatch.h fills the dispatch table `name_at[level]` with the entry of each level;
 * the Cython binding (pyx/<family>.pxi) validates its arguments into the struct, then
 * either calls `name_at[level](&args)` or hands (entry, copy of the struct) to the nogil
 * executor as a prebound step (ek_step.h).  The level is the caller's (a session's plan,
 * a packed operand), never a process-wide setting.
 *
 * Adding a kernel: its struct and EK_ENTRY line here, its name in EK_ENTRIES
 * (ek_dispatch.h), the struct and its table in the Cython declarations (pyx/_bind.pxi).
 */
#ifndef EK_BIND_H
#define EK_BIND_H

/* The convolutions by im2col + GEMM (w: the weights; conv3d_packed: the packed panels
   with R the residual added before the activation), depthwise and transposed. */
typedef struct {
    const float *x, *w, *bias, *R;
    float *y, *work;
    ptrdiff_t N, C, Cout, groups;
    ek_geom3 g;
    int act, nt;
    float p0, p1;
} ek_conv_call;

typedef struct {
    const float *x, *U, *bias, *R;
    float *y, *work;
    ptrdiff_t N, C, Cout, H, W, OH, OW, ph, pw;
    int m, act, nt;
    float p0, p1;
} ek_winograd_call;

/* One GEMM (g; pa NULL), or `batch` of them on A / B picked from pa / pb by ia / ib. */
typedef struct {
    ek_gemm_args g;
    float *work;
    const float *pa, *pb;
    float *pc;
    const ptrdiff_t *ia, *ib;
    ptrdiff_t batch;
    int nt;
} ek_sgemm_call;

/* unary (n elements), channel_affine and prelu (nw weights) over (outer, C, inner) */
typedef struct {
    const float *x, *scale, *shift, *w;
    float *y;
    ptrdiff_t n, nw, outer, C, inner;
    int act, nt;
    float p0, p1;
} ek_eltwise_call;

typedef struct {
    const float *a, *b;
    float *out;
    ptrdiff_t sh[6], sa[6], sb[6];
    int op, nd, nt;
} ek_binary_call;

typedef struct {
    const float *x;
    float *y;
    ptrdiff_t outer, axis, inner;
    int use_log, nt;
} ek_softmax_call;

/* group_norm (and instance norm), layer_norm (rows x L), lrn (size, alpha, beta, k). */
typedef struct {
    const float *x, *gamma, *beta;
    float *y;
    ptrdiff_t N, C, inner, groups, rows, L, size;
    float eps, alpha, beta_, k;
    int nt;
} ek_norm_call;

/* pooling, adaptive pooling, nearest resize: planes of the geometry g */
typedef struct {
    const float *x;
    float *y;
    ptrdiff_t planes, pe_d, pe_h, pe_w;
    ek_geom3 g;
    const ptrdiff_t *pd, *ph, *pw;
    int mode, count_include_pad, nt;
} ek_plane_call;

typedef struct {
    const float *x;
    float *y;
    ptrdiff_t planes, H, W, OH, OW;
    const ptrdiff_t *h0, *h1, *w0, *w1;
    const float *lh0, *lh1, *lw0, *lw1;
    int nt;
} ek_bilinear_call;

/* pad_nd (ins -> outs with pb leading pads) and copy_nd (shape ins, strides ss -> ds) */
typedef struct {
    const float *x;
    float *y;
    ptrdiff_t ins[6], outs[6], pb[6], ss[6], ds[6];
    int nd, mode, nt;
    float value;
} ek_nd_call;

typedef void (*ek_entry_fn)(const void *args);

#endif /* EK_BIND_H */

/* ---- the entries, once per instruction set ---- */
#ifndef EK_BIND_ISA
#define EK_BIND_ISA

/* An entry runs its kernel on a->nt threads, or fewer while the calling thread's cap is
   lower (ek_parallel_threads): the kernel then plans its tiles for the threads it gets.
   Workspaces are sized for every count up to a->nt. */
#define EK_ENTRY(name, call_t, call)                                                        \
    EK_API void EK_FN(name##_entry)(const void *p_)                                         \
    {                                                                                       \
        const call_t *a = (const call_t *)p_;                                               \
        const int nt = ek_parallel_threads(a->nt);                                          \
        call;                                                                               \
    }

EK_ENTRY(ek_conv3d, ek_conv_call,
         EK_FN(ek_conv3d)(a->x, a->w, a->bias, a->y, a->N, a->C, a->Cout, a->groups, &a->g,
                          a->act, a->p0, a->p1, a->work, nt))
EK_ENTRY(ek_conv3d_packed, ek_conv_call,
         EK_FN(ek_conv3d_packed)(a->x, a->w, a->bias, a->R, a->y, a->N, a->C, a->Cout,
                                 a->groups, &a->g, a->act, a->p0, a->p1, a->work, nt))
EK_ENTRY(ek_conv3d_depthwise, ek_conv_call,
         EK_FN(ek_conv3d_depthwise)(a->x, a->w, a->bias, a->y, a->N, a->C, a->Cout, &a->g,
                                    a->act, a->p0, a->p1, a->work, nt))
EK_ENTRY(ek_conv_transpose3d, ek_conv_call,
         EK_FN(ek_conv_transpose3d)(a->x, a->w, a->bias, a->y, a->N, a->C, a->Cout,
                                    a->groups, &a->g, a->act, a->p0, a->p1, a->work, nt))
EK_ENTRY(ek_conv2d_winograd, ek_winograd_call,
         EK_FN(ek_conv2d_winograd)(a->x, a->U, a->bias, a->R, a->y, a->N, a->C, a->Cout, a->H,
                                   a->W, a->OH, a->OW, a->ph, a->pw, a->m, a->act, a->p0,
                                   a->p1, a->work, nt))

EK_API void EK_FN(ek_sgemm_entry)(const void *p_)
{
    const ek_sgemm_call *a = (const ek_sgemm_call *)p_;
    const int nt = ek_parallel_threads(a->nt);
    ek_gemm_args g = a->g;
    ptrdiff_t i;
    if (a->pa == NULL) {            /* one GEMM on g's own operands */
        EK_FN(ek_gemm_run)(&g, a->work, nt);
        return;
    }
    for (i = 0; i < a->batch; i++) {
        g.A = a->pa + a->ia[i] * g.M * g.K;
        g.B = a->pb + a->ib[i] * g.K * g.N;
        g.C = a->pc + i * g.M * g.N;
        EK_FN(ek_gemm_run)(&g, a->work, nt);
    }
}

EK_ENTRY(ek_unary, ek_eltwise_call,
         EK_FN(ek_unary)(a->x, a->y, a->n, a->act, a->p0, a->p1, nt))
EK_ENTRY(ek_channel_affine, ek_eltwise_call,
         EK_FN(ek_channel_affine)(a->x, a->scale, a->shift, a->y, a->outer, a->C, a->inner,
                                  a->act, a->p0, a->p1, nt))
EK_ENTRY(ek_prelu, ek_eltwise_call,
         EK_FN(ek_prelu)(a->x, a->w, a->nw, a->y, a->outer, a->C, a->inner, nt))
EK_ENTRY(ek_binary_nd, ek_binary_call,
         EK_FN(ek_binary_nd)(a->op, a->nd, a->sh, a->a, a->sa, a->b, a->sb, a->out, nt))
EK_ENTRY(ek_softmax, ek_softmax_call,
         EK_FN(ek_softmax)(a->x, a->y, a->outer, a->axis, a->inner, a->use_log, nt))

EK_ENTRY(ek_group_norm, ek_norm_call,
         EK_FN(ek_group_norm)(a->x, a->gamma, a->beta, a->y, a->N, a->C, a->inner, a->groups,
                              a->eps, nt))
EK_ENTRY(ek_layer_norm, ek_norm_call,
         EK_FN(ek_layer_norm)(a->x, a->gamma, a->beta, a->y, a->rows, a->L, a->eps, nt))
EK_ENTRY(ek_lrn, ek_norm_call,
         EK_FN(ek_lrn)(a->x, a->y, a->N, a->C, a->inner, a->size, a->alpha, a->beta_, a->k,
                       nt))

EK_ENTRY(ek_pool3d, ek_plane_call,
         EK_FN(ek_pool3d)(a->x, a->y, a->planes, &a->g, a->pe_d, a->pe_h, a->pe_w, a->mode,
                          a->count_include_pad, nt))
EK_ENTRY(ek_adaptive_pool3d, ek_plane_call,
         EK_FN(ek_adaptive_pool3d)(a->x, a->y, a->planes, &a->g, a->mode, nt))
EK_ENTRY(ek_resize_nearest3d, ek_plane_call,
         EK_FN(ek_resize_nearest3d)(a->x, a->y, a->planes, &a->g, a->pd, a->ph, a->pw, nt))
EK_ENTRY(ek_resize_bilinear2d, ek_bilinear_call,
         EK_FN(ek_resize_bilinear2d)(a->x, a->y, a->planes, a->H, a->W, a->OH, a->OW, a->h0,
                                     a->h1, a->lh0, a->lh1, a->w0, a->w1, a->lw0, a->lw1,
                                     nt))
EK_ENTRY(ek_pad_nd, ek_nd_call,
         EK_FN(ek_pad_nd)(a->x, a->y, a->nd, a->ins, a->outs, a->pb, a->mode, a->value, nt))
EK_ENTRY(ek_copy_nd, ek_nd_call,
         EK_FN(ek_copy_nd)(a->nd, a->ins, a->x, a->ss, a->y, a->ds, nt))

#undef EK_ENTRY
#endif /* EK_BIND_ISA */
