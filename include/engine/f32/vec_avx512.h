/*
 * f32/vec_avx512.h - the AVX-512 vector primitives the op headers share.
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
#define EKX_AVX512 1         /* 512-bit masked ops: stride-2 taps by lane shifts, flat mode */
#define EKX_VW 16
#define EKX_V __m512
#define EKX_M __mmask16
#define ekx_ld(p) _mm512_loadu_ps(p)
#define ekx_st(p, v) _mm512_storeu_ps((p), (v))
#define ekx_set1(f) _mm512_set1_ps(f)
#define ekx_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define ekx_ldz(p, m) _mm512_maskz_loadu_ps((m), (p))
#define ekx_stm(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define ekx_max(a, b) _mm512_max_ps((a), (b))
#define ekx_min(a, b) _mm512_min_ps((a), (b))
#define EKX_RB 8             /* output rows per block */
#define EKX_SPLIT 1          /* two accumulators per output row */
#define EKX_ADD(a, b) _mm512_add_ps((a), (b))
#define EKX_ALLMASKED 1      /* masked loads cost as much as plain ones: no interior path */
#define ekx_ldf(p, m, f) _mm512_mask_loadu_ps((f), (m), (p))     /* f where masked off */
#define EKX_MUL(a, b) _mm512_mul_ps((a), (b))
#define ekx_hasnan(v) (_mm512_cmp_ps_mask((v), (v), _CMP_UNORD_Q) != 0)

/* ---- activations on registers: ek_act_row's loops where the register form is faster ----
   The scalar ek_expf / ek_normcdf (ek_common.h) with the same polynomials, and AVX-512's
   own tools: vscalefps for the 2^n of exp, rcp14 and one Newton step for the reciprocal
   (relative error ~1e-8).  Exact GELU 0.96 -> 0.67 ns per value here. */
#define EKX_FMAC(a, b, c) _mm512_fmadd_ps((a), (b), _mm512_set1_ps(c))

/* exp(x) for x in [-104, 89] (callers clamp); below -103.3 the result is 0. */
EK_INLINE __m512 EK_FN(ekx_exp_clamped)(__m512 x)
{
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    __m512 p = _mm512_set1_ps(EK_EXP_P5);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    EK_EXP_P(p, r, EKX_FMAC);
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* x Phi(x) as ek_normcdf; |x| / sqrt 2 is capped at 20 (Phi is 0 or 1 in float beyond, and
   the reciprocal's Newton step needs a finite operand).  NaN -> NaN through the last
   product; -inf -> NaN and +inf -> +inf as the scalar form. */
EK_INLINE __m512 EK_FN(ekx_gelu)(__m512 x)
{
    const __m512 z = _mm512_min_ps(
        _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752440f)),
        _mm512_set1_ps(20.0f));
    const __m512 d = EKX_FMAC(z, _mm512_set1_ps(0.5f), 1.0f);
    const __m512 t0 = _mm512_rcp14_ps(d);
    const __m512 t = _mm512_mul_ps(t0, _mm512_fnmadd_ps(d, t0, _mm512_set1_ps(2.0f)));
    __m512 p = _mm512_set1_ps(EK_NORMCDF_P9), q;
    __mmask16 neg;
    EK_NORMCDF_P(p, t, EKX_FMAC);
    p = _mm512_max_ps(_mm512_fnmadd_ps(z, z, p), _mm512_set1_ps(-104.0f));
    q = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), t), EK_FN(ekx_exp_clamped)(p));
    neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mul_ps(x, _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), q),
                                                 q));
}

/* y = act(x) for the activations done on registers here; 0: not one of them. */
#define EKX_ACT_ROW 1
EK_INLINE int EK_FN(ekx_act_row)(const float *x, float *y, ptrdiff_t n, int act)
{
    ptrdiff_t i;
    if (act != EK_ACT_GELU) return 0;
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, EK_FN(ekx_gelu)(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, m, EK_FN(ekx_gelu)(_mm512_maskz_loadu_ps(m, x + i)));
    }
    return 1;
}

/* Lanes lo <= l < hi (any ints; clamped to the vector). */
EK_INLINE EKX_M EK_FN(ekx_mask)(ptrdiff_t lo, ptrdiff_t hi)
{
    lo = EK_MAX(lo, 0);
    hi = EK_MIN(hi, EKX_VW);
    if (hi <= lo) return 0;
    return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* Even / odd floats of the 32 floats (a, b), both in the lane order of an in-lane shuffle
   (no lane-crossing permute per tap): output column order {0, 1, 8, 9, 2, 3, 10, 11, 4,
   5, 12, 13, 6, 7, 14, 15}; ekx_unperm restores the order of a result. */
EK_INLINE void EK_FN(ekx_deint)(EKX_V a, EKX_V b, EKX_V *e, EKX_V *o)
{
    *e = _mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *o = _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

EK_INLINE EKX_V EK_FN(ekx_unperm)(EKX_V v)
{
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15), v);
}

/* Reduction of a (the new value) into b (the running one): op 0 min, 1 max, 2 sum; for
   min / max `safe` propagates a NaN of either, else plain min / max (may drop a NaN). */
EK_INLINE EKX_V EK_FN(ekx_red)(const int op, const int safe, EKX_V a, EKX_V b)
{
    const int is_max = op == 1;
    if (op == 2) return _mm512_add_ps(a, b);
    if (safe) {
        /* lanes where a is a number: max(a, b) = a > b ? a : b keeps a NaN b; else a */
        const __mmask16 num = _mm512_cmp_ps_mask(a, a, _CMP_ORD_Q);
        return is_max ? _mm512_mask_max_ps(a, num, a, b) : _mm512_mask_min_ps(a, num, a, b);
    }
    return is_max ? _mm512_max_ps(a, b) : _mm512_min_ps(a, b);
}

/* _mm512_alignr_epi32(hi, lo, 2 m) for m = 1, 2 (the 5x5 kernel's column pairs).  The
   shift must be an immediate: a switch, folded away where the caller's loop is unrolled
   (-O2 and up), and still compiling at -O0 / -O1 (sanitizer builds). */
EK_INLINE __m512i EK_FN(ekx_alignr_2m)(__m512i hi, __m512i lo, int m)
{
    switch (m) {
    case 1: return _mm512_alignr_epi32(hi, lo, 2);
    default: return _mm512_alignr_epi32(hi, lo, 4);
    }
}

/* n lanes d[0..n) = src[0], src[sw], ... for sw 1 or 2 with masked loads / stores; 0 (did
   nothing) for other strides. */
#define EK_VEC_STRIDED_COPY 1
EK_INLINE int EK_FN(ek_vec_copy_strided)(float *EK_RESTRICT d, const float *EK_RESTRICT src,
                                         ptrdiff_t n, ptrdiff_t sw)
{
    ptrdiff_t i;
    if (sw == 1) {
        for (i = 0; i < n; i += 16) {
            const ptrdiff_t q = EK_MIN(16, n - i);
            const __mmask16 mk = (__mmask16)(q >= 16 ? 0xFFFF : (1u << q) - 1u);
            _mm512_mask_storeu_ps(d + i, mk, _mm512_maskz_loadu_ps(mk, src + i));
        }
        return 1;
    }
    if (sw == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22,
                                               24, 26, 28, 30);
        for (i = 0; i < n; i += 16) {
            const ptrdiff_t q = EK_MIN(16, n - i);      /* outputs; reads 2q - 1 floats */
            const ptrdiff_t r = 2 * q - 1;
            const __mmask16 m0 = (__mmask16)(r >= 16 ? 0xFFFF : (1u << r) - 1u);
            const __mmask16 m1 = (__mmask16)(r > 16 ? (1u << (r - 16)) - 1u : 0u);
            const __m512 lo = _mm512_maskz_loadu_ps(m0, src + 2 * i);
            const __m512 hi = _mm512_maskz_loadu_ps(m1, src + 2 * i + 16);
            const __mmask16 mk = (__mmask16)(q >= 16 ? 0xFFFF : (1u << q) - 1u);
            _mm512_mask_storeu_ps(d + i, mk, _mm512_permutex2var_ps(lo, even, hi));
        }
        return 1;
    }
    return 0;
}
