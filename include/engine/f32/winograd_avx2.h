/*
 * f32/winograd_avx2.h - the row layer of the Winograd convolution for AVX2: the portable layer
 * (f32/winograd_scalar.h) with in-register deinterleave / interleave fast paths for F2 and F4.
 *
 * Included by ek_winograd.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_wg_tab (per-call tables), ek_wg_rowctx, ek_wg_load_row (one input row into the m + 2
 * phase vectors of VW tiles), ek_wg_store_row (m output phases back into a row with bias,
 * residual and activation) and ek_wg_put.
 */

/* (a[1..7], s): one tile further along the row */
EK_INLINE __m256 EK_FN(ek_wg_next8)(__m256 a, float s)
{
    const __m256i up = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0);
    return _mm256_blend_ps(_mm256_permutevar8x32_ps(a, up), _mm256_set1_ps(s), 0x80);
}

/* ph[c] lane l = src[m l + c] for m = 2 / 4 (src: m 8 + 2 floats) */
EK_INLINE void EK_FN(ek_wg_deint_avx2)(const int m, const float *src, wgv *ph)
{
    if (m == 2) {
        const __m256 z0 = _mm256_loadu_ps(src), z1 = _mm256_loadu_ps(src + 8);
        /* in-lane even / odd picks give tiles (0 1 4 5 | 2 3 6 7): swap the middle pairs */
        const __m256 ev = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(z0, z1, _MM_SHUFFLE(2, 0, 2, 0))),
            _MM_SHUFFLE(3, 1, 2, 0)));
        const __m256 od = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(z0, z1, _MM_SHUFFLE(3, 1, 3, 1))),
            _MM_SHUFFLE(3, 1, 2, 0)));
        ph[0] = (wgv)ev;
        ph[1] = (wgv)od;
        ph[2] = (wgv)EK_FN(ek_wg_next8)(ev, src[16]);
        ph[3] = (wgv)EK_FN(ek_wg_next8)(od, src[17]);
    } else {
        const __m256 z0 = _mm256_loadu_ps(src), z1 = _mm256_loadu_ps(src + 8);
        const __m256 z2 = _mm256_loadu_ps(src + 16), z3 = _mm256_loadu_ps(src + 24);
        /* rows = tiles (t | t + 4), columns = phases: a 4x4 transpose per 128-bit lane */
        const __m256 r0 = _mm256_permute2f128_ps(z0, z2, 0x20);
        const __m256 r1 = _mm256_permute2f128_ps(z0, z2, 0x31);
        const __m256 r2 = _mm256_permute2f128_ps(z1, z3, 0x20);
        const __m256 r3 = _mm256_permute2f128_ps(z1, z3, 0x31);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 p0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 p1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        ph[0] = (wgv)p0;
        ph[1] = (wgv)p1;
        ph[2] = (wgv)_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        ph[3] = (wgv)_mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        ph[4] = (wgv)EK_FN(ek_wg_next8)(p0, src[32]);
        ph[5] = (wgv)EK_FN(ek_wg_next8)(p1, src[33]);
    }
}

/* out[0 .. m) (8 floats each) = the pixels of o[c] lane l at m l + c, m = 2 / 4 */
EK_INLINE void EK_FN(ek_wg_inter_avx2)(const int m, const wgv *o, __m256 *out)
{
    if (m == 2) {
        const __m256 lo = _mm256_unpacklo_ps((__m256)o[0], (__m256)o[1]);
        const __m256 hi = _mm256_unpackhi_ps((__m256)o[0], (__m256)o[1]);
        out[0] = _mm256_permute2f128_ps(lo, hi, 0x20);
        out[1] = _mm256_permute2f128_ps(lo, hi, 0x31);
    } else {
        const __m256 t0 = _mm256_unpacklo_ps((__m256)o[0], (__m256)o[1]);
        const __m256 t1 = _mm256_unpackhi_ps((__m256)o[0], (__m256)o[1]);
        const __m256 t2 = _mm256_unpacklo_ps((__m256)o[2], (__m256)o[3]);
        const __m256 t3 = _mm256_unpackhi_ps((__m256)o[2], (__m256)o[3]);
        const __m256 r0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));   /* t | t+4 */
        const __m256 r1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
        const __m256 r2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
        const __m256 r3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
        out[0] = _mm256_permute2f128_ps(r0, r1, 0x20);
        out[1] = _mm256_permute2f128_ps(r2, r3, 0x20);
        out[2] = _mm256_permute2f128_ps(r0, r1, 0x31);
        out[3] = _mm256_permute2f128_ps(r2, r3, 0x31);
    }
}

EK_INLINE __m256i EK_FN(ek_wg_mask8)(ptrdiff_t n)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)EK_MAX(0, EK_MIN(8, n))), idx);
}

/* The fast paths the portable row layer takes first (EK_WG_ROW_FAST): 1 when done. */
#define EK_WG_ROW_FAST 1

EK_INLINE int EK_FN(ek_wg_load_fast)(const int m, const float *src, wgv *ph)
{
    if (m == 6) return 0;
    EK_FN(ek_wg_deint_avx2)(m, src, ph);
    return 1;
}

EK_INLINE int EK_FN(ek_wg_store_fast)(const int m, const wgv *o, float *y, const float *R,
                                      ptrdiff_t ncols, float bias, int act, float p0,
                                      float p1)
{
    const __m256 bv = _mm256_set1_ps(bias);
    const int simple = EK_ACT_IS_SIMPLE(act);
    __m256 out[4];
    ptrdiff_t q;
    if (m == 6) return 0;
    EK_FN(ek_wg_inter_avx2)(m, o, out);
    for (q = 0; 8 * q < ncols; q++) {
        __m256 r = _mm256_add_ps(out[q], bv);
        if (8 * q + 8 <= ncols) {
            if (R) r = _mm256_add_ps(r, _mm256_loadu_ps(R + 8 * q));
            if (simple) r = EK_FN(ek_act_v)(r, act, p0, p1);
            _mm256_storeu_ps(y + 8 * q, r);
        } else {
            const __m256i k = EK_FN(ek_wg_mask8)(ncols - 8 * q);
            if (R) r = _mm256_add_ps(r, _mm256_maskload_ps(R + 8 * q, k));
            if (simple) r = EK_FN(ek_act_v)(r, act, p0, p1);
            _mm256_maskstore_ps(y + 8 * q, k, r);
        }
    }
    if (!simple) EK_FN(ek_act_row)(y, y, ncols, act, p0, p1);
    return 1;
}

EK_INLINE int EK_FN(ek_wg_put_fast)(float *dst, wgv v, int len)
{
    if (len == EK_WG_VW) _mm256_storeu_ps(dst, (__m256)v);
    else _mm256_maskstore_ps(dst, EK_FN(ek_wg_mask8)(len), (__m256)v);
    return 1;
}

#include "winograd_scalar.h"
