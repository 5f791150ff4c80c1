"""Activations: unary elementwise ops (fusable into conv/linear), prelu, softmax, log_softmax.

References compute in float64 and return float32; semantics are PyTorch's, NaN included
(relu(NaN) = NaN, clip(NaN) = NaN).  ``apply_activation`` runs a fused activation dict
(``None`` or ``{"op": name, **attrs}``) through the registered reference of that op.
"""

import inspect
import math
import numbers

import numpy as np

from .registry import OPS, check, register_op, same_shape

#: Unary ops that conv / conv_transpose / linear / batch_norm may carry as a fused ``activation``.
FUSABLE = ("relu", "relu6", "leaky_relu", "clip", "sigmoid", "tanh", "silu", "hardswish",
           "hardsigmoid", "gelu", "elu", "selu", "softplus", "mish")


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _out(y):
    return np.asarray(y, dtype=np.float32)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _sigmoid64(x):
    """Overflow-free logistic function on float64."""
    x = _f64(x)
    e = np.exp(-np.abs(x))                  # in (0, 1]; NaN stays NaN
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_erf = np.vectorize(math.erf, otypes=[np.float64])


# -- fused-activation helpers ---------------------------------------------------------------

def check_activation(activation):
    """Validate a fused ``activation`` attribute (``None`` or ``{"op": name, **attrs}``)."""
    if activation is None:
        return
    check(isinstance(activation, dict) and "op" in activation,
          f"activation must be null or a dict {{'op': <name>, ...attrs}}, got {activation!r}")
    name = activation["op"]
    check(name in FUSABLE,
          f"activation op {name!r} is not fusable; expected one of {', '.join(FUSABLE)}")
    attrs = {k: v for k, v in activation.items() if k != "op"}
    try:
        inspect.signature(OPS[name].reference).bind(None, **attrs)
    except TypeError as e:
        raise ValueError(f"activation {activation!r} has bad attributes: {e}") from None
    try:
        OPS[name].infer((1,), **attrs)
    except ValueError as e:
        raise ValueError(f"activation {activation!r}: {e}") from None


def apply_activation(y, activation):
    """Apply a fused activation (``None`` or ``{"op": name, **attrs}``) to array ``y``."""
    if activation is None:
        return y
    check_activation(activation)
    attrs = {k: v for k, v in activation.items() if k != "op"}
    return OPS[activation["op"]].reference(y, **attrs)


# -- attribute-free unary ops ---------------------------------------------------------------

@register_op("relu", infer=same_shape, elementwise=True)
def relu(x):
    """max(x, 0); NaN propagates."""
    return _out(np.maximum(_f64(x), 0.0))


@register_op("relu6", infer=same_shape, elementwise=True)
def relu6(x):
    """min(max(x, 0), 6); NaN propagates."""
    return _out(np.minimum(np.maximum(_f64(x), 0.0), 6.0))


@register_op("sigmoid", infer=same_shape, elementwise=True)
def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _out(_sigmoid64(x))


@register_op("tanh", infer=same_shape, elementwise=True)
def tanh(x):
    return _out(np.tanh(_f64(x)))


@register_op("silu", infer=same_shape, elementwise=True)
def silu(x):
    """x * sigmoid(x)."""
    x = _f64(x)
    return _out(x * _sigmoid64(x))


@register_op("hardswish", infer=same_shape, elementwise=True)
def hardswish(x):
    """x * relu6(x + 3) / 6 (torch: 0 for x <= -3, x for x >= 3)."""
    x = _f64(x)
    return _out(x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0)


@register_op("hardsigmoid", infer=same_shape, elementwise=True)
def hardsigmoid(x):
    """relu6(x + 3) / 6."""
    return _out(np.minimum(np.maximum(_f64(x) + 3.0, 0.0), 6.0) / 6.0)


# -- unary ops with attributes --------------------------------------------------------------

def _infer_leaky_relu(x, *, negative_slope):
    check(_is_number(negative_slope), f"negative_slope must be a number, got {negative_slope!r}")
    return tuple(x)


@register_op("leaky_relu", infer=_infer_leaky_relu, elementwise=True)
def leaky_relu(x, *, negative_slope):
    """x if x > 0 else negative_slope * x."""
    x = _f64(x)
    return _out(np.where(x > 0, x, x * float(negative_slope)))


def _infer_gelu(x, *, approximate):
    check(approximate in ("none", "tanh"),
          f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    return tuple(x)


@register_op("gelu", infer=_infer_gelu, elementwise=True)
def gelu(x, *, approximate):
    """x * Phi(x) with the exact erf ("none") or torch's tanh approximation ("tanh")."""
    _infer_gelu((), approximate=approximate)
    x = _f64(x)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
        return _out(0.5 * x * (1.0 + np.tanh(inner)))
    return _out(0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))))


def _softplus64(z):
    """log(1 + exp(z)) on float64 without overflow; NaN stays NaN."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _infer_elu(x, *, alpha):
    check(_is_number(alpha), f"elu alpha must be a number, got {alpha!r}")
    return tuple(x)


@register_op("elu", infer=_infer_elu, elementwise=True)
def elu(x, *, alpha):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    x = _f64(x)
    return _out(np.where(x > 0, x, float(alpha) * np.expm1(x)))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@register_op("selu", infer=same_shape, elementwise=True)
def selu(x):
    """scale * elu(x, alpha) with torch's (self-normalising) constants."""
    x = _f64(x)
    return _out(SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)))


def _infer_softplus(x, *, beta, threshold):
    check(_is_number(beta) and beta != 0, f"softplus beta must be a non-zero number, got "
                                         f"{beta!r}")
    check(_is_number(threshold), f"softplus threshold must be a number, got {threshold!r}")
    return tuple(x)


@register_op("softplus", infer=_infer_softplus, elementwise=True)
def softplus(x, *, beta, threshold):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch)."""
    x = _f64(x)
    z = float(beta) * x
    with np.errstate(invalid="ignore"):
        return _out(np.where(z > float(threshold), x, _softplus64(z) / float(beta)))


@register_op("mish", infer=same_shape, elementwise=True)
def mish(x):
    """x * tanh(softplus(x))."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return _out(x * np.tanh(_softplus64(x)))


def _infer_clip(x, *, min, max):  # noqa: A002 - attribute names are the IR's
    for name, v in (("min", min), ("max", max)):
        check(v is None or _is_number(v), f"clip {name} must be a number or null, got {v!r}")
    return tuple(x)


@register_op("clip", infer=_infer_clip, elementwise=True)
def clip(x, *, min, max):  # noqa: A002
    """torch.clamp: min(max(x, min), max); a null bound is absent; NaN propagates."""
    y = _f64(x)
    if min is not None:
        y = np.maximum(y, float(min))
    if max is not None:
        y = np.minimum(y, float(max))
    return _out(y)


# -- prelu ----------------------------------------------------------------------------------

def _infer_prelu(x, weight):
    check(len(weight) == 1, f"prelu weight must be 1-D, got shape {tuple(weight)}")
    channels = x[1] if len(x) >= 2 else 1
    check(weight[0] == 1 or weight[0] == channels,
          f"prelu weight must have 1 or {channels} (input channels) elements, got {weight[0]}")
    return tuple(x)


@register_op("prelu", infer=_infer_prelu, n_inputs=(2, 2))
def prelu(x, weight):
    """x if x > 0 else weight[c] * x, weight broadcast over dim 1 (a single weight: all)."""
    _infer_prelu(x.shape, weight.shape)
    x = _f64(x)
    w = _f64(weight)
    if w.size > 1:
        w = w.reshape((1, -1) + (1,) * (x.ndim - 2))
    else:
        w = w.reshape(())
    return _out(np.where(x > 0, x, w * x))


# -- softmax --------------------------------------------------------------------------------

def _infer_softmax(x, *, dim):
    check(isinstance(dim, int) and not isinstance(dim, bool),
          f"dim must be an int, got {dim!r}")
    n = max(len(x), 1)
    check(-n <= dim < n, f"dim {dim} out of range for a rank-{len(x)} input")
    return tuple(x)


def _log_softmax64(x, dim):
    x = _f64(x)
    if x.ndim == 0:
        x = x.reshape(1)
        return _log_softmax64(x, 0).reshape(())
    m = np.max(x, axis=dim, keepdims=True)
    m = np.where(m == -np.inf, 0.0, m)     # an all -inf slice gives NaN, as torch
    z = x - m
    with np.errstate(divide="ignore", invalid="ignore"):
        return z - np.log(np.sum(np.exp(z), axis=dim, keepdims=True))


@register_op("softmax", infer=_infer_softmax)
def softmax(x, *, dim):
    """exp(x) / sum(exp(x)) along dim (max-subtracted)."""
    _infer_softmax(x.shape, dim=dim)
    return _out(np.exp(_log_softmax64(x, dim)))


@register_op("log_softmax", infer=_infer_softmax)
def log_softmax(x, *, dim):
    """x - logsumexp(x) along dim."""
    _infer_softmax(x.shape, dim=dim)
    return _out(_log_softmax64(x, dim))


__all__ = ["FUSABLE", "apply_activation", "check_activation"]
