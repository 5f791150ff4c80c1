"""Binary elementwise arithmetic with NumPy/PyTorch broadcasting: add, sub, mul, div.

float32 operands are combined in float64 and rounded once to float32, which gives exactly
the correctly rounded float32 result torch computes for +, -, *, /.
"""

import numpy as np

from .registry import register_op


def broadcast_shapes(a, b, *, what="operands"):
    """Broadcast two shapes (right-aligned, size-1 dims stretch).

    ``None`` (the symbolic batch) broadcasts with ``None`` and with 1; against any other
    size it cannot be checked, so that is rejected.
    """
    a, b = tuple(a), tuple(b)
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + a
    b = (1,) * (n - len(b)) + b
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None or y is None:
            raise ValueError(
                f"{what}: cannot broadcast the symbolic batch (None) against size "
                f"{x if y is None else y} in dim {i - n} (shapes {a} and {b})")
        else:
            raise ValueError(f"{what}: shapes {a} and {b} do not broadcast: dim {i - n} has "
                             f"sizes {x} and {y}")
    return tuple(out)


def _infer_binary(a, b):
    return broadcast_shapes(a, b, what="elementwise operands")


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _checked(a, b):
    broadcast_shapes(np.shape(a), np.shape(b), what="elementwise operands")
    return _f64(a), _f64(b)


@register_op("add", infer=_infer_binary, n_inputs=(2, 2))
def add(a, b):
    """a + b (broadcast)."""
    a, b = _checked(a, b)
    return np.asarray(a + b, dtype=np.float32)


@register_op("sub", infer=_infer_binary, n_inputs=(2, 2))
def sub(a, b):
    """a - b (broadcast)."""
    a, b = _checked(a, b)
    return np.asarray(a - b, dtype=np.float32)


@register_op("mul", infer=_infer_binary, n_inputs=(2, 2))
def mul(a, b):
    """a * b (broadcast)."""
    a, b = _checked(a, b)
    return np.asarray(a * b, dtype=np.float32)


@register_op("maximum", infer=_infer_binary, n_inputs=(2, 2))
def maximum(a, b):
    """max(a, b) elementwise (broadcast); NaN if either is NaN (torch.maximum, ONNX Max)."""
    a, b = _checked(a, b)
    return np.asarray(np.maximum(a, b), dtype=np.float32)


@register_op("minimum", infer=_infer_binary, n_inputs=(2, 2))
def minimum(a, b):
    """min(a, b) elementwise (broadcast); NaN if either is NaN (torch.minimum, ONNX Min)."""
    a, b = _checked(a, b)
    return np.asarray(np.minimum(a, b), dtype=np.float32)


@register_op("div", infer=_infer_binary, n_inputs=(2, 2))
def div(a, b):
    """a / b (true division, broadcast; x/0 is +-inf, 0/0 is NaN, as IEEE)."""
    a, b = _checked(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(a / b, dtype=np.float32)


__all__ = ["broadcast_shapes"]
