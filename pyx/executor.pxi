# The nogil executor: runs a list of prebound kernel calls.
#
# A ``Program`` is built once per plan instance from the "engine.step" capsules the kernel
# wrappers return with ``bind=True`` (see pyx/_common.pxi and include/engine/ek_step.h).
# ``run()`` then calls every step's C function in order with the GIL released: no Python
# objects, argument checks or allocations per layer.  The program keeps the capsules (and
# whatever ``keep`` holds: the arrays the steps point into) alive.
#
# A program is not re-entrant: its steps write fixed buffers.  The runtime gives every
# concurrent caller its own plan instance (engine.runtime.plan).
#
# Interruption: run on the main thread, a program looks at a coarse monotonic clock after
# every step and, every SIGNAL_CHECK_MS of run time, takes the GIL for a moment to run
# PyErr_CheckSignals(): a pending Ctrl-C (or any signal whose Python handler raises) stops
# the program between two steps and its exception (KeyboardInterrupt) propagates from run()
# (the outputs are then incomplete).  A single step is not interrupted.  Other threads
# cannot receive Python signals and skip the checks.

import threading

from cpython.exc cimport PyErr_CheckSignals
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from cpython.pythread cimport PyThread_get_thread_ident
from libc.stdlib cimport free, malloc

# The process's thread pool (include/engine/ek_threadpool.h) is compiled into this
# extension (EK_THREADPOOL_IMPL, defined at the top of _lib.pyx) and wired in at import.
cdef extern from *:
    """
    static int ek_threadpool_wire(void)
    {
        ek_parallel_set_impl(ek_threadpool_entry());
        return ek_parallel_impl != NULL;
    }
    static const char *ek_threadpool_kind(void)
    {
    #if EK_POOL_PTHREADS
        return "pthreads";
    #elif defined(EK_POOL_OPENMP)
        return "openmp";
    #else
        return "none";
    #endif
    }
    """
    int ek_threadpool_wire()
    const char* ek_threadpool_kind()
    int ek_parallel_set_cap(int cap) nogil

cdef bint _threads_wired = ek_threadpool_wire()


def threads_enabled():
    """True when the kernels run their tiles on the process's thread pool."""
    return bool(_threads_wired)


def threads_backend():
    """How the kernels run on several threads: "pthreads" (the pool of
    include/engine/ek_threadpool.h), "openmp" (its fallback where there are no pthreads) or
    "none" (single-threaded build)."""
    return ek_threadpool_kind().decode()


def set_thread_cap(int cap):
    """Let the kernels that this Python thread calls use at most ``cap`` threads (0: as
    many as each call asks for); returns the previous cap.  The kernels tile for the
    threads they get, within workspaces sized for the count asked for, and compute the same
    results.  engine.runtime.plan sets it for a whole run (engine.runtime.threads)."""
    return ek_parallel_set_cap(cap)


cdef extern from "engine/ek_step.h" nogil:
    ctypedef void (*ek_step_fn)(const void* args) noexcept nogil
    ctypedef struct ek_step:
        ek_step_fn fn
        void* args

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_MONOTONIC


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef extern from *:
    """
    /* Milliseconds of a monotonic clock for the signal checks between steps: the coarse
       clock where there is one (Linux: a few ns per read, a resolution of a few ms). */
    static long long ek_exec_ms(void)
    {
        struct timespec ts;
    #ifdef CLOCK_MONOTONIC_COARSE
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    #else
        clock_gettime(CLOCK_MONOTONIC, &ts);
    #endif
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    """
    long long ek_exec_ms() noexcept nogil


# Milliseconds between two checks for a pending signal (run time of the program).
SIGNAL_CHECK_MS = 20
cdef long long _check_ms = SIGNAL_CHECK_MS
# Python runs signal handlers on the main thread only.
cdef unsigned long _main_ident = threading.main_thread().ident


cdef inline bint _checks_signals() noexcept:
    """True on the main thread (the only one PyErr_CheckSignals runs handlers on)."""
    return PyThread_get_thread_ident() == _main_ident


def is_step(obj):
    """True for an "engine.step" capsule."""
    return bool(PyCapsule_IsValid(obj, b"engine.step"))


cdef class Program:
    """An ordered list of prebound kernel calls, run without the GIL."""
    cdef ek_step* steps
    cdef Py_ssize_t n
    cdef readonly tuple capsules
    cdef readonly object keep

    def __cinit__(self, capsules, keep=None):
        caps = tuple(capsules)
        cdef Py_ssize_t i
        for i in range(len(caps)):
            if not PyCapsule_IsValid(caps[i], b"engine.step"):
                raise TypeError(f"step {i} is not an engine.step capsule: {caps[i]!r}")
        self.steps = <ek_step*>malloc(max(len(caps), 1) * sizeof(ek_step))
        if self.steps == NULL:
            raise MemoryError()
        for i in range(len(caps)):
            self.steps[i] = (<ek_step*>PyCapsule_GetPointer(caps[i], b"engine.step"))[0]
        self.n = len(caps)
        self.capsules = caps
        self.keep = keep

    def __dealloc__(self):
        free(self.steps)

    def __len__(self):
        return self.n

    def run(self):
        """Run every step in order (GIL released).  On the main thread a pending signal is
        looked for every SIGNAL_CHECK_MS between steps; its handler's exception (Ctrl-C:
        KeyboardInterrupt) stops the run and propagates."""
        cdef Py_ssize_t i
        cdef long long due
        if not _checks_signals():
            with nogil:
                for i in range(self.n):
                    self.steps[i].fn(self.steps[i].args)
            return
        with nogil:
            due = ek_exec_ms() + _check_ms
            for i in range(self.n):
                self.steps[i].fn(self.steps[i].args)
                if ek_exec_ms() >= due:
                    with gil:
                        PyErr_CheckSignals()
                    due = ek_exec_ms() + _check_ms

    def run_timed(self, double[::1] seconds):
        """Run every step, adding each one's wall time (s) to seconds[i]."""
        if seconds.shape[0] < self.n:
            raise ValueError(f"seconds must have {self.n} entries, got {seconds.shape[0]}")
        cdef Py_ssize_t i
        cdef double t0, t1, due
        cdef bint check = _checks_signals()
        with nogil:
            t0 = _now()
            due = t0 + _check_ms * 1e-3
            for i in range(self.n):
                self.steps[i].fn(self.steps[i].args)
                t1 = _now()
                seconds[i] += t1 - t0
                if check and t1 >= due:
                    with gil:
                        PyErr_CheckSignals()
                    t1 = _now()     # (the check's own time is no step's)
                    due = t1 + _check_ms * 1e-3
                t0 = t1


def step_isa(step):
    """The instruction set ("scalar", "avx2", "avx512") a prebound "engine.step" capsule
    runs at, or None for a step that is no kernel entry."""
    if not PyCapsule_IsValid(step, b"engine.step"):
        raise TypeError(f"expected an engine.step capsule, got {type(step).__name__}")
    cdef int lv = ek_entry_level(<ek_entry_fn>(<ek_step*>PyCapsule_GetPointer(step,
                                                                    b"engine.step")).fn)
    return None if lv < 0 else _ISA_NAMES[lv]
