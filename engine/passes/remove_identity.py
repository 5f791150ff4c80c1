"""Remove ops that are the identity at inference: dropout and identity.

Readers of the op's output read its input instead.  When the output is a model output or
a value the caller wants to read, the producer of the input is renamed to produce it
directly; only if that is impossible (the input is a model input, a constant, or read
elsewhere) does the node stay.
"""

from .util import replace_uses

IDENTITY_OPS = {"dropout", "identity"}


def remove_identity(model, keep=frozenset()):
    changed = False
    for node in list(model.nodes):
        if node.op not in IDENTITY_OPS:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if dst not in keep and dst not in model.outputs:
            model.nodes.remove(node)
            replace_uses(model, dst, src)
            changed = True
            continue
        producer = model.producers().get(src)
        readers = model.consumers().get(src, [])
        if (producer is not None and src not in keep and src not in model.outputs
                and readers == [node]):
            model.nodes.remove(node)
            producer.outputs = [dst if o == src else o for o in producer.outputs]
            changed = True
    return changed
