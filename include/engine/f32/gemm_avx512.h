/*
 * f32/gemm_avx512.h - the float32 GEMM micro-kernel for AVX-512 (x86-64-v4):
 * a 14 x 32 register tile.
 *
 * Included by ek_gemm.h (EK_ISA_FILE) once for the instruction set being compiled.
 * Defines the register tile (EK_GEMM_VW lanes, EK_GEMM_MR x EK_GEMM_NR, EK_GEMM_KIND),
 * and ek_gemm_tile: one m x n x kc tile of packed A and B into C with the fused
 * epilogue (ek_gemm_epi).  It knows nothing of threads.
 */
#define EK_GEMM_VW 16
#define EK_GEMM_MR 14
#define EK_GEMM_NR 32
#define EK_GEMM_KIND "avx512 intrinsics"

/* Full-width column strips read B in place (ek_gemm.h, ek_gemm_direct_block). */
#define EK_GEMM_DIRECT_B 1


EK_INLINE __m512 EK_FN(ek_act_v)(__m512 x, int act, float p0, float p1)
{
    const __m512 zero = _mm512_setzero_ps();
    switch (act) {
    case EK_ACT_RELU:
        return _mm512_max_ps(zero, x);                 /* NaN: second operand (x) */
    case EK_ACT_RELU6:
        return _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(zero, x));
    case EK_ACT_LEAKY_RELU:
        return _mm512_mask_mul_ps(x, _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ), x,
                                  _mm512_set1_ps(p0));
    case EK_ACT_CLIP:
        return _mm512_min_ps(_mm512_set1_ps(p1), _mm512_max_ps(_mm512_set1_ps(p0), x));
    case EK_ACT_HARDSWISH: {
        __m512 t = _mm512_add_ps(x, _mm512_set1_ps(3.0f));
        t = _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(zero, t));
        return _mm512_div_ps(_mm512_mul_ps(x, t), _mm512_set1_ps(6.0f));
    }
    case EK_ACT_HARDSIGMOID: {
        __m512 t = _mm512_add_ps(x, _mm512_set1_ps(3.0f));
        t = _mm512_min_ps(_mm512_set1_ps(6.0f), _mm512_max_ps(zero, t));
        return _mm512_div_ps(t, _mm512_set1_ps(6.0f));
    }
    default:
        return x;
    }
}

/* Store of a register tile: C = [C +] acc [+ row bias + column bias + R, then act (a
   compile-time constant at every call: NONE or one the vector epilogue applies)] */
EK_INLINE void EK_FN(ek_ukr_store)(const int m, const int NV, __m512 (*acc)[2], float *C,
                                   ptrdiff_t ldc, __mmask16 ml, int load_c, const int last,
                                   const ek_gemm_epi *e, const int act)
{
    __m512 cb[2];
    int i, v;
    cb[0] = cb[1] = _mm512_setzero_ps();
    if (last && e->cb) {
        if (NV > 1) {
            cb[0] = _mm512_loadu_ps(e->cb);
            cb[1] = _mm512_maskz_loadu_ps(ml, e->cb + 16);
        } else {
            cb[0] = _mm512_maskz_loadu_ps(ml, e->cb);
        }
    }
#pragma GCC unroll 14
    for (i = 0; i < m; i++) {
        float *c = C + i * ldc;
#pragma GCC unroll 2
        for (v = 0; v < NV; v++) {
            const __mmask16 mk = v == NV - 1 ? ml : (__mmask16)0xFFFF;
            __m512 x = acc[i][v];
            if (load_c) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, c + 16 * v));
            if (last) {
                if (e->rb) x = _mm512_add_ps(x, _mm512_set1_ps(e->rb[i]));
                if (e->cb) x = _mm512_add_ps(x, cb[v]);
                if (e->R)
                    x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, e->R + i * e->ldr + 16 * v));
                x = EK_FN(ek_act_v)(x, act, e->p0, e->p1);
            }
            _mm512_mask_storeu_ps(c + 16 * v, mk, x);
        }
    }
}

/* One register tile: m (<= 14) rows, NV (1 or 2) vectors of 16 columns (n valid), S
   accumulator sets along K.  a: panel[k][MR]; b: panel[k][NR]. */
EK_INLINE void EK_FN(ek_ukr)(const int m, const int NV, const int S, ptrdiff_t kc,
                             const float *EK_RESTRICT a, const float *EK_RESTRICT b,
                             ptrdiff_t bs, float *C, ptrdiff_t ldc, ptrdiff_t n, int load_c,
                             int last, const ek_gemm_epi *e)
{
    enum { MR = EK_GEMM_MR, NR = EK_GEMM_NR };
    /* packed B: fetch 8 k-rows ahead in the panel; B read in place (bs = ldb): fetch this
       k-row of the strip after next, which the hardware prefetcher (one stream per row)
       does not follow (2 strips ahead measured a few % faster than 1 or 4 on
       MobileNetV2's M = 24 pointwise convs in the network) */
    const int direct = bs != NR;
    const ptrdiff_t pf = direct ? 2 * NR : 8 * NR;
    __m512 acc[4][EK_GEMM_MR][2];
    ptrdiff_t k;
    int i, s, v;
#pragma GCC unroll 4
    for (s = 0; s < S; s++)
#pragma GCC unroll 14
        for (i = 0; i < m; i++)
#pragma GCC unroll 2
            for (v = 0; v < NV; v++) acc[s][i][v] = _mm512_setzero_ps();
    for (i = 0; i < m; i++) _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    for (k = 0; k + S <= kc; k += S) {
#pragma GCC unroll 4
        for (s = 0; s < S; s++) {
            const __m512 b0 = _mm512_loadu_ps(b + s * bs);
            const __m512 b1 = NV > 1 ? _mm512_loadu_ps(b + s * bs + 16) : b0;
#pragma GCC unroll 14
            for (i = 0; i < m; i++) {
                const __m512 ai = _mm512_set1_ps(a[s * MR + i]);
                acc[s][i][0] = _mm512_fmadd_ps(ai, b0, acc[s][i][0]);
                if (NV > 1) acc[s][i][1] = _mm512_fmadd_ps(ai, b1, acc[s][i][1]);
            }
        }
        /* (addresses as integers: past the last strip they are only hints, never
           pointers out of the array) */
        _mm_prefetch((const char *)((uintptr_t)b + pf * sizeof(float)), _MM_HINT_T0);
        if (direct) {   /* (A: a few rows, in L1 from the first strip on) */
            _mm_prefetch((const char *)((uintptr_t)b + (pf + 16) * sizeof(float)),
                         _MM_HINT_T0);
        } else {
            _mm_prefetch((const char *)((uintptr_t)a + EK_GEMM_APF), _MM_HINT_T0);
            if (S > 1) {   /* few rows: B streams from memory (GEMV-like), fetch it early */
                _mm_prefetch((const char *)((uintptr_t)b + 64 * NR * sizeof(float)),
                             _MM_HINT_T1);
                _mm_prefetch((const char *)((uintptr_t)b + (64 * NR + 16) * sizeof(float)),
                             _MM_HINT_T1);
            }
        }
        a += S * MR;
        b += S * bs;
    }
    for (; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b);
        const __m512 b1 = NV > 1 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 14
        for (i = 0; i < m; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[0][i][0] = _mm512_fmadd_ps(ai, b0, acc[0][i][0]);
            if (NV > 1) acc[0][i][1] = _mm512_fmadd_ps(ai, b1, acc[0][i][1]);
        }
        a += MR;
        b += bs;
    }
#pragma GCC unroll 4
    for (s = 1; s < S; s++)
#pragma GCC unroll 14
        for (i = 0; i < m; i++)
#pragma GCC unroll 2
            for (v = 0; v < NV; v++) acc[0][i][v] = _mm512_add_ps(acc[0][i][v], acc[s][i][v]);
    {
        const ptrdiff_t nl = n - (NV - 1) * 16;        /* columns in the last vector */
        const __mmask16 ml = (__mmask16)(nl >= 16 ? 0xFFFF : (1u << nl) - 1u);
#define EK_UKR_STORE(LAST_, ACT_)                                                        \
    EK_FN(ek_ukr_store)(m, NV, acc[0], C, ldc, ml, load_c, LAST_, e, ACT_)
        EK_UKR_STORE_BY_ACT();
#undef EK_UKR_STORE
    }
}

/* Accumulator sets along K so that at least ~8 independent FMA chains are in flight. */
#define EK_UKR_SETS(m, nv) ((m) * (nv) >= 8 ? 1 : (m) * (nv) >= 4 ? 2 : 4)

/* One out-of-line function per (rows, vectors) pair: each gets its own register allocation
   (a single function holding every case spills the accumulators). */
#define EK_UKR_DEF(M_, NV_)                                                              \
    static EK_NOINLINE void EK_FN(ek_ukr_##M_##_##NV_)(                                  \
        ptrdiff_t kc, const float *a, const float *b, ptrdiff_t bs, float *C, ptrdiff_t ldc, \
        ptrdiff_t n, int load_c, int last, const ek_gemm_epi *e)                         \
    {                                                                                    \
        EK_FN(ek_ukr)(M_, NV_, EK_UKR_SETS(M_, NV_), kc, a, b, bs, C, ldc, n, load_c, last, \
                      e);                                                                \
    }
#define EK_UKR_DEF2(M_) EK_UKR_DEF(M_, 1) EK_UKR_DEF(M_, 2)
#define EK_UKR_CASE(M_)                                                                  \
    case M_:                                                                             \
        if (nv == 2) EK_FN(ek_ukr_##M_##_2)(kc, a, b, bs, C, ldc, n, load_c, last, e);   \
        else EK_FN(ek_ukr_##M_##_1)(kc, a, b, bs, C, ldc, n, load_c, last, e);           \
        break;

EK_UKR_DEF2(1) EK_UKR_DEF2(2) EK_UKR_DEF2(3) EK_UKR_DEF2(4) EK_UKR_DEF2(5) EK_UKR_DEF2(6)
EK_UKR_DEF2(7) EK_UKR_DEF2(8) EK_UKR_DEF2(9) EK_UKR_DEF2(10) EK_UKR_DEF2(11) EK_UKR_DEF2(12)
EK_UKR_DEF2(13) EK_UKR_DEF2(14)

/*
 * Narrow tile: r <= 4 columns.  Vectorised along the rows instead (one masked load of the
 * A panel row per k, r broadcasts of B), with enough accumulator sets for the FMA latency;
 * the r x m result is transposed through a small buffer into the scalar store.
 */
EK_INLINE void EK_FN(ek_ukr_narrow)(const int R_, ptrdiff_t m, ptrdiff_t kc,
                                    const float *EK_RESTRICT a, const float *EK_RESTRICT b,
                                    float *C, ptrdiff_t ldc, int load_c, int last,
                                    const ek_gemm_epi *e)
{
    enum { MR = EK_GEMM_MR, NR = EK_GEMM_NR, S = 4 };
    const __mmask16 mm = (__mmask16)((1u << m) - 1u);
    __m512 acc[S][4];
    float tmp[4][16];
    float t[EK_GEMM_MR * EK_GEMM_NR];
    ptrdiff_t k;
    int s, j, i;
#pragma GCC unroll 4
    for (s = 0; s < S; s++)
#pragma GCC unroll 4
        for (j = 0; j < R_; j++) acc[s][j] = _mm512_setzero_ps();
    for (k = 0; k + S <= kc; k += S) {
#pragma GCC unroll 4
        for (s = 0; s < S; s++) {
            const __m512 av = _mm512_maskz_loadu_ps(mm, a + (k + s) * MR);
#pragma GCC unroll 4
            for (j = 0; j < R_; j++)
                acc[s][j] = _mm512_fmadd_ps(av, _mm512_set1_ps(b[(k + s) * NR + j]), acc[s][j]);
        }
    }
    for (; k < kc; k++) {
        const __m512 av = _mm512_maskz_loadu_ps(mm, a + k * MR);
#pragma GCC unroll 4
        for (j = 0; j < R_; j++)
            acc[0][j] = _mm512_fmadd_ps(av, _mm512_set1_ps(b[k * NR + j]), acc[0][j]);
    }
#pragma GCC unroll 4
    for (j = 0; j < R_; j++) {
        __m512 v = _mm512_add_ps(_mm512_add_ps(acc[0][j], acc[1][j]),
                                 _mm512_add_ps(acc[2][j], acc[3][j]));
        _mm512_storeu_ps(tmp[j], v);
    }
    for (i = 0; i < m; i++)
        for (j = 0; j < R_; j++) t[i * NR + j] = tmp[j][i];
    EK_FN(ek_gemm_store)(t, EK_GEMM_NR, m, R_, C, ldc, load_c, last, e);
}

#define EK_NARROW_DEF(R_)                                                                \
    static EK_NOINLINE void EK_FN(ek_ukr_narrow_##R_)(                                   \
        ptrdiff_t m, ptrdiff_t kc, const float *a, const float *b, float *C, ptrdiff_t ldc, \
        int load_c, int last, const ek_gemm_epi *e)                                      \
    {                                                                                    \
        EK_FN(ek_ukr_narrow)(R_, m, kc, a, b, C, ldc, load_c, last, e);                  \
    }
EK_NARROW_DEF(1) EK_NARROW_DEF(2) EK_NARROW_DEF(3) EK_NARROW_DEF(4)
#undef EK_NARROW_DEF

/* m x n tile of vector kernels (nv = 1 or 2 vectors of 16; B k-rows bs floats apart). */
EK_INLINE void EK_FN(ek_gemm_tile_v)(ptrdiff_t m, ptrdiff_t n, int nv, ptrdiff_t kc,
                                     const float *a, const float *b, ptrdiff_t bs, float *C,
                                     ptrdiff_t ldc, int load_c, int last, const ek_gemm_epi *e)
{
    switch (m) {
        EK_UKR_CASE(1) EK_UKR_CASE(2) EK_UKR_CASE(3) EK_UKR_CASE(4) EK_UKR_CASE(5)
        EK_UKR_CASE(6) EK_UKR_CASE(7) EK_UKR_CASE(8) EK_UKR_CASE(9) EK_UKR_CASE(10)
        EK_UKR_CASE(11) EK_UKR_CASE(12) EK_UKR_CASE(13)
    default:
        EK_UKR_CASE(14)
    }
}

/* One m x n (<= MR x NR) tile.  A partial panel is split into a 16-column vector part and
   a remainder: <= 4 columns take the row-vectorised narrow kernel (N = 49 = 32 + 16 + 1
   costs 3 vectors of work, not 4). */
EK_API void EK_FN(ek_gemm_tile)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kc, const float *a,
                                const float *b, float *C, ptrdiff_t ldc, int load_c, int last,
                                const ek_gemm_epi *e)
{
    enum { NR = EK_GEMM_NR };
    ptrdiff_t r;
    if (n > 20) {
        EK_FN(ek_gemm_tile_v)(m, n, 2, kc, a, b, NR, C, ldc, load_c, last, e);
        return;
    }
    if (n >= 16) {
        EK_FN(ek_gemm_tile_v)(m, 16, 1, kc, a, b, NR, C, ldc, load_c, last, e);
        r = n - 16;
        if (r == 0) return;
        b += 16;
        C += 16;
        if (e->cb || e->R) {
            ek_gemm_epi e2 = *e;
            if (e2.cb) e2.cb += 16;
            if (e2.R) e2.R += 16;
            switch (r) {
            case 1: EK_FN(ek_ukr_narrow_1)(m, kc, a, b, C, ldc, load_c, last, &e2); break;
            case 2: EK_FN(ek_ukr_narrow_2)(m, kc, a, b, C, ldc, load_c, last, &e2); break;
            case 3: EK_FN(ek_ukr_narrow_3)(m, kc, a, b, C, ldc, load_c, last, &e2); break;
            default: EK_FN(ek_ukr_narrow_4)(m, kc, a, b, C, ldc, load_c, last, &e2); break;
            }
            return;
        }
        n = r;
    }
    switch (n) {
    case 1: EK_FN(ek_ukr_narrow_1)(m, kc, a, b, C, ldc, load_c, last, e); break;
    case 2: EK_FN(ek_ukr_narrow_2)(m, kc, a, b, C, ldc, load_c, last, e); break;
    case 3: EK_FN(ek_ukr_narrow_3)(m, kc, a, b, C, ldc, load_c, last, e); break;
    case 4: EK_FN(ek_ukr_narrow_4)(m, kc, a, b, C, ldc, load_c, last, e); break;
    default: EK_FN(ek_gemm_tile_v)(m, n, 1, kc, a, b, NR, C, ldc, load_c, last, e); break;
    }
}

/* A full m x NR tile reading B in place: k-row k of the strip at b + k * ldb. */
EK_API void EK_FN(ek_gemm_tile_direct)(ptrdiff_t m, ptrdiff_t kc, const float *a,
                                       const float *b, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                                       int load_c, int last, const ek_gemm_epi *e)
{
    EK_FN(ek_gemm_tile_v)(m, EK_GEMM_NR, 2, kc, a, b, ldb, C, ldc, load_c, last, e);
}
#undef EK_UKR_CASE
#undef EK_UKR_DEF2
#undef EK_UKR_DEF
#undef EK_UKR_SETS
