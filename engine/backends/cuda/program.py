"""Device programs as plain data: pointers, kernel launches, GEMMs, copies (no CuPy here).

Kernel factories (``kernels.py``) describe their work as a list of *records* through an
:class:`Emitter`; the planner (``planner.py``) turns a graph into such a program with every
pointer resolved to an offset in one of two device buffers:

- the **arena** (``Ptr("arena", None, offset)``): activations and kernel workspaces, planned
  once per input shape (buffers share memory when their lifetimes do not overlap);
- the **weights** (``Ptr("w", key)``): constants and everything derived from them at prepare
  time (Winograd-transformed filters, index tables, broadcast metadata), uploaded once.

An executor binds a program to memory: ``device.py`` launches it on a GPU with CuPy (and
captures it as a CUDA graph); ``emulator.py`` runs the same records on the CPU (the .cu
kernels compiled as C++) so all of this is tested without a GPU.

Launch configurations are pure functions of the work size and the :class:`Target`, and every
launch is checked against the kernel's C signature (argument count and types) and every GEMM
against cuBLAS's rules (leading dimensions, int32 sizes) when it is emitted.
"""

from dataclasses import dataclass, field

import numpy as np

from ...errors import UnsupportedError
from .sources import signatures

F32 = 4
BLOCK = 256              # threads per block of every kernel (EK_BLOCK in common.cuh)
INT32_MAX = 2**31 - 1
GRID_Y_MAX = 65535


@dataclass(frozen=True)
class Ptr:
    """A device address: ``space`` 'arena' or 'w' (weights, with upload ``key``) + bytes."""
    space: str
    key: object = None
    offset: int = 0

    def at(self, elems):
        """The pointer ``elems`` float32 elements further."""
        return Ptr(self.space, self.key, self.offset + F32 * int(elems))


@dataclass
class TensorRef:
    """A value as a kernel sees it: where it lives and its shape (``const``: host copy of a
    constant input, so factories can transform it)."""
    ptr: Ptr
    shape: tuple
    const: object = None

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Target:
    """What launch configurations depend on.  ``max_blocks`` caps 1-D grids (kernels loop
    grid-stride, so any cap is correct; the GPU target uses 32 blocks per SM)."""
    name: str = "generic"
    sm_count: int = 80
    max_blocks: int = 80 * 32
    workspace_bytes: int = 256 * 2**20   # im2col / Winograd chunk budget
    winograd: str = "auto"               # "auto", "always", "never"


# -- records ----------------------------------------------------------------------------------

@dataclass
class Launch:
    kernel: str
    grid: tuple          # (gx, gy)
    block: int
    args: tuple          # Ptr | None (null) | np.int32 | np.int64 | np.float32


@dataclass
class Gemm:
    """Column-major (cuBLAS) C = alpha op(A) op(B) + beta C, ``batch`` times with strides in
    elements (strided-batched SGEMM; batch 1 is a plain SGEMM)."""
    transa: bool
    transb: bool
    m: int
    n: int
    k: int
    a: Ptr
    lda: int
    b: Ptr
    ldb: int
    c: Ptr
    ldc: int
    batch: int = 1
    stride_a: int = 0
    stride_b: int = 0
    stride_c: int = 0
    alpha: float = 1.0
    beta: float = 0.0


@dataclass
class Copy:
    dst: Ptr
    src: Ptr
    nbytes: int


# -- launch configuration (pure) --------------------------------------------------------------

def cdiv(a, b):
    return -(-int(a) // int(b))


def grid_1d(n, target, block=BLOCK):
    """Blocks for a grid-stride loop over n items: enough to cover n, at most max_blocks."""
    return (max(1, min(cdiv(n, block), target.max_blocks)), 1)


def grid_rows(rows, target):
    """One block per row, capped (the kernels loop grid-stride over rows)."""
    return (max(1, min(int(rows), target.max_blocks)), 1)


def grid_2d(cols, rows, target, block=BLOCK):
    """x over columns (positions), y over rows, total blocks about max_blocks * 4."""
    gx = max(1, min(cdiv(cols, block), target.max_blocks))
    gy = max(1, min(int(rows), GRID_Y_MAX, max(1, (target.max_blocks * 4) // gx)))
    return (gx, gy)


# -- emitter ----------------------------------------------------------------------------------

def _check_arg(kernel, i, ctype, kind, a):
    ok = {"ptr": a is None or isinstance(a, Ptr),
          "i32": isinstance(a, np.int32),
          "i64": isinstance(a, np.int64),
          "f32": isinstance(a, np.float32)}[kind]
    if not ok:
        raise TypeError(f"CUDA kernel {kernel}: argument {i} must be {ctype} ({kind}), got "
                        f"{type(a).__name__} {a!r}")
    if kind in ("i32",) and not -2**31 <= int(a) <= INT32_MAX:
        raise OverflowError(f"CUDA kernel {kernel}: argument {i} = {int(a)} overflows int")


def check_launch(rec):
    sigs = signatures()
    if rec.kernel not in sigs:
        raise KeyError(f"no CUDA kernel named {rec.kernel!r}")
    params = sigs[rec.kernel][1]
    if len(params) != len(rec.args):
        raise TypeError(f"CUDA kernel {rec.kernel} takes {len(params)} arguments, got "
                        f"{len(rec.args)}")
    for i, ((ctype, kind), a) in enumerate(zip(params, rec.args)):
        _check_arg(rec.kernel, i, ctype, kind, a)
    gx, gy = rec.grid
    if not (1 <= gx <= INT32_MAX and 1 <= gy <= GRID_Y_MAX and 1 <= rec.block <= 1024):
        raise ValueError(f"CUDA kernel {rec.kernel}: bad launch configuration grid={rec.grid} "
                         f"block={rec.block}")


def check_gemm(g):
    """cuBLAS's argument rules (column-major): sizes positive int32, ld >= rows stored."""
    for name in ("m", "n", "k", "lda", "ldb", "ldc", "batch"):
        v = getattr(g, name)
        if not 1 <= v <= INT32_MAX:
            raise UnsupportedError(f"GEMM {name}={v} is outside cuBLAS's int32 range")
    rows_a = g.k if g.transa else g.m
    rows_b = g.n if g.transb else g.k
    if g.lda < rows_a or g.ldb < rows_b or g.ldc < g.m:
        raise ValueError(f"GEMM leading dimensions too small: {g}")


class Emitter:
    """What a kernel factory's ``emit`` gets: its inputs / outputs / workspace as
    :class:`TensorRef` / :class:`Ptr`, the target, and methods appending records."""

    def __init__(self, node, ins, outs, work, target, prefix):
        self.node = node
        self.ins = ins
        self.outs = outs
        self.work = work
        self.target = target
        self.records = []
        self.uploads = {}             # key -> host array (uploaded once into the weights)
        self._prefix = prefix

    def upload(self, what, array):
        """Place a host array (prepared once) in the weights buffer; returns its pointer."""
        key = f"{self._prefix}:{what}"
        arr = np.ascontiguousarray(array)
        if arr.dtype not in (np.float32, np.int64):
            raise TypeError(f"uploads are float32 or int64, got {arr.dtype}")
        self.uploads[key] = arr
        return Ptr("w", key)

    def launch(self, kernel, grid, *args, block=BLOCK):
        rec = Launch(kernel, tuple(int(g) for g in grid), int(block), tuple(args))
        check_launch(rec)
        self.records.append(rec)
        return rec

    def gemm(self, **kw):
        g = Gemm(**kw)
        check_gemm(g)
        self.records.append(g)
        return g

    def copy(self, dst, src, nbytes):
        if nbytes > 0:
            self.records.append(Copy(dst, src, int(nbytes)))


# -- helpers for factories --------------------------------------------------------------------

def i32(v):
    v = int(v)
    if not -2**31 <= v <= INT32_MAX:
        raise UnsupportedError(f"a size of {v} does not fit the CUDA kernels' int arguments")
    return np.int32(v)


def i64(v):
    return np.int64(int(v))


def f32(v):
    return np.float32(v)


@dataclass
class ProgramStep:
    node: object
    variant: str
    outputs: list                     # TensorRef per node output
    records: list = field(default_factory=list)
