"""Convolution and transposed convolution over 1, 2 or 3 spatial dims (NC + spatial).

The references loop over kernel taps and contract channels with one batched matmul per
tap (all groups at once), accumulating in float64; they return float32.  Weight layouts
are PyTorch's: conv ``(Cout, Cin/G, *k)``, conv_transpose ``(Cin, Cout/G, *k)``.

Also home of the attribute-validation helpers the pooling and resize ops share.
"""

import itertools
import numbers

import numpy as np

from .activation import apply_activation, check_activation
from ..limits import check_buffer, check_extent
from .registry import check, register_op


# -- attribute / shape helpers (shared with pool.py, resize.py) ------------------------------

def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def int_list(value, n, name, *, minimum=None):
    """``value`` as a list of ``n`` ints, each >= minimum; ValueError saying what was wrong."""
    check(isinstance(value, (list, tuple)) and all(is_int(v) for v in value),
          f"{name} must be a list of {n} ints, got {value!r}")
    check(len(value) == n,
          f"{name} must have {n} entries (one per spatial dim), got {len(value)}: {list(value)}")
    if minimum is not None:
        check(all(v >= minimum for v in value),
              f"{name} entries must be >= {minimum}, got {list(value)}")
    return [int(v) for v in value]


def spatial_rank(x, op, *, min_rank=1, max_rank=3):
    """Spatial rank of an N, C, spatial... input shape; ValueError if out of range."""
    r = len(x) - 2
    check(min_rank <= r <= max_rank,
          f"{op} expects an input of rank {min_rank + 2} to {max_rank + 2} (N, C, spatial...), "
          f"got rank {len(x)} shape {tuple(x)}")
    return r


def known(d, what):
    """``d`` if it is a concrete size; ValueError if it is the symbolic batch (None)."""
    check(d is not None, f"{what} must be a concrete size, not symbolic (None)")
    return d


def batch_or_one(d):
    return 1 if d is None else d


def first_shape(out_shapes):
    """The first output shape, whether given a shape or a list of shapes."""
    if isinstance(out_shapes, tuple) and all(d is None or is_int(d) for d in out_shapes):
        return out_shapes
    return tuple(out_shapes[0])


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# -- conv -----------------------------------------------------------------------------------

def _conv_attrs(x, weight, *, stride, padding, dilation, groups):
    r = spatial_rank(x, "conv")
    check(len(weight) == len(x),
          f"conv weight must have rank {len(x)} (Cout, Cin/groups, *kernel) for a rank-{len(x)} "
          f"input, got shape {tuple(weight)}")
    stride = int_list(stride, r, "stride", minimum=1)
    dilation = int_list(dilation, r, "dilation", minimum=1)
    check(isinstance(padding, (list, tuple)) and len(padding) == r
          and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(is_int(v) for v in p)
                  for p in padding),
          f"conv padding must be a list of {r} [begin, end] int pairs, got {padding!r}")
    check(all(v >= 0 for p in padding for v in p),
          f"conv padding must be non-negative, got {padding!r}")
    check(is_int(groups) and groups >= 1, f"groups must be a positive int, got {groups!r}")
    return r, stride, [[int(b), int(e)] for b, e in padding], dilation, int(groups)


def _infer_conv(x, weight, bias=None, residual=None, *, stride, padding, dilation, groups,
                activation):
    r, stride, padding, dilation, groups = _conv_attrs(
        x, weight, stride=stride, padding=padding, dilation=dilation, groups=groups)
    cout, cin_g = weight[0], weight[1]
    kernel = weight[2:]
    check(all(k >= 1 for k in kernel), f"conv kernel sizes must be >= 1, got {tuple(kernel)}")
    check(cout % groups == 0,
          f"conv output channels {cout} (weight dim 0) must be divisible by groups={groups}")
    cin = known(x[1], "conv input channels")
    check(cin == cin_g * groups,
          f"expected input with {cin_g * groups} channels (weight has {cin_g} per group x "
          f"{groups} groups), got {cin}")
    if bias is not None:
        check(tuple(bias) == (cout,),
              f"conv bias must have shape ({cout},) (output channels), got {tuple(bias)}")
    check_activation(activation)
    out = [x[0], cout]
    padded_volume = 1
    for i in range(r):
        size = known(x[2 + i], f"conv spatial dim {i}")
        padded = check_extent(size + padding[i][0] + padding[i][1],
                              f"conv padded input size in spatial dim {i}")
        eff = check_extent(dilation[i] * (kernel[i] - 1) + 1,
                           f"conv effective kernel size in spatial dim {i}")
        padded_volume *= padded
        check(eff <= padded,
              f"conv kernel (effective size {eff} = dilation {dilation[i]} x (kernel "
              f"{kernel[i]} - 1) + 1) is larger than the padded input ({size} + "
              f"{padding[i][0]} + {padding[i][1]} = {padded}) in spatial dim {i}")
        out.append((padded - eff) // stride[i] + 1)
    # The im2col kernels copy one group of one image into a zero-padded buffer.
    check_buffer(cin_g * padded_volume, "conv's zero-padded input copy (one group)")
    if residual is not None:
        check(len(residual) == len(out) and all(
                  a is None or b is None or a == b for a, b in zip(residual, out)),
              f"conv residual must have the output's shape {tuple(out)}, got {tuple(residual)}")
    return tuple(out)


def _macs_conv(out_shapes, x, weight, bias=None, residual=None, **attrs):
    out = first_shape(out_shapes)
    return (batch_or_one(out[0]) * int(np.prod(out[1:], dtype=np.int64))
            * int(np.prod(weight[1:], dtype=np.int64)))


@register_op("conv", infer=_infer_conv, n_inputs=(2, 4), macs=_macs_conv)
def conv(x, weight, bias=None, residual=None, *, stride, padding, dilation, groups, activation):
    """PyTorch convolution (cross-correlation) with asymmetric zero padding, plus the
    optional residual (same shape as the output, added by the residual-fusion pass), then
    activation."""
    out_shape = _infer_conv(x.shape, weight.shape, None if bias is None else bias.shape,
                            None if residual is None else residual.shape,
                            stride=stride, padding=padding, dilation=dilation, groups=groups,
                            activation=activation)
    r = x.ndim - 2
    n, cin = x.shape[:2]
    cout, cin_g = weight.shape[:2]
    kernel = weight.shape[2:]
    g = int(groups)
    out_sp = out_shape[2:]
    xp = np.pad(_f64(x), [(0, 0), (0, 0)] + [tuple(p) for p in padding])
    w = _f64(weight).reshape((g, cout // g, cin_g) + tuple(kernel))
    npos = int(np.prod(out_sp, dtype=np.int64))
    acc = np.zeros((n, g, cout // g, npos))
    for tap in itertools.product(*(range(k) for k in kernel)):
        sl = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                   for t, d, s, o in zip(tap, dilation, stride, out_sp))
        patch = xp[(slice(None), slice(None)) + sl].reshape(n, g, cin_g, npos)
        acc += w[(Ellipsis,) + tap] @ patch          # (g, Cout/g, Cin/g) @ (n, g, Cin/g, P)
    y = acc.reshape((n, cout) + tuple(out_sp))
    if bias is not None:
        y = y + _f64(bias).reshape((1, cout) + (1,) * r)
    if residual is not None:
        y = y + _f64(residual)
    return np.asarray(apply_activation(y, activation), dtype=np.float32)


# -- conv_transpose -------------------------------------------------------------------------

def _infer_conv_transpose(x, weight, bias=None, *, stride, padding, output_padding, dilation,
                          groups, activation):
    r = spatial_rank(x, "conv_transpose")
    check(len(weight) == len(x),
          f"conv_transpose weight must have rank {len(x)} (Cin, Cout/groups, *kernel) for a "
          f"rank-{len(x)} input, got shape {tuple(weight)}")
    stride = int_list(stride, r, "stride", minimum=1)
    dilation = int_list(dilation, r, "dilation", minimum=1)
    padding = int_list(padding, r, "padding", minimum=0)
    output_padding = int_list(output_padding, r, "output_padding", minimum=0)
    check(is_int(groups) and groups >= 1, f"groups must be a positive int, got {groups!r}")
    cin_w, cout_g = weight[0], weight[1]
    kernel = weight[2:]
    check(all(k >= 1 for k in kernel),
          f"conv_transpose kernel sizes must be >= 1, got {tuple(kernel)}")
    check(cin_w % groups == 0,
          f"conv_transpose input channels {cin_w} (weight dim 0) must be divisible by "
          f"groups={groups}")
    cin = known(x[1], "conv_transpose input channels")
    check(cin == cin_w,
          f"expected input with {cin_w} channels (conv_transpose weight dim 0), got {cin}")
    cout = cout_g * groups
    if bias is not None:
        check(tuple(bias) == (cout,),
              f"conv_transpose bias must have shape ({cout},) (output channels = {cout_g} per "
              f"group x {groups} groups), got {tuple(bias)}")
    check_activation(activation)
    out = [x[0], cout]
    full_volume = 1
    for i in range(r):
        check(output_padding[i] < stride[i] or output_padding[i] < dilation[i],
              f"output_padding {output_padding[i]} in spatial dim {i} must be smaller than "
              f"stride ({stride[i]}) or dilation ({dilation[i]})")
        size = known(x[2 + i], f"conv_transpose spatial dim {i}")
        full = check_extent((size - 1) * stride[i] + dilation[i] * (kernel[i] - 1)
                            + output_padding[i] + 1,
                            f"conv_transpose uncropped output size in spatial dim {i}")
        full_volume *= full
        o = full - 2 * padding[i]
        check(o >= 1,
              f"conv_transpose output size in spatial dim {i} would be {o}: padding "
              f"{padding[i]} is too large for input {size}, kernel {kernel[i]}, stride "
              f"{stride[i]}, dilation {dilation[i]}")
        out.append(o)
    # The reference scatters into the uncropped output before cropping the padding away.
    check_buffer(batch_or_one(x[0]) * cout * full_volume,
                 "conv_transpose's uncropped output")
    return tuple(out)


def _macs_conv_transpose(out_shapes, x, weight, bias=None, **attrs):
    return (batch_or_one(x[0]) * int(np.prod(x[1:], dtype=np.int64))
            * int(np.prod(weight[1:], dtype=np.int64)))


@register_op("conv_transpose", infer=_infer_conv_transpose, n_inputs=(2, 3),
             macs=_macs_conv_transpose)
def conv_transpose(x, weight, bias=None, *, stride, padding, output_padding, dilation, groups,
                   activation):
    """PyTorch transposed convolution: scatter each input through the kernel, crop padding."""
    out_shape = _infer_conv_transpose(
        x.shape, weight.shape, None if bias is None else bias.shape, stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        activation=activation)
    r = x.ndim - 2
    n, cin = x.shape[:2]
    cout_g = weight.shape[1]
    kernel = weight.shape[2:]
    g = int(groups)
    in_sp = x.shape[2:]
    cout = cout_g * g
    # Full (uncropped) output; output_padding only extends the end, where nothing lands.
    full = [(i - 1) * s + d * (k - 1) + 1 + op
            for i, s, d, k, op in zip(in_sp, stride, dilation, kernel, output_padding)]
    y = np.zeros((n, cout) + tuple(full))
    npos = int(np.prod(in_sp, dtype=np.int64))
    xs = _f64(x).reshape(n, g, cin // g, npos)
    # (Cin, Cout/g, *k) -> (g, Cin/g, Cout/g, *k) -> per tap (g, Cout/g, Cin/g)
    w = _f64(weight).reshape((g, cin // g, cout_g) + tuple(kernel))
    for tap in itertools.product(*(range(k) for k in kernel)):
        contrib = np.swapaxes(w[(Ellipsis,) + tap], 1, 2) @ xs   # (n, g, Cout/g, P)
        sl = tuple(slice(t * d, t * d + s * (i - 1) + 1, s)
                   for t, d, s, i in zip(tap, dilation, stride, in_sp))
        y[(slice(None), slice(None)) + sl] += contrib.reshape((n, cout) + tuple(in_sp))
    crop = tuple(slice(p, p + o) for p, o in zip(padding, out_shape[2:]))
    y = y[(slice(None), slice(None)) + crop]
    if bias is not None:
        y = y + _f64(bias).reshape((1, cout) + (1,) * r)
    return np.asarray(apply_activation(y, activation), dtype=np.float32)


__all__ = ["int_list", "spatial_rank", "known", "batch_or_one", "first_shape", "is_int"]
