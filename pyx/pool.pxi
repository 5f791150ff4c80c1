# Pooling kernels: max / min / avg pooling and adaptive pooling.
#
# Tensors are 5-D (N, C, D, H, W) float32 C-contiguous (1-D/2-D: unit leading spatial dims).

MAX = 0
MIN = 1
AVG = 2


cdef int _xy(object x, object y, ek_plane_call* a) except -1:
    """x, y (N, C, ...) of equal (N, C), not overlapping: pointers, planes and the spatial
    sizes of the geometry into a."""
    a.x = _fptr(x, "x", -1, 5)
    a.y = _fptr(y, "y", -1, 5, True)
    xs, ys = _shape(x), _shape(y)
    if ys[0] != xs[0] or ys[1] != xs[1]:
        raise ValueError(f"y must have the (N, C) of x = {xs[:2]}, got {ys[:2]}")
    if any(d < 1 for d in xs) or any(d < 1 for d in ys):
        raise ValueError(f"x and y dims must be >= 1, got {xs} and {ys}")
    _disjoint(a.y, _size(y), a.x, _size(x), "y", "x")
    a.planes = xs[0] * xs[1]
    a.g.D, a.g.H, a.g.W = xs[2], xs[3], xs[4]
    a.g.OD, a.g.OH, a.g.OW = ys[2], ys[3], ys[4]
    return 0


cdef int _mode(int mode) except -1:
    if mode < 0 or mode > 2:
        raise ValueError(f"mode must be 0 (max), 1 (min) or 2 (avg), got {mode}")
    return mode


def pool3d(x, y, kernel, stride, pad_begin, pad_end, dilation, int mode,
           bint count_include_pad=True, nthreads=1, bint bind=False, isa=None):
    """y = pool(x): windows of `kernel` taps at o*stride - pad_begin + k*dilation.

    mode: MAX, MIN or AVG (avg needs dilation 1; its divisor follows PyTorch with the
    padding pad_begin / pad_end, see ek_pool.h).  The output size (y's shape) is the
    caller's (ceil_mode is expressed by it).
    """
    cdef ek_plane_call a
    cdef Py_ssize_t k[3]
    cdef Py_ssize_t st[3]
    cdef Py_ssize_t pb[3]
    cdef Py_ssize_t pe[3]
    cdef Py_ssize_t dl[3]
    a.nt, a.mode, a.count_include_pad = _threads(nthreads), _mode(mode), count_include_pad
    _xy(x, y, &a)
    _ints(kernel, "kernel", 3, 1, k)
    _ints(stride, "stride", 3, 1, st)
    _ints(pad_begin, "pad_begin", 3, 0, pb)
    _ints(pad_end, "pad_end", 3, 0, pe)
    _ints(dilation, "dilation", 3, 1, dl)
    if mode == 2 and (dl[0] != 1 or dl[1] != 1 or dl[2] != 1):
        raise ValueError(f"avg pooling needs dilation 1, got {list(dilation)}")
    a.g.KD, a.g.KH, a.g.KW = k[0], k[1], k[2]
    a.g.sd, a.g.sh, a.g.sw = st[0], st[1], st[2]
    a.g.pd, a.g.ph, a.g.pw = pb[0], pb[1], pb[2]
    a.g.dd, a.g.dh, a.g.dw = dl[0], dl[1], dl[2]
    _geom_ok(&a.g, pe, "pool")
    a.pe_d, a.pe_h, a.pe_w = pe[0], pe[1], pe[2]
    return _call(ek_pool3d_at[_isa_arg(isa)], &a, sizeof(a), bind)


def adaptive_pool3d(x, y, int mode, nthreads=1, bint bind=False, isa=None):
    """Adaptive pooling of x to y's spatial size (PyTorch windows); mode MAX, MIN or AVG."""
    cdef ek_plane_call a
    a.nt, a.mode = _threads(nthreads), _mode(mode)
    _xy(x, y, &a)
    # (windows [o In / Out, ceil((o + 1) In / Out)): o In must not wrap)
    a.g.KD = a.g.KH = a.g.KW = a.g.sd = a.g.sh = a.g.sw = a.g.dd = a.g.dh = a.g.dw = 1
    a.g.pd = a.g.ph = a.g.pw = 0
    _geom_ok(&a.g, NULL, "adaptive pool")
    return _call(ek_adaptive_pool3d_at[_isa_arg(isa)], &a, sizeof(a), bind)
