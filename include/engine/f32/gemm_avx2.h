/*
 * f32/gemm_avx2.h - the float32 GEMM micro-kernel for AVX2 + FMA:
 * a 6 x 16 register tile.
 *
 * Included by ek_gemm.h (EK_ISA_FILE) once for the instruction set being compiled.
 * Defines the register tile (EK_GEMM_VW lanes, EK_GEMM_MR x EK_GEMM_NR, EK_GEMM_KIND),
 * and ek_gemm_tile: one m x n x kc tile of packed A and B into C with the fused
 * epilogue (ek_gemm_epi).  It knows nothing of threads.
 */
#define EK_GEMM_VW 8
#define EK_GEMM_MR 6
#define EK_GEMM_NR 16
#define EK_GEMM_KIND "avx2+fma intrinsics"


EK_INLINE __m256 EK_FN(ek_act_v)(__m256 x, int act, float p0, float p1)
{
    const __m256 zero = _mm256_setzero_ps();
    switch (act) {
    case EK_ACT_RELU:
        return _mm256_max_ps(zero, x);
    case EK_ACT_RELU6:
        return _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, x));
    case EK_ACT_LEAKY_RELU:
        return _mm256_blendv_ps(x, _mm256_mul_ps(x, _mm256_set1_ps(p0)),
                                _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
    case EK_ACT_CLIP:
        return _mm256_min_ps(_mm256_set1_ps(p1), _mm256_max_ps(_mm256_set1_ps(p0), x));
    case EK_ACT_HARDSWISH: {
        __m256 t = _mm256_add_ps(x, _mm256_set1_ps(3.0f));
        t = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, t));
        return _mm256_div_ps(_mm256_mul_ps(x, t), _mm256_set1_ps(6.0f));
    }
    case EK_ACT_HARDSIGMOID: {
        __m256 t = _mm256_add_ps(x, _mm256_set1_ps(3.0f));
        t = _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(zero, t));
        return _mm256_div_ps(t, _mm256_set1_ps(6.0f));
    }
    default:
        return x;
    }
}

EK_INLINE __m256i EK_FN(ek_mask8)(ptrdiff_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), idx);
}

/* Store of a register tile (see the AVX-512 ek_ukr_store; act a compile-time constant). */
EK_INLINE void EK_FN(ek_ukr_store)(const int m, const int NV, __m256 (*acc)[2], float *C,
                                   ptrdiff_t ldc, ptrdiff_t nl, __m256i ml, int load_c,
                                   const int last, const ek_gemm_epi *e, const int act)
{
    __m256 cb[2];
    int i, v;
    cb[0] = cb[1] = _mm256_setzero_ps();
    if (last && e->cb) {
        if (NV > 1) {
            cb[0] = _mm256_loadu_ps(e->cb);
            cb[1] = _mm256_maskload_ps(e->cb + 8, ml);
        } else {
            cb[0] = _mm256_maskload_ps(e->cb, ml);
        }
    }
#pragma GCC unroll 6
    for (i = 0; i < m; i++) {
        float *c = C + i * ldc;
#pragma GCC unroll 2
        for (v = 0; v < NV; v++) {
            const int full = v < NV - 1 || nl >= 8;   /* maskmov only on the tail */
            __m256 x = acc[i][v];
            if (load_c)
                x = _mm256_add_ps(x, full ? _mm256_loadu_ps(c + 8 * v)
                                          : _mm256_maskload_ps(c + 8 * v, ml));
            if (last) {
                if (e->rb) x = _mm256_add_ps(x, _mm256_set1_ps(e->rb[i]));
                if (e->cb) x = _mm256_add_ps(x, cb[v]);
                if (e->R) {
                    const float *r = e->R + i * e->ldr + 8 * v;
                    x = _mm256_add_ps(x, full ? _mm256_loadu_ps(r) : _mm256_maskload_ps(r, ml));
                }
                x = EK_FN(ek_act_v)(x, act, e->p0, e->p1);
            }
            if (full) _mm256_storeu_ps(c + 8 * v, x);
            else _mm256_maskstore_ps(c + 8 * v, ml, x);
        }
    }
}

EK_INLINE void EK_FN(ek_ukr)(const int m, const int NV, const int S, ptrdiff_t kc,
                             const float *EK_RESTRICT a, const float *EK_RESTRICT b, float *C,
                             ptrdiff_t ldc, ptrdiff_t n, int load_c, int last,
                             const ek_gemm_epi *e)
{
    enum { MR = EK_GEMM_MR, NR = EK_GEMM_NR };
    __m256 acc[4][EK_GEMM_MR][2];
    ptrdiff_t k;
    int i, s, v;
#pragma GCC unroll 4
    for (s = 0; s < S; s++)
#pragma GCC unroll 6
        for (i = 0; i < m; i++)
#pragma GCC unroll 2
            for (v = 0; v < NV; v++) acc[s][i][v] = _mm256_setzero_ps();
    for (k = 0; k + S <= kc; k += S) {
#pragma GCC unroll 4
        for (s = 0; s < S; s++) {
            const __m256 b0 = _mm256_load_ps(b + s * NR);
            const __m256 b1 = NV > 1 ? _mm256_load_ps(b + s * NR + 8) : b0;
#pragma GCC unroll 6
            for (i = 0; i < m; i++) {
                const __m256 ai = _mm256_broadcast_ss(a + s * MR + i);
                acc[s][i][0] = _mm256_fmadd_ps(ai, b0, acc[s][i][0]);
                if (NV > 1) acc[s][i][1] = _mm256_fmadd_ps(ai, b1, acc[s][i][1]);
            }
        }
        _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
        _mm_prefetch((const char *)((uintptr_t)a + EK_GEMM_APF), _MM_HINT_T0);
        if (S > 1) {   /* few rows: B streams from memory (GEMV-like), fetch it early */
            _mm_prefetch((const char *)(b + 64 * NR), _MM_HINT_T1);
            _mm_prefetch((const char *)(b + 64 * NR + 16), _MM_HINT_T1);
        }
        a += S * MR;
        b += S * NR;
    }
    for (; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = NV > 1 ? _mm256_load_ps(b + 8) : b0;
#pragma GCC unroll 6
        for (i = 0; i < m; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            acc[0][i][0] = _mm256_fmadd_ps(ai, b0, acc[0][i][0]);
            if (NV > 1) acc[0][i][1] = _mm256_fmadd_ps(ai, b1, acc[0][i][1]);
        }
        a += MR;
        b += NR;
    }
#pragma GCC unroll 4
    for (s = 1; s < S; s++)
#pragma GCC unroll 6
        for (i = 0; i < m; i++)
#pragma GCC unroll 2
            for (v = 0; v < NV; v++) acc[0][i][v] = _mm256_add_ps(acc[0][i][v], acc[s][i][v]);
    {
        const ptrdiff_t nl = n - (NV - 1) * 8;
        const __m256i ml = EK_FN(ek_mask8)(nl);
#define EK_UKR_STORE(LAST_, ACT_)                                                        \
    EK_FN(ek_ukr_store)(m, NV, acc[0], C, ldc, nl, ml, load_c, LAST_, e, ACT_)
        EK_UKR_STORE_BY_ACT();
#undef EK_UKR_STORE
    }
}

#define EK_UKR_SETS(m, nv) ((m) * (nv) >= 8 ? 1 : (m) * (nv) >= 4 ? 2 : 4)
/* One out-of-line function per (rows, vectors) pair: each gets its own register allocation
   (a single function holding every case spills the accumulators). */
#define EK_UKR_DEF(M_, NV_)                                                              \
    static EK_NOINLINE void EK_FN(ek_ukr_##M_##_##NV_)(                                  \
        ptrdiff_t kc, const float *a, const float *b, float *C, ptrdiff_t ldc, ptrdiff_t n, \
        int load_c, int last, const ek_gemm_epi *e)                                      \
    {                                                                                    \
        EK_FN(ek_ukr)(M_, NV_, EK_UKR_SETS(M_, NV_), kc, a, b, C, ldc, n, load_c, last, e); \
    }
#define EK_UKR_DEF2(M_) EK_UKR_DEF(M_, 1) EK_UKR_DEF(M_, 2)
#define EK_UKR_CASE(M_)                                                                  \
    case M_:                                                                             \
        if (nv == 2) EK_FN(ek_ukr_##M_##_2)(kc, a, b, C, ldc, n, load_c, last, e);       \
        else EK_FN(ek_ukr_##M_##_1)(kc, a, b, C, ldc, n, load_c, last, e);               \
        break;

EK_UKR_DEF2(1) EK_UKR_DEF2(2) EK_UKR_DEF2(3) EK_UKR_DEF2(4) EK_UKR_DEF2(5) EK_UKR_DEF2(6)

EK_API void EK_FN(ek_gemm_tile)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kc, const float *a,
                                const float *b, float *C, ptrdiff_t ldc, int load_c, int last,
                                const ek_gemm_epi *e)
{
    const int nv = n > 8 ? 2 : 1;
    switch (m) {
        EK_UKR_CASE(1) EK_UKR_CASE(2) EK_UKR_CASE(3) EK_UKR_CASE(4) EK_UKR_CASE(5)
    default:
        EK_UKR_CASE(6)
    }
}
#undef EK_UKR_CASE
#undef EK_UKR_DEF2
#undef EK_UKR_DEF
#undef EK_UKR_SETS
