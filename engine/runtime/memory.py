"""Static memory planning: place every activation in one arena from value lifetimes.

Each buffer lives from the step that writes it to the last step that reads it.  Buffers
whose lifetimes do not overlap may share memory.  We place them greedily, largest first,
at the lowest offset that fits between the already-placed buffers that are alive at the
same time ("greedy by size", as in TFLite's arena planner).  Finding the optimum is
NP-hard; greedy-by-size stays within a few percent of the lower bound (the largest set of
simultaneously live buffers) on CNNs.
"""

from dataclasses import dataclass

ALIGN = 64  # bytes: a cache line, and the widest vector register (AVX-512)


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
    """Assign ``offset`` to each Buffer; return the arena size in bytes."""
    placed = []
    total = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.key)):
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
    steps = range(min(b.first for b in buffers), max(b.last for b in buffers) + 1)
    return max(sum(align(b.size) for b in buffers if b.first <= s <= b.last) for s in steps)
