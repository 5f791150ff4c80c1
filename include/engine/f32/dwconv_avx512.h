/*
 * f32/dwconv_avx512.h - the depthwise row kernel for AVX-512.
 *
 * Included by ek_conv.h (EK_ISA_FILE) once for the instruction set being compiled, after
 * the portable padded-plane kernel; EK_DWX says whether the x86 row kernel exists (it
 * does here).
 */
#include "dwconv_x86.h"
