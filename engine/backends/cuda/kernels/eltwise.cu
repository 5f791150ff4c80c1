// Elementwise kernels: activations, broadcast arithmetic, prelu, batch norm, the conv/linear
// epilogue (bias + residual + activation), and data movement (strided copies, permute, pad,
// resize).  All loop grid-stride over the output; none needs shared memory.
#include "common.cuh"

// y = act(x), the unary ops relu ... gelu (codes in common.cuh).
extern "C" __global__ void ek_unary(const float* x, float* y, i64 n, int code, float p0,
                                    float p1) {
    EK_FOR(i, n) y[i] = ek_act(x[i], code, p0, p1);
}

// y = a (op) b with broadcasting.  The host collapses the broadcast to nd <= 8 dims and
// uploads meta = [shape[nd], a_stride[nd], b_stride[nd]] (strides in elements, 0 where an
// operand is broadcast).  op: 0 add, 1 sub, 2 mul, 3 div (IEEE: x/0 = +-inf, 0/0 = NaN),
// 4 max, 5 min (NaN from either side propagates).
extern "C" __global__ void ek_binary(const float* a, const float* b, float* y, i64 n, int op,
                                     int nd, const i64* __restrict__ meta) {
    EK_FOR(i, n) {
        i64 r = i, ia = 0, ib = 0;
        for (int d = nd - 1; d >= 0; --d) {
            const i64 s = meta[d];
            const i64 q = r / s;
            const i64 c = r - q * s;
            ia += c * meta[nd + d];
            ib += c * meta[2 * nd + d];
            r = q;
        }
        const float u = a[ia], v = b[ib];
        float z;
        switch (op) {
        case 0: z = u + v; break;
        case 1: z = u - v; break;
        case 2: z = u * v; break;
        case 4: z = (u > v || u != u) ? u : v; break;
        case 5: z = (u < v || u != u) ? u : v; break;
        default: z = u / v; break;
        }
        y[i] = z;
    }
}

// prelu: x if x > 0 else w[c] * x, c = (i / inner) % C (C == 1: one shared slope).
extern "C" __global__ void ek_prelu(const float* x, const float* w, float* y, i64 n, i64 inner,
                                    int C) {
    EK_FOR(i, n) {
        const float v = x[i];
        const int c = C > 1 ? (int)((i / inner) % C) : 0;
        y[i] = v > 0.0f ? v : w[c] * v;
    }
}

// Inference batch norm (when it could not be folded into a preceding conv):
// (x - mean[c]) / sqrt(var[c] + eps) * w[c] + b[c]; w and b may be null.
extern "C" __global__ void ek_batch_norm(const float* x, float* y, i64 n, i64 inner, int C,
                                         const float* mean, const float* var, const float* w,
                                         const float* b, float eps, int code, float p0,
                                         float p1) {
    EK_FOR(i, n) {
        const int c = (int)((i / inner) % C);
        float v = (x[i] - mean[c]) / sqrtf(var[c] + eps);
        if (w) v *= w[c];
        if (b) v += b[c];
        y[i] = ek_act(v, code, p0, p1);
    }
}

// The epilogue of a cuBLAS conv / linear, in place on the GEMM result:
// y = act(y + bias[(i / inner) % C] + res[i]); bias and res may be null.
extern "C" __global__ void ek_epilogue(float* y, i64 n, i64 inner, int C, const float* bias,
                                       const float* res, int code, float p0, float p1) {
    EK_FOR(i, n) {
        float v = y[i];
        if (bias) v += bias[(i / inner) % C];
        if (res) v += res[i];
        y[i] = ek_act(v, code, p0, p1);
    }
}

// dst[o * dst_stride + j] = src[o * src_stride + j] for o < outer, j < chunk: one concat
// input into its slice of the output, one split piece out of its input, a plain copy.
extern "C" __global__ void ek_copy_slices(const float* __restrict__ src, float* __restrict__ dst,
                                          i64 outer, i64 chunk, i64 src_stride,
                                          i64 dst_stride) {
    const i64 n = outer * chunk;
    EK_FOR(i, n) {
        const i64 o = i / chunk;
        const i64 j = i - o * chunk;
        dst[o * dst_stride + j] = src[o * src_stride + j];
    }
}

// Generic permutation gather: meta = [out_shape[nd], src_stride[nd]] where src_stride[d] is
// the input stride of the dim that becomes output dim d.
extern "C" __global__ void ek_permute(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                      int nd, const i64* __restrict__ meta) {
    EK_FOR(i, n) {
        i64 r = i, src = 0;
        for (int d = nd - 1; d >= 0; --d) {
            const i64 s = meta[d];
            const i64 q = r / s;
            src += (r - q * s) * meta[nd + d];
            r = q;
        }
        y[i] = x[src];
    }
}

// pad: meta = [out_shape[nd], in_shape[nd], begin[nd], in_stride[nd]].
// mode 0 constant (value), 1 reflect (pads < size, one reflection), 2 replicate.
extern "C" __global__ void ek_pad(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                  int nd, int mode, float value, const i64* __restrict__ meta) {
    EK_FOR(i, n) {
        i64 r = i, src = 0;
        bool outside = false;
        for (int d = nd - 1; d >= 0; --d) {
            const i64 os = meta[d], is = meta[nd + d];
            const i64 q = r / os;
            i64 c = r - q * os - meta[2 * nd + d];
            r = q;
            if (c < 0 || c >= is) {
                if (mode == 0) {
                    outside = true;
                    continue;
                }
                if (mode == 1) c = c < 0 ? -c : 2 * (is - 1) - c;
                else c = c < 0 ? 0 : is - 1;
            }
            src += c * meta[3 * nd + d];
        }
        y[i] = outside ? value : x[src];
    }
}

// Nearest resize over (N*C, D, H, W) with per-dim source index tables built on the host
// (PyTorch's mapping): tab = [d[Do], h[Ho], w[Wo]].
extern "C" __global__ void ek_resize_nearest(const float* __restrict__ x, float* __restrict__ y,
                                             i64 n, int Di, int Hi, int Wi, int Do, int Ho,
                                             int Wo, const i64* __restrict__ tab) {
    EK_FOR(i, n) {
        const int ow = (int)(i % Wo);
        i64 r = i / Wo;
        const int oh = (int)(r % Ho);
        r /= Ho;
        const int od = (int)(r % Do);
        const i64 nc = r / Do;
        const i64 src = ((nc * Di + tab[od]) * Hi + tab[Do + oh]) * (i64)Wi + tab[Do + Ho + ow];
        y[i] = x[src];
    }
}

// Bilinear resize over (N*C, H, W); tables from the host (PyTorch's mapping):
// idx = [h0[Ho], h1[Ho], w0[Wo], w1[Wo]], lam = [lh0[Ho], lh1[Ho], lw0[Wo], lw1[Wo]].
// Separable in the reference's order: along H first, then along W.
extern "C" __global__ void ek_resize_bilinear(const float* __restrict__ x,
                                              float* __restrict__ y, i64 n, int Hi, int Wi,
                                              int Ho, int Wo, const i64* __restrict__ idx,
                                              const float* __restrict__ lam) {
    EK_FOR(i, n) {
        const int ow = (int)(i % Wo);
        const i64 r = i / Wo;
        const int oh = (int)(r % Ho);
        const i64 nc = r / Ho;
        const float* p = x + nc * (i64)Hi * Wi;
        const i64 h0 = idx[oh] * Wi, h1 = idx[Ho + oh] * Wi;
        const i64 w0 = idx[2 * Ho + ow], w1 = idx[2 * Ho + Wo + ow];
        const float lh0 = lam[oh], lh1 = lam[Ho + oh];
        const float lw0 = lam[2 * Ho + ow], lw1 = lam[2 * Ho + Wo + ow];
        const float c0 = p[h0 + w0] * lh0 + p[h1 + w0] * lh1;
        const float c1 = p[h0 + w1] * lh0 + p[h1 + w1] * lh1;
        y[i] = c0 * lw0 + c1 * lw1;
    }
}
