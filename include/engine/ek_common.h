/*
 * ek_common.h - shared definitions of the engine's C kernels (portable C99).
 *
 * Multi-compilation ("ISA variants")
 * ----------------------------------
 * Every kernel is a `static` function named through EK_FN(name), which appends the
 * suffix EK_SUFFIX (empty by default).  A translation unit may therefore include the
 * kernel headers several times, once per instruction-set variant: ek_dispatch.h does so
 * for the extension module (suffixes _scalar, _avx2, _avx512 with EK_ISA_LEVEL 0 / 1 / 2;
 * each variant compiled under its target options by ek_variant.h) and fills the dispatch
 * tables name_at[level] (ek_bind.h) the bindings call through.  The part of this header
 * below "ISA-independent" is guarded once per translation unit; every other kernel header
 * is guarded by an EK_*_ISA macro that ek_reset.h undefines.
 *
 * Per-ISA code lives in files named by type, op and instruction set, f32/<op>_<isa>.h
 * (isa: avx512, avx2, neon, scalar), picked by the one ladder of the library,
 * EK_ISA_FILE(type, op) below; f32/vec_<isa>.h holds the vector primitives several ops
 * share (the x86 lane layer EKX, the NEON partial loads and activations).  The op headers
 * test what a tile file provides (EKX, EKX_AVX512, EK_DWX, EK_GEMM_DIRECT_B, ...), never a
 * level.

 * There is no global state: every function takes its sizes, pointers, a workspace (when
 * it needs one) and `nthreads`.  Kernels never validate their arguments: the callers
 * (the Cython layer in pyx/) check every size and pointer the preconditions name, and
 * every window geometry with ek_geom3_check.  Size functions (workspaces, packed
 * operands) compute with checked arithmetic and return -1 instead of a wrapped size (see
 * "checked size arithmetic" below).
 *
 * Sizes and strides are ptrdiff_t (element counts, never bytes).
 */

/* ------------------------------------------------------------------ ISA-independent -- */
#ifndef EK_COMMON_H
#define EK_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <float.h>

#include "ek_threadpool.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>
#endif

/* ARM NEON (aarch64, where it is always present): the baseline variant there uses NEON
   intrinsics in the hot loops (GEMM micro-kernel, depthwise conv, max/min pooling, the
   activation epilogues); -DEK_NO_NEON builds the portable code instead (for comparison). */
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(EK_NO_NEON)
#define EK_NEON 1
#include <arm_neon.h>
#else
#define EK_NEON 0
#endif

#if defined(__cplusplus)
#define EK_RESTRICT __restrict
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
#define EK_RESTRICT restrict
#elif defined(__GNUC__) || defined(_MSC_VER)
#define EK_RESTRICT __restrict
#else
#define EK_RESTRICT
#endif

#if defined(__GNUC__)
#define EK_INLINE static inline __attribute__((always_inline))
#define EK_UNUSED __attribute__((unused))
#define EK_NOINLINE __attribute__((noinline, unused))
#else
#define EK_INLINE static inline
#define EK_UNUSED
#define EK_NOINLINE
#endif

/* Every kernel is file-local (static); unused ones draw no warnings. */
#define EK_API static EK_UNUSED

/* Name mangling for ISA variants: EK_FN(ek_sgemm) -> ek_sgemm<EK_SUFFIX>. */
#define EK_CAT2_(a, b) a##b
#define EK_CAT_(a, b) EK_CAT2_(a, b)
#define EK_FN(name) EK_CAT_(name, EK_SUFFIX)

/* Fused activation codes (the `act` argument of every kernel with an epilogue). */
enum ek_act_code {
    EK_ACT_NONE = 0,
    EK_ACT_RELU = 1,
    EK_ACT_RELU6 = 2,
    EK_ACT_LEAKY_RELU = 3,  /* p0 = negative slope */
    EK_ACT_CLIP = 4,        /* p0 = min, p1 = max (-INFINITY / INFINITY when absent) */
    EK_ACT_SIGMOID = 5,
    EK_ACT_TANH = 6,
    EK_ACT_SILU = 7,
    EK_ACT_HARDSWISH = 8,
    EK_ACT_HARDSIGMOID = 9,
    EK_ACT_GELU = 10,       /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    EK_ACT_GELU_TANH = 11,  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    EK_ACT_ELU = 12,        /* x > 0 ? x : p0 (exp(x) - 1); p0 = alpha */
    EK_ACT_SELU = 13,       /* scale elu(x, alpha), torch's constants */
    EK_ACT_SOFTPLUS = 14,   /* log(1 + exp(p0 x)) / p0, x where p0 x > p1 (beta, threshold) */
    EK_ACT_MISH = 15,       /* x tanh(softplus(x)) */
    EK_ACT_COUNT = 16
};

/* Pooling modes. */
enum ek_pool_mode { EK_POOL_MAX = 0, EK_POOL_MIN = 1, EK_POOL_AVG = 2 };

/* Binary elementwise ops. */
/* max / min propagate NaN from either operand (as torch.maximum and ONNX Max) */
enum ek_binop {
    EK_BIN_ADD = 0,
    EK_BIN_SUB = 1,
    EK_BIN_MUL = 2,
    EK_BIN_DIV = 3,
    EK_BIN_MAX = 4,
    EK_BIN_MIN = 5
};

/* Pad modes. */
enum ek_pad_mode { EK_PAD_CONSTANT = 0, EK_PAD_REFLECT = 1, EK_PAD_REPLICATE = 2 };

/* Bias modes of the GEMM epilogue. */
enum ek_bias_mode { EK_BIAS_NONE = 0, EK_BIAS_ROW = 1, EK_BIAS_COL = 2 };

/* Geometry of a convolution over 3 spatial dims (input D,H,W -> output OD,OH,OW). */
typedef struct {
    ptrdiff_t D, H, W;        /* input spatial sizes */
    ptrdiff_t KD, KH, KW;     /* kernel sizes */
    ptrdiff_t OD, OH, OW;     /* output spatial sizes */
    ptrdiff_t sd, sh, sw;     /* strides (>= 1) */
    ptrdiff_t pd, ph, pw;     /* padding at the beginning of each dim (>= 0 for conv) */
    ptrdiff_t dd, dh, dw;     /* dilations (>= 1) */
} ek_geom3;

#define EK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Rounded up to a multiple of 16 floats (64 bytes). */
#define EK_ROUND16(n) ((((ptrdiff_t)(n)) + 15) & ~(ptrdiff_t)15)

/* Pointer rounded up to a 64-byte boundary (workspaces reserve 16 extra floats). */
static inline float *ek_align64(float *p)
{
    uintptr_t u = (uintptr_t)p;
    return (float *)((u + 63u) & ~(uintptr_t)63u);
}

/* Most threads a call asks for (engine.limits.MAX_THREADS refuses more). */
#define EK_NTHREADS_MAX 1024

/* Number of threads to use for `work` independent items: min(nthreads, work), >= 1. */
static inline int ek_nthreads(int nthreads, ptrdiff_t work)
{
    if (nthreads < 1) nthreads = 1;
    if (work < (ptrdiff_t)nthreads) nthreads = work < 1 ? 1 : (int)work;
    return nthreads;
}

/* Product of the first ndim - 1 dims: the rows of an N-d loop over its last dim. */
static inline ptrdiff_t ek_lead_rows(int ndim, const ptrdiff_t *shape)
{
    ptrdiff_t rows = 1;
    int d;
    for (d = 0; d < ndim - 1; d++) rows *= shape[d];
    return rows;
}

/* Tiles per thread of a grid of equal items: more than one, so that a thread slowed down
   (another process on its core) hands its share to the others. */
#define EK_TILES_PER_THREAD 4

/* Tiles to cut `items` equal items into for `threads` threads (1 when threads == 1). */
static inline ptrdiff_t ek_tile_count(int threads, ptrdiff_t items)
{
    const ptrdiff_t want = threads <= 1 ? 1 : (ptrdiff_t)threads * EK_TILES_PER_THREAD;
    return items < want ? (items < 1 ? 1 : items) : want;
}

/* Items [*i0, *i1) of tile t when `items` items are cut into `ntiles` tiles. */
static inline void ek_tile_span(ptrdiff_t t, ptrdiff_t ntiles, ptrdiff_t items, ptrdiff_t *i0,
                                ptrdiff_t *i1)
{
    *i0 = items / ntiles * t + EK_MIN(t, items % ntiles);
    *i1 = *i0 + items / ntiles + (t < items % ntiles);
}

/* A grid over `items` equal items (rows, channels, planes): rows(args, i0, i1) computes
   items [i0, i1); ek_parallel_rows cuts them into ek_tile_count tiles. */
typedef void (*ek_rows_fn)(const void *args, ptrdiff_t i0, ptrdiff_t i1);

typedef struct {
    ek_rows_fn rows;
    const void *args;
    ptrdiff_t items, ntiles;
} ek_rows_grid;

static void ek_rows_tile(void *ctx, ptrdiff_t t, int worker)
{
    const ek_rows_grid *g = (const ek_rows_grid *)ctx;
    ptrdiff_t i0, i1;
    (void)worker;
    ek_tile_span(t, g->ntiles, g->items, &i0, &i1);
    g->rows(g->args, i0, i1);
}

static inline void ek_parallel_rows(int threads, ptrdiff_t items, ek_rows_fn rows,
                                    const void *args)
{
    ek_rows_grid g;
    if (items <= 0) return;
    g.rows = rows;
    g.args = args;
    g.items = items;
    g.ntiles = ek_tile_count(threads, items);
    if (g.ntiles <= 1) {
        rows(args, 0, items);
        return;
    }
    ek_parallelize(threads, g.ntiles, ek_rows_tile, &g);
}

/* ------------------------------------------------------- checked size arithmetic -- */
/*
 * The kernels' second line of defence against hostile geometry (the first is the Python
 * layer, engine/limits.py).  Every size a function hands back or allocates (workspaces,
 * packed operands, padded copies) is computed with these helpers: a size is a count of
 * floats in [0, EK_SIZE_MAX], and -1 stands for "overflows or is above EK_SIZE_MAX"; -1
 * propagates through ek_szmul / ek_szadd, so a chain of them needs one test at the end.
 * The callers (pyx/) turn -1 into ValueError.
 */

/* Largest extent of one dim (a size, stride, dilation, pad, and the spans derived from
   them): 2^31 - 1, so that a sum of a few products of two of them fits in 64 bits. */
#define EK_DIM_MAX ((ptrdiff_t)2147483647)

/* Largest element count a size function returns: 2^40 floats (4 TiB, above any machine
   this runs on); keeps count * sizeof(float) and sums of a few counts far from wrapping. */
#define EK_SIZE_MAX ((ptrdiff_t)1 << 40)

#if defined(__has_builtin)
#if __has_builtin(__builtin_mul_overflow)
#define EK_HAVE_MUL_OVERFLOW 1
#endif
#endif
#if !defined(EK_HAVE_MUL_OVERFLOW) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 5
#define EK_HAVE_MUL_OVERFLOW 1
#endif

/* *r = a * b; returns 1 (and leaves *r unspecified) when the product overflows ptrdiff_t. */
static inline int ek_mul_overflow(ptrdiff_t a, ptrdiff_t b, ptrdiff_t *r)
{
#ifdef EK_HAVE_MUL_OVERFLOW
    return __builtin_mul_overflow(a, b, r);
#else
    if (a > 0) {
        if (b > 0 ? a > PTRDIFF_MAX / b : b < PTRDIFF_MIN / a) return 1;
    } else if (a < 0) {
        if (b > 0 ? a < PTRDIFF_MIN / b : b < PTRDIFF_MAX / a) return 1;
    }
    *r = a * b;
    return 0;
#endif
}

/* a * b for sizes: -1 when either is negative (-1: an earlier overflow), the product
   overflows or exceeds EK_SIZE_MAX. */
static inline ptrdiff_t ek_szmul(ptrdiff_t a, ptrdiff_t b)
{
    ptrdiff_t r;
    if (a < 0 || b < 0 || ek_mul_overflow(a, b, &r) || r > EK_SIZE_MAX) return -1;
    return r;
}

/* a + b for sizes, as ek_szmul. */
static inline ptrdiff_t ek_szadd(ptrdiff_t a, ptrdiff_t b)
{
    if (a < 0 || b < 0 || a > EK_SIZE_MAX - b) return -1;
    return a + b;
}

/* n rounded up to a multiple of 16 for sizes (-1 stays -1). */
static inline ptrdiff_t ek_szround16(ptrdiff_t n)
{
    return n < 0 || n > EK_SIZE_MAX ? -1 : EK_ROUND16(n);
}

/* a * b for work estimates (thread counts): saturates at PTRDIFF_MAX; a, b >= 0. */
static inline ptrdiff_t ek_mul_sat(ptrdiff_t a, ptrdiff_t b)
{
    ptrdiff_t r;
    return ek_mul_overflow(a, b, &r) ? PTRDIFF_MAX : r;
}

/* Span of one dim of a window geometry: (n_out - 1) * s + (k - 1) * d + 1, or -1 when it
   overflows or exceeds EK_DIM_MAX (arguments in [1, EK_DIM_MAX]). */
static inline ptrdiff_t ek_span(ptrdiff_t n_out, ptrdiff_t s, ptrdiff_t k, ptrdiff_t d)
{
    /* each product <= 2^62: no overflow in 64 bits; the sum is checked */
    const ptrdiff_t a = (n_out - 1) * s, b = (k - 1) * d;
    if (a > EK_DIM_MAX || b > EK_DIM_MAX - 1 - a) return -1;
    return a + b + 1;
}

/*
 * 0 when the kernels can index with g without wrapping, -1 otherwise: per dim the input
 * size, kernel size, output size, stride and dilation in [1, EK_DIM_MAX], the padding at
 * the beginning (and at the end, pad_end: 3 values or NULL) in [0, EK_DIM_MAX], and the
 * derived extents - the window span (O - 1) s + (K - 1) d + 1 and the padded input
 * p_begin + I (+ p_end) - at most EK_DIM_MAX.  Then every position o s - p + k d of the
 * kernels lies in (-2^32, 2^33) and a product of it with one more dim fits in 64 bits.
 * A transposed convolution is checked on its col2im view (input and output swapped).
 */
static inline int ek_geom3_check(const ek_geom3 *g, const ptrdiff_t *pad_end)
{
    const ptrdiff_t in[3] = {g->D, g->H, g->W}, k[3] = {g->KD, g->KH, g->KW};
    const ptrdiff_t out[3] = {g->OD, g->OH, g->OW}, s[3] = {g->sd, g->sh, g->sw};
    const ptrdiff_t p[3] = {g->pd, g->ph, g->pw}, d[3] = {g->dd, g->dh, g->dw};
    int i;
    for (i = 0; i < 3; i++) {
        const ptrdiff_t pe = pad_end ? pad_end[i] : 0;
        if (in[i] < 1 || in[i] > EK_DIM_MAX || k[i] < 1 || k[i] > EK_DIM_MAX ||
            out[i] < 1 || out[i] > EK_DIM_MAX || s[i] < 1 || s[i] > EK_DIM_MAX ||
            d[i] < 1 || d[i] > EK_DIM_MAX || p[i] < 0 || p[i] > EK_DIM_MAX || pe < 0 ||
            pe > EK_DIM_MAX)
            return -1;
        if (ek_span(out[i], s[i], k[i], d[i]) < 0) return -1;
        if (p[i] + in[i] + pe > EK_DIM_MAX) return -1;    /* each <= 2^31: no wrap */
    }
    return 0;
}

/* Work below which kernels do not start a parallel region (elements touched). */
#ifndef EK_PAR_MIN_WORK
#define EK_PAR_MIN_WORK 32768
#endif

/* Threads for an elementwise-style loop of `elems` elements split over `items` items. */
static inline int ek_nthreads_work(int nthreads, ptrdiff_t items, ptrdiff_t elems)
{
    if (elems < EK_PAR_MIN_WORK) return 1;
    return ek_nthreads(nthreads, items);
}

#endif /* EK_COMMON_H */

/* --------------------------------------------------------------- per ISA variant -- */
#ifndef EK_SUFFIX
#define EK_SUFFIX
#endif

/* Instruction-set level of this variant (0 baseline, 1 AVX2+FMA, 2 AVX-512; see ek_cpu.h):
   set by ek_dispatch.h for each variant, else derived from the compiler's target macros. */
/* GNU vector extensions (gcc, clang): portable code may use explicit vector types. */
#if defined(__GNUC__) && !defined(EK_NO_VECTOR_EXT)
#define EK_VEXT 1
#else
#define EK_VEXT 0
#endif

#ifndef EK_ISA_LEVEL
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__) && defined(__FMA__)
#define EK_ISA_LEVEL 2
#elif defined(__AVX2__) && defined(__FMA__)
#define EK_ISA_LEVEL 1
#else
#define EK_ISA_LEVEL 0
#endif
#endif

#ifndef EK_COMMON_ISA
#define EK_COMMON_ISA

/* The one instruction-set ladder of the library: an op header includes the tile file of the
   variant being compiled with `#include EK_ISA_FILE(type, op)`, e.g. f32/gemm_avx512.h
   (types: f32 today; q8, bf16 next).  Every ISA an op specialises has its file. */
#define EK_STR_(x) #x
#define EK_STR(x) EK_STR_(x)
/* EK_VW: float lanes of one vector register of the variant. */
#if EK_ISA_LEVEL >= 2
#define EK_ISA_FILE(type, op) EK_STR(type/op##_avx512.h)
#define EK_VW 16
#elif EK_ISA_LEVEL == 1
#define EK_ISA_FILE(type, op) EK_STR(type/op##_avx2.h)
#define EK_VW 8
#elif EK_NEON
#define EK_ISA_FILE(type, op) EK_STR(type/op##_neon.h)
#define EK_VW 4
#else
#define EK_ISA_FILE(type, op) EK_STR(type/op##_scalar.h)
#define EK_VW 4
#endif

/*
 * Branch-free single-precision exp (Cephes polynomial, <= 1.4 ulp measured), written so that
 * gcc vectorises loops calling it (the selects if-convert with -fno-trapping-math).
 * NaN -> NaN, x > 88.72 -> +inf, x < -103.98 -> 0; denormal results are scaled correctly.
 */
#define EK_EXP_P5 1.9875691500E-4f         /* the leading coefficient */
#define EK_EXP_P(p, r, fma)                                                                 \
    do {                                                                                    \
        p = fma(p, r, 1.3981999507E-3f); p = fma(p, r, 8.3334519073E-3f);                   \
        p = fma(p, r, 4.1665795894E-2f); p = fma(p, r, 1.6666665459E-1f);                   \
        p = fma(p, r, 5.0000001201E-1f);                                                    \
    } while (0)
#define EK_FMA1(a, b, c) ((a) * (b) + (c))

EK_INLINE float EK_FN(ek_expf)(float x)
{
    union { float f; int32_t i; } s1, s2;
    float xc, n, r, p, res;
    int32_t ni, n1, n2;
    xc = x > -104.0f ? x : -104.0f;          /* also maps NaN to -104 (fixed below) */
    xc = xc < 89.0f ? xc : 89.0f;
    /* n = round(x / ln 2) with the 1.5 * 2^23 trick (IEEE round-to-nearest) */
    n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    p = EK_EXP_P5;
    EK_EXP_P(p, r, EK_FMA1);
    p = p * r * r + r + 1.0f;
    ni = (int32_t)n;                          /* in [-150, 129] */
    n1 = ni >> 1;
    n2 = ni - n1;
    s1.i = (n1 + 127) << 23;
    s2.i = (n2 + 127) << 23;
    res = p * s1.f * s2.f;
    res = x > 88.72283935546875f ? INFINITY : res;
    return x != x ? x : res;
}

/* tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), else 1 - 2 / (exp(2|x|) + 1). */
EK_INLINE float EK_FN(ek_tanhf)(float x)
{
    const float ax = x < 0.0f ? -x : x;
    const float z = x * x;
    float small = -5.70498872745E-3f;
    float e, big;
    small = small * z + 2.06390887954E-2f;
    small = small * z - 5.37397155531E-2f;
    small = small * z + 1.33314422036E-1f;
    small = small * z - 3.33332819422E-1f;
    small = small * z * x + x;
    e = EK_FN(ek_expf)(2.0f * (ax < 10.0f ? ax : 10.0f));   /* tanh(10) rounds to 1 */
    big = 1.0f - 2.0f / (e + 1.0f);
    big = x < 0.0f ? -big : big;
    small = x == 0.0f ? x : small;           /* keep the sign of zero */
    return ax < 0.625f ? small : (x != x ? x : big);
}

/*
 * The standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2, branch-free so that loops calling
 * it vectorise (exact GELU is x Phi(x)).  With z = |x| / sqrt 2 and t = 1 / (1 + z / 2),
 * erfc(z) = t exp(-z^2 + P(t)): P is our degree-9 least-squares fit (refined to minimax) of
 * log(erfc(z) / t) + z^2 over z in [0, 10], max error 5e-8.  The tail x < 0 comes from
 * erfc itself, not from 1 - erf (whose cancellation costs float32 all its digits there).
 * Measured in float32 against float64: |x Phi(x) - ref| <= 1.1e-7 max(1, |x|); NaN -> NaN.
 */
#define EK_NORMCDF_P(p, t, fma)                                                             \
    do {                                                                                    \
        p = fma(p, t, -6.664496660e-01f); p = fma(p, t, 1.123228073e+00f);                  \
        p = fma(p, t, -6.522367001e-01f); p = fma(p, t, -1.160655469e-01f);                 \
        p = fma(p, t, 1.986412518e-02f); p = fma(p, t, 2.845211513e-02f);                   \
        p = fma(p, t, 3.878836036e-01f); p = fma(p, t, 9.984939694e-01f);                   \
        p = fma(p, t, -1.265441537e+00f);                                                   \
    } while (0)
#define EK_NORMCDF_P9 1.422715336e-01f    /* the leading coefficient */

EK_INLINE float EK_FN(ek_normcdf)(float x)
{
    const float z = (x < 0.0f ? -x : x) * 0.70710678118654752440f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = EK_NORMCDF_P9;
    float q;
    EK_NORMCDF_P(p, t, EK_FMA1);
    q = 0.5f * t * EK_FN(ek_expf)(p - z * z);
    return x < 0.0f ? q : 1.0f - q;
}

/* c[0] + x (c[1] + x (c[2] + ...)), n >= 1 coefficients lowest first (Horner's rule).
   Inlined with constant c and n it unrolls into the caller's vectorised loop. */
EK_INLINE float EK_FN(ek_horner)(float x, const float *c, int n)
{
    float p = c[n - 1];
    int i;
    for (i = n - 2; i >= 0; i--) p = p * x + c[i];
    return p;
}

/* exp(x) - 1 without the cancellation near 0: Taylor series for |x| < 0.5 (the first term
   left out below 3e-9 relative), exp(x) - 1 beyond.  Branch-free. */
EK_INLINE float EK_FN(ek_expm1f)(float x)
{
    static const float c[7] = {1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720,
                               1.0f / 5040, 1.0f / 40320};
    const float ax = x < 0.0f ? -x : x;
    const float p = EK_FN(ek_horner)(x, c, 7) * x * x + x;
    return ax < 0.5f ? p : EK_FN(ek_expf)(x) - 1.0f;
}

/* log(1 + exp(z)) for any z, branch-free: max(z, 0) + log1p(u) with u = exp(-|z|) in
   (0, 1], log1p(u) = 2 atanh(s), s = u / (2 + u) <= 1/3, by its odd series to s^17
   (truncation below 2e-9). */
EK_INLINE float EK_FN(ek_softplus1)(float z)
{
    const float az = z < 0.0f ? -z : z;
    const float u = EK_FN(ek_expf)(-az);
    static const float c[9] = {1.0f, 1.0f / 3, 1.0f / 5, 1.0f / 7, 1.0f / 9, 1.0f / 11,
                               1.0f / 13, 1.0f / 15, 1.0f / 17};
    const float s = u / (2.0f + u);
    return (z > 0.0f ? z : 0.0f) + 2.0f * s * EK_FN(ek_horner)(s * s, c, 9);
}

/* x tanh(softplus(x)) = x n / (n + 2), n = e (e + 2), e = exp(x): no log, no tanh.  For
   x >= 20 the ratio is 1 in float (and e is clamped there so that n stays finite). */
EK_INLINE float EK_FN(ek_mishf)(float x)
{
    const float e = EK_FN(ek_expf)(x < 20.0f ? x : 20.0f);
    const float n = e * (e + 2.0f);
    return x * (n / (n + 2.0f));
}

#define EK_SELU_ALPHA 1.6732632423543772848f
#define EK_SELU_SCALE 1.0507009873554804934f

/* The shared vector primitives of this instruction set (the x86 lane layer, ...); a tile
   file may also provide EKX_ACT_ROW, a register version of some activations' row loops. */
#include EK_ISA_FILE(f32, vec)

/*
 * The range [*lo, *hi) of output positions o in [0, n_out) whose input position
 * o * s + off lies inside [0, n_in).  s >= 1.
 */
EK_INLINE void EK_FN(ek_valid_range)(ptrdiff_t n_out, ptrdiff_t n_in, ptrdiff_t s,
                                     ptrdiff_t off, ptrdiff_t *lo, ptrdiff_t *hi)
{
    ptrdiff_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    ptrdiff_t b = (n_in - 1 - off) < 0 ? 0 : (n_in - 1 - off) / s + 1;
    if (a > n_out) a = n_out;
    if (b > n_out) b = n_out;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

/*
 * Scalar activation.  NaN propagates exactly as in PyTorch: comparisons are written so
 * that a NaN input takes the "pass-through" branch (relu: x < 0 ? 0 : x).
 */
EK_INLINE float EK_FN(ek_act1)(float x, int act, float p0, float p1)
{
    switch (act) {
    case EK_ACT_RELU:
        return x < 0.0f ? 0.0f : x;
    case EK_ACT_RELU6:
        return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    case EK_ACT_LEAKY_RELU:
        return x < 0.0f ? x * p0 : x;
    case EK_ACT_CLIP: {
        float y = x < p0 ? p0 : x;     /* torch.clamp: min(max(x, lo), hi) */
        return y > p1 ? p1 : y;
    }
    case EK_ACT_SIGMOID:
        return 1.0f / (1.0f + EK_FN(ek_expf)(-x));
    case EK_ACT_TANH:
        return EK_FN(ek_tanhf)(x);
    case EK_ACT_SILU:
        return x / (1.0f + EK_FN(ek_expf)(-x));
    case EK_ACT_HARDSWISH: {
        float t = x + 3.0f;
        t = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
        return x * t / 6.0f;
    }
    case EK_ACT_HARDSIGMOID: {
        float t = x + 3.0f;
        t = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
        return t / 6.0f;
    }
    case EK_ACT_GELU:
        return x * EK_FN(ek_normcdf)(x);
    case EK_ACT_GELU_TANH: {
        float inner = 0.79788456080286535588f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + EK_FN(ek_tanhf)(inner));
    }
    case EK_ACT_ELU:
        return x > 0.0f ? x : p0 * EK_FN(ek_expm1f)(x);
    case EK_ACT_SELU:
        return EK_SELU_SCALE * (x > 0.0f ? x : EK_SELU_ALPHA * EK_FN(ek_expm1f)(x));
    case EK_ACT_SOFTPLUS:
        return p0 * x > p1 ? x : EK_FN(ek_softplus1)(p0 * x) / p0;
    case EK_ACT_MISH:
        return EK_FN(ek_mishf)(x);
    default:
        return x;
    }
}


/*
 * y[i] = act(x[i]) for i < n.  x == y (in place) is allowed; otherwise the ranges must
 * not overlap.  The switch is outside the loops so the cheap cases vectorise.
 */
EK_API void EK_FN(ek_act_row)(const float *x, float *y, ptrdiff_t n, int act, float p0,
                              float p1)
{
    ptrdiff_t i;
#ifdef EKX_ACT_ROW
    if (EK_FN(ekx_act_row)(x, y, n, act)) return;
#endif
    switch (act) {
    case EK_ACT_NONE:
        if (x != y) memcpy(y, x, (size_t)n * sizeof(float));
        break;
    case EK_ACT_RELU:
        for (i = 0; i < n; i++) { float v = x[i]; y[i] = v < 0.0f ? 0.0f : v; }
        break;
    case EK_ACT_RELU6:
        for (i = 0; i < n; i++) {
            float v = x[i];
            v = v < 0.0f ? 0.0f : v;
            y[i] = v > 6.0f ? 6.0f : v;
        }
        break;
    case EK_ACT_LEAKY_RELU:
        for (i = 0; i < n; i++) { float v = x[i]; y[i] = v < 0.0f ? v * p0 : v; }
        break;
    case EK_ACT_CLIP:
        for (i = 0; i < n; i++) {
            float v = x[i];
            v = v < p0 ? p0 : v;
            y[i] = v > p1 ? p1 : v;
        }
        break;
    case EK_ACT_HARDSWISH:
        for (i = 0; i < n; i++) {
            float v = x[i], t = v + 3.0f;
            t = t < 0.0f ? 0.0f : t;
            t = t > 6.0f ? 6.0f : t;
            y[i] = v * t / 6.0f;
        }
        break;
    case EK_ACT_HARDSIGMOID:
        for (i = 0; i < n; i++) {
            float t = x[i] + 3.0f;
            t = t < 0.0f ? 0.0f : t;
            t = t > 6.0f ? 6.0f : t;
            y[i] = t / 6.0f;
        }
        break;
    case EK_ACT_SIGMOID:
        for (i = 0; i < n; i++) y[i] = 1.0f / (1.0f + EK_FN(ek_expf)(-x[i]));
        break;
    case EK_ACT_TANH:
        for (i = 0; i < n; i++) y[i] = EK_FN(ek_tanhf)(x[i]);
        break;
    case EK_ACT_SILU:
        for (i = 0; i < n; i++) { float v = x[i]; y[i] = v / (1.0f + EK_FN(ek_expf)(-v)); }
        break;
    case EK_ACT_GELU:
        for (i = 0; i < n; i++) { float v = x[i]; y[i] = v * EK_FN(ek_normcdf)(v); }
        break;
    case EK_ACT_ELU:
        for (i = 0; i < n; i++) {
            float v = x[i];
            y[i] = v > 0.0f ? v : p0 * EK_FN(ek_expm1f)(v);
        }
        break;
    case EK_ACT_SELU:
        for (i = 0; i < n; i++) {
            float v = x[i];
            y[i] = EK_SELU_SCALE * (v > 0.0f ? v : EK_SELU_ALPHA * EK_FN(ek_expm1f)(v));
        }
        break;
    case EK_ACT_SOFTPLUS:
        for (i = 0; i < n; i++) {
            float v = x[i], z = p0 * v;
            y[i] = z > p1 ? v : EK_FN(ek_softplus1)(z) / p0;
        }
        break;
    case EK_ACT_MISH:
        for (i = 0; i < n; i++) y[i] = EK_FN(ek_mishf)(x[i]);
        break;
    case EK_ACT_GELU_TANH:
        for (i = 0; i < n; i++) {
            float v = x[i];
            float inner = 0.79788456080286535588f * (v + 0.044715f * v * v * v);
            y[i] = 0.5f * v * (1.0f + EK_FN(ek_tanhf)(inner));
        }
        break;
    default:
        for (i = 0; i < n; i++) y[i] = EK_FN(ek_act1)(x[i], act, p0, p1);
        break;
    }
}

/* In-place activation of a row (no-op for EK_ACT_NONE). */
EK_INLINE void EK_FN(ek_act_inplace)(float *x, ptrdiff_t n, int act, float p0, float p1)
{
    if (act != EK_ACT_NONE) EK_FN(ek_act_row)(x, x, n, act, p0, p1);
}


#endif /* EK_COMMON_ISA */
