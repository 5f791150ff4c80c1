"""interpolate: nearest (1d/2d/3d) and bilinear (2d), PyTorch's CPU coordinate mapping.

``scale = 1/scale_factor`` when scale_factor is given (the output size is then
``floor(in * scale_factor)``), else ``in/out``; torch computes the source coordinates in
float32 and so do we, so the references pick the same source pixels.

Two shortcuts torch's CPU kernels take regardless of scale_factor, reproduced here:
- bilinear, per spatial dim: ``out == in`` copies (source index = destination index);
- nearest on 2 spatial dims (4-D input) only, per dim: ``out == in`` copies and
  ``out == 2*in`` uses ``src = dst // 2``.  (1-d and 3-d nearest use the formula.)
These only differ from the formula when a scale_factor is given that is not exactly 1 or 2.
"""

import math
import numbers

import numpy as np

from .conv import int_list, known, spatial_rank
from .registry import check, register_op

_F32 = np.float32


def _infer_interpolate(x, *, size, scale_factor, mode, align_corners):
    check(mode in ("nearest", "bilinear"),
          f"interpolate mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "bilinear":
        r = spatial_rank(x, "bilinear interpolate", min_rank=2, max_rank=2)
        check(align_corners is None or isinstance(align_corners, bool),
              f"align_corners must be a bool or null, got {align_corners!r}")
    else:
        r = spatial_rank(x, "nearest interpolate")
        check(align_corners is None or align_corners is False,
              f"align_corners can only be set for bilinear, got {align_corners!r} with nearest")
    size = int_list(size, r, "size", minimum=1)
    if scale_factor is not None:
        check(isinstance(scale_factor, (list, tuple)) and len(scale_factor) == r
              and all(isinstance(f, numbers.Real) and not isinstance(f, bool) and f > 0
                      for f in scale_factor),
              f"scale_factor must be null or a list of {r} positive numbers, got "
              f"{scale_factor!r}")
    out = [x[0], x[1]]
    for i in range(r):
        n = known(x[2 + i], f"interpolate spatial dim {i}")
        check(n >= 1, f"interpolate input spatial dim {i} is empty")
        if scale_factor is not None:
            want = int(math.floor(float(n) * float(scale_factor[i])))
            check(size[i] == want,
                  f"interpolate size {size[i]} in spatial dim {i} does not match "
                  f"floor({n} * scale_factor {scale_factor[i]}) = {want}")
        out.append(size[i])
    return tuple(out)


def _scale32(n_in, n_out, factor, align_corners):
    """torch's area_pixel_compute_scale in float32."""
    if align_corners:
        return _F32(n_in - 1) / _F32(n_out - 1) if n_out > 1 else _F32(0.0)
    if factor is not None:
        return _F32(1.0 / float(factor))
    return _F32(n_in) / _F32(n_out)


def nearest_indices(n_in, n_out, factor, shortcuts):
    dst = np.arange(n_out)
    if shortcuts and n_out == n_in:
        return dst
    if shortcuts and n_out == 2 * n_in:
        return dst >> 1
    src = np.floor(dst.astype(_F32) * _scale32(n_in, n_out, factor, False))
    return np.minimum(src.astype(np.int64), n_in - 1)


def linear_indices(n_in, n_out, factor, align_corners):
    """(i0, i1, lambda0, lambda1) per destination index, as torch's CPU kernel."""
    dst = np.arange(n_out)
    if n_out == n_in:
        return dst, dst, np.ones(n_out), np.zeros(n_out)
    scale = _scale32(n_in, n_out, factor, align_corners)
    d = dst.astype(_F32)
    if align_corners:
        src = scale * d
    else:
        src = scale * (d + _F32(0.5)) - _F32(0.5)
        src = np.where(src < 0, _F32(0.0), src).astype(_F32)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam1 = np.clip(src - i0.astype(_F32), _F32(0.0), _F32(1.0)).astype(_F32)
    i1 = i0 + (i0 < n_in - 1)
    lam0 = _F32(1.0) - lam1
    return i0, i1, lam0.astype(np.float64), lam1.astype(np.float64)


@register_op("interpolate", infer=_infer_interpolate)
def interpolate(x, *, size, scale_factor, mode, align_corners):
    """F.interpolate(mode="nearest" | "bilinear") with torch's CPU source-index mapping."""
    out = _infer_interpolate(x.shape, size=size, scale_factor=scale_factor, mode=mode,
                             align_corners=align_corners)
    r = x.ndim - 2
    y = np.asarray(x, dtype=np.float64)
    for i in range(r):
        axis = 2 + i
        factor = None if scale_factor is None else scale_factor[i]
        n_in, n_out = x.shape[axis], out[axis]
        if mode == "nearest":
            y = np.take(y, nearest_indices(n_in, n_out, factor, shortcuts=(r == 2)), axis=axis)
        else:
            i0, i1, l0, l1 = linear_indices(n_in, n_out, factor, bool(align_corners))
            view = (-1,) + (1,) * (y.ndim - axis - 1)
            y = (np.take(y, i0, axis=axis) * l0.reshape(view)
                 + np.take(y, i1, axis=axis) * l1.reshape(view))
    return y.astype(np.float32)


__all__ = ["nearest_indices", "linear_indices"]
