/*
 * f32/vec_neon.h - the vector primitives of the NEON variant (aarch64): none beyond ek_common.h.
 *
 * Included by ek_common.h (EK_ISA_FILE) once for the instruction set being compiled.  The
 * x86 lane layer (EKX) does not exist here: the depthwise and pooling kernels take their
 * NEON path.
 */
#define EKX 0
#define EKX_AVX512 0
