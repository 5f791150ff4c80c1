"""Executing a device program on a GPU with CuPy.

At prepare time (once per input shape):
- the kernel sources are compiled by NVRTC through ``cupy.RawModule`` (once per device and
  process; CuPy also caches the binaries on disk, so later processes skip NVRTC);
- one device buffer receives every weight and prepared table (uploaded once), one more is
  the activation arena; pinned host staging buffers are allocated for NumPy inputs / outputs;
- every record is bound to a ready-to-call closure with its raw device addresses, so a run
  does no planning, no allocation (CuPy's memory pool stays untouched) and no host sync
  before the outputs are read.

Runs: the first run at a shape executes eagerly (it also warms up cuBLAS and the lazily
loaded kernels); the second captures the whole sequence as a CUDA graph on the plan's own
stream, and every later run replays it: one launch instead of hundreds, which is what
batch-1 latency needs.  Inputs are copied into their fixed arena slots before the replay
(host arrays through pinned staging; device arrays device-to-device, without a host round
trip, after the plan's stream waits for the caller's current stream).  Device outputs
(``device_outputs=True``) are fresh CuPy arrays, ordered on the caller's current stream.
"""

import os

import numpy as np

from ...errors import EngineError, InputError, UnsupportedError
from .availability import device_count, import_cupy
from .executor import PlanBase
from .program import Copy, Gemm, Launch, Target
from .sources import NVRTC_OPTIONS, signatures, source

H2D, D2H, D2D = 1, 2, 3          # cudaMemcpyKind
_MODULES = {}                     # (device id, module name) -> cupy.RawModule


def resolve_device(device):
    """A GPU index from ``device`` (None: CuPy's current device; int; 'cuda:N')."""
    cupy = import_cupy()
    try:
        n = device_count()
    except ImportError as e:
        raise UnsupportedError(str(e)) from None
    if device is None:
        return int(cupy.cuda.runtime.getDevice())
    d = device
    if isinstance(d, str) and d.strip().lower().startswith("cuda"):
        rest = d.strip()[4:].lstrip(":")
        d = int(rest) if rest else 0
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise ValueError(f"device must be a GPU index (int) or 'cuda:N', got {device!r}")
    d = int(d)
    if not 0 <= d < n:
        raise UnsupportedError(f"device={device!r}, but {n} CUDA GPU(s) are visible "
                               f"(indices 0..{n - 1}; see CUDA_VISIBLE_DEVICES)")
    return d


def device_target(dev, **kw):
    cupy = import_cupy()
    props = cupy.cuda.runtime.getDeviceProperties(dev)
    name = props.get("name", b"gpu")
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    sm = int(props.get("multiProcessorCount", 1)) or 1
    return Target(name=name, sm_count=sm, max_blocks=sm * 32, **kw)


def kernel_function(dev, kernel):
    """The compiled ``kernel`` on GPU ``dev`` (NVRTC once per module, device and process)."""
    cupy = import_cupy()
    mod = signatures()[kernel][0]
    m = _MODULES.get((dev, mod))
    with cupy.cuda.Device(dev):
        if m is None:
            try:
                m = cupy.RawModule(code=source(mod + ".cu"), options=NVRTC_OPTIONS)
                m.compile()
            except Exception as e:
                raise UnsupportedError(f"compiling engine's CUDA kernels ({mod}.cu) with NVRTC "
                                       f"failed: {e}") from None
            _MODULES[(dev, mod)] = m
        return m.get_function(kernel)


def _cublas():
    try:
        from cupy.cuda import cublas
    except Exception as e:          # libcublas missing from the CuPy install
        raise UnsupportedError(f"cuBLAS is not available to CuPy: {e}") from None
    return cublas


class DevicePlan(PlanBase):
    device_kind = "cuda"

    def __init__(self, program, device_id, use_graph=True):
        super().__init__(program)
        cupy = import_cupy()
        self.cp = cupy
        self.dev = int(device_id)
        self.device = cupy.cuda.Device(self.dev)
        self.use_graph = bool(use_graph)
        self.graph = None
        self.runs = 0
        self._cublas = _cublas()
        with self.device:
            try:
                self.arena = cupy.empty(max(program.arena_bytes, 256), dtype=cupy.uint8)
                self.wbuf = cupy.empty(max(program.weight_bytes, 256), dtype=cupy.uint8)
            except cupy.cuda.memory.OutOfMemoryError:
                raise EngineError(
                    f"the CUDA plan needs {program.arena_bytes / 2**30:.2f} GiB of activations "
                    f"and {program.weight_bytes / 2**30:.2f} GiB of weights on GPU {self.dev}, "
                    f"more than is free") from None
            for key, arr in program.weights.items():
                arr = np.ascontiguousarray(arr)
                if arr.nbytes:
                    cupy.cuda.runtime.memcpy(self.wbuf.data.ptr + program.weight_offsets[key],
                                             arr.ctypes.data, arr.nbytes, H2D)
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.handle = self._cublas.create()
            if os.environ.get("ENGINE_CUDA_TF32", "").strip() not in ("", "0"):
                mode = getattr(self._cublas, "CUBLAS_TF32_TENSOR_OP_MATH", 3)
                self._cublas.setMathMode(self.handle, mode)
            self._scalars = {}
            self.bases = {"arena": self.arena.data.ptr, "w": self.wbuf.data.ptr}
            self.calls = [[self._bind(r) for r in s.records] for s in self.steps]
            # pinned staging for NumPy inputs / outputs, and reusable events
            self._stage = {}
            for name in list(program.inputs) + list(program.outputs):
                ref = program.slots.get(name)
                if ref is not None and name not in self._stage:
                    self._stage[name] = self._pinned(ref)
            self._ev_caller = cupy.cuda.Event(disable_timing=True)
            self._ev_done = cupy.cuda.Event(disable_timing=True)
            self._ev_staged = cupy.cuda.Event(disable_timing=True)
            self._ev_staged.record(self.stream)
            self._ev_t0 = cupy.cuda.Event()
            self._ev_t1 = cupy.cuda.Event()

    def __del__(self):
        try:
            self.graph = None
            self._cublas.destroy(self.handle)
        except Exception:
            pass

    # -- binding ---------------------------------------------------------------------------
    def _pinned(self, ref):
        n = max(ref.size, 1)
        mem = self.cp.cuda.alloc_pinned_memory(n * 4)
        return np.frombuffer(mem, np.float32, n)[:ref.size].reshape(ref.shape)

    def addr(self, p):
        off = p.offset + (self.program.weight_offsets[p.key] if p.space == "w" else 0)
        return self.bases[p.space] + off

    def _scalar(self, v):
        a = self._scalars.get(v)
        if a is None:
            a = self._scalars[v] = np.array([v], dtype=np.float32)
        return a.ctypes.data

    def _bind(self, rec):
        stream = self.stream
        if isinstance(rec, Launch):
            fn = kernel_function(self.dev, rec.kernel)
            args = tuple(np.uint64(0 if a is None else self.addr(a)) if (a is None or
                         hasattr(a, "space")) else a for a in rec.args)
            grid, block = (rec.grid[0], rec.grid[1], 1), (rec.block, 1, 1)
            return lambda: fn(grid, block, args, stream=stream)
        if isinstance(rec, Gemm):
            cb, h = self._cublas, self.handle
            ta, tb = int(rec.transa), int(rec.transb)     # CUBLAS_OP_N 0, CUBLAS_OP_T 1
            alpha, beta = self._scalar(rec.alpha), self._scalar(rec.beta)
            a, b, c = self.addr(rec.a), self.addr(rec.b), self.addr(rec.c)
            if rec.batch == 1:
                return lambda: cb.sgemm(h, ta, tb, rec.m, rec.n, rec.k, alpha, a, rec.lda, b,
                                        rec.ldb, beta, c, rec.ldc)
            return lambda: cb.sgemmStridedBatched(
                h, ta, tb, rec.m, rec.n, rec.k, alpha, a, rec.lda, rec.stride_a, b, rec.ldb,
                rec.stride_b, beta, c, rec.ldc, rec.stride_c, rec.batch)
        if isinstance(rec, Copy):
            rt = self.cp.cuda.runtime
            dst, src, n = self.addr(rec.dst), self.addr(rec.src), rec.nbytes
            return lambda: rt.memcpyAsync(dst, src, n, D2D, stream.ptr)
        raise TypeError(f"unknown record {rec!r}")

    # -- running ---------------------------------------------------------------------------
    def _launch_all(self):
        for calls in self.calls:
            for c in calls:
                c()

    def _capture(self):
        s = self.stream
        s.begin_capture()
        try:
            self._launch_all()
        except Exception:
            try:
                s.end_capture()
            except Exception:
                pass
            raise
        return s.end_capture()

    def _run(self):
        with self.stream:               # cuBLAS follows CuPy's current stream
            if self.use_graph and self.runs >= 1:
                if self.graph is None:
                    try:
                        self.graph = self._capture()
                    except Exception:   # not capturable here: stay eager
                        self.use_graph = False
                        self._launch_all()
                        self.runs += 1
                        return
                self.graph.launch(stream=self.stream)
            else:
                self._launch_all()
        self.runs += 1

    def _run_steps(self, indices):
        with self.stream:
            for i in indices:
                for c in self.calls[i]:
                    c()

    def _write(self, name, arr):
        ref = self.program.slots[name]
        dst, nbytes = self.addr(ref.ptr), ref.size * 4
        rt = self.cp.cuda.runtime
        if isinstance(arr, np.ndarray):
            stage = self._stage[name]
            self._ev_staged.synchronize()        # the previous run's copy has left it
            np.copyto(stage, arr)
            rt.memcpyAsync(dst, stage.ctypes.data, nbytes, H2D, self.stream.ptr)
            self._ev_staged.record(self.stream)
            return
        cp = self.cp
        if not isinstance(arr, cp.ndarray):
            raise InputError(f"input {name!r}: expected a numpy or CuPy array, got "
                             f"{type(arr).__name__}")
        if arr.device.id != self.dev:
            raise InputError(f"input {name!r} lives on GPU {arr.device.id}; this session runs "
                             f"on GPU {self.dev} (Session(..., device={arr.device.id}))")
        if not arr.flags.c_contiguous:
            arr = cp.ascontiguousarray(arr)
        self._ev_caller.record(cp.cuda.get_current_stream())
        self.stream.wait_event(self._ev_caller)  # ordered after the producer's work
        rt.memcpyAsync(dst, arr.data.ptr, nbytes, D2D, self.stream.ptr)

    def _execute(self, feeds, outputs, device_outputs):
        with self.device:
            for name, arr in feeds.items():
                self._write(name, arr)
            self._run()
            if device_outputs:
                res = [self._output(o, True) for o in outputs]
                self._ev_done.record(self.stream)
                self.cp.cuda.get_current_stream().wait_event(self._ev_done)
                return res
            rt = self.cp.cuda.runtime
            for o in outputs:
                ref = self.program.slots.get(o)
                if ref is not None:
                    rt.memcpyAsync(self._stage[o].ctypes.data, self.addr(ref.ptr), ref.size * 4,
                                   D2H, self.stream.ptr)
            self.stream.synchronize()
            return [self._output(o, False) for o in outputs]

    def _read(self, name, device):
        ref = self.program.slots[name]
        if not device:
            return self._stage[name].copy()
        out = self.cp.empty(ref.shape, dtype=self.cp.float32)
        self.cp.cuda.runtime.memcpyAsync(out.data.ptr, self.addr(ref.ptr), ref.size * 4, D2D,
                                         self.stream.ptr)
        return out

    def _from_host(self, arr, device):
        return self.cp.asarray(arr) if device else arr

    def _profile(self, feeds, repeat):
        with self.device:
            return super()._profile(feeds, repeat)

    def _time_step(self, i):
        self._ev_t0.record(self.stream)
        self._run_steps([i])
        self._ev_t1.record(self.stream)
        self._ev_t1.synchronize()
        return self.cp.cuda.get_elapsed_time(self._ev_t0, self._ev_t1) / 1e3

    def _sync(self):
        self.stream.synchronize()
