/*
 * f32/winograd_scalar.h - the row layer of the Winograd convolution in portable C (GNU
 * vectors of EK_WG_VW lanes); the AVX2 and NEON variants use it too, AVX2 with its fast
 * paths (EK_WG_ROW_FAST).
 *
 * Included by ek_winograd.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_wg_tab (per-call tables), ek_wg_rowctx, ek_wg_load_row (one input row into the m + 2
 * phase vectors of VW tiles), ek_wg_store_row (m output phases back into a row with bias,
 * residual and activation) and ek_wg_put.
 */
/* ---- other levels: AVX2 shuffles for F2 / F4, staging buffers otherwise ---- */
typedef struct {
    int unused;
} EK_FN(ek_wg_tab);

EK_INLINE void EK_FN(ek_wg_tab_init)(const int m, EK_FN(ek_wg_tab) *tb)
{
    (void)m;
    tb->unused = 0;
}

typedef struct {
    ptrdiff_t x0, lo, hi;        /* row offset; columns [lo, hi) of the buffer are inside */
    int direct;                  /* all m VW + 2 columns inside the row: read it in place */
} EK_FN(ek_wg_rowctx);

EK_INLINE void EK_FN(ek_wg_rowctx_init)(const int m, ptrdiff_t x0, ptrdiff_t W, int len,
                                        EK_FN(ek_wg_rowctx) *rc)
{
    const ptrdiff_t nb = (ptrdiff_t)m * EK_WG_VW + 2;
    const ptrdiff_t need = (ptrdiff_t)m * len + 2;
    rc->x0 = x0;
    rc->lo = EK_MIN(nb, EK_MAX(0, -x0));
    rc->hi = EK_MAX(rc->lo, EK_MIN(EK_MIN(nb, need), W - x0));
    rc->direct = x0 >= 0 && x0 + nb <= W;
}


EK_INLINE void EK_FN(ek_wg_load_row)(const int m, const float *row,
                                     const EK_FN(ek_wg_rowctx) *rc,
                                     const EK_FN(ek_wg_tab) *tb, wgv *ph)
{
    enum { VW = EK_WG_VW };
    float buf[EK_WG_VW * 6 + 2];
    float tmp[8][EK_WG_VW];
    const ptrdiff_t nb = (ptrdiff_t)m * VW + 2, lo = rc->lo, hi = rc->hi;
    const float *src = row + rc->x0;
    ptrdiff_t j;
    int c, l;
    (void)tb;
    if (!rc->direct) {           /* zero-padded copy of the columns */
        for (j = 0; j < lo; j++) buf[j] = 0.0f;
        if (hi > lo) memcpy(buf + lo, row + rc->x0 + lo, (size_t)(hi - lo) * sizeof(float));
        for (j = hi; j < nb; j++) buf[j] = 0.0f;
        src = buf;
    }
#ifdef EK_WG_ROW_FAST
    if (EK_FN(ek_wg_load_fast)(m, src, ph)) return;
#endif
    for (c = 0; c < m + 2; c++) {
        for (l = 0; l < VW; l++) tmp[c][l] = src[m * l + c];
        memcpy(&ph[c], tmp[c], sizeof(wgv));
    }
}

EK_INLINE void EK_FN(ek_wg_store_row)(const int m, const wgv *o, float *y, const float *R,
                                      ptrdiff_t ncols, float bias, int act, float p0,
                                      float p1, const EK_FN(ek_wg_tab) *tb)
{
    enum { VW = EK_WG_VW };
    float tmp[6][EK_WG_VW];
    float buf[EK_WG_VW * 6];
    ptrdiff_t e;
    int c, l;
    (void)tb;
#ifdef EK_WG_ROW_FAST
    if (EK_FN(ek_wg_store_fast)(m, o, y, R, ncols, bias, act, p0, p1)) return;
#endif
    for (c = 0; c < m; c++) memcpy(tmp[c], &o[c], sizeof(wgv));
    for (l = 0; l < VW; l++)
        for (c = 0; c < m; c++) buf[m * l + c] = tmp[c][l];
    if (R) {
        for (e = 0; e < ncols; e++) y[e] = buf[e] + bias + R[e];
    } else {
        for (e = 0; e < ncols; e++) y[e] = buf[e] + bias;
    }
    EK_FN(ek_act_inplace)(y, ncols, act, p0, p1);
}

EK_INLINE void EK_FN(ek_wg_put)(float *dst, wgv v, int len)
{
#ifdef EK_WG_ROW_FAST
    if (EK_FN(ek_wg_put_fast)(dst, v, len)) return;
#endif
    if (len == EK_WG_VW) {
        memcpy(dst, &v, sizeof(wgv));
    } else {
        float tmp[EK_WG_VW];
        memcpy(tmp, &v, sizeof(wgv));
        memcpy(dst, tmp, (size_t)len * sizeof(float));
    }
}
