"""Normalisation: batch_norm (running stats), layer_norm, instance_norm, group_norm and
local_response_norm.  Statistics use the biased variance (divide by n), as torch; all
arithmetic is float64, results float32.
"""

import numbers

import numpy as np

from .activation import apply_activation, check_activation
from .conv import is_int, known
from .registry import check, register_op


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _check_eps(eps):
    check(isinstance(eps, numbers.Real) and not isinstance(eps, bool) and eps >= 0,
          f"eps must be a non-negative number, got {eps!r}")


def _check_channel_vector(name, shape, channels, op):
    if shape is not None:
        check(tuple(shape) == (channels,),
              f"{op} {name} must have shape ({channels},) (input channels), got {tuple(shape)}")


def _channel_view(v, ndim):
    """(C,) -> (1, C, 1, ...) to broadcast over an N, C, ... input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _affine(y, weight, bias, view):
    if weight is not None:
        y = y * view(_f64(weight))
    if bias is not None:
        y = y + view(_f64(bias))
    return y


# -- batch_norm -----------------------------------------------------------------------------

def _infer_batch_norm(x, running_mean, running_var, weight=None, bias=None, *, eps,
                      activation=None):
    check_activation(activation)
    check(len(x) >= 2, f"batch_norm expects an input of rank >= 2 (N, C, ...), got shape "
                       f"{tuple(x)}")
    _check_eps(eps)
    c = known(x[1], "batch_norm channels")
    for name, s in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_channel_vector(name, s, c, "batch_norm")
    return tuple(x)


@register_op("batch_norm", infer=_infer_batch_norm, n_inputs=(3, 5))
def batch_norm(x, running_mean, running_var, weight=None, bias=None, *, eps, activation=None):
    """(x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel (dim 1),
    then the fused ``activation`` (engine.passes.fuse_activation: BatchNorm + ReLU of
    pre-activation blocks, one pass)."""
    _infer_batch_norm(x.shape, running_mean.shape, running_var.shape,
                      None if weight is None else weight.shape,
                      None if bias is None else bias.shape, eps=eps, activation=activation)
    view = lambda v: _channel_view(v, x.ndim)  # noqa: E731
    y = (_f64(x) - view(_f64(running_mean))) / np.sqrt(view(_f64(running_var)) + eps)
    y = _affine(y, weight, bias, view)
    return np.asarray(apply_activation(y, activation), dtype=np.float32)


# -- layer_norm -----------------------------------------------------------------------------

def _infer_layer_norm(x, weight=None, bias=None, *, normalized_shape, eps):
    check(isinstance(normalized_shape, (list, tuple)) and len(normalized_shape) >= 1
          and all(is_int(d) and d >= 1 for d in normalized_shape),
          f"normalized_shape must be a non-empty list of positive ints, got "
          f"{normalized_shape!r}")
    _check_eps(eps)
    ns = tuple(int(d) for d in normalized_shape)
    check(len(x) >= len(ns) and tuple(x[len(x) - len(ns):]) == ns,
          f"layer_norm expects an input whose trailing dims are normalized_shape {ns}, got "
          f"shape {tuple(x)}")
    for name, s in (("weight", weight), ("bias", bias)):
        if s is not None:
            check(tuple(s) == ns, f"layer_norm {name} must have shape {ns} "
                                  f"(normalized_shape), got {tuple(s)}")
    return tuple(x)


@register_op("layer_norm", infer=_infer_layer_norm, n_inputs=(1, 3))
def layer_norm(x, weight=None, bias=None, *, normalized_shape, eps):
    """Normalise over the trailing len(normalized_shape) dims, then elementwise affine."""
    _infer_layer_norm(x.shape, None if weight is None else weight.shape,
                      None if bias is None else bias.shape,
                      normalized_shape=normalized_shape, eps=eps)
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    x = _f64(x)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return _affine(y, weight, bias, lambda v: v).astype(np.float32)


# -- instance_norm / group_norm -------------------------------------------------------------

def _infer_instance_norm(x, weight=None, bias=None, *, eps):
    check(len(x) >= 3, f"instance_norm expects an input of rank >= 3 (N, C, spatial...), got "
                       f"shape {tuple(x)}")
    _check_eps(eps)
    c = known(x[1], "instance_norm channels")
    _check_channel_vector("weight", weight, c, "instance_norm")
    _check_channel_vector("bias", bias, c, "instance_norm")
    return tuple(x)


def _group_stats_norm(x, groups, eps):
    """Normalise x (N, C, ...) with statistics over each of ``groups`` channel groups."""
    n, c = x.shape[:2]
    xg = x.reshape((n, groups, -1))
    mean = xg.mean(axis=2, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=2, keepdims=True)
    return ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)


@register_op("instance_norm", infer=_infer_instance_norm, n_inputs=(1, 3))
def instance_norm(x, weight=None, bias=None, *, eps):
    """Per (sample, channel) statistics over the spatial dims, then per-channel affine."""
    _infer_instance_norm(x.shape, None if weight is None else weight.shape,
                         None if bias is None else bias.shape, eps=eps)
    y = _group_stats_norm(_f64(x), x.shape[1], eps)
    return _affine(y, weight, bias, lambda v: _channel_view(v, x.ndim)).astype(np.float32)


def _infer_group_norm(x, weight=None, bias=None, *, num_groups, eps):
    check(len(x) >= 2, f"group_norm expects an input of rank >= 2 (N, C, ...), got shape "
                       f"{tuple(x)}")
    _check_eps(eps)
    check(is_int(num_groups) and num_groups >= 1,
          f"num_groups must be a positive int, got {num_groups!r}")
    c = known(x[1], "group_norm channels")
    check(c % num_groups == 0,
          f"group_norm expects input channels divisible by num_groups={num_groups}, got {c}")
    _check_channel_vector("weight", weight, c, "group_norm")
    _check_channel_vector("bias", bias, c, "group_norm")
    return tuple(x)


@register_op("group_norm", infer=_infer_group_norm, n_inputs=(1, 3))
def group_norm(x, weight=None, bias=None, *, num_groups, eps):
    """Statistics over each group of C/num_groups channels (and all spatial positions)."""
    _infer_group_norm(x.shape, None if weight is None else weight.shape,
                      None if bias is None else bias.shape, num_groups=num_groups, eps=eps)
    y = _group_stats_norm(_f64(x), int(num_groups), eps)
    return _affine(y, weight, bias, lambda v: _channel_view(v, x.ndim)).astype(np.float32)


# -- local_response_norm --------------------------------------------------------------------

def _infer_lrn(x, *, size, alpha, beta, k):
    check(len(x) >= 3, f"local_response_norm expects an input of rank >= 3 (N, C, "
                       f"spatial...), got shape {tuple(x)}")
    check(is_int(size) and size >= 1, f"size must be a positive int, got {size!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        check(isinstance(v, numbers.Real) and not isinstance(v, bool),
              f"{name} must be a number, got {v!r}")
    return tuple(x)


@register_op("local_response_norm", infer=_infer_lrn)
def local_response_norm(x, *, size, alpha, beta, k):
    """x / (k + alpha/size * sum of x^2 over channels c-size//2 .. c+(size-1)//2) ** beta."""
    _infer_lrn(x.shape, size=size, alpha=alpha, beta=beta, k=k)
    x = _f64(x)
    c = x.shape[1]
    sq = x * x
    total = np.zeros_like(x)
    for off in range(-(size // 2), (size - 1) // 2 + 1):
        lo, hi = max(0, -off), min(c, c - off)          # output channels with c+off in range
        if lo < hi:
            total[:, lo:hi] += sq[:, lo + off:hi + off]
    return (x / (k + alpha / size * total) ** beta).astype(np.float32)
