"""The op mapping table: one handler per ATen op (overload packet), in a registry.

Both frontends (``torch.export`` graphs of live modules, TorchScript archives) hand every
ATen call to the handler registered under its name, e.g. ``"conv2d"`` for
``aten.conv2d.default`` / ``aten::conv2d``.  A handler receives

    cx  the conversion context (the Builder as ``cx.b``, the node name ``cx.name``,
        helpers that turn values into graph tensors or Python numbers), and
    a   the call's arguments by their ATen schema names (``a.input``, ``a.stride``...),

and returns the engine value(s) of the call's output(s).  Tensor arguments arrive as
Builder ``Tensor``s (computed values) or ``Const`` (parameters, buffers, folded
constants); scalars as Python numbers, or ``BATCH`` for the symbolic batch size.

Calls whose tensor inputs are all constants never reach a handler: the frontend folds
them with PyTorch.  In-place variants (``relu_``, ``add_``) use the handler of the
out-of-place op.  A handler that cannot map a particular use raises ``Unsupported`` with
the reason; the converter collects every such failure and reports them all at once.
"""

import math

import numpy as np

ATEN_OPS = {}


class Unsupported(Exception):
    """This call cannot be mapped (the message says why)."""


class _Batch:
    """The symbolic batch size (a SymInt of the traced graph)."""
    _inst = None

    def __new__(cls):
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self):
        return "BATCH"


BATCH = _Batch()


class Symbolic:
    """A size that depends on the batch in a way the engine cannot express (e.g. 4*batch)."""

    def __init__(self, expr):
        self.expr = str(expr)

    def __repr__(self):
        return f"Symbolic({self.expr})"


class Const:
    """A constant tensor: a parameter, buffer or folded value (a torch.Tensor)."""
    __slots__ = ("value", "name")

    def __init__(self, value, name=None):
        self.value, self.name = value, name

    @property
    def shape(self):
        return tuple(self.value.shape)

    def numpy(self):
        v = self.value.detach()
        if v.is_floating_point() or v.dtype.is_complex:
            v = v.float()
        return np.ascontiguousarray(v.cpu().numpy()).astype(np.float32)

    def __repr__(self):
        return f"Const({self.name or '?'}, shape={self.shape})"


class Args:
    """A call's arguments by schema name: ``a.weight``, ``a["stride"]``, ``"bias" in a``.

    ``input`` and ``self`` are interchangeable (in-place variants such as ``dropout_``
    call the tensor ``self`` where the functional op says ``input``)."""

    def __init__(self, values):
        v = dict(values)
        if "self" in v and "input" not in v:
            v["input"] = v["self"]
        elif "input" in v and "self" not in v:
            v["self"] = v["input"]
        self._v = v

    def __getattr__(self, name):
        try:
            return self.__dict__["_v"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name):
        return self._v[name]

    def get(self, name, default=None):
        return self._v.get(name, default)

    def __contains__(self, name):
        return name in self._v

    def items(self):
        return self._v.items()


def aten(*names):
    """Register a handler under one or more ATen op names (overload packets)."""
    def deco(fn):
        for n in names:
            if n in ATEN_OPS:
                raise ValueError(f"ATen op {n!r} is registered twice")
            ATEN_OPS[n] = fn
        return fn
    return deco


def lookup(name):
    """(handler, inplace) for an ATen op name (``relu_`` -> relu's handler), or (None, False)."""
    if name in ATEN_OPS:
        return ATEN_OPS[name], False
    if name.endswith("_") and not name.startswith("_") and name[:-1] in ATEN_OPS:
        return ATEN_OPS[name[:-1]], True
    return None, False


def supported_ops():
    """Names of the ATen ops the converter maps (overload packets, ``aten.<name>``)."""
    return sorted(ATEN_OPS)


# -- helpers --------------------------------------------------------------------------------
def _rank(cx, x):
    return len(cx.shape(x)) - 2


def _opt_list(v):
    return None if v is None else list(v)


def _is_one(v):
    return v is None or (not hasattr(v, "shape") and float(v) == 1.0)


# -- convolution ----------------------------------------------------------------------------
@aten("conv1d", "conv2d", "conv3d")
def _conv(cx, a):
    w = cx.tensor(a.weight)
    r = len(w.shape) - 2
    padding = a.padding if isinstance(a.padding, str) else cx.ints(a.padding)
    return cx.b._conv(r, cx.graph(a.input), w, cx.opt_tensor(a.bias), cx.ints(a.stride),
                      padding, cx.ints(a.dilation), cx.int(a.groups), cx.name)


@aten("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def _conv_transpose(cx, a):
    w = cx.tensor(a.weight)
    r = len(w.shape) - 2
    return cx.b._conv_t(r, cx.graph(a.input), w, cx.opt_tensor(a.bias), cx.ints(a.stride),
                        cx.ints(a.padding), cx.ints(a.output_padding), cx.int(a.groups),
                        cx.ints(a.dilation), cx.name)


@aten("convolution", "_convolution")
def _convolution(cx, a):
    w = cx.tensor(a.weight)
    r = len(w.shape) - 2
    x, bias = cx.graph(a.input), cx.opt_tensor(a.bias)
    if a.transposed:
        return cx.b._conv_t(r, x, w, bias, cx.ints(a.stride), cx.ints(a.padding),
                            cx.ints(a.output_padding), cx.int(a.groups), cx.ints(a.dilation),
                            cx.name)
    if any(cx.ints(a.output_padding)):
        raise Unsupported("output_padding on a non-transposed convolution")
    return cx.b._conv(r, x, w, bias, cx.ints(a.stride), cx.ints(a.padding),
                      cx.ints(a.dilation), cx.int(a.groups), cx.name)


# -- dense ----------------------------------------------------------------------------------
@aten("linear")
def _linear(cx, a):
    return cx.b.linear(cx.graph(a.input), cx.tensor(a.weight), cx.opt_tensor(a.bias),
                       name=cx.name)


def _weight_t(cx, m):
    """A constant (in, out) matrix as a linear weight (out, in)."""
    arr = m.value.detach().t().contiguous()
    return cx.tensor(Const(arr, None), name=f"{m.name}.T" if m.name else None)


@aten("addmm")
def _addmm(cx, a):
    if not _is_one(a.beta) or not _is_one(a.alpha):
        raise Unsupported(f"addmm with beta={a.beta}, alpha={a.alpha}")
    if isinstance(a.mat2, Const) and not isinstance(a.mat1, Const):
        bias = a.self
        return cx.b.linear(cx.graph(a.mat1), _weight_t(cx, a.mat2), cx.tensor(bias),
                           name=cx.name)
    y = cx.b.matmul(cx.tensor(a.mat1), cx.tensor(a.mat2), name=cx.aux("mm"))
    return cx.b.add(y, cx.tensor(a.self), name=cx.name)


@aten("mm")
def _mm(cx, a):
    if isinstance(a.mat2, Const) and not isinstance(a.self, Const):
        return cx.b.linear(cx.graph(a.self), _weight_t(cx, a.mat2), name=cx.name)
    return cx.b.matmul(cx.tensor(a.self), cx.tensor(a.mat2), name=cx.name)


@aten("matmul")
def _matmul(cx, a):
    return cx.b.matmul(cx.tensor(a.self), cx.tensor(a.other), name=cx.name)


@aten("bmm")
def _bmm(cx, a):
    return cx.b.matmul(cx.tensor(a.self), cx.tensor(a.mat2), name=cx.name)


@aten("einsum")
def _einsum(cx, a):
    # (a GraphError from the lowering is listed with the node, as every handler's is)
    return cx.b.einsum(str(a.equation), *[cx.tensor(t) for t in a.tensors], name=cx.name)


# -- normalisation --------------------------------------------------------------------------
def _bn(cx, a, training):
    if training:
        raise Unsupported("BatchNorm using batch statistics (training mode, or "
                          "track_running_stats=False); call module.eval() and keep running "
                          "statistics")
    if a.running_mean is None or a.running_var is None:
        raise Unsupported("BatchNorm without running statistics")
    return cx.b.batch_norm(cx.graph(a.input), cx.tensor(a.running_mean),
                           cx.tensor(a.running_var), cx.opt_tensor(a.weight),
                           cx.opt_tensor(a.bias), eps=cx.float(a.eps), name=cx.name)


@aten("batch_norm")
def _batch_norm(cx, a):
    return _bn(cx, a, bool(a.training))


@aten("_native_batch_norm_legit_no_training")
def _bn_no_training(cx, a):
    return [_bn(cx, a, False), cx.poison("BatchNorm saved mean"),
            cx.poison("BatchNorm saved inverse std")]


@aten("_native_batch_norm_legit", "native_batch_norm")
def _native_bn(cx, a):
    return [_bn(cx, a, bool(a.training)), cx.poison("BatchNorm saved mean"),
            cx.poison("BatchNorm saved inverse std")]


@aten("layer_norm")
def _layer_norm(cx, a):
    return cx.b.layer_norm(cx.graph(a.input), cx.ints(a.normalized_shape),
                           cx.opt_tensor(a.weight), cx.opt_tensor(a.bias),
                           eps=cx.float(a.eps), name=cx.name)


@aten("native_layer_norm")
def _native_layer_norm(cx, a):
    return [_layer_norm(cx, a), cx.poison("LayerNorm mean"), cx.poison("LayerNorm rstd")]


@aten("group_norm")
def _group_norm(cx, a):
    return cx.b.group_norm(cx.graph(a.input), cx.int(a.num_groups), cx.opt_tensor(a.weight),
                           cx.opt_tensor(a.bias), eps=cx.float(a.eps), name=cx.name)


@aten("native_group_norm")
def _native_group_norm(cx, a):
    y = cx.b.group_norm(cx.graph(a.input), cx.int(a.group), cx.opt_tensor(a.weight),
                        cx.opt_tensor(a.bias), eps=cx.float(a.eps), name=cx.name)
    return [y, cx.poison("GroupNorm mean"), cx.poison("GroupNorm rstd")]


@aten("instance_norm")
def _instance_norm(cx, a):
    if a.use_input_stats:
        return cx.b.instance_norm(cx.graph(a.input), cx.opt_tensor(a.weight),
                                  cx.opt_tensor(a.bias), eps=cx.float(a.eps), name=cx.name)
    # track_running_stats=True in eval mode: a BatchNorm with the running statistics
    return _bn(cx, a, False)


@aten("local_response_norm")          # synthetic: the converter fuses torch's decomposition
def _lrn(cx, a):
    return cx.b.local_response_norm(cx.graph(a.input), cx.int(a.size), cx.float(a.alpha),
                                    cx.float(a.beta), cx.float(a.k), name=cx.name)


# -- activations ----------------------------------------------------------------------------
def _unary(op):
    def handler(cx, a):
        return getattr(cx.b, op)(cx.graph(a.self), name=cx.name)
    handler.__name__ = f"_{op}"
    return handler


for _op in ("relu", "relu6", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "selu",
            "mish"):
    aten(_op)(_unary(_op))


@aten("elu")
def _elu(cx, a):
    scale, input_scale = cx.float(a.scale), cx.float(a.input_scale)
    if scale != 1.0 or input_scale != 1.0:
        raise Unsupported(f"elu with scale {scale} / input_scale {input_scale} (only "
                          f"torch.nn.ELU's 1.0 / 1.0)")
    return cx.b.elu(cx.graph(a.self), cx.float(a.alpha), name=cx.name)


@aten("softplus")
def _softplus(cx, a):
    return cx.b.softplus(cx.graph(a.self), cx.float(a.beta), cx.float(a.threshold),
                         name=cx.name)


@aten("leaky_relu")
def _leaky_relu(cx, a):
    return cx.b.leaky_relu(cx.graph(a.self), cx.float(a.negative_slope), name=cx.name)


@aten("gelu")
def _gelu(cx, a):
    return cx.b.gelu(cx.graph(a.self), approximate=a.approximate or "none", name=cx.name)


@aten("prelu", "_prelu_kernel")
def _prelu(cx, a):
    w = cx.tensor(a.weight)
    if len(w.shape) != 1:
        w = cx.tensor(Const(a.weight.value.reshape(-1), a.weight.name)) \
            if isinstance(a.weight, Const) else cx.b.reshape(w, [-1], name=cx.aux("weight"))
    return cx.b.prelu(cx.graph(a.self), w, name=cx.name)


@aten("hardtanh")
def _hardtanh(cx, a):
    lo, hi = cx.float(a.min_val), cx.float(a.max_val)
    if lo == 0.0 and hi == 6.0:
        return cx.b.relu6(cx.graph(a.self), name=cx.name)
    return cx.b.clip(cx.graph(a.self), lo, hi, name=cx.name)


@aten("clamp", "clip")
def _clamp(cx, a):
    lo, hi = cx.opt_float(a.min), cx.opt_float(a.max)
    if lo is None and hi is None:
        raise Unsupported("clamp without bounds")
    if lo == 0.0 and hi is None:
        return cx.b.relu(cx.graph(a.self), name=cx.name)
    return cx.b.clip(cx.graph(a.self), lo, hi, name=cx.name)


@aten("clamp_min")
def _clamp_min(cx, a):
    lo = cx.float(a.min)
    if lo == 0.0:
        return cx.b.relu(cx.graph(a.self), name=cx.name)
    return cx.b.clip(cx.graph(a.self), lo, None, name=cx.name)


@aten("clamp_max")
def _clamp_max(cx, a):
    return cx.b.clip(cx.graph(a.self), None, cx.float(a.max), name=cx.name)


@aten("softmax", "_softmax")
def _softmax(cx, a):
    return cx.b.softmax(cx.graph(a.self), cx.int(a.dim), name=cx.name)


@aten("log_softmax", "_log_softmax")
def _log_softmax(cx, a):
    return cx.b.log_softmax(cx.graph(a.self), cx.int(a.dim), name=cx.name)


# -- pooling --------------------------------------------------------------------------------
def _max_pool(cx, a):
    k = cx.ints(a.kernel_size)
    x = cx.graph(a.self)
    r = len(cx.shape(x)) - 2
    stride = cx.ints(a.stride) or None
    return cx.b._pool("max_pool", r, x, k, stride, cx.ints(a.padding), cx.ints(a.dilation),
                      bool(a.ceil_mode), cx.name)


@aten("max_pool1d", "max_pool2d", "max_pool3d")
def _max_pool_plain(cx, a):
    return _max_pool(cx, a)


@aten("max_pool1d_with_indices", "max_pool2d_with_indices", "max_pool3d_with_indices")
def _max_pool_indices(cx, a):
    return [_max_pool(cx, a), cx.poison("max-pooling indices (return_indices=True)")]


@aten("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(cx, a):
    if a.get("divisor_override") is not None:
        raise Unsupported(f"avg_pool with divisor_override={a.divisor_override}")
    x = cx.graph(a.self)
    r = len(cx.shape(x)) - 2
    stride = cx.ints(a.stride) or None
    return cx.b._pool("avg_pool", r, x, cx.ints(a.kernel_size), stride, cx.ints(a.padding), 1,
                      bool(a.ceil_mode), cx.name, bool(a.count_include_pad))


def _adaptive_size(cx, a, x):
    size = a.output_size
    shape = cx.shape(x)
    r = len(shape) - 2
    if isinstance(size, (list, tuple)):
        size = [shape[2 + i] if s is None else s for i, s in enumerate(size)]
        if len(size) == 1:
            size = size * r
    return r, cx.ints(size)


@aten("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
      "_adaptive_avg_pool2d", "_adaptive_avg_pool3d")
def _adaptive_avg(cx, a):
    x = cx.graph(a.self)
    r, size = _adaptive_size(cx, a, x)
    return cx.b._adaptive("adaptive_avg_pool", r, x, size, cx.name)


@aten("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive_max(cx, a):
    x = cx.graph(a.self)
    r, size = _adaptive_size(cx, a, x)
    return [cx.b._adaptive("adaptive_max_pool", r, x, size, cx.name),
            cx.poison("adaptive max-pooling indices")]


# -- reductions -----------------------------------------------------------------------------
def _dims(cx, x, dim):
    n = len(cx.shape(x))
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return list(range(n))
    if isinstance(dim, int):
        return [dim]
    return cx.ints(dim)


@aten("mean")
def _mean(cx, a):
    x = cx.graph(a.self)
    return cx.b.mean(x, _dims(cx, x, a.get("dim")), bool(a.get("keepdim", False)),
                     name=cx.name)


@aten("sum")
def _sum(cx, a):
    x = cx.graph(a.self)
    dims = _dims(cx, x, a.get("dim"))
    shape = cx.shape(x)
    count = 1
    for d in dims:
        n = shape[d % len(shape)]
        if n is None:
            raise Unsupported("sum over the batch dimension")
        count *= n
    m = cx.b.mean(x, dims, bool(a.get("keepdim", False)), name=cx.aux("mean"))
    return cx.b.mul(m, cx.scalar(float(count)), name=cx.name)


# -- shape ----------------------------------------------------------------------------------
def _reshape_to_output(cx, x):
    """Reshape ``x`` to the traced output shape; the batch dim becomes -1."""
    out = cx.out_shape()
    if out == tuple(cx.shape(x)):
        return cx.b.reshape(x, [-1 if d is None else d for d in out], name=cx.name)
    if None in cx.shape(x) and None not in out:
        raise Unsupported(f"reshape of {tuple(cx.shape(x))} to {out} merges the batch "
                          f"dimension with other dims")
    return cx.b.reshape(x, [-1 if d is None else d for d in out], name=cx.name)


@aten("view", "reshape", "_unsafe_view", "view_copy", "_reshape_alias", "unsqueeze",
      "squeeze", "unflatten", "reshape_as", "view_as")
def _view(cx, a):
    return _reshape_to_output(cx, cx.graph(a.self))


@aten("flatten")
def _flatten(cx, a):
    return cx.b.flatten(cx.graph(a.self), cx.int(a.start_dim), cx.int(a.end_dim), name=cx.name)


@aten("permute")
def _permute(cx, a):
    return cx.b.permute(cx.graph(a.self), cx.ints(a.dims), name=cx.name)


@aten("transpose")
def _transpose(cx, a):
    return cx.b.transpose(cx.graph(a.self), cx.int(a.dim0), cx.int(a.dim1), name=cx.name)


@aten("t", "numpy_T")
def _t(cx, a):
    x = cx.graph(a.self)
    if len(cx.shape(x)) < 2:
        return cx.identity(x)
    return cx.b.permute(x, list(range(len(cx.shape(x))))[::-1], name=cx.name)


@aten("contiguous", "clone", "alias", "detach", "lift_fresh_copy", "lift_fresh", "_to_copy",
      "to", "type_as", "_assert_tensor_metadata")
def _identity(cx, a):
    x = a.get("self", a.get("input"))
    dtype = a.get("dtype")
    if dtype is not None and str(dtype) not in ("torch.float32", "6"):
        raise Unsupported(f"conversion to {dtype} (only float32 is supported)")
    return cx.identity(cx.graph(x))


@aten("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")
def _dropout(cx, a):
    if a.train:
        raise Unsupported("dropout with train=True (random at inference); use "
                          "F.dropout(x, p, training=self.training) and module.eval()")
    return cx.b.dropout(cx.graph(a.input), cx.float(a.p), name=cx.name)


@aten("cat", "concat", "concatenate")
def _cat(cx, a):
    xs = [cx.tensor(t) for t in a.tensors]
    if len(xs) == 1:
        return cx.identity(xs[0])
    return cx.b.cat(xs, cx.int(a.dim), name=cx.name)


@aten("stack")
def _stack(cx, a):
    xs = [cx.tensor(t) for t in a.tensors]
    rank = len(xs[0].shape) + 1
    d = cx.int(a.dim) % rank
    ys = []
    for i, x in enumerate(xs):
        s = list(x.shape)
        s.insert(d, 1)
        ys.append(cx.b.reshape(x, [-1 if v is None else v for v in s], name=cx.aux(f"unsq{i}")))
    return cx.b.cat(ys, d, name=cx.name)


def _as_list(t):
    return list(t) if isinstance(t, (list, tuple)) else [t]


@aten("split", "split_with_sizes", "split_copy", "split_with_sizes_copy")
def _split(cx, a):
    x = cx.graph(a.self)
    size = a.get("split_size", a.get("split_sizes"))
    size = cx.ints(size) if isinstance(size, (list, tuple)) else cx.int(size)
    return _as_list(cx.b.split(x, size, cx.int(a.dim), name=cx.name))


@aten("chunk")
def _chunk(cx, a):
    x = cx.graph(a.self)
    d = cx.int(a.dim)
    n = cx.shape(x)[d]
    if n is None:
        raise Unsupported("chunk along the batch dimension")
    size = -(-n // cx.int(a.chunks))
    return _as_list(cx.b.split(x, size, d, name=cx.name))


def _narrow(cx, x, d, start, length):
    """Rows start..start+length of dim d, via split (kept piece is the middle one)."""
    shape = cx.shape(x)
    d %= len(shape)
    n = shape[d]
    if n is None:
        raise Unsupported("slicing the batch dimension")
    if start == 0 and length == n:
        return cx.identity(x)
    sections = [s for s in (start, length, n - start - length)]
    pieces = [s for s in sections if s > 0]
    parts = _as_list(cx.b.split(x, pieces, d, name=cx.aux("split")))
    return parts[1 if start > 0 else 0]


@aten("slice", "slice_copy")
def _slice(cx, a):
    x = cx.graph(a.self)
    shape = cx.shape(x)
    d = cx.int(a.dim) % len(shape)
    if cx.int(a.step) != 1:
        raise Unsupported(f"slicing with step {a.step}")
    n = shape[d]
    start = 0 if a.start is None else a.start
    end = a.end
    if n is None:
        if start in (0,) and (end is None or end is BATCH or
                              (isinstance(end, int) and end >= 2**62)):
            return cx.identity(x)
        raise Unsupported("slicing the batch dimension")
    start, end = cx.int(start), n if end is None else cx.int(end)
    start = max(0, min(n, start + n if start < 0 else start))
    end = max(start, min(n, end + n if end < 0 else end))
    if end == start:
        raise Unsupported("an empty slice")
    y = _narrow(cx, x, d, start, end - start)
    return cx.identity(y)


@aten("narrow")
def _narrow_op(cx, a):
    return cx.identity(_narrow(cx, cx.graph(a.self), cx.int(a.dim), cx.int(a.start),
                               cx.int(a.length)))


@aten("select")
def _select(cx, a):
    x = cx.graph(a.self)
    shape = cx.shape(x)
    d = cx.int(a.dim) % len(shape)
    n = shape[d]
    if n is None:
        raise Unsupported("selecting one element of the batch")
    i = cx.int(a.index) % n
    y = _narrow(cx, x, d, i, 1)
    out = [v for j, v in enumerate(cx.shape(y)) if j != d]
    return cx.b.reshape(y, [-1 if v is None else v for v in out], name=cx.name)


@aten("unbind")
def _unbind(cx, a):
    x = cx.graph(a.self)
    shape = cx.shape(x)
    d = cx.int(a.dim) % len(shape)
    if shape[d] is None:
        raise Unsupported("unbind along the batch dimension")
    parts = _as_list(cx.b.split(x, 1, d, name=cx.aux("split")))
    out = [-1 if v is None else v for j, v in enumerate(shape) if j != d]
    return [cx.b.reshape(p, out, name=cx.aux(str(i))) for i, p in enumerate(parts)]


@aten("expand", "expand_as")
def _expand(cx, a):
    x = cx.graph(a.self)
    have, out = tuple(cx.shape(x)), cx.out_shape()
    if out == have:
        return cx.identity(x)
    lead = len(out) - len(have)
    grows = [i for i, o in enumerate(out) if i < lead or have[i - lead] != o]
    if any(out[i] is None for i in grows):
        raise Unsupported(f"expand of {have} to {out} across the batch dimension (a "
                          f"constant repeated per sample, as a class token)")
    # x times ones of the new sizes: the broadcast kernel copies, and x * 1 is exact
    ones = np.ones([out[i] if i in grows else 1 for i in range(len(out))], np.float32)
    return cx.b.mul(x, ones, name=cx.name)


@aten("channel_shuffle", "native_channel_shuffle")
def _channel_shuffle(cx, a):
    return cx.b.channel_shuffle(cx.graph(a.self), cx.int(a.groups), name=cx.name)


@aten("pixel_shuffle")
def _pixel_shuffle(cx, a):
    x = cx.graph(a.self)
    r = cx.int(a.upscale_factor)
    n, c, h, w = cx.shape(x)
    y = cx.b.reshape(x, [-1, c // (r * r), r, r, h, w], name=cx.aux("split"))
    y = cx.b.permute(y, [0, 1, 4, 2, 5, 3], name=cx.aux("permute"))
    return cx.b.reshape(y, [-1, c // (r * r), h * r, w * r], name=cx.name)


# -- elementwise arithmetic -----------------------------------------------------------------
def _scaled(cx, v, alpha):
    if _is_one(alpha):
        return v
    if isinstance(v, Const):
        return Const(v.value * alpha, None)
    if not hasattr(v, "shape"):
        return v * alpha
    return cx.b.mul(cx.tensor(v), cx.scalar(float(alpha)), name=cx.aux("alpha"))


@aten("add")
def _add(cx, a):
    other = _scaled(cx, a.other, a.get("alpha"))
    return cx.b.add(cx.tensor(a.self), cx.tensor(other), name=cx.name)


@aten("sub")
def _sub(cx, a):
    other = _scaled(cx, a.other, a.get("alpha"))
    return cx.b.sub(cx.tensor(a.self), cx.tensor(other), name=cx.name)


@aten("rsub")
def _rsub(cx, a):
    me = _scaled(cx, a.self, a.get("alpha"))
    return cx.b.sub(cx.tensor(a.other), cx.tensor(me), name=cx.name)


@aten("mul")
def _mul(cx, a):
    return cx.b.mul(cx.tensor(a.self), cx.tensor(a.other), name=cx.name)


@aten("div")
def _div(cx, a):
    if a.get("rounding_mode") is not None:
        raise Unsupported(f"division with rounding_mode={a.rounding_mode!r}")
    return cx.b.div(cx.tensor(a.self), cx.tensor(a.other), name=cx.name)


@aten("maximum")
def _maximum(cx, a):
    return cx.b.maximum(cx.tensor(a.self), cx.tensor(a.other), name=cx.name)


@aten("minimum")
def _minimum(cx, a):
    return cx.b.minimum(cx.tensor(a.self), cx.tensor(a.other), name=cx.name)


@aten("neg")
def _neg(cx, a):
    return cx.b.mul(cx.graph(a.self), cx.scalar(-1.0), name=cx.name)


@aten("abs")
def _abs(cx, a):
    return cx.b.abs(cx.graph(a.self), name=cx.name)


@aten("reciprocal")
def _reciprocal(cx, a):
    return cx.b.div(cx.scalar(1.0), cx.graph(a.self), name=cx.name)


@aten("square")
def _square(cx, a):
    x = cx.graph(a.self)
    return cx.b.mul(x, x, name=cx.name)


@aten("pow")
def _pow(cx, a):
    e = a.exponent
    if isinstance(e, Const) and e.value.numel() == 1:
        e = float(e.value)
    if not isinstance(a.self, Const) and isinstance(e, (int, float)):
        x = cx.graph(a.self)
        if e == 1:
            return cx.identity(x)
        if e == 2:
            return cx.b.mul(x, x, name=cx.name)
        if e == -1:
            return cx.b.div(cx.scalar(1.0), x, name=cx.name)
    raise Unsupported(f"pow with exponent {e} (only 1, 2 and -1 map to engine ops)")


# -- padding and resizing -------------------------------------------------------------------
@aten("constant_pad_nd")
def _constant_pad(cx, a):
    return cx.b.pad(cx.graph(a.self), cx.ints(a.pad), "constant", cx.float(a.value),
                    name=cx.name)


@aten("pad")
def _pad(cx, a):
    mode = a.mode or "constant"
    if mode not in ("constant", "reflect", "replicate"):
        raise Unsupported(f"padding mode {mode!r} (constant, reflect, replicate are supported)")
    value = 0.0 if a.value is None else cx.float(a.value)
    return cx.b.pad(cx.graph(a.self), cx.ints(a.pad), mode, value, name=cx.name)


@aten("roll")
def _roll(cx, a):
    if not a.dims:
        raise Unsupported("roll without dims (over the flattened tensor)")
    return cx.b.roll(cx.graph(a.self), cx.ints(a.shifts), cx.ints(a.dims), name=cx.name)


@aten("reflection_pad1d", "reflection_pad2d", "reflection_pad3d")
def _reflection_pad(cx, a):
    return cx.b.pad(cx.graph(a.self), cx.ints(a.padding), "reflect", name=cx.name)


@aten("replication_pad1d", "replication_pad2d", "replication_pad3d")
def _replication_pad(cx, a):
    return cx.b.pad(cx.graph(a.self), cx.ints(a.padding), "replicate", name=cx.name)


def _upsample(cx, a, mode, align_corners):
    x = cx.graph(a.get("input", a.get("self")))
    r = len(cx.shape(x)) - 2
    size = list(cx.out_shape()[2:])
    factors = a.get("scale_factors")
    if factors is None:              # .default overloads: scales_h / scales_w (None or <= 0)
        keys = {1: ["scales"], 2: ["scales_h", "scales_w"],
                3: ["scales_d", "scales_h", "scales_w"]}[r]
        got = [a.get(k) for k in keys]
        factors = got if all(g is not None and float(g) > 0 for g in got) else None
    scales = None
    if factors is not None:
        scales = [float(f) for f in factors]
        if len(scales) == 1:
            scales = scales * r
        want = [int(math.floor(float(n) * s)) for n, s in zip(cx.shape(x)[2:], scales)]
        if want != size:             # recompute_scale_factor-style sizes: torch uses in/out
            scales = None
    return cx.b._node("interpolate", [x], dict(size=size, scale_factor=scales, mode=mode,
                                               align_corners=align_corners), cx.name)


@aten("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d")
def _upsample_nearest(cx, a):
    return _upsample(cx, a, "nearest", None)


@aten("upsample_bilinear2d")
def _upsample_bilinear(cx, a):
    return _upsample(cx, a, "bilinear", bool(a.align_corners))
