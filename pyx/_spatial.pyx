# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Spatial re-sampling kernels (engine._kernels.spatial): nearest / bilinear interpolation
from precomputed index tables, and N-d padding (constant, reflect, replicate)."""

include "_common.pxi"

cdef extern from "engine/ek_dispatch.h" nogil:
    ctypedef struct ek_geom3:
        Py_ssize_t D, H, W, KD, KH, KW, OD, OH, OW, sd, sh, sw, pd, ph, pw, dd, dh, dw
    void ek_resize_nearest3d "EK_CALL(ek_resize_nearest3d)"(const float* x, float* y, Py_ssize_t planes, const ek_geom3* g,
                             const Py_ssize_t* idx_d, const Py_ssize_t* idx_h,
                             const Py_ssize_t* idx_w, int nthreads)
    void ek_resize_bilinear2d "EK_CALL(ek_resize_bilinear2d)"(const float* x, float* y, Py_ssize_t planes, Py_ssize_t H,
                              Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, const Py_ssize_t* h0,
                              const Py_ssize_t* h1, const float* lh0, const float* lh1,
                              const Py_ssize_t* w0, const Py_ssize_t* w1, const float* lw0,
                              const float* lw1, int nthreads)

cdef extern from "engine/ek_dispatch.h" nogil:
    void ek_pad_nd "EK_CALL(ek_pad_nd)"(const float* x, float* y, int ndim, const Py_ssize_t* in_shape,
                   const Py_ssize_t* out_shape, const Py_ssize_t* pad_begin, int mode,
                   float value, int nthreads)
    void ek_copy_nd "EK_CALL(ek_copy_nd)"(int ndim, const Py_ssize_t* shape, const float* src,
                    const Py_ssize_t* src_strides, float* dst, const Py_ssize_t* dst_strides,
                    int nthreads)

# Prebound calls (bind=True), see _common.pxi.
cdef extern from *:
    """
    EK_STEP_DEFINE(ek_resize_nearest3d_step,
        (int isa; const float *x; float *y; Py_ssize_t planes; ek_geom3 g; const Py_ssize_t *pd;
         const Py_ssize_t *ph; const Py_ssize_t *pw; int nt;),
        EK_ISA_SEL(a->isa, ek_resize_nearest3d)(a->x, a->y, a->planes, &a->g, a->pd, a->ph,
                                                a->pw, a->nt))
    EK_STEP_DEFINE(ek_resize_bilinear2d_step,
        (int isa; const float *x; float *y; Py_ssize_t planes; Py_ssize_t H; Py_ssize_t W;
         Py_ssize_t OH; Py_ssize_t OW; const Py_ssize_t *h0; const Py_ssize_t *h1;
         const float *lh0; const float *lh1; const Py_ssize_t *w0; const Py_ssize_t *w1;
         const float *lw0; const float *lw1; int nt;),
        EK_ISA_SEL(a->isa, ek_resize_bilinear2d)(a->x, a->y, a->planes, a->H, a->W, a->OH,
                                                 a->OW, a->h0, a->h1, a->lh0, a->lh1, a->w0,
                                                 a->w1, a->lw0, a->lw1, a->nt))
    EK_STEP_DEFINE(ek_pad_nd_step,
        (int isa; const float *x; float *y; int nd; Py_ssize_t ins[6]; Py_ssize_t outs[6];
         Py_ssize_t pb[6]; int mode; float value; int nt;),
        EK_ISA_SEL(a->isa, ek_pad_nd)(a->x, a->y, a->nd, a->ins, a->outs, a->pb, a->mode,
                                      a->value, a->nt))
    EK_STEP_DEFINE(ek_copy_nd_step,
        (int isa; int nd; Py_ssize_t shape[6]; const float *src; Py_ssize_t ss[6]; float *dst;
         Py_ssize_t ds[6]; int nt;),
        EK_ISA_SEL(a->isa, ek_copy_nd)(a->nd, a->shape, a->src, a->ss, a->dst, a->ds, a->nt))
    """
    ctypedef struct ek_resize_nearest3d_step_args:
        int isa, nt
        const float* x
        float* y
        Py_ssize_t planes
        ek_geom3 g
        const Py_ssize_t* pd
        const Py_ssize_t* ph
        const Py_ssize_t* pw
    ctypedef struct ek_resize_bilinear2d_step_args:
        int isa, nt
        const float* x
        float* y
        Py_ssize_t planes, H, W, OH, OW
        const Py_ssize_t* h0
        const Py_ssize_t* h1
        const Py_ssize_t* w0
        const Py_ssize_t* w1
        const float* lh0
        const float* lh1
        const float* lw0
        const float* lw1
    ctypedef struct ek_pad_nd_step_args:
        int isa, nd, mode, nt
        const float* x
        float* y
        Py_ssize_t ins[6]
        Py_ssize_t outs[6]
        Py_ssize_t pb[6]
        float value
    ctypedef struct ek_copy_nd_step_args:
        int isa, nd, nt
        Py_ssize_t shape[6]
        Py_ssize_t ss[6]
        Py_ssize_t ds[6]
        const float* src
        float* dst
    object ek_resize_nearest3d_step_bind(const ek_resize_nearest3d_step_args* a)
    object ek_resize_bilinear2d_step_bind(const ek_resize_bilinear2d_step_args* a)
    object ek_pad_nd_step_bind(const ek_pad_nd_step_args* a)
    object ek_copy_nd_step_bind(const ek_copy_nd_step_args* a)

CONSTANT = 0
REFLECT = 1
REPLICATE = 2


def resize_nearest3d(x, y, idx_d, idx_h, idx_w, nthreads=1, bint bind=False):
    """y[n, c, od, oh, ow] = x[n, c, idx_d[od], idx_h[oh], idx_w[ow]].

    x: (N, C, D, H, W); y: (N, C, OD, OH, OW); idx_*: intp tables of the output sizes with
    entries inside the input sizes.
    """
    cdef ek_geom3 g
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x", -1, 5)
    cdef float* py = _fptr(y, "y", -1, 5, True)
    xs, ys = _shape(x), _shape(y)
    if xs[0] != ys[0] or xs[1] != ys[1]:
        raise ValueError(f"y must have the (N, C) of x = {xs[:2]}, got {ys[:2]}")
    _disjoint(py, _size(y), px, _size(x), "y", "x")
    g.D, g.H, g.W = xs[2], xs[3], xs[4]
    g.OD, g.OH, g.OW = ys[2], ys[3], ys[4]
    cdef const Py_ssize_t* pd = _iptr(idx_d, "idx_d", g.OD, 0, g.D)
    cdef const Py_ssize_t* ph = _iptr(idx_h, "idx_h", g.OH, 0, g.H)
    cdef const Py_ssize_t* pw = _iptr(idx_w, "idx_w", g.OW, 0, g.W)
    cdef Py_ssize_t planes = xs[0] * xs[1]
    cdef ek_resize_nearest3d_step_args step
    if bind:
        step.isa, step.x, step.y, step.planes, step.g, step.nt = ek_isa_cur, px, py, planes, g, nt
        step.pd, step.ph, step.pw = pd, ph, pw
        return ek_resize_nearest3d_step_bind(&step)
    if _size(y) == 0:
        return
    with nogil:
        ek_resize_nearest3d(px, py, planes, &g, pd, ph, pw, nt)


def resize_bilinear2d(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1, nthreads=1, bint bind=False):
    """Bilinear interpolation of x (N, C, H, W) into y (N, C, OH, OW) from per-dim tables:
    source indices h0/h1 (OH entries in [0, H)), w0/w1 (OW entries in [0, W)) and float32
    weights lh0/lh1 (OH), lw0/lw1 (OW)."""
    cdef int nt = _threads(nthreads)
    cdef const float* px = _fptr(x, "x", -1, 4)
    cdef float* py = _fptr(y, "y", -1, 4, True)
    xs, ys = _shape(x), _shape(y)
    if xs[0] != ys[0] or xs[1] != ys[1]:
        raise ValueError(f"y must have the (N, C) of x = {xs[:2]}, got {ys[:2]}")
    _disjoint(py, _size(y), px, _size(x), "y", "x")
    cdef Py_ssize_t H = xs[2], W = xs[3], OH = ys[2], OW = ys[3]
    cdef const Py_ssize_t* ph0 = _iptr(h0, "h0", OH, 0, H)
    cdef const Py_ssize_t* ph1 = _iptr(h1, "h1", OH, 0, H)
    cdef const Py_ssize_t* pw0 = _iptr(w0, "w0", OW, 0, W)
    cdef const Py_ssize_t* pw1 = _iptr(w1, "w1", OW, 0, W)
    cdef const float* plh0 = _fptr(lh0, "lh0", OH, 1)
    cdef const float* plh1 = _fptr(lh1, "lh1", OH, 1)
    cdef const float* plw0 = _fptr(lw0, "lw0", OW, 1)
    cdef const float* plw1 = _fptr(lw1, "lw1", OW, 1)
    cdef Py_ssize_t planes = xs[0] * xs[1]
    cdef ek_resize_bilinear2d_step_args step
    if bind:
        step.isa, step.x, step.y, step.planes, step.nt = ek_isa_cur, px, py, planes, nt
        step.H, step.W, step.OH, step.OW = H, W, OH, OW
        step.h0, step.h1, step.lh0, step.lh1 = ph0, ph1, plh0, plh1
        step.w0, step.w1, step.lw0, step.lw1 = pw0, pw1, plw0, plw1
        return ek_resize_bilinear2d_step_bind(&step)
    if _size(y) == 0:
        return
    with nogil:
        ek_resize_bilinear2d(px, py, planes, H, W, OH, OW, ph0, ph1, plh0, plh1, pw0, pw1,
                             plw0, plw1, nt)


def pad(x, y, pad_begin, int mode, float value=0.0, nthreads=1, bint bind=False):
    """y = pad(x): x and y of equal rank (1 to 6), pad_begin[d] elements before dim d
    (negative crops); y's shape fixes the end padding.  mode CONSTANT (value), REFLECT or
    REPLICATE (PyTorch F.pad)."""
    cdef Py_ssize_t ins[6]
    cdef Py_ssize_t outs[6]
    cdef Py_ssize_t pb[6]
    cdef int nt = _threads(nthreads)
    if mode < 0 or mode > 2:
        raise ValueError(f"mode must be 0 (constant), 1 (reflect) or 2 (replicate), got {mode}")
    cdef const float* px = _fptr(x, "x")
    cdef float* py = _fptr(y, "y", -1, _ndim(x), True)
    cdef int nd = _ndim(x)
    if nd < 1 or nd > 6:
        raise ValueError(f"x must have rank 1 to 6, got {nd}")
    xs, ys = _shape(x), _shape(y)
    _ints(pad_begin, "pad_begin", nd, -_INT_LIMIT, pb)
    cdef int d
    for d in range(nd):
        ins[d] = xs[d]
        outs[d] = ys[d]
    _disjoint(py, _size(y), px, _size(x), "y", "x")
    if _size(y) == 0:
        return
    if _size(x) == 0:
        raise ValueError(f"cannot pad an empty x {xs} into a non-empty y {ys}")
    cdef ek_pad_nd_step_args step
    if bind:
        step.isa, step.x, step.y, step.nd, step.mode, step.value = ek_isa_cur, px, py, nd, mode, value
        step.nt = nt
        for d in range(nd):
            step.ins[d], step.outs[d], step.pb[d] = ins[d], outs[d], pb[d]
        return ek_pad_nd_step_bind(&step)
    with nogil:
        ek_pad_nd(px, py, nd, ins, outs, pb, mode, value, nt)


cdef Py_ssize_t _extent(Py_ssize_t nd, const Py_ssize_t* shape, const Py_ssize_t* strides):
    """1 + the largest element offset a strided walk over shape touches."""
    cdef Py_ssize_t off = 0
    cdef int d
    for d in range(nd):
        off += (shape[d] - 1) * strides[d]
    return off + 1


def copy_strided(src, dst, shape, src_strides, dst_strides, Py_ssize_t src_offset=0,
                 Py_ssize_t dst_offset=0, nthreads=1, bint bind=False):
    """dst[dst_offset + sum(i * dst_strides)] = src[src_offset + sum(i * src_strides)] for
    every index i < shape (1 to 6 dims; element strides >= 0).

    src and dst are float32 C-contiguous arrays addressed as flat buffers; every offset the
    walk reaches is checked to lie inside them, and the spans it reads and writes must not
    overlap (they may lie in one buffer: a concat input placed in its output, copied again
    for a repeated input).  Concat, split, permute and channel shuffle are this copy with
    the right strides.
    """
    cdef Py_ssize_t sh[6]
    cdef Py_ssize_t ss[6]
    cdef Py_ssize_t ds[6]
    cdef int nt = _threads(nthreads)
    cdef int nd = len(shape)
    if nd < 1 or nd > 6:
        raise ValueError(f"shape must have 1 to 6 dims, got {nd}: {shape!r}")
    _ints(shape, "shape", nd, 1, sh)
    _ints(src_strides, "src_strides", nd, 0, ss)
    _ints(dst_strides, "dst_strides", nd, 0, ds)
    cdef const float* ps = _fptr(src, "src")
    cdef float* pd = _fptr(dst, "dst", -1, -1, True)
    if src_offset < 0 or dst_offset < 0:
        raise ValueError(f"offsets must be >= 0, got {src_offset} and {dst_offset}")
    cdef Py_ssize_t ns = _extent(nd, sh, ss) + src_offset
    cdef Py_ssize_t ndst = _extent(nd, sh, ds) + dst_offset
    if ns > _size(src):
        raise ValueError(f"src has {_size(src)} elements, the copy reads up to element {ns - 1}")
    if ndst > _size(dst):
        raise ValueError(f"dst has {_size(dst)} elements, the copy writes up to element "
                         f"{ndst - 1}")
    _disjoint(pd + dst_offset, ndst - dst_offset, ps + src_offset, ns - src_offset,
              "the span of dst the copy writes", "the span of src it reads")
    cdef ek_copy_nd_step_args step
    cdef int d
    if bind:
        step.isa, step.nd, step.src, step.dst, step.nt = ek_isa_cur, nd, ps + src_offset, pd + dst_offset, nt
        for d in range(nd):
            step.shape[d], step.ss[d], step.ds[d] = sh[d], ss[d], ds[d]
        return ek_copy_nd_step_bind(&step)
    with nogil:
        ek_copy_nd(nd, sh, ps + src_offset, ss, pd + dst_offset, ds, nt)
