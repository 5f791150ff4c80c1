# Convolution kernels: N-d conv (im2col + GEMM, pointwise fast
# path), direct depthwise conv, transposed conv (GEMM + col2im), with fused bias + activation.
#
# Tensors are 5-D (N, C, D, H, W) float32 C-contiguous; 1-D/2-D problems pass unit leading
# spatial dims (a reshape of a contiguous array is a view).  Output spatial sizes are the
# caller's (they imply the end padding); every size is checked here before the C call.

cdef extern from *:
    """
    #define ek_conv_workspace_at(isa, ...) EK_ISA_SEL(isa, ek_conv_workspace)(__VA_ARGS__)
    #define ek_conv_packed_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_conv_packed_workspace)(__VA_ARGS__)
    #define ek_conv_pack_size_at(isa, ...) EK_ISA_SEL(isa, ek_conv_pack_size)(__VA_ARGS__)
    #define ek_conv_pack_at(isa, ...) EK_ISA_SEL(isa, ek_conv_pack)(__VA_ARGS__)
    #define ek_conv_transpose_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_conv_transpose_workspace)(__VA_ARGS__)
    #define ek_conv_depthwise_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_conv_depthwise_workspace)(__VA_ARGS__)
    """

cdef extern from "engine/ek_dispatch.h" nogil:
    Py_ssize_t ek_conv_workspace_at(int isa, Py_ssize_t C, Py_ssize_t Cout,
                                    Py_ssize_t groups, const ek_geom3* g, int nthreads)
    Py_ssize_t ek_conv_packed_workspace_at(int isa, Py_ssize_t C, Py_ssize_t Cout,
                                           Py_ssize_t groups, const ek_geom3* g, int nthreads)
    Py_ssize_t ek_conv_pack_size_at(int isa, Py_ssize_t Cout, Py_ssize_t K, Py_ssize_t groups)
    void ek_conv_pack_at(int isa, const float* w, Py_ssize_t Cout, Py_ssize_t K,
                         Py_ssize_t groups, float* buf)
    Py_ssize_t ek_conv_depthwise_workspace_at(int isa, Py_ssize_t N, Py_ssize_t Cout,
                                              const ek_geom3* g, int nthreads)
    Py_ssize_t ek_conv_transpose_workspace_at(int isa, Py_ssize_t C, Py_ssize_t Cout,
                                              Py_ssize_t groups, const ek_geom3* g,
                                              int nthreads)


cdef int _shape_nd(object shape, str name, int n, str axes, Py_ssize_t limit,
                   Py_ssize_t* out) except -1:
    """shape as n ints >= 1 (and <= limit when limit > 0) into out; axes names them."""
    _ints(shape, name, n, 1, out, axes)
    cdef int i
    for i in range(n):
        if limit > 0 and out[i] > limit:
            raise ValueError(f"{name} dims must be <= {limit}, got {tuple(shape)}")
    return 0


cdef int _shape5(object shape, str name, Py_ssize_t* out) except -1:
    return _shape_nd(shape, name, 5, "N, C, D, H, W", 0, out)


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
    cdef ek_geom3 back
    if not transposed:
        _geom_ok(g, NULL, "conv")
    else:
        # input position i reaches outputs i * s - p + k * d: the col2im view (the input grid
        # as "output", the output plane as "input") is the geometry the kernel indexes with
        back = g[0]
        back.D, back.H, back.W = g.OD, g.OH, g.OW
        back.OD, back.OH, back.OW = g.D, g.H, g.W
        _geom_ok(&back, NULL, "conv_transpose")
    return 0


def conv_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                   Py_ssize_t groups=1, nthreads=1, isa=None):
    """float32 elements of workspace conv3d needs."""
    return _conv_workspace(False, x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                           groups, nthreads, isa)


def conv_packed_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                          Py_ssize_t groups=1, nthreads=1, isa=None):
    """float32 elements of workspace conv3d_packed needs (isa: the packed weights' level)."""
    return _conv_workspace(True, x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                           groups, nthreads, isa)


cdef Py_ssize_t _conv_workspace(bint packed, object x_shape, object w_shape, object y_shape,
                                object stride, object pad_begin, object dilation,
                                Py_ssize_t groups, object nthreads, object isa) except -1:
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    _geom(x_shape, w_shape, y_shape, stride, pad_begin, dilation, groups, False, &g, dims)
    cdef int lv = _isa_arg(isa), nt = _threads(nthreads)
    return _sized(ek_conv_packed_workspace_at(lv, dims[1], dims[2], groups, &g, nt) if packed
                  else ek_conv_workspace_at(lv, dims[1], dims[2], groups, &g, nt),
                  "the conv workspace")


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
    return _sized(ek_conv_transpose_workspace_at(_isa_arg(isa), dims[1], dims[2], groups, &g,
                                                 _threads(nthreads)),
                  "the conv_transpose workspace")


cdef int _prep(object x, object w, object bias, object y, object stride, object pad_begin,
               object dilation, Py_ssize_t groups, bint transposed, ek_conv_call* a) except -1:
    """Check the arrays (dtype, contiguity, rank, sizes, overlap) and the geometry; fill a's
    operands, sizes and geometry (groups 0: depthwise, groups = C)."""
    cdef Py_ssize_t dims[3]
    a.x = _fptr(x, "x", -1, 5)
    a.w = _fptr(w, "w", -1, 5)
    a.y = _fptr(y, "y", -1, 5, True)
    if groups == 0:   # depthwise: groups == C
        groups = _shape(x)[1]
    _geom(_shape(x), _shape(w), _shape(y), stride, pad_begin, dilation, groups, transposed,
          &a.g, dims)
    a.N, a.C, a.Cout, a.groups = dims[0], dims[1], dims[2], groups
    a.bias = _fptr_opt(bias, "bias", a.Cout)
    a.R = NULL
    cdef Py_ssize_t ny = _size(y)
    _disjoint(a.y, ny, a.x, _size(x), "y", "x")
    _disjoint(a.y, ny, a.w, _size(w), "y", "w")
    if a.bias != NULL:
        _disjoint(a.y, ny, a.bias, _size(bias), "y", "bias")
    return 0


cdef int _check_work(float* pwork, object work, object x, object w, object y) except -1:
    if pwork != NULL:
        _disjoint(pwork, _size(work), <float*>cnp.PyArray_DATA(y), _size(y), "work", "y")
        _disjoint(pwork, _size(work), <float*>cnp.PyArray_DATA(x), _size(x), "work", "x")
        _disjoint(pwork, _size(work), <float*>cnp.PyArray_DATA(w), _size(w), "work", "w")
    return 0


cdef object _conv_gemm(bint transposed, object x, object w, object bias, object y,
                       object stride, object pad_begin, object dilation, Py_ssize_t groups,
                       object act, float p0, float p1, object work, object nthreads,
                       object isa, bint bind):
    """conv3d / conv_transpose3d: im2col (col2im) + GEMM, checked, then run or bound."""
    cdef ek_conv_call a
    a.nt, a.act, a.p0, a.p1 = _threads(nthreads), _act(act), p0, p1
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    _prep(x, w, bias, y, stride, pad_begin, dilation, groups, transposed, &a)
    cdef int lv = _isa_arg(isa)
    if transposed:
        a.work = _work(work, ek_conv_transpose_workspace_at(lv, a.C, a.Cout, groups, &a.g,
                                                            a.nt))
    else:
        a.work = _work(work, ek_conv_workspace_at(lv, a.C, a.Cout, groups, &a.g, a.nt))
    _check_work(a.work, work, x, w, y)
    cdef ek_entry_fn entry = ek_conv_transpose3d_at[lv] if transposed else ek_conv3d_at[lv]
    return _call(entry, &a, sizeof(a), bind)


def conv3d(x, w, bias, y, stride, pad_begin, dilation, Py_ssize_t groups=1, act=0,
           float p0=0.0, float p1=0.0, work=None, nthreads=1, isa=None, bint bind=False):
    """y = act(conv(x, w) + bias) (PyTorch conv semantics).

    x: (N, C, D, H, W); w: (Cout, C/groups, KD, KH, KW); bias: (Cout,) or None;
    y: (N, Cout, OD, OH, OW), written.  stride, dilation: 3 ints >= 1; pad_begin: 3 ints
    >= 0 (the end padding is implied by the output size).  work: 1-D float32 with at least
    conv_workspace(...) elements.
    """
    return _conv_gemm(False, x, w, bias, y, stride, pad_begin, dilation, groups, act, p0, p1,
                      work, nthreads, isa, bind)


def conv3d_packed(x, Packed wp, bias, y, stride, pad_begin, dilation, act=0, float p0=0.0,
                  float p1=0.0, residual=None, work=None, nthreads=1, bint bind=False,
                  isa=None):
    """conv3d with weights packed by conv_pack (their groups and instruction-set level).

    residual: None or an array of y's shape added before the activation (must not
    overlap y).  work: conv_packed_workspace(..., isa=wp.isa) elements.
    """
    cdef ek_conv_call a
    cdef Py_ssize_t dims[3]
    a.nt, a.act, a.p0, a.p1 = _threads(nthreads), _act(act), p0, p1
    _packed_arg(wp, "wp", "conv")
    a.x = _fptr(x, "x", -1, 5)
    a.y = _fptr(y, "y", -1, 5, True)
    a.w = wp.ptr
    _geom(_shape(x), wp.shape, _shape(y), stride, pad_begin, dilation, wp.groups, False, &a.g,
          dims)
    a.N, a.C, a.Cout, a.groups = dims[0], dims[1], dims[2], wp.groups
    a.bias = _fptr_opt(bias, "bias", a.Cout)
    cdef Py_ssize_t ny = _size(y)
    _disjoint(a.y, ny, a.x, _size(x), "y", "x")
    _disjoint(a.y, ny, wp.ptr, _size(wp.data), "y", "wp")
    if a.bias != NULL:
        _disjoint(a.y, ny, a.bias, _size(bias), "y", "bias")
    a.R = NULL
    if residual is not None:
        a.R = _fptr(residual, "residual", ny)      # y's element count, any shape
        _disjoint(a.y, ny, a.R, ny, "y", "residual")
    cdef int lv = _packed_level(wp, isa)
    a.work = _work(work, ek_conv_packed_workspace_at(lv, a.C, a.Cout, a.groups, &a.g, a.nt))
    if a.work != NULL:
        _disjoint(a.work, _size(work), a.y, ny, "work", "y")
        _disjoint(a.work, _size(work), a.x, _size(x), "work", "x")
        if a.R != NULL:
            _disjoint(a.work, _size(work), a.R, ny, "work", "residual")
    return _call(ek_conv3d_packed_at[lv], &a, sizeof(a), bind)


def conv_depthwise_workspace(x_shape, w_shape, y_shape, stride, pad_begin, dilation,
                             nthreads=1, isa=None):
    """float32 elements of workspace conv3d_depthwise needs (padded planes; 0 for 3-D)."""
    cdef ek_geom3 g
    cdef Py_ssize_t dims[3]
    groups = int(tuple(x_shape)[1]) if len(tuple(x_shape)) == 5 else 1
    _geom(x_shape, w_shape, y_shape, stride, pad_begin, dilation, groups, False, &g, dims)
    return _sized(ek_conv_depthwise_workspace_at(_isa_arg(isa), dims[0], dims[2], &g,
                                                 _threads(nthreads)), "the depthwise workspace")


def conv3d_depthwise(x, w, bias, y, stride, pad_begin, dilation, act=0, float p0=0.0,
                     float p1=0.0, nthreads=1, isa=None, work=None, bint bind=False):
    """Depthwise conv3d (groups == C, Cout = multiplier * C), direct kernel.

    x: (N, C, D, H, W); w: (Cout, 1, KD, KH, KW); bias: (Cout,) or None; y: (N, Cout, ...).
    work: None (slower bounds-checked path) or conv_depthwise_workspace(...) elements.
    """
    cdef ek_conv_call a
    a.nt, a.act, a.p0, a.p1 = _threads(nthreads), _act(act), p0, p1
    _prep(x, w, bias, y, stride, pad_begin, dilation, 0, False, &a)
    cdef int lv = _isa_arg(isa)
    a.work = NULL
    if work is not None:
        a.work = _work(work, ek_conv_depthwise_workspace_at(lv, a.N, a.Cout, &a.g, a.nt))
        _check_work(a.work, work, x, w, y)
    return _call(ek_conv3d_depthwise_at[lv], &a, sizeof(a), bind)


def conv_transpose3d(x, w, bias, y, stride, pad_begin, dilation, Py_ssize_t groups=1, act=0,
                     float p0=0.0, float p1=0.0, work=None, nthreads=1, isa=None,
                     bint bind=False):
    """y = act(conv_transpose(x, w) + bias) (PyTorch semantics).

    x: (N, C, D, H, W); w: (C, Cout/groups, KD, KH, KW); bias: (Cout,) or None;
    y: (N, Cout, OD, OH, OW), written (output_padding is expressed by its size).
    pad_begin: the conv_transpose padding p (outputs start at -p).
    work: conv_transpose_workspace(...) elements.
    """
    return _conv_gemm(True, x, w, bias, y, stride, pad_begin, dilation, groups, act, p0, p1,
                      work, nthreads, isa, bind)


# -- Winograd F(m x m, 3 x 3), m = 2, 4, 6 (include/engine/ek_winograd.h) --------------------
# 2-D 3x3 convs with stride 1, dilation 1, groups 1.  The weights are transformed and packed
# once (winograd_pack, bound to one instruction-set level and one tile size); the call takes
# 4-D (N, C, H, W) arrays.

cdef extern from *:
    """
    #define ek_winograd_pack_size_at(isa, ...) EK_ISA_SEL(isa, ek_winograd_pack_size)(__VA_ARGS__)
    #define ek_winograd_pack_at(isa, ...) EK_ISA_SEL(isa, ek_winograd_pack)(__VA_ARGS__)
    #define ek_winograd_workspace_at(isa, ...) \
        EK_ISA_SEL(isa, ek_winograd_workspace)(__VA_ARGS__)
    #define ek_winograd_blocking_at(isa, ...) EK_ISA_SEL(isa, ek_winograd_blocking)(__VA_ARGS__)
    """

cdef extern from "engine/ek_dispatch.h" nogil:
    Py_ssize_t ek_wg_tune[3]
    Py_ssize_t ek_winograd_pack_size_at(int isa, Py_ssize_t Cout, Py_ssize_t Cin, int m)
    void ek_winograd_pack_at(int isa, const float* w, Py_ssize_t Cout, Py_ssize_t Cin, int m,
                             float* buf)
    Py_ssize_t ek_winograd_workspace_at(int isa, Py_ssize_t N, Py_ssize_t Cin, Py_ssize_t Cout,
                                        Py_ssize_t OH, Py_ssize_t OW, int m, int nthreads)
    void ek_winograd_blocking_at(int isa, Py_ssize_t N, Py_ssize_t Cin, Py_ssize_t Cout,
                                 Py_ssize_t OH, Py_ssize_t OW, int m, int nthreads,
                                 Py_ssize_t* out)

WINOGRAD_TILES = (2, 4, 6)


cdef int _wino_tile(object tile) except -1:
    try:
        m = int(tile)
    except (TypeError, ValueError):
        raise ValueError(f"tile must be one of {WINOGRAD_TILES}, got {tile!r}") from None
    if m not in WINOGRAD_TILES:
        raise ValueError(f"tile must be one of {WINOGRAD_TILES}, got {m}")
    return <int>m


cdef int _shape4(object shape, str name, Py_ssize_t* out) except -1:
    return _shape_nd(shape, name, 4, "N, C, H, W", _INT_LIMIT, out)


cdef int _wino_geom(object x_shape, object w_shape, object y_shape, Py_ssize_t* xs,
                    Py_ssize_t* ys) except -1:
    """Check x (N, C, H, W), w (Cout, C, 3, 3), y (N, Cout, OH, OW); fill xs, ys."""
    cdef Py_ssize_t ws[4]
    _shape4(x_shape, "x", xs)
    _shape4(w_shape, "w", ws)
    _shape4(y_shape, "y", ys)
    if ws[2] != 3 or ws[3] != 3:
        raise ValueError(f"w must be a 3x3 kernel (Cout, C, 3, 3), got {tuple(w_shape)}")
    if ws[1] != xs[1]:
        raise ValueError(f"w must have {xs[1]} input channels (x's), got {tuple(w_shape)}")
    if ys[0] != xs[0]:
        raise ValueError(f"y batch must be {xs[0]} (x's), got {ys[0]}")
    if ys[1] != ws[0]:
        raise ValueError(f"y must have {ws[0]} channels (w's Cout), got {ys[1]}")
    return 0


def _winograd_tune(tiles=0, channels=0, split=0):
    """Blocking overrides of the Winograd kernels, for experiments (0: automatic):
    tiles per block, output channels per block, split (1 force, -1 forbid the output-channel
    split).  Returns the previous values.  Workspace sizes depend on them: query
    winograd_workspace after changing them."""
    prev = (ek_wg_tune[0], ek_wg_tune[1], ek_wg_tune[2])
    ek_wg_tune[0], ek_wg_tune[1], ek_wg_tune[2] = max(0, int(tiles)), max(0, int(channels)), \
        int(split)
    return prev


def winograd_pack(w, tile=4, isa=None):
    """Transform (G g G^T, in double) and pack 3x3 conv weights w (Cout, C, 3, 3) once for
    conv2d_winograd with tile x tile output tiles (2, 4 or 6) at level isa."""
    cdef int lv = _isa_arg(isa)
    cdef int m = _wino_tile(tile)
    cdef const float* pw = _fptr(w, "w", -1, 4)
    ws = tuple(int(v) for v in _shape(w))
    if min(ws) < 1 or ws[2] != 3 or ws[3] != 3:
        raise ValueError(f"w must have shape (Cout, C, 3, 3) with Cout, C >= 1, got {ws}")
    if ws[0] > _INT_LIMIT or ws[1] > _INT_LIMIT:
        raise ValueError(f"w dims must be <= {_INT_LIMIT}, got {ws}")
    cdef Py_ssize_t Cout = ws[0], Cin = ws[1]
    cdef Packed p = _new_packed(f"winograd{m}", ws, 1, lv,
                                ek_winograd_pack_size_at(lv, Cout, Cin, m))
    with nogil:
        ek_winograd_pack_at(lv, pw, Cout, Cin, m, p.ptr)
    return p


def winograd_workspace(x_shape, w_shape, y_shape, tile=4, nthreads=1, isa=None):
    """float32 elements of workspace conv2d_winograd needs (isa: the packed weights' level)."""
    cdef Py_ssize_t xs[4]
    cdef Py_ssize_t ys[4]
    _wino_geom(x_shape, w_shape, y_shape, xs, ys)
    return _sized(ek_winograd_workspace_at(_isa_arg(isa), xs[0], xs[1], ys[1], ys[2], ys[3],
                                           _wino_tile(tile), _threads(nthreads)),
                  "the Winograd workspace")


def winograd_blocking(x_shape, w_shape, y_shape, tile=4, nthreads=1, isa=None):
    """The blocking conv2d_winograd uses for these shapes: a dict of tiles, tiles_per_block,
    blocks, channels_per_block, channel_blocks, tasks, threads."""
    cdef Py_ssize_t xs[4]
    cdef Py_ssize_t ys[4]
    cdef Py_ssize_t out[7]
    _wino_geom(x_shape, w_shape, y_shape, xs, ys)
    _sized(ek_winograd_workspace_at(_isa_arg(isa), xs[0], xs[1], ys[1], ys[2], ys[3],
                                    _wino_tile(tile), _threads(nthreads)),
           "the Winograd workspace")      # (the plan's sizes must not wrap)
    ek_winograd_blocking_at(_isa_arg(isa), xs[0], xs[1], ys[1], ys[2], ys[3], _wino_tile(tile),
                            _threads(nthreads), out)
    return dict(tiles=out[0], tiles_per_block=out[1], blocks=out[2], channels_per_block=out[3],
                channel_blocks=out[4], tasks=out[5], threads=out[6])


def conv2d_winograd(x, wpk, bias, y, pad_begin, act=0, float p0=0.0, float p1=0.0,
                    residual=None, work=None, nthreads=1, bint bind=False, isa=None):
    """y = act(conv2d(x, w) + bias + residual), 3x3, stride 1, dilation 1, groups 1, by
    Winograd F(m x m, 3 x 3) with the weights packed by winograd_pack (their tile size m and
    instruction-set level).

    x: (N, C, H, W); bias: (Cout,) or None; y: (N, Cout, OH, OW), written; pad_begin: 2 ints
    >= 0 (top, left; the end padding is implied by the output size); residual: None or an
    array of y's element count, added before the activation (must not overlap y).
    work: winograd_workspace(x.shape, wp.shape, y.shape, m, nthreads, isa=wp.isa) elements.
    """
    cdef Py_ssize_t xs[4]
    cdef Py_ssize_t ys[4]
    cdef Py_ssize_t pb[2]
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    if not isinstance(wpk, Packed) or (<Packed>wpk).kind not in ("winograd2", "winograd4",
                                                                 "winograd6"):
        raise ValueError(f"wp must be a Packed operand of winograd_pack, got "
                         f"{wpk!r}")
    cdef Packed wp = <Packed>wpk
    cdef int m = int(wp.kind[8:])
    cdef const float* px = _fptr(x, "x", -1, 4)
    cdef float* py = _fptr(y, "y", -1, 4, True)
    _wino_geom(_shape(x), wp.shape, _shape(y), xs, ys)
    _ints(pad_begin, "pad_begin", 2, 0, pb)
    cdef ek_geom3 g      # the 3x3 stride-1 window geometry, checked as every conv's
    g.D, g.H, g.W, g.KD, g.KH, g.KW = 1, xs[2], xs[3], 1, 3, 3
    g.OD, g.OH, g.OW, g.sd, g.sh, g.sw = 1, ys[2], ys[3], 1, 1, 1
    g.pd, g.ph, g.pw, g.dd, g.dh, g.dw = 0, pb[0], pb[1], 1, 1, 1
    _geom_ok(&g, NULL, "conv2d_winograd")
    cdef const float* pbias = _fptr_opt(bias, "bias", ys[1])
    cdef Py_ssize_t ny = _size(y)
    _disjoint(py, ny, px, _size(x), "y", "x")
    _disjoint(py, ny, wp.ptr, _size(wp.data), "y", "wp")
    if pbias != NULL:
        _disjoint(py, ny, pbias, _size(bias), "y", "bias")
    cdef const float* pr = NULL
    if residual is not None:
        pr = _fptr(residual, "residual", ny)      # y's element count, any shape
        _disjoint(py, ny, pr, ny, "y", "residual")
    cdef int lv = _packed_level(wp, isa)
    cdef float* pwork = _work(work, ek_winograd_workspace_at(lv, xs[0], xs[1], ys[1], ys[2],
                                                             ys[3], m, nt))
    _disjoint(pwork, _size(work) if pwork != NULL else 0, py, ny, "work", "y")
    _disjoint(pwork, _size(work) if pwork != NULL else 0, px, _size(x), "work", "x")
    _disjoint(pwork, _size(work) if pwork != NULL else 0, wp.ptr, _size(wp.data), "work",
              "wp")
    if pr != NULL:
        _disjoint(pwork, _size(work) if pwork != NULL else 0, pr, ny, "work", "residual")
    cdef ek_winograd_call a
    a.x, a.U, a.bias, a.R, a.y = px, wp.ptr, pbias, pr, py
    a.N, a.C, a.Cout, a.H, a.W = xs[0], xs[1], ys[1], xs[2], xs[3]
    a.OH, a.OW, a.ph, a.pw, a.m = ys[2], ys[3], pb[0], pb[1], m
    a.act, a.p0, a.p1, a.work, a.nt = ac, p0, p1, pwork, nt
    return _call(ek_conv2d_winograd_at[lv], &a, sizeof(a), bind)
