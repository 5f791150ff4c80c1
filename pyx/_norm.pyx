# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Normalisation kernels (engine._kernels.norm): group norm (instance norm = one channel
per group), layer norm over trailing elements, local response norm across channels.
Statistics are computed in double (two-pass, biased variance)."""

include "_common.pxi"

cdef extern from "engine/ek_dispatch.h" nogil:
    void ek_group_norm "EK_CALL(ek_group_norm)"(const float* x, const float* gamma, const float* beta, float* y,
                       Py_ssize_t N, Py_ssize_t C, Py_ssize_t inner, Py_ssize_t groups,
                       float eps, int nthreads)
    void ek_layer_norm "EK_CALL(ek_layer_norm)"(const float* x, const float* gamma, const float* beta, float* y,
                       Py_ssize_t rows, Py_ssize_t L, float eps, int nthreads)
    void ek_lrn "EK_CALL(ek_lrn)"(const float* x, float* y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t inner,
                Py_ssize_t size, float alpha, float beta, float k, int nthreads)

# Prebound calls (bind=True), see _common.pxi.
cdef extern from *:
    """
    EK_STEP_DEFINE(ek_group_norm_step,
        (int isa; const float *x; const float *gamma; const float *beta; float *y; Py_ssize_t N;
         Py_ssize_t C; Py_ssize_t inner; Py_ssize_t groups; float eps; int nt;),
        EK_ISA_SEL(a->isa, ek_group_norm)(a->x, a->gamma, a->beta, a->y, a->N, a->C, a->inner,
                                          a->groups, a->eps, a->nt))
    EK_STEP_DEFINE(ek_layer_norm_step,
        (int isa; const float *x; const float *gamma; const float *beta; float *y;
         Py_ssize_t rows; Py_ssize_t L; float eps; int nt;),
        EK_ISA_SEL(a->isa, ek_layer_norm)(a->x, a->gamma, a->beta, a->y, a->rows, a->L, a->eps,
                                          a->nt))
    EK_STEP_DEFINE(ek_lrn_step,
        (int isa; const float *x; float *y; Py_ssize_t N; Py_ssize_t C; Py_ssize_t inner;
         Py_ssize_t size; float alpha; float beta; float k; int nt;),
        EK_ISA_SEL(a->isa, ek_lrn)(a->x, a->y, a->N, a->C, a->inner, a->size, a->alpha, a->beta,
                                   a->k, a->nt))
    """
    ctypedef struct ek_group_norm_step_args:
        int isa, nt
        const float* x
        const float* gamma
        const float* beta
        float* y
        Py_ssize_t N, C, inner, groups
        float eps
    ctypedef struct ek_layer_norm_step_args:
        int isa, nt
        const float* x
        const float* gamma
        const float* beta
        float* y
        Py_ssize_t rows, L
        float eps
    ctypedef struct ek_lrn_step_args:
        int isa, nt
        const float* x
        float* y
        Py_ssize_t N, C, inner, size
        float alpha, beta, k
    object ek_group_norm_step_bind(const ek_group_norm_step_args* a)
    object ek_layer_norm_step_bind(const ek_layer_norm_step_args* a)
    object ek_lrn_step_bind(const ek_lrn_step_args* a)


def group_norm(x, gamma, beta, y, Py_ssize_t groups, float eps, nthreads=1, bint bind=False):
    """y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c], statistics per (n, group) of
    C/groups consecutive channels of x (N, C, ...).  gamma / beta: (C,) or None.  y may be x.
    """
    cdef Py_ssize_t N, C, inner
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x")
    _nci(x, &N, &C, &inner)
    if groups < 1 or C % groups != 0:
        raise ValueError(f"groups must be >= 1 and divide the {C} channels, got {groups}")
    cdef Py_ssize_t n = _size(x)
    cdef float* py = _fptr(y, "y", n, -1, True)
    cdef const float* pg = _fptr_opt(gamma, "gamma", C)
    cdef const float* pb = _fptr_opt(beta, "beta", C)
    _same_or_disjoint(py, n, px, n, "y", "x")
    if pg != NULL:
        _disjoint(py, n, pg, C, "y", "gamma")
    if pb != NULL:
        _disjoint(py, n, pb, C, "y", "beta")
    cdef ek_group_norm_step_args step
    if bind:
        step.isa, step.x, step.gamma, step.beta, step.y, step.nt = ek_isa_cur, px, pg, pb, py, nt
        step.N, step.C, step.inner, step.groups, step.eps = N, C, inner, groups, eps
        return ek_group_norm_step_bind(&step)
    with nogil:
        ek_group_norm(px, pg, pb, py, N, C, inner, groups, eps, nt)


def layer_norm(x, gamma, beta, y, Py_ssize_t L, float eps, nthreads=1, bint bind=False):
    """Normalise every run of L trailing elements of x; gamma / beta: (L,) or None.
    y may be x."""
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x")
    cdef Py_ssize_t n = _size(x)
    if L < 1 or n % L != 0:
        raise ValueError(f"L must be >= 1 and divide x's {n} elements, got {L}")
    cdef float* py = _fptr(y, "y", n, -1, True)
    cdef const float* pg = _fptr_opt(gamma, "gamma", L)
    cdef const float* pb = _fptr_opt(beta, "beta", L)
    _same_or_disjoint(py, n, px, n, "y", "x")
    if pg != NULL:
        _disjoint(py, n, pg, L, "y", "gamma")
    if pb != NULL:
        _disjoint(py, n, pb, L, "y", "beta")
    cdef ek_layer_norm_step_args step
    if bind:
        step.isa, step.x, step.gamma, step.beta, step.y, step.nt = ek_isa_cur, px, pg, pb, py, nt
        step.rows, step.L, step.eps = n // L, L, eps
        return ek_layer_norm_step_bind(&step)
    with nogil:
        ek_layer_norm(px, pg, pb, py, n // L, L, eps, nt)


def lrn(x, y, Py_ssize_t size, float alpha, float beta, float k, nthreads=1, bint bind=False):
    """Local response norm across dim 1 of x (N, C, ...) (PyTorch); y must not overlap x."""
    cdef Py_ssize_t N, C, inner
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x")
    _nci(x, &N, &C, &inner)
    if size < 1 or size > _INT_LIMIT:
        raise ValueError(f"size must be in [1, {_INT_LIMIT}], got {size}")
    cdef Py_ssize_t n = _size(x)
    cdef float* py = _fptr(y, "y", n, -1, True)
    _disjoint(py, n, px, n, "y", "x")
    cdef ek_lrn_step_args step
    if bind:
        step.isa, step.x, step.y, step.N, step.C, step.inner, step.nt = ek_isa_cur, px, py, N, C, inner, nt
        step.size, step.alpha, step.beta, step.k = size, alpha, beta, k
        return ek_lrn_step_bind(&step)
    with nogil:
        ek_lrn(px, py, N, C, inner, size, alpha, beta, k, nt)
