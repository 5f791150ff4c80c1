/*
 * f32/dwconv_neon.h - the depthwise row kernel for ARM NEON (aarch64): output rows in
 * pairs over the padded plane (ek_dw_pairs_s1 / _s2).
 *
 * Included by ek_conv.h (EK_ISA_FILE) once for the instruction set being compiled, after
 * the portable padded-plane kernel; EK_DWX says whether the x86 row kernel exists (no),
 * EK_DW_PAIRS whether the NEON row pairs do (yes).
 */
#define EK_DWX 0
#define EK_DW_PAIRS 1

/*
 * NEON (aarch64), maps of 2 rows or more: output rows in pairs.  An item is (row pair,
 * 4-column chunk) with two accumulators, top row and bottom row.  Input row `off` of a
 * pair is kernel row off / dh of the top window and (off - sh) / dh of the bottom one
 * (when whole and in range); a row both windows read (2 of the 4 rows of a 3x3 stride-1
 * pair) is loaded once and feeds both, so a 3x3 stride-1 tap costs 2/3 of a load instead
 * of 1.  EK_DW_NB items at a time: 8 independent FMA chains.  Stride-2
 * columns with one de-interleaving load (vld2q).  The simple activations (relu, relu6,
 * leaky_relu, clip, hardswish, hardsigmoid) are applied in registers.  An odd last row is
 * computed and not stored (ek_dw_fast sizes the padded plane for it).
 */
EK_INLINE float32x4_t EK_FN(ek_dw_ld)(const int S, const float *t)
{
    return S == 1 ? vld1q_f32(t) : vld2q_f32(t).val[0];
}

EK_INLINE void EK_FN(ek_dw_pairs)(const int S, const float *xp, const float *wp, float b,
                                  float *yp, const ek_geom3 *g, const ek_dw_geom *d, int act,
                                  float p0, float p1)
{
    enum { NB = EK_DW_NB, VW = EK_DW_VW };
    const ptrdiff_t P = d->P, KH = g->KH, KW = g->KW, sh = g->sh, dh = g->dh, dw = g->dw;
    const ptrdiff_t npr = (g->OH + 1) / 2, total = npr * d->cpr;
    const ptrdiff_t noff = sh + (KH - 1) * dh + 1;     /* input rows of a pair's windows */
    const int simple = EK_ACT_IS_SIMPLE(act);
    ptrdiff_t it, pr = 0, c = 0;     /* (pr, c): row pair and chunk of item `it` */
    for (it = 0; it < total; it += NB) {
        float32x4_t top[NB], bot[NB];
        const float *base[NB];
        ptrdiff_t off, kw, q, qpr = pr, qc = c;
        for (q = 0; q < NB; q++) {
            base[q] = xp + 2 * qpr * sh * P + S * qc * VW;
            top[q] = bot[q] = vdupq_n_f32(b);
            if (it + q + 1 < total && ++qc == d->cpr) { qc = 0; qpr++; }
        }
        for (off = 0; off < noff; off++) {
            /* kernel row of the top window (kt) and of the bottom one (kb) reading input
               row `off` of the pair, -1 if none */
            const ptrdiff_t ob = off - sh;
            const ptrdiff_t kt = off % dh == 0 && off / dh < KH ? off / dh : -1;
            const ptrdiff_t kb = ob >= 0 && ob % dh == 0 && ob / dh < KH ? ob / dh : -1;
            const ptrdiff_t ro = off * P;
            if (kt >= 0 && kb >= 0) {
                for (kw = 0; kw < KW; kw++) {
                    const float at = wp[kt * KW + kw], ab = wp[kb * KW + kw];
#pragma GCC unroll 4
                    for (q = 0; q < NB; q++) {
                        const float32x4_t x = EK_FN(ek_dw_ld)(S, base[q] + ro + kw * dw);
                        top[q] = vfmaq_n_f32(top[q], x, at);
                        bot[q] = vfmaq_n_f32(bot[q], x, ab);
                    }
                }
            } else if (kt >= 0) {
                for (kw = 0; kw < KW; kw++) {
                    const float a = wp[kt * KW + kw];
#pragma GCC unroll 4
                    for (q = 0; q < NB; q++)
                        top[q] = vfmaq_n_f32(top[q], EK_FN(ek_dw_ld)(S, base[q] + ro + kw * dw),
                                             a);
                }
            } else if (kb >= 0) {
                for (kw = 0; kw < KW; kw++) {
                    const float a = wp[kb * KW + kw];
#pragma GCC unroll 4
                    for (q = 0; q < NB; q++)
                        bot[q] = vfmaq_n_f32(bot[q], EK_FN(ek_dw_ld)(S, base[q] + ro + kw * dw),
                                             a);
                }
            }
        }
        /* (a fully unrolled loop: constant indices keep top / bot in registers) */
#pragma GCC unroll 4
        for (q = 0; q < NB; q++) {
            const ptrdiff_t ow = c * VW, n = EK_MIN(VW, g->OW - ow), oh = 2 * pr;
            float32x4_t t = top[q], u = bot[q];
            if (it + q >= total) continue;
            if (simple) {
                t = EK_FN(ek_act_neon)(t, act, p0, p1);
                u = EK_FN(ek_act_neon)(u, act, p0, p1);
            }
            EK_FN(ek_neon_st_part)(yp + oh * g->OW + ow, t, n);
            if (oh + 1 < g->OH) EK_FN(ek_neon_st_part)(yp + (oh + 1) * g->OW + ow, u, n);
            if (++c == d->cpr) { c = 0; pr++; }
        }
    }
}

static EK_NOINLINE void EK_FN(ek_dw_pairs_s1)(const float *xp, const float *wp, float b,
                                              float *yp, const ek_geom3 *g,
                                              const ek_dw_geom *d, int act, float p0, float p1)
{
    EK_FN(ek_dw_pairs)(1, xp, wp, b, yp, g, d, act, p0, p1);
}

static EK_NOINLINE void EK_FN(ek_dw_pairs_s2)(const float *xp, const float *wp, float b,
                                              float *yp, const ek_geom3 *g,
                                              const ek_dw_geom *d, int act, float p0, float p1)
{
    EK_FN(ek_dw_pairs)(2, xp, wp, b, yp, g, d, act, p0, p1);
}
