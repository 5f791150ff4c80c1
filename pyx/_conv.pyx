# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Convolution kernels (engine._kernels.conv): N-d conv (im2col + GEMM, pointwise fast
path), direct depthwise conv, transposed conv (GEMM + col2im), with fused bias + activation.

Tensors are 5-D (N, C, D, H, W) float32 C-contiguous; 1-D/2-D problems pass unit leading
spatial dims (a reshape of a contiguous array is a view).  Output spatial sizes are the
caller's (they imply the end padding); every size is checked here before the C call.
"""

include "_common.pxi"

cdef extern from *:
    """
    #define ek_conv_workspace_at(isa, ...) EK_ISA_SEL(isa, ek_conv_workspace)(__VA_ARGS__)
    #define ek_conv3d_at(isa, ...) EK_ISA_SEL(isa, ek_conv3d)(__VA_ARGS__)
    #define ek_conv_packed_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_conv_packed_workspace)(__VA_ARGS__)
    #define ek_conv3d_packed_at(isa, ...) EK_ISA_SEL(isa, ek_conv3d_packed)(__VA_ARGS__)
    #define ek_conv_pack_size_at(isa, ...) EK_ISA_SEL(isa, ek_conv_pack_size)(__VA_ARGS__)
    #define ek_conv_pack_at(isa, ...) EK_ISA_SEL(isa, ek_conv_pack)(__VA_ARGS__)
    #define ek_conv_transpose_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_conv_transpose_workspace)(__VA_ARGS__)
    #define ek_conv_transpose3d_at(isa, ...) EK_ISA_SEL(isa, ek_conv_transpose3d)(__VA_ARGS__)
    #define ek_conv3d_depthwise_at(isa, ...) EK_ISA_SEL(isa, ek_conv3d_depthwise)(__VA_ARGS__)
    #define ek_conv_depthwise_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_conv_depthwise_workspace)(__VA_ARGS__)
    """

cdef extern from "engine/ek_dispatch.h" nogil:
    ctypedef struct ek_geom3:
        Py_ssize_t D, H, W, KD, KH, KW, OD, OH, OW, sd, sh, sw, pd, ph, pw, dd, dh, dw
    Py_ssize_t ek_conv_workspace_at(int isa, Py_ssize_t C, Py_ssize_t Cout,
                                    Py_ssize_t groups, const ek_geom3* g, int nthreads)
    void ek_conv3d_at(int isa, const float* x, const float* w, const float* bias, float* y,
                      Py_ssize_t N, Py_ssize_t C, Py_ssize_t Cout, Py_ssize_t groups,
                      const ek_geom3* g, int act, float p0, float p1, float* work,
                      int nthreads)
    Py_ssize_t ek_conv_packed_workspace_at(int isa, Py_ssize_t C, Py_ssize_t Cout,
                                           Py_ssize_t groups, const ek_geom3* g, int nthreads)
    void ek_conv3d_packed_at(int isa, const float* x, const float* wpk, const float* bias,
                             const float* R, float* y, Py_ssize_t N, Py_ssize_t C,
                             Py_ssize_t Cout, Py_ssize_t groups, const ek_geom3* g, int act,
                             float p0, float p1, float* work, int nthreads)
    Py_ssize_t ek_conv_pack_size_at(int isa, Py_ssize_t Cout, Py_ssize_t K, Py_ssize_t groups)
    void ek_conv_pack_at(int isa, const float* w, Py_ssize_t Cout, Py_ssize_t K,
                         Py_ssize_t groups, float* buf)
    Py_ssize_t ek_conv_depthwise_workspace_at(int isa, Py_ssize_t N, Py_ssize_t Cout,
                                              const ek_geom3* g, int nthreads)
    void ek_conv3d_depthwise_at(int isa, const float* x, const float* w, const float* bias,
                                float* y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t Cout,
                                const ek_geom3* g, int act, float p0, float p1, float* work,
                                int nthreads)
    Py_ssize_t ek_conv_transpose_workspace_at(int isa, Py_ssize_t C, Py_ssize_t Cout,
                                              Py_ssize_t groups, const ek_geom3* g,
                                              int nthreads)
    void ek_conv_transpose3d_at(int isa, const float* x, const float* w, const float* bias,
                                float* y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t Cout,
                                Py_ssize_t groups, const ek_geom3* g, int act, float p0,
                                float p1, float* work, int nthreads)

# Prebound calls (bind=True), see _common.pxi.
cdef extern from *:
    """
    EK_STEP_DEFINE(ek_conv3d_step,
        (int isa; const float *x; const float *w; const float *bias; float *y; Py_ssize_t N;
         Py_ssize_t C; Py_ssize_t Cout; Py_ssize_t groups; ek_geom3 g; int act; float p0;
         float p1; float *work; int nt;),
        ek_conv3d_at(a->isa, a->x, a->w, a->bias, a->y, a->N, a->C, a->Cout, a->groups, &a->g,
                     a->act, a->p0, a->p1, a->work, a->nt))
    EK_STEP_DEFINE(ek_conv3d_packed_step,
        (int isa; const float *x; const float *wpk; const float *bias; const float *R; float *y;
         Py_ssize_t N; Py_ssize_t C; Py_ssize_t Cout; Py_ssize_t groups; ek_geom3 g; int act;
         float p0; float p1; float *work; int nt;),
        ek_conv3d_packed_at(a->isa, a->x, a->wpk, a->bias, a->R, a->y, a->N, a->C, a->Cout,
                            a->groups, &a->g, a->act, a->p0, a->p1, a->work, a->nt))
    EK_STEP_DEFINE(ek_conv3d_depthwise_step,
        (int isa; const float *x; const float *w; const float *bias; float *y; Py_ssize_t N;
         Py_ssize_t C; Py_ssize_t Cout; ek_geom3 g; int act; float p0; float p1; float *work;
         int nt;),
        ek_conv3d_depthwise_at(a->isa, a->x, a->w, a->bias, a->y, a->N, a->C, a->Cout, &a->g,
                               a->act, a->p0, a->p1, a->work, a->nt))
    EK_STEP_DEFINE(ek_conv_transpose3d_step,
        (int isa; const float *x; const float *w; const float *bias; float *y; Py_ssize_t N;
         Py_ssize_t C; Py_ssize_t Cout; Py_ssize_t groups; ek_geom3 g; int act; float p0;
         float p1; float *work; int nt;),
        ek_conv_transpose3d_at(a->isa, a->x, a->w, a->bias, a->y, a->N, a->C, a->Cout,
                               a->groups, &a->g, a->act, a->p0, a->p1, a->work, a->nt))
    """
    ctypedef struct ek_conv3d_step_args:
        int isa, act, nt
        const float* x
        const float* w
        const float* bias
        float* y
        Py_ssize_t N, C, Cout, groups
        ek_geom3 g
        float p0, p1
        float* work
    ctypedef struct ek_conv3d_packed_step_args:
        int isa, act, nt
        const float* x
        const float* wpk
        const float* bias
        const float* R
        float* y
        Py_ssize_t N, C, Cout, groups
        ek_geom3 g
        float p0, p1
        float* work
    ctypedef struct ek_conv3d_depthwise_step_args:
        int isa, act, nt
        const float* x
        const float* w
        const float* bias
        float* y
        Py_ssize_t N, C, Cout
        ek_geom3 g
        float p0, p1
        float* work
    ctypedef struct ek_conv_transpose3d_step_args:
        int isa, act, nt
        const float* x
        const float* w
        const float* bias
        float* y
        Py_ssize_t N, C, Cout, groups
        ek_geom3 g
        float p0, p1
        float* work
    object ek_conv3d_step_bind(const ek_conv3d_step_args* a)
    object ek_conv3d_packed_step_bind(const ek_conv3d_packed_step_args* a)
    object ek_conv3d_depthwise_step_bind(const ek_conv3d_depthwise_step_args* a)
    object ek_conv_transpose3d_step_bind(const ek_conv_transpose3d_step_args* a)


cdef int _shape5(object shape, str name, Py_ssize_t* out) except -1:
    try:
        vals = [int(v) for v in shape]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of 5 ints, got {shape!r}") from None
    if len(vals) != 5:
        raise ValueError(f"{name} must be 5-D (N, C, D, H, W), got {len(vals)}-D {tuple(vals)}")
    cdef int i
    for i in range(5):
        if vals[i] < 1:
            raise ValueError(f"{name} dims must be >= 1, got {tuple(vals)}")
        out[i] = vals[i]
    return 0


cdef int _geom(object x_shape, object w_shape, object y_shape, object stride,
               object pad_begin, object dilation, Py_ssize_t groups, bint transposed,
               ek_geom3* g, Py_ssize_t* dims) except -1:
    """Validate shapes and attributes; fill g and dims = (N, C, Cout)."""
    cdef Py_ssize_t xs[5]
    cdef Py_ssize_t ws[5]
    cdef Py_ssize_t ys[5]
    cdef Py_ssize_t st[3]
    cdef Py_ssize_t pb[3]
    cdef Py_ssize_t dl[3]
    _shape5(x_shape, "x", xs)
    _shape5(w_shape, "w", ws)
    _shape5(y_shape, "y", ys)
    _ints(stride, "stride", 3, 1, st)
    _ints(pad_begin, "pad_begin", 3, 0, pb)
    _ints(dilation, "dilation", 3, 1, dl)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    cdef Py_ssize_t N = xs[0], C = xs[1], Cout = ys[1]
    if ys[0] != N:
        raise ValueError(f"y batch must be {N} (x's), got {ys[0]}")
    if C % groups != 0 or Cout % groups != 0:
        raise ValueError(f"groups={groups} must divide the input channels {C} and the output "
                         f"channels {Cout}")
    if not transposed:
        if ws[0] != Cout or ws[1] * groups != C:
            raise ValueError(f"w must have shape ({Cout}, {C // groups}, KD, KH, KW) for "
                             f"C={C}, Cout={Cout}, groups={groups}, got {tuple(w_shape)}")
    else:
        if ws[0] != C or ws[1] * groups != Cout:
            raise ValueError(f"w must have shape ({C}, {Cout // groups}, KD, KH, KW) for "
                             f"C={C}, Cout={Cout}, groups={groups}, got {tuple(w_shape)}")
    g.D, g.H, g.W = xs[2], xs[3], xs[4]
    g.KD, g.KH, g.KW = ws[2], ws[3], ws[4]
    g.OD, g.OH, g.OW = ys[2], ys[3], ys[4]
    g.sd, g.sh, g.sw = st[0], st[1], st[2]
    g.pd, g.ph, g.pw = pb[0], pb[1], pb[2]
    g.dd, g.dh, g.dw = dl[0], dl[1], dl[2]
    dims[0], dims[1], dims[2] = N, C, Cout
    return 0


def conv_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                   Py_ssize_t groups=1, nthreads=1, isa=None):
    """float32 elements of workspace conv3d needs."""
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    _geom(x_shape, w_shape, y_shape, stride, pad_begin, dilation, groups, False, &g, dims)
    return ek_conv_workspace_at(_isa_arg(isa), dims[1], dims[2], groups, &g,
                                _threads(nthreads))


def conv_packed_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                          Py_ssize_t groups=1, nthreads=1, isa=None):
    """float32 elements of workspace conv3d_packed needs (isa: the packed weights' level)."""
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    _geom(x_shape, w_shape, y_shape, stride, pad_begin, dilation, groups, False, &g, dims)
    return ek_conv_packed_workspace_at(_isa_arg(isa), dims[1], dims[2], groups, &g,
                                       _threads(nthreads))


def conv_pack(w, Py_ssize_t groups=1, isa=None):
    """Pack conv weights w (Cout, C/groups, KD, KH, KW) once for conv3d_packed."""
    cdef int lv = _isa_arg(isa)
    cdef const float* pw = _fptr(w, "w", -1, 5)
    ws = tuple(int(v) for v in _shape(w))
    if groups < 1 or ws[0] % groups != 0:
        raise ValueError(f"groups={groups} must be >= 1 and divide Cout={ws[0]}")
    if min(ws) < 1:
        raise ValueError(f"w dims must be >= 1, got {ws}")
    cdef Py_ssize_t Cout = ws[0]
    cdef Py_ssize_t K = ws[1] * ws[2] * ws[3] * ws[4]
    cdef Packed p = _new_packed("conv", ws, groups, lv, ek_conv_pack_size_at(lv, Cout, K, groups))
    with nogil:
        ek_conv_pack_at(lv, pw, Cout, K, groups, p.ptr)
    return p


def conv_transpose_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                             Py_ssize_t groups=1, nthreads=1, isa=None):
    """float32 elements of workspace conv_transpose3d needs."""
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    _geom(x_shape, w_shape, y_shape, stride, pad_begin, dilation, groups, True, &g, dims)
    return ek_conv_transpose_workspace_at(_isa_arg(isa), dims[1], dims[2], groups, &g,
                                          _threads(nthreads))


cdef int _prep(object x, object w, object bias, object y, object stride, object pad_begin,
               object dilation, Py_ssize_t groups, bint transposed, ek_geom3* g,
               Py_ssize_t* dims, const float** px, const float** pw, const float** pbias,
               float** py) except -1:
    """Check the arrays (dtype, contiguity, rank, sizes, overlap) and the geometry."""
    px[0] = _fptr(x, "x", -1, 5)
    pw[0] = _fptr(w, "w", -1, 5)
    py[0] = _fptr(y, "y", -1, 5, True)
    if groups == 0:   # depthwise: groups == C
        groups = _shape(x)[1]
    _geom(_shape(x), _shape(w), _shape(y), stride, pad_begin, dilation, groups, transposed,
          g, dims)
    pbias[0] = _fptr_opt(bias, "bias", dims[2])
    cdef Py_ssize_t ny = _size(y)
    _disjoint(py[0], ny, px[0], _size(x), "y", "x")
    _disjoint(py[0], ny, pw[0], _size(w), "y", "w")
    if pbias[0] != NULL:
        _disjoint(py[0], ny, pbias[0], _size(bias), "y", "bias")
    return 0


cdef int _check_work(float* pwork, object work, object x, object w, object y) except -1:
    if pwork != NULL:
        _disjoint(pwork, _size(work), <float*>cnp.PyArray_DATA(y), _size(y), "work", "y")
        _disjoint(pwork, _size(work), <float*>cnp.PyArray_DATA(x), _size(x), "work", "x")
        _disjoint(pwork, _size(work), <float*>cnp.PyArray_DATA(w), _size(w), "work", "w")
    return 0


def conv3d(x, w, bias, y, stride, pad_begin, dilation, Py_ssize_t groups=1, act=0,
           float p0=0.0, float p1=0.0, work=None, nthreads=1, isa=None, bint bind=False):
    """y = act(conv(x, w) + bias) (PyTorch conv semantics).

    x: (N, C, D, H, W); w: (Cout, C/groups, KD, KH, KW); bias: (Cout,) or None;
    y: (N, Cout, OD, OH, OW), written.  stride, dilation: 3 ints >= 1; pad_begin: 3 ints
    >= 0 (the end padding is implied by the output size).  work: 1-D float32 with at least
    conv_workspace(...) elements.
    """
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    cdef const float* px
    cdef const float* pw
    cdef const float* pbias
    cdef float* py
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    _prep(x, w, bias, y, stride, pad_begin, dilation, groups, False, &g, dims, &px, &pw,
          &pbias, &py)
    cdef int lv = _isa_arg(isa)
    cdef float* pwork = _work(work, ek_conv_workspace_at(lv, dims[1], dims[2], groups, &g, nt))
    _check_work(pwork, work, x, w, y)
    cdef ek_conv3d_step_args step
    if bind:
        step.isa, step.x, step.w, step.bias, step.y, step.g = lv, px, pw, pbias, py, g
        step.N, step.C, step.Cout, step.groups = dims[0], dims[1], dims[2], groups
        step.act, step.p0, step.p1, step.work, step.nt = ac, p0, p1, pwork, nt
        return ek_conv3d_step_bind(&step)
    with nogil:
        ek_conv3d_at(lv, px, pw, pbias, py, dims[0], dims[1], dims[2], groups, &g, ac, p0, p1,
                     pwork, nt)


def conv3d_packed(x, Packed wp, bias, y, stride, pad_begin, dilation, act=0, float p0=0.0,
                  float p1=0.0, residual=None, work=None, nthreads=1, bint bind=False):
    """conv3d with weights packed by conv_pack (their groups and instruction-set level).

    residual: None or an array of y's shape added before the activation (must not
    overlap y).  work: conv_packed_workspace(..., isa=wp.isa) elements.
    """
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    cdef const float* px
    cdef const float* pbias
    cdef float* py
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    _packed_arg(wp, "wp", "conv")
    cdef Py_ssize_t groups = wp.groups
    px = _fptr(x, "x", -1, 5)
    py = _fptr(y, "y", -1, 5, True)
    _geom(_shape(x), wp.shape, _shape(y), stride, pad_begin, dilation, groups, False, &g,
          dims)
    pbias = _fptr_opt(bias, "bias", dims[2])
    cdef Py_ssize_t ny = _size(y)
    _disjoint(py, ny, px, _size(x), "y", "x")
    _disjoint(py, ny, wp.ptr, _size(wp.data), "y", "wp")
    if pbias != NULL:
        _disjoint(py, ny, pbias, _size(bias), "y", "bias")
    cdef const float* pr = NULL
    if residual is not None:
        pr = _fptr(residual, "residual", ny)      # y's element count, any shape
        _disjoint(py, ny, pr, ny, "y", "residual")
    cdef int lv = wp.isa
    cdef float* pwork = _work(work, ek_conv_packed_workspace_at(lv, dims[1], dims[2], groups,
                                                                &g, nt))
    if pwork != NULL:
        _disjoint(pwork, _size(work), py, ny, "work", "y")
        _disjoint(pwork, _size(work), px, _size(x), "work", "x")
        if pr != NULL:
            _disjoint(pwork, _size(work), pr, ny, "work", "residual")
    cdef ek_conv3d_packed_step_args step
    if bind:
        step.isa, step.x, step.wpk, step.bias, step.R, step.y = lv, px, wp.ptr, pbias, pr, py
        step.N, step.C, step.Cout, step.groups, step.g = dims[0], dims[1], dims[2], groups, g
        step.act, step.p0, step.p1, step.work, step.nt = ac, p0, p1, pwork, nt
        return ek_conv3d_packed_step_bind(&step)
    with nogil:
        ek_conv3d_packed_at(lv, px, wp.ptr, pbias, pr, py, dims[0], dims[1], dims[2], groups,
                            &g, ac, p0, p1, pwork, nt)


def conv_depthwise_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                             nthreads=1, isa=None):
    """float32 elements of workspace conv3d_depthwise needs (padded planes; 0 for 3-D)."""
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    groups = int(tuple(x_shape)[1]) if len(tuple(x_shape)) == 5 else 1
    _geom(x_shape, w_shape, y_shape, stride, pad_begin, dilation, groups, False, &g, dims)
    return ek_conv_depthwise_workspace_at(_isa_arg(isa), dims[0], dims[2], &g,
                                          _threads(nthreads))


def conv3d_depthwise(x, w, bias, y, stride, pad_begin, dilation, act=0, float p0=0.0,
                     float p1=0.0, nthreads=1, isa=None, work=None, bint bind=False):
    """Depthwise conv3d (groups == C, Cout = multiplier * C), direct kernel.

    x: (N, C, D, H, W); w: (Cout, 1, KD, KH, KW); bias: (Cout,) or None; y: (N, Cout, ...).
    work: None (slower bounds-checked path) or conv_depthwise_workspace(...) elements.
    """
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    cdef const float* px
    cdef const float* pw
    cdef const float* pbias
    cdef float* py
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    _prep(x, w, bias, y, stride, pad_begin, dilation, 0, False, &g, dims, &px, &pw, &pbias,
          &py)
    cdef int lv = _isa_arg(isa)
    cdef float* pwork = NULL
    if work is not None:
        pwork = _work(work, ek_conv_depthwise_workspace_at(lv, dims[0], dims[2], &g, nt))
        _check_work(pwork, work, x, w, y)
    cdef ek_conv3d_depthwise_step_args step
    if bind:
        step.isa, step.x, step.w, step.bias, step.y, step.g = lv, px, pw, pbias, py, g
        step.N, step.C, step.Cout = dims[0], dims[1], dims[2]
        step.act, step.p0, step.p1, step.work, step.nt = ac, p0, p1, pwork, nt
        return ek_conv3d_depthwise_step_bind(&step)
    with nogil:
        ek_conv3d_depthwise_at(lv, px, pw, pbias, py, dims[0], dims[1], dims[2], &g, ac, p0,
                               p1, pwork, nt)


def conv_transpose3d(x, w, bias, y, stride, pad_begin, dilation, Py_ssize_t groups=1, act=0,
                     float p0=0.0, float p1=0.0, work=None, nthreads=1, isa=None,
                     bint bind=False):
    """y = act(conv_transpose(x, w) + bias) (PyTorch semantics).

    x: (N, C, D, H, W); w: (C, Cout/groups, KD, KH, KW); bias: (Cout,) or None;
    y: (N, Cout, OD, OH, OW), written (output_padding is expressed by its size).
    pad_begin: the conv_transpose padding p (outputs start at -p).
    work: conv_transpose_workspace(...) elements.
    """
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    cdef const float* px
    cdef const float* pw
    cdef const float* pbias
    cdef float* py
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    _prep(x, w, bias, y, stride, pad_begin, dilation, groups, True, &g, dims, &px, &pw,
          &pbias, &py)
    cdef int lv = _isa_arg(isa)
    cdef float* pwork = _work(work, ek_conv_transpose_workspace_at(lv, dims[1], dims[2], groups,
                                                                   &g, nt))
    _check_work(pwork, work, x, w, y)
    cdef ek_conv_transpose3d_step_args step
    if bind:
        step.isa, step.x, step.w, step.bias, step.y, step.g = lv, px, pw, pbias, py, g
        step.N, step.C, step.Cout, step.groups = dims[0], dims[1], dims[2], groups
        step.act, step.p0, step.p1, step.work, step.nt = ac, p0, p1, pwork, nt
        return ek_conv_transpose3d_step_bind(&step)
    with nogil:
        ek_conv_transpose3d_at(lv, px, pw, pbias, py, dims[0], dims[1], dims[2], groups, &g,
                               ac, p0, p1, pwork, nt)
