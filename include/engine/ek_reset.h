/*
 * ek_reset.h - forget the per-ISA include guards and ISA-derived tuning macros so that the
 * kernel headers can be included again with another EK_SUFFIX (and target options).
 * ISA-independent definitions (enums, ek_geom3, helpers) stay defined.
 */
#undef EK_SUFFIX
#undef EK_ISA_LEVEL
#undef EK_COMMON_ISA
#undef EK_GEMM_ISA
#undef EK_IM2COL_ISA
#undef EK_CONV_ISA
#undef EK_POOL_ISA
#undef EK_ELTWISE_ISA
#undef EK_SOFTMAX_ISA
#undef EK_NORM_ISA
#undef EK_RESIZE_ISA
#undef EK_PAD_ISA
#undef EK_WINOGRAD_ISA
#undef EK_COPY_ISA
#undef EK_BIND_ISA
#undef EK_GEMM_VW
#undef EK_GEMM_VEXT
#undef EK_GEMM_MR
#undef EK_GEMM_NR
#undef EK_GEMM_KIND
#undef EK_GEMM_DIRECT_B
#undef EK_GV_VW
#undef EK_ISA_FILE
