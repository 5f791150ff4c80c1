"""Turn an optimised graph into a device program for one set of input shapes (pure Python).

1. **Views** (:func:`plan_views`): values that need no memory of their own.
   - alias ops (reshape, flatten, identity, dropout) re-view their input;
   - *concat without copies*: where every dim before the concat dim is 1 (channel concat at
     batch 1, e.g. DenseNet, GoogLeNet, SqueezeNet, U-Net at batch 1), each input is
     computed straight into its slice of the output.  Concats are visited last first, so in
     DenseNet the last concat of a block claims every feature map and each earlier concat,
     whose inputs then already lie back to back, becomes a view of a prefix of it;
   - split pieces are views of their input under the same condition.
   A value that cannot be placed (a constant, an alias, already placed elsewhere, twice in
   one concat) is copied by the concat / split kernel instead.
2. **Kernels**: one factory per node (``kernels.py``), chosen by priority; *every* node that
   has no CUDA kernel is reported at once.
3. **Memory**: each root buffer lives from its first write to its last read (its views'
   uses included); buffers and per-step workspaces are placed in one arena by the runtime's
   greedy-by-size planner (``engine.runtime.memory``), 256-byte aligned.
4. **Records**: each kernel emits its launches / GEMMs / copies with resolved pointers; GEMM
   and copy operands are bounds-checked against their buffers here, before any device work.
"""

from dataclasses import dataclass, field

import numpy as np

from ...errors import EngineError, UnsupportedError
from ...ops import get_op
from ...runtime.memory import Buffer, peak_live_bytes, plan_arena
from ...runtime.plan import MemoryReport
from ..base import PrepareContext, select_kernel
from .program import F32, Copy, Emitter, Gemm, ProgramStep, Ptr, Target, TensorRef

ALIGN = 256


def _align(n, a=ALIGN):
    return (int(n) + a - 1) // a * a


def _prod(dims):
    p = 1
    for d in dims:
        p *= int(d)
    return p


# -- views ------------------------------------------------------------------------------------

def resolve(parent, v):
    """(root value, element offset) of v, following the view chain."""
    off, seen = 0, 0
    while v in parent:
        v, o = parent[v]
        off += o
        seen += 1
        if seen > 100000:
            raise EngineError("cyclic view placement (a bug in the CUDA planner)")
    return v, off


def plan_views(model, shapes, zero_copy=True):
    """(parent, views): parent maps a value to (value whose memory it is in, element
    offset); views maps a concat / split node name to one flag per piece (True: in place)."""
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
        if _prod(shape[:d]) != 1 or out in inputs:
            continue
        inner = _prod(shape[d + 1:])
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
        if _prod(shape[:d]) != 1:
            continue
        inner = _prod(shape[d + 1:])
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
    memory: object                # engine.runtime.plan.MemoryReport
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
        if n.outputs[0] in parent and get_op(n.op).alias:
            continue
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

    # Lifetimes of root buffers, in step indices; inputs are written before step 0.
    buffers = {}

    def touch(v, i):
        if v in consts:
            return
        root, _ = resolve(parent, v)
        if root in consts:
            return
        b = buffers.get(root)
        if b is None:
            nbytes = _prod(shapes[root]) * F32
            buffers[root] = Buffer(root, _align(max(nbytes, F32)), i, i)
        else:
            b.first, b.last = min(b.first, i), max(b.last, i)

    for v in model.input_names:
        touch(v, -1)
    for i, n in enumerate(steps):
        for v in n.inputs:
            if v:
                touch(v, i)
        for v in n.outputs:
            touch(v, i)
    end = len(steps)
    for v in outputs:
        touch(v, end)
    scratch = {}
    for i, (_, k) in enumerate(kernels):
        if k.scratch:
            key = f"#scratch{i}"
            scratch[i] = key
            buffers[key] = Buffer(key, _align(k.scratch * F32), i, i)

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

    acts = [Buffer(b.key, b.size, b.first, b.last) for b in bufs if not b.key.startswith("#")]
    memory = MemoryReport(
        activation_bytes=plan_arena(acts) if acts else 0,
        sum_activation_bytes=sum(b.size for b in acts),
        peak_live_bytes=peak_live_bytes(acts),
        workspace_bytes=max((k.scratch * F32 for _, k in kernels), default=0),
        arena_bytes=arena_bytes,
        constant_bytes=sum(a.nbytes for a in weights.values()))
    return Program(psteps, arena_bytes, weights, weight_offsets, wb, slots, shapes,
                   list(model.input_names), outputs, memory, const_outputs, guards)


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
