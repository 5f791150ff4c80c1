/*
 * f32/winograd_neon.h - the row layer of the Winograd convolution on aarch64: the portable
 * row layer (f32/winograd_scalar.h) vectorises well there.
 *
 * Included by ek_winograd.h (EK_ISA_FILE) once for the instruction set being compiled:
 * ek_wg_tab (per-call tables), ek_wg_rowctx, ek_wg_load_row (one input row into the m + 2
 * phase vectors of VW tiles), ek_wg_store_row (m output phases back into a row with bias,
 * residual and activation) and ek_wg_put.
 */
#include "winograd_scalar.h"
