/*
 * ek_all.h - every engine kernel (see ek_common.h for the ISA-variant scheme: define
 * EK_SUFFIX before including; include ek_reset.h between two variants).
 */
#include "ek_common.h"
#include "ek_gemm.h"
#include "ek_im2col.h"
#include "ek_conv.h"
#include "ek_pool.h"
#include "ek_eltwise.h"
#include "ek_softmax.h"
#include "ek_norm.h"
#include "ek_resize.h"
#include "ek_pad.h"
#include "ek_winograd.h"
#include "ek_copy.h"
#include "ek_peak.h"
#include "ek_bind.h"
