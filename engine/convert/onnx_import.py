"""ONNX -> engine Model.

    model = engine.from_onnx("model.onnx")          # a path, the file's bytes or a ModelProto

The ``onnx`` package parses and checks the file (``pip install engine[onnx]``); weights in
external-data files load with it.  The graph is walked once in order:

* every node whose inputs are all constants is evaluated with NumPy at import (``FOLD``):
  initializers, ``Constant`` nodes (paddle2onnx keeps weights there), ``ConstantOfShape``,
  and the shape arithmetic exporters emit (``Shape``, ``Gather``, ``Cast``, ``Range``,
  ``Concat``, ``Unsqueeze`` ...), so none of it ever runs.  ``Shape`` of a tensor whose
  batch is symbolic gives the sentinel ``BATCH`` for that dim, which ``Reshape`` reads back
  as "keep the batch";
* every other node is mapped to engine ops by its handler in ``CONVERT`` (one function per
  ONNX op type, with the opset differences handled there).

Nodes nothing handles are collected, and one ``ConversionError`` lists them all (op type,
count, first node names).  Semantics follow the ONNX operator documentation for opsets 7
to 22 (and opset 6's legacy broadcasting, which old exports use).
"""

import os

import numpy as np

from ..builder import Builder, Tensor
from ..errors import ConversionError, GraphError

BATCH = -(2 ** 62)          # a symbolic batch dim inside folded shape arithmetic

CONVERT = {}                # ONNX op type -> handler(cx) -> list of outputs
FOLD = {}                   # ONNX op type -> folder(cx, *arrays) -> list of arrays


class Unsupported(Exception):
    """This node cannot be mapped (the message says why)."""


def _registrar(table):
    """A decorator factory filling ``table``: ``@name("OpA", "OpB")`` maps both ops."""
    def register(*ops):
        def deco(fn):
            for op in ops:
                table[op] = fn
            return fn
        return deco
    return register


convert = _registrar(CONVERT)   # ONNX op -> engine ops
fold = _registrar(FOLD)         # ONNX op -> NumPy, for constant inputs at import


def supported_ops():
    """{"mapped": ONNX op types mapped to engine ops, "folded": those evaluated at import
    only, when their inputs are constants (shape arithmetic)}."""
    mapped = set(CONVERT)
    return {"mapped": sorted(mapped),
            "folded": sorted((set(FOLD) | {"Constant", "Shape", "Size"}) - mapped)}


# -- loading --------------------------------------------------------------------------------

def _need_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConversionError("importing ONNX models needs the onnx package: "
                              "pip install 'engine[onnx]'") from None
    return onnx


def load_proto(src):
    """A checked ModelProto from a path, the bytes of a file or a ModelProto."""
    onnx = _need_onnx()
    if isinstance(src, onnx.ModelProto):
        proto, where = src, "the ModelProto"
    elif isinstance(src, (bytes, bytearray, memoryview)):
        where = "the ONNX bytes"
        try:
            proto = onnx.load_from_string(bytes(src))
        except Exception as e:
            raise ConversionError(f"{where} are not an ONNX model ({type(e).__name__}: "
                                  f"{e})") from None
    elif isinstance(src, (str, os.PathLike)):
        where = os.fspath(src)
        if not os.path.isfile(where):
            raise ConversionError(f"{where!r} is not a file")
        try:
            proto = onnx.load(where)         # external data: next to the file
        except Exception as e:
            raise ConversionError(f"{where!r} is not an ONNX model ({type(e).__name__}: "
                                  f"{e})") from None
    else:
        raise ConversionError(f"from_onnx expects a path, bytes or an onnx.ModelProto, got "
                              f"{type(src).__name__}")
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ConversionError(f"{where} is not a valid ONNX model: "
                              f"{msg[0] if msg else type(e).__name__}") from None
    return proto


def _opset(proto):
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


# -- the context handlers see -------------------------------------------------------------

class _Ctx:
    def __init__(self, b, env, opset):
        self.b, self.env, self.opset = b, env, opset
        self.node = None

    # attributes
    def attr(self, name, default=None):
        from onnx import helper
        for a in self.node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    v = v.decode()
                if hasattr(v, "dims"):              # a TensorProto
                    from onnx import numpy_helper
                    v = numpy_helper.to_array(v)
                return v
        return default

    # inputs
    def n_inputs(self):
        n = len(self.node.input)
        while n and not self.node.input[n - 1]:
            n -= 1
        return n

    def has(self, i):
        return i < len(self.node.input) and bool(self.node.input[i])

    def value(self, i):
        return self.env[self.node.input[i]] if self.has(i) else None

    def const(self, i):
        """Input i as a NumPy array when it is a constant, else None."""
        v = self.value(i)
        return v if isinstance(v, np.ndarray) else None

    def need_const(self, i, what):
        v = self.const(i)
        if v is None and self.has(i):
            raise Unsupported(f"{what} (input {i}) computed at run time")
        return v

    def tensor(self, i):
        """Input i as a graph value (a constant becomes a float32 graph constant)."""
        v = self.value(i)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biuf":
                raise Unsupported(f"input {i} of dtype {v.dtype}")
            return self.b.constant(v.astype(np.float32))
        return v

    def shape(self, i):
        v = self.value(i)
        return tuple(v.shape)

    def ints(self, i):
        a = self.need_const(i, "a shape / axes operand")
        return None if a is None else [int(v) for v in np.asarray(a).ravel()]

    # outputs
    def used(self, i):
        """Whether output i exists and something reads it."""
        out = self.node.output
        return i < len(out) and bool(out[i]) and out[i] in self.read

    @property
    def name(self):
        return _safe_name(self.node.output[0])

    def aux(self, what):
        return self.b._unique(f"{self.name}.{what}")


def _safe_name(s):
    return s if s else "value"


def _f32(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


# -- folding (all inputs constant) ----------------------------------------------------------

@fold("Identity", "Dropout")
def _f_identity(cx, x, *rest):
    return [x]


def _cast_to(cx):
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(cx.attr("to")))


@fold("Cast")
def _f_cast(cx, x):
    return [x.astype(_cast_to(cx))]


@convert("Cast")
def _cast(cx):
    if _cast_to(cx).kind != "f":
        raise Unsupported(f"Cast of a run-time tensor to {_cast_to(cx)}")
    return [cx.b.identity(cx.tensor(0), name=cx.name)]     # engine computes in float32


@fold("Gather")
def _f_gather(cx, x, idx):
    axis = cx.attr("axis", 0)
    return [np.take(x, idx.astype(np.int64), axis=axis)]


@fold("Unsqueeze")
def _f_unsqueeze(cx, x, axes=None):
    axes = cx.attr("axes") if axes is None else [int(a) for a in axes]
    n = x.ndim + len(axes)
    for a in sorted(a % n for a in axes):
        x = np.expand_dims(x, a)
    return [x]


@fold("Squeeze")
def _f_squeeze(cx, x, axes=None):
    axes = cx.attr("axes") if axes is None else [int(a) for a in axes]
    return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes)) if axes else np.squeeze(x)]


@fold("Concat")
def _f_concat(cx, *xs):
    return [np.concatenate(xs, axis=cx.attr("axis"))]


@fold("Range")
def _f_range(cx, start, limit, delta):
    return [np.arange(start, limit, delta).astype(np.asarray(start).dtype)]


@fold("Equal")
def _f_equal(cx, a, b):
    return [np.equal(a, b)]


@fold("Where")
def _f_where(cx, c, a, b):
    return [np.where(c, a, b)]


@fold("Expand")
def _f_expand(cx, x, shape):
    shape = [int(s) for s in shape]
    return [np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))).copy()]


@fold("ConstantOfShape")
def _f_const_of_shape(cx, shape):
    v = cx.attr("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v)
    return [np.full([int(s) for s in shape], v.ravel()[0], dtype=v.dtype)]


@fold("Add", "Sub", "Mul", "Div")
def _f_arith(cx, a, b):
    if (a.dtype.kind in "iu" and (a == BATCH).any()) or (b.dtype.kind in "iu"
                                                         and (b == BATCH).any()):
        raise Unsupported("arithmetic on a symbolic batch size")
    op = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(cx.node.op_type)
    if op is not None:
        return [op(a, b)]
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return [np.floor_divide(a, b) if (a >= 0).all() and (b > 0).all()
                else np.trunc(a / b).astype(a.dtype)]
    return [np.divide(a, b)]


@fold("Reshape")
def _f_reshape(cx, x, shape=None):
    target = cx.attr("shape") if shape is None else [int(s) for s in shape]
    allowzero = cx.attr("allowzero", 0)
    dims = [x.shape[i] if s == 0 and not allowzero else s for i, s in enumerate(target)]
    return [x.reshape(dims)]


@fold("Transpose")
def _f_transpose(cx, x):
    perm = cx.attr("perm")
    return [np.transpose(x, perm)]


@fold("Slice")
def _f_slice(cx, x, *rest):
    starts, ends, axes, steps = _slice_args(cx, rest)
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        sl[a % x.ndim] = slice(s, e, st)
    return [x[tuple(sl)]]


@fold("Neg")
def _f_neg(cx, x):
    return [-x]


@fold("Sqrt")
def _f_sqrt(cx, x):
    return [np.sqrt(x)]


@fold("Floor")
def _f_floor(cx, x):
    return [np.floor(x)]


# -- conversion -----------------------------------------------------------------------------

def _spatial_pads(cx, r, x_shape, kernel, strides, dilations):
    """[[begin, end]] per spatial dim from ``pads`` or ``auto_pad``."""
    auto = cx.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = cx.attr("pads") or [0] * (2 * r)
        return [[int(p[i]), int(p[i + r])] for i in range(r)]
    if auto == "VALID":
        return [[0, 0] for _ in range(r)]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(r):
            n = x_shape[2 + i]
            if n is None:
                raise Unsupported("auto_pad on a symbolic spatial size")
            out = -(-n // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - n)
            small, big = total // 2, total - total // 2
            pads.append([small, big] if auto == "SAME_UPPER" else [big, small])
        return pads
    raise Unsupported(f"auto_pad={auto!r}")


@convert("Conv")
def _conv(cx):
    x = cx.tensor(0)
    w = cx.const(1)
    r = len(cx.shape(0)) - 2
    if not 1 <= r <= 3:
        raise Unsupported(f"a {r}-d convolution")
    wshape = cx.shape(1)
    kernel = cx.attr("kernel_shape") or list(wshape[2:])
    strides = cx.attr("strides") or [1] * r
    dil = cx.attr("dilations") or [1] * r
    pads = _spatial_pads(cx, r, x.shape, kernel, strides, dil)
    attrs = dict(stride=list(strides), padding=pads, dilation=list(dil),
                 groups=int(cx.attr("group", 1)), activation=None)
    weight = _f32(w) if w is not None else cx.tensor(1)
    bias = cx.const(2)
    bias = (_f32(bias) if bias is not None else cx.tensor(2)) if cx.has(2) else None
    return [cx.b._node("conv", [x], attrs, cx.name, weights=[("weight", weight),
                                                              ("bias", bias)])]


@convert("ConvTranspose")
def _conv_t(cx):
    x = cx.tensor(0)
    r = len(cx.shape(0)) - 2
    if not 1 <= r <= 3:
        raise Unsupported(f"a {r}-d transposed convolution")
    w = cx.need_const(1, "the weight")
    kernel = cx.attr("kernel_shape") or list(w.shape[2:])
    strides = cx.attr("strides") or [1] * r
    dil = cx.attr("dilations") or [1] * r
    out_pad = list(cx.attr("output_padding") or [0] * r)
    auto = cx.attr("auto_pad", "NOTSET")
    out_shape = cx.attr("output_shape")
    if out_shape is not None or auto not in ("NOTSET", ""):
        # total padding from the requested output size (ONNX: SAME_UPPER puts the odd one
        # at the end), then the same begin / end split rule
        sizes = list(out_shape)[-r:] if out_shape is not None else \
            [x.shape[2 + i] * strides[i] for i in range(r)]
        pads = []
        for i in range(r):
            full = strides[i] * (x.shape[2 + i] - 1) + out_pad[i] + \
                (kernel[i] - 1) * dil[i] + 1
            total = full - sizes[i]
            if total < 0:
                out_pad[i] += -total
                total = 0
            lower = auto == "SAME_LOWER"
            pads.append([total - total // 2, total // 2] if lower else
                        [total // 2, total - total // 2])
    else:
        p = cx.attr("pads") or [0] * (2 * r)
        pads = [[int(p[i]), int(p[i + r])] for i in range(r)]
    # engine's conv_transpose pads both ends alike: the extra end padding of an asymmetric
    # pair is an output_padding taken back (a smaller output at the end)
    sym, extra = [], []
    for (b0, e0), op in zip(pads, out_pad):
        if e0 > b0:
            raise Unsupported(f"transposed-conv pads {pads} with more at the end than at "
                              f"the beginning")
        sym.append(b0)
        extra.append(op - (b0 - e0))
    if any(e < 0 for e in extra):
        raise Unsupported(f"transposed-conv pads {pads} (begin > end by more than "
                          f"output_padding)")
    bias = cx.const(2) if cx.has(2) else None
    attrs = dict(stride=list(strides), padding=sym, output_padding=extra, dilation=list(dil),
                 groups=int(cx.attr("group", 1)), activation=None)
    return [cx.b._node("conv_transpose", [x], attrs, cx.name,
                       weights=[("weight", _f32(w)),
                                ("bias", None if bias is None else _f32(bias))])]


@convert("Gemm")
def _gemm(cx):
    alpha, beta = float(cx.attr("alpha", 1.0)), float(cx.attr("beta", 1.0))
    ta, tb = int(cx.attr("transA", 0)), int(cx.attr("transB", 0))
    a = cx.tensor(0)
    if len(a.shape) != 2:
        raise Unsupported(f"Gemm on a rank-{len(a.shape)} A")
    if ta:
        a = cx.b.permute(a, [1, 0], name=cx.aux("transA"))
    bm = cx.const(1)
    c = cx.const(2) if cx.has(2) else None
    if bm is not None:
        w = _f32(bm if tb else bm.T) * alpha           # (N, K), as linear wants
        n = w.shape[0]
        bias = None
        if c is not None:
            cb = np.asarray(c, np.float32) * beta
            if cb.size in (1, n) and cb.ndim <= 2 and (cb.ndim < 2 or cb.shape[0] == 1):
                bias = np.broadcast_to(cb.ravel(), (n,)).copy()
            else:
                y = cx.b.linear(a, w, None, name=cx.aux("linear"))
                return [cx.b.add(y, _f32(cb), name=cx.name)]
        elif cx.has(2):
            y = cx.b.linear(a, w, None, name=cx.aux("linear"))
            cc = cx.tensor(2)
            if beta != 1.0:
                cc = cx.b.mul(cc, np.float32(beta), name=cx.aux("beta"))
            return [cx.b.add(y, cc, name=cx.name)]
        return [cx.b.linear(a, w, bias, name=cx.name)]
    bt = cx.tensor(1)
    if tb:
        bt = cx.b.permute(bt, [1, 0], name=cx.aux("transB"))
    y = cx.b.matmul(a, bt, name=cx.aux("matmul") if (alpha != 1 or cx.has(2)) else cx.name)
    if alpha != 1.0:
        y = cx.b.mul(y, np.float32(alpha), name=cx.aux("alpha") if cx.has(2) else cx.name)
    if cx.has(2):
        cc = cx.tensor(2)
        if beta != 1.0:
            cc = cx.b.mul(cc, np.float32(beta), name=cx.aux("beta"))
        y = cx.b.add(y, cc, name=cx.name)
    return [y]


@convert("MatMul")
def _matmul(cx):
    b = cx.const(1)
    a = cx.tensor(0)
    bias = cx.const(2)            # (a bias: _Patterns.matmul_bias)
    if b is not None and b.ndim == 2 and len(a.shape) >= 2:
        # x @ W with W constant: a linear layer (its packed GEMM), any leading dims
        return [cx.b.linear(a, _f32(b.T), None if bias is None else _f32(bias),
                            name=cx.name)]
    return [cx.b.matmul(a, cx.tensor(1), name=cx.name)]


@convert("BatchNormalization")
def _bn(cx):
    if cx.attr("training_mode", 0) or any(cx.used(i) for i in range(1, 5)):
        raise Unsupported("BatchNormalization in training mode")
    scale, bias, mean, var = (cx.need_const(i, n) for i, n in
                              ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    return [cx.b.batch_norm(cx.tensor(0), _f32(mean), _f32(var), _f32(scale), _f32(bias),
                            eps=float(cx.attr("epsilon", 1e-5)), name=cx.name)]


def _pool(cx, op):
    x = cx.tensor(0)
    r = len(x.shape) - 2
    if not 1 <= r <= 3:
        raise Unsupported(f"a {r}-d pooling")
    if cx.used(1):
        raise Unsupported("MaxPool's Indices output")
    if cx.attr("storage_order", 0):
        raise Unsupported("storage_order=1")
    kernel = list(cx.attr("kernel_shape"))
    strides = list(cx.attr("strides") or [1] * r)
    dil = list(cx.attr("dilations") or [1] * r)
    pads = _spatial_pads(cx, r, x.shape, kernel, strides, dil)
    ceil = bool(cx.attr("ceil_mode", 0))
    include = bool(cx.attr("count_include_pad", 0))
    if any(b0 != e0 for b0, e0 in pads) and not (op == "avg_pool" and include) and all(
            _ceil_equivalent(x.shape[2 + i], kernel[i], strides[i], dil[i], b0, e0, ceil)
            for i, (b0, e0) in enumerate(pads)):
        # extra padding at the end only (Caffe-style exports): the ceil-mode window that
        # overhangs the input is the same window, and its divisor counts the same elements
        pads, ceil = [[b0, b0] for b0, _ in pads], True
    rescale = None
    if any(b0 != e0 for b0, e0 in pads):
        # asymmetric: pad explicitly first (max: -inf; average: zeros, counted, and when
        # ONNX does not count them, the sums rescaled by kernel volume / elements counted)
        if op == "avg_pool" and not include:
            if any(d != 1 for d in dil) or any(v is None for v in x.shape[2:]):
                raise Unsupported("AveragePool with asymmetric pads over a symbolic size")
            counts = [_window_counts(x.shape[2 + i], kernel[i], strides[i], b0, e0, ceil)
                      for i, (b0, e0) in enumerate(pads)]
            grid = counts[0]
            for c in counts[1:]:
                grid = np.multiply.outer(grid, c)
            rescale = _f32(np.prod(kernel) / grid)[None, None]
            include = True
        flat = [v for b0, e0 in reversed(pads) for v in (b0, e0)]
        x = cx.b.pad(x, flat, value=-np.inf if op == "max_pool" else 0.0,
                     name=cx.aux("pad"))
        pads = [[0, 0]] * r
    sym = [b0 for b0, _ in pads]
    if op == "max_pool":
        return [cx.b._pool("max_pool", r, x, kernel, strides, sym, dil, ceil, cx.name)]
    if any(d != 1 for d in dil):
        raise Unsupported("AveragePool with dilations")
    if rescale is not None:
        y = cx.b._pool("avg_pool", r, x, kernel, strides, sym, 1, ceil, cx.aux("sum"), True)
        return [cx.b.mul(y, rescale, name=cx.name)]
    return [cx.b._pool("avg_pool", r, x, kernel, strides, sym, 1, ceil, cx.name, include)]


def _window_counts(n, k, s, b, e, ceil):
    """Input elements (not padding) in each window along one dim."""
    out = _pool_out(n, k, s, 1, b, e, ceil)
    starts = np.arange(out) * s - b
    return (np.minimum(starts + k, n) - np.maximum(starts, 0)).astype(np.float64)


def _pool_out(n, k, s, d, b, e, ceil):
    span = n + b + e - d * (k - 1) - 1
    return (-(-span // s) if ceil else span // s) + 1


def _ceil_equivalent(n, k, s, d, b, e, ceil):
    """Pads (b, e), e >= b, give the output size of pads (b, b) in ceil mode (torch's
    rule: the last window starts inside the input or its begin padding)."""
    if n is None or e < b:
        return False
    want = _pool_out(n, k, s, d, b, e, ceil)
    got = _pool_out(n, k, s, d, b, b, True)
    if (got - 1) * s >= n + b:
        got -= 1
    return want == got


@convert("MaxPool")
def _maxpool(cx):
    return _pool(cx, "max_pool")


@convert("AveragePool")
def _avgpool(cx):
    return _pool(cx, "avg_pool")


@convert("GlobalAveragePool")
def _gap(cx):
    return [cx.b.global_avg_pool(cx.tensor(0), name=cx.name)]


@convert("GlobalMaxPool")
def _gmp(cx):
    return [cx.b.global_max_pool(cx.tensor(0), name=cx.name)]


_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Mish": "mish",
          "HardSwish": "hardswish", "Softsign": None}


@convert("Relu", "Sigmoid", "Tanh", "Mish", "HardSwish")
def _unary(cx):
    op = _UNARY[cx.node.op_type]
    return [getattr(cx.b, op)(cx.tensor(0), name=cx.name)]


@convert("LeakyRelu")
def _leaky(cx):
    return [cx.b.leaky_relu(cx.tensor(0), float(cx.attr("alpha", 0.01)), name=cx.name)]


@convert("Elu")
def _elu(cx):
    return [cx.b.elu(cx.tensor(0), float(cx.attr("alpha", 1.0)), name=cx.name)]


@convert("Selu")
def _selu(cx):
    alpha, gamma = float(cx.attr("alpha", 1.67326319217681884765625)), \
        float(cx.attr("gamma", 1.05070102214813232421875))
    if abs(alpha - 1.6732632) > 1e-5 or abs(gamma - 1.0507010) > 1e-5:
        x = cx.tensor(0)
        y = cx.b.elu(x, alpha, name=cx.aux("elu"))
        return [cx.b.mul(y, np.float32(gamma), name=cx.name)]
    return [cx.b.selu(cx.tensor(0), name=cx.name)]


@convert("Softplus")
def _softplus(cx):
    # ONNX: log(1 + exp(x)) everywhere; torch's threshold 20 differs by < 2e-9 there
    return [cx.b.softplus(cx.tensor(0), 1.0, 20.0, name=cx.name)]


@convert("Gelu")
def _gelu(cx):
    approx = cx.attr("approximate", "none")
    return [cx.b.gelu(cx.tensor(0), approximate=approx, name=cx.name)]


@convert("HardSigmoid")
def _hardsigmoid(cx):
    alpha, beta = float(cx.attr("alpha", 0.2)), float(cx.attr("beta", 0.5))
    x = cx.tensor(0)
    if abs(alpha - 1 / 6) < 1e-7 and beta == 0.5:
        return [cx.b.hardsigmoid(x, name=cx.name)]
    y = cx.b.mul(x, np.float32(alpha), name=cx.aux("alpha"))
    y = cx.b.add(y, np.float32(beta), name=cx.aux("beta"))
    return [cx.b.clip(y, 0.0, 1.0, name=cx.name)]


@convert("PRelu")
def _prelu(cx):
    slope = cx.need_const(1, "the slope")
    x = cx.tensor(0)
    c = x.shape[1] if len(x.shape) > 1 else 1
    s = np.asarray(slope, np.float32)
    chan = s.ndim - len(x.shape) + 1            # the slope dim that lines up with C
    if s.size == 1:
        s = s.reshape(1)
    elif s.size == c and (cx.opset < 7 or all(d == 1 for i, d in enumerate(s.shape)
                                               if i != chan)):
        s = s.reshape(c)                         # (opset 6: a (C,) slope is per channel)
    else:
        raise Unsupported(f"PRelu slope of shape {s.shape} (engine: one per channel or one)")
    return [cx.b.prelu(x, s, name=cx.name)]


@convert("Clip")
def _clip(cx):
    if cx.opset < 11:
        lo, hi = cx.attr("min"), cx.attr("max")
    else:
        lo = cx.need_const(1, "min")
        hi = cx.need_const(2, "max")
    lo = None if lo is None else float(np.asarray(lo).ravel()[0])
    hi = None if hi is None else float(np.asarray(hi).ravel()[0])
    x = cx.tensor(0)
    if lo == 0.0 and hi == 6.0:
        return [cx.b.relu6(x, name=cx.name)]
    if lo is None and hi is None:
        return [cx.b.identity(x, name=cx.name)]
    return [cx.b.clip(x, lo, hi, name=cx.name)]


def _softmax(cx, fn):
    x = cx.tensor(0)
    n = len(x.shape)
    axis = cx.attr("axis", -1 if cx.opset >= 13 else 1) % n
    if cx.opset >= 13 or axis == n - 1:
        return [fn(x, axis, name=cx.name)]
    # opsets < 13: over the flattened dims [axis:]
    if any(d is None for d in x.shape[axis:]):
        raise Unsupported("a pre-13 Softmax over a symbolic dim")
    lead = [-1 if d is None else d for d in x.shape[:axis]]
    flat = cx.b.reshape(x, lead + [int(np.prod(x.shape[axis:]))], name=cx.aux("flat"))
    y = fn(flat, axis, name=cx.aux("softmax"))
    return [cx.b.reshape(y, [-1 if d is None else d for d in x.shape], name=cx.name)]


@convert("Softmax")
def _softmax_op(cx):
    return _softmax(cx, cx.b.softmax)


@convert("LogSoftmax")
def _log_softmax_op(cx):
    return _softmax(cx, cx.b.log_softmax)


def _broadcast_legacy(cx, b):
    """Opset < 7: B aligned at ``axis`` when ``broadcast`` is set (trailing by default)."""
    if cx.opset >= 7 or not cx.attr("broadcast", 0) or cx.attr("axis") is None:
        return b
    a_rank = len(cx.shape(0))
    axis = cx.attr("axis") % a_rank
    shape = tuple(cx.shape(1))
    new = [1] * axis + list(shape) + [1] * (a_rank - axis - len(shape))
    new = [-1 if d is None else d for d in new]
    if isinstance(b, np.ndarray):
        return b.reshape(new)
    return cx.b.reshape(b, new, name=cx.aux("align"))


@convert("Add", "Sub", "Mul", "Div")
def _arith(cx):
    fn = {"Add": cx.b.add, "Sub": cx.b.sub, "Mul": cx.b.mul, "Div": cx.b.div}[cx.node.op_type]
    a = cx.tensor(0)
    b = cx.const(1)
    b = cx.tensor(1) if b is None else _f32(b)
    b = _broadcast_legacy(cx, b)
    return [fn(a, b, name=cx.name)]


@convert("Sum")
def _sum(cx):
    ins = [cx.tensor(i) for i in range(cx.n_inputs())]
    if len(ins) == 1:
        return [cx.b.identity(ins[0], name=cx.name)]
    y = ins[0]
    for k, t in enumerate(ins[1:], start=2):
        y = cx.b.add(y, t, name=cx.name if k == len(ins) else cx.aux(f"sum{k}"))
    return [y]


@convert("Max", "Min")
def _max_min(cx):
    fn = cx.b.maximum if cx.node.op_type == "Max" else cx.b.minimum
    ins = [cx.tensor(i) for i in range(cx.n_inputs())]
    if len(ins) == 1:
        return [cx.b.identity(ins[0], name=cx.name)]
    y = ins[0]
    for k, t in enumerate(ins[1:], start=2):
        y = fn(y, t, name=cx.name if k == len(ins) else cx.aux(f"{cx.node.op_type}{k}"))
    return [y]


@convert("Neg")
def _neg(cx):
    return [cx.b.mul(cx.tensor(0), np.float32(-1.0), name=cx.name)]


@convert("Abs")
def _abs(cx):
    return [cx.b.abs(cx.tensor(0), name=cx.name)]


@convert("Reciprocal")
def _reciprocal(cx):
    return [cx.b.div(np.float32(1.0), cx.tensor(0), name=cx.name)]


@convert("Pow")
def _pow(cx):
    e = cx.const(1)
    if e is None or e.size != 1:
        raise Unsupported("Pow with a non-scalar or run-time exponent")
    e = float(e.ravel()[0])
    x = cx.tensor(0)
    if e == 1.0:
        return [cx.b.identity(x, name=cx.name)]
    if e == 2.0:
        return [cx.b.mul(x, x, name=cx.name)]
    if e == -1.0:
        return [cx.b.div(np.float32(1.0), x, name=cx.name)]
    raise Unsupported(f"Pow with exponent {e} (1, 2 and -1 map to engine ops)")


@convert("Einsum")
def _einsum(cx):
    try:
        return [cx.b.einsum(cx.attr("equation").decode() if isinstance(cx.attr("equation"),
                                                                      bytes)
                            else str(cx.attr("equation")),
                            *[cx.tensor(i) for i in range(cx.n_inputs())], name=cx.name)]
    except GraphError as e:
        raise Unsupported(str(e)) from None


@convert("Concat")
def _concat(cx):
    ins = [cx.tensor(i) for i in range(cx.n_inputs())]
    return [cx.b.cat(ins, dim=int(cx.attr("axis")), name=cx.name)]


@convert("Split")
def _split(cx):
    x = cx.tensor(0)
    axis = int(cx.attr("axis", 0)) % len(x.shape)
    n = x.shape[axis]
    if n is None:
        raise Unsupported("Split along the symbolic batch")
    split = cx.attr("split") if cx.opset < 13 else cx.ints(1) if cx.has(1) else None
    outs = len(cx.node.output)
    if split is None:
        k = cx.attr("num_outputs", outs)
        size = -(-n // k)
        split = [size] * (n // size) + ([n % size] if n % size else [])
    split = [int(s) for s in split]
    if len(split) == 1:
        return [cx.b.identity(x, name=cx.name)]
    # (the parts take their ONNX names when they are graph outputs: the node is named apart)
    return list(cx.b.split(x, split, axis, name=cx.aux("split")))


def _slice_args(cx, rest):
    if cx.opset < 10:
        starts, ends = cx.attr("starts"), cx.attr("ends")
        axes = cx.attr("axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        starts, ends = [int(v) for v in rest[0]], [int(v) for v in rest[1]]
        axes = [int(v) for v in rest[2]] if len(rest) > 2 and rest[2] is not None \
            else list(range(len(starts)))
        steps = [int(v) for v in rest[3]] if len(rest) > 3 and rest[3] is not None \
            else [1] * len(starts)
    return list(starts), list(ends), list(axes), list(steps)


@convert("Slice")
def _slice(cx):
    x = cx.tensor(0)
    rest = [cx.need_const(i, "Slice bounds") for i in range(1, cx.n_inputs())]
    starts, ends, axes, steps = _slice_args(cx, rest)
    y = x
    for k, (s, e, a, st) in enumerate(zip(starts, ends, axes, steps)):
        if st != 1:
            raise Unsupported(f"Slice with step {st}")
        shape = y.shape
        a %= len(shape)
        n = shape[a]
        if n is None:
            if s == 0 and e >= 2 ** 31 - 1:
                continue
            raise Unsupported("slicing the symbolic batch")
        s = max(0, min(n, s + n if s < 0 else s))
        e = max(s, min(n, e + n if e < 0 else e))
        if e == s:
            raise Unsupported("an empty slice")
        if (s, e) == (0, n):
            continue
        pieces = [p for p in (s, e - s, n - e) if p > 0]
        parts = cx.b.split(y, pieces, a, name=cx.aux(f"slice{k}"))
        y = parts[1 if s > 0 else 0]
    return [cx.b.identity(y, name=cx.name)]


def _reshape_dims(x_shape, target, allowzero):
    dims = [x_shape[i] if (s == 0 and not allowzero) else s for i, s in enumerate(target)]
    if any(d == BATCH for d in dims) or (dims and dims[0] is None):
        # the batch stays symbolic: dim 0 keeps it, a -1 elsewhere is resolved here
        if dims[0] not in (BATCH, None) or x_shape[0] is not None and x_shape[0] != 1:
            raise Unsupported(f"a reshape moving the symbolic batch ({target})")
        per = int(np.prod([d for d in x_shape[1:]])) if None not in x_shape[1:] else None
        rest = [d for d in dims[1:]]
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            if per is None or known == 0:
                raise Unsupported("a reshape with two unknown dims")
            rest[rest.index(-1)] = per // known
        return [-1] + rest
    return [None if d is None else int(d) for d in dims]


@convert("Reshape")
def _reshape(cx):
    x = cx.tensor(0)
    target = cx.attr("shape") if cx.opset < 5 else cx.ints(1)
    dims = _reshape_dims(x.shape, target, cx.attr("allowzero", 0))
    if x.shape[0] is None and dims and dims[0] != -1:
        if -1 not in dims and int(dims[0]) != 1:
            raise Unsupported(f"a reshape to {target} of a tensor with a symbolic batch")
        if dims[0] == 1 and -1 not in dims[1:]:
            dims[0] = -1
    return [cx.b.reshape(x, dims, name=cx.name)]


@convert("Flatten")
def _flatten(cx):
    x = cx.tensor(0)
    n = len(x.shape)
    axis = int(cx.attr("axis", 1)) % (n + 1) if n else 0
    if axis == 0:
        if x.shape[0] is None:
            raise Unsupported("Flatten(axis=0) of a tensor with a symbolic batch")
        return [cx.b.reshape(x, [1, -1], name=cx.name)]
    if axis == n:
        return [cx.b.reshape(x, [-1 if d is None else d for d in x.shape] + [1],
                             name=cx.name)]
    if axis == 1:
        return [cx.b.flatten(x, 1, -1, name=cx.name)]
    y = cx.b.flatten(x, axis, -1, name=cx.aux("tail"))
    return [cx.b.flatten(y, 0, axis - 1, name=cx.name)]


@convert("Transpose")
def _transpose(cx):
    x = cx.tensor(0)
    perm = cx.attr("perm") or list(reversed(range(len(x.shape))))
    return [cx.b.permute(x, [int(p) for p in perm], name=cx.name)]


def _axes(cx, since):
    if cx.opset < since:
        return cx.attr("axes")
    return cx.ints(1) if cx.has(1) else None


@convert("Unsqueeze")
def _unsqueeze(cx):
    x = cx.tensor(0)
    axes = _axes(cx, 13)
    n = len(x.shape) + len(axes)
    dims = [-1 if d is None else d for d in x.shape]
    for a in sorted(a % n for a in axes):
        dims.insert(a, 1)
    return [cx.b.reshape(x, dims, name=cx.name)]


@convert("Squeeze")
def _squeeze(cx):
    x = cx.tensor(0)
    axes = _axes(cx, 13)
    n = len(x.shape)
    drop = {a % n for a in axes} if axes else {i for i, d in enumerate(x.shape) if d == 1}
    if any(x.shape[a] != 1 for a in drop):
        raise Unsupported(f"Squeeze of dims {sorted(drop)} of shape {x.shape}")
    dims = [-1 if d is None else d for i, d in enumerate(x.shape) if i not in drop]
    return [cx.b.reshape(x, dims, name=cx.name)]


@convert("Pad")
def _pad(cx):
    x = cx.tensor(0)
    n = len(x.shape)
    mode = cx.attr("mode", "constant")
    if cx.opset < 11:
        pads, value = cx.attr("pads"), float(cx.attr("value", 0.0))
        axes = list(range(n))
    else:
        pads = cx.ints(1)
        v = cx.need_const(2, "the pad value") if cx.has(2) else None
        value = 0.0 if v is None else float(np.asarray(v).ravel()[0])
        axes = cx.ints(3) if cx.has(3) else list(range(n))
    axes = [a % n for a in axes]
    k = len(axes)
    per = {a: (pads[i], pads[i + k]) for i, a in enumerate(axes)}
    if any(v < 0 for p in per.values() for v in p) and mode != "constant":
        raise Unsupported(f"negative (cropping) pads {pads} in {mode!r} mode")
    last = max((a for a in per if per[a] != (0, 0)), default=None)
    if last is None:
        return [cx.b.identity(x, name=cx.name)]
    first = min(a for a in per if per[a] != (0, 0))
    flat = []
    for a in range(n - 1, first - 1, -1):           # torch order: last dim first
        flat += list(per.get(a, (0, 0)))
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"Pad mode {mode!r}")
    mode = {"edge": "replicate"}.get(mode, mode)
    try:                        # (negative amounts crop, in constant mode)
        return [cx.b.pad(x, flat, mode=mode, value=value if mode == "constant" else None,
                         name=cx.name)]
    except GraphError as e:
        raise Unsupported(str(e)) from None


@convert("ReduceMean", "ReduceSum", "ReduceMax")
def _reduce(cx):
    x = cx.tensor(0)
    n = len(x.shape)
    since = 18 if cx.node.op_type != "ReduceSum" else 13
    axes = _axes(cx, since)
    keep = bool(cx.attr("keepdims", 1))
    if not axes:
        if cx.attr("noop_with_empty_axes", 0):
            return [cx.b.identity(x, name=cx.name)]
        axes = list(range(n))
    axes = sorted(a % n for a in axes)
    op = cx.node.op_type
    if op == "ReduceMax":
        # engine has max only as the global max pool over all spatial dims
        if axes == list(range(2, n)) and keep and 3 <= n <= 5:
            return [cx.b.global_max_pool(x, name=cx.name)]
        raise Unsupported(f"ReduceMax over axes {axes} (engine: all spatial dims, keepdims)")
    if op == "ReduceMean":
        return [cx.b.mean(x, axes, keep, name=cx.name)]
    count = 1
    for a in axes:
        if x.shape[a] is None:
            raise Unsupported("ReduceSum over the symbolic batch")
        count *= x.shape[a]
    m = cx.b.mean(x, axes, keep, name=cx.aux("mean"))
    return [cx.b.mul(m, np.float32(count), name=cx.name)]


@convert("LRN")
def _lrn(cx):
    return [cx.b.local_response_norm(cx.tensor(0), int(cx.attr("size")),
                                     float(cx.attr("alpha", 1e-4)),
                                     float(cx.attr("beta", 0.75)),
                                     float(cx.attr("bias", 1.0)), name=cx.name)]


@convert("InstanceNormalization")
def _instance_norm(cx):
    s, b = cx.need_const(1, "scale"), cx.need_const(2, "bias")
    return [cx.b.instance_norm(cx.tensor(0), _f32(s), _f32(b),
                               float(cx.attr("epsilon", 1e-5)), name=cx.name)]


@convert("LayerNormalization")
def _layer_norm(cx):
    x = cx.tensor(0)
    n = len(x.shape)
    axis = int(cx.attr("axis", -1)) % n
    shape = list(x.shape[axis:])
    if any(d is None for d in shape):
        raise Unsupported("LayerNormalization over the symbolic batch")
    s = cx.need_const(1, "scale")
    b = cx.need_const(2, "bias") if cx.has(2) else None
    if cx.used(1) or cx.used(2):
        raise Unsupported("LayerNormalization's mean / inv_std_dev outputs")
    s = np.broadcast_to(_f32(s), shape).copy()
    b = None if b is None else np.broadcast_to(_f32(b), shape).copy()
    return [cx.b.layer_norm(x, shape, s, b, float(cx.attr("epsilon", 1e-5)), name=cx.name)]


@convert("GroupNormalization")
def _group_norm(cx):
    x = cx.tensor(0)
    g = int(cx.attr("num_groups"))
    c = x.shape[1]
    s, b = _f32(cx.need_const(1, "scale")), _f32(cx.need_const(2, "bias"))
    if s.size == g and g != c:            # opset 18: one scale / bias per group
        s, b = np.repeat(s, c // g), np.repeat(b, c // g)
    return [cx.b.group_norm(x, g, s, b, float(cx.attr("epsilon", 1e-5)), name=cx.name)]


@convert("Dropout")
def _dropout(cx):
    if cx.used(1):
        raise Unsupported("Dropout's mask output")
    return [cx.b.identity(cx.tensor(0), name=cx.name)]


@convert("Identity")
def _identity(cx):
    return [cx.b.identity(cx.tensor(0), name=cx.name)]


@convert("Resize", "Upsample")
def _resize(cx):
    x = cx.tensor(0)
    r = len(x.shape) - 2
    mode = cx.attr("mode", "nearest")
    op = cx.node.op_type
    if op == "Upsample" or cx.opset < 11:
        scales = cx.attr("scales") if cx.opset < 9 else cx.need_const(1, "scales")
        sizes, coord, near = None, "asymmetric", "floor"
    else:
        roi_i, sc_i, sz_i = 1, 2, 3
        scales = cx.need_const(sc_i, "scales") if cx.has(sc_i) else None
        sizes = cx.ints(sz_i) if cx.has(sz_i) else None
        if scales is not None and scales.size == 0:
            scales = None
        coord = cx.attr("coordinate_transformation_mode", "half_pixel")
        near = cx.attr("nearest_mode", "round_prefer_floor")
        if cx.attr("antialias", 0):
            raise Unsupported("Resize with antialias")
        if cx.attr("axes") is not None:
            raise Unsupported("Resize with axes")
    if scales is not None:
        scales = [float(s) for s in np.asarray(scales).ravel()]
        if scales[:2] != [1.0, 1.0]:
            raise Unsupported(f"Resize scaling the batch / channel dims ({scales})")
        spatial = dict(scale_factor=scales[2:])
    elif sizes is not None:
        spatial = dict(size=sizes[2:])
    else:
        raise Unsupported("Resize without scales or sizes")
    if mode == "nearest":
        if coord != "asymmetric" or near != "floor":
            raise Unsupported(f"nearest Resize with {coord} / {near} (engine: asymmetric, "
                              f"floor, as torch's 'nearest')")
        return [cx.b.interpolate(x, mode="nearest", name=cx.name, **spatial)]
    if mode == "linear" and r == 2:
        if coord in ("half_pixel", "pytorch_half_pixel"):
            ac = False
        elif coord == "align_corners":
            ac = True
        else:
            raise Unsupported(f"linear Resize with coordinate mode {coord!r}")
        return [cx.b.interpolate(x, mode="bilinear", align_corners=ac, name=cx.name,
                                 **spatial)]
    raise Unsupported(f"Resize mode {mode!r} on {r}-d")


@convert("Expand")
def _expand(cx):
    x = cx.tensor(0)
    shape = cx.ints(1)
    have = tuple(1 if d is None else d for d in x.shape)
    try:
        out = np.broadcast_shapes(have, tuple(shape))
    except ValueError:
        raise Unsupported(f"Expand of {x.shape} to {shape}: the shapes do not broadcast")
    if tuple(out) == have:
        return [cx.b.identity(x, name=cx.name)]
    lead = len(out) - len(have)
    if x.shape and x.shape[0] is None and (lead or out[0] != 1):
        raise Unsupported(f"Expand of {x.shape} to {shape} across the symbolic batch")
    # x times ones of the new sizes: the broadcast kernel copies, and x * 1 is exact
    ones = np.ones([o if i < lead or have[i - lead] == 1 else 1 for i, o in enumerate(out)],
                   np.float32)
    return [cx.b.mul(x, ones, name=cx.name)]


@convert("Tile")
def _tile(cx):
    x = cx.tensor(0)
    reps = cx.ints(1)
    if len(reps) != len(x.shape) or any(r < 1 for r in reps):
        raise Unsupported(f"Tile of {x.shape} by {reps}: one repeat count >= 1 per dim")
    if x.shape and x.shape[0] is None and reps[0] != 1:
        raise Unsupported("Tile along the symbolic batch")
    y = x
    todo = [d for d, r in enumerate(reps) if r > 1]
    if not todo:
        return [cx.b.identity(x, name=cx.name)]
    for k, d in enumerate(todo):     # r copies side by side along each repeated dim
        y = cx.b.cat([y] * reps[d], dim=d,
                     name=cx.name if k == len(todo) - 1 else cx.aux(f"tile{d}"))
    return [y]


def is_onnx_file(path):
    """Named *.onnx, or starting like a serialized ModelProto (see format._other_format)."""
    path = os.fspath(path)
    if path.lower().endswith(".onnx"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    from ..format import _other_format
    return (_other_format(head) or "").startswith("an ONNX model")


def verify(model, path, inputs, backend="cpu", threads=None):
    """(max abs diff, max rel diff) of ``model`` against ONNX Runtime on ``inputs``."""
    import onnxruntime as ort
    from ..runtime import Session
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(os.fspath(path), so, providers=["CPUExecutionProvider"])
    x = np.asarray(inputs, dtype=np.float32)
    want = ref.run(None, {ref.get_inputs()[0].name: x})[0].astype(np.float64)
    got = Session(model, backend=backend, threads=threads).run(x)[0].astype(np.float64)
    if got.shape != want.shape:
        raise ConversionError(f"output shape {got.shape}, ONNX Runtime's {want.shape}")
    d = float(np.abs(got - want).max()) if got.size else 0.0
    return d, d / max(float(np.abs(want).max()), 1e-30)


# -- the walk -------------------------------------------------------------------------------

def _input_shape(vi, override, dynamic_batch):
    t = vi.type.tensor_type
    from onnx import TensorProto
    if t.elem_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        from onnx import helper
        raise ConversionError(f"input {vi.name!r} has element type "
                              f"{helper.tensor_dtype_to_np_dtype(t.elem_type)}; engine models "
                              f"compute in float32 and take float32 (or float16) inputs")
    dims = []
    for i, d in enumerate(t.shape.dim):
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(None)
    if override is not None:
        if len(override) != len(dims):
            raise ConversionError(f"input {vi.name!r} has rank {len(dims)}; the given input "
                                  f"shape {tuple(override)} has rank {len(override)}")
        dims = [None if (i == 0 and dynamic_batch and dims[0] is None) else int(o)
                for i, o in enumerate(override)]
    unknown = [i for i, d in enumerate(dims) if d is None and i > 0]
    if unknown:
        raise ConversionError(f"input {vi.name!r} has symbolic dims {unknown} "
                              f"({[d.dim_param for d in t.shape.dim]}); give the input shape "
                              f"(input_shape=... / --input-shape)")
    if dims and dims[0] is None and not dynamic_batch:
        raise ConversionError(f"input {vi.name!r} has a symbolic batch; give the input shape "
                              f"or keep dynamic_batch=True")
    return tuple(dims)


def from_onnx(src, *, input_shape=None, dynamic_batch=True, metadata=None):
    """An engine Model from an ONNX model (a path, the file's bytes or a ModelProto).

    ``input_shape``: the input's shape where the file leaves dims symbolic (a tuple, or
    {input name: shape} for several inputs); a symbolic dim 0 stays the symbolic batch
    while ``dynamic_batch``.  Raises ConversionError naming every unsupported op."""
    proto = load_proto(src)
    from onnx import numpy_helper
    g = proto.graph
    opset = _opset(proto)
    env = {}
    for t in g.initializer:
        env[t.name] = numpy_helper.to_array(t)
    b = Builder()
    inits = set(env)
    graph_inputs = [vi for vi in g.input if vi.name not in inits]
    if not graph_inputs:
        raise ConversionError("the ONNX graph has no inputs (every input has an initializer)")
    for k, vi in enumerate(graph_inputs):
        ov = input_shape
        if isinstance(input_shape, dict):
            ov = input_shape.get(vi.name)
        elif input_shape is not None and len(graph_inputs) > 1:
            raise ConversionError("the model has several inputs: give input_shape as "
                                  "{name: shape}")
        try:
            env[vi.name] = b.input(vi.name, _input_shape(vi, ov, dynamic_batch))
        except GraphError as e:
            raise ConversionError(f"input {vi.name!r}: {e}") from None
    cx = _Ctx(b, env, opset)
    cx.read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    missing = {}                      # op type -> [node names]
    failed = set()                    # values not produced (after an unsupported node)
    patterns = _Patterns(g, dict(env))
    nodes = patterns.rewrite(list(g.node))
    env.update(patterns.new_consts)
    for node in nodes:
        cx.node = node
        label = node.name or (node.output[0] if node.output else node.op_type)
        if node.domain not in ("", "ai.onnx"):
            missing.setdefault(f"{node.domain}.{node.op_type}", []).append(label)
            failed.update(node.output)
            continue
        if any(i in failed for i in node.input if i):
            failed.update(node.output)
            continue
        try:
            outs = _convert_node(cx, node)
        except Unsupported as e:
            missing.setdefault(f"{node.op_type} ({e})", []).append(label)
            failed.update(node.output)
            continue
        except (GraphError, ValueError) as e:
            raise ConversionError(f"node {label!r} ({node.op_type}): {e}") from None
        for name, v in zip(node.output, outs):
            if name:
                env[name] = v
    if missing:
        lines = [f"  {op}: {len(names)} node(s), e.g. {', '.join(names[:3])}"
                 for op, names in sorted(missing.items())]
        raise ConversionError("this ONNX model uses ops engine cannot import:\n" +
                              "\n".join(lines))
    for o in g.output:
        v = env.get(o.name)
        if v is None:
            raise ConversionError(f"output {o.name!r} is not computed by the graph")
        if isinstance(v, np.ndarray):
            v = b.identity(b.constant(v.astype(np.float32)), name=b._unique("const_out"))
        b.output(v, name=o.name)
    meta = _stored_metadata(proto)
    meta.update(metadata or {})
    meta.setdefault("source", "onnx")
    meta.setdefault("onnx_opset", opset)
    if proto.producer_name:
        meta.setdefault("onnx_producer", f"{proto.producer_name} {proto.producer_version}"
                        .strip())
    return b.build(meta)


# -- decomposed layers exporters emit ----------------------------------------------------

class _Patterns:
    """Finds the decomposed GELU and LayerNorm that exporters emit below opsets 20 / 17
    (``x * 0.5 * (1 + erf(x / sqrt 2))``; ``(x - mean) / sqrt(var + eps) * g + b`` in seven
    nodes) and replaces each by one Gelu / LayerNormalization node, so they map to
    engine's gelu and layer_norm instead of ops engine does not have (Erf, Sqrt)."""

    def __init__(self, g, consts):
        from onnx import helper, numpy_helper
        self.h, self.nh = helper, numpy_helper
        self.consts = consts                       # name -> array (initializers)
        for n in g.node:
            if n.op_type == "Constant" and len(n.attribute) == 1 and \
                    n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            elif n.op_type == "Identity" and n.input[0] in self.consts:
                # (torch.onnx.export shares equal weights through Identity nodes)
                self.consts[n.output[0]] = self.consts[n.input[0]]
        self.producer = {o: n for n in g.node for o in n.output}
        self.readers = {}
        for n in g.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        for o in g.output:
            self.readers.setdefault(o.name, []).append(None)
        self.new_consts = {}

    def only_reader(self, value, op):
        r = self.readers.get(value, [])
        return r[0] if len(r) == 1 and r[0] is not None and r[0].op_type == op else None

    def scalar(self, name, want, tol=1e-4):
        v = self.consts.get(name)
        return v is not None and v.size == 1 and abs(float(v.ravel()[0]) - want) <= tol

    def other(self, node, value):
        """The input of a binary node that is not ``value`` (None if both or neither)."""
        a, b = node.input[0], node.input[1]
        return b if a == value and b != value else a if b == value and a != value else None

    def gelu(self, erf):
        div = self.producer.get(erf.input[0])
        if div is None or div.op_type not in ("Div", "Mul") or \
                len(self.readers.get(div.output[0], [])) != 1:
            return None
        x = div.input[0]
        if not (self.scalar(div.input[1], 2 ** 0.5) if div.op_type == "Div"
                else self.scalar(div.input[1], 2 ** -0.5)):
            return None
        add = self.only_reader(erf.output[0], "Add")
        if add is None or not self.scalar(self.other(add, erf.output[0]) or "", 1.0):
            return None
        m1 = self.only_reader(add.output[0], "Mul")
        if m1 is None or self.other(m1, add.output[0]) != x:
            return None
        m2 = self.only_reader(m1.output[0], "Mul")
        if m2 is None or not self.scalar(self.other(m2, m1.output[0]) or "", 0.5):
            return None
        node = self.h.make_node("Gelu", [x], [m2.output[0]], name=m2.name)
        return node, {id(n) for n in (div, erf, add, m1)}, m2

    def _axes(self, rm):
        for a in rm.attribute:
            if a.name == "axes":
                return list(self.h.get_attribute_value(a))
            if a.name == "keepdims" and not self.h.get_attribute_value(a):
                return None
        if len(rm.input) > 1 and rm.input[1] in self.consts:
            return [int(v) for v in self.consts[rm.input[1]].ravel()]
        return None

    def layer_norm(self, rm):
        if self._axes(rm) != [-1]:
            return None
        x = rm.input[0]
        sub = self.only_reader(rm.output[0], "Sub")
        if sub is None or sub.input != [x, rm.output[0]]:
            return None
        d = sub.output[0]
        readers = self.readers.get(d, [])
        if len(readers) != 2 or None in readers:
            return None
        pw = next((n for n in readers if n.op_type == "Pow"), None)
        div = next((n for n in readers if n.op_type == "Div"), None)
        if pw is None or div is None or pw.input[0] != d or not self.scalar(pw.input[1], 2.0) \
                or div.input[0] != d:
            return None
        rm2 = self.only_reader(pw.output[0], "ReduceMean")
        if rm2 is None or self._axes(rm2) != [-1]:
            return None
        add = self.only_reader(rm2.output[0], "Add")
        eps = self.other(add, rm2.output[0]) if add is not None else None
        if eps is None or eps not in self.consts or self.consts[eps].size != 1:
            return None
        sq = self.only_reader(add.output[0], "Sqrt")
        if sq is None or div.input[1] != sq.output[0] or \
                len(self.readers.get(sq.output[0], [])) != 1:
            return None
        gone = [sub, pw, rm2, add, sq, div]
        last, scale, bias = div, None, None
        mul = self.only_reader(div.output[0], "Mul")
        if mul is not None and self.other(mul, div.output[0]) in self.consts:
            scale, last = self.other(mul, div.output[0]), mul
            gone.append(mul)
            add2 = self.only_reader(mul.output[0], "Add")
            if add2 is not None and self.other(add2, mul.output[0]) in self.consts:
                bias, last = self.other(add2, mul.output[0]), add2
                gone.append(add2)
        if scale is None:
            scale = f"{last.output[0]}.scale"
            self.new_consts[scale] = np.ones(1, np.float32)
        ins = [x, scale] + ([bias] if bias is not None else [])
        node = self.h.make_node("LayerNormalization", ins, [last.output[0]], name=last.name,
                                axis=-1, epsilon=float(self.consts[eps].ravel()[0]))
        gone.remove(last)
        return node, {id(n) for n in gone} | {id(rm)}, last

    def matmul_bias(self, mm):
        """MatMul by a constant matrix, then Add of a constant vector (opset < 13 exports of
        nn.Linear on > 2-d inputs): one MatMul with the bias as a third input (an internal
        form only this importer reads), a linear layer with its bias in the GEMM store."""
        w = self.consts.get(mm.input[1])
        add = self.only_reader(mm.output[0], "Add")
        if w is None or w.ndim != 2 or add is None:
            return None
        b = self.other(add, mm.output[0])
        if b is None or b not in self.consts or self.consts[b].shape != (w.shape[1],):
            return None
        node = self.h.make_node("MatMul", [mm.input[0], mm.input[1], b], [add.output[0]],
                                name=add.name)
        return node, {id(mm)}, add

    def rewrite(self, nodes):
        """The node list with every match replaced (the new node where the match ended)."""
        replace, drop = {}, set()
        for n in nodes:
            if id(n) in drop:
                continue
            hit = self.gelu(n) if n.op_type == "Erf" else \
                self.layer_norm(n) if n.op_type == "ReduceMean" else \
                self.matmul_bias(n) if n.op_type == "MatMul" else None
            if hit is not None:
                node, gone, last = hit
                drop |= gone
                replace[id(last)] = node
        return [replace.get(id(n), n) for n in nodes if id(n) not in drop]


def _stored_metadata(proto):
    """The metadata ``engine export`` stored in the file (labels, preprocessing), checked
    like a model file's; {} when there is none."""
    import json
    from ..metadata import check_metadata
    for p in proto.metadata_props:
        if p.key == "engine.metadata":
            try:
                meta = json.loads(p.value)
                check_metadata(meta)
            except (ValueError, TypeError) as e:
                raise ConversionError(f"the file's engine.metadata is invalid: {e}") from None
            return dict(meta)
    return {}


def _convert_node(cx, node):
    op = node.op_type
    if op == "Constant":
        return [_constant_value(cx)]
    ins = [cx.env.get(i) if i else None for i in node.input]
    if op == "Shape":
        v = ins[0]
        shape = [BATCH if d is None else d for d in v.shape]
        start, end = cx.attr("start", 0), cx.attr("end")
        return [np.asarray(shape[start:end], dtype=np.int64)]
    if op == "Size" and not any(d is None for d in ins[0].shape):
        return [np.asarray(int(np.prod(ins[0].shape)), dtype=np.int64)]
    folder = FOLD.get(op)
    if folder is not None and all(v is None or isinstance(v, np.ndarray) for v in ins):
        return [np.asarray(v) for v in folder(cx, *ins)]     # (NumPy scalars: 0-d arrays)
    handler = CONVERT.get(op)
    if handler is None:
        raise Unsupported("no mapping" if folder is None else "its inputs computed at run time")
    return handler(cx)


def _constant_value(cx):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        v = cx.attr(key)
        if v is not None:
            if key.startswith("value_int"):
                return np.asarray(v, dtype=np.int64)
            return np.asarray(v, dtype=np.float32) if key != "value" else np.asarray(v)
    raise Unsupported("a Constant without a numeric value")
