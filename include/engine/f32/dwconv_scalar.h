/*
 * f32/dwconv_scalar.h - the depthwise row kernel in portable C: none beyond the padded-plane
 * kernel of ek_conv.h.
 *
 * Included by ek_conv.h (EK_ISA_FILE) once for the instruction set being compiled, after
 * the portable padded-plane kernel; EK_DWX says whether the x86 row kernel exists (no),
 * EK_DW_PAIRS whether the NEON row pairs do (no).
 */
#define EK_DWX 0
#define EK_DW_PAIRS 0
