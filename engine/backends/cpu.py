"""The CPU backend: kernel factories binding IR nodes to the compiled C kernels.

Every factory runs once per node at prepare time.  It reads the concrete shapes and the
constant inputs from the ``PrepareContext``, does all the work that does not depend on the
input values (weights reshaped / transposed, batch-norm scale and shift folded, index
tables for interpolation, broadcasting strides collapsed, the workspace size computed into
``kernel.scratch``) and returns a kernel whose ``run`` only reshapes the preallocated
arrays (views, no copies) and calls one Cython function (engine._kernels.*), which checks
the arguments, releases the GIL and runs the C kernel with ``ctx.threads`` threads.

Pure data-movement ops (dropout, identity, flatten, reshape, permute, concat, split,
channel_shuffle) copy with NumPy and are registered ``native=False``; so is ``mean`` over
non-trailing dims (trailing-dims means run through the adaptive-average-pool kernel).
"""

import numpy as np

from .._kernels import conv as _conv
from .._kernels import eltwise as _elt
from .._kernels import gemm as _gemm
from .._kernels import norm as _norm
from .._kernels import pool as _pool
from .._kernels import spatial as _sp
from ..errors import UnsupportedError
from .base import FunctionKernel, Kernel, NativeKernel, as_f32, register_kernel
from .common import ACT_CODES, GELU_TANH, broadcast_plan, contiguous_strides  # noqa: F401
from .common import act_params as _act_params
from .common import lead3 as _lead, prod as _prod, shape5 as _shape5

B = "cpu"
MOVE_NOTE = "data movement only; numpy's C copy loops"

# -- activations ----------------------------------------------------------------------------

# Rows (batch) up to which a linear layer with constant weights runs as a GEMV on the
# row-major weight (no packing; memory-bound) instead of the packed GEMM.
GEMV_MAX_ROWS = 3


def act_params(activation):
    """(code, p0, p1) of a fused activation dict (None: no activation)."""
    return _act_params(activation, "cpu")


# -- helpers --------------------------------------------------------------------------------

def _getter(ctx, i):
    """A function inputs -> array of input i: the prepared constant, or the runtime value."""
    c = ctx.constants[i] if i < len(ctx.constants) else None
    if c is not None:
        c = as_f32(c)
        return lambda inputs: c
    return lambda inputs: inputs[i]


def _optional_const(ctx, i):
    """(present, constant or None) of optional input i."""
    if i >= len(ctx.in_shapes) or ctx.in_shapes[i] is None:
        return False, None
    c = ctx.constants[i]
    return True, (None if c is None else as_f32(c))


def _view(a, shape):
    """A reshaped *view* of a C-contiguous array (the kernels write through it)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"kernel arrays must be C-contiguous, got strides {a.strides}")
    return a.reshape(shape)


def _c(a):
    """A runtime input as a C-contiguous float32 array (no copy in the normal case)."""
    if a.dtype == np.float32 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.float32)


# -- convolution ----------------------------------------------------------------------------

def _conv_setup(node, ctx):
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    y_shape = ctx.out_shapes[0]
    r = len(x_shape) - 2
    if not 1 <= r <= 3:
        raise UnsupportedError(f"node '{node.name}': cpu conv supports 1 to 3 spatial dims, "
                               f"got input shape {x_shape}")
    a = node.attrs
    s = dict(
        x5=_shape5(x_shape), w5=_shape5(w_shape), y5=_shape5(y_shape),
        stride=_lead(a["stride"], r, 1), dilation=_lead(a["dilation"], r, 1),
        groups=int(a["groups"]), act=act_params(a.get("activation")))
    return s


def _has_residual(ctx):
    """A residual input (conv input 3, set by the residual-fusion pass) is present."""
    return len(ctx.in_shapes) > 3 and ctx.in_shapes[3] is not None


def _residual_getter(ctx):
    """inputs -> the residual array of y's element count, or None."""
    if not _has_residual(ctx):
        return lambda inputs: None
    return _getter(ctx, 3)


def _packed_conv(node, ctx):
    """Kernels that take a residual need the weights packed (constant); others must not
    see one."""
    return ctx.constants[1] is not None or not _has_residual(ctx)


def _is_depthwise(node, ctx):
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    if not 1 <= len(x_shape) - 2 <= 3 or len(w_shape) != len(x_shape) or _has_residual(ctx):
        return False
    g, c, cout = int(node.attrs["groups"]), x_shape[1], w_shape[0]
    return g > 1 and g == c and w_shape[1] == 1 and cout % c == 0


def _conv_weights(ctx, w5):
    wget = _getter(ctx, 1)
    has_b, bconst = _optional_const(ctx, 2)
    if ctx.constants[1] is not None:
        w = np.ascontiguousarray(wget(None)).reshape(w5)
        wfn = lambda inputs: w  # noqa: E731
    else:
        wfn = lambda inputs: _c(inputs[1]).reshape(w5)  # noqa: E731
    if not has_b:
        bfn = lambda inputs: None  # noqa: E731
    elif bconst is not None:
        bfn = lambda inputs: bconst  # noqa: E731
    else:
        bfn = lambda inputs: _c(inputs[2])  # noqa: E731
    return wfn, bfn


def _isa(ctx):
    """The instruction-set level of this plan's kernels (the session's ``isa``; packed
    weights are laid out for it, and every kernel call of the plan runs its variant)."""
    lv = ctx.options.get("isa")
    return _gemm._isa_level() if lv is None else lv


def _is_pointwise(node, ctx):
    """1x1 kernel, stride 1, no padding: the conv is a GEMM on the input itself."""
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    r = len(x_shape) - 2
    if not 1 <= r <= 3 or len(w_shape) != len(x_shape):
        return False
    a = node.attrs
    return (all(int(k) == 1 for k in w_shape[2:]) and all(int(v) == 1 for v in a["stride"])
            and all(int(p) == 0 for pair in a["padding"] for p in pair)
            and tuple(ctx.out_shapes[0][2:]) == tuple(x_shape[2:]))


def _conv_gemm_factory(variant):
    def factory(node, ctx):
        s = _conv_setup(node, ctx)
        r = len(ctx.in_shapes[0]) - 2
        pad_begin = _lead([p[0] for p in node.attrs["padding"]], r, 0)
        x5, w5, y5 = s["x5"], s["w5"], s["y5"]
        stride, dilation, groups = s["stride"], s["dilation"], s["groups"]
        code, p0, p1 = s["act"]
        threads = ctx.threads
        isa = _isa(ctx)
        xget = _getter(ctx, 0)
        rget = _residual_getter(ctx)
        wfn, bfn = _conv_weights(ctx, w5)
        if ctx.constants[1] is not None:
            # weights packed once, for this level's micro-kernel
            wp = _conv.conv_pack(wfn(None), groups, isa=isa)
            scratch = _conv.conv_packed_workspace(x5, w5, y5, stride, pad_begin, dilation,
                                                  groups, threads, isa=isa)

            def run(inputs, outputs, work, bind=False):
                return _conv.conv3d_packed(
                    _c(xget(inputs)).reshape(x5), wp, bfn(inputs), _view(outputs[0], y5),
                    stride, pad_begin, dilation, code, p0, p1, rget(inputs), work, threads,
                    isa=isa, bind=bind)
            return NativeKernel(run, scratch, variant)
        scratch = _conv.conv_workspace(x5, w5, y5, stride, pad_begin, dilation, groups,
                                       threads, isa=isa)

        def run_w(inputs, outputs, work, bind=False):
            return _conv.conv3d(_c(xget(inputs)).reshape(x5), wfn(inputs), bfn(inputs),
                                _view(outputs[0], y5), stride, pad_begin, dilation, groups,
                                code, p0, p1, work, threads, isa=isa, bind=bind)
        return NativeKernel(run_w, scratch, variant)
    return factory


def _is_whole_window(node, ctx):
    """One output position whose window is exactly the (unpadded) input, constant weights,
    no groups: a matrix-vector product per image (squeeze-excite FCs, conv classifiers)."""
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    r = len(x_shape) - 2
    if not 1 <= r <= 3 or len(w_shape) != len(x_shape) or ctx.constants[1] is None:
        return False
    a = node.attrs
    return (int(a["groups"]) == 1 and tuple(x_shape[2:]) == tuple(w_shape[2:])
            and all(int(d) == 1 for d in ctx.out_shapes[0][2:])
            and all(int(p) == 0 for pair in a["padding"] for p in pair))


@register_kernel(B, "conv", "linear_gemm", supports=_is_whole_window, priority=7,
                 note="1x1 output covering the whole input: y = x W^T with W packed once as "
                      "the B operand (the vector side runs along Cout, not along one "
                      "output position)")
def conv_linear_gemm(node, ctx):
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    n, cout = int(x_shape[0]), int(w_shape[0])
    k = _prod(w_shape[1:])
    code, p0, p1 = act_params(node.attrs.get("activation"))
    threads = ctx.threads
    isa = _isa(ctx)
    xget = _getter(ctx, 0)
    rget = _residual_getter(ctx)
    _, bfn = _conv_weights(ctx, _shape5(w_shape))
    w2 = np.ascontiguousarray(as_f32(ctx.constants[1]).reshape(cout, k))

    def res(inputs):
        r = rget(inputs)
        return None if r is None else r.reshape(n, cout)
    if n <= GEMV_MAX_ROWS:          # GEMV on the row-major weight, as linear layers
        scratch = _gemm.gemm_workspace(n, cout, k, True, threads, isa=isa)

        def run_v(inputs, outputs, work, bind=False):
            return _gemm.sgemm(_c(xget(inputs)).reshape(n, k), w2, _view(outputs[0], (n, cout)),
                               bfn(inputs), 2, False, True, False, code, p0, p1, work, threads,
                               residual=res(inputs), isa=isa, bind=bind)
        return NativeKernel(run_v, scratch, "linear_gemm")
    wp = _gemm.pack_b(w2, trans_b=True, isa=isa)
    scratch = _gemm.gemm_workspace(n, cout, k, False, threads, b_packed=True, isa=isa)

    def run(inputs, outputs, work, bind=False):
        return _gemm.sgemm(_c(xget(inputs)).reshape(n, k), wp, _view(outputs[0], (n, cout)),
                           bfn(inputs), 2, False, False, False, code, p0, p1, work, threads,
                           residual=res(inputs), isa=isa, bind=bind)
    return NativeKernel(run, scratch, "linear_gemm")


register_kernel(B, "conv", "im2col_gemm", supports=_packed_conv,
                note="packed SGEMM on weights packed at prepare time; im2col writes each "
                     "GEMM task's column block straight into packed panels (no whole-image "
                     "copy); bias/activation fused in the store")(
    _conv_gemm_factory("im2col_gemm"))
register_kernel(B, "conv", "pointwise_gemm", supports=_is_pointwise, priority=5,
                note="1x1 stride-1 conv: packed SGEMM on the input itself (no im2col)")(
    _conv_gemm_factory("pointwise_gemm"))


@register_kernel(B, "conv", "depthwise_direct", supports=_is_depthwise, priority=10,
                 note="direct depthwise kernel (groups == C, channel multiplier allowed)")
def conv_depthwise(node, ctx):
    s = _conv_setup(node, ctx)
    r = len(ctx.in_shapes[0]) - 2
    pad_begin = _lead([p[0] for p in node.attrs["padding"]], r, 0)
    x5, w5, y5 = s["x5"], s["w5"], s["y5"]
    stride, dilation = s["stride"], s["dilation"]
    code, p0, p1 = s["act"]
    threads = ctx.threads
    isa = _isa(ctx)
    xget = _getter(ctx, 0)
    wfn, bfn = _conv_weights(ctx, w5)

    scratch = _conv.conv_depthwise_workspace(x5, w5, y5, stride, pad_begin, dilation, threads,
                                             isa=isa)

    def run(inputs, outputs, work, bind=False):
        return _conv.conv3d_depthwise(
            _c(xget(inputs)).reshape(x5), wfn(inputs), bfn(inputs), _view(outputs[0], y5),
            stride, pad_begin, dilation, code, p0, p1, threads, isa=isa,
            work=work if scratch else None, bind=bind)
    return NativeKernel(run, scratch, "depthwise_direct")


@register_kernel(B, "conv_transpose", "gemm_col2im",
                 note="W^T x by SGEMM into the workspace + col2im scatter, bias, activation")
def conv_transpose_gemm_col2im(node, ctx):
    s = _conv_setup(node, ctx)
    r = len(ctx.in_shapes[0]) - 2
    pad_begin = _lead(node.attrs["padding"], r, 0)
    x5, w5, y5 = s["x5"], s["w5"], s["y5"]
    stride, dilation, groups = s["stride"], s["dilation"], s["groups"]
    code, p0, p1 = s["act"]
    threads = ctx.threads
    isa = _isa(ctx)
    xget = _getter(ctx, 0)
    wfn, bfn = _conv_weights(ctx, w5)
    scratch = _conv.conv_transpose_workspace(x5, w5, y5, stride, pad_begin, dilation, groups,
                                             threads, isa=isa)

    def run(inputs, outputs, work, bind=False):
        return _conv.conv_transpose3d(_c(xget(inputs)).reshape(x5), wfn(inputs), bfn(inputs),
                                      _view(outputs[0], y5), stride, pad_begin, dilation, groups,
                                      code, p0, p1, work, threads, isa=isa, bind=bind)
    return NativeKernel(run, scratch, "gemm_col2im")


# -- pooling --------------------------------------------------------------------------------

def _pool_factory(mode):
    def factory(node, ctx):
        x_shape, y_shape = ctx.in_shapes[0], ctx.out_shapes[0]
        r = len(x_shape) - 2
        a = node.attrs
        x5, y5 = _shape5(x_shape), _shape5(y_shape)
        kernel = _lead(a["kernel_size"], r, 1)
        stride = _lead(a["stride"], r, 1)
        pad = _lead(a["padding"], r, 0)
        dilation = _lead(a.get("dilation", [1] * r), r, 1)
        cip = bool(a.get("count_include_pad", True))
        threads = ctx.threads
        isa = _isa(ctx)
        xget = _getter(ctx, 0)

        def run(inputs, outputs, work, bind=False):
            return _pool.pool3d(_c(xget(inputs)).reshape(x5), _view(outputs[0], y5), kernel,
                                stride, pad, pad, dilation, mode, cip, threads, isa=isa, bind=bind)
        return NativeKernel(run, 0, "direct")
    return factory


register_kernel(B, "max_pool", "direct", note="direct windowed max, NaN-propagating")(
    _pool_factory(_pool.MAX))
register_kernel(B, "min_pool", "direct", note="direct windowed min, NaN-propagating")(
    _pool_factory(_pool.MIN))
register_kernel(B, "avg_pool", "direct",
                note="direct windowed mean (float32 separable sums for 2x2 / 3x3 windows on "
                     "x86, double accumulation otherwise)")(
    _pool_factory(_pool.AVG))


def _adaptive_factory(mode):
    def factory(node, ctx):
        x5, y5 = _shape5(ctx.in_shapes[0]), _shape5(ctx.out_shapes[0])
        threads = ctx.threads
        isa = _isa(ctx)
        xget = _getter(ctx, 0)

        def run(inputs, outputs, work, bind=False):
            return _pool.adaptive_pool3d(_c(xget(inputs)).reshape(x5), _view(outputs[0], y5), mode,
                                         threads, isa=isa, bind=bind)
        return NativeKernel(run, 0, "direct")
    return factory


register_kernel(B, "adaptive_avg_pool", "direct", note="torch adaptive windows")(
    _adaptive_factory(_pool.AVG))
register_kernel(B, "adaptive_max_pool", "direct", note="torch adaptive windows")(
    _adaptive_factory(_pool.MAX))


# -- linear / matmul ------------------------------------------------------------------------

@register_kernel(B, "linear", "gemm",
                 note="packed SGEMM, constant weight packed once at prepare time as the B "
                      "operand (no transpose at run time), fused bias/activation; batch <= 3: "
                      "GEMV streaming the row-major weight")
def linear_gemm(node, ctx):
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    out_f, in_f = int(w_shape[0]), int(w_shape[1])
    M = _prod(x_shape[:-1])
    code, p0, p1 = act_params(node.attrs.get("activation"))
    threads = ctx.threads
    isa = _isa(ctx)
    xget = _getter(ctx, 0)
    has_b, bconst = _optional_const(ctx, 2)
    if not has_b:
        bfn = lambda inputs: None  # noqa: E731
    elif bconst is not None:
        bfn = lambda inputs: bconst  # noqa: E731
    else:
        bfn = lambda inputs: _c(inputs[2])  # noqa: E731
    if ctx.constants[1] is not None and M > GEMV_MAX_ROWS:
        wp = _gemm.pack_b(np.ascontiguousarray(as_f32(ctx.constants[1])), trans_b=True,
                          isa=isa)                              # op(B) = W^T: (in, out)
        scratch = _gemm.gemm_workspace(M, out_f, in_f, False, threads, b_packed=True, isa=isa)

        def run(inputs, outputs, work, bind=False):
            return _gemm.sgemm(_c(xget(inputs)).reshape(M, in_f), wp,
                               _view(outputs[0], (M, out_f)), bfn(inputs), 2, False, False,
                               False, code, p0, p1, work, threads, isa=isa, bind=bind)
        return NativeKernel(run, scratch, "gemm")
    if ctx.constants[1] is not None:
        # a few rows (batch 1 FC): the GEMV path streams W as it is, four rows at a time
        wc = np.ascontiguousarray(as_f32(ctx.constants[1]))
        scratch = _gemm.gemm_workspace(M, out_f, in_f, True, threads, isa=isa)

        def run_v(inputs, outputs, work, bind=False):
            return _gemm.sgemm(_c(xget(inputs)).reshape(M, in_f), wc,
                               _view(outputs[0], (M, out_f)), bfn(inputs), 2, False, True, False,
                               code, p0, p1, work, threads, isa=isa, bind=bind)
        return NativeKernel(run_v, scratch, "gemm")
    scratch = _gemm.gemm_workspace(M, out_f, in_f, True, threads, isa=isa)

    def run_w(inputs, outputs, work, bind=False):
        return _gemm.sgemm(_c(xget(inputs)).reshape(M, in_f), _c(inputs[1]),
                           _view(outputs[0], (M, out_f)), bfn(inputs), 2, False, True, False,
                           code, p0, p1, work, threads, isa=isa, bind=bind)
    return NativeKernel(run_w, scratch, "gemm")


@register_kernel(B, "matmul", "gemm_batched",
                 note="one blocked SGEMM per (broadcast) batch matrix")
def matmul_gemm(node, ctx):
    a_shape, b_shape = tuple(ctx.in_shapes[0]), tuple(ctx.in_shapes[1])
    a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
    M, K, N = int(a2[-2]), int(a2[-1]), int(b2[-1])
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    nb = _prod(batch)
    ba, bb = _prod(a2[:-2]), _prod(b2[:-2])
    ia = np.ascontiguousarray(np.broadcast_to(
        np.arange(ba, dtype=np.intp).reshape(a2[:-2]), batch).ravel())
    ib = np.ascontiguousarray(np.broadcast_to(
        np.arange(bb, dtype=np.intp).reshape(b2[:-2]), batch).ravel())
    a3, b3, c3 = (ba, M, K), (bb, K, N), (nb, M, N)
    threads = ctx.threads
    isa = _isa(ctx)
    aget, bget = _getter(ctx, 0), _getter(ctx, 1)
    scratch = _gemm.gemm_workspace(M, N, K, False, threads, isa=isa)

    def run(inputs, outputs, work, bind=False):
        return _gemm.matmul_batched(_c(aget(inputs)).reshape(a3), _c(bget(inputs)).reshape(b3),
                                    _view(outputs[0], c3), ia, ib, work, threads, isa=isa,
                                    bind=bind)
    return NativeKernel(run, scratch, "gemm_batched")


# -- elementwise ----------------------------------------------------------------------------

def _binary_supported(node, ctx):
    shape, _, _ = broadcast_plan(ctx.in_shapes[0], ctx.in_shapes[1], ctx.out_shapes[0])
    return len(shape) <= 6


def _binary_factory(opcode):
    def factory(node, ctx):
        shape, sa, sb = broadcast_plan(ctx.in_shapes[0], ctx.in_shapes[1], ctx.out_shapes[0])
        aget, bget = _getter(ctx, 0), _getter(ctx, 1)
        threads = ctx.threads
        isa = _isa(ctx)

        def run(inputs, outputs, work, bind=False):
            return _elt.binary(opcode, _c(aget(inputs)), _c(bget(inputs)), outputs[0], shape,
                               sa, sb, threads, isa=isa, bind=bind)
        return NativeKernel(run, 0, "broadcast")
    return factory


def _binary_numpy_factory(ufunc):
    def factory(node, ctx):
        aget, bget = _getter(ctx, 0), _getter(ctx, 1)

        def run(inputs, outputs, work):
            with np.errstate(all="ignore"):
                ufunc(aget(inputs), bget(inputs), out=outputs[0])
        return FunctionKernel(run, 0, "numpy_broadcast")
    return factory


for _name, _code, _uf in (("add", _elt.ADD, np.add), ("sub", _elt.SUB, np.subtract),
                          ("mul", _elt.MUL, np.multiply), ("div", _elt.DIV, np.divide),
                          ("maximum", _elt.BIN_MAX, np.maximum),
                          ("minimum", _elt.BIN_MIN, np.minimum)):
    register_kernel(B, _name, "broadcast", supports=_binary_supported, priority=10,
                    note="strided broadcast loop (dims collapsed at prepare time, <= 6)")(
        _binary_factory(_code))
    register_kernel(B, _name, "numpy_broadcast", native=False,
                    note="numpy ufunc fallback for broadcasts that collapse to > 6 dims")(
        _binary_numpy_factory(_uf))


def _unary_factory(node, ctx):
    code, p0, p1 = act_params({"op": node.op, **node.attrs})
    xget = _getter(ctx, 0)
    threads = ctx.threads
    isa = _isa(ctx)

    def run(inputs, outputs, work, bind=False):
        return _elt.unary(_c(xget(inputs)), outputs[0], code, p0, p1, threads, isa=isa, bind=bind)
    return NativeKernel(run, 0, "eltwise")


for _name in ACT_CODES:
    register_kernel(B, _name, "eltwise", note="vectorisable activation loop")(_unary_factory)


@register_kernel(B, "prelu", "eltwise", note="per-channel slope on dim 1")
def prelu_kernel(node, ctx):
    xget = _getter(ctx, 0)
    if ctx.constants[1] is not None:
        w = np.ascontiguousarray(as_f32(ctx.constants[1]).ravel())
        wfn = lambda inputs: w  # noqa: E731
    else:
        wfn = lambda inputs: _c(inputs[1]).ravel()  # noqa: E731
    threads = ctx.threads
    isa = _isa(ctx)

    def run(inputs, outputs, work, bind=False):
        return _elt.prelu(_c(xget(inputs)), wfn(inputs), outputs[0], threads, isa=isa, bind=bind)
    return NativeKernel(run, 0, "eltwise")


def _softmax_factory(use_log):
    def factory(node, ctx):
        shape = tuple(ctx.in_shapes[0]) or (1,)
        d = int(node.attrs["dim"]) % len(shape)
        outer, axis, inner = _prod(shape[:d]), int(shape[d]), _prod(shape[d + 1:])
        xget = _getter(ctx, 0)
        threads = ctx.threads
        isa = _isa(ctx)

        def run(inputs, outputs, work, bind=False):
            return _elt.softmax(_c(xget(inputs)), outputs[0], outer, axis, inner, use_log,
                                threads, isa=isa, bind=bind)
        return NativeKernel(run, 0, "stable")
    return factory


register_kernel(B, "softmax", "stable", note="max-subtracted, double sums")(
    _softmax_factory(False))
register_kernel(B, "log_softmax", "stable", note="max-subtracted, double sums")(
    _softmax_factory(True))


# -- normalisation --------------------------------------------------------------------------

@register_kernel(B, "batch_norm", "channel_affine",
                 note="scale/shift folded at prepare time, one fused multiply-add pass")
def batch_norm_kernel(node, ctx):
    eps = float(node.attrs["eps"])
    code, p0, p1 = act_params(node.attrs.get("activation"))
    xget = _getter(ctx, 0)
    threads = ctx.threads
    isa = _isa(ctx)
    n_in = len(ctx.in_shapes)
    present = [i < n_in and ctx.in_shapes[i] is not None for i in range(5)]

    def fold(vals):
        mean, var, w, b = (None if v is None else np.asarray(v, dtype=np.float64)
                           for v in vals)
        scale = 1.0 / np.sqrt(var + eps)
        if w is not None:
            scale = scale * w
        shift = -mean * scale
        if b is not None:
            shift = shift + b
        return as_f32(scale), as_f32(shift)

    const = all(not present[i] or ctx.constants[i] is not None for i in range(1, 5))
    if const:
        scale, shift = fold([ctx.constants[i] if present[i] else None for i in range(1, 5)])

        def params(inputs, bind):
            return scale, shift
    else:
        def params(inputs, bind):
            if bind:        # scale / shift are new arrays every call: cannot be prebound
                return None
            return fold([inputs[i] if present[i] else None for i in range(1, 5)])

    def run(inputs, outputs, work, bind=False):
        st = params(inputs, bind)
        if st is None:
            return None
        return _elt.channel_affine(_c(xget(inputs)), st[0], st[1], outputs[0], code, p0, p1,
                                   threads, isa=isa, bind=bind)
    return NativeKernel(run, 0, "channel_affine")


def _affine_params(ctx, first, size):
    """Getters of the optional weight (input `first`) and bias (`first + 1`), flattened."""
    fns = []
    for i in (first, first + 1):
        present, const = _optional_const(ctx, i)
        if not present:
            fns.append(lambda inputs: None)
        elif const is not None:
            c = np.ascontiguousarray(const.reshape(size))
            fns.append(lambda inputs, c=c: c)
        else:
            fns.append(lambda inputs, i=i: _c(inputs[i]).reshape(size))
    return fns


def _group_norm_factory(groups_of):
    def factory(node, ctx):
        x_shape = ctx.in_shapes[0]
        C = int(x_shape[1])
        groups = groups_of(node, C)
        eps = float(node.attrs["eps"])
        xget = _getter(ctx, 0)
        gfn, bfn = _affine_params(ctx, 1, C)
        threads = ctx.threads
        isa = _isa(ctx)

        def run(inputs, outputs, work, bind=False):
            return _norm.group_norm(_c(xget(inputs)), gfn(inputs), bfn(inputs), outputs[0], groups,
                                    eps, threads, isa=isa, bind=bind)
        return NativeKernel(run, 0, "two_pass")
    return factory


register_kernel(B, "group_norm", "two_pass", note="double two-pass statistics")(
    _group_norm_factory(lambda node, C: int(node.attrs["num_groups"])))
register_kernel(B, "instance_norm", "two_pass", note="group norm with one channel per group")(
    _group_norm_factory(lambda node, C: C))


@register_kernel(B, "layer_norm", "two_pass", note="double two-pass statistics")
def layer_norm_kernel(node, ctx):
    L = _prod(node.attrs["normalized_shape"])
    eps = float(node.attrs["eps"])
    xget = _getter(ctx, 0)
    gfn, bfn = _affine_params(ctx, 1, L)
    threads = ctx.threads
    isa = _isa(ctx)

    def run(inputs, outputs, work, bind=False):
        return _norm.layer_norm(_c(xget(inputs)), gfn(inputs), bfn(inputs), outputs[0], L, eps,
                                threads, isa=isa, bind=bind)
    return NativeKernel(run, 0, "two_pass")


@register_kernel(B, "local_response_norm", "direct", note="across-channel window sums")
def lrn_kernel(node, ctx):
    a = node.attrs
    size, alpha, beta, k = int(a["size"]), float(a["alpha"]), float(a["beta"]), float(a["k"])
    xget = _getter(ctx, 0)
    threads = ctx.threads
    isa = _isa(ctx)

    def run(inputs, outputs, work, bind=False):
        return _norm.lrn(_c(xget(inputs)), outputs[0], size, alpha, beta, k, threads, isa=isa,
                         bind=bind)
    return NativeKernel(run, 0, "direct")


# -- spatial: pad, interpolate --------------------------------------------------------------

_PAD_MODES = {"constant": _sp.CONSTANT, "reflect": _sp.REFLECT, "replicate": _sp.REPLICATE}


@register_kernel(B, "pad", "direct", note="row-wise copy with mode-specific borders")
def pad_kernel(node, ctx):
    a = node.attrs
    x_shape = tuple(ctx.in_shapes[0])
    rank = len(x_shape)
    pad = [int(v) for v in a["pad"]]
    begin = [0] * rank
    for i in range(len(pad) // 2):                   # torch order: last dim first
        begin[rank - 1 - i] = pad[2 * i]
    mode = _PAD_MODES[a["mode"]]
    value = float(a.get("value") or 0.0)
    xget = _getter(ctx, 0)
    threads = ctx.threads
    isa = _isa(ctx)
    if rank > 6:
        raise UnsupportedError(f"node '{node.name}': cpu pad supports up to 6 dims, got "
                               f"{rank}")
    if rank == 0:
        def run(inputs, outputs, work):
            np.copyto(outputs[0], xget(inputs))
        return FunctionKernel(run, 0, "direct")

    def run(inputs, outputs, work, bind=False):
        return _sp.pad(_c(xget(inputs)), outputs[0], begin, mode, value, threads, isa=isa,
                       bind=bind)
    return NativeKernel(run, 0, "direct")


@register_kernel(B, "interpolate", "table_gather",
                 note="per-dim source index / weight tables built at prepare time")
def interpolate_kernel(node, ctx):
    from ..ops.resize import linear_indices, nearest_indices
    a = node.attrs
    x_shape, y_shape = tuple(ctx.in_shapes[0]), tuple(ctx.out_shapes[0])
    r = len(x_shape) - 2
    sf = a.get("scale_factor")
    xget = _getter(ctx, 0)
    threads = ctx.threads
    isa = _isa(ctx)
    if a["mode"] == "nearest":
        tabs = []
        for i in range(r):
            f = None if sf is None else sf[i]
            tabs.append(np.ascontiguousarray(
                nearest_indices(int(x_shape[2 + i]), int(y_shape[2 + i]), f, shortcuts=(r == 2)),
                dtype=np.intp))
        tabs = [np.zeros(1, dtype=np.intp)] * (3 - r) + tabs
        x5, y5 = _shape5(x_shape), _shape5(y_shape)

        def run(inputs, outputs, work, bind=False):
            return _sp.resize_nearest3d(_c(xget(inputs)).reshape(x5), _view(outputs[0], y5),
                                        tabs[0], tabs[1], tabs[2], threads, isa=isa, bind=bind)
        return NativeKernel(run, 0, "table_gather")
    if a["mode"] != "bilinear" or r != 2:
        raise UnsupportedError(f"node '{node.name}': cpu interpolate supports nearest (1-3 "
                               f"spatial dims) and bilinear (2), got {a['mode']} with {r}")
    ac = bool(a.get("align_corners"))
    tabs = []
    for i in range(2):
        f = None if sf is None else sf[i]
        i0, i1, l0, l1 = linear_indices(int(x_shape[2 + i]), int(y_shape[2 + i]), f, ac)
        tabs.append((np.ascontiguousarray(i0, dtype=np.intp),
                     np.ascontiguousarray(i1, dtype=np.intp), as_f32(l0), as_f32(l1)))
    (h0, h1, lh0, lh1), (w0, w1, lw0, lw1) = tabs

    def run_bilinear(inputs, outputs, work, bind=False):
        return _sp.resize_bilinear2d(_c(xget(inputs)), outputs[0], h0, h1, lh0, lh1, w0, w1,
                                     lw0, lw1, threads, isa=isa, bind=bind)
    return NativeKernel(run_bilinear, 0, "table_gather")


# -- reductions -----------------------------------------------------------------------------

def _mean_axes(node, rank):
    dim = node.attrs["dim"]
    dims = [dim] if isinstance(dim, int) else list(dim)
    n = max(rank, 1)
    axes = sorted({int(d) % n for d in dims}) if dims else list(range(rank))
    return axes


def _mean_trailing(node, ctx):
    rank = len(ctx.in_shapes[0])
    axes = _mean_axes(node, rank)
    return rank >= 1 and bool(axes) and axes == list(range(rank - len(axes), rank))


@register_kernel(B, "mean", "trailing_pool", supports=_mean_trailing, priority=10,
                 note="mean over trailing dims via the adaptive average-pool kernel")
def mean_trailing(node, ctx):
    x_shape = tuple(ctx.in_shapes[0])
    axes = _mean_axes(node, len(x_shape))
    outer = _prod(x_shape[:len(x_shape) - len(axes)])
    L = _prod(x_shape[len(x_shape) - len(axes):])
    xget = _getter(ctx, 0)
    threads = ctx.threads
    isa = _isa(ctx)

    def run(inputs, outputs, work, bind=False):
        return _pool.adaptive_pool3d(_c(xget(inputs)).reshape(1, outer, 1, 1, L),
                                     _view(outputs[0], (1, outer, 1, 1, 1)), _pool.AVG, threads,
                                     isa=isa, bind=bind)
    return NativeKernel(run, 0, "trailing_pool")


@register_kernel(B, "mean", "numpy", native=False, note="numpy reduction (float64 accumulation)")
def mean_numpy(node, ctx):
    rank = len(ctx.in_shapes[0])
    axes = tuple(_mean_axes(node, rank))
    keep = bool(node.attrs["keepdim"])
    xget = _getter(ctx, 0)
    out_shape = tuple(ctx.out_shapes[0])

    def run(inputs, outputs, work):
        m = np.mean(xget(inputs), axis=axes, dtype=np.float64, keepdims=keep)
        np.copyto(outputs[0], np.reshape(m, out_shape), casting="same_kind")
    return FunctionKernel(run, 0, "numpy")


# -- data movement (numpy copies) -----------------------------------------------------------

def _copy_factory(node, ctx):
    xget = _getter(ctx, 0)
    out_shape = tuple(ctx.out_shapes[0])

    def run(inputs, outputs, work):
        np.copyto(outputs[0], np.reshape(xget(inputs), out_shape))
    return FunctionKernel(run, 0, "copy")


for _name in ("dropout", "identity", "flatten", "reshape"):
    register_kernel(B, _name, "copy", native=False, note=MOVE_NOTE)(_copy_factory)


def _copies_fit(node, ctx):
    """The strided-copy kernel handles 1 to 6 dims (numpy otherwise)."""
    return all(1 <= len(s) <= 6 for s in list(ctx.in_shapes) + list(ctx.out_shapes)
               if s is not None)


def _copy_kernel(ctx, moves, variant):
    """A kernel running ek_copy_nd once per move (in_index, out_index, shape, src_strides,
    dst_strides, src_offset, dst_offset)."""
    getters = [_getter(ctx, i) for i in range(len(ctx.in_shapes))]
    threads = ctx.threads
    isa = _isa(ctx)

    def run(inputs, outputs, work, bind=False):
        steps = [_sp.copy_strided(getters[i](inputs), outputs[o], shape, ss, ds, so, do,
                                  threads, isa=isa, bind=bind)
                 for i, o, shape, ss, ds, so, do in moves]
        return steps if bind else None
    return NativeKernel(run, 0, variant)


COPY_NOTE = "strided N-d copy kernel (memcpy rows), <= 6 dims"


@register_kernel(B, "permute", "strided_copy", supports=_copies_fit, priority=10,
                 note=COPY_NOTE)
def permute_strided(node, ctx):
    in_shape, out_shape = ctx.in_shapes[0], ctx.out_shapes[0]
    rank = len(in_shape)
    perm = [int(d) % rank for d in node.attrs["dims"]]
    src = contiguous_strides(in_shape)
    dst = contiguous_strides(out_shape)
    return _copy_kernel(ctx, [(0, 0, out_shape, [src[p] for p in perm], dst, 0, 0)],
                        "strided_copy")


def _copied(ctx, n):
    """Per piece of a concat / split: True when it must be copied (the memory plan did not
    place it in the other side's memory; engine.memory.plan_views)."""
    flags = ctx.options.get("views")
    return [True] * n if flags is None else [not f for f in flags]


@register_kernel(B, "concat", "strided_copy", supports=_copies_fit, priority=10,
                 note=COPY_NOTE + "; only the inputs the memory plan could not place inside "
                                  "the output")
def concat_strided(node, ctx):
    out_shape = ctx.out_shapes[0]
    d = int(node.attrs["dim"]) % len(out_shape)
    dst = contiguous_strides(out_shape)
    copy = _copied(ctx, len(ctx.in_shapes))
    moves, lo = [], 0
    for i, shape in enumerate(ctx.in_shapes):
        if int(shape[d]) > 0 and copy[i]:
            moves.append((i, 0, shape, contiguous_strides(shape), dst, 0, lo * dst[d]))
        lo += int(shape[d])
    return _copy_kernel(ctx, moves, "strided_copy")


@register_kernel(B, "split", "strided_copy", supports=_copies_fit, priority=10,
                 note=COPY_NOTE + "; only the pieces the memory plan could not make views")
def split_strided(node, ctx):
    in_shape = ctx.in_shapes[0]
    d = int(node.attrs["dim"]) % len(in_shape)
    src = contiguous_strides(in_shape)
    copy = _copied(ctx, len(ctx.out_shapes))
    moves, lo = [], 0
    for o, shape in enumerate(ctx.out_shapes):
        if int(shape[d]) > 0 and copy[o]:
            moves.append((0, o, shape, src, contiguous_strides(shape), lo * src[d], 0))
        lo += int(shape[d])
    return _copy_kernel(ctx, moves, "strided_copy")


@register_kernel(B, "channel_shuffle", "strided_copy", supports=_copies_fit, priority=10,
                 note=COPY_NOTE)
def channel_shuffle_strided(node, ctx):
    shape = tuple(int(d) for d in ctx.in_shapes[0])
    g = int(node.attrs["groups"])
    n, c, rest = shape[0], shape[1], _prod(shape[2:])
    # out[a, j, i, r] (viewed (n, c/g, g, rest)) = in[a, i, j, r] (viewed (n, g, c/g, rest))
    src = [c * rest, rest, (c // g) * rest, 1]
    view = (n, c // g, g, rest)
    return _copy_kernel(ctx, [(0, 0, view, src, contiguous_strides(view), 0, 0)],
                        "strided_copy")


@register_kernel(B, "permute", "copy", native=False, note=MOVE_NOTE)
def permute_kernel(node, ctx):
    rank = len(ctx.in_shapes[0])
    perm = [int(d) % max(rank, 1) for d in node.attrs["dims"]]
    xget = _getter(ctx, 0)

    def run(inputs, outputs, work):
        np.copyto(outputs[0], np.transpose(xget(inputs), perm))
    return FunctionKernel(run, 0, "copy")


@register_kernel(B, "concat", "copy", native=False, note=MOVE_NOTE)
def concat_kernel(node, ctx):
    rank = len(ctx.out_shapes[0])
    d = int(node.attrs["dim"]) % rank
    getters = [_getter(ctx, i) for i in range(len(ctx.in_shapes))]
    offsets = np.cumsum([0] + [int(s[d]) for s in ctx.in_shapes]).tolist()
    pieces = [(g, lo, hi) for g, lo, hi, c in zip(getters, offsets[:-1], offsets[1:],
                                                  _copied(ctx, len(getters))) if hi > lo and c]
    pre = (slice(None),) * d

    def run(inputs, outputs, work):
        out = outputs[0]
        for g, lo, hi in pieces:
            np.copyto(out[pre + (slice(lo, hi),)], g(inputs))
    return FunctionKernel(run, 0, "copy")


@register_kernel(B, "split", "copy", native=False, note=MOVE_NOTE)
def split_kernel(node, ctx):
    rank = len(ctx.in_shapes[0])
    d = int(node.attrs["dim"]) % rank
    sizes = [int(s[d]) for s in ctx.out_shapes]
    offsets = np.cumsum([0] + sizes).tolist()
    pre = (slice(None),) * d
    xget = _getter(ctx, 0)
    pieces = [(o, lo, hi) for o, (lo, hi, c) in enumerate(zip(offsets[:-1], offsets[1:],
                                                              _copied(ctx, len(sizes)))) if c]

    def run(inputs, outputs, work):
        x = xget(inputs)
        for o, lo, hi in pieces:
            np.copyto(outputs[o], x[pre + (slice(lo, hi),)])
    return FunctionKernel(run, 0, "copy")


@register_kernel(B, "channel_shuffle", "copy", native=False, note=MOVE_NOTE)
def channel_shuffle_kernel(node, ctx):
    shape = tuple(int(d) for d in ctx.in_shapes[0])
    g = int(node.attrs["groups"])
    n, c, rest = shape[0], shape[1], shape[2:]
    src_view = (n, g, c // g) + rest
    dst_view = (n, c // g, g) + rest
    xget = _getter(ctx, 0)

    def run(inputs, outputs, work):
        np.copyto(_view(outputs[0], dst_view),
                  np.reshape(xget(inputs), src_view).swapaxes(1, 2))
    return FunctionKernel(run, 0, "copy")


__all__ = ["act_params", "broadcast_plan", "ACT_CODES", "Kernel"]

from . import cpu_winograd  # noqa: E402,F401  (Winograd 3x3 convs; registers its kernels)
