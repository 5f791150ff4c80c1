/*
 * f32/gemm_scalar.h - the float32 GEMM micro-kernel in portable C: GNU vector extensions
 * where the compiler has them, C loops elsewhere.
 *
 * Included by ek_gemm.h (EK_ISA_FILE) once for the instruction set being compiled.
 * Defines the register tile (EK_GEMM_VW lanes, EK_GEMM_MR x EK_GEMM_NR, EK_GEMM_KIND),
 * and ek_gemm_tile: one m x n x kc tile of packed A and B into C with the fused
 * epilogue (ek_gemm_epi).  It knows nothing of threads.
 */
/* Baseline: GNU vector extensions (gcc, clang) give the micro-kernel explicit vector
   registers; other compilers get plain C99 loops. */
#if defined(__GNUC__) && !defined(EK_NO_VECTOR_EXT)
#define EK_GEMM_VEXT 1
#define EK_GEMM_VW 4
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(__aarch64__)
#define EK_GEMM_MR 6
#define EK_GEMM_NR 8
#else
#define EK_GEMM_MR 3       /* no FMA: a multiply needs a temporary; 3 x 4VW measured best */
#define EK_GEMM_NR 16
#endif
#define EK_GEMM_KIND "portable (vector extensions)"
#else
#define EK_GEMM_VEXT 0
#define EK_GEMM_VW 1
#define EK_GEMM_MR 4
#define EK_GEMM_NR 8
#define EK_GEMM_KIND "portable (C loops)"
#endif

#if EK_GEMM_VEXT
typedef float EK_FN(ek_vf) __attribute__((vector_size(EK_GEMM_VW * 4)));
#endif

/* out[MR][NR] = sum_k a[k][MR] (x) b[k][NR] (full tile; the store trims it). */
EK_INLINE void EK_FN(ek_gemm_ukernel)(ptrdiff_t kc, const float *EK_RESTRICT a,
                                      const float *EK_RESTRICT b, float *EK_RESTRICT out)
{
#if EK_GEMM_VEXT
    enum { NV = EK_GEMM_NR / EK_GEMM_VW };
    EK_FN(ek_vf) acc[EK_GEMM_MR][NV];
    ptrdiff_t k;
    int i, j;
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < NV; j++) acc[i][j] = (EK_FN(ek_vf)){0};
    for (k = 0; k < kc; k++) {
        EK_FN(ek_vf) bv[NV];
        for (j = 0; j < NV; j++) memcpy(&bv[j], b + j * EK_GEMM_VW, sizeof(bv[j]));
        for (i = 0; i < EK_GEMM_MR; i++) {
            const float ai = a[i];
            for (j = 0; j < NV; j++) acc[i][j] += bv[j] * ai;
        }
        a += EK_GEMM_MR;
        b += EK_GEMM_NR;
    }
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < NV; j++)
            memcpy(out + i * EK_GEMM_NR + j * EK_GEMM_VW, &acc[i][j], sizeof(acc[i][j]));
#else
    float acc[EK_GEMM_MR][EK_GEMM_NR];
    ptrdiff_t k;
    int i, j;
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < EK_GEMM_NR; j++) acc[i][j] = 0.0f;
    for (k = 0; k < kc; k++) {
        for (i = 0; i < EK_GEMM_MR; i++) {
            const float ai = a[i];
            for (j = 0; j < EK_GEMM_NR; j++) acc[i][j] += ai * b[j];
        }
        a += EK_GEMM_MR;
        b += EK_GEMM_NR;
    }
    for (i = 0; i < EK_GEMM_MR; i++)
        for (j = 0; j < EK_GEMM_NR; j++) out[i * EK_GEMM_NR + j] = acc[i][j];
#endif
}

EK_API void EK_FN(ek_gemm_tile)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t kc, const float *a,
                                const float *b, float *C, ptrdiff_t ldc, int load_c, int last,
                                const ek_gemm_epi *e)
{
#if defined(__GNUC__)
    float tile[EK_GEMM_MR * EK_GEMM_NR] __attribute__((aligned(64)));
#else
    float tile[EK_GEMM_MR * EK_GEMM_NR];
#endif
    EK_FN(ek_gemm_ukernel)(kc, a, b, tile);
    EK_FN(ek_gemm_store)(tile, EK_GEMM_NR, m, n, C, ldc, load_c, last, e);
}
