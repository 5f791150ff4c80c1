"""Session: prepare a model once, run it many times.

    sess = engine.Session("model.safetensors", threads=2)
    probs, = sess.run(x)                   # list, in output order
    d = sess.run({"x": x}, return_dict=True)
    feats = sess.run(x, outputs=["layer3"])  # intermediate activations

Preparation (optimisation passes, kernel choice, weight packing, memory plan) happens in
the constructor and once per new input shape; ``run`` only executes the bound plan.

Backends: ``backend="cpu"`` (default), ``"reference"`` (the NumPy reference ops) or
``"cuda"`` (``device=`` picks the GPU; inputs may then also be device arrays, and
``run(..., device_outputs=True)`` returns device arrays).  A backend module that defines
``build_plan`` executes its own plans; ``feed_array(name, obj)`` lets it accept
non-NumPy inputs.

Execution: every kernel call of a plan is prebound at prepare time (pointers into one
activation arena, packed weights) and ``run`` executes the whole plan in the nogil executor
(pyx/executor.pxi) with the GIL released; only ops without a compiled kernel step out to
Python.  ``executor="python"`` runs every kernel through its Python wrapper instead
(for comparison and debugging).

Instruction set (CPU backend): ``isa="avx512" | "avx2" | "scalar"`` (default: the process's
level, the best this CPU supports unless ENGINE_ISA or engine._kernels.set_isa chose
another).  It is a property of the session's plans: weights are packed for it and every
kernel call runs its variant, whatever other sessions in the process use.

Tuning: ``tune=True`` times every candidate kernel of each layer once (at prepare time)
and keeps the fastest; the choices are cached in ``<model file>.tune.json`` (or
``tune_cache=``) for later sessions (engine.runtime.tune).

Threads: a run uses up to ``threads`` threads (default: the physical cores).  With
``adapt_threads=True`` (the default) each plan measures its runs and uses fewer threads
while fewer are faster, e.g. while another process keeps a core busy
(engine.runtime.threads); ``adapt_threads=False`` runs every layer on ``threads``.  The
results are the same either way.

Pickling: ``pickle.dumps(session)`` carries the model (its file's bytes) and the options
the session was created with, not the prepared plans; unpickling creates the session anew
on the receiving side, which prepares its own plans (for its CPU: an ``isa`` left to the
default is chosen there).  So multiprocessing, Dask and Ray can ship a session to workers.
The model bytes are validated as any model file; a pickle itself, as always, belongs on
trusted channels only.

Thread safety: several Python threads may call ``run`` on one session at once.  Each call
takes an idle *instance* of the plan for its input shape (its own activation arena bound to
the shared, read-only prepared kernels and packed weights); up to ``max_concurrent``
instances are created on demand, further callers wait for one to be free.  So calls never
share buffers, run in parallel while the GIL is released, and the memory cost of
concurrency is one arena per concurrent call (``memory_report().arena_bytes``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..backends.base import PlanRow, load_backend
from ..errors import ArgumentError, InputError
from ..limits import MAX_THREADS, check_shape
from ..ir import Model, gc_paused
from ..memory import MemoryReport
from ..passes import optimize
from .plan import build_plan

MAX_PLANS = 8   # cached input shapes per session

# What ``Session.run`` takes: an array (single-input models), a list or tuple in input
# order, or {input name: array}; GPU backends also take device arrays.
Inputs = Union[np.ndarray, list[np.ndarray], tuple[np.ndarray, ...], Mapping[str, np.ndarray]]


def default_threads():
    from ..config import physical_cores
    return physical_cores()


class Session:
    """A model prepared to run: optimised once, planned once per input shape, run many times.

    ``model``: an ``engine.Model`` or the path of a model file.  Options (module docstring
    and README's Python API):

    - ``threads``: threads per run, 1 to 1024 (default: the physical cores);
      ``adapt_threads`` (default True) lets each plan use fewer while fewer measure faster,
      ``False`` runs every layer on ``threads``; the results are the same.
    - ``backend``: ``"cpu"`` (default), ``"reference"`` (the NumPy reference ops) or
      ``"cuda"``; ``device``: the GPU index (GPU backends only).
    - ``optimize_graph``: run the optimisation passes (folding BatchNorm and constants,
      fusing activations and residual adds...; default True).
    - ``executor``: ``"native"`` (the whole plan in C, GIL released) or ``"python"`` (each
      kernel through its Python wrapper, for debugging).
    - ``max_concurrent``: plan instances (activation arenas) for concurrent ``run`` calls
      from several threads; further calls wait for a free one.
    - ``tune``: time every candidate kernel of each layer once and keep the fastest; the
      choices are cached in ``tune_cache`` (default ``<model file>.tune.json``).
    - ``isa``: ``"avx512"``, ``"avx2"`` or ``"scalar"`` for this session's CPU kernels
      (default: the process's level, the best this CPU supports).
    - ``allow_nonfinite``: accept inputs holding NaN / Inf (by default ``run`` raises
      ``InputError`` naming them).

    ``run`` (also ``session(...)``) executes the model; ``prepare`` builds a batch size's
    plan ahead of the first run; ``plan`` and ``memory_report`` describe that plan.  A
    session is thread-safe and can be pickled (the model and these options travel).
    """

    def __init__(self, model: Union[Model, str, os.PathLike], threads: Optional[int] = None,
                 backend: str = "cpu", optimize_graph: bool = True, device: Optional[int] = None,
                 executor: str = "native", max_concurrent: int = 4, tune: bool = False,
                 tune_cache: Union[str, os.PathLike, None] = None, isa: Optional[str] = None,
                 adapt_threads: bool = True, allow_nonfinite: bool = False) -> None:
        """Load the model (for a path), check the options and optimise the graph; see the
        class docstring for the arguments.  Raises ArgumentError on an invalid option,
        ModelFormatError on an unreadable model file."""
        # what pickling carries: the arguments as given (threads, an isa or a tune cache left
        # to the default are decided again where the session is unpickled)
        self._options = dict(threads=threads, backend=backend, optimize_graph=optimize_graph,
                             device=device, executor=executor, max_concurrent=max_concurrent,
                             tune=tune, tune_cache=tune_cache, isa=isa,
                             adapt_threads=adapt_threads, allow_nonfinite=allow_nonfinite)
        model_path = None
        if isinstance(model, (str, os.PathLike, Path)):
            from ..format import load
            model_path = os.fspath(model)
            model = load(model)
        if not isinstance(model, Model):
            raise ArgumentError(f"Session expects a Model or a path, got {type(model).__name__}")
        self._backend_module = load_backend(backend)
        self._build_plan = getattr(self._backend_module, "build_plan", build_plan)
        self._feed_array = getattr(self._backend_module, "feed_array", None)
        if device is not None and self._build_plan is build_plan:
            raise ArgumentError(f"backend {backend!r} runs on the host; device={device!r} applies "
                             f"to GPU backends only (backend='cuda')")
        self.device = device
        if executor not in ("native", "python"):
            raise ArgumentError(f"executor must be 'native' or 'python', got {executor!r}")
        if (not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool)
                or not 1 <= max_concurrent <= MAX_THREADS):
            raise ArgumentError(f"max_concurrent must be an int from 1 to {MAX_THREADS}, got "
                                f"{max_concurrent!r}")
        self.executor = executor
        self.max_concurrent = max_concurrent
        self.isa = self._isa(backend, isa)
        self.tuner = None
        if tune:
            from .tune import Tuner
            if tune_cache is None and model_path is not None:
                tune_cache = model_path + ".tune.json"
            self.tuner = Tuner(tune_cache, isa=self.isa or "")
        if threads is None:
            threads = default_threads()
        if (not isinstance(threads, int) or isinstance(threads, bool)
                or not 1 <= threads <= MAX_THREADS):
            raise ArgumentError(f"threads must be an int from 1 to {MAX_THREADS}, got "
                                f"{threads!r}")
        self.model = model
        self.backend = backend
        self.threads = threads
        if not isinstance(adapt_threads, bool):
            raise ArgumentError(f"adapt_threads must be True or False, got {adapt_threads!r}")
        self.adapt_threads = adapt_threads
        if not isinstance(allow_nonfinite, bool):
            raise ArgumentError(f"allow_nonfinite must be True or False, got "
                                f"{allow_nonfinite!r}")
        # NaN / Inf in an input would come out as NaN probabilities without a word
        self.allow_nonfinite = allow_nonfinite
        self.optimize_graph = optimize_graph
        self._graphs = {}       # frozenset(keep) -> optimised Model
        self._plans = {}        # (keep, input shapes) -> Plan, oldest first
        self._lock = threading.Lock()
        self.graph = self._graph(frozenset())

    @staticmethod
    def _isa(backend, isa):
        """The CPU backend's instruction set for this session's plans (None elsewhere)."""
        if backend != "cpu":
            if isa is not None:
                raise ArgumentError(f"isa={isa!r} applies to the cpu backend only, not "
                                    f"{backend!r}")
            return None
        from .. import _kernels
        if isa is None:
            return _kernels.get_isa()
        try:
            return _kernels.ISAS[_kernels.usable_isa_level(isa)]
        except ValueError as e:
            raise ArgumentError(f"isa={isa!r}: {e}") from None

    def __reduce__(self):
        from ..format import to_bytes
        return (_unpickle_session, (to_bytes(self.model), dict(self._options)))

    # -- public ----------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        """The model's input names, in the order ``run`` takes a list of inputs."""
        return self.model.input_names

    @property
    def output_names(self) -> list[str]:
        """The model's output names, in the order ``run`` returns them."""
        return list(self.model.outputs)

    def run(self, inputs: Inputs, outputs: Union[str, Iterable[str], None] = None,
            return_dict: bool = False, device_outputs: bool = False,
            ) -> Union[list[np.ndarray], dict[str, np.ndarray]]:
        """Run the model; ``inputs`` is an array (single-input models), a list, or a dict.

        ``device_outputs=True`` (GPU backends only) returns device arrays instead of NumPy.
        """
        feeds = self._feeds(inputs)
        wanted = self._wanted(outputs)
        keep = frozenset(wanted) - frozenset(self.model.outputs)
        if device_outputs and self._build_plan is build_plan:
            raise InputError(f"device_outputs=True needs a GPU backend; backend "
                             f"{self.backend!r} returns NumPy arrays")
        extra = {"device_outputs": True} if device_outputs else {}
        with self._lock:                  # plan lookup / creation only
            plan = self._plan(keep, feeds)
        result = plan.execute(feeds, wanted, **extra)
        return dict(zip(wanted, result)) if return_dict else result

    __call__ = run

    def prepare(self, batch_size: int = 1) -> Any:
        """Build (and cache) the plan for this batch size now, rather than at first run;
        returns it (an ``engine.runtime.plan.Plan`` on the host backends)."""
        shapes = {v.name: self._concrete(v, batch_size) for v in self.model.inputs}
        with self._lock:
            return self._plan(frozenset(), {k: np.empty(s, np.float32) for k, s in shapes.items()})

    def memory_report(self, batch_size: int = 1) -> MemoryReport:
        """The memory plan at ``batch_size`` (prepared if need be): activation arena,
        kernel workspaces and constants in bytes; printing it summarises them."""
        return self.prepare(batch_size).memory

    def plan(self, batch_size: int = 1, timed: bool = True, repeat: int = 3) -> list[PlanRow]:
        """Per step of the prepared plan: a PlanRow (name, op with fused activation /
        residual, kernel variant, layout, output shape, multiply-adds, executor) and, with
        ``timed``, its time (min of ``repeat`` runs on random input) and share of the
        total."""
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ArgumentError(f"repeat must be a positive int, got {repeat!r}")
        p = self.prepare(batch_size)
        times = None
        if timed:
            rng = np.random.default_rng(0)
            feeds = {k: rng.standard_normal(v).astype(np.float32)
                     for k, v in p.input_shapes.items()}
            times = p.profile(feeds, repeat)
        return p.rows(times)

    # -- internals -------------------------------------------------------------------------
    def _graph(self, keep):
        g = self._graphs.get(keep)
        if g is None:
            missing = [k for k in keep if k not in self.model.values]
            if missing:
                raise InputError(f"unknown output name(s) {missing}; "
                                 f"names are listed by 'engine summary MODEL'")
            weights = sorted(k for k in keep if k in self.model.constants)
            if weights:
                raise InputError(f"output name(s) {weights} name constants (weights), not "
                                 f"values computed from the inputs")
            g = optimize(self.model, keep=keep) if self.optimize_graph else self.model.copy()
            self._graphs[keep] = g
        return g

    def _plan(self, keep, feeds):
        key = (keep, tuple((k, a.shape) for k, a in feeds.items()))
        plan = self._plans.get(key)
        if plan is None:
            graph = self._graph(keep)
            options = {"executor": self.executor, "max_instances": self.max_concurrent,
                       "adapt_threads": self.adapt_threads}
            if self.tuner is not None:
                options["tuner"] = self.tuner
            if self.device is not None:
                options["device"] = self.device
            if self.isa is not None:
                from .._kernels import isa_level
                options["isa"] = isa_level(self.isa)
            with gc_paused():         # allocation-heavy, garbage-free: see ir.gc_paused
                plan = self._build_plan(graph, {k: tuple(a.shape) for k, a in feeds.items()},
                                        self.backend, self.threads, keep=sorted(keep),
                                        options=options)
            if len(self._plans) >= MAX_PLANS:     # each plan holds an arena: bound them
                del self._plans[next(iter(self._plans))]
            self._plans[key] = plan
        return plan

    def _wanted(self, outputs):
        if outputs is None:
            return self.output_names
        if isinstance(outputs, str):
            return [outputs]
        try:
            names = list(outputs)
        except TypeError:
            names = None
        if not names or not all(isinstance(o, str) for o in names):
            raise ArgumentError(f"outputs must be a value name or a non-empty list of names, "
                                f"got {outputs!r}")
        return names

    def _concrete(self, value, batch):
        if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
            raise ArgumentError(f"batch_size must be a positive int, got {batch!r}")
        shape = tuple(int(batch) if d is None else d for d in value.shape)
        check_shape(shape, f"input {value.name!r} at batch_size {batch}")
        return shape

    def _feeds(self, inputs):
        names = self.input_names
        if isinstance(inputs, Mapping):
            unknown = sorted(set(inputs) - set(names))
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise InputError(f"inputs do not match the model: expected {names}, "
                                 f"missing {missing}, unknown {unknown}")
            items = [(n, inputs[n]) for n in names]
        else:
            arrays = [inputs] if not isinstance(inputs, (list, tuple)) else list(inputs)
            if len(arrays) != len(names):
                raise InputError(f"the model takes {len(names)} input(s) {names}, "
                                 f"got {len(arrays)}")
            items = list(zip(names, arrays))
        feeds = {}
        for (name, arr), spec in zip(items, self.model.inputs):
            if not isinstance(arr, np.ndarray) and self._feed_array is not None:
                arr = self._feed_array(name, arr)     # e.g. a device array, zero copy
            elif not isinstance(arr, np.ndarray):
                raise InputError(f"input {name!r}: expected a numpy.ndarray, got "
                                 f"{type(arr).__name__}")
            if arr.dtype != np.float32:
                raise InputError(f"input {name!r}: expected dtype float32, got {arr.dtype} "
                                 f"(convert with x.astype(numpy.float32))")
            if arr.ndim != len(spec.shape) or any(
                    d is not None and d != a for d, a in zip(spec.shape, arr.shape)):
                want = tuple("N" if d is None else d for d in spec.shape)
                raise InputError(f"input {name!r}: expected shape {want}, got {arr.shape}")
            if any(a == 0 for a in arr.shape):
                raise InputError(f"input {name!r}: empty array of shape {arr.shape}")
            if not self.allow_nonfinite and isinstance(arr, np.ndarray):
                bad = nonfinite_count(arr)
                if bad:
                    first = np.unravel_index(int(np.argmin(np.isfinite(arr))), arr.shape)
                    raise InputError(f"input {name!r}: {bad} NaN / Inf value(s), the first at "
                                     f"index {tuple(int(i) for i in first)}; pass "
                                     f"allow_nonfinite=True to run them anyway")
            feeds[name] = arr
        return feeds


def nonfinite_count(arr):
    """NaN and +-Inf values in a float array (0 in the common case, checked cheaply: a
    finite array has a finite sum of its values times zero)."""
    with np.errstate(all="ignore"):
        if np.isfinite(np.dot(arr.reshape(-1), np.zeros(arr.size, arr.dtype))):
            return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def _unpickle_session(model_bytes, options):
    """A session from what ``Session.__reduce__`` pickled: the model file's bytes (validated
    as any model file) and the creation options."""
    from ..format import loads
    return Session(loads(model_bytes, source="<pickled session>"), **options)
