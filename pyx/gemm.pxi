# GEMM kernels: packed, cache-blocked SGEMM with a fused epilogue
# (bias, residual, activation), operands optionally pre-packed once (``pack_a`` / ``pack_b``).
#
# All arrays are float32 and C-contiguous; every size is checked before the GIL is released
# and the C kernel (include/engine/ek_gemm.h) runs.  ``isa`` arguments select the
# instruction-set level explicitly (None: the default level); a Packed operand
# carries its own level.

from libc.string cimport memset

cdef extern from *:
    """
    #define ek_gemm_workspace_at(isa, M, N, K, ap, bm, nt) \\
        EK_ISA_SEL(isa, ek_gemm_workspace)(M, N, K, ap, bm, nt)
    #define ek_gemm_pack_a_size_at(isa, M, K) EK_ISA_SEL(isa, ek_gemm_pack_a_size)(M, K)
    #define ek_gemm_pack_b_size_at(isa, K, N) EK_ISA_SEL(isa, ek_gemm_pack_b_size)(K, N)
    #define ek_gemm_pack_a_at(isa, M, K, A, lda, t, buf) \\
        EK_ISA_SEL(isa, ek_gemm_pack_a)(M, K, A, lda, t, buf)
    #define ek_gemm_pack_b_at(isa, K, N, B, ldb, t, buf) \\
        EK_ISA_SEL(isa, ek_gemm_pack_b)(K, N, B, ldb, t, buf)
    #define ek_gemm_blocking_at(isa, out) EK_ISA_SEL(isa, ek_gemm_blocking)(out)
    #define ek_gemm_kind_at(isa) EK_ISA_SEL(isa, ek_gemm_kind)()
    #define ek_fma_peak_at(isa, seconds, nt) EK_ISA_SEL(isa, ek_fma_peak)(seconds, nt)
    static const char *ek_build_compiler(void) {
    #if defined(__clang__)
        return "clang " __clang_version__;
    #elif defined(__GNUC__)
        return "gcc " __VERSION__;
    #elif defined(_MSC_VER)
        return "msvc";
    #else
        return "unknown";
    #endif
    }
    """
    Py_ssize_t ek_gemm_workspace_at(int isa, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                                    int a_packed, int b_mode, int nthreads)
    Py_ssize_t ek_gemm_pack_a_size_at(int isa, Py_ssize_t M, Py_ssize_t K)
    Py_ssize_t ek_gemm_pack_b_size_at(int isa, Py_ssize_t K, Py_ssize_t N)
    void ek_gemm_pack_a_at(int isa, Py_ssize_t M, Py_ssize_t K, const float* A,
                           Py_ssize_t lda, int trans, float* buf) nogil
    void ek_gemm_pack_b_at(int isa, Py_ssize_t K, Py_ssize_t N, const float* B,
                           Py_ssize_t ldb, int trans, float* buf) nogil
    void ek_gemm_blocking_at(int isa, Py_ssize_t* out)
    const char* ek_gemm_kind_at(int isa)
    double ek_fma_peak_at(int isa, double seconds, int nthreads) nogil
    const char* ek_build_compiler()

BIAS_NONE = 0
BIAS_ROW = 1
BIAS_COL = 2


def build_config():
    """What these kernels were compiled with, and the CPU they run on."""
    cdef int lv = ek_isa_cur
    return {
        "threads": threads_backend() if threads_enabled() else "none",
        "isa": _ISA_NAMES[lv],
        "isa_compiled": list(_ISA_NAMES[:EK_ISA_COMPILED_MAX + 1]),
        "isa_cpu": _ISA_NAMES[ek_cpu_best_isa()],
        "compiler": ek_build_compiler().decode(),
        "gemm_tile": blocking()["tile"],
        "cache_l1d_kib": int(ek_gemm_l1_bytes) // 1024,
        "cache_l2_kib": int(ek_gemm_l2_bytes) // 1024,
    }


def fma_peak(double seconds=0.2, nthreads=1, isa=None):
    """This machine's measured floating-point peak at a level, in FLOP/s: `nthreads`
    threads together, each running independent register-only multiply-add chains for about
    `seconds` (include/engine/ek_peak.h).  The yardstick of GEMM efficiency figures."""
    cdef int lv = _isa_arg(isa)
    cdef int nt = _threads(nthreads)
    cdef double r
    if not 1e-3 <= seconds <= 10.0:
        raise ValueError(f"seconds must be in [0.001, 10], got {seconds}")
    if nt > 256:
        raise ValueError(f"nthreads must be <= 256 for a peak measurement, got {nt}")
    with nogil:
        r = ek_fma_peak_at(lv, seconds, nt)
    return r


def blocking(isa=None):
    """Register tile and cache-block bounds of a level: dict(mr, nr, kc, mc, nc, tile)."""
    cdef int lv = _isa_arg(isa)
    cdef Py_ssize_t out[5]
    ek_gemm_blocking_at(lv, out)
    return dict(mr=out[0], nr=out[1], kc=out[2], mc=out[3], nc=out[4],
                tile=f"{out[0]}x{out[1]} ({ek_gemm_kind_at(lv).decode()})")


def gemm_workspace(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, bint trans_b=False,
                   nthreads=1, bint a_packed=False, bint b_packed=False, isa=None):
    """float32 elements of workspace `sgemm` needs for an M x N x K product."""
    if M < 0 or N < 0 or K < 0:
        raise ValueError(f"sizes must be >= 0, got M={M} N={N} K={K}")
    return _sized(ek_gemm_workspace_at(_isa_arg(isa), M, N, K, a_packed,
                                       EK_GEMM_B_PACKED if b_packed else EK_GEMM_B_MATRIX,
                                       _threads(nthreads)), "the GEMM workspace")


def pack_a(a, bint trans_a=False, isa=None):
    """Pack op(a) (M x K; a is (K, M) with trans_a) once for the GEMM's A operand."""
    return _pack(a, "a", False, trans_a, isa)


def pack_b(b, bint trans_b=False, isa=None):
    """Pack op(b) (K x N; b is (N, K) with trans_b, e.g. a linear layer's weight) once for
    the GEMM's B operand."""
    return _pack(b, "b", True, trans_b, isa)


cdef Packed _pack(object arr, str name, bint is_b, bint trans, object isa):
    cdef int lv = _isa_arg(isa)
    cdef const float* ptr
    cdef Py_ssize_t rows, cols, ld
    cdef int packed, tr
    _operand(arr, None, name, trans, &ptr, &rows, &cols, &ld, &packed, &tr)
    cdef Packed p = _new_packed("gemm_b" if is_b else "gemm_a", (rows, cols), 1, lv,
                                ek_gemm_pack_b_size_at(lv, rows, cols) if is_b
                                else ek_gemm_pack_a_size_at(lv, rows, cols))
    with nogil:
        if is_b:
            ek_gemm_pack_b_at(lv, rows, cols, ptr, ld, trans, p.ptr)
        else:
            ek_gemm_pack_a_at(lv, rows, cols, ptr, ld, trans, p.ptr)
    return p


cdef int _operand(object arr, Packed pk, str name, bint trans, const float** ptr,
                  Py_ssize_t* rows, Py_ssize_t* cols, Py_ssize_t* ld, int* packed,
                  int* transposed) except -1:
    """One GEMM operand op(arr) (rows x cols; arr is (cols, rows) with trans), or the
    Packed pk: its pointer, sizes, leading dimension and flags."""
    if pk is not None:
        rows[0], cols[0] = pk.shape
        ptr[0] = pk.ptr
        packed[0] = 1
        return 0
    ptr[0] = _fptr(arr, name, -1, 2)
    s = _shape(arr)
    rows[0], cols[0] = (s[1], s[0]) if trans else (s[0], s[1])
    ld[0] = s[1]
    transposed[0] = trans
    return 0


def sgemm(a, b, c, bias=None, int bias_mode=0, bint trans_a=False, bint trans_b=False,
          bint accumulate=False, act=0, float p0=0.0, float p1=0.0, work=None, nthreads=1,
          residual=None, isa=None, bint bind=False):
    """c = act([c if accumulate] + op(a) @ op(b) + bias + residual), in place in c.

    a: (M, K), or (K, M) with trans_a, or a Packed from pack_a;  b: (K, N), or (N, K) with
    trans_b, or a Packed from pack_b;  c: (M, N).
    bias: None, or (M,) with bias_mode=1 (per row) or (N,) with bias_mode=2 (per column).
    residual: None or (M, N), added before the activation (must not overlap c).
    act, p0, p1: fused activation (code table in include/engine/ek_common.h).
    work: 1-D float32 with at least gemm_workspace(M, N, K, trans_b, nthreads, a_packed,
    b_packed, isa) elements.  isa: level (None: current; a Packed operand fixes it).
    """
    cdef ek_sgemm_call args
    memset(&args, 0, sizeof(args))
    cdef ek_gemm_args* g = &args.g
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    cdef int lv
    cdef Packed pka = None
    cdef Packed pkb = None
    if isinstance(a, Packed):
        pka = _packed_arg(a, "a", "gemm_a")
    if isinstance(b, Packed):
        pkb = _packed_arg(b, "b", "gemm_b")
    if pka is not None and pkb is not None and pka.isa != pkb.isa:
        raise ValueError(f"a and b were packed for different instruction sets "
                         f"({pka.isa_name}, {pkb.isa_name})")
    if pka is not None or pkb is not None:
        lv = _packed_level(pka if pka is not None else pkb, isa)
    else:
        lv = _isa_arg(isa)
    cdef Py_ssize_t M, K, Kb, N
    _operand(a, pka, "a", trans_a, &g.A, &M, &K, &g.lda, &g.a_packed, &g.trans_a)
    _operand(b, pkb, "b", trans_b, &g.B, &Kb, &N, &g.ldb, &g.b_packed, &g.trans_b)
    if Kb != K:
        raise ValueError(f"inner dimensions differ: a gives K={K}, b gives K={Kb} "
                         f"(trans_a={bool(trans_a)}, trans_b={bool(trans_b)})")
    g.C = _fptr(c, "c", -1, 2, True)
    sc = _shape(c)
    if sc[0] != M or sc[1] != N:
        raise ValueError(f"c must have shape ({M}, {N}), got {sc}")
    cdef Py_ssize_t nc = M * N
    if bias is not None:
        if bias_mode == 1:
            g.bias = _fptr(bias, "bias", M)
        elif bias_mode == 2:
            g.bias = _fptr(bias, "bias", N)
        else:
            raise ValueError(f"bias_mode must be 1 (per row) or 2 (per column) when a bias "
                             f"is given, got {bias_mode}")
        g.bias_mode = bias_mode
        _disjoint(g.C, nc, g.bias, _size(bias), "c", "bias")
    if residual is not None:
        g.R = _fptr(residual, "residual", nc, 2)
        if _shape(residual)[0] != M:
            raise ValueError(f"residual must have shape ({M}, {N}), got {_shape(residual)}")
        g.ldr = N
        _disjoint(g.C, nc, g.R, nc, "c", "residual")
    _disjoint(g.C, nc, g.A, _size(a) if pka is None else _size(pka.data), "c", "a")
    _disjoint(g.C, nc, g.B, _size(b) if pkb is None else _size(pkb.data), "c", "b")
    cdef float* pw = _work(work, ek_gemm_workspace_at(
        lv, M, N, K, g.a_packed, EK_GEMM_B_PACKED if g.b_packed else EK_GEMM_B_MATRIX, nt))
    if pw != NULL:
        _disjoint(pw, _size(work), g.C, nc, "work", "c")
    g.M, g.N, g.K = M, N, K
    g.ldc = N
    g.accumulate = accumulate
    g.act, g.p0, g.p1 = ac, p0, p1
    args.work, args.nt = pw, nt
    return _call(ek_sgemm_at[lv], &args, sizeof(args), bind)


def matmul_batched(a, b, c, a_index, b_index, work=None, nthreads=1, isa=None, bint bind=False):
    """c[i] = a[a_index[i]] @ b[b_index[i]] for every i (broadcast batches by index).

    a: (Ba, M, K), b: (Bb, K, N), c: (B, M, N); a_index, b_index: intp arrays of B entries
    in [0, Ba) and [0, Bb).  work: gemm_workspace(M, N, K, False, nthreads, isa=isa).
    """
    cdef ek_sgemm_call args
    memset(&args, 0, sizeof(args))
    cdef int nt = _threads(nthreads)
    cdef int lv = _isa_arg(isa)
    cdef const float* pa = _fptr(a, "a", -1, 3)
    cdef const float* pb = _fptr(b, "b", -1, 3)
    cdef float* pc = _fptr(c, "c", -1, 3, True)
    sa, sb, sc = _shape(a), _shape(b), _shape(c)
    cdef Py_ssize_t M = sa[1], K = sa[2], N = sb[2], B = sc[0]
    if sb[1] != K:
        raise ValueError(f"b must have shape (Bb, {K}, N) to match a {sa}, got {sb}")
    if sc[1] != M or sc[2] != N:
        raise ValueError(f"c must have shape (B, {M}, {N}), got {sc}")
    cdef Py_ssize_t* ia = _iptr(a_index, "a_index", B, 0, sa[0])
    cdef Py_ssize_t* ib = _iptr(b_index, "b_index", B, 0, sb[0])
    cdef Py_ssize_t nc = _size(c)
    _disjoint(pc, nc, pa, _size(a), "c", "a")
    _disjoint(pc, nc, pb, _size(b), "c", "b")
    cdef float* pw = _work(work, ek_gemm_workspace_at(lv, M, N, K, 0, EK_GEMM_B_MATRIX, nt))
    if pw != NULL:
        _disjoint(pw, _size(work), pc, nc, "work", "c")
    args.g.M, args.g.N, args.g.K = M, N, K
    args.g.lda, args.g.ldb, args.g.ldc = K, N, N
    args.pa, args.pb, args.pc, args.ia, args.ib, args.batch = pa, pb, pc, ia, ib, B
    args.work, args.nt = pw, nt
    return _call(ek_sgemm_at[lv], &args, sizeof(args), bind)
