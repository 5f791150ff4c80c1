// Normalisations and softmax: softmax / log_softmax (over a contiguous row or a strided
// column), layer norm, group / instance norm (two-pass statistics) and local response norm.
#include "common.cuh"

// Softmax over rows of length L (the reduced dim is the last, contiguous one): one block
// per row (grid-stride).  Max-subtracted; an all -inf row gives NaN, as PyTorch.
extern "C" __global__ void ek_softmax_rows(const float* __restrict__ x, float* __restrict__ y,
                                           i64 rows, i64 L, int use_log) {
    __shared__ float sh[EK_BLOCK];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* p = x + row * L;
        float* q = y + row * L;
        float m = -EK_INF;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) m = ek_max_nan(m, p[j]);
        m = ek_block_max(m, sh);
        if (m == -EK_INF) m = 0.0f;
        float s = 0.0f;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) s += expf(p[j] - m);
        s = ek_block_sum(s, sh);
        if (use_log) {
            const float ls = logf(s);
            for (i64 j = threadIdx.x; j < L; j += blockDim.x) q[j] = (p[j] - m) - ls;
        } else {
            const float inv = 1.0f / s;
            for (i64 j = threadIdx.x; j < L; j += blockDim.x) q[j] = expf(p[j] - m) * inv;
        }
    }
}

// Softmax over a strided dim: x viewed as (outer, L, inner), one thread per (outer, inner)
// column (n = outer*inner).  For channel softmax of segmentation maps (small L).
extern "C" __global__ void ek_softmax_cols(const float* __restrict__ x, float* __restrict__ y,
                                           i64 n, i64 L, i64 inner, int use_log) {
    EK_FOR(i, n) {
        const i64 o = i / inner;
        const i64 j = i - o * inner;
        const float* p = x + o * L * inner + j;
        float* q = y + o * L * inner + j;
        float m = -EK_INF;
        for (i64 k = 0; k < L; ++k) m = ek_max_nan(m, p[k * inner]);
        if (m == -EK_INF) m = 0.0f;
        float s = 0.0f;
        for (i64 k = 0; k < L; ++k) s += expf(p[k * inner] - m);
        if (use_log) {
            const float ls = logf(s);
            for (i64 k = 0; k < L; ++k) q[k * inner] = (p[k * inner] - m) - ls;
        } else {
            const float inv = 1.0f / s;
            for (i64 k = 0; k < L; ++k) q[k * inner] = expf(p[k * inner] - m) * inv;
        }
    }
}

// Layer norm over rows of length L (the trailing normalized_shape dims), one block per row:
// mean, then the biased variance of (x - mean) (two passes), then the elementwise affine
// w[j], b[j] (either may be null).
extern "C" __global__ void ek_layer_norm(const float* __restrict__ x, float* __restrict__ y,
                                         i64 rows, i64 L, const float* w, const float* b,
                                         float eps) {
    __shared__ float sh[EK_BLOCK];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* p = x + row * L;
        float* q = y + row * L;
        float s = 0.0f;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) s += p[j];
        const float mean = ek_block_sum(s, sh) / (float)L;
        float v = 0.0f;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
            const float d = p[j] - mean;
            v += d * d;
        }
        const float sd = sqrtf(ek_block_sum(v, sh) / (float)L + eps);
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
            float o = (p[j] - mean) / sd;
            if (w) o *= w[j];
            if (b) o += b[j];
            q[j] = o;
        }
    }
}

// Group norm (instance norm: one channel per group).  Row r = n*G + g holds the
// cpg*S elements of channels g*cpg .. g*cpg + cpg - 1 (S = spatial size), contiguous in
// NCHW.  Per-channel affine w[c], b[c] (either may be null).  One block per row.
extern "C" __global__ void ek_group_norm(const float* __restrict__ x, float* __restrict__ y,
                                         i64 rows, int G, int cpg, i64 S, const float* w,
                                         const float* b, float eps) {
    __shared__ float sh[EK_BLOCK];
    const i64 L = (i64)cpg * S;
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* p = x + row * L;
        float* q = y + row * L;
        const int g = (int)(row % G);
        float s = 0.0f;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) s += p[j];
        const float mean = ek_block_sum(s, sh) / (float)L;
        float v = 0.0f;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
            const float d = p[j] - mean;
            v += d * d;
        }
        const float sd = sqrtf(ek_block_sum(v, sh) / (float)L + eps);
        for (i64 j = threadIdx.x; j < L; j += blockDim.x) {
            const int c = g * cpg + (int)(j / S);
            float o = (p[j] - mean) / sd;
            if (w) o *= w[c];
            if (b) o += b[c];
            q[j] = o;
        }
    }
}

// Local response norm across channels of (N, C, S):
// y = x / (k + alpha/size * sum_{c' = c - size/2 .. c + (size-1)/2, clipped} x[c']^2) ^ beta.
extern "C" __global__ void ek_lrn(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                  int C, i64 S, int size, float alpha, float beta, float k) {
    EK_FOR(i, n) {
        const i64 s = i % S;
        const i64 r = i / S;
        const int c = (int)(r % C);
        const i64 img = r / C;
        const int lo = max(c - size / 2, 0), hi = min(c + (size - 1) / 2, C - 1);
        const float* base = x + img * (i64)C * S + s;
        float acc = 0.0f;
        for (int cc = lo; cc <= hi; ++cc) {
            const float v = base[(i64)cc * S];
            acc += v * v;
        }
        y[i] = x[i] / powf(k + alpha / (float)size * acc, beta);
    }
}
