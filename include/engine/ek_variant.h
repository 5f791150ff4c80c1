/*
 * ek_variant.h - one instruction-set variant of the whole library (see ek_dispatch.h):
 * every kernel compiled with the target options EK_TARGET, under the suffix EK_SUFFIX and
 * level EK_ISA_LEVEL the includer defines; the per-variant macros are reset afterwards.
 */
#define EK_DO_PRAGMA_(x) _Pragma(#x)
#if defined(__clang__)
#define EK_TARGET_BEGIN(t) \
    EK_DO_PRAGMA_(clang attribute push(__attribute__((target(t))), apply_to = function))
#define EK_TARGET_END _Pragma("clang attribute pop")
#else
#define EK_TARGET_BEGIN(t) _Pragma("GCC push_options") EK_DO_PRAGMA_(GCC target(t))
#define EK_TARGET_END _Pragma("GCC pop_options")
#endif

EK_TARGET_BEGIN(EK_TARGET)
#include "ek_all.h"
EK_TARGET_END

#undef EK_TARGET
#include "ek_reset.h"
