/*
 * ek_cpu.h - run-time instruction-set detection (CPUID + XGETBV) for the kernel dispatch.
 *
 * Levels (ek_isa_level):
 *   EK_ISA_SCALAR  0  the baseline build: portable C (SSE2 on x86-64, whatever the compiler
 *                     targets elsewhere); always available.
 *   EK_ISA_AVX2    1  AVX2 + FMA (+ F16C, BMI1/2); needs the OS to save YMM state.
 *   EK_ISA_AVX512  2  AVX-512 F/VL/BW/DQ/CD (x86-64-v4) on top of level 1; needs the OS to
 *                     save opmask and ZMM state.
 *
 * Detection reads CPUID directly (not __builtin_cpu_supports, which older compilers lack
 * and which does not exist under MSVC) and checks XCR0 with XGETBV so that a CPU whose OS
 * (or hypervisor) does not enable the AVX / AVX-512 register state is never handed those
 * instructions.  Non-x86 targets report level 0 only.
 */
#ifndef EK_CPU_H
#define EK_CPU_H

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define EK_X86 1
#else
#define EK_X86 0
#endif

#if EK_X86 && defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#elif EK_X86 && defined(__GNUC__)
#include <cpuid.h>
#endif

enum ek_isa_level { EK_ISA_SCALAR = 0, EK_ISA_AVX2 = 1, EK_ISA_AVX512 = 2, EK_ISA_COUNT = 3 };

static const char *const ek_isa_names[EK_ISA_COUNT] = {"scalar", "avx2", "avx512"};

#if EK_X86 && (defined(__GNUC__) || defined(_MSC_VER))
static void ek_cpuid_(unsigned leaf, unsigned sub, unsigned r[4])
{
#if defined(_MSC_VER) && !defined(__clang__)
    int v[4];
    __cpuidex(v, (int)leaf, (int)sub);
    r[0] = (unsigned)v[0]; r[1] = (unsigned)v[1]; r[2] = (unsigned)v[2]; r[3] = (unsigned)v[3];
#else
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(leaf, sub, &a, &b, &c, &d)) a = b = c = d = 0;
    r[0] = a; r[1] = b; r[2] = c; r[3] = d;
#endif
}

static unsigned long long ek_xgetbv0_(void)
{
#if defined(_MSC_VER) && !defined(__clang__)
    return (unsigned long long)_xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#endif
}
#endif

/* The highest level this CPU (and OS) supports. */
static int ek_cpu_best_isa(void)
{
#if EK_X86 && (defined(__GNUC__) || defined(_MSC_VER))
    unsigned r1[4], r7[4], r0[4];
    unsigned long long xcr0;
    int avx2, avx512;
    ek_cpuid_(0, 0, r0);
    if (r0[0] < 7) return EK_ISA_SCALAR;
    ek_cpuid_(1, 0, r1);
    ek_cpuid_(7, 0, r7);
    if (!(r1[2] & (1u << 27))) return EK_ISA_SCALAR;          /* OSXSAVE */
    xcr0 = ek_xgetbv0_();
    avx2 = (r1[2] & (1u << 28)) && (r1[2] & (1u << 12)) &&  /* AVX, FMA */
           (r1[2] & (1u << 29)) &&                          /* F16C */
           (r7[1] & (1u << 5)) && (r7[1] & (1u << 3)) &&    /* AVX2, BMI1 */
           (r7[1] & (1u << 8)) &&                           /* BMI2 */
           (xcr0 & 0x6) == 0x6;                             /* XMM + YMM state */
    if (!avx2) return EK_ISA_SCALAR;
    avx512 = (r7[1] & (1u << 16)) && (r7[1] & (1u << 17)) && /* F, DQ */
             (r7[1] & (1u << 28)) && (r7[1] & (1u << 30)) && /* CD, BW */
             (r7[1] & (1u << 31)) &&                         /* VL */
             (xcr0 & 0xE6) == 0xE6;                          /* opmask, ZMM_Hi256, Hi16_ZMM */
    return avx512 ? EK_ISA_AVX512 : EK_ISA_AVX2;
#else
    return EK_ISA_SCALAR;
#endif
}

/*
 * Data-cache sizes in bytes (per core) of levels 1 and 2, from CPUID's deterministic cache
 * parameters (leaf 4 on Intel, 0x8000001D on AMD).  0 when unknown (not x86, old CPU).
 */
static void ek_cpu_cache_sizes(long *l1d, long *l2)
{
    *l1d = 0;
    *l2 = 0;
#if EK_X86 && (defined(__GNUC__) || defined(_MSC_VER))
    {
        unsigned r[4], leaf = 4, sub;
        ek_cpuid_(0x80000000u, 0, r);
        if (r[0] >= 0x8000001Du) {
            unsigned v[4];
            ek_cpuid_(0, 0, v);
            /* "AuthenticAMD" / "HygonGenuine": ebx = "Auth" / "Hygo" */
            if (v[1] == 0x68747541u || v[1] == 0x6f677948u) leaf = 0x8000001Du;
        }
        ek_cpuid_(0, 0, r);
        if (leaf == 4 && r[0] < 4) return;
        for (sub = 0; sub < 16; sub++) {
            unsigned type, level;
            long size;
            ek_cpuid_(leaf, sub, r);
            type = r[0] & 31u;
            if (type == 0) break;
            level = (r[0] >> 5) & 7u;
            size = (long)(((r[1] >> 22) & 1023u) + 1) * (long)(((r[1] >> 12) & 1023u) + 1) *
                   (long)((r[1] & 4095u) + 1) * (long)(r[2] + 1);
            if (level == 1 && type == 1) *l1d = size;        /* data cache */
            if (level == 2 && (type == 3 || type == 1)) *l2 = size;  /* unified */
        }
    }
#endif
}

#endif /* EK_CPU_H */
