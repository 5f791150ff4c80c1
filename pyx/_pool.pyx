# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Pooling kernels (engine._kernels.pool): max / min / avg pooling and adaptive pooling.

Tensors are 5-D (N, C, D, H, W) float32 C-contiguous (1-D/2-D: unit leading spatial dims).
"""

include "_common.pxi"

cdef extern from "engine/ek_dispatch.h" nogil:
    void ek_pool3d "EK_CALL(ek_pool3d)"(const float* x, float* y, Py_ssize_t planes, const ek_geom3* g,
                   Py_ssize_t pe_d, Py_ssize_t pe_h, Py_ssize_t pe_w, int mode,
                   int count_include_pad, int nthreads)
    void ek_adaptive_pool3d "EK_CALL(ek_adaptive_pool3d)"(const float* x, float* y, Py_ssize_t planes, const ek_geom3* g,
                            int mode, int nthreads)

# Prebound calls (bind=True), see _common.pxi.
cdef extern from *:
    """
    EK_STEP_DEFINE(ek_pool3d_step,
        (int isa; const float *x; float *y; Py_ssize_t planes; ek_geom3 g; Py_ssize_t pe_d;
         Py_ssize_t pe_h; Py_ssize_t pe_w; int mode; int count_include_pad; int nt;),
        EK_ISA_SEL(a->isa, ek_pool3d)(a->x, a->y, a->planes, &a->g, a->pe_d, a->pe_h, a->pe_w,
                                      a->mode, a->count_include_pad, a->nt))
    EK_STEP_DEFINE(ek_adaptive_pool3d_step,
        (int isa; const float *x; float *y; Py_ssize_t planes; ek_geom3 g; int mode; int nt;),
        EK_ISA_SEL(a->isa, ek_adaptive_pool3d)(a->x, a->y, a->planes, &a->g, a->mode, a->nt))
    """
    ctypedef struct ek_pool3d_step_args:
        int isa, mode, count_include_pad, nt
        const float* x
        float* y
        Py_ssize_t planes, pe_d, pe_h, pe_w
        ek_geom3 g
    ctypedef struct ek_adaptive_pool3d_step_args:
        int isa, mode, nt
        const float* x
        float* y
        Py_ssize_t planes
        ek_geom3 g
    object ek_pool3d_step_bind(const ek_pool3d_step_args* a)
    object ek_adaptive_pool3d_step_bind(const ek_adaptive_pool3d_step_args* a)

MAX = 0
MIN = 1
AVG = 2


cdef int _xy(object x, object y, const float** px, float** py) except -1:
    px[0] = _fptr(x, "x", -1, 5)
    py[0] = _fptr(y, "y", -1, 5, True)
    xs, ys = _shape(x), _shape(y)
    if ys[0] != xs[0] or ys[1] != xs[1]:
        raise ValueError(f"y must have the (N, C) of x = {xs[:2]}, got {ys[:2]}")
    if any(d < 1 for d in xs) or any(d < 1 for d in ys):
        raise ValueError(f"x and y dims must be >= 1, got {xs} and {ys}")
    _disjoint(py[0], _size(y), px[0], _size(x), "y", "x")
    return 0


cdef int _mode(int mode) except -1:
    if mode < 0 or mode > 2:
        raise ValueError(f"mode must be 0 (max), 1 (min) or 2 (avg), got {mode}")
    return mode


def pool3d(x, y, kernel, stride, pad_begin, pad_end, dilation, int mode,
           bint count_include_pad=True, nthreads=1, bint bind=False):
    """y = pool(x): windows of `kernel` taps at o*stride - pad_begin + k*dilation.

    mode: MAX, MIN or AVG (avg needs dilation 1; its divisor follows PyTorch with the
    padding pad_begin / pad_end, see ek_pool.h).  The output size (y's shape) is the
    caller's (ceil_mode is expressed by it).
    """
    cdef const float* px
    cdef float* py
    cdef ek_geom3 g
    cdef Py_ssize_t k[3]
    cdef Py_ssize_t st[3]
    cdef Py_ssize_t pb[3]
    cdef Py_ssize_t pe[3]
    cdef Py_ssize_t dl[3]
    cdef int nt = _threads(nthreads)
    _mode(mode)
    _xy(x, y, &px, &py)
    _ints(kernel, "kernel", 3, 1, k)
    _ints(stride, "stride", 3, 1, st)
    _ints(pad_begin, "pad_begin", 3, 0, pb)
    _ints(pad_end, "pad_end", 3, 0, pe)
    _ints(dilation, "dilation", 3, 1, dl)
    if mode == 2 and (dl[0] != 1 or dl[1] != 1 or dl[2] != 1):
        raise ValueError(f"avg pooling needs dilation 1, got {list(dilation)}")
    xs, ys = _shape(x), _shape(y)
    g.D, g.H, g.W = xs[2], xs[3], xs[4]
    g.OD, g.OH, g.OW = ys[2], ys[3], ys[4]
    g.KD, g.KH, g.KW = k[0], k[1], k[2]
    g.sd, g.sh, g.sw = st[0], st[1], st[2]
    g.pd, g.ph, g.pw = pb[0], pb[1], pb[2]
    g.dd, g.dh, g.dw = dl[0], dl[1], dl[2]
    _geom_ok(&g, pe, "pool")
    cdef Py_ssize_t planes = xs[0] * xs[1]
    cdef ek_pool3d_step_args step
    if bind:
        step.isa, step.x, step.y, step.planes, step.g, step.nt = ek_isa_cur, px, py, planes, g, nt
        step.pe_d, step.pe_h, step.pe_w, step.mode, step.count_include_pad = pe[0], pe[1], pe[2], mode, count_include_pad
        return ek_pool3d_step_bind(&step)
    with nogil:
        ek_pool3d(px, py, planes, &g, pe[0], pe[1], pe[2], mode, count_include_pad, nt)


def adaptive_pool3d(x, y, int mode, nthreads=1, bint bind=False):
    """Adaptive pooling of x to y's spatial size (PyTorch windows); mode MAX, MIN or AVG."""
    cdef const float* px
    cdef float* py
    cdef ek_geom3 g
    cdef int nt = _threads(nthreads)
    _mode(mode)
    _xy(x, y, &px, &py)
    xs, ys = _shape(x), _shape(y)
    g.D, g.H, g.W = xs[2], xs[3], xs[4]
    g.OD, g.OH, g.OW = ys[2], ys[3], ys[4]
    # (windows [o In / Out, ceil((o + 1) In / Out)): o In must not wrap)
    g.KD = g.KH = g.KW = g.sd = g.sh = g.sw = g.dd = g.dh = g.dw = 1
    g.pd = g.ph = g.pw = 0
    _geom_ok(&g, NULL, "adaptive pool")
    cdef Py_ssize_t planes = xs[0] * xs[1]
    cdef ek_adaptive_pool3d_step_args step
    if bind:
        step.isa, step.x, step.y, step.planes, step.g, step.mode, step.nt = ek_isa_cur, px, py, planes, g, mode, nt
        return ek_adaptive_pool3d_step_bind(&step)
    with nogil:
        ek_adaptive_pool3d(px, py, planes, &g, mode, nt)
