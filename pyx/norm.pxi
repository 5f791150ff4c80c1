# Normalisation kernels: group norm (instance norm = one channel
# per group), layer norm over trailing elements, local response norm across channels.
# Statistics are computed in double (two-pass, biased variance).

cdef int _norm_operands(object x, object gamma, object beta, object y, Py_ssize_t per,
                        ek_norm_call* a) except -1:
    """x, y (same size, y may be x) and the optional (per,) gamma / beta into a."""
    cdef Py_ssize_t n = _size(x)
    a.x = _fptr(x, "x")
    a.y = _fptr(y, "y", n, -1, True)
    a.gamma = _fptr_opt(gamma, "gamma", per)
    a.beta = _fptr_opt(beta, "beta", per)
    _same_or_disjoint(a.y, n, a.x, n, "y", "x")
    if a.gamma != NULL:
        _disjoint(a.y, n, a.gamma, per, "y", "gamma")
    if a.beta != NULL:
        _disjoint(a.y, n, a.beta, per, "y", "beta")
    return 0


def group_norm(x, gamma, beta, y, Py_ssize_t groups, float eps, nthreads=1, bint bind=False,
               isa=None):
    """y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c], statistics per (n, group) of
    C/groups consecutive channels of x (N, C, ...).  gamma / beta: (C,) or None.  y may be x.
    """
    cdef ek_norm_call a
    a.nt, a.groups, a.eps = _threads(nthreads), groups, eps
    _nci(x, &a.N, &a.C, &a.inner)
    if groups < 1 or a.C % groups != 0:
        raise ValueError(f"groups must be >= 1 and divide the {a.C} channels, got {groups}")
    _norm_operands(x, gamma, beta, y, a.C, &a)
    return _call(ek_group_norm_at[_isa_arg(isa)], &a, sizeof(a), bind)


def layer_norm(x, gamma, beta, y, Py_ssize_t L, float eps, nthreads=1, bint bind=False,
               isa=None):
    """Normalise every run of L trailing elements of x; gamma / beta: (L,) or None.
    y may be x."""
    cdef ek_norm_call a
    cdef Py_ssize_t n = _size(x)
    if L < 1 or n % L != 0:
        raise ValueError(f"L must be >= 1 and divide x's {n} elements, got {L}")
    a.nt, a.rows, a.L, a.eps = _threads(nthreads), n // L, L, eps
    _norm_operands(x, gamma, beta, y, L, &a)
    return _call(ek_layer_norm_at[_isa_arg(isa)], &a, sizeof(a), bind)


def lrn(x, y, Py_ssize_t size, float alpha, float beta, float k, nthreads=1, bint bind=False,
        isa=None):
    """Local response norm across dim 1 of x (N, C, ...) (PyTorch); y must not overlap x."""
    cdef ek_norm_call a
    a.nt = _threads(nthreads)
    a.x = _fptr(x, "x")
    _nci(x, &a.N, &a.C, &a.inner)
    if size < 1 or size > _INT_LIMIT:
        raise ValueError(f"size must be in [1, {_INT_LIMIT}], got {size}")
    cdef Py_ssize_t n = _size(x)
    a.y = _fptr(y, "y", n, -1, True)
    _disjoint(a.y, n, a.x, n, "y", "x")
    a.size, a.alpha, a.beta_, a.k = size, alpha, beta, k
    return _call(ek_lrn_at[_isa_arg(isa)], &a, sizeof(a), bind)
