/*
 * f32/winograd_avx512.h - the row layer of the Winograd convolution for AVX-512: permute
 * tables that deinterleave a row into its phases and interleave them back in registers.
 *
 * Included by ek_winograd.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_wg_tab (per-call tables), ek_wg_rowctx, ek_wg_load_row (one input row into the m + 2
 * phase vectors of VW tiles), ek_wg_store_row (m output phases back into a row with bias,
 * residual and activation) and ek_wg_put.
 */
/* ---- AVX-512: permute tables, row loads / stores ---- */
typedef struct {
    __m512i in_idx[6];           /* phase c: lane l <- element m l + c (mod 32) */
    __mmask16 in_msk[6][3];      /* ... from the register pair (2q, 2q + 1) */
    __m512i sh0, sh1;            /* phases m, m + 1: phase 0 / 1 moved down one lane */
    __m512i out_idx[6];          /* output vector q, lane e: element 16 q + e */
    __mmask16 out_msk[6][3];
} EK_FN(ek_wg_tab);

EK_INLINE void EK_FN(ek_wg_tab_init)(const int m, EK_FN(ek_wg_tab) *tb)
{
    int32_t idx[16];
    int c, l, q, pi;
    memset(tb, 0, sizeof(*tb));
    for (c = 0; c < m; c++) {
        for (l = 0; l < 16; l++) {
            const int e = m * l + c;
            idx[l] = e & 31;
            tb->in_msk[c][e >> 5] |= (__mmask16)(1u << l);
        }
        tb->in_idx[c] = _mm512_loadu_si512((const void *)idx);
    }
    for (l = 0; l < 15; l++) idx[l] = l + 1;
    idx[15] = 16;
    tb->sh0 = _mm512_loadu_si512((const void *)idx);
    idx[15] = 17;
    tb->sh1 = _mm512_loadu_si512((const void *)idx);
    for (q = 0; q < m; q++) {
        for (l = 0; l < 16; l++) {
            const int e = 16 * q + l, tile = e / m, ph = e % m;
            idx[l] = tile + 16 * (ph & 1);
            pi = ph >> 1;
            tb->out_msk[q][pi] |= (__mmask16)(1u << l);
        }
        tb->out_idx[q] = _mm512_loadu_si512((const void *)idx);
    }
}

/* Lanes [lo, hi) of 16 (clamped). */
EK_INLINE __mmask16 EK_FN(ek_wg_range)(ptrdiff_t lo, ptrdiff_t hi)
{
    unsigned a = (unsigned)EK_MAX(0, EK_MIN(16, lo)), b = (unsigned)EK_MAX(0, EK_MIN(16, hi));
    return b > a ? (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u)) : (__mmask16)0;
}

/* Where one segment's input rows are read: row offset x0 (may be negative) and, per
   16-float vector q <= m, the lanes inside [0, W) and inside the m len + 2 columns needed. */
typedef struct {
    ptrdiff_t x0;
    __mmask16 k[7];
} EK_FN(ek_wg_rowctx);

EK_INLINE void EK_FN(ek_wg_rowctx_init)(const int m, ptrdiff_t x0, ptrdiff_t W, int len,
                                        EK_FN(ek_wg_rowctx) *rc)
{
    const ptrdiff_t need = (ptrdiff_t)m * len + 2;
    int q;
    rc->x0 = x0;
    for (q = 0; q <= m; q++) {
        const ptrdiff_t s = x0 + 16 * q;
        rc->k[q] = EK_FN(ek_wg_range)(-s, EK_MIN(W - s, need - 16 * q));
    }
}

/* ph[c] lane l = row[x0 + m l + c], c < alpha (zero outside the context's lanes). */
EK_INLINE void EK_FN(ek_wg_load_row)(const int m, const float *row,
                                     const EK_FN(ek_wg_rowctx) *rc,
                                     const EK_FN(ek_wg_tab) *tb, wgv *ph)
{
    __m512 Z[7];
    int q, c;
    for (q = 0; q <= m; q++) {
        const __mmask16 k = rc->k[q];
        const float *src = row + rc->x0 + 16 * q;
        Z[q] = k == 0xFFFF ? _mm512_loadu_ps(src)
               : k ? _mm512_maskz_loadu_ps(k, src) : _mm512_setzero_ps();
    }
    for (c = 0; c < m; c++) {
        __m512 r = _mm512_permutex2var_ps(Z[0], tb->in_idx[c], Z[1]);
        for (q = 1; 2 * q < m; q++)
            r = _mm512_mask_mov_ps(r, tb->in_msk[c][q],
                                   _mm512_permutex2var_ps(Z[2 * q], tb->in_idx[c], Z[2 * q + 1]));
        ph[c] = (wgv)r;
    }
    ph[m] = (wgv)_mm512_permutex2var_ps((__m512)ph[0], tb->sh0, Z[m]);
    ph[m + 1] = (wgv)_mm512_permutex2var_ps((__m512)ph[1], tb->sh1, Z[m]);
}


/* Output row: o[c] lane l is the pixel at column x0 + m l + c; ncols valid columns.
   y = act(o + bias + R), stored. */
EK_INLINE void EK_FN(ek_wg_store_row)(const int m, const wgv *o, float *y, const float *R,
                                      ptrdiff_t ncols, float bias, int act, float p0,
                                      float p1, const EK_FN(ek_wg_tab) *tb)
{
    const __m512 bv = _mm512_set1_ps(bias);
    const int simple = EK_ACT_IS_SIMPLE(act);
    ptrdiff_t q;
    for (q = 0; 16 * q < ncols; q++) {
        const __mmask16 k = EK_FN(ek_wg_range)(0, ncols - 16 * q);
        __m512 r = _mm512_permutex2var_ps((__m512)o[0], tb->out_idx[q], (__m512)o[1]);
        int pi;
        for (pi = 1; 2 * pi < m; pi++)
            r = _mm512_mask_mov_ps(r, tb->out_msk[q][pi],
                                   _mm512_permutex2var_ps((__m512)o[2 * pi], tb->out_idx[q],
                                                          (__m512)o[2 * pi + 1]));
        r = _mm512_add_ps(r, bv);
        if (k == 0xFFFF) {
            if (R) r = _mm512_add_ps(r, _mm512_loadu_ps(R + 16 * q));
            if (simple) r = EK_FN(ek_act_v)(r, act, p0, p1);
            _mm512_storeu_ps(y + 16 * q, r);
        } else {
            if (R) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(k, R + 16 * q));
            if (simple) r = EK_FN(ek_act_v)(r, act, p0, p1);
            _mm512_mask_storeu_ps(y + 16 * q, k, r);
        }
    }
    if (!simple) EK_FN(ek_act_row)(y, y, ncols, act, p0, p1);
}

/* dst[0:len) = v */
EK_INLINE void EK_FN(ek_wg_put)(float *dst, wgv v, int len)
{
    if (len == 16) _mm512_storeu_ps(dst, (__m512)v);
    else _mm512_mask_storeu_ps(dst, EK_FN(ek_wg_range)(0, len), (__m512)v);
}
