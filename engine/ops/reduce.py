"""Reductions: mean over a list of dims (keepdim as torch)."""

import numpy as np

from .conv import is_int
from .registry import check, register_op


def _axes(rank, dim):
    dims = [dim] if is_int(dim) else dim
    check(isinstance(dims, (list, tuple)) and all(is_int(d) for d in dims),
          f"mean dim must be a list of ints, got {dim!r}")
    n = max(rank, 1)
    for d in dims:
        check(-n <= d < n, f"mean dim {d} is out of range for a rank-{rank} input")
    axes = sorted({int(d) % n for d in dims})
    check(len(axes) == len(dims), f"mean dim {list(dims)} names a dim twice")
    if not dims:                              # torch: an empty dim list reduces every dim
        axes = list(range(rank))
    return axes


def _infer_mean(x, *, dim, keepdim):
    check(isinstance(keepdim, bool), f"keepdim must be a bool, got {keepdim!r}")
    x = tuple(x)
    axes = _axes(len(x), dim)
    if keepdim:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


@register_op("mean", infer=_infer_mean)
def mean(x, *, dim, keepdim):
    """torch.mean(x, dim, keepdim)."""
    _infer_mean(x.shape, dim=dim, keepdim=keepdim)
    axes = tuple(_axes(x.ndim, dim))
    return np.asarray(np.mean(np.asarray(x, dtype=np.float64), axis=axes, keepdims=keepdim),
                      dtype=np.float32)
