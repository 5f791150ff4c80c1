"""Builder: write a model the way you write ``forward`` with ``torch.nn.functional``.

    b = engine.Builder()
    x = b.input("x", (None, 3, 224, 224))
    y = b.relu(b.conv2d(x, w, bias, stride=1, padding=1))
    b.output(y, "logits")
    model = b.build()

Method names, argument names and defaults are PyTorch's.  Weights are NumPy arrays (torch
tensors are accepted and converted).  Shapes are inferred as you go, so a mistake raises at
the line that made it, naming the layer.
"""

import itertools

import numpy as np

from .errors import GraphError
from .ir import Model, Node, Value, _jsonable
from .ops import get_op


class Tensor:
    """A value under construction: a name and its (possibly symbolic-batch) shape."""
    __slots__ = ("name", "shape", "_builder")

    def __init__(self, name, shape, builder):
        self.name, self.shape, self._builder = name, tuple(shape), builder

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"Tensor({self.name!r}, shape={self.shape})"

    # Arithmetic reads like PyTorch code.
    def __add__(self, o): return self._builder.add(self, o)
    def __radd__(self, o): return self._builder.add(o, self)
    def __sub__(self, o): return self._builder.sub(self, o)
    def __rsub__(self, o): return self._builder.sub(o, self)
    def __mul__(self, o): return self._builder.mul(self, o)
    def __rmul__(self, o): return self._builder.mul(o, self)
    def __truediv__(self, o): return self._builder.div(self, o)
    def __rtruediv__(self, o): return self._builder.div(o, self)
    def __matmul__(self, o): return self._builder.matmul(self, o)


def _ntuple(v, n, what):
    if isinstance(v, (int, np.integer)):
        return [int(v)] * n
    v = [int(i) for i in v]
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise GraphError(f"{what} needs {n} values, got {v}")
    return v


def _to_numpy(a):
    if hasattr(a, "detach"):          # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    try:
        kind = (a if isinstance(a, np.ndarray) else np.asarray(a)).dtype
    except ValueError:                # ragged nested lists
        kind = None
    if kind is None or kind.kind not in "biuf":
        raise GraphError(f"weights must be real numbers (a NumPy array, a torch tensor or "
                         f"nested lists), got {type(a).__name__} of dtype {kind}")
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


class Builder:
    def __init__(self):
        self._inputs, self._outputs, self._nodes = [], [], []
        self._constants, self._shapes = {}, {}
        self._node_names = set()
        self._counter = itertools.count()
        self.metadata = {}

    # -- graph plumbing ------------------------------------------------------------------
    def input(self, name, shape, dtype="float32"):
        """Declare an input; ``None`` in ``shape`` is the symbolic batch dimension."""
        self._check_new_name(name)
        v = Value(name, tuple(shape), dtype)
        self._inputs.append(v)
        self._shapes[name] = v.shape
        return Tensor(name, v.shape, self)

    def constant(self, array, name=None):
        """A named float32 constant (weights); returned as a Tensor usable anywhere."""
        name = name or self._unique("const")
        self._check_new_name(name)
        arr = _to_numpy(array)
        self._constants[name] = arr
        self._shapes[name] = arr.shape
        return Tensor(name, arr.shape, self)

    def output(self, value, name=None):
        """Mark ``value`` as a model output, optionally renaming it."""
        value = self._value(value)
        if name is not None and name != value.name:
            value = self.identity(value, name=name)
        if value.name in self._outputs:
            raise GraphError(f"{value.name!r} is already an output")
        self._outputs.append(value.name)
        return value

    def build(self, metadata=None):
        meta = dict(self.metadata)
        meta.update(metadata or {})
        return Model(self._inputs, self._outputs, self._nodes, self._constants, meta)

    def _unique(self, stem):
        while True:
            name = f"{stem}_{next(self._counter)}"
            if name not in self._shapes and name not in self._node_names:
                return name

    def _check_new_name(self, name):
        if not isinstance(name, str) or not name:
            raise GraphError(f"value names must be non-empty strings, got {name!r}")
        if name in self._shapes:
            raise GraphError(f"the name {name!r} is already used")

    def _value(self, v, const_name=None):
        """A Tensor for ``v``: an existing Tensor, or a constant made from an array/scalar."""
        if isinstance(v, Tensor):
            if v._builder is not self:
                raise GraphError(f"{v.name!r} belongs to another Builder")
            return v
        if v is None:
            return None
        return self.constant(v, const_name)

    def _node(self, op, inputs, attrs, name=None, n_outputs=1, weights=()):
        """Add a node; ``weights`` are (suffix, array-or-Tensor-or-None) extra inputs."""
        name = name or self._unique(op)
        if name in self._node_names:
            raise GraphError(f"node name {name!r} is already used")
        ins = [self._value(i).name for i in inputs]
        for suffix, w in weights:
            t = self._value(w, f"{name}.{suffix}") if w is not None else None
            ins.append(t.name if t is not None else "")
        while ins and ins[-1] == "":           # trailing absent optionals are dropped
            ins.pop()
        outs = [name] if n_outputs == 1 else [f"{name}:{i}" for i in range(n_outputs)]
        for o in outs:
            self._check_new_name(o)
        node = Node(op, name, ins, outs, _jsonable(attrs))
        shapes = get_op(op).infer_shapes(node, [self._shapes[i] if i else None for i in ins])
        self._nodes.append(node)
        self._node_names.add(name)
        result = []
        for o, s in zip(outs, shapes):
            self._shapes[o] = s
            result.append(Tensor(o, s, self))
        return result[0] if n_outputs == 1 else result

    def _spatial(self, x, rank_hint=None):
        return (rank_hint if rank_hint is not None else self._value(x).ndim - 2)

    # -- convolution ---------------------------------------------------------------------
    def _conv(self, r, input, weight, bias, stride, padding, dilation, groups, name):
        w = _to_numpy(weight) if not isinstance(weight, Tensor) else weight
        k = list(w.shape[2:])
        if len(k) != r:
            raise GraphError(f"conv{r}d expects a weight of rank {r + 2}, got shape {tuple(w.shape)}")
        stride, dilation = _ntuple(stride, r, "stride"), _ntuple(dilation, r, "dilation")
        if isinstance(padding, str):
            if padding == "valid":
                pads = [[0, 0]] * r
            elif padding == "same":
                if any(s != 1 for s in stride):
                    raise GraphError("padding='same' requires stride 1 (as in PyTorch)")
                totals = [d * (kk - 1) for d, kk in zip(dilation, k)]
                pads = [[t // 2, t - t // 2] for t in totals]
            else:
                raise GraphError(f"padding must be 'same', 'valid', ints or pairs, got {padding!r}")
        elif isinstance(padding, (int, np.integer)):
            pads = [[int(padding)] * 2 for _ in range(r)]
        else:
            padding = list(padding)
            if all(isinstance(p, (int, np.integer)) for p in padding):
                pads = [[int(p), int(p)] for p in _ntuple(padding, r, "padding")]
            else:                                   # ((begin, end), ...) per spatial dim
                pads = [[int(p[0]), int(p[1])] for p in padding]
                if len(pads) != r:
                    raise GraphError(f"padding needs {r} (begin, end) pairs, got {padding}")
        attrs = dict(stride=stride, padding=pads, dilation=dilation, groups=int(groups),
                     activation=None)
        return self._node("conv", [input], attrs, name, weights=[("weight", w), ("bias", bias)])

    def conv1d(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, name=None):
        return self._conv(1, input, weight, bias, stride, padding, dilation, groups, name)

    def conv2d(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, name=None):
        """2-D convolution.  ``padding``: int, (ph, pw), 'same', 'valid', or
        ((top, bottom), (left, right)) for asymmetric padding."""
        return self._conv(2, input, weight, bias, stride, padding, dilation, groups, name)

    def conv3d(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, name=None):
        return self._conv(3, input, weight, bias, stride, padding, dilation, groups, name)

    def _conv_t(self, r, input, weight, bias, stride, padding, output_padding, groups, dilation,
                name):
        attrs = dict(stride=_ntuple(stride, r, "stride"), padding=_ntuple(padding, r, "padding"),
                     output_padding=_ntuple(output_padding, r, "output_padding"),
                     dilation=_ntuple(dilation, r, "dilation"), groups=int(groups),
                     activation=None)
        return self._node("conv_transpose", [input], attrs, name,
                          weights=[("weight", weight), ("bias", bias)])

    def conv_transpose1d(self, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                         groups=1, dilation=1, name=None):
        return self._conv_t(1, input, weight, bias, stride, padding, output_padding, groups,
                            dilation, name)

    def conv_transpose2d(self, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                         groups=1, dilation=1, name=None):
        return self._conv_t(2, input, weight, bias, stride, padding, output_padding, groups,
                            dilation, name)

    def conv_transpose3d(self, input, weight, bias=None, stride=1, padding=0, output_padding=0,
                         groups=1, dilation=1, name=None):
        return self._conv_t(3, input, weight, bias, stride, padding, output_padding, groups,
                            dilation, name)

    # -- pooling ---------------------------------------------------------------------------
    def _pool(self, op, r, input, kernel_size, stride, padding, dilation, ceil_mode, name,
              count_include_pad=None):
        k = _ntuple(kernel_size, r, "kernel_size")
        attrs = dict(kernel_size=k,
                     stride=k if stride is None or stride == [] else _ntuple(stride, r, "stride"),
                     padding=_ntuple(padding, r, "padding"), ceil_mode=bool(ceil_mode))
        if op == "avg_pool":
            attrs["count_include_pad"] = bool(count_include_pad)
        else:
            attrs["dilation"] = _ntuple(dilation, r, "dilation")
        return self._node(op, [input], attrs, name)

    def max_pool1d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   name=None):
        return self._pool("max_pool", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def max_pool2d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   name=None):
        return self._pool("max_pool", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def max_pool3d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   name=None):
        return self._pool("max_pool", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def min_pool1d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   name=None):
        """Min pooling (``-max_pool1d(-x)`` in PyTorch)."""
        return self._pool("min_pool", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def min_pool2d(self, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   name=None):
        """Min pooling (``-max_pool2d(-x)`` in PyTorch)."""
        return self._pool("min_pool", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def avg_pool1d(self, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                   count_include_pad=True, name=None):
        return self._pool("avg_pool", 1, input, kernel_size, stride, padding, 1, ceil_mode, name,
                          count_include_pad)

    def avg_pool2d(self, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                   count_include_pad=True, name=None):
        return self._pool("avg_pool", 2, input, kernel_size, stride, padding, 1, ceil_mode, name,
                          count_include_pad)

    def avg_pool3d(self, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                   count_include_pad=True, name=None):
        return self._pool("avg_pool", 3, input, kernel_size, stride, padding, 1, ceil_mode, name,
                          count_include_pad)

    def _adaptive(self, op, r, input, output_size, name):
        size = _ntuple(output_size, r, "output_size")
        return self._node(op, [input], dict(output_size=size), name)

    def adaptive_avg_pool1d(self, input, output_size, name=None):
        return self._adaptive("adaptive_avg_pool", 1, input, output_size, name)

    def adaptive_avg_pool2d(self, input, output_size, name=None):
        return self._adaptive("adaptive_avg_pool", 2, input, output_size, name)

    def adaptive_avg_pool3d(self, input, output_size, name=None):
        return self._adaptive("adaptive_avg_pool", 3, input, output_size, name)

    def adaptive_max_pool1d(self, input, output_size, name=None):
        return self._adaptive("adaptive_max_pool", 1, input, output_size, name)

    def adaptive_max_pool2d(self, input, output_size, name=None):
        return self._adaptive("adaptive_max_pool", 2, input, output_size, name)

    def adaptive_max_pool3d(self, input, output_size, name=None):
        return self._adaptive("adaptive_max_pool", 3, input, output_size, name)

    def global_avg_pool(self, input, name=None):
        """Average over all spatial dims, keeping them as size 1 (N, C, 1, ..., 1)."""
        x = self._value(input)
        return self._adaptive("adaptive_avg_pool", x.ndim - 2, x, 1, name)

    def global_max_pool(self, input, name=None):
        x = self._value(input)
        return self._adaptive("adaptive_max_pool", x.ndim - 2, x, 1, name)

    # -- dense -----------------------------------------------------------------------------
    def linear(self, input, weight, bias=None, name=None):
        return self._node("linear", [input], dict(activation=None), name,
                          weights=[("weight", weight), ("bias", bias)])

    def matmul(self, input, other, name=None):
        return self._node("matmul", [input, other], {}, name)

    # -- elementwise -----------------------------------------------------------------------
    def add(self, input, other, name=None):
        return self._node("add", [input, other], {}, name)

    def sub(self, input, other, name=None):
        return self._node("sub", [input, other], {}, name)

    def mul(self, input, other, name=None):
        return self._node("mul", [input, other], {}, name)

    def div(self, input, other, name=None):
        return self._node("div", [input, other], {}, name)

    def maximum(self, input, other, name=None):
        return self._node("maximum", [input, other], {}, name)

    def minimum(self, input, other, name=None):
        return self._node("minimum", [input, other], {}, name)

    def relu(self, input, name=None):
        return self._node("relu", [input], {}, name)

    def relu6(self, input, name=None):
        return self._node("relu6", [input], {}, name)

    def leaky_relu(self, input, negative_slope=0.01, name=None):
        return self._node("leaky_relu", [input], dict(negative_slope=float(negative_slope)), name)

    def prelu(self, input, weight, name=None):
        return self._node("prelu", [input], {}, name, weights=[("weight", weight)])

    def sigmoid(self, input, name=None):
        return self._node("sigmoid", [input], {}, name)

    def tanh(self, input, name=None):
        return self._node("tanh", [input], {}, name)

    def silu(self, input, name=None):
        return self._node("silu", [input], {}, name)

    def hardswish(self, input, name=None):
        return self._node("hardswish", [input], {}, name)

    def hardsigmoid(self, input, name=None):
        return self._node("hardsigmoid", [input], {}, name)

    def gelu(self, input, approximate="none", name=None):
        return self._node("gelu", [input], dict(approximate=approximate), name)

    def elu(self, input, alpha=1.0, name=None):
        return self._node("elu", [input], dict(alpha=float(alpha)), name)

    def selu(self, input, name=None):
        return self._node("selu", [input], {}, name)

    def softplus(self, input, beta=1.0, threshold=20.0, name=None):
        return self._node("softplus", [input], dict(beta=float(beta),
                                                    threshold=float(threshold)), name)

    def mish(self, input, name=None):
        return self._node("mish", [input], {}, name)

    def clip(self, input, min=None, max=None, name=None):
        """``torch.clamp``: either bound may be None."""
        return self._node("clip", [input], dict(min=None if min is None else float(min),
                                                 max=None if max is None else float(max)), name)

    clamp = clip

    def hardtanh(self, input, min_val=-1.0, max_val=1.0, name=None):
        return self.clip(input, min_val, max_val, name=name)

    def softmax(self, input, dim, name=None):
        return self._node("softmax", [input], dict(dim=int(dim)), name)

    def log_softmax(self, input, dim, name=None):
        return self._node("log_softmax", [input], dict(dim=int(dim)), name)

    # -- normalisation ---------------------------------------------------------------------
    def batch_norm(self, input, running_mean, running_var, weight=None, bias=None, eps=1e-5,
                   name=None):
        """Inference BatchNorm with running statistics (any rank, channels on dim 1)."""
        return self._node("batch_norm", [input], dict(eps=float(eps)), name,
                          weights=[("running_mean", running_mean), ("running_var", running_var),
                                   ("weight", weight), ("bias", bias)])

    def layer_norm(self, input, normalized_shape, weight=None, bias=None, eps=1e-5, name=None):
        shape = [int(normalized_shape)] if isinstance(normalized_shape, (int, np.integer)) \
            else [int(s) for s in normalized_shape]
        return self._node("layer_norm", [input], dict(normalized_shape=shape, eps=float(eps)),
                          name, weights=[("weight", weight), ("bias", bias)])

    def instance_norm(self, input, weight=None, bias=None, eps=1e-5, name=None):
        return self._node("instance_norm", [input], dict(eps=float(eps)), name,
                          weights=[("weight", weight), ("bias", bias)])

    def group_norm(self, input, num_groups, weight=None, bias=None, eps=1e-5, name=None):
        return self._node("group_norm", [input], dict(num_groups=int(num_groups), eps=float(eps)),
                          name, weights=[("weight", weight), ("bias", bias)])

    def local_response_norm(self, input, size, alpha=1e-4, beta=0.75, k=1.0, name=None):
        return self._node("local_response_norm", [input],
                          dict(size=int(size), alpha=float(alpha), beta=float(beta), k=float(k)),
                          name)

    def dropout(self, input, p=0.5, name=None):
        """Identity at inference; kept in the graph until the optimiser removes it."""
        return self._node("dropout", [input], dict(p=float(p)), name)

    def identity(self, input, name=None):
        return self._node("identity", [input], {}, name)

    # -- shape -----------------------------------------------------------------------------
    def flatten(self, input, start_dim=0, end_dim=-1, name=None):
        return self._node("flatten", [input], dict(start_dim=int(start_dim), end_dim=int(end_dim)),
                          name)

    def reshape(self, input, shape, name=None):
        return self._node("reshape", [input], dict(shape=[int(s) for s in shape]), name)

    view = reshape

    def permute(self, input, dims, name=None):
        return self._node("permute", [input], dict(dims=[int(d) for d in dims]), name)

    def transpose(self, input, dim0, dim1, name=None):
        n = self._value(input).ndim
        dims = list(range(n))
        d0, d1 = dim0 % n, dim1 % n
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self.permute(input, dims, name=name)

    def cat(self, tensors, dim=0, name=None):
        return self._node("concat", list(tensors), dict(dim=int(dim)), name)

    concat = cat

    def split(self, tensor, split_size_or_sections, dim=0, name=None):
        x = self._value(tensor)
        d = dim % x.ndim
        size = x.shape[d]
        if size is None:
            raise GraphError("cannot split along the symbolic batch dimension")
        if isinstance(split_size_or_sections, (int, np.integer)):
            s = int(split_size_or_sections)
            if s <= 0:
                raise GraphError(f"split size must be positive, got {s}")
            n = -(-size // s)
            arg = s
        else:
            arg = [int(s) for s in split_size_or_sections]
            n = len(arg)
        return self._node("split", [x], dict(split_size_or_sections=arg, dim=int(dim)), name,
                          n_outputs=n)

    def channel_shuffle(self, input, groups, name=None):
        return self._node("channel_shuffle", [input], dict(groups=int(groups)), name)

    def pad(self, input, pad, mode="constant", value=None, name=None):
        return self._node("pad", [input], dict(pad=[int(p) for p in pad], mode=mode,
                                               value=0.0 if value is None else float(value)), name)

    def interpolate(self, input, size=None, scale_factor=None, mode="nearest",
                    align_corners=None, name=None):
        """``F.interpolate`` (nearest, bilinear).  The output size is resolved now."""
        x = self._value(input)
        r = x.ndim - 2
        if (size is None) == (scale_factor is None):
            raise GraphError("interpolate needs exactly one of size and scale_factor")
        if size is not None:
            out, scales = _ntuple(size, r, "size"), None
        else:
            scales = ([float(scale_factor)] * r if np.isscalar(scale_factor)
                      else [float(s) for s in scale_factor])
            if len(scales) != r:
                raise GraphError(f"scale_factor needs {r} values, got {scale_factor}")
            out = [int(np.floor(s * f)) for s, f in zip(x.shape[2:], scales)]
        return self._node("interpolate", [x], dict(size=out, scale_factor=scales, mode=mode,
                                                   align_corners=align_corners), name)

    upsample = interpolate

    def mean(self, input, dim, keepdim=False, name=None):
        dims = [int(dim)] if isinstance(dim, (int, np.integer)) else [int(d) for d in dim]
        return self._node("mean", [input], dict(dim=dims, keepdim=bool(keepdim)), name)
