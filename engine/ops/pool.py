"""Pooling over 1, 2 or 3 spatial dims: max/min/avg (windowed) and adaptive avg/max.

Output size (torch): ``floor_or_ceil((in + 2p - d*(k-1) - 1) / s) + 1``; with ceil_mode the
last window must start inside the input or the left padding.  Max pooling pads with -inf
(min pooling with +inf: ``min_pool(x) = -max_pool(-x)``), and a NaN anywhere in a window
gives NaN, as torch.  avg_pool divisors follow torch's count_include_pad rule (padding
counts, the ceil_mode overhang past the right padding never does).
"""

import itertools
import math

import numpy as np

from ..limits import check_extent, check_work
from .conv import batch_or_one, int_list, is_int, known, spatial_rank
from .registry import check, register_op


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def pool_out_size(size, k, s, p, d, ceil_mode):
    """torch's pooling output length for one spatial dim."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_shape(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    r = spatial_rank(x, op)
    kernel_size = int_list(kernel_size, r, "kernel_size", minimum=1)
    stride = int_list(stride, r, "stride", minimum=1)
    padding = int_list(padding, r, "padding", minimum=0)
    dilation = int_list(dilation, r, "dilation", minimum=1)
    check(isinstance(ceil_mode, bool), f"ceil_mode must be a bool, got {ceil_mode!r}")
    out = [x[0], x[1]]
    taps = 1                      # window taps inside the input, per output (at most)
    for i in range(r):
        check(2 * padding[i] <= kernel_size[i],
              f"{op} padding {padding[i]} in spatial dim {i} must be at most half the kernel "
              f"size {kernel_size[i]}")
        size = known(x[2 + i], f"{op} spatial dim {i}")
        check(size >= 1, f"{op} input spatial dim {i} is empty")
        check_extent(size + 2 * padding[i], f"{op} padded input size in spatial dim {i}")
        check_extent(dilation[i] * (kernel_size[i] - 1) + 1,
                     f"{op} effective kernel size in spatial dim {i}")
        o = pool_out_size(size, kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode)
        eff = dilation[i] * (kernel_size[i] - 1) + 1
        check(o >= 1,
              f"{op} kernel (effective size {eff}) is larger than the padded input "
              f"({size} + 2 x {padding[i]}) in spatial dim {i}")
        # With ceil_mode the last window may reach past the padded input: its span too.
        check_extent((o - 1) * stride[i] + eff, f"{op} window span in spatial dim {i}")
        out.append(o)
        taps *= min(kernel_size[i], -(-size // dilation[i]))
    # Windows overlapping most of a large input make the work grow with input x output.
    check_work(batch_or_one(x[0]) * (x[1] or 1) * math.prod(out[2:]) * taps,
               f"{op} (output {tuple(out)}, up to {taps} window taps each)")
    return tuple(out), (kernel_size, stride, padding, dilation)


def _windows(x, out_sp, kernel_size, stride, padding, dilation, fill):
    """Pad ``x`` (float64) with ``fill`` and yield one strided view per kernel tap."""
    pads = [(0, 0), (0, 0)]
    for size, o, k, s, p, d in zip(x.shape[2:], out_sp, kernel_size, stride, padding, dilation):
        need = (o - 1) * s + d * (k - 1) + 1          # extent the windows reach from -p
        pads.append((p, max(p, need - size - p)))
    xp = np.pad(x, pads, constant_values=fill)
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        sl = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                   for t, d, s, o in zip(tap, dilation, stride, out_sp))
        yield xp[(slice(None), slice(None)) + sl]


# -- max / min ------------------------------------------------------------------------------

def _infer_max_pool(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    return _pool_shape("max_pool", x, kernel_size, stride, padding, dilation, ceil_mode)[0]


def _infer_min_pool(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    return _pool_shape("min_pool", x, kernel_size, stride, padding, dilation, ceil_mode)[0]


def _max_pool64(x, op, kernel_size, stride, padding, dilation, ceil_mode):
    out, (k, s, p, d) = _pool_shape(op, x.shape, kernel_size, stride, padding, dilation,
                                    ceil_mode)
    y = None
    for win in _windows(x, out[2:], k, s, p, d, -np.inf):
        y = win.copy() if y is None else np.maximum(y, win)    # np.maximum propagates NaN
    return y


@register_op("max_pool", infer=_infer_max_pool)
def max_pool(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    """Max over each (dilated) window; padding is -inf; NaN in a window gives NaN."""
    return _max_pool64(_f64(x), "max_pool", kernel_size, stride, padding, dilation,
                       ceil_mode).astype(np.float32)


@register_op("min_pool", infer=_infer_min_pool)
def min_pool(x, *, kernel_size, stride, padding, dilation, ceil_mode):
    """-max_pool(-x): min over each window; padding is +inf; NaN in a window gives NaN."""
    return (-_max_pool64(-_f64(x), "min_pool", kernel_size, stride, padding, dilation,
                         ceil_mode)).astype(np.float32)


# -- avg ------------------------------------------------------------------------------------

def _infer_avg_pool(x, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
    check(isinstance(count_include_pad, bool),
          f"count_include_pad must be a bool, got {count_include_pad!r}")
    r = spatial_rank(x, "avg_pool")
    return _pool_shape("avg_pool", x, kernel_size, stride, padding, [1] * r, ceil_mode)[0]


def _avg_divisor_1d(size, out, k, s, p, count_include_pad):
    o = np.arange(out)
    start = o * s - p
    end = np.minimum(start + k, size + p)
    pool_size = end - start
    if count_include_pad:
        return pool_size
    return np.minimum(end, size) - np.maximum(start, 0)


@register_op("avg_pool", infer=_infer_avg_pool)
def avg_pool(x, *, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Mean over each window, divisor per torch's count_include_pad rule."""
    _infer_avg_pool(x.shape, kernel_size=kernel_size, stride=stride, padding=padding,
                    ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    r = x.ndim - 2
    out, (k, s, p, d) = _pool_shape("avg_pool", x.shape, kernel_size, stride, padding, [1] * r,
                                    ceil_mode)
    total = None
    for win in _windows(_f64(x), out[2:], k, s, p, d, 0.0):
        total = win.copy() if total is None else total + win
    divisor = np.ones(())
    for i in range(r):
        dv = _avg_divisor_1d(x.shape[2 + i], out[2 + i], k[i], s[i], p[i], count_include_pad)
        divisor = divisor[..., None] * dv.astype(np.float64)
    return (total / divisor).astype(np.float32)


# -- adaptive -------------------------------------------------------------------------------

def _infer_adaptive(op, x, output_size):
    check(isinstance(output_size, (list, tuple)),
          f"output_size must be a list (one entry per spatial dim), got {output_size!r}")
    r = len(output_size)
    check(1 <= r <= 3, f"{op} output_size must have 1 to 3 entries, got {list(output_size)}")
    check(len(x) == r + 2,
          f"{op} with a {r}-entry output_size expects a rank-{r + 2} input (N, C, "
          f"spatial...), got rank {len(x)} shape {tuple(x)}")
    out = [x[0], x[1]]
    for i, o in enumerate(output_size):
        if o is None:                                 # torch: None keeps the input size
            o = known(x[2 + i], f"{op} spatial dim {i}")
        check(is_int(o) and o >= 1, f"{op} output_size entries must be positive ints, got "
                                    f"{list(output_size)}")
        check(x[2 + i] is None or x[2 + i] >= 1,
              f"{op} input spatial dim {i} is empty")
        out.append(int(o))
    return tuple(out)


def _infer_adaptive_avg_pool(x, *, output_size):
    return _infer_adaptive("adaptive_avg_pool", x, output_size)


def _infer_adaptive_max_pool(x, *, output_size):
    return _infer_adaptive("adaptive_max_pool", x, output_size)


def _adaptive(x, out_sp, reduce):
    """Separable adaptive pooling: torch windows [floor(o*in/out), ceil((o+1)*in/out))."""
    y = x
    for i, out in enumerate(out_sp):
        axis = 2 + i
        size = y.shape[axis]
        pieces = []
        for o in range(out):
            start = (o * size) // out
            end = -(-((o + 1) * size) // out)
            sl = [slice(None)] * y.ndim
            sl[axis] = slice(start, end)
            pieces.append(reduce(y[tuple(sl)], axis=axis, keepdims=True))
        y = np.concatenate(pieces, axis=axis)
    return y


@register_op("adaptive_avg_pool", infer=_infer_adaptive_avg_pool)
def adaptive_avg_pool(x, *, output_size):
    """Mean over torch's adaptive windows (a mean of per-dim means: windows are boxes)."""
    out = _infer_adaptive_avg_pool(x.shape, output_size=output_size)
    return _adaptive(_f64(x), out[2:], np.mean).astype(np.float32)


@register_op("adaptive_max_pool", infer=_infer_adaptive_max_pool)
def adaptive_max_pool(x, *, output_size):
    """Max over torch's adaptive windows; NaN propagates."""
    out = _infer_adaptive_max_pool(x.shape, output_size=output_size)
    return _adaptive(_f64(x), out[2:], np.max).astype(np.float32)


__all__ = ["pool_out_size"]
