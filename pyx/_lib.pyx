# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""engine._kernels._lib: the whole kernel library in one extension module.

The C kernels (include/engine/) are compiled here once per instruction set (scalar, AVX2,
AVX-512: include/engine/ek_dispatch.h) together with the thread pool
(include/engine/ek_threadpool.h) and the nogil executor.  The sections below are the
Python bindings, one file per op family; each checks its arguments before any C call.
engine._kernels exposes the families under their own names (gemm, conv, ...).
"""

# The pool's implementation is compiled into this translation unit (before any header).
cdef extern from *:
    """
    #define EK_THREADPOOL_IMPL 1
    """

include "_common.pxi"
include "_bind.pxi"
include "executor.pxi"
include "gemm.pxi"
include "conv.pxi"
include "pool.pxi"
include "eltwise.pxi"
include "norm.pxi"
include "spatial.pxi"
