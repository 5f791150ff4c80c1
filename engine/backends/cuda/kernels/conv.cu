// Convolution kernels.  The heavy lifting is cuBLAS SGEMM, planned on the host; these
// kernels prepare its operands and apply the fused epilogues:
//   ek_im2col            columns for the GEMM of a general conv (1-3 spatial dims, as 3)
//   ek_depthwise         direct depthwise conv (groups == C, channel multiplier M)
//   ek_col2im            conv_transpose: gather the GEMM columns into the output
//   ek_wino_input        Winograd F(2x2, 3x3) input transform  V = B^T d B
//   ek_wino_output       Winograd output transform  Y = A^T M A
// Every kernel that writes the final conv output fuses bias + residual + activation.
// Spatial shapes are (D, H, W): 1-D and 2-D convs run with leading unit dims.
#include "common.cuh"

// col (per image, row-major): [C*KD*KH*KW][P], P = Do*Ho*Wo; row c*kk + tap.
// Images 0..nimg-1 of x (the host offsets x and col to the chunk's first image).
// Grid: x loops over output positions, y over (image, row) pairs, both grid-stride.
// pd/ph/pw are the *begin* paddings (asymmetric end padding is implied by Do/Ho/Wo).
extern "C" __global__ void ek_im2col(const float* __restrict__ x, float* __restrict__ col,
                                     int nimg, int C, int D, int H, int W, int Do, int Ho,
                                     int Wo, int KD, int KH, int KW, int sd, int sh, int sw,
                                     int pd, int ph, int pw, int dd, int dh, int dw) {
    const int khw = KH * KW;
    const int kk = KD * khw;
    const i64 K = (i64)C * kk;
    const int P = Do * Ho * Wo;            // < 2^31, checked on the host
    const i64 rows = (i64)nimg * K;
    const i64 plane = (i64)D * H * W;
    for (i64 row = blockIdx.y; row < rows; row += gridDim.y) {
        const i64 img = row / K;
        const int k = (int)(row - img * K);
        const int c = k / kk;
        int t = k - c * kk;
        const int td = t / khw;
        t -= td * khw;
        const int th = t / KW, tw = t - th * KW;
        const float* xc = x + (img * C + c) * plane;
        float* out = col + row * (i64)P;
        const int od0 = td * dd - pd, oh0 = th * dh - ph, ow0 = tw * dw - pw;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < P; p += gridDim.x * blockDim.x) {
            const int ow = p % Wo;
            const int q = p / Wo;
            const int oh = q % Ho;
            const int od = q / Ho;
            const int id = od * sd + od0, ih = oh * sh + oh0, iw = ow * sw + ow0;
            float v = 0.0f;
            if (id >= 0 && id < D && ih >= 0 && ih < H && iw >= 0 && iw < W)
                v = xc[((i64)id * H + ih) * W + iw];
            out[p] = v;
        }
    }
}

// Depthwise conv: output channel co = c*M + m reads input channel c = co / M.
// w: (C*M, 1, KD, KH, KW).  One thread per output element (n = N*C*M*Do*Ho*Wo).
extern "C" __global__ void ek_depthwise(const float* __restrict__ x, const float* __restrict__ w,
                                        const float* bias, const float* res,
                                        float* __restrict__ y, i64 n, int C, int M, int D,
                                        int H, int W, int Do, int Ho, int Wo, int KD, int KH,
                                        int KW, int sd, int sh, int sw, int pd, int ph, int pw,
                                        int dd, int dh, int dw, int code, float p0, float p1) {
    const int CM = C * M;
    const i64 plane = (i64)D * H * W;
    EK_FOR(i, n) {
        const int ow = (int)(i % Wo);
        i64 r = i / Wo;
        const int oh = (int)(r % Ho);
        r /= Ho;
        const int od = (int)(r % Do);
        r /= Do;
        const int co = (int)(r % CM);
        const i64 img = r / CM;
        const int c = co / M;
        const float* xc = x + (img * C + c) * plane;
        const float* wc = w + (i64)co * KD * KH * KW;
        float acc = 0.0f;
        for (int a = 0; a < KD; ++a) {
            const int id = od * sd - pd + a * dd;
            if (id < 0 || id >= D) continue;
            for (int b = 0; b < KH; ++b) {
                const int ih = oh * sh - ph + b * dh;
                if (ih < 0 || ih >= H) continue;
                const float* xr = xc + ((i64)id * H + ih) * W;
                const float* wr = wc + (a * KH + b) * KW;
                for (int e = 0; e < KW; ++e) {
                    const int iw = ow * sw - pw + e * dw;
                    if (iw >= 0 && iw < W) acc += xr[iw] * wr[e];
                }
            }
        }
        if (bias) acc += bias[co];
        if (res) acc += res[i];
        y[i] = ek_act(acc, code, p0, p1);
    }
}

// conv_transpose, second half: col (per image, row-major) is [Cout*kk][Pi], Pi = Di*Hi*Wi,
// row co*kk + tap, computed by the GEMM W^T x.  Each output element gathers the taps that
// land on it: input index i = (o + pad - t*dil) / stride when divisible and in range (no
// atomics, deterministic).  n = nimg*Cout*Do*Ho*Wo (the host offsets col / y / res).
extern "C" __global__ void ek_col2im(const float* __restrict__ col, const float* bias,
                                     const float* res, float* __restrict__ y, i64 n, int Cout,
                                     int Di, int Hi, int Wi, int Do, int Ho, int Wo, int KD,
                                     int KH, int KW, int sd, int sh, int sw, int pd, int ph,
                                     int pw, int dd, int dh, int dw, int code, float p0,
                                     float p1) {
    const int kk = KD * KH * KW;
    const i64 Pi = (i64)Di * Hi * Wi;
    EK_FOR(i, n) {
        const int ow = (int)(i % Wo);
        i64 r = i / Wo;
        const int oh = (int)(r % Ho);
        r /= Ho;
        const int od = (int)(r % Do);
        r /= Do;
        const int co = (int)(r % Cout);
        const i64 img = r / Cout;
        const float* cc = col + (img * Cout + co) * (i64)kk * Pi;
        float acc = 0.0f;
        for (int a = 0; a < KD; ++a) {
            const int nd_ = od + pd - a * dd;
            if (nd_ < 0 || nd_ % sd) continue;
            const int id = nd_ / sd;
            if (id >= Di) continue;
            for (int b = 0; b < KH; ++b) {
                const int nh = oh + ph - b * dh;
                if (nh < 0 || nh % sh) continue;
                const int ih = nh / sh;
                if (ih >= Hi) continue;
                for (int e = 0; e < KW; ++e) {
                    const int nw = ow + pw - e * dw;
                    if (nw < 0 || nw % sw) continue;
                    const int iw = nw / sw;
                    if (iw >= Wi) continue;
                    acc += cc[(i64)((a * KH + b) * KW + e) * Pi + ((i64)id * Hi + ih) * Wi + iw];
                }
            }
        }
        if (bias) acc += bias[co];
        if (res) acc += res[i];
        y[i] = ek_act(acc, code, p0, p1);
    }
}

// Winograd F(2x2, 3x3), stride 1, dilation 1.  Tiles: TH x TW per image, T = nimg*TH*TW;
// tile (th, tw) reads input rows 2*th - pt .. +3 and columns 2*tw - pl .. +3 (zero outside).
// V layout: [16][C][T] (xi = 4*i + j), the A operand of 16 batched GEMMs M = U V.
extern "C" __global__ void ek_wino_input(const float* __restrict__ x, float* __restrict__ V,
                                         int nimg, int C, int H, int W, int TH, int TW, int pt,
                                         int pl) {
    const i64 T = (i64)nimg * TH * TW;
    const i64 n = (i64)C * T;
    EK_FOR(i, n) {
        const int c = (int)(i / T);
        const i64 t = i - (i64)c * T;
        const int tw = (int)(t % TW);
        const i64 q = t / TW;
        const int th = (int)(q % TH);
        const i64 img = q / TH;
        const float* xc = x + (img * C + c) * (i64)H * W;
        const int h0 = 2 * th - pt, w0 = 2 * tw - pl;
        float d[4][4];
        for (int a = 0; a < 4; ++a) {
            const int h = h0 + a;
            for (int b = 0; b < 4; ++b) {
                const int w = w0 + b;
                d[a][b] = (h >= 0 && h < H && w >= 0 && w < W) ? xc[(i64)h * W + w] : 0.0f;
            }
        }
        float s[4][4];                     // s = B^T d
        for (int b = 0; b < 4; ++b) {
            s[0][b] = d[0][b] - d[2][b];
            s[1][b] = d[1][b] + d[2][b];
            s[2][b] = d[2][b] - d[1][b];
            s[3][b] = d[1][b] - d[3][b];
        }
        float* out = V + (i64)c * T + t;
        const i64 step = (i64)C * T;
        for (int a = 0; a < 4; ++a) {      // v = s B
            out[(4 * a + 0) * step] = s[a][0] - s[a][2];
            out[(4 * a + 1) * step] = s[a][1] + s[a][2];
            out[(4 * a + 2) * step] = s[a][2] - s[a][1];
            out[(4 * a + 3) * step] = s[a][1] - s[a][3];
        }
    }
}

// M layout: [16][Cout][T].  Y = A^T M A (2x2 per tile), then bias + residual + activation.
// y / res: images 0..nimg-1 of (Cout, Ho, Wo) (the host offsets them to the chunk).
extern "C" __global__ void ek_wino_output(const float* __restrict__ Mt, const float* bias,
                                          const float* res, float* __restrict__ y, int nimg,
                                          int Cout, int Ho, int Wo, int TH, int TW, int code,
                                          float p0, float p1) {
    const i64 T = (i64)nimg * TH * TW;
    const i64 n = (i64)Cout * T;
    EK_FOR(i, n) {
        const int co = (int)(i / T);
        const i64 t = i - (i64)co * T;
        const int tw = (int)(t % TW);
        const i64 q = t / TW;
        const int th = (int)(q % TH);
        const i64 img = q / TH;
        const float* src = Mt + (i64)co * T + t;
        const i64 step = (i64)Cout * T;
        float m[4][4];
        for (int a = 0; a < 4; ++a)
            for (int b = 0; b < 4; ++b) m[a][b] = src[(4 * a + b) * step];
        float s[2][4];                     // s = A^T m
        for (int b = 0; b < 4; ++b) {
            s[0][b] = m[0][b] + m[1][b] + m[2][b];
            s[1][b] = m[1][b] - m[2][b] - m[3][b];
        }
        const float bv = bias ? bias[co] : 0.0f;
        const i64 base = (img * Cout + co) * (i64)Ho * Wo;
        for (int a = 0; a < 2; ++a) {
            const int oh = 2 * th + a;
            if (oh >= Ho) continue;
            const float r0 = s[a][0] + s[a][1] + s[a][2];
            const float r1 = s[a][1] - s[a][2] - s[a][3];
            for (int b = 0; b < 2; ++b) {
                const int ow = 2 * tw + b;
                if (ow >= Wo) continue;
                const i64 o = base + (i64)oh * Wo + ow;
                float v = (b == 0 ? r0 : r1) + bv;
                if (res) v += res[o];
                y[o] = ek_act(v, code, p0, p1);
            }
        }
    }
}
