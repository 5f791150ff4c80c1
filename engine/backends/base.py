"""Kernel registry: kernels are looked up by (backend, op, variant).

A backend module registers a *factory* per op.  At prepare time the session calls the
factory once per node with a ``PrepareContext`` (concrete shapes, constant inputs, thread
count); the factory does all shape checks and weight packing then and returns a ``Kernel``
whose ``run(inputs, outputs, scratch)`` writes into preallocated output arrays.  Adding a
faster variant is one more ``@register_kernel`` with a ``supports`` predicate and a higher
priority: graph code never changes.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import UnsupportedError
from ..ops import get_op

KERNELS: dict = {}       # (backend, op) -> [KernelSpec], best first
BACKENDS: dict = {}      # backend name -> loader that imports its kernel modules


@dataclass(frozen=True)
class KernelSpec:
    backend: str
    op: str
    variant: str
    factory: Callable            # (node, ctx) -> Kernel
    supports: Optional[Callable]  # (node, ctx) -> bool; None = always
    priority: int = 0
    native: bool = True          # False: implemented with NumPy (reason in ``note``)
    note: str = ""


@dataclass
class PrepareContext:
    """What a kernel factory may look at: everything known before the first run."""
    in_shapes: list
    out_shapes: list
    constants: list          # per input: the constant array, or None for a runtime value
    threads: int
    backend: str
    options: dict = field(default_factory=dict)


class Kernel:
    """A prepared kernel.  Subclasses set ``scratch`` (float32 elements of workspace)."""
    scratch = 0
    variant = "default"

    def run(self, inputs, outputs, scratch):  # pragma: no cover - interface
        raise NotImplementedError

    def bind(self, inputs, outputs, scratch):
        """The prebound C call(s) on these fixed arrays: an "engine.step" capsule, a list of
        them, or None when this kernel can only run through ``run`` (Python)."""
        return None


class FunctionKernel(Kernel):
    """Wraps ``fn(inputs, outputs, scratch)`` as a kernel."""

    def __init__(self, fn, scratch=0, variant="default"):
        self.fn = fn
        self.scratch = int(scratch)
        self.variant = variant

    def run(self, inputs, outputs, scratch):
        self.fn(inputs, outputs, scratch)


class NativeKernel(FunctionKernel):
    """Wraps ``fn(inputs, outputs, scratch, bind=False)``, a call of compiled kernels that,
    with ``bind=True``, returns the prebound call(s) (engine.step capsules) instead of
    running; the arrays must then stay where they are (the plan's arena, packed constants).
    ``fn`` may return None when bound to say that this configuration cannot be prebound."""

    def bind(self, inputs, outputs, scratch):
        return self.fn(inputs, outputs, scratch, True)


def register_kernel(backend, op, variant="default", *, supports=None, priority=0, native=True,
                    note=""):
    """Decorator registering a kernel factory for ``op`` on ``backend``."""
    def deco(factory):
        specs = KERNELS.setdefault((backend, op), [])
        if any(s.variant == variant for s in specs):
            raise RuntimeError(f"kernel {backend}/{op}/{variant} registered twice")
        specs.append(KernelSpec(backend, op, variant, factory, supports, priority, native, note))
        specs.sort(key=lambda s: -s.priority)
        return factory
    return deco


def register_backend(name, loader):
    BACKENDS[name] = loader


def load_backend(name):
    """Import a backend's kernel modules; returns the backend module.

    A backend module may define ``build_plan(model, input_shapes, backend, threads, keep=(),
    options=None)`` to execute plans its own way (the CUDA backend keeps activations in
    device memory); otherwise the runtime's host plan is used.
    """
    try:
        loader = BACKENDS[name]
    except KeyError:
        raise UnsupportedError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}") from None
    try:
        return loader()
    except ImportError as e:
        hint = (" The cpu backend needs the compiled extensions: reinstall with 'pip install .'"
                if name == "cpu" else "")
        raise UnsupportedError(f"backend {name!r} is not available: {e}.{hint}") from e


def select_kernel(node, ctx, variant=None) -> KernelSpec:
    """The highest-priority kernel of ``ctx.backend`` that supports this node."""
    specs = KERNELS.get((ctx.backend, node.op), [])
    for spec in specs:
        if variant is not None and spec.variant != variant:
            continue
        if spec.supports is None or spec.supports(node, ctx):
            return spec
    if not specs:
        raise UnsupportedError(f"node '{node.name}': backend {ctx.backend!r} has no kernel for "
                               f"op {node.op!r}")
    raise UnsupportedError(f"node '{node.name}': no {ctx.backend!r} kernel for op {node.op!r} "
                           f"supports this configuration (variants: "
                           f"{[s.variant for s in specs]})")


def kernels_for(backend):
    """{op: [KernelSpec]} of one backend (for docs, ``engine ops`` and tests)."""
    load_backend(backend)
    return {op: specs for (b, op), specs in KERNELS.items() if b == backend}


# -- what Session.plan() reports, for every backend's plans -------------------------------

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


def as_f32(a):
    """a as a C-contiguous float32 array of the same shape (0-d stays 0-d, which
    np.ascontiguousarray would make 1-d)."""
    return np.asarray(a, dtype=np.float32, order="C")
