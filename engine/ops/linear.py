"""linear (``x @ weight.T + bias`` over any leading dims, then activation) and matmul."""

import numpy as np

from .activation import apply_activation, check_activation
from .conv import batch_or_one
from .elementwise import broadcast_shapes
from .registry import check, register_op


def _prod(dims):
    p = 1
    for d in dims:
        p *= batch_or_one(d)
    return p


# -- linear ---------------------------------------------------------------------------------

def _infer_linear(x, weight, bias=None, *, activation):
    check(len(weight) == 2, f"linear weight must be 2-D (out, in), got shape {tuple(weight)}")
    check(len(x) >= 1, "linear input must have at least 1 dim (..., in), got a scalar")
    out_f, in_f = weight
    check(x[-1] == in_f,
          f"expected input with {in_f} features in the last dim (weight is {out_f}x{in_f}), "
          f"got {x[-1]} (input shape {tuple(x)})")
    if bias is not None:
        check(tuple(bias) == (out_f,),
              f"linear bias must have shape ({out_f},), got {tuple(bias)}")
    check_activation(activation)
    return tuple(x[:-1]) + (out_f,)


def _macs_linear(out_shapes, x, weight, bias=None, **attrs):
    return _prod(x[:-1]) * weight[0] * weight[1]


@register_op("linear", infer=_infer_linear, n_inputs=(2, 3), macs=_macs_linear)
def linear(x, weight, bias=None, *, activation):
    """y = x @ weight.T + bias over the last dim, then the fused activation."""
    _infer_linear(x.shape, weight.shape, None if bias is None else bias.shape,
                  activation=activation)
    y = np.asarray(x, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return np.asarray(apply_activation(y, activation), dtype=np.float32)


# -- matmul ---------------------------------------------------------------------------------

def _infer_matmul(a, b):
    check(len(a) >= 1 and len(b) >= 1,
          f"matmul operands must have at least 1 dim, got shapes {tuple(a)} and {tuple(b)}")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)      # 1-D a: prepend a row dim
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)      # 1-D b: append a column dim
    k_a, k_b = a2[-1], b2[-2]
    check(k_a is not None and k_b is not None and k_a == k_b,
          f"matmul inner dims must match: a {tuple(a)} has {k_a} columns, b {tuple(b)} has "
          f"{k_b} rows")
    batch = broadcast_shapes(a2[:-2], b2[:-2], what="matmul batch dims")
    out = tuple(batch)
    if len(a) > 1:
        out += (a2[-2],)
    if len(b) > 1:
        out += (b2[-1],)
    return out


def _macs_matmul(out_shapes, a, b):
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    batch = broadcast_shapes(a2[:-2], b2[:-2], what="matmul batch dims")
    return _prod(batch) * batch_or_one(a2[-2]) * a2[-1] * batch_or_one(b2[-1])


@register_op("matmul", infer=_infer_matmul, n_inputs=(2, 2), macs=_macs_matmul)
def matmul(a, b):
    """torch.matmul: 1-D operands promoted and squeezed, batch dims broadcast."""
    _infer_matmul(a.shape, b.shape)
    y = np.matmul(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return np.asarray(y, dtype=np.float32)


__all__ = []
