"""Fuse an activation into the conv / linear before it: one kernel call, one memory pass.

The layer's ``activation`` attribute records the fused op and its attributes; kernels
apply it in their store loop and the reference applies it right after the layer.
"""

from ..ops import get_op
from .util import single_consumer

LAYERS = {"conv", "conv_transpose", "linear"}
FUSABLE = {"relu", "relu6", "leaky_relu", "clip", "sigmoid", "tanh", "silu", "hardswish",
           "hardsigmoid", "gelu"}


def fuse_activation(model, keep=frozenset()):
    changed = False
    for layer in list(model.nodes):
        if layer.op not in LAYERS or layer.attrs.get("activation") is not None:
            continue
        act = single_consumer(model, layer.outputs[0], keep)
        if act is None or act.op not in FUSABLE or not get_op(act.op).elementwise:
            continue
        layer.attrs["activation"] = {"op": act.op, **act.attrs}
        layer.outputs = list(act.outputs)
        model.nodes.remove(act)
        changed = True
    return changed
