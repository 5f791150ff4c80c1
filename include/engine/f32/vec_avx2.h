/*
 * f32/vec_avx2.h - the AVX2 + FMA vector primitives the op headers share.
 *
 * Included by ek_common.h (EK_ISA_FILE) once for the instruction set being compiled.
 * EKX is 1 where the x86 lane layer exists (AVX2, AVX-512): the vector type EKX_V of
 * EKX_VW floats, its lane masks EKX_M and the ekx_* loads, stores and arithmetic, with the
 * register-blocking constants of the depthwise and pooling row kernels (ek_conv.h,
 * ek_pool.h); ekx_mask, ekx_deint and ekx_unperm are its lane-mask, even / odd
 * deinterleave and reorder helpers.  EK_VEC_STRIDED_COPY marks a masked strided copy
 * (ek_vec_copy_strided) for the im2col panel fill.
 */
#define EKX 1
#define EKX_AVX512 0
#define EKX_VW 8
#define EKX_V __m256
#define EKX_M __m256i
#define ekx_ld(p) _mm256_loadu_ps(p)
#define ekx_st(p, v) _mm256_storeu_ps((p), (v))
#define ekx_set1(f) _mm256_set1_ps(f)
#define ekx_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define ekx_ldz(p, m) _mm256_maskload_ps((p), (m))
#define ekx_stm(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define ekx_max(a, b) _mm256_max_ps((a), (b))
#define ekx_min(a, b) _mm256_min_ps((a), (b))
#define EKX_RB 4             /* (6 and 8 measured no faster) */
#define EKX_SPLIT 0          /* (measured slower: 16 registers) */
#define EKX_ADD(a, b) _mm256_add_ps((a), (b))
#define EKX_ALLMASKED 0
#define ekx_ldf(p, m, f)                                                                   \
    _mm256_blendv_ps((f), _mm256_maskload_ps((p), (m)), _mm256_castsi256_ps(m))
#define EKX_MUL(a, b) _mm256_mul_ps((a), (b))
#define ekx_hasnan(v) (_mm256_movemask_ps(_mm256_cmp_ps((v), (v), _CMP_UNORD_Q)) != 0)

/* Lanes lo <= l < hi (any ints; clamped to the vector). */
EK_INLINE EKX_M EK_FN(ekx_mask)(ptrdiff_t lo, ptrdiff_t hi)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    lo = EK_MAX(lo, 0);
    hi = EK_MIN(hi, EKX_VW);
    if (hi < lo) hi = lo;
    return _mm256_and_si256(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32((int)lo - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), iota));
}

/* Even / odd floats of the 16 floats (a, b), both in the lane order of an in-lane shuffle:
   output column order {0, 1, 4, 5, 2, 3, 6, 7}; ekx_unperm restores the order. */
EK_INLINE void EK_FN(ekx_deint)(EKX_V a, EKX_V b, EKX_V *e, EKX_V *o)
{
    *e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* Reduction of a (the new value) into b (the running one): op 0 min, 1 max, 2 sum; for
   min / max `safe` propagates a NaN of either (OR of max(a, b) and max(b, a)). */
EK_INLINE EKX_V EK_FN(ekx_red)(const int op, const int safe, EKX_V a, EKX_V b)
{
    const int is_max = op == 1;
    if (op == 2) return _mm256_add_ps(a, b);
    if (safe)
        return is_max ? _mm256_or_ps(_mm256_max_ps(a, b), _mm256_max_ps(b, a))
                      : _mm256_or_ps(_mm256_min_ps(a, b), _mm256_min_ps(b, a));
    return is_max ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b);
}

EK_INLINE EKX_V EK_FN(ekx_unperm)(EKX_V v)
{
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v),
                                                  _MM_SHUFFLE(3, 1, 2, 0)));
}
