"""Fuse an activation into the conv / linear / batch_norm before it: one kernel call, one
memory pass (batch_norm: the BatchNorm + ReLU pairs of pre-activation blocks, DenseNet's).

The layer's ``activation`` attribute records the fused op and its attributes; kernels
apply it in their store loop and the reference applies it right after the layer.
"""

from ..ops import get_op
from ..ops.activation import FUSABLE
from .util import GraphIndex

LAYERS = {"conv", "conv_transpose", "linear", "batch_norm"}


def _candidate(node):
    return node.op in LAYERS and node.attrs.get("activation") is None


def fuse_activation(model, keep=frozenset()):
    layers = [n for n in model.nodes if _candidate(n)]
    if not layers:
        return False
    g = GraphIndex(model, keep, track={n.outputs[0] for n in layers if n.outputs})
    changed = False
    try:
        for layer in list(model.nodes):
            if not _candidate(layer):
                continue
            act = g.single_consumer(layer.outputs[0])
            if act is None or act.op not in FUSABLE or not get_op(act.op).elementwise:
                continue
            layer.attrs["activation"] = {"op": act.op, **act.attrs}
            g.set_outputs(layer, list(act.outputs))
            g.remove(act)
            changed = True
    finally:
        g.commit()
    return changed
