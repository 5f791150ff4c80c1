"""Static memory planning: place every activation in one arena from value lifetimes.

Each buffer lives from the step that writes it to the last step that reads it.  Buffers
whose lifetimes do not overlap may share memory.  We place them greedily, largest first,
at the lowest offset that fits between the already-placed buffers that are alive at the
same time ("greedy by size", as in TFLite's arena planner).  Finding the optimum is
NP-hard; greedy-by-size stays within a few percent of the lower bound (the largest set of
simultaneously live buffers) on CNNs.

Cost: finding the placed buffers alive at the same time as the next one uses an index on
lifetimes (below), so planning costs O(n log n + K log K) for n buffers and K pairs of
buffers alive at once: linear in the length of a chain, whatever its length.
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass

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
