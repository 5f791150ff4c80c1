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


def group_norm(x, gamma, beta, y, Py_ssize_t groups, float eps, nthreads=1):
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
    with nogil:
        ek_group_norm(px, pg, pb, py, N, C, inner, groups, eps, nt)


def layer_norm(x, gamma, beta, y, Py_ssize_t L, float eps, nthreads=1):
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
    with nogil:
        ek_layer_norm(px, pg, pb, py, n // L, L, eps, nt)


def lrn(x, y, Py_ssize_t size, float alpha, float beta, float k, nthreads=1):
    """Local response norm across dim 1 of x (N, C, ...) (PyTorch); y must not overlap x."""
    cdef Py_ssize_t N, C, inner
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x")
    _nci(x, &N, &C, &inner)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    cdef Py_ssize_t n = _size(x)
    cdef float* py = _fptr(y, "y", n, -1, True)
    _disjoint(py, n, px, n, "y", "x")
    with nogil:
        ek_lrn(px, py, N, C, inner, size, alpha, beta, k, nt)
