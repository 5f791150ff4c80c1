"""Memory planning for every backend: views, lifetimes and one arena per plan.

1. **Views** (``plan_views``): values that need no memory of their own.
   - alias ops (reshape, flatten, identity, dropout) re-view their input;
   - *concat without copies*: where every dim before the concat dim is 1 (channel concat at
     batch 1: DenseNet, GoogLeNet, SqueezeNet, U-Net), each input is computed straight into
     its slice of the output.  Concats are visited last first, so in DenseNet the last
     concat of a block claims every feature map and each earlier concat, whose inputs then
     already lie back to back, becomes a view of a prefix of it;
   - split pieces are views of their input under the same condition.
   A value that cannot be placed (a constant, an alias, already placed elsewhere, twice in
   one concat) is copied by the concat / split kernel instead: the kernels receive one flag
   per piece (``PrepareContext.options["views"]``), and a concat or split whose pieces are
   all in place needs no kernel (``needs_kernel``).
2. **Lifetimes and the arena** (``plan_buffers``): each root buffer lives from the step
   that writes it to the last step that reads it (its views' uses included); kernel
   workspaces live one step.  Buffers whose lifetimes do not overlap may share memory.  We
   place them greedily, largest first, at the lowest offset that fits between the
   already-placed buffers alive at the same time ("greedy by size", as in TFLite's arena
   planner; ``plan_arena``).  Finding the optimum is NP-hard; greedy-by-size stays within a
   few percent of the lower bound (the largest set of simultaneously live buffers) on CNNs.

The CPU runtime (engine/runtime/plan.py) and the CUDA backend (engine/backends/cuda/
planner.py) both plan with these functions; only the alignment and the debugging guard
gaps differ.

Cost: finding the placed buffers alive at the same time as the next one uses an index on
lifetimes (below), so planning costs O(n log n + K log K) for n buffers and K pairs of
buffers alive at once: linear in the length of a chain, whatever its length.
"""

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from .errors import EngineError
from .ops import get_op

ALIGN = 64  # bytes: a cache line, and the widest vector register (AVX-512)
SHORT = 8   # steps: lifetimes up to this long are found by their first step alone
WORK_PER_BUFFER = 128    # exact placement while it looks at fewer buffers than this per
WORK_BASE = 1 << 17      # buffer on average, plus this many (see plan_arena)


@dataclass
class Buffer:
    key: str
    size: int     # bytes
    first: int    # step that writes it
    last: int     # last step that reads it
    offset: int = -1


def align(n, a=ALIGN):
    return (n + a - 1) // a * a


def plan_arena(buffers):
    """Assign ``offset`` to each Buffer; return the arena size in bytes.

    Each buffer, largest first, goes to the lowest offset at which it overlaps no
    already-placed buffer whose lifetime overlaps its own.

    That search costs about the number of buffers alive alongside each one, which a
    hostile graph can make quadratic (thousands of values alive at once).  Past a work
    budget far beyond any real network (``WORK_PER_BUFFER`` per buffer), the remaining
    buffers go on top of the placed buffers alive alongside them instead: still a valid
    plan, found in O(log n) each.
    """
    order = sorted(buffers, key=lambda b: (-b.size, b.first, b.key))
    n = len(order)
    if n == 0:
        return 0
    first = [b.first for b in order]
    last = [b.last for b in order]
    if any(f > l for f, l in zip(first, last)):
        return _plan_arena_scan(order)
    size = [align(b.size) for b in order]
    offset = [-1] * n                       # -1: not placed yet

    # Lifetime index, built once over all buffers (placed or not; unplaced ones are
    # skipped when read).  Short lifetimes (at most SHORT steps) overlapping [a, c] start
    # in [a - SHORT + 1, c]: a slice of the short buffers sorted by first step.  Long ones
    # either start in [a, c] (a slice of the long buffers sorted by first step) or contain
    # step a: a stabbing query on a segment tree over the steps holding the placed ones.
    short = sorted((i for i in range(n) if last[i] - first[i] < SHORT), key=first.__getitem__)
    long_ = sorted((i for i in range(n) if last[i] - first[i] >= SHORT), key=first.__getitem__)
    short_first = [first[i] for i in short]
    long_first = [first[i] for i in long_]
    t0 = min(first)
    width = 1
    while width < max(last) - t0 + 1:
        width *= 2
    cover = [None] * (2 * width)            # tree node -> placed long buffers covering it
    any_long = bool(long_)
    long_placed = False
    budget = WORK_PER_BUFFER * n + WORK_BASE
    work = 0

    total = 0
    for i in range(n):
        a, c = first[i], last[i]
        lo, hi = bisect_left(short_first, a - SHORT + 1), bisect_right(short_first, c)
        work += hi - lo
        live = [j for j in short[lo:hi] if offset[j] >= 0 and last[j] >= a]
        if any_long:
            lo, hi = bisect_left(long_first, a), bisect_right(long_first, c)
            work += hi - lo
            live += [j for j in long_[lo:hi] if offset[j] >= 0]
            if long_placed:
                node = a - t0 + width
                while node:
                    hits = cover[node]
                    if hits:
                        work += len(hits)
                        live += [j for j in hits if first[j] < a]
                    node >>= 1
        need = size[i]
        off = 0
        if live:
            live.sort(key=offset.__getitem__)
            for j in live:
                if off + need <= offset[j]:
                    break
                end = offset[j] + size[j]
                if end > off:
                    off = end
        offset[i] = off
        if off + need > total:
            total = off + need
        if work > budget:
            total = max(total, _stack_rest(order, first, last, size, offset, i + 1, t0, width))
            break
        if c - a >= SHORT:                  # index the placed long buffer
            long_placed = True
            lo, hi = a - t0 + width, c - t0 + width + 1
            while lo < hi:
                if lo & 1:
                    if cover[lo] is None:
                        cover[lo] = []
                    cover[lo].append(i)
                    lo += 1
                if hi & 1:
                    hi -= 1
                    if cover[hi] is None:
                        cover[hi] = []
                    cover[hi].append(i)
                lo >>= 1
                hi >>= 1
    for buf, off in zip(order, offset):
        buf.offset = off
    return total


def _stack_rest(order, first, last, size, offset, start, t0, width):
    """Place buffers ``start:`` each right above the highest end among the placed buffers
    alive alongside it; return the largest end.

    A segment tree over the steps answers "highest end of a placed buffer whose lifetime
    meets [a, c]": ``tag[v]`` is the highest end of a buffer covering all of node v's
    steps, ``top[v]`` the highest end of one meeting v's steps anywhere.  Both are raised
    along the O(log n) nodes of a lifetime; a query reads ``top`` of the nodes covering
    [a, c] and ``tag`` on the paths above them.
    """
    tag = [0] * (2 * width)
    top = [0] * (2 * width)

    def span(a, c):
        """The nodes covering steps [a, c], and the leaves at its two ends."""
        lo, hi = a - t0 + width, c - t0 + width + 1
        ends = (lo, hi - 1)
        nodes = []
        while lo < hi:
            if lo & 1:
                nodes.append(lo)
                lo += 1
            if hi & 1:
                hi -= 1
                nodes.append(hi)
            lo >>= 1
            hi >>= 1
        return nodes, ends

    def raise_to(a, c, end):
        nodes, ends = span(a, c)
        for v in nodes:
            if end > tag[v]:
                tag[v] = end
            if end > top[v]:
                top[v] = end
        for v in ends:
            while v:
                if end > top[v]:
                    top[v] = end
                v >>= 1

    def highest(a, c):
        nodes, ends = span(a, c)
        h = max(top[v] for v in nodes)
        for v in ends:
            while v:
                if tag[v] > h:
                    h = tag[v]
                v >>= 1
        return h

    for j in range(start):
        raise_to(first[j], last[j], offset[j] + size[j])
    total = 0
    for i in range(start, len(order)):
        off = highest(first[i], last[i])
        offset[i] = off
        raise_to(first[i], last[i], off + size[i])
        total = max(total, off + size[i])
    return total


def _plan_arena_scan(order):
    """The same placement by a scan of every placed buffer (for malformed lifetimes)."""
    placed = []
    total = 0
    for buf in order:
        size = align(buf.size)
        live = sorted((p for p in placed if p.first <= buf.last and buf.first <= p.last),
                      key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + size <= p.offset:
                break
            offset = max(offset, p.offset + align(p.size))
        buf.offset = offset
        placed.append(buf)
        total = max(total, offset + size)
    return total


def peak_live_bytes(buffers):
    """Lower bound for any arena: the most bytes alive at one step."""
    if not buffers:
        return 0
    if any(b.first > b.last for b in buffers):
        steps = range(min(b.first for b in buffers), max(b.last for b in buffers) + 1)
        return max(sum(align(b.size) for b in buffers if b.first <= s <= b.last)
                   for s in steps)
    delta = {}
    for b in buffers:
        s = align(b.size)
        delta[b.first] = delta.get(b.first, 0) + s
        delta[b.last + 1] = delta.get(b.last + 1, 0) - s
    live = peak = 0
    for step in sorted(delta):
        live += delta[step]
        peak = max(peak, live)
    return peak


# -- views ----------------------------------------------------------------------------------

F32 = 4


def resolve(parent, v):
    """(root value, element offset) of v, following the view chain."""
    off, seen = 0, 0
    while v in parent:
        v, o = parent[v]
        off += o
        seen += 1
        if seen > 100000:
            raise EngineError("cyclic view placement (a bug in the memory planner)")
    return v, off


def plan_views(model, shapes, zero_copy=True):
    """(parent, views): parent maps a value to (value whose memory it is in, element
    offset); views maps a concat / split node name to one flag per piece (True: in place).
    ``zero_copy=False``: aliases only (every concat and split copies)."""
    consts = model.constants
    inputs = set(model.input_names)
    parent = {}
    for n in model.nodes:
        if get_op(n.op).alias and n.inputs[0] not in consts:
            parent[n.outputs[0]] = (n.inputs[0], 0)
    views = {}
    if not zero_copy:
        return parent, views
    for n in reversed(model.nodes):
        if n.op != "concat":
            continue
        out = n.outputs[0]
        shape = shapes[out]
        d = int(n.attrs["dim"]) % len(shape)
        if math.prod(shape[:d]) != 1 or out in inputs:
            continue
        inner = math.prod(shape[d + 1:])
        sizes = [int(shapes[v][d]) * inner for v in n.inputs]
        # Inputs already back to back in one root (an earlier DenseNet concat): a view.
        if out not in parent and all(v in parent for v in n.inputs):
            placed = [resolve(parent, v) for v in n.inputs]
            roots = {r for r, _ in placed}
            offs = [o for _, o in placed]
            if len(roots) == 1 and all(offs[i] + sizes[i] == offs[i + 1]
                                       for i in range(len(offs) - 1)):
                root = roots.pop()
                if root != out:
                    parent[out] = (root, offs[0])
                    views[n.name] = [True] * len(n.inputs)
                    continue
        flags, off, seen = [], 0, set()
        for v, size in zip(n.inputs, sizes):
            ok = v not in consts and v not in parent and v not in seen and size > 0
            if ok and resolve(parent, out)[0] == v:        # never place a value inside itself
                ok = False
            if ok:
                parent[v] = (out, off)
            seen.add(v)
            flags.append(ok)
            off += size
        views[n.name] = flags
    for n in model.nodes:
        if n.op != "split" or n.inputs[0] in consts:
            continue
        x = n.inputs[0]
        shape = shapes[x]
        d = int(n.attrs["dim"]) % len(shape)
        if math.prod(shape[:d]) != 1:
            continue
        inner = math.prod(shape[d + 1:])
        flags, off = [], 0
        for o in n.outputs:
            size = int(shapes[o][d]) * inner
            ok = o not in parent and size > 0 and o not in inputs
            if ok:
                parent[o] = (x, off)
            flags.append(ok)
            off += size
        views[n.name] = flags
    return parent, views


def is_alias_view(node, parent):
    """True for an alias op (reshape, flatten, ...) whose output re-views its input."""
    return get_op(node.op).alias and node.outputs[0] in parent


def needs_kernel(node, parent, views):
    """False for a node the views make free: an alias re-viewing its input, a concat or
    split whose pieces all lie in place."""
    if is_alias_view(node, parent):
        return False
    flags = views.get(node.name)
    return not (flags is not None and all(flags) and
                (node.op == "concat" or node.op == "split"))


# -- lifetimes and the arena ----------------------------------------------------------------

@dataclass
class MemoryReport:
    activation_bytes: int      # planned activations alone (buffers shared across lifetimes)
    sum_activation_bytes: int  # what naive allocation (one buffer per value) would need
    peak_live_bytes: int       # lower bound for the activations: most bytes alive at one step
    workspace_bytes: int       # largest kernel workspace (im2col columns and the like)
    arena_bytes: int           # what the plan allocates: activations and workspaces together
    constant_bytes: int

    def __str__(self):
        mb = 1 / 2**20
        return (f"activations {self.activation_bytes * mb:.2f} MiB planned (lower bound "
                f"{self.peak_live_bytes * mb:.2f}) vs {self.sum_activation_bytes * mb:.2f} MiB "
                f"unplanned; arena with kernel workspaces {self.arena_bytes * mb:.2f} MiB; "
                f"weights {self.constant_bytes * mb:.2f} MiB")


@dataclass
class MemoryPlan:
    """Where every value of a plan lives: ``offset(v)`` bytes into one arena."""
    parent: dict               # value -> (value whose memory holds it, element offset)
    buffers: dict              # root value or "#scratch<i>" -> Buffer (offset, size, lifetime)
    scratch: dict              # step index -> key of its workspace buffer
    arena_bytes: int
    report: MemoryReport
    guards: list = field(default_factory=list)   # (byte offset, bytes) guard gaps

    def resolve(self, v):
        return resolve(self.parent, v)

    def offset(self, v):
        """Byte offset of value v in the arena."""
        root, off = resolve(self.parent, v)
        return self.buffers[root].offset + off * F32


def plan_buffers(model, shapes, parent, nodes, scratch, outputs, *, align_to=ALIGN,
                 guard=0, constant_bytes=None):
    """Lifetimes and arena offsets of the root buffers of ``nodes`` (the steps that run, in
    order; ``scratch[i]`` is step i's workspace in floats) and of the graph inputs and
    ``outputs`` (alive to the end).  ``guard`` > 0 (debugging): no reuse, ``guard`` bytes
    between buffers (listed in ``MemoryPlan.guards``)."""
    consts = model.constants
    buffers = {}

    def touch(v, i):
        if v in consts:
            return
        root, _ = resolve(parent, v)
        if root in consts:
            return
        b = buffers.get(root)
        if b is None:
            nbytes = math.prod(shapes[root]) * F32
            buffers[root] = Buffer(root, align(max(nbytes, F32), align_to), i, i)
        else:
            b.first, b.last = min(b.first, i), max(b.last, i)

    for v in model.input_names:
        touch(v, -1)
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v:
                touch(v, i)
        for v in n.outputs:
            touch(v, i)
    end = len(nodes)
    for v in outputs:
        touch(v, end)
    scratch_keys = {}
    for i, need in enumerate(scratch):
        if need:
            key = f"#scratch{i}"
            scratch_keys[i] = key
            buffers[key] = Buffer(key, align(need * F32, align_to), i, i)

    bufs = list(buffers.values())
    guards = []
    if guard:
        off = guard
        for b in sorted(bufs, key=lambda b: b.key):
            b.offset = off
            guards.append((off + b.size, guard))
            off += b.size + guard
        arena_bytes = off
    else:
        arena_bytes = plan_arena(bufs)

    acts = [Buffer(b.key, b.size, b.first, b.last) for b in bufs if not b.key.startswith("#")]
    report = MemoryReport(
        activation_bytes=plan_arena(acts) if acts else 0,
        sum_activation_bytes=sum(b.size for b in acts),
        peak_live_bytes=peak_live_bytes(acts),
        workspace_bytes=max(scratch, default=0) * F32,
        arena_bytes=arena_bytes,
        constant_bytes=(sum(a.nbytes for a in consts.values()) if constant_bytes is None
                        else constant_bytes))
    return MemoryPlan(parent, buffers, scratch_keys, arena_bytes, report, guards)
