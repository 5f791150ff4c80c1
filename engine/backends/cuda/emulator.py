"""Run CUDA programs on the CPU: the .cu kernels compiled as C++, cuBLAS calls as NumPy.

``ENGINE_CUDA_EMULATE=1`` makes ``backend="cuda"`` use this instead of a GPU (no CuPy
needed): every kernel launch, GEMM parameter, pointer and memory-plan decision of the CUDA
backend then runs for real, so the tests check them on machines without a GPU.  The kernels
are compiled with the host C++ compiler through ``emu/shim.h`` (CUDA built-ins as C++;
each block's threads run one after another, as fibers switching at ``__syncthreads`` in the
kernels that synchronise).  GEMMs follow cuBLAS's column-major contract exactly (leading
dimensions and strides as views), so a wrong ``lda`` or a transposed operand shows.

Checks the GPU cannot do cheaply: the arena starts filled with NaN (reading memory nothing
wrote shows up as NaN outputs) and, with ``guard`` bytes between buffers (no memory reuse
then), a write past any buffer's end raises at once, naming the kernel.

It is slow (a debugging and testing tool, not a CPU backend) and says nothing about GPU
performance.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...errors import EngineError, UnsupportedError
from .executor import PlanBase
from .program import Copy, Gemm, Launch, Target
from .sources import KERNEL_DIR, cu_files, digest, signatures, source

SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "emu", "shim.h")
GUARD_BYTE = 0xA5
_LIB = None
_LOCK = threading.Lock()


def emu_target(**overrides):
    """Small grids (kernels loop grid-stride, so results must not depend on the grid), a
    small workspace budget (so chunked paths run too)."""
    kw = dict(name="emulator", sm_count=1, max_blocks=3, workspace_bytes=64 * 2**10)
    kw.update(overrides)
    return Target(**kw)


def _uses_sync(name):
    """Whether kernel `name`'s body calls __syncthreads (directly or via ek_block_*)."""
    mod = signatures()[name][0]
    text = source(mod + ".cu")
    start = re.search(r'extern\s+"C"\s+__global__\s+void\s+' + name + r"\s*\(", text).start()
    nxt = re.search(r'extern\s+"C"\s+__global__', text[start + 10:])
    body = text[start: start + 10 + nxt.start()] if nxt else text[start:]
    return "__syncthreads" in body or "ek_block_" in body


def launcher_source():
    """C++ source: every .cu file, then one `emu_<kernel>(gx, gy, nt, args)` per kernel."""
    lines = [f'#include "{SHIM}"']
    for path in cu_files():
        lines.append(f'#include "{path}"')
    for name, (_, params) in sorted(signatures().items()):
        casts = ", ".join(f"*({t}*)a[{i}]" for i, (t, _) in enumerate(params))
        sync = "true" if _uses_sync(name) else "false"
        lines.append(
            f'extern "C" int emu_{name}(unsigned gx, unsigned gy, unsigned nt, void** a) {{\n'
            f"    return emu::run(gx, gy, nt, {sync}, [&] {{ {name}({casts}); }});\n}}")
    return "\n".join(lines) + "\n"


def _compiler():
    for cc in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if cc and shutil.which(cc):
            return cc
    return None


def cache_dir():
    base = os.environ.get("ENGINE_CUDA_EMU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "engine")
    try:
        os.makedirs(base, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    base = os.path.join(tempfile.gettempdir(), f"engine-cuda-emu-{os.getuid()}"
                        if hasattr(os, "getuid") else "engine-cuda-emu")
    os.makedirs(base, exist_ok=True)
    return base


def library():
    """The compiled emulation library (built once per source version, cached on disk)."""
    global _LIB
    with _LOCK:
        if _LIB is not None:
            return _LIB
        cc = _compiler()
        if cc is None:
            raise UnsupportedError("the CUDA emulator needs a C++ compiler (g++ or clang++)")
        src = launcher_source()
        with open(SHIM, encoding="utf-8") as f:
            shim = f.read()
        key = hashlib.sha256((src + shim + digest() + cc).encode()).hexdigest()[:16]
        path = os.path.join(cache_dir(), f"ek_cuda_emu_{key}.so")
        if not os.path.exists(path):
            tmp = tempfile.mkdtemp(prefix="ek-emu-")
            try:
                cpp = os.path.join(tmp, "emu.cpp")
                with open(cpp, "w") as f:
                    f.write(src)
                out = os.path.join(tmp, "emu.so")
                cmd = [cc, "-O2", "-std=c++14", "-shared", "-fPIC", "-pthread",
                       "-ffp-contract=off", "-Wno-deprecated-declarations", "-I", KERNEL_DIR, cpp, "-o", out]
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, timeout=600)
                if r.returncode != 0:
                    raise UnsupportedError(f"compiling the CUDA kernels for the emulator "
                                           f"failed:\n{r.stderr[-4000:]}")
                os.replace(out, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        lib = ctypes.CDLL(path)
        for name in signatures():
            fn = getattr(lib, f"emu_{name}")
            fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
            fn.restype = ctypes.c_int
        _LIB = lib
        return lib


def _aligned(nbytes, fill=0):
    raw = np.full(int(nbytes) + 512, fill, dtype=np.uint8)
    off = (-raw.ctypes.data) % 256
    return raw[off: off + int(nbytes)]


_CTYPES = {"i32": ctypes.c_int32, "i64": ctypes.c_int64, "f32": ctypes.c_float}


class EmulatedPlan(PlanBase):
    device_kind = "emulator"

    def __init__(self, program):
        super().__init__(program)
        self.lib = library()
        self.arena = _aligned(max(program.arena_bytes, 256))
        self.arena.view(np.uint32)[:] = 0x7FC00000          # NaN: unwritten memory shows
        for off, n in program.guards:
            self.arena[off:off + n] = GUARD_BYTE
        self.wbuf = _aligned(max(program.weight_bytes, 256))
        for key, arr in program.weights.items():
            off = program.weight_offsets[key]
            self.wbuf[off:off + arr.nbytes] = np.frombuffer(arr.tobytes(), np.uint8)
        self.bases = {"arena": self.arena.ctypes.data, "w": self.wbuf.ctypes.data}
        self.f32 = {"arena": self.arena.view(np.float32), "w": self.wbuf.view(np.float32)}
        self.calls = [[self._bind(r, s.node) for r in s.records] for s in self.steps]

    # -- binding ---------------------------------------------------------------------------
    def _addr(self, p):
        off = p.offset + (self.program.weight_offsets[p.key] if p.space == "w" else 0)
        return self.bases[p.space] + off

    def _elem(self, p):
        off = p.offset + (self.program.weight_offsets[p.key] if p.space == "w" else 0)
        if off % 4:
            raise EngineError(f"misaligned float pointer {p}")
        return self.f32[p.space], off // 4

    def _bind(self, rec, node):
        if isinstance(rec, Launch):
            fn = getattr(self.lib, f"emu_{rec.kernel}")
            params = signatures()[rec.kernel][1]
            keep = []
            for (_, kind), a in zip(params, rec.args):
                if kind == "ptr":
                    keep.append(ctypes.c_void_p(0 if a is None else self._addr(a)))
                else:
                    keep.append(_CTYPES[kind](a.item()))
            argv = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
            gx, gy = rec.grid

            def call(fn=fn, argv=argv, keep=keep, rec=rec, node=node):
                if fn(gx, gy, rec.block, argv) != 0:
                    raise EngineError(f"node '{node.name}': kernel {rec.kernel} failed in the "
                                      f"emulator (divergent __syncthreads)")
                self._check_guards(node, rec.kernel)
            return call
        if isinstance(rec, Gemm):
            return lambda rec=rec, node=node: self._gemm(rec, node)
        if isinstance(rec, Copy):
            def copy(rec=rec, node=node):
                dst, src = self._addr(rec.dst), self._addr(rec.src)
                ctypes.memmove(dst, src, rec.nbytes)
                self._check_guards(node, "copy")
            return copy
        raise TypeError(f"unknown record {rec!r}")

    def _operand(self, p, rows, cols, ld):
        buf, e = self._elem(p)
        if e + (cols - 1) * ld + rows > buf.size:
            raise EngineError(f"GEMM operand at {p} out of bounds")
        return as_strided(buf[e:], shape=(rows, cols), strides=(4, 4 * ld))

    def _gemm(self, g, node):
        for i in range(g.batch):
            ra, ca = (g.k, g.m) if g.transa else (g.m, g.k)
            rb, cb = (g.n, g.k) if g.transb else (g.k, g.n)
            A = self._operand(g.a.at(i * g.stride_a), ra, ca, g.lda)
            Bm = self._operand(g.b.at(i * g.stride_b), rb, cb, g.ldb)
            C = self._operand(g.c.at(i * g.stride_c), g.m, g.n, g.ldc)
            opa = A.T if g.transa else A
            opb = Bm.T if g.transb else Bm
            with np.errstate(all="ignore"):
                res = np.float32(g.alpha) * (np.asarray(opa, np.float32)
                                             @ np.asarray(opb, np.float32))
                if g.beta != 0.0:
                    res = res + np.float32(g.beta) * C
            C[...] = res
        self._check_guards(node, "gemm")

    def _check_guards(self, node, what):
        for off, n in self.program.guards:
            seg = self.arena[off:off + n]
            if not (seg == GUARD_BYTE).all():
                bad = off + int(np.argmax(seg != GUARD_BYTE))
                raise EngineError(f"node '{node.name}': {what} wrote past the end of a buffer "
                                  f"(arena byte {bad})")

    # -- PlanBase --------------------------------------------------------------------------
    def _view(self, name):
        ref = self.program.slots[name]
        buf, e = self._elem(ref.ptr)
        return buf[e:e + ref.size].reshape(ref.shape)

    def _write(self, name, arr):
        if not isinstance(arr, np.ndarray):
            raise EngineError("the CUDA emulator takes NumPy inputs only")
        np.copyto(self._view(name), arr)

    def _run(self):
        for calls in self.calls:
            for c in calls:
                c()

    def _run_steps(self, indices):
        for i in indices:
            for c in self.calls[i]:
                c()

    def _read(self, name, device):
        return self._view(name).copy()


def platform_ok():
    return sys.platform.startswith(("linux", "darwin")) and _compiler() is not None
