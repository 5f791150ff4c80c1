# Spatial re-sampling kernels: nearest / bilinear interpolation
# from precomputed index tables, and N-d padding (constant, reflect, replicate).

CONSTANT = 0
REFLECT = 1
REPLICATE = 2


cdef tuple _resize_xy(object x, object y, int ndim, const float** px, float** py):
    """x, y (N, C, ...) of rank ndim, equal (N, C), not overlapping; their shapes."""
    px[0] = _fptr(x, "x", -1, ndim)
    py[0] = _fptr(y, "y", -1, ndim, True)
    xs, ys = _shape(x), _shape(y)
    if xs[0] != ys[0] or xs[1] != ys[1]:
        raise ValueError(f"y must have the (N, C) of x = {xs[:2]}, got {ys[:2]}")
    _disjoint(py[0], _size(y), px[0], _size(x), "y", "x")
    return xs, ys


def resize_nearest3d(x, y, idx_d, idx_h, idx_w, nthreads=1, bint bind=False, isa=None):
    """y[n, c, od, oh, ow] = x[n, c, idx_d[od], idx_h[oh], idx_w[ow]].

    x: (N, C, D, H, W); y: (N, C, OD, OH, OW); idx_*: intp tables of the output sizes with
    entries inside the input sizes.
    """
    cdef ek_plane_call a
    a.nt = _threads(nthreads)
    xs, ys = _resize_xy(x, y, 5, &a.x, &a.y)
    a.planes = xs[0] * xs[1]
    a.g.D, a.g.H, a.g.W = xs[2], xs[3], xs[4]
    a.g.OD, a.g.OH, a.g.OW = ys[2], ys[3], ys[4]
    a.pd = _iptr(idx_d, "idx_d", a.g.OD, 0, a.g.D)
    a.ph = _iptr(idx_h, "idx_h", a.g.OH, 0, a.g.H)
    a.pw = _iptr(idx_w, "idx_w", a.g.OW, 0, a.g.W)
    if _size(y) == 0 and not bind:
        return
    return _call(ek_resize_nearest3d_at[_isa_arg(isa)], &a, sizeof(a), bind)


def resize_bilinear2d(x, y, h0, h1, lh0, lh1, w0, w1, lw0, lw1, nthreads=1, bint bind=False,
                      isa=None):
    """Bilinear interpolation of x (N, C, H, W) into y (N, C, OH, OW) from per-dim tables:
    source indices h0/h1 (OH entries in [0, H)), w0/w1 (OW entries in [0, W)) and float32
    weights lh0/lh1 (OH), lw0/lw1 (OW)."""
    cdef ek_bilinear_call a
    a.nt = _threads(nthreads)
    xs, ys = _resize_xy(x, y, 4, &a.x, &a.y)
    a.planes, a.H, a.W, a.OH, a.OW = xs[0] * xs[1], xs[2], xs[3], ys[2], ys[3]
    a.h0 = _iptr(h0, "h0", a.OH, 0, a.H)
    a.h1 = _iptr(h1, "h1", a.OH, 0, a.H)
    a.w0 = _iptr(w0, "w0", a.OW, 0, a.W)
    a.w1 = _iptr(w1, "w1", a.OW, 0, a.W)
    a.lh0 = _fptr(lh0, "lh0", a.OH, 1)
    a.lh1 = _fptr(lh1, "lh1", a.OH, 1)
    a.lw0 = _fptr(lw0, "lw0", a.OW, 1)
    a.lw1 = _fptr(lw1, "lw1", a.OW, 1)
    if _size(y) == 0 and not bind:
        return
    return _call(ek_resize_bilinear2d_at[_isa_arg(isa)], &a, sizeof(a), bind)


def pad(x, y, pad_begin, int mode, float value=0.0, nthreads=1, bint bind=False, isa=None):
    """y = pad(x): x and y of equal rank (1 to 6), pad_begin[d] elements before dim d
    (negative crops); y's shape fixes the end padding.  mode CONSTANT (value), REFLECT or
    REPLICATE (PyTorch F.pad)."""
    cdef ek_nd_call a
    a.nt, a.mode, a.value = _threads(nthreads), mode, value
    if mode < 0 or mode > 2:
        raise ValueError(f"mode must be 0 (constant), 1 (reflect) or 2 (replicate), got {mode}")
    a.x = _fptr(x, "x")
    a.y = _fptr(y, "y", -1, _ndim(x), True)
    a.nd = _ndim(x)
    if a.nd < 1 or a.nd > 6:
        raise ValueError(f"x must have rank 1 to 6, got {a.nd}")
    xs, ys = _shape(x), _shape(y)
    _ints(pad_begin, "pad_begin", a.nd, -_INT_LIMIT, a.pb)
    cdef int d
    for d in range(a.nd):
        a.ins[d] = xs[d]
        a.outs[d] = ys[d]
    _disjoint(a.y, _size(y), a.x, _size(x), "y", "x")
    if _size(y) == 0:
        return
    if _size(x) == 0:
        raise ValueError(f"cannot pad an empty x {xs} into a non-empty y {ys}")
    return _call(ek_pad_nd_at[_isa_arg(isa)], &a, sizeof(a), bind)


cdef Py_ssize_t _extent(Py_ssize_t nd, const Py_ssize_t* shape, const Py_ssize_t* strides):
    """1 + the largest element offset a strided walk over shape touches."""
    cdef Py_ssize_t off = 0
    cdef int d
    for d in range(nd):
        off += (shape[d] - 1) * strides[d]
    return off + 1


def copy_strided(src, dst, shape, src_strides, dst_strides, Py_ssize_t src_offset=0,
                 Py_ssize_t dst_offset=0, nthreads=1, bint bind=False, isa=None):
    """dst[dst_offset + sum(i * dst_strides)] = src[src_offset + sum(i * src_strides)] for
    every index i < shape (1 to 6 dims; element strides >= 0).

    src and dst are float32 C-contiguous arrays addressed as flat buffers; every offset the
    walk reaches is checked to lie inside them, and the spans it reads and writes must not
    overlap (they may lie in one buffer: a concat input placed in its output, copied again
    for a repeated input).  Concat, split, permute and channel shuffle are this copy with
    the right strides.
    """
    cdef ek_nd_call a
    cdef Py_ssize_t* sh = a.ins       # (copy_nd reads the shape from ins)
    cdef Py_ssize_t* ss = a.ss
    cdef Py_ssize_t* ds = a.ds
    a.nt = _threads(nthreads)
    cdef int nd = len(shape)
    if nd < 1 or nd > 6:
        raise ValueError(f"shape must have 1 to 6 dims, got {nd}: {shape!r}")
    a.nd = nd
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
    a.x, a.y = ps + src_offset, pd + dst_offset
    return _call(ek_copy_nd_at[_isa_arg(isa)], &a, sizeof(a), bind)
