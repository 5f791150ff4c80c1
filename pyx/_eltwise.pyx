# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Elementwise kernels (engine._kernels.eltwise): unary activations, per-channel affine
(batch norm), prelu, broadcasting binary arithmetic and softmax / log_softmax.

Arrays are float32 C-contiguous; in-place (the same array as input and output) is allowed
where documented, any other overlap is rejected.
"""

include "_common.pxi"

cdef extern from "engine/ek_dispatch.h" nogil:
    void ek_unary "EK_CALL(ek_unary)"(const float* x, float* y, Py_ssize_t n, int act, float p0, float p1,
                  int nthreads)
    void ek_channel_affine "EK_CALL(ek_channel_affine)"(const float* x, const float* scale, const float* shift, float* y,
                           Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, int act, float p0,
                           float p1, int nthreads)
    void ek_prelu "EK_CALL(ek_prelu)"(const float* x, const float* w, Py_ssize_t nw, float* y, Py_ssize_t outer,
                  Py_ssize_t C, Py_ssize_t inner, int nthreads)
    void ek_binary_nd "EK_CALL(ek_binary_nd)"(int op, int ndim, const Py_ssize_t* shape, const float* a,
                      const Py_ssize_t* a_strides, const float* b, const Py_ssize_t* b_strides,
                      float* out, int nthreads)

cdef extern from "engine/ek_dispatch.h" nogil:
    void ek_softmax "EK_CALL(ek_softmax)"(const float* x, float* y, Py_ssize_t outer, Py_ssize_t axis,
                    Py_ssize_t inner, int use_log, int nthreads)

# Prebound calls (bind=True), see _common.pxi.
cdef extern from *:
    """
    EK_STEP_DEFINE(ek_unary_step,
        (int isa; const float *x; float *y; Py_ssize_t n; int act; float p0; float p1; int nt;),
        EK_ISA_SEL(a->isa, ek_unary)(a->x, a->y, a->n, a->act, a->p0, a->p1, a->nt))
    EK_STEP_DEFINE(ek_channel_affine_step,
        (int isa; const float *x; const float *scale; const float *shift; float *y;
         Py_ssize_t outer; Py_ssize_t C; Py_ssize_t inner; int act; float p0; float p1; int nt;),
        EK_ISA_SEL(a->isa, ek_channel_affine)(a->x, a->scale, a->shift, a->y, a->outer, a->C,
                                              a->inner, a->act, a->p0, a->p1, a->nt))
    EK_STEP_DEFINE(ek_prelu_step,
        (int isa; const float *x; const float *w; Py_ssize_t nw; float *y; Py_ssize_t outer;
         Py_ssize_t C; Py_ssize_t inner; int nt;),
        EK_ISA_SEL(a->isa, ek_prelu)(a->x, a->w, a->nw, a->y, a->outer, a->C, a->inner, a->nt))
    EK_STEP_DEFINE(ek_binary_step,
        (int isa; int op; int nd; Py_ssize_t sh[6]; const float *a; Py_ssize_t sa[6];
         const float *b; Py_ssize_t sb[6]; float *out; int nt;),
        EK_ISA_SEL(a->isa, ek_binary_nd)(a->op, a->nd, a->sh, a->a, a->sa, a->b, a->sb, a->out,
                                         a->nt))
    EK_STEP_DEFINE(ek_softmax_step,
        (int isa; const float *x; float *y; Py_ssize_t outer; Py_ssize_t axis; Py_ssize_t inner;
         int use_log; int nt;),
        EK_ISA_SEL(a->isa, ek_softmax)(a->x, a->y, a->outer, a->axis, a->inner, a->use_log,
                                       a->nt))
    """
    ctypedef struct ek_unary_step_args:
        int isa, act, nt
        const float* x
        float* y
        Py_ssize_t n
        float p0, p1
    ctypedef struct ek_channel_affine_step_args:
        int isa, act, nt
        const float* x
        const float* scale
        const float* shift
        float* y
        Py_ssize_t outer, C, inner
        float p0, p1
    ctypedef struct ek_prelu_step_args:
        int isa, nt
        const float* x
        const float* w
        float* y
        Py_ssize_t nw, outer, C, inner
    ctypedef struct ek_binary_step_args:
        int isa, op, nd, nt
        Py_ssize_t sh[6]
        Py_ssize_t sa[6]
        Py_ssize_t sb[6]
        const float* a
        const float* b
        float* out
    ctypedef struct ek_softmax_step_args:
        int isa, use_log, nt
        const float* x
        float* y
        Py_ssize_t outer, axis, inner
    object ek_unary_step_bind(const ek_unary_step_args* a)
    object ek_channel_affine_step_bind(const ek_channel_affine_step_args* a)
    object ek_prelu_step_bind(const ek_prelu_step_args* a)
    object ek_binary_step_bind(const ek_binary_step_args* a)
    object ek_softmax_step_bind(const ek_softmax_step_args* a)


ADD = 0
SUB = 1
MUL = 2
DIV = 3


def unary(x, y, act, float p0=0.0, float p1=0.0, nthreads=1, bint bind=False):
    """y = act(x) elementwise (x and y of equal size; y may be x)."""
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    cdef const float* px = _fptr(x, "x")
    cdef float* py = _fptr(y, "y", _size(x), -1, True)
    cdef Py_ssize_t n = _size(x)
    _same_or_disjoint(py, n, px, n, "y", "x")
    cdef ek_unary_step_args step
    if bind:
        step.isa, step.x, step.y, step.n, step.act, step.p0, step.p1, step.nt = ek_isa_cur, px, py, n, ac, p0, p1, nt
        return ek_unary_step_bind(&step)
    with nogil:
        ek_unary(px, py, n, ac, p0, p1, nt)


def channel_affine(x, scale, shift, y, act=0, float p0=0.0, float p1=0.0, nthreads=1,
                   bint bind=False):
    """y = act(x * scale[c] + shift[c]) with c the dim-1 index of x (N, C, ...).

    scale / shift: (C,) float32 or None (1 / 0).  y: x's size, may be x.
    """
    cdef Py_ssize_t outer, C, inner
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    cdef const float* px = _fptr(x, "x")
    _nci(x, &outer, &C, &inner)
    cdef float* py = _fptr(y, "y", _size(x), -1, True)
    cdef const float* ps = _fptr_opt(scale, "scale", C)
    cdef const float* pb = _fptr_opt(shift, "shift", C)
    cdef Py_ssize_t n = _size(x)
    _same_or_disjoint(py, n, px, n, "y", "x")
    if ps != NULL:
        _disjoint(py, n, ps, C, "y", "scale")
    if pb != NULL:
        _disjoint(py, n, pb, C, "y", "shift")
    cdef ek_channel_affine_step_args step
    if bind:
        step.isa, step.x, step.scale, step.shift, step.y = ek_isa_cur, px, ps, pb, py
        step.outer, step.C, step.inner, step.act, step.p0, step.p1, step.nt = outer, C, inner, ac, p0, p1, nt
        return ek_channel_affine_step_bind(&step)
    with nogil:
        ek_channel_affine(px, ps, pb, py, outer, C, inner, ac, p0, p1, nt)


def prelu(x, w, y, nthreads=1, bint bind=False):
    """y = x < 0 ? w[c] * x : x, w broadcast over dim 1 of x (1 weight: all elements)."""
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x")
    cdef Py_ssize_t n = _size(x)
    cdef float* py = _fptr(y, "y", n, -1, True)
    cdef const float* pw = _fptr(w, "w", -1, 1)
    cdef Py_ssize_t nw = _size(w)
    cdef Py_ssize_t outer = 1, C = 1, inner = n
    shape = _shape(x)
    if len(shape) >= 2:
        _nci(x, &outer, &C, &inner)
    if nw == 1:
        outer, C, inner = 1, 1, n
    elif nw != C:
        raise ValueError(f"w must have 1 or {C} (x.shape[1]) elements, got {nw}")
    _same_or_disjoint(py, n, px, n, "y", "x")
    _disjoint(py, n, pw, nw, "y", "w")
    cdef ek_prelu_step_args step
    if bind:
        step.isa, step.x, step.w, step.nw, step.y, step.nt = ek_isa_cur, px, pw, nw, py, nt
        step.outer, step.C, step.inner = outer, C, inner
        return ek_prelu_step_bind(&step)
    with nogil:
        ek_prelu(px, pw, nw, py, outer, C, inner, nt)


def binary(int op, a, b, out, shape, a_strides, b_strides, nthreads=1, bint bind=False):
    """out = a (op) b with broadcasting: op ADD, SUB, MUL or DIV.

    out: C-contiguous with prod(shape) elements; a / b are read at element offsets
    sum(idx[d] * strides[d]) (stride 0 on broadcast dims); 1 <= len(shape) <= 6.
    out may be a or b only when that operand is read with out's own contiguous strides.
    """
    cdef Py_ssize_t sh[6]
    cdef Py_ssize_t sa[6]
    cdef Py_ssize_t sb[6]
    cdef int nt = _threads(nthreads)
    if op < 0 or op > 3:
        raise ValueError(f"op must be 0 (add), 1 (sub), 2 (mul) or 3 (div), got {op}")
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
    cdef ek_binary_step_args step
    if bind:
        step.isa, step.op, step.nd, step.a, step.b, step.out = ek_isa_cur, op, nd, pa, pb, po
        step.nt = nt
        for d in range(nd):
            step.sh[d], step.sa[d], step.sb[d] = sh[d], sa[d], sb[d]
        return ek_binary_step_bind(&step)
    if total == 0:
        return
    with nogil:
        ek_binary_nd(op, nd, sh, pa, sa, pb, sb, po, nt)


def softmax(x, y, Py_ssize_t outer, Py_ssize_t axis, Py_ssize_t inner, bint log=False,
            nthreads=1, bint bind=False):
    """y = softmax (log_softmax with log=True) of x viewed as (outer, axis, inner) along
    the middle dim.  y may be x."""
    cdef int nt = _threads(nthreads)
    if outer < 0 or axis < 1 or inner < 0:
        raise ValueError(f"need outer >= 0, axis >= 1, inner >= 0; got {outer}, {axis}, {inner}")
    cdef Py_ssize_t n = outer * axis * inner
    cdef const float* px = _fptr(x, "x", n)
    cdef float* py = _fptr(y, "y", n, -1, True)
    _same_or_disjoint(py, n, px, n, "y", "x")
    cdef ek_softmax_step_args step
    if bind:
        step.isa, step.x, step.y, step.outer, step.axis, step.inner = ek_isa_cur, px, py, outer, axis, inner
        step.use_log, step.nt = log, nt
        return ek_softmax_step_bind(&step)
    with nogil:
        ek_softmax(px, py, outer, axis, inner, log, nt)
