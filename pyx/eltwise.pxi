# Elementwise kernels: unary activations, per-channel affine
# (batch norm), prelu, broadcasting binary arithmetic and softmax / log_softmax.
#
# Arrays are float32 C-contiguous; in-place (the same array as input and output) is allowed
# where documented, any other overlap is rejected.

ADD = 0
SUB = 1
MUL = 2
DIV = 3
BIN_MAX = 4          # (MAX / MIN name the pooling modes: one module namespace)
BIN_MIN = 5


def unary(x, y, act, float p0=0.0, float p1=0.0, nthreads=1, bint bind=False, isa=None):
    """y = act(x) elementwise (x and y of equal size; y may be x)."""
    cdef ek_eltwise_call a
    a.nt, a.act, a.p0, a.p1 = _threads(nthreads), _act(act), p0, p1
    a.n = _size(x)
    a.x = _fptr(x, "x")
    a.y = _fptr(y, "y", a.n, -1, True)
    _same_or_disjoint(a.y, a.n, a.x, a.n, "y", "x")
    return _call(ek_unary_at[_isa_arg(isa)], &a, sizeof(a), bind)


def channel_affine(x, scale, shift, y, act=0, float p0=0.0, float p1=0.0, nthreads=1,
                   bint bind=False, isa=None):
    """y = act(x * scale[c] + shift[c]) with c the dim-1 index of x (N, C, ...).

    scale / shift: (C,) float32 or None (1 / 0).  y: x's size, may be x.
    """
    cdef ek_eltwise_call a
    a.nt, a.act, a.p0, a.p1 = _threads(nthreads), _act(act), p0, p1
    a.x = _fptr(x, "x")
    _nci(x, &a.outer, &a.C, &a.inner)
    a.n = _size(x)
    a.y = _fptr(y, "y", a.n, -1, True)
    a.scale = _fptr_opt(scale, "scale", a.C)
    a.shift = _fptr_opt(shift, "shift", a.C)
    _same_or_disjoint(a.y, a.n, a.x, a.n, "y", "x")
    if a.scale != NULL:
        _disjoint(a.y, a.n, a.scale, a.C, "y", "scale")
    if a.shift != NULL:
        _disjoint(a.y, a.n, a.shift, a.C, "y", "shift")
    return _call(ek_channel_affine_at[_isa_arg(isa)], &a, sizeof(a), bind)


def prelu(x, w, y, nthreads=1, bint bind=False, isa=None):
    """y = x < 0 ? w[c] * x : x, w broadcast over dim 1 of x (1 weight: all elements)."""
    cdef ek_eltwise_call a
    a.nt = _threads(nthreads)
    a.x = _fptr(x, "x")
    a.n = _size(x)
    a.y = _fptr(y, "y", a.n, -1, True)
    a.w = _fptr(w, "w", -1, 1)
    a.nw = _size(w)
    a.outer, a.C, a.inner = 1, 1, a.n
    if len(_shape(x)) >= 2:
        _nci(x, &a.outer, &a.C, &a.inner)
    if a.nw == 1:
        a.outer, a.C, a.inner = 1, 1, a.n
    elif a.nw != a.C:
        raise ValueError(f"w must have 1 or {a.C} (x.shape[1]) elements, got {a.nw}")
    _same_or_disjoint(a.y, a.n, a.x, a.n, "y", "x")
    _disjoint(a.y, a.n, a.w, a.nw, "y", "w")
    return _call(ek_prelu_at[_isa_arg(isa)], &a, sizeof(a), bind)


def binary(int op, a, b, out, shape, a_strides, b_strides, nthreads=1, bint bind=False,
           isa=None):
    """out = a (op) b with broadcasting: op ADD, SUB, MUL, DIV, BIN_MAX or BIN_MIN (these two
    propagate NaN from either side).

    out: C-contiguous with prod(shape) elements; a / b are read at element offsets
    sum(idx[d] * strides[d]) (stride 0 on broadcast dims); 1 <= len(shape) <= 6.
    out may be a or b only when that operand is read with out's own contiguous strides.
    """
    cdef ek_binary_call args
    cdef Py_ssize_t* sh = args.sh
    cdef Py_ssize_t* sa = args.sa
    cdef Py_ssize_t* sb = args.sb
    args.nt = _threads(nthreads)
    if op < 0 or op > 5:
        raise ValueError(f"op must be 0 (add), 1 (sub), 2 (mul), 3 (div), 4 (max) or 5 (min), "
                         f"got {op}")
    cdef int nd = len(shape)
    if nd < 1 or nd > 6:
        raise ValueError(f"shape must have 1 to 6 dims, got {nd}: {shape!r}")
    _ints(shape, "shape", nd, 0, sh)
    _ints(a_strides, "a_strides", nd, 0, sa)
    _ints(b_strides, "b_strides", nd, 0, sb)
    cdef const float* pa = _fptr(a, "a")
    cdef const float* pb = _fptr(b, "b")
    cdef Py_ssize_t total = 1, maxa = 0, maxb = 0, cstride = 1
    cdef int d
    for d in range(nd):
        total *= sh[d]
    cdef float* po = _fptr(out, "out", total, -1, True)
    if total > 0:
        for d in range(nd):
            maxa += (sh[d] - 1) * sa[d]
            maxb += (sh[d] - 1) * sb[d]
        if maxa >= _size(a):
            raise ValueError(f"a has {_size(a)} elements but shape {tuple(shape)} with strides "
                             f"{tuple(a_strides)} reads up to element {maxa}")
        if maxb >= _size(b):
            raise ValueError(f"b has {_size(b)} elements but shape {tuple(shape)} with strides "
                             f"{tuple(b_strides)} reads up to element {maxb}")
    # aliasing: only exact in-place with the output's contiguous strides
    cdef bint a_contig = True, b_contig = True
    for d in range(nd - 1, -1, -1):
        if sh[d] > 1:
            if sa[d] != cstride:
                a_contig = False
            if sb[d] != cstride:
                b_contig = False
        cstride *= sh[d]
    if _overlap(po, total, pa, _size(a)) and not (po == pa and a_contig):
        raise ValueError("out must not overlap a (except exactly in place with a of out's shape)")
    if _overlap(po, total, pb, _size(b)) and not (po == pb and b_contig):
        raise ValueError("out must not overlap b (except exactly in place with b of out's shape)")
    args.op, args.nd, args.a, args.b, args.out = op, nd, pa, pb, po
    if total == 0 and not bind:
        return
    return _call(ek_binary_nd_at[_isa_arg(isa)], &args, sizeof(args), bind)


def softmax(x, y, Py_ssize_t outer, Py_ssize_t axis, Py_ssize_t inner, bint log=False,
            nthreads=1, bint bind=False, isa=None):
    """y = softmax (log_softmax with log=True) of x viewed as (outer, axis, inner) along
    the middle dim.  y may be x."""
    cdef ek_softmax_call a
    a.nt = _threads(nthreads)
    if outer < 0 or axis < 1 or inner < 0:
        raise ValueError(f"need outer >= 0, axis >= 1, inner >= 0; got {outer}, {axis}, {inner}")
    cdef Py_ssize_t n = outer * axis * inner
    a.x = _fptr(x, "x", n)
    a.y = _fptr(y, "y", n, -1, True)
    _same_or_disjoint(a.y, n, a.x, n, "y", "x")
    a.outer, a.axis, a.inner, a.use_log = outer, axis, inner, log
    return _call(ek_softmax_at[_isa_arg(isa)], &a, sizeof(a), bind)
