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

CONSTANT = 0
REFLECT = 1
REPLICATE = 2


def resize_nearest3d(x, y, idx_d, idx_h, idx_w, nthreads=1):
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
    if _size(y) == 0:
        return
    with nogil:
        ek_resize_nearest3d(px, py, planes, &g, pd, ph, pw, nt)


def resize_bilinear2d(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1, nthreads=1):
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
    if _size(y) == 0:
        return
    with nogil:
        ek_resize_bilinear2d(px, py, planes, H, W, OH, OW, ph0, ph1, plh0, plh1, pw0, pw1,
                             plw0, plw1, nt)


def pad(x, y, pad_begin, int mode, float value=0.0, nthreads=1):
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
    with nogil:
        ek_pad_nd(px, py, nd, ins, outs, pb, mode, value, nt)
