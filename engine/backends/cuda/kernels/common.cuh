// Shared definitions of engine's CUDA kernels (included by every .cu file).
//
// Conventions, relied on by the host planner (engine/backends/cuda/kernels.py) and checked
// there before any launch:
// - every kernel is `extern "C"` (no name mangling: the planner looks kernels up by name and
//   validates its arguments against the signature parsed from these sources);
// - 1-D blocks; kernels loop grid-stride (EK_FOR, or explicit loops over blockIdx.x / .y),
//   so any grid size is correct and the host only chooses the grid for occupancy;
// - element offsets are 64-bit (i64); per-dimension sizes are int (checked < 2^31 on the host);
// - no headers: NVRTC compiles these files as they are (no system include paths needed);
// - kernels that call __syncthreads() use blockDim.x == EK_BLOCK (a power of two) and every
//   thread of the block reaches every barrier (loops over rows are uniform across the block).
#ifndef EK_COMMON_CUH
#define EK_COMMON_CUH

typedef long long i64;

#define EK_BLOCK 256
#define EK_INF (__int_as_float(0x7f800000))

// Grid-stride loop over [0, n) with a 64-bit index.
#define EK_FOR(i, n)                                                                  \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n);          \
         i += (i64)gridDim.x * blockDim.x)

// Fused activation codes: the same numbering as the CPU backend's ACT_CODES.
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_RELU6 2
#define ACT_LEAKY_RELU 3
#define ACT_CLIP 4
#define ACT_SIGMOID 5
#define ACT_TANH 6
#define ACT_SILU 7
#define ACT_HARDSWISH 8
#define ACT_HARDSIGMOID 9
#define ACT_GELU 10
#define ACT_GELU_TANH 11
#define ACT_ELU 12
#define ACT_SELU 13
#define ACT_SOFTPLUS 14
#define ACT_MISH 15

// Overflow-free logistic function; NaN stays NaN.
__device__ __forceinline__ float ek_sigmoid(float v) {
    float e = expf(-fabsf(v));            // in (0, 1]
    float r = 1.0f / (1.0f + e);
    return v >= 0.0f ? r : e * r;
}

// Comparisons are written so that NaN propagates as in PyTorch (relu(NaN) = NaN): a
// comparison with NaN is false, so NaN falls through to the branch that returns v.
__device__ __forceinline__ float ek_relu6_of(float t) {
    return t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
}

__device__ __forceinline__ float ek_act(float v, int code, float p0, float p1) {
    switch (code) {
    case ACT_RELU: return v < 0.0f ? 0.0f : v;
    case ACT_RELU6: return ek_relu6_of(v);
    case ACT_LEAKY_RELU: return v > 0.0f ? v : v * p0;
    case ACT_CLIP: v = v < p0 ? p0 : v; return v > p1 ? p1 : v;
    case ACT_SIGMOID: return ek_sigmoid(v);
    case ACT_TANH: return tanhf(v);
    case ACT_SILU: return v * ek_sigmoid(v);
    case ACT_HARDSWISH: return v * ek_relu6_of(v + 3.0f) / 6.0f;
    case ACT_HARDSIGMOID: return ek_relu6_of(v + 3.0f) / 6.0f;
    case ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case ACT_GELU_TANH: {
        float u = 0.79788456080286536f * (v + 0.044715f * v * v * v);
        return 0.5f * v * (1.0f + tanhf(u));
    }
    case ACT_ELU: return v > 0.0f ? v : p0 * expm1f(v);
    case ACT_SELU:
        return 1.0507009873554805f * (v > 0.0f ? v : 1.6732632423543772f * expm1f(v));
    case ACT_SOFTPLUS: {
        const float z = p0 * v;           // log1p(exp(z)) = max(z, 0) + log1p(exp(-|z|))
        return z > p1 ? v : (fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)))) / p0;
    }
    case ACT_MISH: {
        const float z = v > 0.0f ? v : 0.0f;
        return v * tanhf(z + log1pf(expf(-fabsf(v))));
    }
    default: return v;
    }
}

// max / min that propagate NaN (fmaxf / fminf would drop it).
__device__ __forceinline__ float ek_max_nan(float a, float b) {
    return (a > b || a != a) ? a : b;
}
__device__ __forceinline__ float ek_min_nan(float a, float b) {
    return (a < b || a != a) ? a : b;
}

// Block-wide reductions over shared memory `sh` (EK_BLOCK floats).  Every thread of the
// block must call them; all threads get the result.
__device__ __forceinline__ float ek_block_sum(float v, float* sh) {
    const int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();                       // sh may be reused right after
    return r;
}

__device__ __forceinline__ float ek_block_max(float v, float* sh) {
    const int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = blockDim.x >> 1; s > 0; s >>= 1) {
        if (t < s) sh[t] = ek_max_nan(sh[t], sh[t + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

#endif  // EK_COMMON_CUH
