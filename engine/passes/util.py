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

    ``track``: the values whose readers a pass will ask about (None: all).  Readers of
    other values are not indexed (that is most of the cost of building the index); asking
    about one anyway scans the nodes, so answers stay right either way.
    """

    def __init__(self, model, keep=frozenset(), track=None):
        self.model = model
        self.keep = keep
        self.outputs = set(model.outputs)
        self.order = list(model.nodes)  # committed order; None where a node moved away
        # value -> node (the last one, like Model.producers)
        self.producer = {o: n for n in self.order for o in n.outputs}
        self.track = track
        self.readers = {}               # tracked value -> {id(node): (node, occurrences)}
        self._gone = set()              # ids of removed nodes
        self._pos = None                # id(node) -> index in order, built by move()
        self._hints = {}                # constant-name stem -> first suffix not known taken
        self._inputs = None
        self._where = {}                # id(node) -> {value: positions in node.inputs}
        readers = self.readers
        if track is None:
            pairs = [(n, v) for n in self.order for v in n.inputs if v]
        else:
            pairs = [(n, v) for n in self.order for v in n.inputs if v in track]
        for n, v in pairs:
            r = readers.get(v)
            if r is None:
                readers[v] = {id(n): (n, 1)}
            else:
                entry = r.get(id(n))
                r[id(n)] = (n, entry[1] + 1 if entry else 1)

    # -- queries ---------------------------------------------------------------------------
    def reader_counts(self, value):
        """{id(node): (node, times it reads value)} for the current readers of ``value``."""
        if self.track is None or value in self.track:
            return self.readers.get(value, {})
        found = {}
        for n in self.order:
            if n is not None and id(n) not in self._gone:
                k = sum(1 for i in n.inputs if i and i == value)
                if k:
                    found[id(n)] = (n, k)
        return found

    def consumers(self, value):
        """Nodes reading ``value``, one entry per read (like ``Model.consumers()[value]``)."""
        return [n for n, c in self.reader_counts(value).values() for _ in range(c)]

    def single_consumer(self, value):
        """``single_consumer(model, value, keep)`` on the current graph."""
        if value in self.keep or value in self.outputs:
            return None
        r = self.reader_counts(value)
        if len(r) != 1:
            return None
        (node, count), = r.values()
        return node if count == 1 else None

    def unique_constant_name(self, stem):
        """``unique_constant_name(model, stem)`` on the current graph."""
        constants, producer = self.model.constants, self.producer
        if self._inputs is None:
            self._inputs = set(self.model.input_names)
        k = self._hints.get(stem, 0)
        name = stem if k == 0 else f"{stem}#{k}"
        while name in constants or name in producer or name in self._inputs:
            k += 1
            name = f"{stem}#{k}"
        self._hints[stem] = k
        return name

    # -- edits -----------------------------------------------------------------------------
    def set_inputs(self, node, inputs):
        self._where.pop(id(node), None)
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
        self._gone.add(id(node))

    def move(self, node, to):
        """Put ``node`` at the position of node ``to``, which is removed."""
        if self._pos is None:
            self._pos = {id(n): k for k, n in enumerate(self.order) if n is not None}
        k = self._pos[id(to)]
        self.remove(to)
        self.order[self._pos[id(node)]] = None
        self.order[k] = node
        self._pos[id(node)] = k

    def replace_uses(self, old, new):
        """``replace_uses(model, old, new)``: readers of ``old`` read ``new`` instead.

        Only the positions holding ``old`` are rewritten (a node reading thousands of
        values costs O(1) per replaced value, not a pass over its inputs each time); a
        node's input list is copied once before its first such edit, as the original
        built a new list.
        """
        if old == new:
            return
        moved = self.reader_counts(old)
        for node, count in list(moved.values()):
            self._read(node, [old] * count, -1)
            where = self._where.get(id(node))
            spots = where.get(old) if where and node.inputs is where[None] else None
            if (spots is None or len(spots) != count
                    or any(node.inputs[k] != old for k in spots)):
                node.inputs = list(node.inputs)
                where = self._where[id(node)] = {None: node.inputs}
                for k, v in enumerate(node.inputs):
                    where.setdefault(v, []).append(k)
            spots = where.pop(old, [])
            for k in spots:
                node.inputs[k] = new
            where.setdefault(new, []).extend(spots)
            self._read(node, [new] * count, 1)
        if old in self.outputs:
            self.model.outputs = [new if o == old else o for o in self.model.outputs]
            self.outputs = set(self.model.outputs)

    def commit(self):
        """Write the edited node list back to the model (the same list object)."""
        if self._gone:
            gone = self._gone
            self.model.nodes[:] = [n for n in self.order if n is not None and id(n) not in gone]
            self.order = list(self.model.nodes)
            self._gone = set()
            self._pos = None

    # -- internals -------------------------------------------------------------------------
    def _read(self, node, values, delta):
        readers, key, track = self.readers, id(node), self.track
        for v in values:
            if not v or (track is not None and v not in track):
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
