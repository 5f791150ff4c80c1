"""An execution plan: the graph bound to kernels and fixed buffers for one set of input shapes.

Built once per input shape (batch size) at prepare time:
1. infer concrete shapes,
2. pick and prepare a kernel per node (weights packed, workspace sizes known),
3. plan activation memory from lifetimes (kernel workspaces are buffers that live one step),
4. bind every kernel's input and output arrays to views of one arena.

5. bind every kernel call to those arrays ("engine.step" capsules) and group consecutive
   prebound calls into Programs of the nogil executor (engine._kernels.executor).

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

from ..backends.base import PrepareContext, select_kernel
from ..errors import EngineError, node_error, node_error_from
from ..limits import LimitError, check_buffer
from ..ops import get_op
from .memory import Buffer, plan_arena, peak_live_bytes

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
class PlanRow:
    """One step of a plan as ``Session.plan()`` reports it."""
    name: str
    op: str              # op, "+activation" when one is fused, "+residual" when an add is
    variant: str         # the kernel (algorithm) chosen
    layout: str          # activation layout the kernel reads and writes
    shape: tuple         # output shape
    macs: int
    executor: str        # "native" (prebound, nogil) or "python"
    seconds: float = None
    share: float = None  # of the plan's total time

    @property
    def gflops(self):
        """Achieved GFLOP/s (2 FLOPs per multiply-add), None when untimed or no MACs."""
        if not self.seconds or not self.macs:
            return None
        return 2e-9 * self.macs / self.seconds


def plan_rows(steps, shapes, times, executor_of):
    """PlanRows of a plan's steps (objects with .node, .variant, .kernel); ``times``
    ({node name: seconds} or None) fills seconds and share; ``executor_of(step)`` names
    what runs the step."""
    total = sum(times.values()) if times else 0.0
    rows = []
    for s in steps:
        n = s.node
        op = n.op
        if n.op in ("conv", "conv_transpose") and len(n.inputs) > 3 and n.inputs[3]:
            op += "+residual"
        act = n.attrs.get("activation")
        if act:
            op += f"+{act['op']}"
        ins = [shapes[i] if i else None for i in n.inputs]
        outs = [shapes[o] for o in n.outputs]
        t = None if times is None else times.get(n.name)
        rows.append(PlanRow(
            name=n.name, op=op, variant=s.variant,
            layout=getattr(getattr(s, "kernel", None), "layout", "nchw"), shape=tuple(outs[0]),
            macs=get_op(n.op).count_macs(n, ins, outs), executor=executor_of(s), seconds=t,
            share=(t / total if t is not None and total > 0 else None)))
    return rows


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
        from .._kernels.executor import Program
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

    def __post_init__(self):
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
            return inst.run(feeds, outputs)
        finally:
            self.release(inst)

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


def _place_concat_inputs(model, shapes, root):
    """Concats whose inputs can be written in place: {input: (concat output, element
    offset)} and the names of those concat nodes (they need no kernel).

    An input is a contiguous slice of the output when every dim before the concat dim is 1
    (channel concat at batch 1, the inception / dense blocks).  Each input must be computed
    by a kernel of its own (not a graph input, constant or re-view of another value), and
    read by this concat once; a value goes into at most one concat.
    """
    producers = model.producers()
    graph_inputs = set(model.input_names)
    placed, nodes = {}, set()
    for n in model.nodes:
        if n.op != "concat":
            continue
        out = shapes[n.outputs[0]]
        d = int(n.attrs["dim"]) % len(out)
        if int(np.prod(out[:d], dtype=np.int64)) != 1:
            continue
        ins = list(n.inputs)
        if len(set(ins)) != len(ins) or any(
                v in graph_inputs or v in model.constants or v in root or v in placed
                or v not in producers or get_op(producers[v].op).alias
                or producers[v].op == "concat" and producers[v].name in nodes
                for v in ins):
            continue
        inner = int(np.prod(out[d + 1:], dtype=np.int64))
        off = 0
        for v in ins:
            placed[v] = (n.outputs[0], off * inner)
            off += int(shapes[v][d])
        nodes.add(n.name)
    return placed, nodes


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
    max_instances = int(options.get("max_instances", 4))
    tuner = options.pop("tuner", None)
    shapes = {k: v.shape for k, v in model.infer_shapes(input_shapes).items()}
    outputs = list(dict.fromkeys(list(model.outputs) + list(keep)))

    # Values whose memory is another value's, re-viewed (reshape, flatten, identity).
    root = {}
    for n in model.nodes:
        if get_op(n.op).alias and n.inputs[0] not in model.constants:
            root[n.outputs[0]] = root.get(n.inputs[0], n.inputs[0])
    # Concat inputs written straight into their slice of the concatenated buffer.
    placed, in_place_concats = _place_concat_inputs(model, shapes, root)

    def resolve(value):
        """(buffer key, element offset) of a value's memory."""
        if value in root:
            return resolve(root[value])
        if value in placed:
            into, off = placed[value]
            key, base = resolve(into)
            return key, base + off
        return value, 0

    # Kernels.
    steps, scratch_need = [], []
    for n in model.nodes:
        if n.outputs[0] in root or n.name in in_place_concats:
            continue
        ctx = PrepareContext(
            in_shapes=[shapes[i] if i else None for i in n.inputs],
            out_shapes=[shapes[o] for o in n.outputs],
            constants=[model.constants.get(i) if i else None for i in n.inputs],
            threads=threads, backend=backend, options=options)
        if tuner is not None:
            spec, kernel = tuner.choose(n, ctx)
            if kernel is None:
                kernel = spec.factory(n, replace(ctx, options={**options,
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

    # Lifetimes, in step indices; graph inputs are written before step 0.
    buffers = {}

    def touch(value, step):
        key = resolve(value)[0]
        if key in model.constants:
            return
        b = buffers.get(key)
        if b is None:
            size = math.prod(shapes[key]) * F32
            buffers[key] = Buffer(key, size, step, step)
        else:
            b.first, b.last = min(b.first, step), max(b.last, step)

    for v in model.input_names:
        touch(v, -1)
    for i, s in enumerate(steps):
        for v in s.node.inputs:
            if v:
                touch(v, i)
        for v in s.node.outputs:
            touch(v, i)
    # Alias views are read by later steps through their root: already covered, since
    # touch() maps every value to its root.  Outputs must survive to the end.
    end = len(steps)
    for v in outputs:
        touch(v, end)
    for i, need in enumerate(scratch_need):
        if need:
            key = f"#scratch:{steps[i].node.name}"
            buffers[key] = Buffer(key, need * F32, i, i)

    bufs = list(buffers.values())
    arena_bytes = plan_arena(bufs)
    check_buffer(arena_bytes // F32, f"the activation arena at input shapes "
                                     f"{dict(input_shapes)}")
    layout = {}
    for key, b in buffers.items():
        if key.startswith("#scratch"):
            layout[key] = (b.offset, (b.size // F32,))
        else:
            layout[key] = (b.offset, tuple(shapes[key]))
    for v in list(root) + list(placed):
        key, off = resolve(v)
        layout[v] = (buffers[key].offset + off * F32, tuple(shapes[v]))

    activations = [Buffer(b.key, b.size, b.first, b.last) for b in bufs
                   if not b.key.startswith("#")]
    memory = MemoryReport(
        activation_bytes=plan_arena(activations),
        sum_activation_bytes=sum(b.size for b in activations),
        peak_live_bytes=peak_live_bytes(activations),
        workspace_bytes=max(scratch_need, default=0) * F32,
        arena_bytes=arena_bytes,
        constant_bytes=sum(a.nbytes for a in model.constants.values()))
    return Plan(model, dict(input_shapes), shapes, steps, layout, arena_bytes, memory, outputs,
                native=native, max_instances=max_instances)
