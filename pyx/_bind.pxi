# The kernels' argument structs and dispatch tables, as declared in include/engine/ek_bind.h
# (the one C declaration of each binding) and include/engine/ek_dispatch.h (EK_ENTRIES).
# A binding fills the struct, then _call runs table[level] on it or binds it as a step.

cdef extern from "engine/ek_dispatch.h" nogil:
    ctypedef struct ek_gemm_args:
        Py_ssize_t M, N, K
        const float* A
        Py_ssize_t lda
        int trans_a, a_packed
        const float* B
        Py_ssize_t ldb
        int trans_b, b_packed
        float* C
        Py_ssize_t ldc
        const float* bias
        int bias_mode
        const float* R
        Py_ssize_t ldr
        int accumulate, act
        float p0, p1
    int EK_GEMM_B_MATRIX, EK_GEMM_B_PACKED

    ctypedef void (*ek_entry_fn)(const void* args) noexcept nogil

    ctypedef struct ek_conv_call:
        const float *x
        const float *w
        const float *bias
        const float *R
        float *y
        float *work
        Py_ssize_t N, C, Cout, groups
        ek_geom3 g
        int act, nt
        float p0, p1

    ctypedef struct ek_winograd_call:
        const float *x
        const float *U
        const float *bias
        const float *R
        float *y
        float *work
        Py_ssize_t N, C, Cout, H, W, OH, OW, ph, pw
        int m, act, nt
        float p0, p1

    ctypedef struct ek_sgemm_call:
        ek_gemm_args g
        float *work
        const float *pa
        const float *pb
        float *pc
        const Py_ssize_t *ia
        const Py_ssize_t *ib
        Py_ssize_t batch
        int nt

    ctypedef struct ek_eltwise_call:
        const float *x
        const float *scale
        const float *shift
        const float *w
        float *y
        Py_ssize_t n, nw, outer, C, inner
        int act, nt
        float p0, p1

    ctypedef struct ek_binary_call:
        const float *a
        const float *b
        float *out
        Py_ssize_t sh[6]
        Py_ssize_t sa[6]
        Py_ssize_t sb[6]
        int op, nd, nt

    ctypedef struct ek_softmax_call:
        const float *x
        float *y
        Py_ssize_t outer, axis, inner
        int use_log, nt

    ctypedef struct ek_norm_call:
        const float *x
        const float *gamma
        const float *beta
        float *y
        Py_ssize_t N, C, inner, groups, rows, L, size
        float eps, alpha, beta_, k
        int nt

    ctypedef struct ek_plane_call:
        const float *x
        float *y
        Py_ssize_t planes, pe_d, pe_h, pe_w
        ek_geom3 g
        const Py_ssize_t *pd
        const Py_ssize_t *ph
        const Py_ssize_t *pw
        int mode, count_include_pad, nt

    ctypedef struct ek_bilinear_call:
        const float *x
        float *y
        Py_ssize_t planes, H, W, OH, OW
        const Py_ssize_t *h0
        const Py_ssize_t *h1
        const Py_ssize_t *w0
        const Py_ssize_t *w1
        const float *lh0
        const float *lh1
        const float *lw0
        const float *lw1
        int nt

    ctypedef struct ek_nd_call:
        const float *x
        float *y
        Py_ssize_t ins[6]
        Py_ssize_t outs[6]
        Py_ssize_t pb[6]
        Py_ssize_t ss[6]
        Py_ssize_t ds[6]
        int nd, mode, nt
        float value

    # the dispatch tables: [level] -> the entry compiled for that instruction set
    const ek_entry_fn ek_conv3d_at[3]
    const ek_entry_fn ek_conv3d_packed_at[3]
    const ek_entry_fn ek_conv3d_depthwise_at[3]
    const ek_entry_fn ek_conv_transpose3d_at[3]
    const ek_entry_fn ek_conv2d_winograd_at[3]
    const ek_entry_fn ek_sgemm_at[3]
    const ek_entry_fn ek_unary_at[3]
    const ek_entry_fn ek_channel_affine_at[3]
    const ek_entry_fn ek_prelu_at[3]
    const ek_entry_fn ek_binary_nd_at[3]
    const ek_entry_fn ek_softmax_at[3]
    const ek_entry_fn ek_group_norm_at[3]
    const ek_entry_fn ek_layer_norm_at[3]
    const ek_entry_fn ek_lrn_at[3]
    const ek_entry_fn ek_pool3d_at[3]
    const ek_entry_fn ek_adaptive_pool3d_at[3]
    const ek_entry_fn ek_resize_nearest3d_at[3]
    const ek_entry_fn ek_resize_bilinear2d_at[3]
    const ek_entry_fn ek_pad_nd_at[3]
    const ek_entry_fn ek_copy_nd_at[3]


cdef extern from "engine/ek_step.h":
    object ek_step_new(ek_entry_fn fn, const void* args, size_t size)


cdef object _call(ek_entry_fn fn, const void* args, size_t size, bint bind):
    """Run a kernel entry on its filled argument struct now, with the GIL released; or,
    with bind=True, return the call prebound as an "engine.step" capsule (a copy of the
    struct) for the nogil executor."""
    if bind:
        return ek_step_new(fn, args, size)
    with nogil:
        fn(args)
    return None


cdef extern from *:
    """
    /* The level whose dispatch table holds fn (the lowest, where levels share an entry),
       or -1 when fn is no kernel entry. */
    static int ek_entry_level(ek_entry_fn fn)
    {
        int l_;
    #define EK_FIND_(name) for (l_ = 0; l_ < 3; l_++) if (name##_at[l_] == fn) return l_;
        EK_ENTRIES(EK_FIND_)
    #undef EK_FIND_
        return -1;
    }
    """
    int ek_entry_level(ek_entry_fn fn)

