/*
 * f32/pool_avx512.h - the max / min pooling plane kernel for AVX-512: the portable GNU-vector
 * kernel (f32/pool_scalar.h) at AVX-512's vector width.
 *
 * Included by ek_pool.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_pool_plane reduces every window of one padded plane (EK_PL_NB chunks of EK_PL_VW
 * outputs at a time, NaN-propagating as the general path).  It knows nothing of threads.
 */
#include "pool_scalar.h"
