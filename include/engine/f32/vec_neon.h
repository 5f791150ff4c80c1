/*
 * f32/vec_neon.h - the vector primitives of the NEON variant (aarch64): partial loads and
 * stores of a 4-lane vector, a lane clear and the fused activations in registers, for the
 * NEON GEMM, depthwise and pooling tiles.
 *
 * Included by ek_common.h (EK_ISA_FILE) once for the instruction set being compiled.  The
 * x86 lane layer (EKX) does not exist here.
 */
#define EKX 0
#define EKX_AVX512 0

/* The first n (1..4) floats at p in a vector, the other lanes 0 (reads only p[0..n)). */
EK_INLINE float32x4_t EK_FN(ek_neon_ld_part)(const float *p, ptrdiff_t n)
{
    const float32x2_t z2 = vdup_n_f32(0.0f);
    if (n >= 4) return vld1q_f32(p);
    if (n == 3) return vld1q_lane_f32(p + 2, vcombine_f32(vld1_f32(p), z2), 2);
    if (n == 2) return vcombine_f32(vld1_f32(p), z2);
    return vld1q_lane_f32(p, vdupq_n_f32(0.0f), 0);
}

/* p[0..n) = the first n (1..4) lanes of x (writes nothing else). */
EK_INLINE void EK_FN(ek_neon_st_part)(float *p, float32x4_t x, ptrdiff_t n)
{
    if (n >= 4) {
        vst1q_f32(p, x);
    } else if (n >= 2) {
        vst1_f32(p, vget_low_f32(x));
        if (n == 3) vst1q_lane_f32(p + 2, x, 2);
    } else {
        vst1q_lane_f32(p, x, 0);
    }
}

/* x with the lanes where mask is set (all ones) replaced by +0 */
EK_INLINE float32x4_t EK_FN(ek_neon_clear)(float32x4_t x, uint32x4_t mask)
{
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(x), mask));
}

/*
 * The activations with a few-instruction vector form (relu, relu6, leaky_relu, clip,
 * hardswish, hardsigmoid; others: x unchanged), written with the scalar ek_act1's
 * comparisons and operation order so that results match it bit for bit (NaN passes,
 * relu keeps -0, hardswish divides by 6).
 */
EK_INLINE float32x4_t EK_FN(ek_act_neon)(float32x4_t x, int act, float p0, float p1)
{
    const float32x4_t six = vdupq_n_f32(6.0f);
    float32x4_t t;
    switch (act) {
    case EK_ACT_RELU:
        return EK_FN(ek_neon_clear)(x, vcltzq_f32(x));
    case EK_ACT_RELU6:
        t = EK_FN(ek_neon_clear)(x, vcltzq_f32(x));
        return vbslq_f32(vcgtq_f32(t, six), six, t);
    case EK_ACT_LEAKY_RELU:
        return vbslq_f32(vcltzq_f32(x), vmulq_n_f32(x, p0), x);
    case EK_ACT_CLIP: {
        const float32x4_t lo = vdupq_n_f32(p0), hi = vdupq_n_f32(p1);
        t = vbslq_f32(vcltq_f32(x, lo), lo, x);
        return vbslq_f32(vcgtq_f32(t, hi), hi, t);
    }
    case EK_ACT_HARDSWISH:
    case EK_ACT_HARDSIGMOID:
        t = vaddq_f32(x, vdupq_n_f32(3.0f));
        t = EK_FN(ek_neon_clear)(t, vcltzq_f32(t));
        t = vbslq_f32(vcgtq_f32(t, six), six, t);
        return vdivq_f32(act == EK_ACT_HARDSWISH ? vmulq_f32(x, t) : t, six);
    default:
        return x;
    }
}
