"""Small graph-editing helpers shared by the passes.

``GraphIndex`` keeps the producer and the readers of every value current while a pass
edits the graph, so each edit and each query costs O(1) (amortised) instead of a scan of
every node: a pass over an n-node graph stays O(n), however many edits it makes.  The
module-level functions are the scanning originals, for callers that make a single edit.
"""


def replace_uses(model, old, new):
    """Make every reader of value ``old`` read ``new`` instead (outputs included)."""
    for n in model.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
    model.outputs = [new if o == old else o for o in model.outputs]


def single_consumer(model, value, keep):
    """The only node reading ``value``, if it has exactly one and ``value`` is not kept."""
    if value in keep or value in model.outputs:
        return None
    users = model.consumers().get(value, [])
    return users[0] if len(users) == 1 and users[0].inputs.count(value) == 1 else None


def unique_constant_name(model, stem):
    name, k = stem, 0
    taken = set(model.constants) | {o for n in model.nodes for o in n.outputs} | set(model.input_names)
    while name in taken:
        k += 1
        name = f"{stem}#{k}"
    return name


class GraphIndex:
    """Producers and readers of the values of ``model.nodes``, kept current through edits.

    Edits go through the methods below (``set_inputs``, ``set_outputs``, ``remove``,
    ``move``, ``replace_uses``); ``commit`` then writes the node list back to the model in
    one go (removed nodes dropped, moved nodes at their new places).  Queries answer what
    the scanning helpers above would answer on the edited graph.
    """

    def __init__(self, model, keep=frozenset()):
        self.model = model
        self.keep = keep
        self.outputs = set(model.outputs)
        self.producer = {}              # value -> node (the last one, like Model.producers)
        self.readers = {}               # value -> {id(node): (node, occurrences)}
        self.slot = {}                  # id(node) -> its position in the committed order
        self.order = list(model.nodes)  # positions; None where a node was removed / moved
        self.removed = 0
        self._hints = {}                # constant-name stem -> first suffix not known taken
        for k, n in enumerate(self.order):
            self.slot[id(n)] = k
            for o in n.outputs:
                self.producer[o] = n
            self._read(n, n.inputs, 1)

    # -- queries ---------------------------------------------------------------------------
    def consumers(self, value):
        """Nodes reading ``value``, one entry per read (like ``Model.consumers()[value]``)."""
        return [n for n, c in self.readers.get(value, {}).values() for _ in range(c)]

    def single_consumer(self, value):
        """``single_consumer(model, value, keep)`` on the current graph."""
        if value in self.keep or value in self.outputs:
            return None
        r = self.readers.get(value)
        if not r or len(r) != 1:
            return None
        (node, count), = r.values()
        return node if count == 1 else None

    def unique_constant_name(self, stem):
        """``unique_constant_name(model, stem)`` on the current graph."""
        model = self.model
        k = self._hints.get(stem, 0)
        name = stem if k == 0 else f"{stem}#{k}"
        while (name in model.constants or name in self.producer
               or name in self._input_names()):
            k += 1
            name = f"{stem}#{k}"
        self._hints[stem] = k
        return name

    def _input_names(self):
        names = getattr(self, "_inputs", None)
        if names is None:
            names = self._inputs = set(self.model.input_names)
        return names

    # -- edits -----------------------------------------------------------------------------
    def set_inputs(self, node, inputs):
        self._read(node, node.inputs, -1)
        node.inputs = inputs
        self._read(node, inputs, 1)

    def set_outputs(self, node, outputs):
        for o in node.outputs:
            if self.producer.get(o) is node:
                self._unproduce(o)
        node.outputs = outputs
        for o in outputs:
            self.producer[o] = node

    def remove(self, node):
        """Take ``node`` out of the graph."""
        self._read(node, node.inputs, -1)
        for o in node.outputs:
            if self.producer.get(o) is node:
                self._unproduce(o)
        k = self.slot.pop(id(node))
        self.order[k] = None
        self.removed += 1

    def move(self, node, to):
        """Put ``node`` at the position of node ``to``, which is removed."""
        k = self.slot[id(to)]
        self.remove(to)
        self.order[self.slot[id(node)]] = None
        self.order[k] = node
        self.slot[id(node)] = k

    def replace_uses(self, old, new):
        """``replace_uses(model, old, new)``: readers of ``old`` read ``new`` instead."""
        if old == new:
            return
        moved = self.readers.pop(old, None)
        if moved:
            for node, count in moved.values():
                node.inputs = [new if i == old else i for i in node.inputs]
                self._read(node, [new] * count, 1)
        if old in self.outputs:
            self.model.outputs = [new if o == old else o for o in self.model.outputs]
            self.outputs = set(self.model.outputs)

    def commit(self):
        """Write the edited node list back to the model."""
        if self.removed:
            self.model.nodes[:] = [n for n in self.order if n is not None]
            self.order = list(self.model.nodes)
            self.slot = {id(n): k for k, n in enumerate(self.order)}
            self.removed = 0

    # -- internals -------------------------------------------------------------------------
    def _read(self, node, values, delta):
        readers, key = self.readers, id(node)
        for v in values:
            if not v:
                continue
            r = readers.get(v)
            if r is None:
                r = readers[v] = {}
            entry = r.get(key)
            count = (entry[1] if entry else 0) + delta
            if count > 0:
                r[key] = (node, count)
            else:
                r.pop(key, None)
                if not r:
                    del readers[v]

    def _unproduce(self, value):
        del self.producer[value]
        # a name no longer produced may be free again for unique_constant_name
        self._hints.pop(value, None)
        if "#" in value:
            self._hints.pop(value.rsplit("#", 1)[0], None)
