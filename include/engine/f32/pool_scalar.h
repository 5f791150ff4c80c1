/*
 * f32/pool_scalar.h - the max / min pooling plane kernel in portable GNU vectors
 * (EK_PL_VW lanes: also the AVX2 and AVX-512 variant's, wide vectors there).
 *
 * Included by ek_pool.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_pool_plane reduces every window of one padded plane (EK_PL_NB chunks of EK_PL_VW
 * outputs at a time, NaN-propagating as the general path).  It knows nothing of threads.
 */
/* One plane: xp is its padded copy, y its output. */
EK_INLINE void EK_FN(ek_pool_plane)(const int S, const int is_max, const float *xp,
                                    float *y, const ek_geom3 *g, ptrdiff_t P, ptrdiff_t cpr)
{
    enum { NB = EK_PL_NB, VW = EK_PL_VW };
    const ptrdiff_t total = g->OH * cpr;
    const float init = is_max ? -INFINITY : INFINITY;
    ptrdiff_t it, oh = 0, c = 0;
    for (it = 0; it < total; it += NB) {
        EK_FN(ek_pl_vf) acc[NB];
        const float *base[NB];
        ptrdiff_t kh, kw, q, qoh = oh, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + qoh * g->sh * P + S * qc * VW;
            acc[q] = (EK_FN(ek_pl_vf)){0} + init;
            if (it + q + 1 < total && ++qc == cpr) { qc = 0; qoh++; }
        }
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++) {
                const ptrdiff_t off = kh * g->dh * P + kw * g->dw;
                for (q = 0; q < NB; q++) {
                    const EK_FN(ek_pl_vf) v = EK_FN(ek_pl_load)(S, base[q] + off);
                    const EK_FN(ek_pl_vi) take = (is_max ? (v > acc[q]) : (v < acc[q])) |
                                                 (v != v);
                    acc[q] = (EK_FN(ek_pl_vf))(((EK_FN(ek_pl_vi))v & take) |
                                               ((EK_FN(ek_pl_vi))acc[q] & ~take));
                }
            }
        for (q = 0; q < NB && it + q < total; q++) {
            const ptrdiff_t ow = c * VW, n = EK_MIN(VW, g->OW - ow);
            float lanes[EK_PL_VW];
            ptrdiff_t t;
            memcpy(lanes, &acc[q], sizeof(lanes));
            for (t = 0; t < n; t++) y[oh * g->OW + ow + t] = lanes[t];
            if (++c == cpr) { c = 0; oh++; }
        }
    }
}
