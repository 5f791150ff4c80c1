"""Fold inference BatchNorm into the neighbouring conv / linear: zero cost at run time.

BatchNorm at inference is a per-channel affine map ``y = x * s + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``.

* After a conv / conv_transpose / linear (the usual order): scale that layer's output
  channels, ``W' = W * s``, ``b' = b * s + t``.  Exact, unless a residual addition was
  fused into the conv (pre-activation ResNets: ``bn(conv(x) + r)``), which is left alone.
* Before a conv / linear: scale the layer's input channels, ``W' = W * s`` over input
  channels and ``b' = b + sum(W * t)``.  Exact only when the conv has no padding (padded
  zeros would otherwise skip the BatchNorm's shift), so padded convs are left alone.

New weights get new constant names; the original arrays are never mutated (they may be
shared with the caller's model).
"""

import numpy as np

from .util import GraphIndex

PRODUCERS = {"conv", "conv_transpose", "linear"}


def bn_affine(model, bn):
    """(scale, shift) per channel of a batch_norm node, in float64."""
    c = [model.constants.get(i) if i else None for i in bn.inputs]
    mean, var = c[1].astype(np.float64), c[2].astype(np.float64)
    gamma = c[3].astype(np.float64) if len(c) > 3 and c[3] is not None else np.ones_like(mean)
    beta = c[4].astype(np.float64) if len(c) > 4 and c[4] is not None else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.attrs["eps"])
    return scale, beta - mean * scale


def _bn_constant(model, bn):
    return all(not i or i in model.constants for i in bn.inputs[1:])


def _set_params(model, index, node, weight, bias):
    for idx, (suffix, arr) in enumerate((("weight", weight), ("bias", bias)), start=1):
        name = index.unique_constant_name(f"{node.name}.{suffix}")
        model.constants[name] = np.ascontiguousarray(arr, dtype=np.float32)
        inputs = list(node.inputs)
        while len(inputs) <= idx:
            inputs.append("")
        inputs[idx] = name
        index.set_inputs(node, inputs)


def _weight_bias(model, node, n_out):
    w = model.constants[node.inputs[1]].astype(np.float64)
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    b = model.constants[b_name].astype(np.float64) if b_name else np.zeros(n_out)
    return w, b


def _fold_after(model, index, layer, bn):
    scale, shift = bn_affine(model, bn)
    wt, b = _weight_bias(model, layer, len(scale))
    if layer.op == "conv_transpose":
        g = layer.attrs["groups"]
        cin, cout_g = wt.shape[0], wt.shape[1]
        s = scale.reshape(g, 1, cout_g, *([1] * (wt.ndim - 2)))
        wt = (wt.reshape(g, cin // g, cout_g, *wt.shape[2:]) * s).reshape(wt.shape)
    else:
        wt = wt * scale.reshape(-1, *([1] * (wt.ndim - 1)))
    _set_params(model, index, layer, wt, b * scale + shift)


def _fold_before(model, index, bn, layer):
    scale, shift = bn_affine(model, bn)
    w, b = _weight_bias(model, layer, model.constants[layer.inputs[1]].shape[0])
    if layer.op == "linear":
        new_b = b + w @ shift
        w = w * scale[None, :]
    else:
        g = layer.attrs["groups"]
        cout, cin_g = w.shape[0], w.shape[1]
        # Input channel of weight[o, i] is (o // (Cout/G)) * Cin/G + i.
        chan = (np.arange(cout)[:, None] // (cout // g)) * cin_g + np.arange(cin_g)[None, :]
        extra = (1,) * (w.ndim - 2)
        new_b = b + (w * shift[chan].reshape(cout, cin_g, *extra)).reshape(cout, -1).sum(1)
        w = w * scale[chan].reshape(cout, cin_g, *extra)
    _set_params(model, index, layer, w, new_b)


def _has_residual(layer):
    """A conv with an addition fused in (fuse_residual: ``conv(x) + r``): a BatchNorm after
    it would scale ``r`` too, which its weights cannot express."""
    return len(layer.inputs) > 3 and bool(layer.inputs[3])


def _params_constant(model, layer):
    return layer.inputs[1] in model.constants and (
        len(layer.inputs) < 3 or not layer.inputs[2] or layer.inputs[2] in model.constants)


def fold_batchnorm(model, keep=frozenset()):
    bns = [n for n in model.nodes if n.op == "batch_norm"]
    if not bns:
        return False
    changed = False
    g = GraphIndex(model, keep, track={v for n in bns for v in n.inputs[:1] + n.outputs[:1]})
    try:
        for bn in list(model.nodes):
            if bn.op != "batch_norm" or not _bn_constant(model, bn):
                continue
            x, y = bn.inputs[0], bn.outputs[0]
            layer = g.producer.get(x)
            shape = model.values[x].shape if x in model.values else None
            if (layer is not None and layer.op in PRODUCERS and _params_constant(model, layer)
                    and layer.attrs.get("activation") is None
                    and not _has_residual(layer)
                    and g.single_consumer(x) is bn
                    and (layer.op != "linear" or (shape is not None and len(shape) == 2))):
                _fold_after(model, g, layer, bn)
                if bn.attrs.get("activation") is not None:    # moves on to the layer
                    layer.attrs["activation"] = bn.attrs["activation"]
                g.set_outputs(layer, [y])
                g.remove(bn)
                changed = True
                continue
            nxt = g.single_consumer(y)
            if (nxt is not None and nxt.op in ("conv", "linear") and nxt.inputs[0] == y
                    and bn.attrs.get("activation") is None
                    and _params_constant(model, nxt)
                    and (nxt.op != "conv"
                         or all(p == 0 for pair in nxt.attrs["padding"] for p in pair))
                    and (nxt.op != "linear" or (shape is not None and len(shape) == 2))):
                _fold_before(model, g, bn, nxt)
                g.remove(bn)
                g.replace_uses(y, x)
                changed = True
    finally:
        g.commit()
    return changed
