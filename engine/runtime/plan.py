"""An execution plan: the graph bound to kernels and fixed buffers for one set of input shapes.

Built once per input shape (batch size) at prepare time:
1. infer concrete shapes,
2. pick and prepare a kernel per node (weights packed, workspace sizes known),
3. plan activation memory (engine.memory: views for aliases and in-place concat / split,
   lifetimes, one arena; kernel workspaces are buffers that live one step),
4. bind every kernel's input and output arrays to views of one arena.

5. bind every kernel call to those arrays ("engine.step" capsules) and group consecutive
   prebound calls into Programs of the nogil executor (engine._kernels._lib, pyx/executor.pxi).

``run`` then only copies the inputs in, runs the programs (and any Python-only step between
them) and copies the outputs out: no allocation and no Python per layer.  Concurrent runs
each take their own ``Instance`` (arena + bound calls) of the shared prepared kernels.
"""

import functools
import math
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..backends.base import PrepareContext, plan_rows, select_kernel
from ..errors import EngineError, node_error, node_error_from
from ..limits import LimitError, check_buffer
from ..memory import MemoryReport, needs_kernel, plan_buffers, plan_views
from .threads import ThreadChooser

F32 = 4


@dataclass
class Step:
    node: object
    kernel: object
    variant: str
    inputs: list = None      # the first instance's arrays (for inspection)
    outputs: list = None
    scratch: object = None
    scratch_size: int = 0
    native: bool = False     # runs inside the nogil executor (its kernel could be prebound)


class Instance:
    """One arena with every step bound to it: what a single ``run`` executes.

    Consecutive steps whose kernels can be prebound form one ``Program`` of the nogil
    executor (one call, GIL released for all of them); a kernel that runs through Python
    (NumPy data movement, runtime-computed parameters) sits between two programs.
    """

    def __init__(self, plan, native=True):
        self.plan = plan
        try:
            arena = np.empty(plan.arena_bytes // F32 + 16, dtype=np.float32)
        except (MemoryError, ValueError):
            raise EngineError(f"the activations of this model at input shapes "
                              f"{dict(plan.input_shapes)} need "
                              f"{plan.arena_bytes / 2**30:.1f} GiB, more than can be "
                              f"allocated") from None
        base = (-arena.ctypes.data % 64) // F32          # 64-byte align the arena start
        self.arena = arena[base:base + plan.arena_bytes // F32]
        self.views = {}
        for key, (offset, shape) in plan.layout.items():
            n = math.prod(shape)
            self.views[key] = self.arena[offset // F32: offset // F32 + n].reshape(shape)
        empty = np.empty(0, dtype=np.float32)
        consts = plan.model.constants
        self.io = []
        for s in plan.steps:
            ins = [None if not v else consts[v] if v in consts else self.views[v]
                   for v in s.node.inputs]
            outs = [self.views[v] for v in s.node.outputs]
            scr = self.views[f"#scratch:{s.node.name}"] if s.scratch_size else empty
            self.io.append((ins, outs, scr))
        self.calls_per_step = {}                      # step index -> prebound C calls
        self.segments = self._segments(native)      # [(first step, last step + 1, callable)]

    def _segments(self, native):
        from .._kernels._lib import Program
        segments, pending, first = [], [], 0

        def close(end):
            if pending:
                program = Program(pending)
                segments.append((first, end, program.run, program))
        for i, (s, (ins, outs, scr)) in enumerate(zip(self.plan.steps, self.io)):
            try:
                bound = s.kernel.bind(ins, outs, scr) if native else None
            except ValueError as e:     # the kernels' own geometry checks: a second line
                raise node_error(s.node, f"kernel {s.variant} refuses this geometry: {e}") \
                    from None
            if bound is not None:
                caps = bound if isinstance(bound, list) else [bound]
                if not pending:
                    first = i
                # a step with several calls (concat) still counts as one step for timing
                pending.extend(caps)
                s.native = True
                self.calls_per_step[i] = len(caps)
                continue
            close(i)
            pending = []
            s.native = False
            segments.append((i, i + 1, functools.partial(s.kernel.run, ins, outs, scr), None))
        close(len(self.plan.steps))
        return segments

    def run(self, feeds, outputs):
        views = self.views
        for name, arr in feeds.items():
            np.copyto(views[name], arr)
        for _, _, call, _ in self.segments:
            call()
        return [views[o].copy() for o in outputs]

    def profile(self, feeds, repeat=1):
        """Per-step wall time in seconds (min over ``repeat`` runs), in step order."""
        for name, arr in feeds.items():
            np.copyto(self.views[name], arr)
        counts = self.calls_per_step
        best = None
        for _ in range(repeat):
            times = np.zeros(len(self.plan.steps))
            for first, end, call, program in self.segments:
                if program is None:
                    t0 = time.perf_counter()
                    call()
                    times[first] = time.perf_counter() - t0
                    continue
                calls = np.zeros(len(program))
                program.run_timed(calls)
                k = 0
                for i in range(first, end):         # fold multi-call steps back together
                    c = counts.get(i, 1)
                    times[i] = calls[k:k + c].sum()
                    k += c
            best = times if best is None else np.minimum(best, times)
        return best


@dataclass
class Plan:
    """Kernels prepared and memory planned for one set of input shapes.

    Prepared kernels (packed weights) are shared; every concurrent ``execute`` gets its own
    ``Instance`` (arena + bound steps) from a small pool, so up to ``max_instances`` calls
    run in parallel and no call allocates once the pool is warm.
    """
    model: object
    input_shapes: dict
    shapes: dict
    steps: list
    layout: dict              # value or "#scratch:<node>" -> (byte offset, shape)
    arena_bytes: int
    memory: MemoryReport
    outputs: list
    native: bool = True
    max_instances: int = 4
    timings: dict = field(default_factory=dict)
    threads: int = 1
    adapt_threads: bool = False

    def __post_init__(self):
        # the thread count of each run, measured (engine.runtime.threads)
        self.chooser = ThreadChooser(self.threads) \
            if self.adapt_threads and self.threads > 1 else None
        if self.chooser is not None:       # looked up once, not per run
            from .._kernels._lib import set_thread_cap
            self._set_thread_cap = set_thread_cap
        self._free = []
        self._count = 0
        self._cond = threading.Condition()
        first = self._new_instance()
        self.views = first.views
        for s, (ins, outs, scr) in zip(self.steps, first.io):
            s.inputs, s.outputs, s.scratch = ins, outs, scr
        self._free.append(first)

    def _new_instance(self):
        inst = Instance(self, self.native)
        self._count += 1
        return inst

    def acquire(self):
        """An idle instance (a new one while fewer than ``max_instances`` exist)."""
        with self._cond:
            while not self._free and self._count >= self.max_instances:
                self._cond.wait()
            if self._free:
                return self._free.pop()
            self._count += 1          # reserve the slot; build outside the lock
        try:
            inst = Instance(self, self.native)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        return inst

    def release(self, inst):
        with self._cond:
            self._free.append(inst)
            self._cond.notify()

    def execute(self, feeds, outputs):
        inst = self.acquire()
        try:
            if self.chooser is None:
                return inst.run(feeds, outputs)
            return self._run_chosen(inst, feeds, outputs)
        finally:
            self.release(inst)

    def _run_chosen(self, inst, feeds, outputs):
        set_thread_cap = self._set_thread_cap
        count = self.chooser.pick()
        previous = set_thread_cap(count if count < self.threads else 0)
        try:
            t0 = time.perf_counter()
            result = inst.run(feeds, outputs)
            seconds = time.perf_counter() - t0
        finally:
            set_thread_cap(previous)
        self.chooser.record(count, seconds)
        return result

    @property
    def segments(self):
        """How an instance runs: [(first step, end step, 'native' | 'python')]."""
        inst = self.acquire()
        try:
            return [(a, b, "python" if p is None else "native") for a, b, _, p in inst.segments]
        finally:
            self.release(inst)

    def rows(self, times=None):
        """A PlanRow per step; ``times`` ({node name: seconds}) fills seconds and share."""
        return plan_rows(self.steps, self.shapes, times,
                         lambda s: "native" if s.native else "python")

    def profile(self, feeds, repeat=1):
        """{node name: seconds} per step (min over ``repeat`` runs), timed inside the
        executor (the timer calls add well under a microsecond per step)."""
        inst = self.acquire()
        try:
            times = inst.profile(feeds, repeat)
        finally:
            self.release(inst)
        return {s.node.name: float(t) for s, t in zip(self.steps, times)}


def _check_buffer(node, elements, what):
    try:
        check_buffer(elements, what)
    except LimitError as e:
        raise node_error_from(node, e) from None


def build_plan(model, input_shapes, backend, threads, keep=(), options=None):
    """Prepare kernels and plan memory for these input shapes.

    options: passed to the kernel factories (PrepareContext.options); also
    ``executor="python"`` runs every step through Python (the nogil executor is the
    default), ``max_instances`` bounds the concurrent runs of one plan and ``tuner`` (a
    runtime.tune.Tuner) times the candidate kernels of every layer and keeps the fastest.
    """
    options = dict(options or {})
    native = options.get("executor", "native") != "python"
    adapt_threads = bool(options.pop("adapt_threads", False))
    max_instances = int(options.get("max_instances", 4))
    tuner = options.pop("tuner", None)
    shapes = {k: v.shape for k, v in model.infer_shapes(input_shapes).items()}
    outputs = list(dict.fromkeys(list(model.outputs) + list(keep)))

    # Views: aliases, concat inputs written into their slice, split pieces (engine.memory).
    parent, views = plan_views(model, shapes)

    # Kernels.
    steps, scratch_need = [], []
    for n in model.nodes:
        if not needs_kernel(n, parent, views):
            continue
        ctx = PrepareContext(
            in_shapes=[shapes[i] if i else None for i in n.inputs],
            out_shapes=[shapes[o] for o in n.outputs],
            constants=[model.constants.get(i) if i else None for i in n.inputs],
            threads=threads, backend=backend,
            options={**options, "views": views.get(n.name)})
        if tuner is not None:
            spec, kernel = tuner.choose(n, ctx)
            if kernel is None:
                kernel = spec.factory(n, replace(ctx, options={**ctx.options,
                                                               "all_candidates": True}))
        else:
            spec = select_kernel(n, ctx)
            try:
                kernel = spec.factory(n, ctx)
            except ValueError as e:     # the kernels' own geometry checks: a second line
                raise node_error(n, f"kernel {spec.variant} refuses this geometry: {e}") \
                    from None
        need = int(getattr(kernel, "scratch", 0))
        _check_buffer(n, need, f"the {spec.variant} kernel's workspace")
        steps.append(Step(n, kernel, spec.variant, scratch_size=need))
        scratch_need.append(need)

    if tuner is not None:
        tuner.save()

    # Lifetimes and the arena.
    mem = plan_buffers(model, shapes, parent, [s.node for s in steps], scratch_need, outputs)
    check_buffer(mem.arena_bytes // F32, f"the activation arena at input shapes "
                                         f"{dict(input_shapes)}")
    layout = {}
    for v in shapes:
        root, _ = mem.resolve(v)
        if root in mem.buffers:
            layout[v] = (mem.offset(v), tuple(shapes[v]))
    for i, key in mem.scratch.items():
        layout[f"#scratch:{steps[i].node.name}"] = (mem.buffers[key].offset,
                                                    (scratch_need[i],))
    return Plan(model, dict(input_shapes), shapes, steps, layout, mem.arena_bytes, mem.report,
                outputs, native=native, max_instances=max_instances, threads=threads,
                adapt_threads=adapt_threads)
