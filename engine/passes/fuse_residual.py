"""Fuse a residual addition into the conv before it: ``add(conv(x), r)`` -> ``conv(x, r)``.

ResNet-style blocks end in ``relu(conv(...) + shortcut)``.  With the shortcut as the conv's
fourth input (``residual``), the GEMM adds it in its store loop together with the bias, and
``fuse_activation`` then folds the ReLU after the addition into the same store: the sum is
never written and read back.

Only convs whose CPU kernels take a residual are rewritten: constant weights, groups 1, no
activation yet (``act(conv) + r`` is not ``conv + r`` followed by an activation), and a
shortcut of exactly the conv's output shape (no broadcasting).  The conv node moves to the
position of the add, which comes after both operands' producers, so the node list stays
topologically ordered.
"""

from .util import GraphIndex


def _fusable_conv(model, g, value):
    """The conv producing ``value`` if it can absorb an addition, else None."""
    prod = g.producer.get(value)
    if prod is None or prod.op != "conv" or prod.attrs.get("activation") is not None:
        return None
    if int(prod.attrs.get("groups", 1)) != 1 or len(prod.inputs) > 3:
        return None
    if prod.inputs[1] not in model.constants:
        return None
    return prod if g.single_consumer(value) is not None else None


def fuse_residual(model, keep=frozenset(), shapes=None):
    adds = [n for n in model.nodes if n.op == "add"]
    if not adds or not any(n.op == "conv" for n in model.nodes):
        return False                # nothing to fuse: spare the shape inference
    changed = False
    if shapes is None:
        try:
            shapes = model.infer_shapes()
        except Exception:          # symbolic dims we cannot resolve: leave the graph alone
            return False
    g = None
    try:
        for add in list(model.nodes):
            if add.op != "add" or len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
                continue
            if g is None:
                g = GraphIndex(model, keep, track={v for n in adds for v in n.inputs})
            for k in (0, 1):
                value, other = add.inputs[k], add.inputs[1 - k]
                if other in model.constants or not other:
                    continue
                conv = _fusable_conv(model, g, value)
                if conv is None:
                    continue
                if tuple(shapes[value].shape) != tuple(shapes[other].shape) or \
                        tuple(shapes[add.outputs[0]].shape) != tuple(shapes[value].shape):
                    continue
                inputs = list(conv.inputs)
                while len(inputs) < 3:
                    inputs.append("")
                inputs.append(other)
                g.set_inputs(conv, inputs)
                g.set_outputs(conv, list(add.outputs))
                g.move(conv, add)
                changed = True
                break
    finally:
        if g is not None:
            g.commit()
    return changed
