# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""GEMM kernels (engine._kernels.gemm): cache-blocked SGEMM with fused bias + activation.

All arrays are float32 and C-contiguous; every size is checked before the GIL is released
and the C kernel (include/engine/ek_gemm.h) runs.
"""

include "_common.pxi"

cdef extern from "engine/ek_gemm.h" nogil:
    Py_ssize_t ek_sgemm_workspace(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int trans_b,
                                  int nthreads)
    void ek_sgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A, Py_ssize_t lda,
                  int trans_a, const float* B, Py_ssize_t ldb, int trans_b, float* C,
                  Py_ssize_t ldc, const float* bias, int bias_mode, int accumulate, int act,
                  float p0, float p1, float* work, int nthreads)
    int EK_GEMM_MR, EK_GEMM_NR, EK_GEMM_MC, EK_GEMM_KC, EK_GEMM_NC

cdef extern from *:
    """
    static const char *ek_build_isa(void) {
    #if defined(__AVX512F__)
        return "avx512f";
    #elif defined(__AVX2__) && defined(__FMA__)
        return "avx2+fma";
    #elif defined(__AVX__)
        return "avx";
    #elif defined(__SSE2__) || defined(_M_X64)
        return "sse2 (x86-64 baseline)";
    #elif defined(__ARM_NEON) || defined(__aarch64__)
        return "neon";
    #else
        return "generic";
    #endif
    }
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
    static long ek_build_openmp_version(void) {
    #ifdef _OPENMP
        return (long)_OPENMP;
    #else
        return 0L;
    #endif
    }
    static int ek_build_omp_max_threads(void) {
    #ifdef _OPENMP
        return omp_get_max_threads();
    #else
        return 1;
    #endif
    }
    """
    const char* ek_build_isa()
    const char* ek_build_compiler()
    long ek_build_openmp_version()
    int ek_build_omp_max_threads()
    int EK_GEMM_VEXT


def build_config():
    """What these kernels were compiled with: OpenMP, instruction set, compiler, GEMM tile."""
    return {
        "openmp": bool(EK_OPENMP),
        "openmp_version": int(ek_build_openmp_version()) or None,
        "omp_max_threads": int(ek_build_omp_max_threads()),
        "isa": ek_build_isa().decode(),
        "compiler": ek_build_compiler().decode(),
        "gemm_tile": f"{EK_GEMM_MR}x{EK_GEMM_NR}"
                     + (" (vector extensions)" if EK_GEMM_VEXT else " (plain C loops)"),
    }


BIAS_NONE = 0
BIAS_ROW = 1
BIAS_COL = 2


def blocking():
    """The compiled register tile and cache blocks: dict(mr, nr, mc, kc, nc)."""
    return dict(mr=EK_GEMM_MR, nr=EK_GEMM_NR, mc=EK_GEMM_MC, kc=EK_GEMM_KC, nc=EK_GEMM_NC)


def gemm_workspace(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, bint trans_b=False,
                   nthreads=1):
    """float32 elements of workspace `sgemm` needs for an M x N x K product."""
    if M < 0 or N < 0 or K < 0:
        raise ValueError(f"sizes must be >= 0, got M={M} N={N} K={K}")
    return ek_sgemm_workspace(M, N, K, trans_b, _threads(nthreads))


def sgemm(a, b, c, bias=None, int bias_mode=0, bint trans_a=False, bint trans_b=False,
          bint accumulate=False, act=0, float p0=0.0, float p1=0.0, work=None, nthreads=1):
    """c = act([c if accumulate] + op(a) @ op(b) + bias), in place in c.

    a: (M, K), or (K, M) with trans_a;  b: (K, N), or (N, K) with trans_b;  c: (M, N).
    bias: None, or (M,) with bias_mode=1 (per row) or (N,) with bias_mode=2 (per column).
    act, p0, p1: fused activation (code table in include/engine/ek_common.h).
    work: 1-D float32 with at least gemm_workspace(M, N, K, trans_b, nthreads) elements.
    """
    cdef int nt = _threads(nthreads)
    cdef int ac = _act(act)
    cdef const float* pa = _fptr(a, "a", -1, 2)
    cdef const float* pb = _fptr(b, "b", -1, 2)
    cdef float* pc = _fptr(c, "c", -1, 2, True)
    sa, sb, sc = _shape(a), _shape(b), _shape(c)
    cdef Py_ssize_t M = sa[1] if trans_a else sa[0]
    cdef Py_ssize_t K = sa[0] if trans_a else sa[1]
    cdef Py_ssize_t Kb = sb[1] if trans_b else sb[0]
    cdef Py_ssize_t N = sb[0] if trans_b else sb[1]
    if Kb != K:
        raise ValueError(f"inner dimensions differ: a gives K={K} (shape {sa}, trans_a="
                         f"{bool(trans_a)}), b gives K={Kb} (shape {sb}, trans_b={bool(trans_b)})")
    if sc[0] != M or sc[1] != N:
        raise ValueError(f"c must have shape ({M}, {N}), got {sc}")
    cdef const float* pbias = NULL
    if bias is not None:
        if bias_mode == 1:
            pbias = _fptr(bias, "bias", M)
        elif bias_mode == 2:
            pbias = _fptr(bias, "bias", N)
        else:
            raise ValueError(f"bias_mode must be 1 (per row) or 2 (per column) when a bias "
                             f"is given, got {bias_mode}")
    else:
        bias_mode = 0
    cdef Py_ssize_t nc = M * N
    _disjoint(pc, nc, pa, _size(a), "c", "a")
    _disjoint(pc, nc, pb, _size(b), "c", "b")
    if pbias != NULL:
        _disjoint(pc, nc, pbias, _size(bias), "c", "bias")
    cdef float* pw = _work(work, ek_sgemm_workspace(M, N, K, trans_b, nt))
    if pw != NULL:
        _disjoint(pw, _size(work), pc, nc, "work", "c")
    cdef Py_ssize_t lda = sa[1], ldb = sb[1]
    with nogil:
        ek_sgemm(M, N, K, pa, lda, trans_a, pb, ldb, trans_b, pc, N, pbias, bias_mode,
                 accumulate, ac, p0, p1, pw, nt)


def matmul_batched(a, b, c, a_index, b_index, work=None, nthreads=1):
    """c[i] = a[a_index[i]] @ b[b_index[i]] for every i (broadcast batches by index).

    a: (Ba, M, K), b: (Bb, K, N), c: (B, M, N); a_index, b_index: intp arrays of B entries
    in [0, Ba) and [0, Bb).  work: gemm_workspace(M, N, K, False, nthreads) elements.
    """
    cdef int nt = _threads(nthreads)
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
    cdef float* pw = _work(work, ek_sgemm_workspace(M, N, K, 0, nt))
    if pw != NULL:
        _disjoint(pw, _size(work), pc, nc, "work", "c")
    cdef Py_ssize_t i
    with nogil:
        for i in range(B):
            ek_sgemm(M, N, K, pa + ia[i] * M * K, K, 0, pb + ib[i] * K * N, N, 0,
                     pc + i * M * N, N, NULL, 0, 0, 0, 0.0, 0.0, pw, nt)
