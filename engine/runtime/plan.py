"""An execution plan: the graph bound to kernels and fixed buffers for one set of input shapes.

Built once per input shape (batch size) at prepare time:
1. infer concrete shapes,
2. pick and prepare a kernel per node (weights packed, workspace sizes known),
3. plan activation memory from lifetimes (kernel workspaces are buffers that live one step),
4. bind every kernel's input and output arrays to views of one arena.

``run`` then only copies the inputs in, calls the kernels in order and copies the outputs
out: no allocation per layer.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..backends.base import PrepareContext, select_kernel
from ..errors import EngineError
from ..ops import get_op
from .memory import Buffer, plan_arena, peak_live_bytes

F32 = 4


@dataclass
class Step:
    node: object
    kernel: object
    variant: str
    inputs: list
    outputs: list
    scratch: object


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
class Plan:
    model: object
    input_shapes: dict
    shapes: dict
    steps: list
    arena: np.ndarray
    views: dict
    memory: MemoryReport
    outputs: list
    timings: dict = field(default_factory=dict)

    def execute(self, feeds, outputs):
        for name, arr in feeds.items():
            np.copyto(self.views[name], arr)
        for s in self.steps:
            s.kernel.run(s.inputs, s.outputs, s.scratch)
        return [self.views[o].copy() for o in outputs]

    def profile(self, feeds, repeat=1):
        """Per-node wall time in seconds (min over ``repeat`` runs)."""
        for name, arr in feeds.items():
            np.copyto(self.views[name], arr)
        best = {}
        for _ in range(repeat):
            for s in self.steps:
                t0 = time.perf_counter()
                s.kernel.run(s.inputs, s.outputs, s.scratch)
                dt = time.perf_counter() - t0
                best[s.node.name] = min(dt, best.get(s.node.name, dt))
        return best


def build_plan(model, input_shapes, backend, threads, keep=(), options=None):
    shapes = {k: v.shape for k, v in model.infer_shapes(input_shapes).items()}
    outputs = list(dict.fromkeys(list(model.outputs) + list(keep)))

    # Values whose memory is another value's, re-viewed (reshape, flatten, identity).
    root = {}
    for n in model.nodes:
        if get_op(n.op).alias and n.inputs[0] not in model.constants:
            root[n.outputs[0]] = root.get(n.inputs[0], n.inputs[0])

    # Kernels.
    steps, scratch_need = [], []
    for n in model.nodes:
        if n.outputs[0] in root:
            continue
        ctx = PrepareContext(
            in_shapes=[shapes[i] if i else None for i in n.inputs],
            out_shapes=[shapes[o] for o in n.outputs],
            constants=[model.constants.get(i) if i else None for i in n.inputs],
            threads=threads, backend=backend, options=dict(options or {}))
        spec = select_kernel(n, ctx)
        kernel = spec.factory(n, ctx)
        steps.append(Step(n, kernel, spec.variant, None, None, None))
        scratch_need.append(int(getattr(kernel, "scratch", 0)))

    # Lifetimes, in step indices; graph inputs are written before step 0.
    buffers = {}

    def touch(value, step):
        key = root.get(value, value)
        if key in model.constants:
            return
        b = buffers.get(key)
        if b is None:
            size = int(np.prod(shapes[key], dtype=np.int64)) * F32
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
            buffers[f"#scratch{i}"] = Buffer(f"#scratch{i}", need * F32, i, i)

    bufs = list(buffers.values())
    arena_bytes = plan_arena(bufs)
    try:
        arena = np.empty(arena_bytes // F32 + 16, dtype=np.float32)
    except (MemoryError, ValueError):
        raise EngineError(f"the activations of this model at input shapes {dict(input_shapes)} "
                          f"need {arena_bytes / 2**30:.1f} GiB, more than can be "
                          f"allocated") from None
    base = (-arena.ctypes.data % 64) // F32          # 64-byte align the arena start
    arena = arena[base:base + arena_bytes // F32]

    def view(key, shape):
        b = buffers[key]
        n = int(np.prod(shape, dtype=np.int64))
        return arena[b.offset // F32: b.offset // F32 + n].reshape(shape)

    views = {}
    for key in buffers:
        if not key.startswith("#"):
            views[key] = view(key, shapes[key])
    for v, r in root.items():
        views[v] = views[r].reshape(shapes[v])
    empty = np.empty(0, dtype=np.float32)
    for i, s in enumerate(steps):
        s.inputs = [None if not v else model.constants[v] if v in model.constants else views[v]
                    for v in s.node.inputs]
        s.outputs = [views[v] for v in s.node.outputs]
        s.scratch = view(f"#scratch{i}", (scratch_need[i],)) if scratch_need[i] else empty

    activations = [Buffer(b.key, b.size, b.first, b.last) for b in bufs
                   if not b.key.startswith("#")]
    memory = MemoryReport(
        activation_bytes=plan_arena(activations),
        sum_activation_bytes=sum(b.size for b in activations),
        peak_live_bytes=peak_live_bytes(activations),
        workspace_bytes=max(scratch_need, default=0) * F32,
        arena_bytes=arena_bytes,
        constant_bytes=sum(a.nbytes for a in model.constants.values()))
    return Plan(model, dict(input_shapes), shapes, steps, arena, views, memory, outputs)
