/*
 * ek_winograd.h - Winograd convolution F(m x m, 3 x 3), m = 2, 4 or 6, for 2-D 3x3 convs with
 * stride 1, dilation 1, groups 1 (NCHW float32, PyTorch weight layout), fused bias, residual
 * and activation.
 *
 * Per output tile of m x m pixels, with alpha = m + 2 and the alpha x alpha input patch d
 * starting at (m ty - ph, m tx - pw):
 *
 *     y_tile = A^T [ sum_cin (G g G^T) (.) (B^T d B) ] A            (.) elementwise
 *
 * i.e. one Cout x Cin GEMM per transform-domain position p = (i, j) (alpha^2 = 16 / 36 / 64
 * GEMMs), summed over Cin, instead of 9 * Cin multiply-adds per output pixel: a 2.25x (F2),
 * 4x (F4), 5.06x (F6) cut of the multiplies, paid for by the input / output transforms and
 * by lost precision (see the error note below).
 *
 * Layout and blocking
 *   - Weights are transformed once (ek_winograd_pack, in double, rounded once) into the
 *     packed-A format of the GEMM micro-kernel of this variant (ek_gemm.h): per position,
 *     MR-row panels of Cout x Cin, k-major (panel[cin][MR]).
 *   - Tiles (flattened over image, tile row, tile column) are processed in blocks of T tiles,
 *     T a multiple of the micro-kernel width NR, sized so that the transformed input block
 *     V (alpha^2 x Cin x T) stays in about half of L2.  V is written in the packed-B format
 *     (per position, NR-tile panels: panel[cin][NR]), so the micro-kernel reads it directly.
 *   - A task = one tile block and one range of output channels: input transform of the
 *     block (skipped when the same thread already transformed it), then for every position
 *     the GEMM of the range's MR-row panels into M (alpha^2 x mc x T, mc chosen so that M
 *     stays in L2), then the output transform of those channels straight into y.  Tasks
 *     are the tiles of one grid of the thread pool (taken one at a time); the output
 *     channels are split only when there are too few tile blocks to keep every thread busy.  Then (at 2+ threads)
 *     the input transforms run first, each block's channels shared among the threads,
 *     into one V per block that every task of the block reads.
 *   - Both transforms are vectorised across tiles: a "segment" is up to VW consecutive
 *     tiles of one tile row.  On AVX-512 an input row is read with (masked, zero-filling)
 *     loads and de-interleaved into the alpha column phases by two-source permutes; the
 *     output rows are re-interleaved the same way and written with masked stores, the bias,
 *     residual and the cheap activations applied in registers.  Padding and partial tiles
 *     (odd H / W) cost nothing extra: out-of-range input reads as zero, out-of-range outputs
 *     are never stored.  AVX2 does the same for F2 / F4 with in-lane 4x4 transposes
 *     (unpack / shuffle / permute2f128); the other cases use the same arithmetic (GNU
 *     vector extensions, or plain floats) with small staging buffers.
 *   - The position strides of V and M are odd multiples of 64 bytes (a power-of-two stride
 *     put the alpha^2 stores of a segment into one L1 set), and the input rows / output
 *     rows of the channel two ahead are prefetched (channel planes are far apart: the
 *     hardware prefetchers do not follow).
 *
 * Error.  The transforms are exact in real arithmetic; in float32 the rounding of V and
 * above all of the Cin-long accumulation of M is amplified by the output transform's
 * coefficients (up to 8 for F4, 32 for F6; U is computed in double and rounded once).
 * Measured against a float64 reference, max |y - ref| / (sum |w| * max |x|) stays below
 * 1.4e-7 (F2), 2e-6 (F4), 3.2e-6 (F6) (the im2col GEMM: 8.5e-8); relative to max |y| on
 * He-initialised layers: ~5e-7 (F2), ~1e-5 (F4), ~1.8e-5 (F6) against ~3e-7.
 * tests/test_winograd.py states and checks the bound per tile size at every ISA level.
 *
 * Preconditions are checked by the callers (pyx/conv.pxi); no function validates.
 */
#include "ek_common.h"
#include "ek_gemm.h"

/* ------------------------------------------------------------------ ISA-independent -- */
#ifndef EK_WINOGRAD_H
#define EK_WINOGRAD_H

/* Weight transform matrices G (alpha x 3), row-major, for m = 2, 4, 6. */
static const double ek_wg_G2[4 * 3] = {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1};
static const double ek_wg_G4[6 * 3] = {
    1.0 / 4, 0, 0,
    -1.0 / 6, -1.0 / 6, -1.0 / 6,
    -1.0 / 6, 1.0 / 6, -1.0 / 6,
    1.0 / 24, 1.0 / 12, 1.0 / 6,
    1.0 / 24, -1.0 / 12, 1.0 / 6,
    0, 0, 1};
static const double ek_wg_G6[8 * 3] = {
    1, 0, 0,
    -2.0 / 9, -2.0 / 9, -2.0 / 9,
    -2.0 / 9, 2.0 / 9, -2.0 / 9,
    1.0 / 90, 1.0 / 45, 2.0 / 45,
    1.0 / 90, -1.0 / 45, 2.0 / 45,
    32.0 / 45, 16.0 / 45, 8.0 / 45,
    32.0 / 45, -16.0 / 45, 8.0 / 45,
    0, 0, 1};

/* Blocking overrides for experiments (0: automatic): [0] tiles per block, [1] output
   channels per block, [2] force the channel split (1) or forbid it (-1). */
static ptrdiff_t ek_wg_tune[3] = {0, 0, 0};

/* Input prefetch distance (channels). */
#ifndef EK_WG_PFD
#define EK_WG_PFD 2
#endif
#if defined(__GNUC__)
#define EK_WG_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#define EK_WG_PREFETCHW(p) __builtin_prefetch((const void *)(p), 1, 3)
#else
#define EK_WG_PREFETCH(p) ((void)(p))
#define EK_WG_PREFETCHW(p) ((void)(p))
#endif

/* Most threads one call uses (bounds a per-thread table on the stack). */
#define EK_WG_MAXT 64
/* Most tiles per block (bounds the segment table on the stack). */
#define EK_WG_MAXTB 512

typedef struct {
    int32_t t, len;          /* first tile (block-local index) and number of tiles */
    int32_t n, ty, tx;       /* image, tile row, first tile column */
} ek_wg_seg;

#endif /* EK_WINOGRAD_H */

/* --------------------------------------------------------------- per ISA variant -- */
#ifndef EK_WINOGRAD_ISA
#define EK_WINOGRAD_ISA

#define EK_WG_VW (EK_VEXT ? EK_VW : 1)

#if EK_WG_VW > 1
typedef float EK_FN(ek_wg_vt) __attribute__((vector_size(EK_WG_VW * 4)));
#else
typedef float EK_FN(ek_wg_vt);
#endif
#define wgv EK_FN(ek_wg_vt)

/* Blocking of one call. */
typedef struct {
    int m, a, npos;              /* tile size, alpha = m + 2, positions alpha^2 */
    ptrdiff_t th, tw, ntiles;    /* tiles per image along H / W, in all */
    ptrdiff_t T, ntb;            /* tiles per block (multiple of NR), blocks */
    ptrdiff_t mc, ncb;           /* output channels per block (multiple of MR), blocks */
    int split;                   /* 1: a task is (tile block, channel block) */
    int shared;                  /* 1: V of every tile block transformed once, up front, by
                                    all threads (split tasks would each redo it) */
    ptrdiff_t ntasks;
    ptrdiff_t vps, mps;          /* position strides of V and M (floats) */
    ptrdiff_t vsz, msz, per;     /* floats: V block, M block, per thread (M only if shared) */
    int threads;
} EK_FN(ek_wg_plan_t);

/* Floats of the packed weights (per position: ceil(Cout / MR) MR-row panels of Cin); -1
   when that overflows or exceeds EK_SIZE_MAX. */
EK_API ptrdiff_t EK_FN(ek_winograd_pack_size)(ptrdiff_t Cout, ptrdiff_t Cin, int m)
{
    const ptrdiff_t a = m + 2;
    if (Cout < 0 || Cout > EK_SIZE_MAX) return -1;
    return ek_szadd(ek_szmul(ek_szmul(a * a, (Cout + EK_GEMM_MR - 1) / EK_GEMM_MR * EK_GEMM_MR),
                             Cin),
                    16);
}

/* U = G g G^T for every (cout, cin) of w (Cout x Cin x 3 x 3), in double, into buf
   (ek_winograd_pack_size floats), the packed-A panels of each position p = i * alpha + j. */
EK_API void EK_FN(ek_winograd_pack)(const float *w, ptrdiff_t Cout, ptrdiff_t Cin, int m,
                                    float *buf)
{
    const int a = m + 2;
    const double *G = m == 2 ? ek_wg_G2 : m == 4 ? ek_wg_G4 : ek_wg_G6;
    const ptrdiff_t MR = EK_GEMM_MR;
    const ptrdiff_t ustride = (Cout + MR - 1) / MR * MR * Cin;
    float *U = ek_align64(buf);
    ptrdiff_t co, ci;
    memset(U, 0, (size_t)(a * a * ustride) * sizeof(float));
    for (co = 0; co < Cout; co++)
        for (ci = 0; ci < Cin; ci++) {
            const float *g = w + (co * Cin + ci) * 9;
            double Gg[8][3];
            int i, j, k;
            for (i = 0; i < a; i++)
                for (k = 0; k < 3; k++)
                    Gg[i][k] = G[i * 3] * g[k] + G[i * 3 + 1] * g[3 + k] +
                               G[i * 3 + 2] * g[6 + k];
            for (i = 0; i < a; i++)
                for (j = 0; j < a; j++) {
                    const double u = Gg[i][0] * G[j * 3] + Gg[i][1] * G[j * 3 + 1] +
                                     Gg[i][2] * G[j * 3 + 2];
                    U[(i * a + j) * ustride + (co / MR) * Cin * MR + ci * MR + co % MR] =
                        (float)u;
                }
        }
}

/* A position stride of at least n floats that is an odd multiple of 16 floats (64 bytes):
   the alpha^2 vectors of one tile segment, one per position, then fall into different L1
   sets (power-of-two strides put all 36 into one set: constant L1 misses, 4K aliasing). */
EK_INLINE ptrdiff_t EK_FN(ek_wg_odd_stride)(ptrdiff_t n)
{
    n = EK_ROUND16(n);
    return (n / 16) % 2 ? n : n + 16;
}

EK_INLINE EK_FN(ek_wg_plan_t) EK_FN(ek_wg_plan)(ptrdiff_t N, ptrdiff_t Cin, ptrdiff_t Cout,
                                                ptrdiff_t OH, ptrdiff_t OW, int m,
                                                int nthreads)
{
    EK_FN(ek_wg_plan_t) p;
    const ptrdiff_t MR = EK_GEMM_MR, NR = EK_GEMM_NR;
    const ptrdiff_t coutr = (Cout + MR - 1) / MR * MR;
    ptrdiff_t l2, k, kmax, want;
    memset(&p, 0, sizeof(p));
    if (ek_gemm_l1_bytes == 0) ek_gemm_init_caches();
    l2 = ek_gemm_l2_bytes;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > EK_WG_MAXT) nthreads = EK_WG_MAXT;
    p.m = m;
    p.a = m + 2;
    p.npos = p.a * p.a;
    p.th = (OH + m - 1) / m;
    p.tw = (OW + m - 1) / m;
    p.ntiles = N * p.th * p.tw;
    /* tile block: V (npos x Cin x T floats) in about half of L2, 1 to 4 NR panels */
    k = (l2 / 2) / ((ptrdiff_t)p.npos * Cin * NR * 4);
    kmax = (EK_WG_MAXTB / NR) < 4 ? (EK_WG_MAXTB / NR) : 4;
    k = EK_MAX(1, EK_MIN(k, kmax));
    k = EK_MIN(k, (p.ntiles + NR - 1) / NR);
    while (k > 1 && (p.ntiles + k * NR - 1) / (k * NR) < 2 * nthreads) k--;
    if (ek_wg_tune[0] > 0) k = EK_MAX(1, EK_MIN(kmax, (ek_wg_tune[0] + NR - 1) / NR));
    p.T = k * NR;
    p.ntb = (p.ntiles + p.T - 1) / p.T;
    /* channel block: M (npos x mc x T floats) in about a quarter of L2 */
    p.mc = (l2 / 4) / ((ptrdiff_t)p.npos * p.T * 4) / MR * MR;
    p.mc = EK_MAX(MR, EK_MIN(p.mc, coutr));
    /* too few tile blocks for the threads: split the output channels too */
    want = (4 * (ptrdiff_t)nthreads + p.ntb - 1) / p.ntb;
    p.split = nthreads > 1 && p.ntb < 4 * nthreads;
    if (ek_wg_tune[2]) p.split = ek_wg_tune[2] > 0;
    if (p.split && want > 1) {
        const ptrdiff_t mcs = ((Cout + want - 1) / want + MR - 1) / MR * MR;
        if (mcs < p.mc) p.mc = EK_MAX(MR, mcs);
    }
    if (ek_wg_tune[1] > 0) p.mc = EK_MAX(MR, EK_MIN(coutr, (ek_wg_tune[1] + MR - 1) / MR * MR));
    p.ncb = (Cout + p.mc - 1) / p.mc;
    p.mc = ((Cout + p.ncb - 1) / p.ncb + MR - 1) / MR * MR;    /* balanced */
    p.ntasks = p.split ? p.ntb * p.ncb : p.ntb;
    p.threads = ek_nthreads(nthreads, p.ntasks);
    p.vps = EK_FN(ek_wg_odd_stride)(Cin * p.T);
    p.mps = EK_FN(ek_wg_odd_stride)(p.mc * p.T);
    p.vsz = (ptrdiff_t)p.npos * p.vps;
    p.msz = (ptrdiff_t)p.npos * p.mps + EK_WG_VW;               /* slack: full-vector reads */
    /* Split tasks of one tile block run on different threads, and each thread
       transformed the block's input for itself: with one tile block (ResNet-50's 14 x 14
       layers) every thread redid all of it.  Transform every block once instead, the
       channels shared among the threads, into one V for all. */
    p.shared = p.split && p.threads > 1;
    p.per = (p.shared ? 0 : EK_ROUND16(p.vsz)) + EK_ROUND16(p.msz);
    return p;
}

/* The workspace of a call on exactly `nthreads` threads (see ek_winograd_workspace). */
EK_INLINE ptrdiff_t EK_FN(ek_winograd_workspace_exact)(ptrdiff_t N, ptrdiff_t Cin,
                                                       ptrdiff_t Cout, ptrdiff_t OH,
                                                       ptrdiff_t OW, int m, int nthreads)
{
    EK_FN(ek_wg_plan_t) p;
    ptrdiff_t tiles;
    if (N < 1 || Cin < 1 || Cout < 1 || OH < 1 || OW < 1 || N > EK_DIM_MAX ||
        Cin > EK_DIM_MAX || Cout > EK_DIM_MAX || OH > EK_DIM_MAX || OW > EK_DIM_MAX)
        return -1;
    /* the plan's tile count N th tw, and V's Cin T per position, must not wrap */
    tiles = ek_szmul(ek_szmul(N, (OH + m - 1) / m), (OW + m - 1) / m);
    if (tiles < 0 || ek_szmul(Cin, 4 * EK_WG_MAXTB) < 0) return -1;
    p = EK_FN(ek_wg_plan)(N, Cin, Cout, OH, OW, m, nthreads);
    return ek_szadd(ek_szadd(ek_szmul(p.threads, p.per),
                             p.shared ? ek_szmul(p.ntb, ek_szround16(p.vsz)) : 0),
                    16);
}

/* Floats of workspace ek_conv2d_winograd needs on nthreads threads or fewer (the runtime
   may cap a call's threads, ek_parallel_threads; the tiling, and so the workspace, follows
   the count): -1 when a size overflows or exceeds EK_SIZE_MAX; the sizes are those
   ek_wg_plan takes, each in [1, EK_DIM_MAX]. */
EK_API ptrdiff_t EK_FN(ek_winograd_workspace)(ptrdiff_t N, ptrdiff_t Cin, ptrdiff_t Cout,
                                              ptrdiff_t OH, ptrdiff_t OW, int m, int nthreads)
{
    ptrdiff_t most = 0;
    int t;
    if (nthreads > EK_WG_MAXT) nthreads = EK_WG_MAXT;
    for (t = 1; t <= EK_MAX(nthreads, 1); t++) {
        const ptrdiff_t need = EK_FN(ek_winograd_workspace_exact)(N, Cin, Cout, OH, OW, m, t);
        if (need < 0) return need;
        if (need > most) most = need;
    }
    return most;
}

/* The blocking a call would use: out[0..6] = tiles, tiles per block, blocks, output
   channels per block, channel blocks, tasks, threads (for cost models and tests). */
EK_API void EK_FN(ek_winograd_blocking)(ptrdiff_t N, ptrdiff_t Cin, ptrdiff_t Cout,
                                        ptrdiff_t OH, ptrdiff_t OW, int m, int nthreads,
                                        ptrdiff_t *out)
{
    EK_FN(ek_wg_plan_t) p = EK_FN(ek_wg_plan)(N, Cin, Cout, OH, OW, m, nthreads);
    out[0] = p.ntiles;
    out[1] = p.T;
    out[2] = p.ntb;
    out[3] = p.mc;
    out[4] = p.ncb;
    out[5] = p.ntasks;
    out[6] = p.threads;
}

/* ------------------------------------------------------------- transforms -- */

/* t = B^T d (alpha entries): the 1-D input transform. */
EK_INLINE void EK_FN(ek_wg_bt)(const int m, const wgv *d, wgv *t)
{
    if (m == 2) {
        t[0] = d[0] - d[2];
        t[1] = d[1] + d[2];
        t[2] = d[2] - d[1];
        t[3] = d[1] - d[3];
    } else if (m == 4) {
        const wgv a = d[4] - d[2], b = d[1] - d[3];
        const wgv c = d[3] + d[4], e = d[1] + d[2];
        const wgv f = d[4] - d[3], g = d[1] - d[2];
        t[0] = d[0] * 4.0f - d[2] * 5.0f + d[4];
        t[1] = c - e * 4.0f;
        t[2] = f + g * 4.0f;
        t[3] = a - b * 2.0f;
        t[4] = a + b * 2.0f;
        t[5] = d[1] * 4.0f - d[3] * 5.0f + d[5];
    } else {
        const wgv p = d[2] + d[6] - d[4] * 4.25f;
        const wgv q = d[1] + d[5] - d[3] * 4.25f;
        const wgv r = d[6] + d[2] * 0.25f - d[4] * 1.25f;
        const wgv s = d[1] * 0.5f - d[3] * 2.5f + d[5] * 2.0f;
        const wgv u = d[6] + (d[2] - d[4] * 1.25f) * 4.0f;
        const wgv v = d[1] * 2.0f - d[3] * 2.5f + d[5] * 0.5f;
        t[0] = d[0] - d[6] + (d[4] - d[2]) * 5.25f;
        t[1] = p + q;
        t[2] = p - q;
        t[3] = r + s;
        t[4] = r - s;
        t[5] = u + v;
        t[6] = u - v;
        t[7] = d[7] - d[1] + (d[3] - d[5]) * 5.25f;
    }
}

/* o = A^T s (m entries): the 1-D output transform. */
EK_INLINE void EK_FN(ek_wg_at)(const int m, const wgv *s, wgv *o)
{
    if (m == 2) {
        o[0] = s[0] + s[1] + s[2];
        o[1] = s[1] - s[2] - s[3];
    } else if (m == 4) {
        const wgv a = s[1] + s[2], b = s[1] - s[2];
        const wgv c = s[3] + s[4], d = s[3] - s[4];
        o[0] = s[0] + a + c;
        o[1] = b + d * 2.0f;
        o[2] = a + c * 4.0f;
        o[3] = b + d * 8.0f + s[5];
    } else {
        const wgv a = s[1] + s[2], b = s[1] - s[2];
        const wgv c = s[3] + s[4], d = s[3] - s[4];
        const wgv e = s[5] + s[6], f = s[5] - s[6];
        o[0] = s[0] + a + c + e;
        o[1] = b + d * 2.0f + f * 0.5f;
        o[2] = a + c * 4.0f + e * 0.25f;
        o[3] = b + d * 8.0f + f * 0.125f;
        o[4] = a + c * 16.0f + e * 0.0625f;
        o[5] = b + d * 32.0f + f * 0.03125f + s[7];
    }
}

/* The row layer of this instruction set: f32/winograd_<isa>.h. */
#include EK_ISA_FILE(f32, winograd)

/*
 * Input transform of one segment (len <= VW tiles of one tile row, block-local first tile
 * t) of one channel plane xc (H x W), rows y0 .. y0 + alpha - 1 of which [i0, i1) are inside:
 * V[p][panel(t)][cin][t % NR] for every position p.  vdst points at position 0, lane 0
 * (V + panel offset + cin * NR + t % NR); pstride is the position stride.
 */
EK_INLINE void EK_FN(ek_wg_in_seg)(const int m, const float *xc, ptrdiff_t W, ptrdiff_t y0,
                                   int i0, int i1, const EK_FN(ek_wg_rowctx) *rc, int len,
                                   float *vdst, ptrdiff_t pstride,
                                   const EK_FN(ek_wg_tab) *tb)
{
    const int a = m + 2;
    wgv d[8], t[8][8], v[8];
    int i, j, k;
    for (i = 0; i < a; i++) {
        if (i < i0 || i >= i1) {
            for (j = 0; j < a; j++) t[i][j] = (wgv){0};
            continue;
        }
        EK_FN(ek_wg_load_row)(m, xc + (y0 + i) * W, rc, tb, d);
        EK_FN(ek_wg_bt)(m, d, t[i]);
    }
    for (j = 0; j < a; j++) {
        for (i = 0; i < a; i++) d[i] = t[i][j];
        EK_FN(ek_wg_bt)(m, d, v);
        for (k = 0; k < a; k++) EK_FN(ek_wg_put)(vdst + (k * a + j) * pstride, v[k], len);
    }
}

/*
 * Output transform of one segment for one output channel: M[p] at msrc + p * pstride
 * (lanes = the segment's tiles), y plane yc (OH x OW) and residual plane rc (or NULL).
 */
EK_INLINE void EK_FN(ek_wg_out_seg)(const int m, const float *msrc, ptrdiff_t pstride,
                                    float *yc, const float *rc, ptrdiff_t OH, ptrdiff_t OW,
                                    ptrdiff_t y0, ptrdiff_t x0, int len, float bias, int act,
                                    float p0, float p1, const EK_FN(ek_wg_tab) *tb)
{
    const int a = m + 2;
    const ptrdiff_t ncols = EK_MIN((ptrdiff_t)m * len, OW - x0);
    wgv mm[8], s[8][6], o[6][6], col[6];
    int i, j, c, r;
    for (i = 0; i < a; i++) {
        for (j = 0; j < a; j++) memcpy(&mm[j], msrc + (i * a + j) * pstride, sizeof(wgv));
        EK_FN(ek_wg_at)(m, mm, s[i]);
    }
    for (c = 0; c < m; c++) {
        for (i = 0; i < a; i++) mm[i] = s[i][c];
        EK_FN(ek_wg_at)(m, mm, col);
        for (r = 0; r < m; r++) o[r][c] = col[r];
    }
    for (r = 0; r < m && y0 + r < OH; r++) {
        const ptrdiff_t off = (y0 + r) * OW + x0;
        EK_FN(ek_wg_store_row)(m, o[r], yc + off, rc ? rc + off : NULL, ncols, bias, act, p0,
                               p1, tb);
    }
}

/* The segments of tile block b (tiles b T .. b T + cnt - 1): runs of <= VW tiles of one
   tile row that do not cross an NR panel.  Returns their number. */
EK_INLINE int EK_FN(ek_wg_segments)(const EK_FN(ek_wg_plan_t) *p, ptrdiff_t b, ptrdiff_t cnt,
                                    ek_wg_seg *seg)
{
    const ptrdiff_t per_img = p->th * p->tw;
    ptrdiff_t t = 0;
    int ns = 0;
    while (t < cnt) {
        const ptrdiff_t g = b * p->T + t;
        const ptrdiff_t n = g / per_img, rem = g % per_img;
        const ptrdiff_t ty = rem / p->tw, tx = rem % p->tw;
        ptrdiff_t len = EK_MIN((ptrdiff_t)EK_WG_VW, p->tw - tx);
        len = EK_MIN(len, cnt - t);
        len = EK_MIN(len, EK_GEMM_NR - t % EK_GEMM_NR);
        seg[ns].t = (int32_t)t;
        seg[ns].len = (int32_t)len;
        seg[ns].n = (int32_t)n;
        seg[ns].ty = (int32_t)ty;
        seg[ns].tx = (int32_t)tx;
        ns++;
        t += len;
    }
    return ns;
}

/* One task: tile block b (its V already transformed into V), output channels [c0, c1). */
EK_INLINE void EK_FN(ek_wg_task)(const int m, const EK_FN(ek_wg_plan_t) *p, const float *U,
                                 const float *V, float *Mb, const ek_wg_seg *seg, int ns,
                                 ptrdiff_t cnt, ptrdiff_t Cin, ptrdiff_t Cout, ptrdiff_t c0,
                                 ptrdiff_t c1, const float *bias, const float *R, float *y,
                                 ptrdiff_t OH, ptrdiff_t OW, int act, float p0, float p1,
                                 const EK_FN(ek_wg_tab) *tb)
{
    const ptrdiff_t MR = EK_GEMM_MR, NR = EK_GEMM_NR, T = p->T;
    const ptrdiff_t ustride = (Cout + MR - 1) / MR * MR * Cin;
    const ptrdiff_t mstride = p->mps;           /* M position stride */
    const ptrdiff_t plane = OH * OW;
    ek_gemm_epi e;
    ptrdiff_t cb0, pos, ir, jp, co;
    int s;
    memset(&e, 0, sizeof(e));
    for (cb0 = c0; cb0 < c1; cb0 += p->mc) {
        const ptrdiff_t cb1 = EK_MIN(c1, cb0 + p->mc);
        for (pos = 0; pos < p->npos; pos++) {
            const float *Up = U + pos * ustride;
            const float *Vp = V + pos * p->vps;
            float *Mp = Mb + pos * mstride;
            for (ir = cb0; ir < cb1; ir += MR) {
                const ptrdiff_t rows = EK_MIN(MR, cb1 - ir);
                const float *ap = Up + (ir / MR) * Cin * MR;
                for (jp = 0; jp * NR < cnt; jp++)
                    EK_FN(ek_gemm_tile)(rows, EK_MIN(NR, cnt - jp * NR), Cin, ap,
                                        Vp + jp * Cin * NR, Mp + (ir - cb0) * T + jp * NR, T,
                                        0, 1, &e);
            }
        }
        for (co = cb0; co < cb1; co++) {
            const float bv = bias ? bias[co] : 0.0f;
            for (s = 0; s < ns; s++) {
                const ek_wg_seg *sg = &seg[s];
                const ptrdiff_t off = ((ptrdiff_t)sg->n * Cout + co) * plane;
                if (co + EK_WG_PFD < cb1) {      /* the output rows EK_WG_PFD channels on */
                    const ptrdiff_t r1 = EK_MIN((ptrdiff_t)m, OH - (ptrdiff_t)sg->ty * m);
                    const ptrdiff_t x0 = (ptrdiff_t)sg->tx * m;
                    const ptrdiff_t nc = EK_MIN((ptrdiff_t)m * sg->len, OW - x0);
                    const ptrdiff_t po = off + EK_WG_PFD * plane + (ptrdiff_t)sg->ty * m * OW + x0;
                    ptrdiff_t r, c;
                    for (r = 0; r < r1; r++)
                        for (c = 0; c < nc; c += 16) {
                            EK_WG_PREFETCHW(y + po + r * OW + c);
                            if (R) EK_WG_PREFETCH(R + po + r * OW + c);
                        }
                }
                EK_FN(ek_wg_out_seg)(m, Mb + (co - cb0) * T + sg->t, mstride, y + off,
                                     R ? R + off : NULL, OH, OW, (ptrdiff_t)sg->ty * m,
                                     (ptrdiff_t)sg->tx * m, sg->len, bv, act, p0, p1, tb);
            }
        }
    }
}

/* Input transform of the segments of one tile block, input channels [ca, cb), into V. */
EK_INLINE void EK_FN(ek_wg_input)(const int m, const EK_FN(ek_wg_plan_t) *p, const float *x,
                                  float *V, const ek_wg_seg *seg, int ns, ptrdiff_t Cin,
                                  ptrdiff_t ca, ptrdiff_t cb, ptrdiff_t H, ptrdiff_t W,
                                  ptrdiff_t ph, ptrdiff_t pw, const EK_FN(ek_wg_tab) *tb)
{
    const ptrdiff_t NR = EK_GEMM_NR;
    const ptrdiff_t pstride = p->vps;
    ptrdiff_t ci;
    int s;
    for (s = 0; s < ns; s++) {
        const ek_wg_seg *sg = &seg[s];
        const ptrdiff_t y0 = (ptrdiff_t)sg->ty * m - ph;
        const int i0 = (int)EK_MIN(m + 2, EK_MAX(0, -y0));
        const int i1 = (int)EK_MAX(i0, EK_MIN(m + 2, H - y0));
        const float *xs = x + (ptrdiff_t)sg->n * Cin * H * W;
        float *vs = V + (sg->t / NR) * Cin * NR + sg->t % NR;
        /* the rows' cache lines, prefetched EK_WG_PFD channels ahead (the channel planes
           are far apart: the hardware prefetchers do not follow) */
        const ptrdiff_t c0 = EK_MAX(0, (ptrdiff_t)sg->tx * m - pw);
        const ptrdiff_t c1 = EK_MIN(W, (ptrdiff_t)sg->tx * m - pw + (ptrdiff_t)m * sg->len + 2);
        EK_FN(ek_wg_rowctx) rc;
        EK_FN(ek_wg_rowctx_init)(m, (ptrdiff_t)sg->tx * m - pw, W, sg->len, &rc);
        for (ci = ca; ci < cb; ci++) {
            if (ci + EK_WG_PFD < cb && c1 > c0) {
                const float *pf = xs + (ci + EK_WG_PFD) * H * W + (y0 + i0) * W;
                int i;
                ptrdiff_t c;
                for (i = i0; i < i1; i++, pf += W) {
                    for (c = c0; c < c1; c += 16) EK_WG_PREFETCH(pf + c);
                    EK_WG_PREFETCH(pf + c1 - 1);
                }
            }
            EK_FN(ek_wg_in_seg)(m, xs + ci * H * W, W, y0, i0, i1, &rc, sg->len,
                                vs + ci * NR, pstride, tb);
        }
    }
}

/* Everything one call's tasks share. */
typedef struct {
    const float *x, *U, *bias, *R;
    float *y, *ws;
    ptrdiff_t Cin, Cout, H, W, OH, OW, ph, pw;
    int act;
    float p0, p1;
    ptrdiff_t *last;             /* per thread: the tile block its V holds, or -1 */
    float *vshared;              /* p.shared: V of tile block b at b * ROUND16(vsz) */
    ptrdiff_t nq;                /* p.shared: channel chunks per tile block's transform */
} EK_FN(ek_wg_args);

/* One task (tile block, channel range) on thread tid. */
EK_INLINE void EK_FN(ek_wg_run)(const int m, const EK_FN(ek_wg_plan_t) *p,
                                const EK_FN(ek_wg_args) *g, ptrdiff_t task, int tid)
{
    const ptrdiff_t b = p->split ? task / p->ncb : task;
    const ptrdiff_t cnt = EK_MIN(p->T, p->ntiles - b * p->T);
    float *const own = g->ws + (ptrdiff_t)tid * p->per;
    float *V = p->shared ? g->vshared + b * EK_ROUND16(p->vsz) : own;
    float *Mb = p->shared ? own : own + EK_ROUND16(p->vsz);
    ptrdiff_t c0 = 0, c1 = g->Cout;
    ek_wg_seg seg[EK_WG_MAXTB];
    EK_FN(ek_wg_tab) tb;
    int ns;
    EK_FN(ek_wg_tab_init)(m, &tb);
    ns = EK_FN(ek_wg_segments)(p, b, cnt, seg);
    if (!p->shared && g->last[tid] != b) {
        EK_FN(ek_wg_input)(m, p, g->x, V, seg, ns, g->Cin, 0, g->Cin, g->H, g->W, g->ph,
                           g->pw, &tb);
        g->last[tid] = b;
    }
    if (p->split) {
        c0 = (task % p->ncb) * p->mc;
        c1 = EK_MIN(g->Cout, c0 + p->mc);
    }
    EK_FN(ek_wg_task)(m, p, g->U, V, Mb, seg, ns, cnt, g->Cin, g->Cout, c0, c1, g->bias, g->R,
                      g->y, g->OH, g->OW, g->act, g->p0, g->p1, &tb);
}

/* p.shared: item (tile block, channel chunk) of the up-front input transform. */
EK_INLINE void EK_FN(ek_wg_prep)(const int m, const EK_FN(ek_wg_plan_t) *p,
                                 const EK_FN(ek_wg_args) *g, ptrdiff_t item)
{
    const ptrdiff_t b = item / g->nq, q = item % g->nq;
    const ptrdiff_t cnt = EK_MIN(p->T, p->ntiles - b * p->T);
    ek_wg_seg seg[EK_WG_MAXTB];
    EK_FN(ek_wg_tab) tb;
    int ns;
    EK_FN(ek_wg_tab_init)(m, &tb);
    ns = EK_FN(ek_wg_segments)(p, b, cnt, seg);
    EK_FN(ek_wg_input)(m, p, g->x, g->vshared + b * EK_ROUND16(p->vsz), seg, ns, g->Cin,
                       q * g->Cin / g->nq, (q + 1) * g->Cin / g->nq, g->H, g->W, g->ph, g->pw,
                       &tb);
}

/* One specialisation per tile size (the transforms fully unrolled). */
#define EK_WG_RUN_DEF(M_)                                                                 \
    static EK_NOINLINE void EK_FN(ek_wg_run_##M_)(const EK_FN(ek_wg_plan_t) *p,            \
                                                  const EK_FN(ek_wg_args) *g, ptrdiff_t task, \
                                                  int tid)                                 \
    {                                                                                     \
        EK_FN(ek_wg_run)(M_, p, g, task, tid);                                            \
    }                                                                                     \
    static EK_NOINLINE void EK_FN(ek_wg_prep_##M_)(const EK_FN(ek_wg_plan_t) *p,           \
                                                   const EK_FN(ek_wg_args) *g, ptrdiff_t item) \
    {                                                                                     \
        EK_FN(ek_wg_prep)(M_, p, g, item);                                                \
    }
EK_WG_RUN_DEF(2) EK_WG_RUN_DEF(4) EK_WG_RUN_DEF(6)
#undef EK_WG_RUN_DEF

typedef struct {
    const EK_FN(ek_wg_plan_t) *p;
    const EK_FN(ek_wg_args) *g;
    int m;
} EK_FN(ek_wg_job);

/* Item t (tile block, channel chunk) of the shared input transform. */
static void EK_FN(ek_wg_prep_tile)(void *ctx, ptrdiff_t t, int worker)
{
    const EK_FN(ek_wg_job) *j = (const EK_FN(ek_wg_job) *)ctx;
    (void)worker;
    if (j->m == 2) EK_FN(ek_wg_prep_2)(j->p, j->g, t);
    else if (j->m == 4) EK_FN(ek_wg_prep_4)(j->p, j->g, t);
    else EK_FN(ek_wg_prep_6)(j->p, j->g, t);
}

/* Task t (tile block, output channel block); worker picks its scratch. */
static void EK_FN(ek_wg_run_tile)(void *ctx, ptrdiff_t t, int worker)
{
    const EK_FN(ek_wg_job) *j = (const EK_FN(ek_wg_job) *)ctx;
    if (j->m == 2) EK_FN(ek_wg_run_2)(j->p, j->g, t, worker);
    else if (j->m == 4) EK_FN(ek_wg_run_4)(j->p, j->g, t, worker);
    else EK_FN(ek_wg_run_6)(j->p, j->g, t, worker);
}

/*
 * y = act(conv3x3(x, w) + bias + R), stride 1, dilation 1, groups 1, by Winograd F(m, 3).
 *   x: N x Cin x H x W;  U: ek_winograd_pack(w, Cout, Cin, m) of this variant;
 *   bias: Cout or NULL;  R: N x Cout x OH x OW or NULL (added before the activation);
 *   y: N x Cout x OH x OW, write-only; pad_begin (ph, pw) >= 0 (the end padding is implied
 *   by OH, OW: input outside [0, H) x [0, W) reads as zero).
 * Preconditions: m in {2, 4, 6}; all sizes >= 1; y overlaps none of x, U, bias, R, work;
 * work has ek_winograd_workspace(N, Cin, Cout, OH, OW, m, nthreads) floats.
 */
EK_API void EK_FN(ek_conv2d_winograd)(const float *x, const float *U, const float *bias,
                                      const float *R, float *y, ptrdiff_t N, ptrdiff_t Cin,
                                      ptrdiff_t Cout, ptrdiff_t H, ptrdiff_t W, ptrdiff_t OH,
                                      ptrdiff_t OW, ptrdiff_t ph, ptrdiff_t pw, int m, int act,
                                      float p0, float p1, float *work, int nthreads)
{
    const EK_FN(ek_wg_plan_t) p = EK_FN(ek_wg_plan)(N, Cin, Cout, OH, OW, m, nthreads);
    ptrdiff_t last[EK_WG_MAXT];
    EK_FN(ek_wg_args) g;
    EK_FN(ek_wg_job) job;
    int i;
    for (i = 0; i < EK_WG_MAXT; i++) last[i] = -1;
    g.x = x;
    g.U = ek_align64((float *)U);
    g.bias = bias;
    g.R = R;
    g.y = y;
    g.ws = ek_align64(work);
    g.Cin = Cin; g.Cout = Cout; g.H = H; g.W = W; g.OH = OH; g.OW = OW; g.ph = ph; g.pw = pw;
    g.act = act; g.p0 = p0; g.p1 = p1;
    g.last = last;
    g.vshared = p.shared ? g.ws + (ptrdiff_t)p.threads * p.per : NULL;
    g.nq = EK_MAX(1, EK_MIN(Cin, 2 * (ptrdiff_t)p.threads));
    job.p = &p;
    job.g = &g;
    job.m = m;
    if (p.shared)
        ek_parallelize(p.threads, p.ntb * g.nq, EK_FN(ek_wg_prep_tile), &job);
    ek_parallelize(p.threads, p.ntasks, EK_FN(ek_wg_run_tile), &job);
}

#undef wgv
#undef EK_WG_VW
#endif /* EK_WINOGRAD_ISA */
