"""The CUDA kernel sources: where they live, how they are handed to NVRTC, their signatures.

The kernels are ``.cu`` files in ``kernels/`` beside this module (shipped as package data).
Each includes ``common.cuh``; for NVRTC the include is inlined here, so no include path is
needed and the text compiled at run time is exactly what ``nvcc -ptx`` checks in the tests.

Every kernel is ``extern "C" __global__ void name(params)``; :func:`signatures` parses the
parameter types so the planner can check each launch's arguments (count and type) before
anything reaches a GPU: a wrong argument type would otherwise be silent garbage.
"""

import hashlib
import os
import re
from functools import lru_cache

KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
COMMON = "common.cuh"
NVRTC_OPTIONS = ("--std=c++14",)

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)


def cu_files():
    """Paths of the .cu sources, sorted."""
    return sorted(os.path.join(KERNEL_DIR, f) for f in os.listdir(KERNEL_DIR)
                  if f.endswith(".cu"))


def _read(name):
    with open(os.path.join(KERNEL_DIR, name), encoding="utf-8") as f:
        return f.read()


@lru_cache(maxsize=None)
def source(name):
    """The text of kernels/<name> with its local includes inlined (each header once)."""
    seen = set()

    def expand(text):
        def sub(m):
            inc = m.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            return expand(_read(inc))
        return _INCLUDE.sub(sub, text)
    return expand(_read(name))


def module_names():
    """Module names (file stems) of the kernel sources: 'conv', 'eltwise', ..."""
    return [os.path.splitext(os.path.basename(p))[0] for p in cu_files()]


@lru_cache(maxsize=None)
def signatures():
    """{kernel name: (module, [(C type, kind), ...])}; kind is 'ptr', 'i32', 'i64' or 'f32'."""
    sigs = {}
    for mod in module_names():
        for name, params in _KERNEL.findall(source(mod + ".cu")):
            if name in sigs:
                raise RuntimeError(f"CUDA kernel {name!r} is defined twice")
            sigs[name] = (mod, [(t, param_kind(t)) for t in _param_types(params)])
    return sigs


def _param_types(params):
    out = []
    for p in params.split(","):
        p = " ".join(p.split())
        if not p:
            continue
        m = re.match(r"(.*?)(\w+)$", p)
        if m is None:
            raise RuntimeError(f"cannot parse CUDA kernel parameter {p!r}")
        out.append(m.group(1).replace("__restrict__", "").strip())
    return out


def param_kind(ctype):
    t = " ".join(ctype.replace("const", " ").split())
    if "*" in t:
        return "ptr"
    kinds = {"int": "i32", "i64": "i64", "long long": "i64", "float": "f32"}
    if t not in kinds:
        raise RuntimeError(f"unsupported CUDA kernel parameter type {ctype!r}")
    return kinds[t]


def digest():
    """A hash of every kernel source (cache keys of compiled code)."""
    h = hashlib.sha256()
    for p in sorted(os.listdir(KERNEL_DIR)):
        if p.endswith((".cu", ".cuh", ".h")):
            h.update(p.encode())
            h.update(_read(p).encode())
    return h.hexdigest()[:16]
