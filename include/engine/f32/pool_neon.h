/*
 * f32/pool_neon.h - the max / min pooling plane kernel for ARM NEON (aarch64).
 *
 * Included by ek_pool.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_pool_plane reduces every window of one padded plane (EK_PL_NB chunks of EK_PL_VW
 * outputs at a time, NaN-propagating as the general path).  It knows nothing of threads.
 */
/* One plane: xp is its padded copy, y its output.  NEON: FMAX / FMIN return NaN when
   either operand is NaN, which is the (v > m || v != v) rule with a NaN running value
   never replaced, in one instruction; stride-2 taps with one de-interleaving load. */
EK_INLINE void EK_FN(ek_pool_plane)(const int S, const int is_max, const float *xp,
                                    float *y, const ek_geom3 *g, ptrdiff_t P, ptrdiff_t cpr)
{
    enum { NB = EK_PL_NB, VW = EK_PL_VW };
    const ptrdiff_t total = g->OH * cpr;
    const float init = is_max ? -INFINITY : INFINITY;
    ptrdiff_t it, oh = 0, c = 0;
    for (it = 0; it < total; it += NB) {
        float32x4_t acc[NB];
        const float *base[NB];
        ptrdiff_t kh, kw, q, qoh = oh, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + qoh * g->sh * P + S * qc * VW;
            acc[q] = vdupq_n_f32(init);
            if (it + q + 1 < total && ++qc == cpr) { qc = 0; qoh++; }
        }
        for (kh = 0; kh < g->KH; kh++)
            for (kw = 0; kw < g->KW; kw++) {
                const ptrdiff_t off = kh * g->dh * P + kw * g->dw;
#pragma GCC unroll 4
                for (q = 0; q < NB; q++) {
                    const float32x4_t v = S == 1 ? vld1q_f32(base[q] + off)
                                                 : vld2q_f32(base[q] + off).val[0];
                    acc[q] = is_max ? vmaxq_f32(acc[q], v) : vminq_f32(acc[q], v);
                }
            }
        /* (fully unrolled: constant indices keep acc in registers) */
#pragma GCC unroll 4
        for (q = 0; q < NB; q++) {
            const ptrdiff_t ow = c * VW;
            if (it + q >= total) continue;
            EK_FN(ek_neon_st_part)(y + oh * g->OW + ow, acc[q], EK_MIN(VW, g->OW - ow));
            if (++c == cpr) { c = 0; oh++; }
        }
    }
}
