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
#undef EK_PEAK_ISA
#undef EK_BIND_ISA
#undef EK_GEMM_VW
#undef EK_GEMM_VEXT
#undef EK_GEMM_MR
#undef EK_GEMM_NR
#undef EK_GEMM_KIND
#undef EK_GEMM_DIRECT_B
#undef EK_ISA_FILE
#undef EK_VW
#undef EK_WG_ROW_FAST
/* the x86 lane layer of f32/vec_<isa>.h */
#undef EKX
#undef EKX_AVX512
#undef EKX_VW
#undef EKX_ACT_ROW
#undef EKX_FMAC
#undef ekx_ld
#undef ekx_st
#undef ekx_set1
#undef ekx_fma
#undef ekx_ldz
#undef ekx_stm
#undef ekx_max
#undef ekx_min
#undef EKX_V
#undef EKX_M
#undef EKX_RB
#undef EKX_ALLMASKED
#undef EKX_SPLIT
#undef EKX_ADD
#undef ekx_ldf
#undef EKX_MUL
#undef ekx_hasnan
#undef EK_VEC_STRIDED_COPY
