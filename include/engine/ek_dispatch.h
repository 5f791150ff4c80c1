/*
 * ek_dispatch.h - every kernel compiled once per instruction set, picked at run time.
 *
 * This header includes ek_all.h up to three times (see ek_common.h, "ISA variants"):
 *
 *     EK_SUFFIX _scalar   EK_ISA_LEVEL 0   the compiler's baseline flags (x86-64: SSE2)
 *     EK_SUFFIX _avx2     EK_ISA_LEVEL 1   target("avx2,fma,f16c,bmi,bmi2") (ek_variant.h)
 *     EK_SUFFIX _avx512   EK_ISA_LEVEL 2   + avx512f/vl/bw/dq/cd, 512-bit auto-vectorisation
 *
 * so one binary carries ek_sgemm_scalar, ek_sgemm_avx2 and ek_sgemm_avx512 (and so on for
 * every kernel).  The AVX variants exist only on x86-64 with gcc or clang (EK_MULTI_ISA);
 * other targets (aarch64, MSVC) build the portable variant alone and every selector below
 * resolves to it.  No -m / -march flag is needed for the translation unit itself.
 *
 * Selection, always by an explicit level (a session's plan, a packed operand):
 *   name_at[level](&args)           the dispatch table of a bound kernel (ek_bind.h,
 *                                   EK_ENTRIES below): its entry for that level
 *   EK_ISA_SEL(level, name)(args)   any other kernel function (sizes, packing)
 *
 * `ek_isa_cur` is only the default level of calls that name none (engine._kernels.set_isa
 * and ENGINE_ISA set it; a Session fixes its own at construction), never above
 * ek_isa_max_level(), the lower of what the CPU supports and what was compiled.
 */
#ifndef EK_DISPATCH_H
#define EK_DISPATCH_H

#include "ek_cpu.h"

#if EK_X86 && (defined(__x86_64__) || defined(__i386__)) && \
    (defined(__GNUC__) || defined(__clang__)) && !defined(EK_NO_MULTI_ISA)
#define EK_MULTI_ISA 1
#else
#define EK_MULTI_ISA 0
#endif

#if EK_X86
#include <immintrin.h>
#endif

/* Any earlier plain inclusion of the kernels (empty EK_SUFFIX) is forgotten here. */
#include "ek_reset.h"

/* ---- baseline ---- */
#define EK_SUFFIX _scalar
#define EK_ISA_LEVEL 0
#include "ek_all.h"
#include "ek_reset.h"

#if EK_MULTI_ISA
/* ---- AVX2 + FMA ---- */
#define EK_SUFFIX _avx2
#define EK_ISA_LEVEL 1
#define EK_TARGET "avx2,fma,f16c,bmi,bmi2"
#include "ek_variant.h"

/* ---- AVX-512 (x86-64-v4) ---- */
#define EK_SUFFIX _avx512
#define EK_ISA_LEVEL 2
#define EK_TARGET "avx2,fma,f16c,bmi,bmi2,avx512f,avx512vl,avx512bw,avx512dq,avx512cd," \
                  "prefer-vector-width=512"
#include "ek_variant.h"

#define EK_ISA_COMPILED_MAX EK_ISA_AVX512
#define EK_ISA_SEL(level, name) \
    ((level) >= EK_ISA_AVX512 ? name##_avx512 : (level) == EK_ISA_AVX2 ? name##_avx2 \
                                                                       : name##_scalar)
#else
#define EK_ISA_COMPILED_MAX EK_ISA_SCALAR
#define EK_ISA_SEL(level, name) ((void)(level), name##_scalar)
#endif

/* The dispatch tables: name##_at[level] is the entry (ek_bind.h) of kernel `name` compiled
   for that level (the portable one where a level is not compiled). */
#define EK_ENTRIES(X)                                                                        \
    X(ek_conv3d) X(ek_conv3d_packed) X(ek_conv3d_depthwise) X(ek_conv_transpose3d)           \
    X(ek_conv2d_winograd) X(ek_sgemm) X(ek_unary) X(ek_channel_affine) X(ek_prelu)           \
    X(ek_binary_nd) X(ek_softmax) X(ek_group_norm) X(ek_layer_norm) X(ek_lrn) X(ek_pool3d)   \
    X(ek_adaptive_pool3d) X(ek_resize_nearest3d) X(ek_resize_bilinear2d) X(ek_pad_nd)        \
    X(ek_copy_nd)
#if EK_MULTI_ISA
#define EK_TABLE(name) static const ek_entry_fn name##_at[3] = {                             \
    name##_entry_scalar, name##_entry_avx2, name##_entry_avx512};
#else
#define EK_TABLE(name) static const ek_entry_fn name##_at[3] = {                             \
    name##_entry_scalar, name##_entry_scalar, name##_entry_scalar};
#endif
EK_ENTRIES(EK_TABLE)
#undef EK_TABLE

/* The default level of calls that name none. */
static int ek_isa_cur = EK_ISA_SCALAR;

/* The best level usable here: what the CPU supports, capped by what was compiled. */
static int ek_isa_max_level(void)
{
    int cpu = ek_cpu_best_isa();
    return cpu < EK_ISA_COMPILED_MAX ? cpu : EK_ISA_COMPILED_MAX;
}

/* Set this translation unit's level; returns the previous one, or -1 (unchanged) when the
   level is out of range or not usable here. */
static int ek_isa_set(int level)
{
    int prev = ek_isa_cur;
    if (level < 0 || level > ek_isa_max_level()) return -1;
    ek_isa_cur = level;
    return prev;
}

#endif /* EK_DISPATCH_H */
