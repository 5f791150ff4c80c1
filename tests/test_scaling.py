"""Loading and preparing scale linearly with the number of nodes.

A hostile file can hold a chain of 100,000 elementwise nodes; build, save, load, Session
(optimisation passes + plan) and run must stay linear (or n log n) in its length, so the
process neither hangs nor overflows the stack.  The check compares CPU time at 100,000
nodes with that at 10,000 (linear is 10x, quadratic 100x), which a loaded machine slows
alike, plus a generous absolute bound on the wall clock.
"""

import random
import time

import numpy as np

import engine
from engine import memory
from engine.memory import ALIGN, Buffer, peak_live_bytes, plan_arena

SMALL, LARGE = 10_000, 100_000
MAX_RATIO = 25          # linear: 10, n log n: ~12.5, quadratic: 100
MAX_SECONDS = 60        # wall clock of the whole large pipeline


def chain_model(n):
    """x -> n nodes cycling through a fusable activation, an add of a value to itself, a
    multiplication by a shared constant, reshape/flatten aliases, a one-input concat and
    a dropout (removed by the optimiser).  Every cycle computes relu(x) exactly."""
    b = engine.Builder()
    y = b.input("x", (None, 4))
    half = b.constant(np.full(4, 0.5, np.float32), name="half")
    steps = [
        lambda y: b.relu(y),
        lambda y: b.add(y, y),
        lambda y: b.mul(y, half),
        lambda y: b.reshape(y, (-1, 2, 2)),
        lambda y: b.flatten(y, 1),
        lambda y: b.cat([y], 1),
        lambda y: b.dropout(y, 0.5),
    ]
    for i in range(n):
        y = steps[i % len(steps)](y)
    if y.ndim != 2:
        y = b.flatten(y, 1)
    b.output(y, "out")
    return b.build()


def pipeline(n, path):
    """CPU seconds and wall seconds of build + save + load + Session + run at n nodes."""
    x = np.array([[-1.5, 0.25, 2.0, -0.0], [3.0, -2.0, 0.5, 1.0]], np.float32)
    cpu, wall = time.process_time(), time.perf_counter()
    model = chain_model(n)
    engine.save(model, path)
    loaded = engine.load(path)
    sess = engine.Session(loaded, threads=1)
    out, = sess.run(x)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert len(loaded.nodes) >= n
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    return cpu, wall


def test_100k_node_chain_prepares_in_linear_time(tmp_path):
    path = str(tmp_path / "chain.safetensors")
    small = min(pipeline(SMALL, path)[0] for _ in range(2))
    large, wall = pipeline(LARGE, path)
    ratio = large / small
    assert wall < MAX_SECONDS, f"{LARGE} nodes took {wall:.1f} s"
    assert ratio < MAX_RATIO, (f"{LARGE} nodes took {large:.2f} s of CPU, {ratio:.1f}x "
                               f"{SMALL} nodes ({small:.2f} s): super-linear")


def test_arena_planner_stays_fast_when_thousands_of_values_are_alive_at_once():
    # Every buffer overlaps every other: the exact search would look at all placed ones
    # for each (quadratic); past its work budget the planner stacks them, in O(n log n).
    n = 20_000
    bufs = [Buffer(f"v{i}", 100, i, n + i) for i in range(n)]
    t = time.process_time()
    total = plan_arena(bufs)
    assert time.process_time() - t < 10
    assert total == n * 128 == peak_live_bytes(bufs)
    assert sorted(b.offset for b in bufs) == [i * 128 for i in range(n)]


def test_arena_planner_fallback_never_overlaps_live_buffers(monkeypatch):
    monkeypatch.setattr(memory, "WORK_PER_BUFFER", 0)     # the fallback from the start
    monkeypatch.setattr(memory, "WORK_BASE", 0)
    rng = random.Random(0)
    for _ in range(300):
        bufs = []
        for i in range(rng.randint(1, 50)):
            first = rng.randint(-1, 30)
            last = first + rng.choice([0, 1, 2, rng.randint(0, 30)])
            bufs.append(Buffer(f"b{i}", rng.randint(1, 5000), first, last))
        total = plan_arena(bufs)
        assert total >= peak_live_bytes(bufs)
        for i, a in enumerate(bufs):
            assert a.offset % ALIGN == 0 and a.offset + a.size <= total
            for b in bufs[i + 1:]:
                if a.first <= b.last and b.first <= a.last:
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset


def test_removing_identities_into_a_wide_concat_is_linear():
    # Each removed identity rewrites one input of the concat, not all of them.
    def fan(k):
        b = engine.Builder()
        x = b.input("x", (None, 4))
        b.output(b.cat([b.identity(x) for _ in range(k)], 1), "out")
        return b.build()
    times = []
    for k in (2_000, 20_000):
        model = fan(k)
        t = time.process_time()
        graph = engine.passes.optimize(model)
        times.append(time.process_time() - t)
        assert [n.op for n in graph.nodes] == ["concat"] and graph.nodes[0].inputs == ["x"] * k
    assert times[1] < MAX_RATIO * max(times[0], 0.01), times
