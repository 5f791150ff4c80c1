"""The op registry: one OpDef per op type, holding shape inference and the NumPy reference.

An op module registers itself with ``@register_op``:

    def _infer(x, weight, bias=None, *, stride, padding, ...):   # shapes in, shape(s) out
        ...
    @register_op("conv", infer=_infer, n_inputs=(2, 3), macs=_macs)
    def conv(x, weight, bias=None, *, stride, padding, ...):      # arrays in, array(s) out
        ...

Both functions take the node's inputs positionally (``None`` for an absent optional input)
and the node's attributes as keyword arguments, so the signature documents the op.
Shape functions raise ``ValueError`` with a message saying what was expected; the
registry prefixes it with the node's name and op.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import GraphError, UnsupportedError, node_error, node_error_from
from ..limits import LimitError, check_attrs, check_shape

OPS: dict = {}


@dataclass(frozen=True)
class OpDef:
    name: str
    reference: Callable            # (*arrays, **attrs) -> array | tuple of arrays
    infer: Callable                # (*shapes, **attrs) -> shape | list of shapes
    n_inputs: tuple = (1, 1)       # (min, max) inputs, optional ones trailing
    macs: Optional[Callable] = None  # (out_shapes, *in_shapes, **attrs) -> multiply-adds
    alias: bool = False            # output 0 is input 0's memory re-viewed (reshape, flatten)
    elementwise: bool = False      # unary op whose output has the input's shape (fusable act.)
    doc: str = ""
    tags: tuple = field(default_factory=tuple)

    # -- calls that name the node on failure ------------------------------------------------
    def infer_shapes(self, node, in_shapes):
        self._check_arity(node)
        try:
            check_attrs(node.attrs)
            out = self.infer(*in_shapes, **node.attrs)
        except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError,
                KeyError) as e:
            raise node_error_from(node, e) from None
        shapes = [out] if _is_shape(out) else list(out)
        if len(shapes) != len(node.outputs):
            raise node_error(node, f"produces {len(shapes)} outputs but the node names "
                                   f"{len(node.outputs)}")
        for s in shapes:
            if any(d is not None and d < 0 for d in s):
                raise node_error(node, f"inferred a negative dimension {tuple(s)}: the input is "
                                       f"too small for these attributes")
        # Every value is bounded here, before any plan allocates it (engine.limits).
        for name, s in zip(node.outputs, shapes):
            try:
                check_shape(s, f"output {name!r}")
            except LimitError as e:
                raise node_error_from(node, e) from None
        return [tuple(int(d) if d is not None else None for d in s) for s in shapes]

    def run_reference(self, node, inputs):
        with np.errstate(all="ignore"):     # NaN / Inf propagate silently, as in PyTorch
            out = self.reference(*inputs, **node.attrs)
        arrays = [out] if isinstance(out, np.ndarray) else list(out)
        # np.ascontiguousarray would turn 0-d results (a full mean, vector dot) into (1,).
        return [np.require(np.asarray(a, dtype=np.float32), requirements="C") for a in arrays]

    def count_macs(self, node, in_shapes, out_shapes):
        if self.macs is None:
            return 0
        return int(self.macs(out_shapes, *in_shapes, **node.attrs))

    def _check_arity(self, node):
        lo, hi = self.n_inputs
        n = len(node.inputs)
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise node_error(node, f"takes {want} inputs, got {n}")
        for i, name in enumerate(node.inputs[:lo]):
            if not name:
                raise node_error(node, f"input {i} is required")


def _is_shape(x):
    return isinstance(x, tuple) and all(d is None or isinstance(d, (int, np.integer)) for d in x)


def register_op(name, *, infer, n_inputs=(1, 1), macs=None, alias=False, elementwise=False,
                tags=()):
    """Decorator registering ``fn`` as the NumPy reference of op ``name``."""
    def deco(fn):
        if name in OPS:
            raise RuntimeError(f"op {name!r} registered twice")
        OPS[name] = OpDef(name=name, reference=fn, infer=infer, n_inputs=n_inputs, macs=macs,
                          alias=alias, elementwise=elementwise, doc=(fn.__doc__ or "").strip(),
                          tags=tuple(tags))
        return fn
    return deco


def get_op(name) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise UnsupportedError(f"unknown op type {name!r}") from None


def check(cond, message):
    """Shape-function helper: raise ValueError(message) unless cond."""
    if not cond:
        raise ValueError(message)


def same_shape(x, *rest, **attrs):
    """Shape function of elementwise unary ops."""
    return tuple(x)


__all__ = ["OPS", "OpDef", "register_op", "get_op", "check", "same_shape", "GraphError"]
