"""Prepare-time helpers shared by the compiled backends (cpu, cuda): the fused-activation
code table (the same numbers in include/engine/ek_common.h and the .cu kernels), the
broadcasting plan of binary ops, contiguous strides, N-d shapes as 5-D."""

import math

from ..errors import UnsupportedError

ACT_CODES = {"relu": 1, "relu6": 2, "leaky_relu": 3, "clip": 4, "sigmoid": 5, "tanh": 6,
             "silu": 7, "hardswish": 8, "hardsigmoid": 9, "gelu": 10, "elu": 12, "selu": 13,
             "softplus": 14, "mish": 15}
GELU_TANH = 11


def act_params(activation, backend="cpu"):
    """(code, p0, p1) of a fused activation dict (None: no activation)."""
    if activation is None:
        return 0, 0.0, 0.0
    name = activation.get("op")
    if name not in ACT_CODES:
        raise UnsupportedError(f"{backend} backend: activation {name!r} cannot be fused; "
                               f"expected one of {sorted(ACT_CODES)}")
    code = ACT_CODES[name]
    if name == "leaky_relu":
        return code, float(activation.get("negative_slope", 0.01)), 0.0
    if name == "clip":
        lo, hi = activation.get("min"), activation.get("max")
        return (code, -math.inf if lo is None else float(lo),
                math.inf if hi is None else float(hi))
    if name == "gelu":
        return (GELU_TANH if activation.get("approximate", "none") == "tanh" else code), 0.0, 0.0
    if name == "elu":
        return code, float(activation.get("alpha", 1.0)), 0.0
    if name == "softplus":
        return code, float(activation.get("beta", 1.0)), float(activation.get("threshold", 20.0))
    return code, 0.0, 0.0


def contiguous_strides(shape):
    """C-contiguous strides of shape, in elements."""
    st, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        st[d] = acc
        acc *= int(shape[d])
    return st


def broadcast_plan(a_shape, b_shape, out_shape):
    """(shape, a_strides, b_strides) in elements: broadcast dims stride 0, size-1 dims
    dropped, mergeable neighbours merged; at least one dim."""
    n = len(out_shape)
    a_shape = (1,) * (n - len(a_shape)) + tuple(a_shape)
    b_shape = (1,) * (n - len(b_shape)) + tuple(b_shape)

    def strides(shape):                       # broadcast (size-1) dims: stride 0
        return [0 if int(shape[d]) == 1 else s for d, s in enumerate(contiguous_strides(shape))]

    sa, sb = strides(a_shape), strides(b_shape)
    merged = []
    for d in range(n):
        size = int(out_shape[d])
        if size == 1:
            continue
        if merged:
            psize, px, py = merged[-1]
            if px == sa[d] * size and py == sb[d] * size:
                merged[-1] = (psize * size, sa[d], sb[d])
                continue
        merged.append((size, sa[d], sb[d]))
    if not merged:
        merged = [(1, 0, 0)]
    return ([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged])


def prod(dims):
    """Product of the dims (ints), 1 for none."""
    p = 1
    for d in dims:
        p *= int(d)
    return p


def lead3(vals, r, fill):
    """A per-spatial-dim list of length r as 3 entries (leading unit dims)."""
    return [fill] * (3 - r) + [int(v) for v in vals]


def shape5(shape):
    """(N, C, *spatial) -> (N, C, D, H, W) with leading unit spatial dims."""
    r = len(shape) - 2
    return tuple(int(d) for d in shape[:2]) + (1,) * (3 - r) + tuple(int(d) for d in shape[2:])
