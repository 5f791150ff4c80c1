"""Compiled kernels: Cython bindings (pyx/<family>.pxi) around the C kernels in include/engine/.

One extension module, ``_lib``, holds the whole library (every kernel compiled once per
instruction set, the thread pool and the nogil executor).  Its op families are named here
for the callers: ``gemm``, ``conv``, ``pool``, ``eltwise``, ``norm``, ``spatial`` and
``executor`` (each is the same module; the name says which bindings the caller uses).
Every binding checks its arguments (dtype float32, C-contiguity, ranks, sizes) and raises
``ValueError`` before releasing the GIL and calling C.

Run-time instruction-set dispatch
---------------------------------
Every kernel is compiled once per instruction set ("scalar" = the x86-64 baseline / portable
C, "avx2" = AVX2+FMA, "avx512" = AVX-512 F/VL/BW/DQ/CD) into the one extension module
(include/engine/ek_dispatch.h).  Every call takes its level explicitly (``isa=``); calls that
name none use the process default: at import the best level the CPU supports (CPUID, with
the OS's register-state check), unless the environment variable ``ENGINE_ISA`` (``avx512`` |
``avx2`` | ``scalar``; ``auto`` or empty = best) forces one; forcing a level the CPU lacks
raises ImportError.  ``set_isa`` changes the default in-process (tests run each level in
one process).  A Session fixes its level at construction (``Session(isa=...)``, default:
the process default then); its plans pack weights for it and run its kernels, whatever
the default becomes later.
"""

import os

from . import _lib

# the op families of the one library (see the module docstring)
gemm = conv = pool = eltwise = norm = spatial = executor = _lib
ISAS = ("scalar", "avx2", "avx512")
_SOURCE = "auto"


def isa_level(isa):
    """Level number (0, 1, 2) of an ISA name or level; ValueError if unknown."""
    if isinstance(isa, int) and not isinstance(isa, bool):
        if 0 <= isa < len(ISAS):
            return isa
    elif isinstance(isa, str) and isa.strip().lower() in ISAS:
        return ISAS.index(isa.strip().lower())
    raise ValueError(f"unknown instruction set {isa!r}; expected one of {list(ISAS)}")


def max_isa():
    """The best level usable here: what the CPU supports, capped by what was compiled."""
    return ISAS[gemm._isa_max_level()]


def cpu_isa():
    """The best level the CPU (and OS) supports, whatever this build contains."""
    return ISAS[gemm._isa_cpu_level()]


def available_isas():
    """ISA names usable on this machine, lowest first."""
    return list(ISAS[:gemm._isa_max_level() + 1])


def get_isa():
    """The process's default instruction set (name): calls and sessions that name none."""
    return ISAS[gemm._isa_level()]


def usable_isa_level(isa):
    """Level of ``isa`` (name or level); ValueError when it is unknown or this CPU (or
    build) cannot run it."""
    lv = isa_level(isa)
    top = gemm._isa_max_level()
    if lv > top:
        raise ValueError(f"instruction set {ISAS[lv]!r} is not available: this CPU/build "
                         f"supports at most {ISAS[top]!r} (CPU: {cpu_isa()!r}, compiled: "
                         f"{ISAS[gemm._isa_compiled_max()]!r})")
    return lv


def set_isa(isa):
    """Make ``isa`` (name or level) the process default; returns the previous name.

    ValueError when the CPU (or this build) cannot run it.  Not thread-safe against kernels
    running concurrently in other threads (they may finish on either level).
    """
    lv = usable_isa_level(isa)
    global _SOURCE
    prev = get_isa()
    _lib._set_isa_level(lv)
    _SOURCE = "set_isa"
    return prev


def cache_sizes():
    """(L1d, L2) bytes per core the GEMM blocking is derived from (CPUID at import)."""
    return gemm._cache_sizes()


def set_cache_sizes(l1d=None, l2=None):
    """Override the cache sizes of the GEMM blocking (None: re-detect
    that one).  Kernels prepared before keep their workspace sizes; a call whose workspace
    became too small raises ValueError.  Returns the sizes now in use."""
    sizes = _detected(l1d, l2)
    _lib._set_cache_sizes(*sizes)
    return gemm._cache_sizes()


def _detected(l1d, l2):
    if l1d is not None and l2 is not None:
        return int(l1d), int(l2)
    cur = _DETECTED
    return (int(l1d) if l1d is not None else cur[0], int(l2) if l2 is not None else cur[1])


def isa_source():
    """How the current level was chosen: "auto", "ENGINE_ISA" or "set_isa"."""
    return _SOURCE


def _init_from_env():
    global _SOURCE
    req = os.environ.get("ENGINE_ISA", "").strip().lower()
    if req in ("", "auto", "native", "best"):
        set_isa(gemm._isa_max_level())
        _SOURCE = "auto"
        return
    try:
        set_isa(req)
    except ValueError as e:
        raise ImportError(f"ENGINE_ISA={req!r}: {e}") from None
    _SOURCE = "ENGINE_ISA"


_init_from_env()
_DETECTED = gemm._cache_sizes()


def build_config():
    """dict: isa (current), isa_source, isa_available, isa_cpu, isa_compiled, threads (the
    pool: "pthreads", "openmp" or "none"), compiler, gemm_tile, cache sizes."""
    cfg = gemm.build_config()
    cfg["isa_available"] = available_isas()
    cfg["isa_source"] = _SOURCE
    order = ["isa", "isa_source", "isa_available", "isa_cpu", "isa_compiled", "threads",
             "compiler", "gemm_tile", "cache_l1d_kib", "cache_l2_kib"]
    return {k: cfg[k] for k in order if k in cfg}


def threads_enabled():
    """True when the kernels run their tiles on the thread pool (include/engine/
    ek_threadpool.h); False for a single-threaded build."""
    return gemm.threads_enabled()
