"""Evaluate nodes whose inputs are all constants once, at prepare time.

The NumPy reference computes the value (it is exact by definition); the node's output
becomes a constant and the node disappears.  Model outputs and values the caller wants to
read stay nodes, since plans read results from activation buffers.
"""

from ..ops import get_op


def fold_constants(model, keep=frozenset()):
    changed = False
    outputs = set(model.outputs)
    constants = model.constants
    folded = set()
    try:
        for node in list(model.nodes):
            if not node.inputs or not all(not i or i in constants for i in node.inputs):
                continue
            if any(o in outputs or o in keep for o in node.outputs):
                continue
            results = get_op(node.op).run_reference(
                node, [constants[i] if i else None for i in node.inputs])
            for name, value in zip(node.outputs, results):
                constants[name] = value
            folded.add(id(node))
            changed = True
    finally:
        if folded:                     # one rebuild, not a list.remove per folded node
            model.nodes[:] = [n for n in model.nodes if id(n) not in folded]
    return changed
