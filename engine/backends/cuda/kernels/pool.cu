// Pooling and reductions: windowed max / min / avg (1-3 spatial dims, as 3), adaptive
// avg / max, a block-per-row reduction (global pooling, mean over trailing dims) and a
// general mean over any set of dims.
#include "common.cuh"

// One thread per output of (N*C, Do, Ho, Wo).  mode 0 max, 1 min, 2 avg.
// Max / min skip padded and out-of-range taps (PyTorch pads with -inf / +inf) and propagate
// NaN; avg sums the in-range taps and divides by PyTorch's divisor: per dim
// start = o*s - p, end = min(start + k, in + p), size = end - start (count_include_pad) or the
// clipped window size otherwise; the divisor is the product over dims.  Avg has dilation 1.
extern "C" __global__ void ek_pool(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                   int D, int H, int W, int Do, int Ho, int Wo, int KD, int KH,
                                   int KW, int sd, int sh, int sw, int pd, int ph, int pw,
                                   int dd, int dh, int dw, int mode, int count_include_pad) {
    EK_FOR(i, n) {
        const int ow = (int)(i % Wo);
        i64 r = i / Wo;
        const int oh = (int)(r % Ho);
        r /= Ho;
        const int od = (int)(r % Do);
        const i64 nc = r / Do;
        const float* xc = x + nc * (i64)D * H * W;
        const int d0 = od * sd - pd, h0 = oh * sh - ph, w0 = ow * sw - pw;
        if (mode == 2) {
            const int de = min(d0 + KD, D + pd), he = min(h0 + KH, H + ph), we = min(w0 + KW, W + pw);
            const int ds = max(d0, 0), hs = max(h0, 0), ws = max(w0, 0);
            const int dc = min(de, D), hc = min(he, H), wc = min(we, W);
            float acc = 0.0f;
            for (int a = ds; a < dc; ++a)
                for (int b = hs; b < hc; ++b) {
                    const float* row = xc + ((i64)a * H + b) * W;
                    for (int e = ws; e < wc; ++e) acc += row[e];
                }
            float div;
            if (count_include_pad) div = (float)(de - d0) * (float)(he - h0) * (float)(we - w0);
            else div = (float)(dc - ds) * (float)(hc - hs) * (float)(wc - ws);
            y[i] = acc / div;
        } else {
            float m = mode == 0 ? -EK_INF : EK_INF;
            for (int a = 0; a < KD; ++a) {
                const int id = d0 + a * dd;
                if (id < 0 || id >= D) continue;
                for (int b = 0; b < KH; ++b) {
                    const int ih = h0 + b * dh;
                    if (ih < 0 || ih >= H) continue;
                    const float* row = xc + ((i64)id * H + ih) * W;
                    for (int e = 0; e < KW; ++e) {
                        const int iw = w0 + e * dw;
                        if (iw < 0 || iw >= W) continue;
                        const float v = row[iw];
                        m = mode == 0 ? ek_max_nan(m, v) : ek_min_nan(m, v);
                    }
                }
            }
            y[i] = m;
        }
    }
}

// Adaptive pooling, PyTorch's windows [floor(o*in/out), ceil((o+1)*in/out)) per dim.
// mode 0 max (NaN-propagating), 2 avg.  One thread per output of (N*C, Do, Ho, Wo).
extern "C" __global__ void ek_adaptive_pool(const float* __restrict__ x, float* __restrict__ y,
                                            i64 n, int D, int H, int W, int Do, int Ho, int Wo,
                                            int mode) {
    EK_FOR(i, n) {
        const int ow = (int)(i % Wo);
        i64 r = i / Wo;
        const int oh = (int)(r % Ho);
        r /= Ho;
        const int od = (int)(r % Do);
        const i64 nc = r / Do;
        const float* xc = x + nc * (i64)D * H * W;
        const int ds = (int)(((i64)od * D) / Do), de = (int)(((i64)(od + 1) * D + Do - 1) / Do);
        const int hs = (int)(((i64)oh * H) / Ho), he = (int)(((i64)(oh + 1) * H + Ho - 1) / Ho);
        const int ws = (int)(((i64)ow * W) / Wo), we = (int)(((i64)(ow + 1) * W + Wo - 1) / Wo);
        float acc = mode == 0 ? -EK_INF : 0.0f;
        for (int a = ds; a < de; ++a)
            for (int b = hs; b < he; ++b) {
                const float* row = xc + ((i64)a * H + b) * W;
                for (int e = ws; e < we; ++e)
                    acc = mode == 0 ? ek_max_nan(acc, row[e]) : acc + row[e];
            }
        if (mode != 0) acc /= (float)(de - ds) * (float)(he - hs) * (float)(we - ws);
        y[i] = acc;
    }
}

// One block per row of a (rows, L) matrix (grid-stride over rows): y[row] = mean (mode 2)
// or NaN-propagating max (mode 0) of the row.  Global pooling, mean over trailing dims.
extern "C" __global__ void ek_rows_reduce(const float* __restrict__ x, float* __restrict__ y,
                                          i64 rows, i64 L, int mode) {
    __shared__ float sh[EK_BLOCK];
    for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* p = x + row * L;
        float v = mode == 0 ? -EK_INF : 0.0f;
        for (i64 j = threadIdx.x; j < L; j += blockDim.x)
            v = mode == 0 ? ek_max_nan(v, p[j]) : v + p[j];
        if (mode == 0) {
            v = ek_block_max(v, sh);
        } else {
            v = ek_block_sum(v, sh) / (float)L;
        }
        if (threadIdx.x == 0) y[row] = v;
    }
}

// Mean over an arbitrary set of dims: meta = [keep_shape[nk], keep_stride[nk],
// red_shape[nr], red_stride[nr]] (input strides in elements); count = prod(red_shape).
// One thread per output element (n = prod(keep_shape)).
extern "C" __global__ void ek_reduce_mean(const float* __restrict__ x, float* __restrict__ y,
                                          i64 n, int nk, int nr, i64 count,
                                          const i64* __restrict__ meta) {
    EK_FOR(i, n) {
        i64 r = i, base = 0;
        for (int d = nk - 1; d >= 0; --d) {
            const i64 s = meta[d];
            const i64 q = r / s;
            base += (r - q * s) * meta[nk + d];
            r = q;
        }
        const i64* rs = meta + 2 * nk;
        float acc = 0.0f;
        for (i64 j = 0; j < count; ++j) {
            i64 u = j, off = base;
            for (int d = nr - 1; d >= 0; --d) {
                const i64 s = rs[d];
                const i64 q = u / s;
                off += (u - q * s) * rs[nr + d];
                u = q;
            }
            acc += x[off];
        }
        y[i] = acc / (float)count;
    }
}
