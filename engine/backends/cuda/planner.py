"""Turn an optimised graph into a device program for one set of input shapes (pure Python).

1. **Views** (``engine.memory.plan_views``, shared with the CPU runtime): aliases, concat
   inputs computed into their slice of the output, split pieces as views of the input.
2. **Kernels**: one factory per node (``kernels.py``), chosen by priority; *every* node that
   has no CUDA kernel is reported at once.
3. **Memory** (``engine.memory.plan_buffers``): lifetimes of the root buffers and per-step
   workspaces, placed in one arena by the greedy-by-size planner, 256-byte aligned.
4. **Records**: each kernel emits its launches / GEMMs / copies with resolved pointers; GEMM
   and copy operands are bounds-checked against their buffers here, before any device work.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import EngineError, UnsupportedError
from ...memory import is_alias_view, plan_buffers, plan_views, resolve
from ..base import PrepareContext, select_kernel
from .program import F32, Copy, Emitter, Gemm, ProgramStep, Ptr, Target, TensorRef

ALIGN = 256


def _align(n, a=ALIGN):
    return (int(n) + a - 1) // a * a


# -- program ----------------------------------------------------------------------------------

@dataclass
class Program:
    steps: list
    arena_bytes: int
    weights: dict                 # key -> host array (contiguous), uploaded once
    weight_offsets: dict          # key -> byte offset in the weights buffer
    weight_bytes: int
    slots: dict                   # value name -> TensorRef (inputs, outputs, kept values)
    shapes: dict                  # value name -> concrete shape
    inputs: list
    outputs: list
    memory: object                # engine.memory.MemoryReport
    constant_outputs: dict = field(default_factory=dict)
    guards: list = field(default_factory=list)     # (byte offset, bytes) guard-mode gaps

    def records(self):
        for s in self.steps:
            yield from s.records


def check_unsupported(model, shapes, parent, views, target, kernels=None):
    """Kernel per node: {node name: CudaKernel}; raises UnsupportedError naming every node
    (and op) the CUDA backend cannot run, all at once."""
    from ...ops import OPS
    from ..base import KERNELS
    chosen, problems = {}, []
    for n in model.nodes:
        if is_alias_view(n, parent):
            continue
        # (a concat / split whose pieces all lie in place keeps a step without records:
        # Session.plan shows it as "in_place")
        ctx = PrepareContext(
            in_shapes=[shapes[i] if i else None for i in n.inputs],
            out_shapes=[shapes[o] for o in n.outputs],
            constants=[model.constants.get(i) if i else None for i in n.inputs],
            threads=1, backend="cuda",
            options={"target": target, "views": views.get(n.name)})
        try:
            spec = select_kernel(n, ctx)
            chosen[n.name] = (spec, spec.factory(n, ctx))
        except UnsupportedError as e:
            problems.append((n, str(e)))
    if problems:
        missing = sorted({n.op for n, _ in problems if ("cuda", n.op) not in KERNELS})
        lines = "\n".join(f"  - {msg}" for _, msg in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        ops_note = (f"\nops without a CUDA kernel yet: {', '.join(missing)}" if missing else "")
        all_missing = sorted(op for op in OPS if ("cuda", op) not in KERNELS)
        reg_note = (f" (registry ops without CUDA kernels: {', '.join(all_missing)})"
                    if all_missing and not missing else "")
        raise UnsupportedError(f"the cuda backend cannot run {len(problems)} node(s) of this "
                               f"model{reg_note}:\n{lines}{more}{ops_note}")
    return chosen


def build_program(model, input_shapes, keep=(), target=None, zero_copy=True, guard=0):
    """The device program of ``model`` at ``input_shapes`` (see the module docstring).

    ``guard`` > 0 (emulator checks): no memory reuse, and ``guard`` bytes between buffers
    (listed in ``Program.guards``) so out-of-bounds writes can be detected.
    """
    target = target or Target()
    shapes = {k: tuple(v.shape) for k, v in model.infer_shapes(input_shapes).items()}
    outputs = list(dict.fromkeys(list(model.outputs) + list(keep)))
    consts = model.constants
    parent, views = plan_views(model, shapes, zero_copy)
    chosen = check_unsupported(model, shapes, parent, views, target)

    steps, kernels = [], []
    for n in model.nodes:
        if n.name in chosen:
            spec, kernel = chosen[n.name]
            steps.append(n)
            kernels.append((spec, kernel))

    # Lifetimes and the arena (engine.memory), 256-byte aligned.
    mem = plan_buffers(model, shapes, parent, steps, [k.scratch for _, k in kernels],
                       outputs, align_to=ALIGN, guard=guard, constant_bytes=0)
    buffers, scratch, arena_bytes = mem.buffers, mem.scratch, mem.arena_bytes

    def ref(v):
        if v in consts:
            return TensorRef(Ptr("w", ("const", v)), tuple(consts[v].shape), consts[v])
        root, off = resolve(parent, v)
        if root in consts:     # an alias of a constant that was not folded
            return TensorRef(Ptr("w", ("const", root), off * F32), shapes[v], None)
        return TensorRef(Ptr("arena", None, buffers[root].offset + off * F32), shapes[v])

    uploads = {}
    psteps = []
    for i, (n, (spec, k)) in enumerate(zip(steps, kernels)):
        ins = [ref(v) if v else None for v in n.inputs]
        outs = [ref(v) for v in n.outputs]
        work = Ptr("arena", None, buffers[scratch[i]].offset) if i in scratch else None
        e = Emitter(n, ins, outs, work, target, prefix=n.name)
        k.emit(e)
        uploads.update(e.uploads)
        psteps.append(ProgramStep(n, getattr(k, "variant", spec.variant), outs, e.records))

    # Weights: the constants some record reads, and the factories' uploads.
    weights = {}
    for s in psteps:
        for r in s.records:
            for p in _ptrs(r):
                if p.space == "w" and isinstance(p.key, tuple) and p.key[0] == "const":
                    weights[p.key] = np.ascontiguousarray(consts[p.key[1]], dtype=np.float32)
    weights.update(uploads)
    weight_offsets, wb = {}, 0
    for key, arr in weights.items():
        weight_offsets[key] = wb
        wb += _align(max(arr.nbytes, 1))

    slots = {}
    const_outputs = {}
    for v in list(model.input_names) + outputs:
        if v in consts:
            const_outputs[v] = consts[v]
            continue
        root, _ = resolve(parent, v)
        if root in consts:
            const_outputs[v] = consts[root].reshape(shapes[v])
            continue
        slots[v] = ref(v)

    regions = {"arena": arena_bytes}
    sizes = {k: a.nbytes for k, a in weights.items()}
    for s in psteps:
        for r in s.records:
            check_bounds(r, regions, sizes, s.node)

    memory = replace(mem.report, constant_bytes=sum(a.nbytes for a in weights.values()))
    return Program(psteps, arena_bytes, weights, weight_offsets, wb, slots, shapes,
                   list(model.input_names), outputs, memory, const_outputs, mem.guards)


def _ptrs(rec):
    if isinstance(rec, Gemm):
        return [rec.a, rec.b, rec.c]
    if isinstance(rec, Copy):
        return [rec.dst, rec.src]
    return [a for a in rec.args if isinstance(a, Ptr)]


def gemm_extent(ld, rows, cols, batch, stride):
    """Elements spanned by a column-major operand (rows x cols, leading dim ld) x batch."""
    return (cols - 1) * ld + rows + (batch - 1) * stride


def check_bounds(rec, regions, weight_sizes, node):
    """GEMM operands and copies must lie inside their buffer (arena or one upload)."""
    def within(p, nbytes, what):
        if p.space == "arena":
            limit = regions["arena"]
        else:
            limit = weight_sizes.get(p.key)
            if limit is None:
                raise EngineError(f"node '{node.name}': {what} reads unknown weights {p.key!r}")
        if p.offset < 0 or p.offset + nbytes > limit:
            raise EngineError(f"node '{node.name}': {what} spans bytes [{p.offset}, "
                              f"{p.offset + nbytes}) outside its buffer of {limit} bytes "
                              f"(a bug in the CUDA planner)")

    if isinstance(rec, Gemm):
        ra, ca = (rec.k, rec.m) if rec.transa else (rec.m, rec.k)
        rb, cb = (rec.n, rec.k) if rec.transb else (rec.k, rec.n)
        within(rec.a, gemm_extent(rec.lda, ra, ca, rec.batch, rec.stride_a) * F32, "GEMM A")
        within(rec.b, gemm_extent(rec.ldb, rb, cb, rec.batch, rec.stride_b) * F32, "GEMM B")
        within(rec.c, gemm_extent(rec.ldc, rec.m, rec.n, rec.batch, rec.stride_c) * F32,
               "GEMM C")
    elif isinstance(rec, Copy):
        within(rec.dst, rec.nbytes, "copy destination")
        within(rec.src, rec.nbytes, "copy source")
