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

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from .errors import GraphError
from .ir import Model, Node, Value, _jsonable
from .ops import get_op


class Tensor:
    """A value under construction: a name and its (possibly symbolic-batch) shape."""
    __slots__ = ("name", "shape", "_builder")

    def __init__(self, name: str, shape: Sequence[Optional[int]], builder: Builder) -> None:
        """Made by the ``Builder`` methods; ``None`` in ``shape`` is the symbolic batch."""
        self.name, self.shape, self._builder = name, tuple(shape), builder

    @property
    def ndim(self) -> int:
        """The number of dimensions (``len(shape)``), as ``torch.Tensor.ndim``."""
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


# Argument types of the Builder methods.
# A Tensor of this Builder, or weights / a constant: a NumPy array, a torch tensor, nested
# lists or a scalar (converted to a float32 constant).
TensorLike = Union[Tensor, ArrayLike]
# One int for every spatial dim, or one per dim (PyTorch's ``_size_any_t``).
Size = Union[int, Sequence[int]]
OptSize = Union[int, Sequence[Optional[int]]]   # None entries: keep the input's size
# Dimensions; ``None`` is the symbolic batch.
Shape = Sequence[Optional[int]]
# Convolution padding: an int or one per spatial dim, 'same' / 'valid', or a
# (begin, end) pair per spatial dim.
ConvPadding = Union[int, str, Sequence[int], Sequence[Sequence[int]]]


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
    """Writes a ``Model`` the way ``forward`` is written with ``torch.nn.functional``.

    Declare the inputs, call one method per layer (names, arguments and defaults are
    PyTorch's; weights are NumPy arrays or torch tensors), mark the outputs, then ``build``:

        b = engine.Builder()
        x = b.input("x", (None, 3, 224, 224))
        y = b.relu(b.conv2d(x, w, bias, stride=1, padding=1))
        b.output(y, "logits")
        model = b.build()

    Shapes are inferred at every call, so a mistake raises ``GraphError`` at the line that
    made it, naming the layer.  Every layer method takes ``name``: the node's name, which
    is also its output's (default: the op and a counter, ``conv_0``); its weights become
    constants ``<name>.weight``, ``<name>.bias``...  ``metadata`` (a dict) goes into the
    built model.
    """

    def __init__(self) -> None:
        """An empty graph: no inputs, nodes or outputs yet."""
        self._inputs, self._outputs, self._nodes = [], [], []
        self._constants, self._shapes = {}, {}
        self._node_names = set()
        self._counter = itertools.count()
        self.metadata = {}

    # -- graph plumbing ------------------------------------------------------------------
    def input(self, name: str, shape: Shape, dtype: str = "float32") -> Tensor:
        """Declare an input; ``None`` in ``shape`` is the symbolic batch dimension."""
        self._check_new_name(name)
        v = Value(name, tuple(shape), dtype)
        self._inputs.append(v)
        self._shapes[name] = v.shape
        return Tensor(name, v.shape, self)

    def constant(self, array: ArrayLike, name: Optional[str] = None) -> Tensor:
        """A named float32 constant (weights); returned as a Tensor usable anywhere."""
        name = self._unique("const") if name is None else name
        self._check_new_name(name)
        arr = _to_numpy(array)
        self._constants[name] = arr
        self._shapes[name] = arr.shape
        return Tensor(name, arr.shape, self)

    def output(self, value: Tensor, name: Optional[str] = None) -> Tensor:
        """Mark ``value`` as a model output, optionally renaming it."""
        value = self._value(value)
        if name is not None and name != value.name:
            value = self.identity(value, name=name)
        if value.name in self._outputs:
            raise GraphError(f"{value.name!r} is already an output")
        self._outputs.append(value.name)
        return value

    def build(self, metadata: Optional[Mapping[str, Any]] = None) -> Model:
        """The validated ``Model`` of the graph so far; ``metadata`` (JSON-serialisable)
        is added to ``self.metadata``, its keys winning."""
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

    def conv1d(self, input: Tensor, weight: TensorLike, bias: Optional[TensorLike] = None,
               stride: Size = 1, padding: ConvPadding = 0, dilation: Size = 1, groups: int = 1,
               name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.conv1d (weight (C_out, C_in / groups, kW)); ``padding`` as
        in ``conv2d``, e.g. ``((left, right),)``.  Returns the output Tensor."""
        return self._conv(1, input, weight, bias, stride, padding, dilation, groups, name)

    def conv2d(self, input: Tensor, weight: TensorLike, bias: Optional[TensorLike] = None,
               stride: Size = 1, padding: ConvPadding = 0, dilation: Size = 1, groups: int = 1,
               name: Optional[str] = None) -> Tensor:
        """2-D convolution.  ``padding``: int, (ph, pw), 'same', 'valid', or
        ((top, bottom), (left, right)) for asymmetric padding."""
        return self._conv(2, input, weight, bias, stride, padding, dilation, groups, name)

    def conv3d(self, input: Tensor, weight: TensorLike, bias: Optional[TensorLike] = None,
               stride: Size = 1, padding: ConvPadding = 0, dilation: Size = 1, groups: int = 1,
               name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.conv3d (weight (C_out, C_in / groups, kD, kH, kW));
        ``padding`` as in ``conv2d``, with three values or (begin, end) pairs.  Returns the
        output Tensor."""
        return self._conv(3, input, weight, bias, stride, padding, dilation, groups, name)

    def _conv_t(self, r, input, weight, bias, stride, padding, output_padding, groups, dilation,
                name):
        attrs = dict(stride=_ntuple(stride, r, "stride"), padding=_ntuple(padding, r, "padding"),
                     output_padding=_ntuple(output_padding, r, "output_padding"),
                     dilation=_ntuple(dilation, r, "dilation"), groups=int(groups),
                     activation=None)
        return self._node("conv_transpose", [input], attrs, name,
                          weights=[("weight", weight), ("bias", bias)])

    def conv_transpose1d(self, input: Tensor, weight: TensorLike,
                         bias: Optional[TensorLike] = None, stride: Size = 1, padding: Size = 0,
                         output_padding: Size = 0, groups: int = 1, dilation: Size = 1,
                         name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.conv_transpose1d (weight (C_in, C_out / groups, kW));
        ``padding`` is an int (no 'same' / pairs).  Returns the output Tensor."""
        return self._conv_t(1, input, weight, bias, stride, padding, output_padding, groups,
                            dilation, name)

    def conv_transpose2d(self, input: Tensor, weight: TensorLike,
                         bias: Optional[TensorLike] = None, stride: Size = 1, padding: Size = 0,
                         output_padding: Size = 0, groups: int = 1, dilation: Size = 1,
                         name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.conv_transpose2d (weight (C_in, C_out / groups, kH, kW));
        ``padding`` and ``output_padding`` are ints or one per spatial dim (no 'same' /
        pairs).  Returns the output Tensor."""
        return self._conv_t(2, input, weight, bias, stride, padding, output_padding, groups,
                            dilation, name)

    def conv_transpose3d(self, input: Tensor, weight: TensorLike,
                         bias: Optional[TensorLike] = None, stride: Size = 1, padding: Size = 0,
                         output_padding: Size = 0, groups: int = 1, dilation: Size = 1,
                         name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.conv_transpose3d (weight (C_in, C_out / groups, kD, kH,
        kW)); ``padding`` and ``output_padding`` are ints or one per spatial dim (no 'same' /
        pairs).  Returns the output Tensor."""
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

    def max_pool1d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, dilation: Size = 1, ceil_mode: bool = False,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.max_pool1d (no ``return_indices``; ``stride`` defaults to
        ``kernel_size``); returns the pooled Tensor."""
        return self._pool("max_pool", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def max_pool2d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, dilation: Size = 1, ceil_mode: bool = False,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.max_pool2d (no ``return_indices``; ``stride`` defaults to
        ``kernel_size``); returns the pooled Tensor."""
        return self._pool("max_pool", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def max_pool3d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, dilation: Size = 1, ceil_mode: bool = False,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.max_pool3d (no ``return_indices``; ``stride`` defaults to
        ``kernel_size``); returns the pooled Tensor."""
        return self._pool("max_pool", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def min_pool1d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, dilation: Size = 1, ceil_mode: bool = False,
                   name: Optional[str] = None) -> Tensor:
        """Min pooling (``-max_pool1d(-x)`` in PyTorch)."""
        return self._pool("min_pool", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def min_pool2d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, dilation: Size = 1, ceil_mode: bool = False,
                   name: Optional[str] = None) -> Tensor:
        """Min pooling (``-max_pool2d(-x)`` in PyTorch)."""
        return self._pool("min_pool", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                          name)

    def avg_pool1d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.avg_pool1d (``stride`` defaults to ``kernel_size``);
        returns the pooled Tensor."""
        return self._pool("avg_pool", 1, input, kernel_size, stride, padding, 1, ceil_mode, name,
                          count_include_pad)

    def avg_pool2d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.avg_pool2d (no ``divisor_override``; ``stride`` defaults
        to ``kernel_size``); returns the pooled Tensor."""
        return self._pool("avg_pool", 2, input, kernel_size, stride, padding, 1, ceil_mode, name,
                          count_include_pad)

    def avg_pool3d(self, input: Tensor, kernel_size: Size, stride: Optional[Size] = None,
                   padding: Size = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.avg_pool3d (no ``divisor_override``; ``stride`` defaults
        to ``kernel_size``); returns the pooled Tensor."""
        return self._pool("avg_pool", 3, input, kernel_size, stride, padding, 1, ceil_mode, name,
                          count_include_pad)

    def _adaptive(self, op, r, input, output_size, name):
        # None keeps that dim's input size, as in PyTorch
        x = self._value(input)
        if not isinstance(output_size, (int, np.integer)) and output_size is not None:
            output_size = list(output_size)
            if len(output_size) == r:
                output_size = [x.shape[x.ndim - r + i] if s is None else s
                               for i, s in enumerate(output_size)]
        if output_size is None or (isinstance(output_size, list) and None in output_size):
            raise GraphError(f"output_size {output_size!r}: None needs the input's size, "
                             f"which is not known here")
        size = _ntuple(output_size, r, "output_size")
        return self._node(op, [input], dict(output_size=size), name)

    def adaptive_avg_pool1d(self, input: Tensor, output_size: OptSize,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.adaptive_avg_pool1d (``output_size`` an int, or a
        list whose None entries keep the input's size); returns the pooled Tensor."""
        return self._adaptive("adaptive_avg_pool", 1, input, output_size, name)

    def adaptive_avg_pool2d(self, input: Tensor, output_size: OptSize,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.adaptive_avg_pool2d (``output_size`` an int, or a
        list whose None entries keep the input's size); returns the pooled Tensor."""
        return self._adaptive("adaptive_avg_pool", 2, input, output_size, name)

    def adaptive_avg_pool3d(self, input: Tensor, output_size: OptSize,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.adaptive_avg_pool3d (``output_size`` an int, or a
        list whose None entries keep the input's size); returns the pooled Tensor."""
        return self._adaptive("adaptive_avg_pool", 3, input, output_size, name)

    def adaptive_max_pool1d(self, input: Tensor, output_size: OptSize,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.adaptive_max_pool1d (no ``return_indices``); returns the
        pooled Tensor."""
        return self._adaptive("adaptive_max_pool", 1, input, output_size, name)

    def adaptive_max_pool2d(self, input: Tensor, output_size: OptSize,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.adaptive_max_pool2d (``output_size`` as for
        adaptive_avg_pool2d; no ``return_indices``); returns the pooled Tensor."""
        return self._adaptive("adaptive_max_pool", 2, input, output_size, name)

    def adaptive_max_pool3d(self, input: Tensor, output_size: OptSize,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.adaptive_max_pool3d (``output_size`` as for
        adaptive_avg_pool2d; no ``return_indices``); returns the pooled Tensor."""
        return self._adaptive("adaptive_max_pool", 3, input, output_size, name)

    def global_avg_pool(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """Average over all spatial dims, keeping them as size 1 (N, C, 1, ..., 1)."""
        x = self._value(input)
        return self._adaptive("adaptive_avg_pool", x.ndim - 2, x, 1, name)

    def global_max_pool(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """Maximum over all spatial dims, keeping them as size 1 (N, C, 1, ..., 1)."""
        x = self._value(input)
        return self._adaptive("adaptive_max_pool", x.ndim - 2, x, 1, name)

    # -- dense -----------------------------------------------------------------------------
    def linear(self, input: Tensor, weight: TensorLike, bias: Optional[TensorLike] = None,
               name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.linear: ``input @ weight.T + bias`` over any leading dims,
        ``weight`` of shape (out_features, in_features)."""
        return self._node("linear", [input], dict(activation=None), name,
                          weights=[("weight", weight), ("bias", bias)])

    def matmul(self, input: TensorLike, other: TensorLike, name: Optional[str] = None) -> Tensor:
        """As torch.matmul (1-D operands and broadcast batch dims included); ``x @ y`` on
        Tensors."""
        return self._node("matmul", [input, other], {}, name)

    def einsum(self, equation: str, *operands: TensorLike, name: Optional[str] = None
               ) -> Tensor:
        """As torch.einsum for the patterns vision models use, lowered to permute, reshape
        and one batched matmul: one operand (a permutation, ``"bhwc->bchw"``) or two
        (``"bhqd,bhkd->bhqk"``, ``"bchw,ck->bkhw"``), each letter once per operand, every
        letter of an operand either in the output or in the other operand (no summing
        over a letter of one side alone), no ``...``.  Anything else raises GraphError."""
        eq = equation.replace(" ", "")
        if "..." in eq:
            raise GraphError(f"einsum {equation!r}: '...' is not supported; name the dims")
        lhs, arrow, out = eq.partition("->")
        ins = lhs.split(",")
        if len(ins) != len(operands) or len(ins) not in (1, 2):
            raise GraphError(f"einsum {equation!r}: one or two operands, as many as the "
                             f"equation names (got {len(operands)})")
        if not arrow:           # implicit output: the letters seen once, in order
            out = "".join(sorted(c for c in set("".join(ins)) if "".join(ins).count(c) == 1))
        xs = [self._value(o) for o in operands]
        for term, x in zip(ins, xs):
            if not term.isalpha() or len(set(term)) != len(term) or len(term) != x.ndim:
                raise GraphError(f"einsum {equation!r}: {term!r} must name each of the "
                                 f"{x.ndim} dims of a {x.shape} operand once")
        if len(set(out)) != len(out) or not set(out) <= set("".join(ins)):
            raise GraphError(f"einsum {equation!r}: the output {out!r} must name dims of "
                             f"the operands, each once")
        if len(ins) == 1:
            if sorted(out) != sorted(ins[0]):
                raise GraphError(f"einsum {equation!r}: sums over dims are not supported")
            return self.permute(xs[0], [ins[0].index(c) for c in out], name=name)
        (ta, tb), (a, b) = ins, xs
        size = {}
        for term, x in ((ta, a), (tb, b)):
            for c, d in zip(term, x.shape):
                if c in size and size[c] != d and 1 not in (d, size[c]):
                    raise GraphError(f"einsum {equation!r}: dim {c!r} is {size[c]} in one "
                                     f"operand and {d} in the other")
                size[c] = d if c not in size or size[c] in (1, None) else size[c]
        batch = [c for c in ta if c in tb and c in out]
        contract = [c for c in ta if c in tb and c not in out]
        free_a = [c for c in ta if c not in tb]
        free_b = [c for c in tb if c not in ta]
        if any(c not in out for c in free_a + free_b):
            raise GraphError(f"einsum {equation!r}: summing over a dim of one operand alone "
                             f"is not supported")
        if [size[c] for c in size].count(None) > 1 or \
                any(size[c] is None for c in contract):
            raise GraphError(f"einsum {equation!r}: the symbolic batch may be one output "
                             f"letter only")
        # the symbolic batch on one side only leads that operand; matmul broadcasts the
        # other over it (a reshape never merges it with other dims)
        lead = [c for c in free_a + free_b if size[c] is None]
        free_a = [c for c in free_a if c not in lead]
        free_b = [c for c in free_b if c not in lead]

        def prod(cs):
            return int(np.prod([size[c] for c in cs])) if cs else 1

        def grouped(x, term, first, second, tag):
            """x permuted to (its lead +) batch + first + second, the last two groups
            merged into one dim each: an operand of matmul."""
            mine = [c for c in lead if c in term]
            order = mine + batch + first + second
            if order != list(term):
                x = self.permute(x, [term.index(c) for c in order], name=self._unique(tag))
            shape = [-1 if size[c] is None else x.shape[i]
                     for i, c in enumerate(mine + batch)] + [prod(first), prod(second)]
            if list(x.shape) != [None if d == -1 else d for d in shape]:
                x = self.reshape(x, shape, name=self._unique(tag))
            return x

        am = grouped(a, ta, free_a, contract, "einsum_a")
        bm = grouped(b, tb, contract, free_b, "einsum_b")
        y = self.matmul(am, bm, name=self._unique("einsum_mm"))
        # back to lead + batch + free_a + free_b, then to the output's order
        have = lead + batch + free_a + free_b
        shape = [-1 if size[c] is None else size[c] for c in have]
        if list(y.shape) != [None if d == -1 else d for d in shape]:
            y = self.reshape(y, shape, name=name if have == list(out) else
                             self._unique("einsum_y"))
        if have != list(out):
            y = self.permute(y, [have.index(c) for c in out], name=name)
        elif name is not None and y.name != name:
            y = self.identity(y, name=name)
        return y

    # -- elementwise -----------------------------------------------------------------------
    def abs(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.abs, as ``maximum(x, -x)``: exact, NaN stays NaN, -0 gives +0."""
        neg = self.mul(input, np.float32(-1.0), name=self._unique("abs_neg"))
        return self.maximum(input, neg, name=name)

    def add(self, input: TensorLike, other: TensorLike, name: Optional[str] = None) -> Tensor:
        """As torch.add (``input + other``), with broadcasting; either operand may be an
        array or a scalar (made a constant)."""
        return self._node("add", [input, other], {}, name)

    def sub(self, input: TensorLike, other: TensorLike, name: Optional[str] = None) -> Tensor:
        """As torch.sub (``input - other``), with broadcasting; either operand may be an
        array or a scalar (made a constant)."""
        return self._node("sub", [input, other], {}, name)

    def mul(self, input: TensorLike, other: TensorLike, name: Optional[str] = None) -> Tensor:
        """As torch.mul (``input * other``), with broadcasting; either operand may be an
        array or a scalar (made a constant)."""
        return self._node("mul", [input, other], {}, name)

    def div(self, input: TensorLike, other: TensorLike, name: Optional[str] = None) -> Tensor:
        """As torch.div (``input / other``, true division), with broadcasting; either
        operand may be an array or a scalar (made a constant)."""
        return self._node("div", [input, other], {}, name)

    def maximum(self, input: TensorLike, other: TensorLike,
                name: Optional[str] = None) -> Tensor:
        """As torch.maximum: the elementwise larger value, with broadcasting."""
        return self._node("maximum", [input, other], {}, name)

    def minimum(self, input: TensorLike, other: TensorLike,
                name: Optional[str] = None) -> Tensor:
        """As torch.minimum: the elementwise smaller value, with broadcasting."""
        return self._node("minimum", [input, other], {}, name)

    def relu(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.relu."""
        return self._node("relu", [input], {}, name)

    def relu6(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.relu6 (``min(max(x, 0), 6)``)."""
        return self._node("relu6", [input], {}, name)

    def leaky_relu(self, input: Tensor, negative_slope: float = 0.01,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.leaky_relu."""
        return self._node("leaky_relu", [input], dict(negative_slope=float(negative_slope)), name)

    def prelu(self, input: Tensor, weight: TensorLike, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.prelu: ``weight`` is 1-D, one slope for all channels or
        one per channel (dim 1)."""
        return self._node("prelu", [input], {}, name, weights=[("weight", weight)])

    def sigmoid(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.sigmoid."""
        return self._node("sigmoid", [input], {}, name)

    def tanh(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.tanh."""
        return self._node("tanh", [input], {}, name)

    def silu(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.silu (``x * sigmoid(x)``, a.k.a. swish)."""
        return self._node("silu", [input], {}, name)

    def hardswish(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.hardswish."""
        return self._node("hardswish", [input], {}, name)

    def hardsigmoid(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.hardsigmoid."""
        return self._node("hardsigmoid", [input], {}, name)

    def gelu(self, input: Tensor, approximate: str = "none",
             name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.gelu; ``approximate``: 'none' (erf) or 'tanh'."""
        return self._node("gelu", [input], dict(approximate=approximate), name)

    def elu(self, input: Tensor, alpha: float = 1.0, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.elu."""
        return self._node("elu", [input], dict(alpha=float(alpha)), name)

    def selu(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.selu."""
        return self._node("selu", [input], {}, name)

    def softplus(self, input: Tensor, beta: float = 1.0, threshold: float = 20.0,
                 name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.softplus (linear where ``beta * x > threshold``)."""
        return self._node("softplus", [input], dict(beta=float(beta),
                                                    threshold=float(threshold)), name)

    def mish(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.mish (``x * tanh(softplus(x))``)."""
        return self._node("mish", [input], {}, name)

    def clip(self, input: Tensor, min: Optional[float] = None, max: Optional[float] = None,
             name: Optional[str] = None) -> Tensor:
        """``torch.clamp``: either bound may be None."""
        return self._node("clip", [input], dict(min=None if min is None else float(min),
                                                 max=None if max is None else float(max)), name)

    clamp = clip

    def hardtanh(self, input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
                 name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.hardtanh: a ``clip`` to [min_val, max_val]."""
        return self.clip(input, min_val, max_val, name=name)

    def softmax(self, input: Tensor, dim: int, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.softmax along ``dim`` (which has no default)."""
        return self._node("softmax", [input], dict(dim=int(dim)), name)

    def log_softmax(self, input: Tensor, dim: int, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.log_softmax along ``dim`` (which has no default)."""
        return self._node("log_softmax", [input], dict(dim=int(dim)), name)

    # -- normalisation ---------------------------------------------------------------------
    def batch_norm(self, input: Tensor, running_mean: TensorLike, running_var: TensorLike,
                   weight: Optional[TensorLike] = None, bias: Optional[TensorLike] = None,
                   eps: float = 1e-5, name: Optional[str] = None) -> Tensor:
        """Inference BatchNorm with running statistics (any rank, channels on dim 1)."""
        return self._node("batch_norm", [input], dict(eps=float(eps)), name,
                          weights=[("running_mean", running_mean), ("running_var", running_var),
                                   ("weight", weight), ("bias", bias)])

    def layer_norm(self, input: Tensor, normalized_shape: Size,
                   weight: Optional[TensorLike] = None, bias: Optional[TensorLike] = None,
                   eps: float = 1e-5, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.layer_norm: normalise over the trailing dims
        ``normalized_shape``, then the optional elementwise affine ``weight`` / ``bias``."""
        shape = [int(normalized_shape)] if isinstance(normalized_shape, (int, np.integer)) \
            else [int(s) for s in normalized_shape]
        return self._node("layer_norm", [input], dict(normalized_shape=shape, eps=float(eps)),
                          name, weights=[("weight", weight), ("bias", bias)])

    def instance_norm(self, input: Tensor, weight: Optional[TensorLike] = None,
                      bias: Optional[TensorLike] = None, eps: float = 1e-5,
                      name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.instance_norm without running statistics: each (sample,
        channel) normalised over the spatial dims, then the optional per-channel affine."""
        return self._node("instance_norm", [input], dict(eps=float(eps)), name,
                          weights=[("weight", weight), ("bias", bias)])

    def group_norm(self, input: Tensor, num_groups: int, weight: Optional[TensorLike] = None,
                   bias: Optional[TensorLike] = None, eps: float = 1e-5,
                   name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.group_norm: statistics over each of ``num_groups``
        channel groups, then the optional per-channel affine."""
        return self._node("group_norm", [input], dict(num_groups=int(num_groups), eps=float(eps)),
                          name, weights=[("weight", weight), ("bias", bias)])

    def local_response_norm(self, input: Tensor, size: int, alpha: float = 1e-4,
                            beta: float = 0.75, k: float = 1.0,
                            name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.local_response_norm (across ``size`` neighbouring
        channels)."""
        return self._node("local_response_norm", [input],
                          dict(size=int(size), alpha=float(alpha), beta=float(beta), k=float(k)),
                          name)

    def dropout(self, input: Tensor, p: float = 0.5, name: Optional[str] = None) -> Tensor:
        """Identity at inference; kept in the graph until the optimiser removes it."""
        return self._node("dropout", [input], dict(p=float(p)), name)

    def identity(self, input: Tensor, name: Optional[str] = None) -> Tensor:
        """``input`` under another name (torch.nn.Identity); ``output`` uses it to rename."""
        return self._node("identity", [input], {}, name)

    # -- shape -----------------------------------------------------------------------------
    def flatten(self, input: Tensor, start_dim: int = 0, end_dim: int = -1,
                name: Optional[str] = None) -> Tensor:
        """As torch.flatten: merge dims ``start_dim`` to ``end_dim`` (inclusive).  The
        default ``start_dim=0`` takes the batch in too, which a symbolic batch refuses:
        models usually pass 1."""
        return self._node("flatten", [input], dict(start_dim=int(start_dim), end_dim=int(end_dim)),
                          name)

    def reshape(self, input: Tensor, shape: Sequence[int], name: Optional[str] = None) -> Tensor:
        """As torch.reshape: ``shape`` holds positive ints and at most one -1.  With a
        symbolic batch the -1 stands for the batch dim (``(-1, 512)``)."""
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                   for d in shape):
            raise GraphError(f"reshape: shape entries must be ints (one may be -1), got "
                             f"{tuple(shape)!r}")
        return self._node("reshape", [input], dict(shape=[int(s) for s in shape]), name)

    view = reshape

    def permute(self, input: Tensor, dims: Sequence[int], name: Optional[str] = None) -> Tensor:
        """As torch.permute: ``dims`` lists the input's dims in their new order."""
        return self._node("permute", [input], dict(dims=[int(d) for d in dims]), name)

    def transpose(self, input: Tensor, dim0: int, dim1: int,
                  name: Optional[str] = None) -> Tensor:
        """As torch.transpose: swap dims ``dim0`` and ``dim1`` (a ``permute`` node)."""
        n = self._value(input).ndim
        for d in (dim0, dim1):
            if not isinstance(d, (int, np.integer)) or not -n <= d < n:
                raise GraphError(f"transpose: dim {d!r} is out of range for a tensor of rank "
                                 f"{n} (expected -{n} to {n - 1})")
        dims = list(range(n))
        d0, d1 = dim0 % n, dim1 % n
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self.permute(input, dims, name=name)

    def cat(self, tensors: Iterable[TensorLike], dim: int = 0,
            name: Optional[str] = None) -> Tensor:
        """As torch.cat: ``tensors`` joined along ``dim``."""
        return self._node("concat", list(tensors), dict(dim=int(dim)), name)

    concat = cat

    def split(self, tensor: Tensor, split_size_or_sections: Size, dim: int = 0,
              name: Optional[str] = None) -> list[Tensor]:
        """As torch.split along ``dim`` (not the symbolic batch): pieces of
        ``split_size_or_sections`` (an int; the last piece may be smaller) or of the listed
        sizes.  Returns a list of Tensors named ``<name>:0``, ``<name>:1``... (one piece:
        a list of one Tensor named ``<name>``)."""
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
        parts = self._node("split", [x], dict(split_size_or_sections=arg, dim=int(dim)), name,
                           n_outputs=n)
        return parts if n > 1 else [parts]

    def roll(self, input: Tensor, shifts: Size, dims: Size,
             name: Optional[str] = None) -> Tensor:
        """As torch.roll with ``dims`` given (Swin's shifted windows): each dim's elements
        shifted by ``shifts`` places, wrapping around; a split and a concat per dim."""
        x = self._value(input)
        shifts = [int(shifts)] if isinstance(shifts, (int, np.integer)) else \
            [int(s) for s in shifts]
        dims = [int(dims)] if isinstance(dims, (int, np.integer)) else [int(d) for d in dims]
        if len(shifts) != len(dims):
            raise GraphError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
        steps = []
        for s, d in zip(shifts, dims):
            if not -x.ndim <= d < x.ndim:
                raise GraphError(f"roll: dim {d} is out of range for a tensor of rank "
                                 f"{x.ndim}")
            d %= x.ndim
            n = x.shape[d]
            if n is None:
                raise GraphError("roll: cannot roll along the symbolic batch dimension")
            if s % n:
                steps.append((s % n, d, n))
        if not steps:
            return x if name is None else self.identity(x, name=name)
        for k, (s, d, n) in enumerate(steps):
            # the last s elements move to the front
            tail, head = self.split(x, [n - s, s], dim=d, name=self._unique("roll_split"))
            x = self.cat([head, tail], dim=d,
                         name=name if k == len(steps) - 1 else self._unique("roll"))
        return x

    def channel_shuffle(self, input: Tensor, groups: int, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.channel_shuffle (ShuffleNet): the channels, in ``groups``
        groups, interleaved."""
        return self._node("channel_shuffle", [input], dict(groups=int(groups)), name)

    def pad(self, input: Tensor, pad: Sequence[int], mode: str = "constant",
            value: Optional[float] = None, name: Optional[str] = None) -> Tensor:
        """As torch.nn.functional.pad: ``pad`` holds (begin, end) pairs from the last dim
        backwards; ``mode`` 'constant' (filled with ``value``, default 0), 'reflect' or
        'replicate'.  Negative amounts crop (constant mode, as in PyTorch)."""
        pad = [int(p) for p in pad]
        value = 0.0 if value is None else float(value)
        if any(p < 0 for p in pad) and mode == "constant":
            input = self._crop(input, pad, name)
            pad = [max(p, 0) for p in pad]
            if not any(pad):
                return input if name is None or input.name == name else \
                    self.identity(input, name=name)
        return self._node("pad", [input], dict(pad=pad, mode=mode, value=value), name)

    def _crop(self, x, pad, name):
        """The negative entries of a pad list cut off, dim by dim (a split's middle part)."""
        x = self._value(x)
        if len(pad) % 2 or len(pad) // 2 > x.ndim:
            raise GraphError(f"pad needs (begin, end) pairs for at most {x.ndim} dims, got "
                             f"{pad}")
        for i in range(len(pad) // 2):
            d = x.ndim - 1 - i
            lo, hi = max(0, -pad[2 * i]), max(0, -pad[2 * i + 1])
            if not (lo or hi):
                continue
            n = x.shape[d]
            if n is None or lo + hi >= n:
                raise GraphError(f"pad {pad}: cannot crop {lo} + {hi} from dim {d} of "
                                 f"{x.shape}")
            sizes = [s for s in (lo, n - lo - hi, hi) if s]
            parts = self.split(x, sizes, dim=d, name=self._unique(f"{name or 'pad'}_crop"))
            x = parts[1 if lo else 0]
        return x

    def interpolate(self, input: Tensor, size: Optional[Size] = None,
                    scale_factor: Union[float, Sequence[float], None] = None,
                    mode: str = "nearest", align_corners: Optional[bool] = None,
                    name: Optional[str] = None) -> Tensor:
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

    def mean(self, input: Tensor, dim: Size, keepdim: bool = False,
             name: Optional[str] = None) -> Tensor:
        """As torch.mean over ``dim`` (one dim or several)."""
        dims = [int(dim)] if isinstance(dim, (int, np.integer)) else [int(d) for d in dim]
        return self._node("mean", [input], dict(dim=dims, keepdim=bool(keepdim)), name)
