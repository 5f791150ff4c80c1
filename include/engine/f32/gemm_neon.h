/*
 * f32/gemm_neon.h - the float32 GEMM micro-kernel for ARM NEON (aarch64):
 * an 8 x 12 register tile.
 *
 * Included by ek_gemm.h (EK_ISA_FILE) once for the instruction set being compiled.
 * Defines the register tile (EK_GEMM_VW lanes, EK_GEMM_MR x EK_GEMM_NR, EK_GEMM_KIND),
 * and ek_gemm_tile: one m x n x kc tile of packed A and B into C with the fused
 * epilogue (ek_gemm_epi).  It knows nothing of threads.
 */
/* aarch64: 8 x 12 register tile, 24 of the 32 q-registers as accumulators */
#define EK_GEMM_VW 4
#define EK_GEMM_MR 8
#define EK_GEMM_NR 12
#define EK_GEMM_KIND "neon intrinsics"


/*
 * One register tile: m (<= 8) rows, NV (1..3) vectors of 4 columns (n valid), S accumulator
 * sets along K.  a: panel[k][MR] (8 floats per k, zero-padded: always two full vector
 * loads), b: panel[k][NR].  Each k: 2 A loads, NV B loads, m * NV by-element FMAs (the A
 * lane is an immediate, so the row loop is spelled out: clang needs literal lanes).
 */
EK_INLINE void EK_FN(ek_ukr)(const int m, const int NV, const int S, ptrdiff_t kc,
                             const float *EK_RESTRICT a, const float *EK_RESTRICT b, float *C,
                             ptrdiff_t ldc, ptrdiff_t n, int load_c, int last,
                             const ek_gemm_epi *e)
{
    enum { MR = EK_GEMM_MR, NR = EK_GEMM_NR };
    float32x4_t acc[4][EK_GEMM_MR][3];
    ptrdiff_t k;
    int i, s, v;
#pragma GCC unroll 4
    for (s = 0; s < S; s++)
#pragma GCC unroll 8
        for (i = 0; i < m; i++)
#pragma GCC unroll 3
            for (v = 0; v < NV; v++) acc[s][i][v] = vdupq_n_f32(0.0f);
    for (i = 0; i < m; i++) __builtin_prefetch(C + i * ldc, 1);
/* row I of set s: A lane L of vector AV times the B vectors */
#define EK_NEON_ROW(I, AV, L)                                                            \
    if (m > (I)) {                                                                       \
        acc[s][I][0] = vfmaq_laneq_f32(acc[s][I][0], b0, AV, L);                         \
        if (NV > 1) acc[s][I][1] = vfmaq_laneq_f32(acc[s][I][1], b1, AV, L);             \
        if (NV > 2) acc[s][I][2] = vfmaq_laneq_f32(acc[s][I][2], b2, AV, L);             \
    }
#define EK_NEON_STEP(AP, BP)                                                             \
    do {                                                                                 \
        const float32x4_t b0 = vld1q_f32(BP);                                            \
        const float32x4_t b1 = NV > 1 ? vld1q_f32((BP) + 4) : b0;                        \
        const float32x4_t b2 = NV > 2 ? vld1q_f32((BP) + 8) : b0;                        \
        const float32x4_t a0 = vld1q_f32(AP);                                            \
        const float32x4_t a1 = m > 4 ? vld1q_f32((AP) + 4) : a0;                         \
        EK_NEON_ROW(0, a0, 0) EK_NEON_ROW(1, a0, 1) EK_NEON_ROW(2, a0, 2)                \
        EK_NEON_ROW(3, a0, 3) EK_NEON_ROW(4, a1, 0) EK_NEON_ROW(5, a1, 1)                \
        EK_NEON_ROW(6, a1, 2) EK_NEON_ROW(7, a1, 3)                                      \
    } while (0)
    for (k = 0; k + S <= kc; k += S) {
#pragma GCC unroll 4
        for (s = 0; s < S; s++) EK_NEON_STEP(a + s * MR, b + s * NR);
        __builtin_prefetch(b + 8 * NR);
        if (S > 1) {   /* few rows: B streams from memory (GEMV-like), fetch it early */
            __builtin_prefetch(b + 64 * NR);
            __builtin_prefetch(b + 64 * NR + 16);
        }
        a += S * MR;
        b += S * NR;
    }
    for (; k < kc; k++) {
        s = 0;
        EK_NEON_STEP(a, b);
        a += MR;
        b += NR;
    }
#undef EK_NEON_STEP
#undef EK_NEON_ROW
#pragma GCC unroll 4
    for (s = 1; s < S; s++)
#pragma GCC unroll 8
        for (i = 0; i < m; i++)
#pragma GCC unroll 3
            for (v = 0; v < NV; v++) acc[0][i][v] = vaddq_f32(acc[0][i][v], acc[s][i][v]);
    {
        const ptrdiff_t nl = n - (NV - 1) * 4;        /* columns in the last vector (1..4) */
        const int simple = EK_ACT_IS_SIMPLE(e->act);
        float32x4_t cb[3];
        cb[0] = cb[1] = cb[2] = vdupq_n_f32(0.0f);
        if (last && e->cb) {
#pragma GCC unroll 3
            for (v = 0; v < NV; v++)
                cb[v] = v < NV - 1 ? vld1q_f32(e->cb + 4 * v)
                                   : EK_FN(ek_neon_ld_part)(e->cb + 4 * v, nl);
        }
#pragma GCC unroll 8
        for (i = 0; i < m; i++) {
            float *c = C + i * ldc;
#pragma GCC unroll 3
            for (v = 0; v < NV; v++) {
                const ptrdiff_t w = v < NV - 1 ? 4 : nl;  /* partial loads only on the tail */
                float32x4_t x = acc[0][i][v];
                if (load_c) x = vaddq_f32(x, EK_FN(ek_neon_ld_part)(c + 4 * v, w));
                if (last) {
                    if (e->rb) x = vaddq_f32(x, vdupq_n_f32(e->rb[i]));
                    if (e->cb) x = vaddq_f32(x, cb[v]);
                    if (e->R)
                        x = vaddq_f32(x, EK_FN(ek_neon_ld_part)(e->R + i * e->ldr + 4 * v, w));
                    if (simple) x = EK_FN(ek_act_neon)(x, e->act, e->p0, e->p1);
                }
                EK_FN(ek_neon_st_part)(c + 4 * v, x, w);
            }
            if (last && !simple) EK_FN(ek_act_row)(c, c, n, e->act, e->p0, e->p1);
        }
    }
}

/* Accumulator sets along K so that at least ~8 independent FMA chains are in flight
   (4-cycle FMA latency, 2 FMA pipes on the big cores). */
#define EK_UKR_SETS(m, nv) ((m) * (nv) >= 8 ? 1 : (m) * (nv) >= 4 ? 2 : 4)
/* One out-of-line function per (rows, vectors) pair: each gets its own register
   allocation. */
#define EK_UKR_DEF(M_, NV_)                                                              \
    static EK_NOINLINE void EK_FN(ek_ukr_##M_##_##NV_)(                                  \
        ptrdiff_t kc, const float *a, const float *b, float *C, ptrdiff_t ldc, ptrdiff_t n, \
        int load_c, int last, const ek_gemm_epi *e)                                      \
    {                                                                                    \
        EK_FN(ek_ukr)(M_, NV_, EK_UKR_SETS(M_, NV_), kc, a, b, C, ldc, n, load_c, last, e); \
    }
#define EK_UKR_DEF3(M_) EK_UKR_DEF(M_, 1) EK_UKR_DEF(M_, 2) EK_UKR_DEF(M_, 3)
#define EK_UKR_CASE(M_)                                                                  \
    case M_:                                                                             \
        if (nv == 3) EK_FN(ek_ukr_##M_##_3)(kc, a, b, C, ldc, n, load_c, last, e);       \
        else if (nv == 2) EK_FN(ek_ukr_##M_##_2)(kc, a, b, C, ldc, n, load_c, last, e);  \
        else EK_FN(ek_ukr_##M_##_1)(kc, a, b, C, ldc, n, load_c, last, e);               \
        break;

EK_UKR_DEF3(1) EK_UKR_DEF3(2) EK_UKR_DEF3(3) EK_UKR_DEF3(4)
EK_UKR_DEF3(5) EK_UKR_DEF3(6) EK_UKR_DEF3(7) EK_UKR_DEF3(8)

/*
 * Narrow tile: R_ (1 or 2) columns, m > R_ rows.  Vectorised along the rows instead (the
 * A panel row is H = 1 or 2 vectors; B's first vector supplies the column lanes), four
 * accumulator sets along K; the R_ x m result goes through a small buffer into the scalar
 * store.  N = 49 = 4 * 12 + 1 then costs 2 FMAs per k for its last column, not 8.
 */
EK_INLINE void EK_FN(ek_ukr_narrow)(const int R_, const int H, ptrdiff_t m, ptrdiff_t kc,
                                    const float *EK_RESTRICT a, const float *EK_RESTRICT b,
                                    float *C, ptrdiff_t ldc, int load_c, int last,
                                    const ek_gemm_epi *e)
{
    enum { MR = EK_GEMM_MR, NR = EK_GEMM_NR, S = 4 };
    float32x4_t acc[S][2][2];                 /* [set][column][half] */
    float tmp[2][EK_GEMM_MR];
    float t[EK_GEMM_MR * EK_GEMM_NR];
    ptrdiff_t k;
    int s, j, h, i;
#pragma GCC unroll 4
    for (s = 0; s < S; s++)
#pragma GCC unroll 2
        for (j = 0; j < R_; j++)
#pragma GCC unroll 2
            for (h = 0; h < H; h++) acc[s][j][h] = vdupq_n_f32(0.0f);
#define EK_NEON_NSTEP(s_, AP, BP)                                                        \
    do {                                                                                 \
        const float32x4_t bv = vld1q_f32(BP);                                            \
        const float32x4_t a0 = vld1q_f32(AP);                                            \
        acc[s_][0][0] = vfmaq_laneq_f32(acc[s_][0][0], a0, bv, 0);                       \
        if (R_ > 1) acc[s_][1][0] = vfmaq_laneq_f32(acc[s_][1][0], a0, bv, 1);           \
        if (H > 1) {                                                                     \
            const float32x4_t a1 = vld1q_f32((AP) + 4);                                  \
            acc[s_][0][1] = vfmaq_laneq_f32(acc[s_][0][1], a1, bv, 0);                   \
            if (R_ > 1) acc[s_][1][1] = vfmaq_laneq_f32(acc[s_][1][1], a1, bv, 1);       \
        }                                                                                \
    } while (0)
    for (k = 0; k + S <= kc; k += S) {
#pragma GCC unroll 4
        for (s = 0; s < S; s++) EK_NEON_NSTEP(s, a + s * MR, b + s * NR);
        a += S * MR;
        b += S * NR;
    }
    for (; k < kc; k++) {
        EK_NEON_NSTEP(0, a, b);
        a += MR;
        b += NR;
    }
#undef EK_NEON_NSTEP
#pragma GCC unroll 2
    for (j = 0; j < R_; j++)
#pragma GCC unroll 2
        for (h = 0; h < H; h++)
            vst1q_f32(tmp[j] + 4 * h, vaddq_f32(vaddq_f32(acc[0][j][h], acc[1][j][h]),
                                                 vaddq_f32(acc[2][j][h], acc[3][j][h])));
    for (i = 0; i < m && i < 4 * H; i++)       /* (m <= 4 H: the bound is for the compiler) */
        for (j = 0; j < R_; j++) t[i * NR + j] = tmp[j][i];
    EK_FN(ek_gemm_store)(t, EK_GEMM_NR, m, R_, C, ldc, load_c, last, e);
}

#define EK_NARROW_DEF(R_, H_)                                                            \
    static EK_NOINLINE void EK_FN(ek_ukr_narrow_##R_##_##H_)(                            \
        ptrdiff_t m, ptrdiff_t kc, const float *a, const float *b, float *C, ptrdiff_t ldc, \
        int load_c, int last, const ek_gemm_epi *e)                                      \
    {                                                                                    \
        EK_FN(ek_ukr_narrow)(R_, H_, m, kc, a, b, C, ldc, load_c, last, e);              \
    }
EK_NARROW_DEF(1, 1) EK_NARROW_DEF(1, 2) EK_NARROW_DEF(2, 1) EK_NARROW_DEF(2, 2)
#undef EK_NARROW_DEF

/* One m x n (<= 8 x 12) tile: ceil(n / 4) vectors per row, or the row-vectorised narrow
   kernel for 1 or 2 columns when it does less work (m > n). */
EK_API void EK_FN(ek_gemm_tile)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kc, const float *a,
                                const float *b, float *C, ptrdiff_t ldc, int load_c, int last,
                                const ek_gemm_epi *e)
{
    const int nv = n > 8 ? 3 : n > 4 ? 2 : 1;
    if (n <= 2 && m > n) {
        if (n == 1) {
            if (m > 4) EK_FN(ek_ukr_narrow_1_2)(m, kc, a, b, C, ldc, load_c, last, e);
            else EK_FN(ek_ukr_narrow_1_1)(m, kc, a, b, C, ldc, load_c, last, e);
        } else {
            if (m > 4) EK_FN(ek_ukr_narrow_2_2)(m, kc, a, b, C, ldc, load_c, last, e);
            else EK_FN(ek_ukr_narrow_2_1)(m, kc, a, b, C, ldc, load_c, last, e);
        }
        return;
    }
    switch (m) {
        EK_UKR_CASE(1) EK_UKR_CASE(2) EK_UKR_CASE(3) EK_UKR_CASE(4) EK_UKR_CASE(5)
        EK_UKR_CASE(6) EK_UKR_CASE(7)
    default:
        EK_UKR_CASE(8)
    }
}
#undef EK_UKR_CASE
#undef EK_UKR_DEF3
#undef EK_UKR_DEF
#undef EK_UKR_SETS
