"""Compiled kernels: Cython wrappers (pyx/*.pyx) around the C kernels in include/engine/.

Modules: ``gemm``, ``conv``, ``pool``, ``eltwise``, ``norm``, ``spatial``.  Each checks its
arguments (dtype float32, C-contiguity, ranks, sizes) and raises ``ValueError`` before
releasing the GIL and calling C.
"""

MODULES = ("gemm", "conv", "pool", "eltwise", "norm", "spatial")


def build_config():
    """dict: openmp, openmp_version, omp_max_threads, isa, compiler, gemm_tile."""
    from . import gemm
    return gemm.build_config()


def openmp_enabled():
    """True when the compiled kernels were built with OpenMP (multi-threaded)."""
    from . import gemm
    return gemm.openmp_enabled()
