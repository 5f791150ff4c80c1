# Shared argument checking of the kernel bindings (included once, by pyx/_lib.pyx).
#
# Every array handed to C is checked here first: an ndarray of dtype float32 (index tables:
# intp), C-contiguous, of the expected rank and size, writeable when written, not
# overlapping the arrays the C function reads when the C precondition says so.  Failures
# raise ValueError naming the argument with what was expected and what was given, so bad
# input never reaches the C code.

cimport numpy as cnp
from libc.stdint cimport uintptr_t

cnp.import_array()

cdef extern from "engine/ek_dispatch.h":
    int EK_MULTI_ISA
    int EK_ISA_COMPILED_MAX
    int ek_isa_cur
    int ek_isa_set(int level)
    int ek_isa_max_level()
    int ek_cpu_best_isa()


# -- run-time instruction-set dispatch (include/engine/ek_dispatch.h) -----------------------
# Levels: 0 scalar (baseline), 1 avx2 (AVX2+FMA), 2 avx512.  Every binding takes isa=; the
# default level below serves calls that name none (engine._kernels.set_isa sets it).

def _isa_level():
    """The default instruction-set level (0 scalar, 1 avx2, 2 avx512)."""
    return ek_isa_cur


def _isa_max_level():
    """The highest level usable here: min(what the CPU supports, what was compiled)."""
    return ek_isa_max_level()


def _isa_cpu_level():
    """The highest level the CPU (and OS) supports, whatever was compiled."""
    return ek_cpu_best_isa()


def _isa_compiled_max():
    """The highest level compiled into the library (0 without the x86 multi-ISA build)."""
    return EK_ISA_COMPILED_MAX


def _set_isa_level(int level):
    """Set the default level; returns the previous one.  ValueError if not usable."""
    cdef int prev = ek_isa_set(level)
    if prev < 0:
        raise ValueError(f"instruction-set level {level} is not usable here (max "
                         f"{ek_isa_max_level()})")
    return prev


ek_isa_set(ek_isa_max_level())     # default: the best the CPU supports


# -- prebound calls for the nogil executor (include/engine/ek_step.h) -----------------------
# Every kernel binding takes ``bind=False``; with ``bind=True`` it validates its arguments
# exactly as for a call, then returns an "engine.step" capsule holding the C call (its
# argument struct and the entry of the call's instruction set, see _bind.pxi) instead of
# running it.  The executor (executor.pxi) runs a list of such steps without the GIL.  The
# caller keeps the arrays alive.

cdef extern from "engine/ek_step.h":
    pass


cdef extern from "engine/ek_dispatch.h":
    long ek_gemm_l1_bytes, ek_gemm_l2_bytes
    void ek_gemm_init_caches()
    void ek_gemm_set_caches(long l1d, long l2)


ek_gemm_init_caches()              # the GEMM blocking's L1 / L2 sizes, from CPUID


def _cache_sizes():
    """(L1d, L2) bytes the GEMM blocking uses."""
    return int(ek_gemm_l1_bytes), int(ek_gemm_l2_bytes)


def _set_cache_sizes(long l1d, long l2):
    """Override the (L1d, L2) bytes (values too small are raised to 4 / 64 KiB)."""
    ek_gemm_set_caches(l1d, l2)
    return _cache_sizes()


cdef inline int _isa_arg(object isa) except -2:
    """An explicit level argument (name or number; None: the default level)."""
    if isa is None:
        return ek_isa_cur
    if isinstance(isa, str):
        if isa not in _ISA_NAMES:
            raise ValueError(f"unknown instruction set {isa!r}; expected one of {_ISA_NAMES}")
        isa = _ISA_NAMES.index(isa)
    cdef long v = isa
    if v < 0 or v > ek_isa_max_level():
        raise ValueError(f"isa level {v} is not usable here (max {ek_isa_max_level()})")
    return <int>v


cdef inline cnp.ndarray _arr(object a, str name, int typenum=cnp.NPY_FLOAT32):
    if not isinstance(a, cnp.ndarray):
        raise ValueError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        want = "float32" if typenum == cnp.NPY_FLOAT32 else "intp (int64)"
        raise ValueError(f"{name} must have dtype {want}, got {arr.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous, got strides {(<object>arr).strides} for shape "
                         f"{(<object>arr).shape}")
    return arr


cdef inline float* _fptr(object a, str name, Py_ssize_t size=-1, int ndim=-1,
                         bint writable=False) except NULL:
    """Data pointer of a checked float32 array (never NULL; an empty array is allowed)."""
    cdef cnp.ndarray arr = _arr(a, name)
    if ndim >= 0 and cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got {cnp.PyArray_NDIM(arr)}-D shape "
                         f"{(<object>arr).shape}")
    if size >= 0 and cnp.PyArray_SIZE(arr) != size:
        raise ValueError(f"{name} must have {size} elements, got {cnp.PyArray_SIZE(arr)} "
                         f"(shape {(<object>arr).shape})")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writeable")
    return <float*>cnp.PyArray_DATA(arr)


cdef inline float* _fptr_opt(object a, str name, Py_ssize_t size) except? NULL:
    """Like _fptr for an optional argument: NULL for None."""
    if a is None:
        return NULL
    return _fptr(a, name, size)


cdef inline Py_ssize_t* _iptr(object a, str name, Py_ssize_t size, Py_ssize_t lo,
                              Py_ssize_t hi) except NULL:
    """Data pointer of an intp index table with `size` entries, each in [lo, hi)."""
    cdef cnp.ndarray arr = _arr(a, name, cnp.NPY_INTP)
    if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_SIZE(arr) != size:
        raise ValueError(f"{name} must be 1-D with {size} entries, got shape {(<object>arr).shape}")
    cdef Py_ssize_t* p = <Py_ssize_t*>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i
    for i in range(size):
        if p[i] < lo or p[i] >= hi:
            raise ValueError(f"{name}[{i}] = {p[i]} is outside [{lo}, {hi})")
    return p


cdef inline Py_ssize_t _size(object a):
    return cnp.PyArray_SIZE(<cnp.ndarray>a)


cdef inline object _shape(object a):
    return a.shape


cdef inline int _ndim(object a):
    return cnp.PyArray_NDIM(<cnp.ndarray>a)


cdef inline int _overlap(const float* a, Py_ssize_t na, const float* b, Py_ssize_t nb):
    if a == NULL or b == NULL or na <= 0 or nb <= 0:
        return 0
    cdef uintptr_t a0 = <uintptr_t>a, b0 = <uintptr_t>b
    return a0 < b0 + <uintptr_t>nb * 4 and b0 < a0 + <uintptr_t>na * 4


cdef inline int _disjoint(const float* out, Py_ssize_t nout, const float* inp, Py_ssize_t nin,
                          str out_name, str in_name) except -1:
    if _overlap(out, nout, inp, nin):
        raise ValueError(f"{out_name} must not overlap {in_name}")
    return 0


cdef inline int _same_or_disjoint(const float* out, Py_ssize_t nout, const float* inp,
                                  Py_ssize_t nin, str out_name, str in_name) except -1:
    """In-place (identical buffer) is allowed; any other overlap is not."""
    if out == inp and nout == nin:
        return 0
    return _disjoint(out, nout, inp, nin, out_name, in_name)


cdef inline int _threads(object nthreads) except -1:
    cdef long n = nthreads
    if n < 1:
        raise ValueError(f"nthreads must be >= 1, got {n}")
    if n > 1024:
        raise ValueError(f"nthreads must be <= 1024, got {n}")
    return <int>n


cdef inline int _act(object act) except -1:
    cdef long a = act
    if a < 0 or a > 15:
        raise ValueError(f"act must be an activation code in [0, 15], got {a}")
    return <int>a


# Geometry values (kernel sizes, strides, dilations, pads) are bounded so that the C index
# arithmetic (products of two of them) cannot overflow.
cdef Py_ssize_t _INT_LIMIT = (1 << 31) - 1


cdef inline int _ints(object seq, str name, Py_ssize_t n, Py_ssize_t minimum,
                      Py_ssize_t* out, str axes=None) except -1:
    """Copy a sequence of exactly n ints, each >= minimum, into out (axes: the dims' names
    when the sequence is a shape, for the messages)."""
    try:
        vals = [int(v) for v in seq]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {n} ints, got {seq!r}") from None
    if len(vals) != n:
        if axes is not None:
            raise ValueError(f"{name} must be {n}-D ({axes}), got {len(vals)}-D "
                             f"{tuple(vals)}")
        raise ValueError(f"{name} must have {n} entries, got {len(vals)}: {vals}")
    cdef Py_ssize_t i
    for i in range(n):
        if vals[i] < minimum:
            if axes is not None:
                raise ValueError(f"{name} dims must be >= {minimum}, got {tuple(vals)}")
            raise ValueError(f"{name} entries must be >= {minimum}, got {vals}")
        if vals[i] > _INT_LIMIT:
            raise ValueError(f"{name} entries must be <= {_INT_LIMIT}, got {vals}")
        out[i] = vals[i]
    return 0


# -- second line of defence against hostile sizes (include/engine/ek_common.h) -------------
# engine/limits.py bounds every model's geometry before a kernel exists; the kernels keep
# their own guards: the size functions return -1 when a size overflows or exceeds
# EK_SIZE_MAX floats, and every window geometry passes ek_geom3_check (each extent and
# derived span <= EK_DIM_MAX) before a C call.

cdef extern from "engine/ek_dispatch.h" nogil:
    ctypedef struct ek_geom3:
        Py_ssize_t D, H, W, KD, KH, KW, OD, OH, OW, sd, sh, sw, pd, ph, pw, dd, dh, dw
    Py_ssize_t EK_SIZE_MAX
    Py_ssize_t EK_DIM_MAX
    int ek_geom3_check(const ek_geom3* g, const Py_ssize_t* pad_end)


cdef inline Py_ssize_t _sized(Py_ssize_t n, str what) except -1:
    """n, a size a C size function returned; ValueError for its -1 (overflow / too large)."""
    if n < 0:
        raise ValueError(f"{what} overflows or exceeds {EK_SIZE_MAX} float32 elements: the "
                         f"geometry is too large")
    return n


cdef inline int _geom_ok(const ek_geom3* g, const Py_ssize_t* pad_end, str what) except -1:
    """ValueError unless the C kernels can index with g without wrapping (ek_geom3_check)."""
    if ek_geom3_check(g, pad_end) != 0:
        pe = "" if pad_end == NULL else f", pad_end=({pad_end[0]}, {pad_end[1]}, {pad_end[2]})"
        raise ValueError(
            f"{what} geometry out of range: input ({g.D}, {g.H}, {g.W}), kernel ({g.KD}, "
            f"{g.KH}, {g.KW}), output ({g.OD}, {g.OH}, {g.OW}), stride ({g.sd}, {g.sh}, "
            f"{g.sw}), pad ({g.pd}, {g.ph}, {g.pw}){pe}, dilation ({g.dd}, {g.dh}, {g.dw}): "
            f"every value and every window span (O - 1) * stride + (K - 1) * dilation + 1 "
            f"and padded size must be <= {EK_DIM_MAX}")
    return 0


cdef inline float* _work(object work, Py_ssize_t need, str name="work") except? NULL:
    """Workspace pointer: a 1-D float32 array of at least `need` elements (None if 0).
    need < 0 (a C size function's overflow): ValueError."""
    _sized(need, name)
    if need <= 0 and (work is None or _size(work) == 0):
        return NULL
    if work is None:
        raise ValueError(f"{name} is required: {need} float32 elements, got None")
    cdef float* p = _fptr(work, name, -1, 1, True)
    if _size(work) < need:
        raise ValueError(f"{name} must have at least {need} elements, got {_size(work)}")
    return p


_ISA_NAMES = ("scalar", "avx2", "avx512")


cdef class Packed:
    """An operand packed once (at prepare time) for the micro-kernels of one instruction set.

    Opaque to Python: ``kind`` says what it packs ("gemm_a": op(A) of shape (M, K),
    "gemm_b": op(B) of shape (K, N), "conv": conv weights of shape (Cout, C/groups, KD, KH,
    KW) in ``groups`` groups), ``isa`` the level it was packed for: calls using it run that
    level's kernels whatever the default level is.  ``data`` holds the panels.
    """
    cdef readonly object data
    cdef readonly str kind
    cdef readonly int isa
    cdef readonly tuple shape
    cdef readonly Py_ssize_t groups
    cdef float* ptr

    @property
    def isa_name(self):
        return _ISA_NAMES[self.isa]

    @property
    def nbytes(self):
        return self.data.nbytes

    def __repr__(self):
        return (f"Packed(kind={self.kind!r}, shape={self.shape}, groups={self.groups}, "
                f"isa={_ISA_NAMES[self.isa]!r}, {self.data.nbytes} bytes)")


cdef Packed _new_packed(str kind, tuple shape, Py_ssize_t groups, int isa, Py_ssize_t size):
    _sized(size, f"the packed {kind} operand")
    cdef Packed p = Packed.__new__(Packed)
    import numpy as _np
    p.data = _np.zeros(max(size, 16), dtype=_np.float32)
    p.ptr = <float*>cnp.PyArray_DATA(<cnp.ndarray>p.data)
    p.kind = kind
    p.shape = shape
    p.groups = groups
    p.isa = isa
    return p


cdef inline Packed _packed_arg(object obj, str name, str kind):
    if not isinstance(obj, Packed):
        raise ValueError(f"{name} must be a {kind} Packed operand, got "
                         f"{type(obj).__name__}")
    cdef Packed p = <Packed>obj
    if p.kind != kind:
        raise ValueError(f"{name} must be a {kind} Packed operand, got kind {p.kind!r}")
    return p


cdef inline int _packed_level(Packed p, object isa) except -1:
    """The level a call on packed data runs at: the one it was packed for (an explicit isa
    must agree)."""
    if isa is not None and _isa_arg(isa) != p.isa:
        raise ValueError(f"isa={isa!r} conflicts with the packed operand's level "
                         f"{_ISA_NAMES[p.isa]!r}")
    return p.isa


cdef int _nci(object x, Py_ssize_t* outer, Py_ssize_t* C, Py_ssize_t* inner) except -1:
    """(outer, C, inner) view of an (N, C, ...) array (rank >= 2)."""
    shape = _shape(x)
    if len(shape) < 2:
        raise ValueError(f"x must have rank >= 2 (N, C, ...), got shape {shape}")
    outer[0] = shape[0]
    C[0] = shape[1]
    cdef Py_ssize_t n = 1
    for d in shape[2:]:
        n *= d
    inner[0] = n
    return 0
