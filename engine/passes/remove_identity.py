"""Remove ops that are the identity at inference: dropout and identity.

Readers of the op's output read its input instead.  When the output is a model output or
a value the caller wants to read, the producer of the input is renamed to produce it
directly; only if that is impossible (the input is a model input, a constant, or read
elsewhere) does the node stay.
"""

from .util import GraphIndex

IDENTITY_OPS = {"dropout", "identity"}


def remove_identity(model, keep=frozenset()):
    identities = [n for n in model.nodes if n.op in IDENTITY_OPS]
    if not identities:
        return False
    track = {v for n in identities for v in n.inputs[:1] + n.outputs[:1]}
    g = GraphIndex(model, keep, track=track)
    changed = False
    try:
        for node in list(model.nodes):
            if node.op not in IDENTITY_OPS:
                continue
            src, dst = node.inputs[0], node.outputs[0]
            if dst not in keep and dst not in g.outputs:
                g.remove(node)
                g.replace_uses(dst, src)
                changed = True
                continue
            producer = g.producer.get(src)
            readers = g.reader_counts(src)
            if (producer is not None and src not in keep and src not in g.outputs
                    and len(readers) == 1 and readers.get(id(node), (None, 0))[1] == 1):
                g.remove(node)
                g.set_outputs(producer, [dst if o == src else o for o in producer.outputs])
                changed = True
    finally:
        g.commit()
    return changed
