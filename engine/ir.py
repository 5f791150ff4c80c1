"""Graph IR: named values, nodes and constant tensors, in topological order.

A ``Model`` is a dataflow graph.  Every tensor is named; a node reads values by name and
writes new ones.  Weights are constants: named float32 arrays that nodes read like any
other value, so passes such as constant folding need no special cases.

Shapes are tuples of ints; ``None`` stands for the symbolic batch dimension of the model's
inputs and flows through shape inference.  Activations are NCHW float32, as in PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .errors import GraphError, node_error
from .limits import check_shape
from .ops import get_op

DTYPE = "float32"


@contextlib.contextmanager
def gc_paused():
    """The cyclic garbage collector off for a block (left off if it already was).

    Building, copying or checking a graph allocates a few objects per node and frees
    almost none, so the collections those allocations trigger keep walking every live
    object: on graphs of 10^5 nodes that costs more than the work itself.  Reference
    counting still frees everything acyclic meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _gc_paused(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with gc_paused():
            return fn(*args, **kwargs)
    return wrapper


@dataclass
class Value:
    """A named value of the graph: its ``shape`` (``None`` for the symbolic batch) and
    ``dtype`` (``"float32"``, the only one supported)."""
    name: str
    shape: tuple[Optional[int], ...]
    dtype: str = DTYPE


@dataclass
class Node:
    """One operation: ``op`` (a registered op name), its unique ``name``, the names of the
    values it reads (``inputs``; ``""`` for an absent optional input) and writes
    (``outputs``), and its JSON-like attributes ``attrs``."""
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The node as JSON types (its entry in a model file's graph)."""
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "attrs": _jsonable(self.attrs)}


class Model:
    """A validated graph: inputs, nodes, constants, outputs and free-form metadata.

    ``metadata`` holds JSON-serialisable extras that travel in the model file: class
    labels, preprocessing, provenance.
    """

    def __init__(self, inputs: Iterable[Value], outputs: Iterable[str], nodes: Iterable[Node],
                 constants: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, Any]] = None,
                 validate: bool = True) -> None:
        """The graph of these inputs, output names, nodes and float32 constant arrays;
        with ``validate`` (the default) it is checked, its nodes put in topological order
        and every value's shape inferred (``validate``)."""
        self.inputs = [Value(v.name, tuple(v.shape), v.dtype) for v in inputs]
        self.outputs = list(outputs)
        self.nodes = list(nodes)
        self.constants = dict(constants)
        self.metadata = dict(metadata or {})
        self.values = {}
        if validate:
            self.validate()

    # -- structure -------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        """The names of the model's inputs, in order."""
        return [v.name for v in self.inputs]

    def producers(self) -> dict[str, Node]:
        """{value name: the node that writes it} (inputs and constants have none)."""
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        """{value name: the nodes that read it, in node order} (unread values are absent)."""
        uses = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    uses.setdefault(i, []).append(n)
        return uses

    @_gc_paused
    def copy(self) -> Model:
        """Deep copy of the structure; constant arrays are shared (passes replace, never mutate)."""
        m = Model(self.inputs, self.outputs, _copy_nodes(self.nodes), dict(self.constants),
                  copy.deepcopy(self.metadata), validate=False)
        m.values = dict(self.values)
        return m

    def toposort(self) -> None:
        """Order nodes so each runs after the producers of its inputs (Kahn, stable, O(n)).

        Stable: nodes already in order keep it (checked first in one pass, the common
        case); otherwise the earliest ready node in the given order goes next.
        """
        known = set(self.input_names) | set(self.constants)
        if self._in_order(known):
            self.nodes = list(self.nodes)
            return
        producer = {o: i for i, n in enumerate(self.nodes) for o in n.outputs}
        waiting = [0] * len(self.nodes)
        readers = {}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if not v or v in known:
                    continue
                if v not in producer:
                    raise node_error(n, f"reads undefined value {v!r}")
                waiting[i] += 1
                readers.setdefault(v, []).append(i)
        ready = [i for i, w in enumerate(waiting) if w == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(self.nodes[i])
            for o in self.nodes[i].outputs:
                for j in readers.get(o, ()):
                    waiting[j] -= 1
                    if waiting[j] == 0:
                        heapq.heappush(ready, j)
        if len(order) != len(self.nodes):
            stuck = next(n for i, n in enumerate(self.nodes) if waiting[i])
            raise node_error(stuck, "is part of a cycle")
        self.nodes = order

    def _in_order(self, known):
        """Whether every input is a known value or an output of an earlier node, and no
        value is produced twice (then toposort's result is the current order)."""
        defined = set()
        add = defined.add
        for n in self.nodes:
            for v in n.inputs:
                if v and v not in known and v not in defined:
                    return False
            for o in n.outputs:
                if o in defined:
                    return False
                add(o)
        return True

    # -- validation and shape inference ----------------------------------------------------
    @_gc_paused
    def validate(self) -> None:
        """Check names, order and every node's shapes; fills ``self.values``."""
        seen = set()
        for name in self.input_names + list(self.constants):
            if not name or name in seen:
                raise GraphError(f"value name {name!r} is empty or defined twice")
            seen.add(name)
        node_names = set()
        for n in self.nodes:
            get_op(n.op)
            if n.name in node_names:
                raise GraphError(f"node name {n.name!r} is used twice")
            node_names.add(n.name)
            for o in n.outputs:
                if not o or o in seen:
                    raise node_error(n, f"output name {o!r} is empty or already defined")
                seen.add(o)
        for name, arr in self.constants.items():
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                raise GraphError(f"constant {name!r} must be a float32 ndarray, got "
                                 f"{getattr(arr, 'dtype', type(arr).__name__)}")
        for v in self.inputs:
            if v.dtype != DTYPE:
                raise GraphError(f"input {v.name!r} has dtype {v.dtype}; only float32 is supported")
            if any(d is not None and (not isinstance(d, int) or d < 1) for d in v.shape):
                raise GraphError(f"input {v.name!r} has invalid shape {v.shape}: dimensions must "
                                 f"be positive ints or None (the symbolic batch)")
            check_shape(v.shape, f"input {v.name!r}")
        if not self.outputs:
            raise GraphError("the model has no outputs")
        for o in self.outputs:
            if not isinstance(o, str) or o not in seen:
                raise GraphError(f"output {o!r} is not produced by any node or input")
            if o in self.constants:
                raise GraphError(f"output {o!r} names a constant (a weight), not a value "
                                 f"computed from the inputs")
        if len(set(self.outputs)) != len(self.outputs):
            raise GraphError("an output is listed twice")
        self.toposort()
        self.values = self.infer_shapes()

    @_gc_paused
    def infer_shapes(self, input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None,
                     ) -> dict[str, Value]:
        """Shapes of every value, given concrete or symbolic shapes of the inputs."""
        shapes = {name: tuple(a.shape) for name, a in self.constants.items()}
        for v in self.inputs:
            shapes[v.name] = tuple((input_shapes or {}).get(v.name, v.shape))
        for n in self.nodes:
            opdef = get_op(n.op)
            ins = [shapes[i] if i else None for i in n.inputs]
            for o, s in zip(n.outputs, opdef.infer_shapes(n, ins)):
                shapes[o] = s
        return {k: Value(k, s) for k, s in shapes.items()}

    # -- serialisation (the file format wraps this) ----------------------------------------
    def graph_dict(self) -> dict[str, Any]:
        """The graph as JSON types: inputs, outputs, nodes and the constants' names (the
        model file's ``graph`` entry; the arrays are stored beside it)."""
        return {
            "inputs": [{"name": v.name, "shape": list(v.shape), "dtype": v.dtype}
                       for v in self.inputs],
            "outputs": list(self.outputs),
            "nodes": [n.to_dict() for n in self.nodes],
            "constants": sorted(self.constants),
        }

    def __repr__(self):
        ins = ", ".join(f"{v.name}{list(v.shape)}" for v in self.inputs)
        return (f"<Model inputs=[{ins}] outputs={self.outputs} nodes={len(self.nodes)} "
                f"params={self.num_parameters():,}>")

    def num_parameters(self) -> int:
        """The number of elements of all constants (weights and buffers)."""
        return int(sum(a.size for a in self.constants.values()))


_ATOMS = (str, int, float, bool, type(None))


def _copy_nodes(nodes):
    """``copy.deepcopy(nodes)``, several times faster on the JSON-like node structure.

    Nodes and their lists and dicts are copied here, with the memo deepcopy keeps (so
    shared objects stay shared); anything else goes to deepcopy with that memo.
    """
    memo = {}
    atoms = _ATOMS
    new = object.__new__

    def value(v):
        t = type(v)
        if t in atoms:
            return v
        c = memo.get(id(v))
        if c is not None:
            return c
        if t is list:
            c = memo[id(v)] = []
            c += [x if type(x) in atoms else value(x) for x in v]
        elif t is dict:
            c = memo[id(v)] = {}
            c.update({k if type(k) in atoms else value(k): x if type(x) in atoms else value(x)
                      for k, x in v.items()})
        elif t is Node:
            c = memo[id(v)] = new(Node)
            c.__dict__.update({k: x if type(x) in atoms else value(x)
                               for k, x in v.__dict__.items()})
        else:
            c = copy.deepcopy(v, memo)
        return c

    return value(nodes)


def _jsonable(obj):
    """Attributes as JSON types (tuples become lists); checked so saving cannot fail later."""
    return json.loads(json.dumps(obj, default=_reject))


def _reject(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise GraphError(f"attribute value {o!r} of type {type(o).__name__} is not serialisable")
