"""Evaluate nodes whose inputs are all constants once, at prepare time.

The NumPy reference computes the value (it is exact by definition); the node's output
becomes a constant and the node disappears.  Model outputs and values the caller wants to
read stay nodes, since plans read results from activation buffers.
"""

from ..ops import get_op


def fold_constants(model, keep=frozenset()):
    changed = False
    for node in list(model.nodes):
        if not node.inputs or not all(not i or i in model.constants for i in node.inputs):
            continue
        if any(o in model.outputs or o in keep for o in node.outputs):
            continue
        results = get_op(node.op).run_reference(
            node, [model.constants[i] if i else None for i in node.inputs])
        for name, value in zip(node.outputs, results):
            model.constants[name] = value
        model.nodes.remove(node)
        changed = True
    return changed
