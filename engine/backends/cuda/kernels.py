"""The CUDA backend's kernel factories, one or more per op, registered like the CPU ones.

A factory runs once per node at prepare time (``register_kernel("cuda", op, variant)``): it
checks shapes, transforms constant weights (Winograd filters, index tables), sizes its
workspace (``kernel.scratch``, float32 elements) and returns a :class:`CudaKernel` whose
``emit(e)`` describes the node's device work as records (kernel launches on the .cu sources,
cuBLAS GEMMs, copies; see ``program.py``).  Nothing here touches a GPU or imports CuPy, so
kernel choice, launch configurations and GEMM parameters are all testable on the CPU.

Convolution variants (highest priority that supports the node wins):
  depthwise_direct   groups == C (channel multiplier allowed): one direct kernel
  whole_window       kernel covers the whole unpadded input (1x1 output): one GEMM, like linear
  winograd_f2x3      3x3, stride 1, dilation 1, groups 1, constant weights: F(2x2, 3x3)
                     transforms + 16 batched GEMMs, epilogue fused in the output transform
  pointwise_gemm     1x1, stride 1, no padding: GEMM on the input itself (no im2col)
  im2col_gemm        everything else (1-3 spatial dims, groups, dilation, asymmetric padding)
The cuBLAS variants fuse bias + residual + activation into one epilogue kernel; the direct
kernels (depthwise, Winograd output, col2im) apply them in their own store.
"""


import numpy as np

from ...errors import UnsupportedError
from ...ops import OPS
from ..base import KERNELS, Kernel, register_kernel
from ..common import ACT_CODES, GELU_TANH, broadcast_plan, contiguous_strides  # noqa: F401
from ..common import act_params as _act_params
from ..common import lead3 as _lead, prod, shape5
from .program import (BLOCK, F32, Ptr, Target, cdiv, f32, grid_1d, grid_2d, grid_rows, i32,
                      i64)

B = "cuda"

BIN_OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3, "maximum": 4, "minimum": 5}
POOL_MODES = {"max_pool": 0, "min_pool": 1, "avg_pool": 2}
MAX_DIMS = 8          # broadcast / permute / pad dims after collapsing

# Re-importing this module (tests reload the package) must not register kernels twice.
for _key in [k for k in KERNELS if k[0] == B]:
    del KERNELS[_key]


class CudaKernel(Kernel):
    """A prepared CUDA kernel: ``emit(e)`` appends its records to an Emitter."""

    def __init__(self, variant, emit, scratch=0):
        self.variant = variant
        self.scratch = int(scratch)
        self._emit = emit

    def emit(self, e):
        self._emit(e)

    def run(self, inputs, outputs, scratch):
        raise UnsupportedError("CUDA kernels run inside a CUDA plan (engine.Session with "
                               "backend='cuda'), not on host arrays")


def act_params(activation):
    """(code, p0, p1) of a fused activation dict (None: no activation)."""
    return _act_params(activation, "cuda")


def _act_args(activation):
    code, p0, p1 = act_params(activation)
    return i32(code), f32(p0), f32(p1)


# -- shape helpers ----------------------------------------------------------------------------

def _target(ctx):
    return ctx.options.get("target") or Target()


def _present(ctx, i):
    return i < len(ctx.in_shapes) and ctx.in_shapes[i] is not None


def _ptr(e, i):
    """Pointer of optional input i, or None (a null pointer) when absent."""
    return e.ins[i].ptr if i < len(e.ins) and e.ins[i] is not None else None


def _check_int_dims(node, *shapes):
    for s in shapes:
        for d in s:
            if int(d) > 2**31 - 1:
                raise UnsupportedError(f"node '{node.name}': dimension {d} does not fit the CUDA "
                                       f"kernels' int sizes")


def _epilogue(e, y, n, inner, C, bias, res, activation):
    """bias + residual + activation in place on y (a GEMM result); nothing if none apply."""
    code, p0, p1 = _act_args(activation)
    if bias is None and res is None and int(code) == 0:
        return
    e.launch("ek_epilogue", grid_1d(n, e.target), y, i64(n), i64(inner), i32(C), bias, res,
             code, p0, p1)


# -- convolution ------------------------------------------------------------------------------

class ConvGeom:
    """Everything a conv kernel needs, with 1-D / 2-D convs as 3-D ones (leading unit dims)."""

    def __init__(self, node, ctx, transpose=False):
        x, w, y = ctx.in_shapes[0], ctx.in_shapes[1], ctx.out_shapes[0]
        r = len(x) - 2
        if not 1 <= r <= 3 or len(w) != len(x):
            raise UnsupportedError(f"node '{node.name}': cuda conv supports 1 to 3 spatial "
                                   f"dims, got input shape {tuple(x)}")
        a = node.attrs
        self.r = r
        self.x5, self.w5, self.y5 = shape5(x), shape5(w), shape5(y)
        _check_int_dims(node, self.x5, self.w5, self.y5)
        self.stride = _lead(a["stride"], r, 1)
        self.dilation = _lead(a["dilation"], r, 1)
        if transpose:
            self.pad = _lead(a["padding"], r, 0)
        else:
            self.pad = _lead([p[0] for p in a["padding"]], r, 0)
        self.groups = int(a["groups"])
        self.activation = a.get("activation")
        self.N, self.C = self.x5[:2]
        self.kernel = list(self.w5[2:])
        self.kk = prod(self.kernel)
        self.P_in = prod(self.x5[2:])
        self.P_out = prod(self.y5[2:])
        self.Cout = self.y5[1]
        self.has_bias = _present(ctx, 2)
        self.has_res = _present(ctx, 3)

    def spatial_args(self):
        """D, H, W, Do, Ho, Wo, KD, KH, KW, strides, begin pads, dilations as int32."""
        vals = (list(self.x5[2:]) + list(self.y5[2:]) + self.kernel + self.stride + self.pad
                + self.dilation)
        return [i32(v) for v in vals]


def _conv_res(e, g):
    return _ptr(e, 3) if g.has_res else None


def _is_depthwise(node, ctx):
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    if not 1 <= len(x) - 2 <= 3 or len(w) != len(x):
        return False
    g, c, cout = int(node.attrs["groups"]), x[1], w[0]
    return g > 1 and g == c and w[1] == 1 and cout % c == 0


@register_kernel(B, "conv", "depthwise_direct", supports=_is_depthwise, priority=10,
                 note="direct kernel, one thread per output, bias/residual/activation fused")
def conv_depthwise(node, ctx):
    g = ConvGeom(node, ctx)
    M = g.Cout // g.C
    n = g.N * g.Cout * g.P_out
    act = _act_args(g.activation)

    def emit(e):
        x, w, y = e.ins[0], e.ins[1], e.outs[0]
        e.launch("ek_depthwise", grid_1d(n, e.target), x.ptr, w.ptr, _ptr(e, 2), _conv_res(e, g),
                 y.ptr, i64(n), i32(g.C), i32(M), *g.spatial_args(), *act)
    return CudaKernel("depthwise_direct", emit)


def _is_whole_window(node, ctx):
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    r = len(x) - 2
    if not 1 <= r <= 3 or len(w) != len(x):
        return False
    a = node.attrs
    return (int(a["groups"]) == 1 and tuple(x[2:]) == tuple(w[2:])
            and all(int(d) == 1 for d in ctx.out_shapes[0][2:])
            and all(int(p) == 0 for pair in a["padding"] for p in pair)
            and all(int(d) == 1 for d in a["dilation"]))


@register_kernel(B, "conv", "whole_window", supports=_is_whole_window, priority=8,
                 note="kernel covers the whole input (1x1 output): one SGEMM y = x W^T over "
                      "the batch, epilogue kernel")
def conv_whole_window(node, ctx):
    g = ConvGeom(node, ctx)
    K = g.C * g.kk

    def emit(e):
        x, w, y = e.ins[0], e.ins[1], e.outs[0]
        e.gemm(transa=True, transb=False, m=g.Cout, n=g.N, k=K, a=w.ptr, lda=K, b=x.ptr, ldb=K,
               c=y.ptr, ldc=g.Cout)
        _epilogue(e, y.ptr, g.N * g.Cout, 1, g.Cout, _ptr(e, 2), _conv_res(e, g), g.activation)
    return CudaKernel("whole_window", emit)


def winograd_wanted(node, ctx):
    """3x3 / stride 1 / dilation 1 / groups 1 2-D conv with constant weights, and the policy:
    'always', 'never' or 'auto' (64+ input and output channels: where the 2.25x fewer
    multiplies outweigh the transforms' memory traffic; an untuned default)."""
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    if len(x) != 4 or len(w) != 4 or tuple(w[2:]) != (3, 3) or ctx.constants[1] is None:
        return False
    a = node.attrs
    if (int(a["groups"]) != 1 or any(int(s) != 1 for s in a["stride"])
            or any(int(d) != 1 for d in a["dilation"])):
        return False
    policy = _target(ctx).winograd
    if policy == "never":
        return False
    if policy == "always":
        return True
    return int(x[1]) >= 64 and int(w[0]) >= 64


def winograd_filter(w):
    """U = G g G^T for F(2x2, 3x3): (Cout, Cin, 3, 3) -> (16, Cout, Cin), index 4*a + b."""
    G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
    u = np.einsum("ai,ocij,bj->aboc", G, np.asarray(w, np.float64), G)
    return np.ascontiguousarray(u.reshape(16, w.shape[0], w.shape[1]), dtype=np.float32)


def _chunk(N, per_image_bytes, target):
    """Images per workspace chunk: as many as fit the target's workspace budget (>= 1)."""
    return max(1, min(N, int(target.workspace_bytes) // max(1, int(per_image_bytes))))


@register_kernel(B, "conv", "winograd_f2x3", supports=winograd_wanted, priority=7,
                 note="F(2x2,3x3): input transform kernel, 16 strided-batched SGEMMs on "
                      "filters transformed at prepare time, output transform with "
                      "bias/residual/activation fused")
def conv_winograd(node, ctx):
    g = ConvGeom(node, ctx)
    N, C, H, W = g.N, g.C, g.x5[3], g.x5[4]
    Cout, Ho, Wo = g.Cout, g.y5[3], g.y5[4]
    pt, pl = g.pad[1], g.pad[2]
    TH, TW = cdiv(Ho, 2), cdiv(Wo, 2)
    T1 = TH * TW
    target = _target(ctx)
    chunk = _chunk(N, 16 * (C + Cout) * T1 * F32, target)
    U = winograd_filter(ctx.constants[1])
    act = _act_args(g.activation)

    def emit(e):
        x, y = e.ins[0], e.outs[0]
        Up = e.upload("winograd_U", U)
        bias, res = _ptr(e, 2), _conv_res(e, g)
        for n0 in range(0, N, chunk):
            nb = min(chunk, N - n0)
            T = nb * T1
            V, Mt = e.work, e.work.at(16 * C * T)
            e.launch("ek_wino_input", grid_1d(C * T, e.target), x.ptr.at(n0 * C * H * W), V,
                     i32(nb), i32(C), i32(H), i32(W), i32(TH), i32(TW), i32(pt), i32(pl))
            e.gemm(transa=False, transb=False, m=T, n=Cout, k=C, a=V, lda=T, b=Up, ldb=C,
                   c=Mt, ldc=T, batch=16, stride_a=C * T, stride_b=Cout * C, stride_c=Cout * T)
            off = n0 * Cout * Ho * Wo
            e.launch("ek_wino_output", grid_1d(Cout * T, e.target), Mt, bias,
                     None if res is None else res.at(off), y.ptr.at(off), i32(nb), i32(Cout),
                     i32(Ho), i32(Wo), i32(TH), i32(TW), *act)
    return CudaKernel("winograd_f2x3", emit, scratch=16 * (C + Cout) * chunk * T1)


def _is_pointwise(node, ctx):
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    r = len(x) - 2
    if not 1 <= r <= 3 or len(w) != len(x):
        return False
    a = node.attrs
    return (all(int(k) == 1 for k in w[2:]) and all(int(v) == 1 for v in a["stride"])
            and all(int(p) == 0 for pair in a["padding"] for p in pair)
            and tuple(ctx.out_shapes[0][2:]) == tuple(x[2:]))


def _conv_gemms(e, g, col, w, y, n0, nb, Kimg, P):
    """GEMMs of images n0 .. n0+nb-1: y_g (Cout/G x P) = w_g (Cout/G x K/G) col_g (K/G x P).

    Column-major view: y^T (P x Cout/G) = col^T (P x K/G) w^T; col holds the images' column
    matrices back to back (Kimg x P each, row-major)."""
    G, Cout = g.groups, g.Cout
    Kg, Cg_out = Kimg // G, Cout // G
    if G == 1:
        e.gemm(transa=False, transb=False, m=P, n=Cout, k=Kimg, a=col, lda=P, b=w, ldb=Kimg,
               c=y.at(n0 * Cout * P), ldc=P, batch=nb, stride_a=Kimg * P, stride_b=0,
               stride_c=Cout * P)
        return
    for j in range(nb):
        e.gemm(transa=False, transb=False, m=P, n=Cg_out, k=Kg, a=col.at(j * Kimg * P), lda=P,
               b=w, ldb=Kg, c=y.at((n0 + j) * Cout * P), ldc=P, batch=G, stride_a=Kg * P,
               stride_b=Cg_out * Kg, stride_c=Cg_out * P)


@register_kernel(B, "conv", "pointwise_gemm", supports=_is_pointwise, priority=5,
                 note="1x1 stride-1 conv: strided-batched SGEMM on the input itself (no "
                      "im2col), epilogue kernel")
def conv_pointwise(node, ctx):
    g = ConvGeom(node, ctx)
    P = g.P_out

    def emit(e):
        x, w, y = e.ins[0], e.ins[1], e.outs[0]
        _conv_gemms(e, g, x.ptr, w.ptr, y.ptr, 0, g.N, g.C, P)
        _epilogue(e, y.ptr, g.N * g.Cout * P, P, g.Cout, _ptr(e, 2), _conv_res(e, g),
                  g.activation)
    return CudaKernel("pointwise_gemm", emit)


@register_kernel(B, "conv", "im2col_gemm",
                 note="im2col kernel into a workspace chunk of images, strided-batched SGEMM "
                      "(per image over groups when grouped), epilogue kernel")
def conv_im2col(node, ctx):
    g = ConvGeom(node, ctx)
    N, C = g.N, g.C
    K, P = C * g.kk, g.P_out
    target = _target(ctx)
    chunk = _chunk(N, K * P * F32, target)
    D, H, W = g.x5[2:]
    spatial = g.spatial_args()

    def emit(e):
        x, w, y = e.ins[0], e.ins[1], e.outs[0]
        for n0 in range(0, N, chunk):
            nb = min(chunk, N - n0)
            e.launch("ek_im2col", grid_2d(P, nb * K, e.target), x.ptr.at(n0 * C * D * H * W),
                     e.work, i32(nb), i32(C), *spatial)
            _conv_gemms(e, g, e.work, w.ptr, y.ptr, n0, nb, K, P)
        _epilogue(e, y.ptr, N * g.Cout * P, P, g.Cout, _ptr(e, 2), _conv_res(e, g),
                  g.activation)
    return CudaKernel("im2col_gemm", emit, scratch=chunk * K * P)


@register_kernel(B, "conv_transpose", "gemm_col2im",
                 note="SGEMM W^T x into a workspace chunk, then a gather col2im kernel (no "
                      "atomics) with bias/residual/activation fused")
def conv_transpose(node, ctx):
    g = ConvGeom(node, ctx, transpose=True)
    N, Cin, G = g.N, g.C, g.groups
    Cout, Pi, Po, kk = g.Cout, g.P_in, g.P_out, g.kk
    Cin_g = Cin // G
    CKg = (Cout // G) * kk
    per_image = Cout * kk * Pi
    target = _target(ctx)
    chunk = _chunk(N, per_image * F32, target)
    act = _act_args(g.activation)
    spatial = g.spatial_args()

    def emit(e):
        x, w, y = e.ins[0], e.ins[1], e.outs[0]
        bias, res = _ptr(e, 2), _conv_res(e, g)
        for n0 in range(0, N, chunk):
            nb = min(chunk, N - n0)
            # col^T (Pi x CKg) = x_g^T (Pi x Cin/G) . w_g (Cin/G x CKg), per group
            if G == 1:
                e.gemm(transa=False, transb=True, m=Pi, n=CKg, k=Cin, a=x.ptr.at(n0 * Cin * Pi),
                       lda=Pi, b=w.ptr, ldb=CKg, c=e.work, ldc=Pi, batch=nb,
                       stride_a=Cin * Pi, stride_b=0, stride_c=per_image)
            else:
                for j in range(nb):
                    e.gemm(transa=False, transb=True, m=Pi, n=CKg, k=Cin_g,
                           a=x.ptr.at((n0 + j) * Cin * Pi), lda=Pi, b=w.ptr, ldb=CKg,
                           c=e.work.at(j * per_image), ldc=Pi, batch=G, stride_a=Cin_g * Pi,
                           stride_b=Cin_g * CKg, stride_c=CKg * Pi)
            off = n0 * Cout * Po
            n = nb * Cout * Po
            e.launch("ek_col2im", grid_1d(n, e.target), e.work, bias,
                     None if res is None else res.at(off), y.ptr.at(off), i64(n), i32(Cout),
                     *spatial, *act)
    return CudaKernel("gemm_col2im", emit, scratch=chunk * per_image)


# -- pooling ----------------------------------------------------------------------------------

def _pool_factory(op):
    mode = POOL_MODES[op]

    def factory(node, ctx):
        x, y = ctx.in_shapes[0], ctx.out_shapes[0]
        r = len(x) - 2
        a = node.attrs
        x5, y5 = shape5(x), shape5(y)
        _check_int_dims(node, x5, y5)
        k = _lead(a["kernel_size"], r, 1)
        s = _lead(a["stride"], r, 1)
        p = _lead(a["padding"], r, 0)
        d = _lead(a.get("dilation", [1] * r), r, 1)
        cip = bool(a.get("count_include_pad", True))
        n = prod(y5)
        args = [i32(v) for v in list(x5[2:]) + list(y5[2:]) + k + s + p + d]

        def emit(e):
            e.launch("ek_pool", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n), *args,
                     i32(mode), i32(cip))
        return CudaKernel("direct", emit)
    return factory


for _op in POOL_MODES:
    register_kernel(B, _op, "direct", note="one thread per output window; NaN-propagating "
                                           "max/min, PyTorch's avg divisors")(_pool_factory(_op))


def _adaptive_factory(mode):
    def factory(node, ctx):
        x5, y5 = shape5(ctx.in_shapes[0]), shape5(ctx.out_shapes[0])
        _check_int_dims(node, x5, y5)
        rows, L = x5[0] * x5[1], prod(x5[2:])
        if all(d == 1 for d in y5[2:]) and L >= 64:
            def emit_rows(e):
                e.launch("ek_rows_reduce", grid_rows(rows, e.target), e.ins[0].ptr,
                         e.outs[0].ptr, i64(rows), i64(L), i32(mode))
            return CudaKernel("rows_reduce", emit_rows)
        n = prod(y5)

        def emit(e):
            e.launch("ek_adaptive_pool", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr,
                     i64(n), *[i32(v) for v in list(x5[2:]) + list(y5[2:])], i32(mode))
        return CudaKernel("direct", emit)
    return factory


register_kernel(B, "adaptive_avg_pool", "direct",
                note="PyTorch's adaptive windows; global pooling (1x1 output) one block per "
                     "(n, c) row")(_adaptive_factory(2))
register_kernel(B, "adaptive_max_pool", "direct",
                note="PyTorch's adaptive windows, NaN-propagating; global pooling one block "
                     "per row")(_adaptive_factory(0))


# -- linear / matmul --------------------------------------------------------------------------

@register_kernel(B, "linear", "gemm",
                 note="one SGEMM y^T = W x^T (weights as stored, no transpose copy), "
                      "bias/activation epilogue kernel")
def linear_gemm(node, ctx):
    x, w = ctx.in_shapes[0], ctx.in_shapes[1]
    out_f, in_f = int(w[0]), int(w[1])
    M = prod(x[:-1])
    activation = node.attrs.get("activation")

    def emit(e):
        y = e.outs[0]
        e.gemm(transa=True, transb=False, m=out_f, n=M, k=in_f, a=e.ins[1].ptr, lda=in_f,
               b=e.ins[0].ptr, ldb=in_f, c=y.ptr, ldc=out_f)
        _epilogue(e, y.ptr, M * out_f, 1, out_f, _ptr(e, 2), None, activation)
    return CudaKernel("gemm", emit)


def _progression(idx):
    """Step s if idx[i] == idx[0] + i*s for all i, else None."""
    idx = [int(v) for v in idx]
    if len(idx) < 2:
        return 0
    s = idx[1] - idx[0]
    return s if all(b - a == s for a, b in zip(idx, idx[1:])) else None


@register_kernel(B, "matmul", "gemm_batched",
                 note="torch.matmul broadcasting: one strided-batched SGEMM when the batch "
                      "indices progress regularly, else one SGEMM per batch matrix")
def matmul_gemm(node, ctx):
    a_shape, b_shape = tuple(ctx.in_shapes[0]), tuple(ctx.in_shapes[1])
    a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
    M, K, N = int(a2[-2]), int(a2[-1]), int(b2[-1])
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    ba, bb = prod(a2[:-2]), prod(b2[:-2])
    ia = np.broadcast_to(np.arange(ba).reshape(a2[:-2]), batch).ravel()
    ib = np.broadcast_to(np.arange(bb).reshape(b2[:-2]), batch).ravel()
    nb = len(ia)
    sa, sb = _progression(ia), _progression(ib)

    def emit(e):
        a, b, c = e.ins[0].ptr, e.ins[1].ptr, e.outs[0].ptr
        # row-major C = A B  <=>  column-major C^T (N x M) = B^T (N x K) A^T (K x M)
        if sa is not None and sb is not None:
            e.gemm(transa=False, transb=False, m=N, n=M, k=K, a=b.at(int(ib[0]) * K * N), lda=N,
                   b=a.at(int(ia[0]) * M * K), ldb=K, c=c, ldc=N, batch=nb,
                   stride_a=sb * K * N, stride_b=sa * M * K, stride_c=M * N)
            return
        for j in range(nb):
            e.gemm(transa=False, transb=False, m=N, n=M, k=K, a=b.at(int(ib[j]) * K * N), lda=N,
                   b=a.at(int(ia[j]) * M * K), ldb=K, c=c.at(j * M * N), ldc=N)
    return CudaKernel("gemm_batched", emit)


# -- elementwise ------------------------------------------------------------------------------

def _binary_factory(op):
    code = BIN_OPS[op]

    def factory(node, ctx):
        shape, sa, sb = broadcast_plan(ctx.in_shapes[0], ctx.in_shapes[1], ctx.out_shapes[0])
        if len(shape) > MAX_DIMS:
            raise UnsupportedError(f"node '{node.name}': cuda {op} broadcasts over "
                                   f"{len(shape)} dims after collapsing; at most {MAX_DIMS}")
        meta = np.array(shape + sa + sb, dtype=np.int64)
        n = prod(ctx.out_shapes[0])

        def emit(e):
            m = e.upload("bcast", meta)
            e.launch("ek_binary", grid_1d(n, e.target), e.ins[0].ptr, e.ins[1].ptr,
                     e.outs[0].ptr, i64(n), i32(code), i32(len(shape)), m)
        return CudaKernel("broadcast", emit)
    return factory


for _op in BIN_OPS:
    register_kernel(B, _op, "broadcast", note="strided broadcast (dims collapsed at prepare "
                                              "time, <= 8)")(_binary_factory(_op))


def _unary_factory(node, ctx):
    act = _act_args({"op": node.op, **node.attrs})
    n = prod(ctx.out_shapes[0])

    def emit(e):
        e.launch("ek_unary", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n), *act)
    return CudaKernel("eltwise", emit)


for _op in ACT_CODES:
    register_kernel(B, _op, "eltwise", note="one elementwise kernel for every activation")(
        _unary_factory)


@register_kernel(B, "prelu", "eltwise", note="per-channel slope on dim 1")
def prelu_kernel(node, ctx):
    x = tuple(ctx.in_shapes[0])
    C = int(ctx.in_shapes[1][0])
    inner = prod(x[2:]) if len(x) >= 2 else 1
    n = prod(x)

    def emit(e):
        e.launch("ek_prelu", grid_1d(n, e.target), e.ins[0].ptr, e.ins[1].ptr, e.outs[0].ptr,
                 i64(n), i64(inner), i32(C))
    return CudaKernel("eltwise", emit)


def _softmax_factory(use_log):
    def factory(node, ctx):
        shape = tuple(ctx.in_shapes[0]) or (1,)
        d = int(node.attrs["dim"]) % len(shape)
        outer, L, inner = prod(shape[:d]), int(shape[d]), prod(shape[d + 1:])
        if inner == 1:
            def emit_rows(e):
                e.launch("ek_softmax_rows", grid_rows(outer, e.target), e.ins[0].ptr,
                         e.outs[0].ptr, i64(outer), i64(L), i32(use_log))
            return CudaKernel("rows", emit_rows)
        n = outer * inner

        def emit(e):
            e.launch("ek_softmax_cols", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr,
                     i64(n), i64(L), i64(inner), i32(use_log))
        return CudaKernel("columns", emit)
    return factory


register_kernel(B, "softmax", "stable", note="max-subtracted; block per row (last dim) or "
                                             "thread per column")(_softmax_factory(0))
register_kernel(B, "log_softmax", "stable", note="max-subtracted; block per row (last dim) "
                                                 "or thread per column")(_softmax_factory(1))


# -- normalisation ----------------------------------------------------------------------------

@register_kernel(B, "batch_norm", "direct",
                 note="standalone inference batch norm (the ones folding could not remove)")
def batch_norm_kernel(node, ctx):
    x = tuple(ctx.in_shapes[0])
    C, inner, n = int(x[1]), prod(x[2:]), prod(x)
    eps = float(node.attrs["eps"])
    code, p0, p1 = act_params(node.attrs.get("activation"))

    def emit(e):
        e.launch("ek_batch_norm", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n),
                 i64(inner), i32(C), e.ins[1].ptr, e.ins[2].ptr, _ptr(e, 3), _ptr(e, 4),
                 f32(eps), i32(code), f32(p0), f32(p1))
    return CudaKernel("direct", emit)


@register_kernel(B, "layer_norm", "two_pass", note="block per row, two-pass statistics")
def layer_norm_kernel(node, ctx):
    L = prod(node.attrs["normalized_shape"])
    rows = prod(ctx.in_shapes[0]) // L
    eps = float(node.attrs["eps"])

    def emit(e):
        e.launch("ek_layer_norm", grid_rows(rows, e.target), e.ins[0].ptr, e.outs[0].ptr,
                 i64(rows), i64(L), _ptr(e, 1), _ptr(e, 2), f32(eps))
    return CudaKernel("two_pass", emit)


def _group_norm_factory(groups_of):
    def factory(node, ctx):
        x = tuple(ctx.in_shapes[0])
        C = int(x[1])
        G = groups_of(node, C)
        S = prod(x[2:])
        rows = int(x[0]) * G
        eps = float(node.attrs["eps"])

        def emit(e):
            e.launch("ek_group_norm", grid_rows(rows, e.target), e.ins[0].ptr, e.outs[0].ptr,
                     i64(rows), i32(G), i32(C // G), i64(S), _ptr(e, 1), _ptr(e, 2), f32(eps))
        return CudaKernel("two_pass", emit)
    return factory


register_kernel(B, "group_norm", "two_pass", note="block per (sample, group), two-pass")(
    _group_norm_factory(lambda node, C: int(node.attrs["num_groups"])))
register_kernel(B, "instance_norm", "two_pass", note="group norm with one channel per group")(
    _group_norm_factory(lambda node, C: C))


@register_kernel(B, "local_response_norm", "direct", note="across-channel window sums")
def lrn_kernel(node, ctx):
    x = tuple(ctx.in_shapes[0])
    a = node.attrs
    C, S, n = int(x[1]), prod(x[2:]), prod(x)

    def emit(e):
        e.launch("ek_lrn", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n), i32(C),
                 i64(S), i32(a["size"]), f32(a["alpha"]), f32(a["beta"]), f32(a["k"]))
    return CudaKernel("direct", emit)


# -- spatial: pad, interpolate ----------------------------------------------------------------

def _copy_kernel(variant):
    def factory(node, ctx):
        n = prod(ctx.out_shapes[0])

        def emit(e):
            e.copy(e.outs[0].ptr, e.ins[0].ptr, n * F32)
        return CudaKernel(variant, emit)
    return factory


PAD_MODES = {"constant": 0, "reflect": 1, "replicate": 2}


@register_kernel(B, "pad", "direct", note="gather with mode-specific borders")
def pad_kernel(node, ctx):
    a = node.attrs
    x, y = tuple(ctx.in_shapes[0]), tuple(ctx.out_shapes[0])
    rank = len(x)
    if rank == 0:
        return _copy_kernel("direct")(node, ctx)
    if rank > MAX_DIMS:
        raise UnsupportedError(f"node '{node.name}': cuda pad supports up to {MAX_DIMS} dims")
    pad = [int(v) for v in a["pad"]]
    begin = [0] * rank
    for i in range(len(pad) // 2):                   # torch order: last dim first
        begin[rank - 1 - i] = pad[2 * i]
    meta = np.array(list(y) + list(x) + begin + contiguous_strides(x), dtype=np.int64)
    mode = PAD_MODES[a["mode"]]
    value = float(a.get("value") or 0.0)
    n = prod(y)

    def emit(e):
        m = e.upload("pad", meta)
        e.launch("ek_pad", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n), i32(rank),
                 i32(mode), f32(value), m)
    return CudaKernel("direct", emit)


@register_kernel(B, "interpolate", "table_gather",
                 note="per-dim source index / weight tables built at prepare time (PyTorch's "
                      "mapping), one gather kernel")
def interpolate_kernel(node, ctx):
    from ...ops.resize import linear_indices, nearest_indices
    a = node.attrs
    x, y = tuple(ctx.in_shapes[0]), tuple(ctx.out_shapes[0])
    r = len(x) - 2
    sf = a.get("scale_factor")
    n = prod(y)
    if a["mode"] == "nearest":
        tabs = []
        for i in range(r):
            f = None if sf is None else sf[i]
            tabs.append(np.asarray(nearest_indices(int(x[2 + i]), int(y[2 + i]), f,
                                                   shortcuts=(r == 2)), dtype=np.int64))
        tabs = [np.zeros(1, np.int64)] * (3 - r) + tabs
        table = np.concatenate(tabs)
        x5, y5 = shape5(x), shape5(y)
        dims = [i32(v) for v in list(x5[2:]) + list(y5[2:])]

        def emit(e):
            t = e.upload("nearest", table)
            e.launch("ek_resize_nearest", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr,
                     i64(n), *dims, t)
        return CudaKernel("table_gather", emit)
    if a["mode"] != "bilinear" or r != 2:
        raise UnsupportedError(f"node '{node.name}': cuda interpolate supports nearest (1-3 "
                               f"spatial dims) and bilinear (2), got {a['mode']} with {r}")
    ac = bool(a.get("align_corners"))
    idx, lam = [], []
    for i in range(2):
        f = None if sf is None else sf[i]
        i0, i1, l0, l1 = linear_indices(int(x[2 + i]), int(y[2 + i]), f, ac)
        idx += [np.asarray(i0, np.int64), np.asarray(i1, np.int64)]
        lam += [np.asarray(l0, np.float32), np.asarray(l1, np.float32)]
    idx, lam = np.concatenate(idx), np.concatenate(lam)
    Hi, Wi, Ho, Wo = (i32(v) for v in (x[2], x[3], y[2], y[3]))

    def emit(e):
        ti, tl = e.upload("bilinear_idx", idx), e.upload("bilinear_lam", lam)
        e.launch("ek_resize_bilinear", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr,
                 i64(n), Hi, Wi, Ho, Wo, ti, tl)
    return CudaKernel("table_gather", emit)


# -- reductions -------------------------------------------------------------------------------

def mean_axes(node, rank):
    dim = node.attrs["dim"]
    dims = [dim] if isinstance(dim, int) else list(dim)
    n = max(rank, 1)
    return sorted({int(d) % n for d in dims}) if dims else list(range(rank))


@register_kernel(B, "mean", "reduce",
                 note="trailing dims: block per row; any other dims: one thread per output "
                      "walking the reduced dims")
def mean_kernel(node, ctx):
    x = tuple(ctx.in_shapes[0])
    rank = len(x)
    axes = mean_axes(node, rank)
    if rank == 0:
        return _copy_kernel("reduce")(node, ctx)
    if axes == list(range(rank - len(axes), rank)):
        rows, L = prod(x[:rank - len(axes)]), prod(x[rank - len(axes):])

        def emit_rows(e):
            e.launch("ek_rows_reduce", grid_rows(rows, e.target), e.ins[0].ptr, e.outs[0].ptr,
                     i64(rows), i64(L), i32(2))
        return CudaKernel("reduce", emit_rows)
    st = contiguous_strides(x)
    keep = [d for d in range(rank) if d not in axes]
    meta = np.array([x[d] for d in keep] + [st[d] for d in keep] + [x[d] for d in axes]
                    + [st[d] for d in axes], dtype=np.int64)
    n, count = prod(x[d] for d in keep), prod(x[d] for d in axes)

    def emit(e):
        m = e.upload("mean", meta)
        e.launch("ek_reduce_mean", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n),
                 i32(len(keep)), i32(len(axes)), i64(count), m)
    return CudaKernel("reduce", emit)


# -- data movement ----------------------------------------------------------------------------

for _op in ("dropout", "identity", "flatten", "reshape"):
    register_kernel(B, _op, "view", note="no kernel: the output is its input's memory "
                                         "re-viewed (a device copy only when the input is a "
                                         "constant)")(_copy_kernel("copy"))


def _permute_emit(x_shape, perm):
    """Emit function of a permutation of a C-contiguous x_shape (rank >= 1)."""
    st = contiguous_strides(x_shape)
    out = [int(x_shape[p]) for p in perm]
    # merge output dims whose source strides are contiguous in order
    dims = []
    for size, s in zip(out, [st[p] for p in perm]):
        if size == 1:
            continue
        if dims and dims[-1][1] == s * size:
            dims[-1] = (dims[-1][0] * size, s)
        else:
            dims.append((size, s))
    dims = dims or [(1, 1)]
    if len(dims) > MAX_DIMS:
        raise UnsupportedError(f"cuda permute of {len(dims)} non-mergeable dims; at most "
                               f"{MAX_DIMS}")
    meta = np.array([d[0] for d in dims] + [d[1] for d in dims], dtype=np.int64)
    n = prod(x_shape)

    def emit(e):
        if len(dims) == 1 and dims[0][1] == 1:          # the identity permutation
            e.copy(e.outs[0].ptr, e.ins[0].ptr, n * F32)
            return
        m = e.upload("perm", meta)
        e.launch("ek_permute", grid_1d(n, e.target), e.ins[0].ptr, e.outs[0].ptr, i64(n),
                 i32(len(dims)), m)
    return emit


@register_kernel(B, "permute", "gather", note="strided gather over collapsed dims")
def permute_kernel(node, ctx):
    x = tuple(ctx.in_shapes[0])
    if len(x) == 0:
        return _copy_kernel("gather")(node, ctx)
    perm = [int(d) % len(x) for d in node.attrs["dims"]]
    return CudaKernel("gather", _permute_emit(x, perm))


@register_kernel(B, "channel_shuffle", "gather", note="the (N, g, C/g, S) -> (N, C/g, g, S) "
                                                      "permutation as one gather")
def channel_shuffle_kernel(node, ctx):
    x = tuple(int(d) for d in ctx.in_shapes[0])
    g = int(node.attrs["groups"])
    shape4 = (x[0], g, x[1] // g, prod(x[2:]))
    return CudaKernel("gather", _permute_emit(shape4, [0, 2, 1, 3]))


def _slices(shapes, dim):
    """outer, [inner extent of each piece], total inner extent of the concatenated dim."""
    s0 = shapes[0]
    outer = prod(s0[:dim])
    inner = prod(s0[dim + 1:])
    ext = [int(s[dim]) * inner for s in shapes]
    return outer, ext, sum(ext)


@register_kernel(B, "concat", "in_place",
                 note="zero-copy where the planner could place inputs in their output slices "
                      "(leading dims of size 1, e.g. channel concat at batch 1); a device "
                      "copy per remaining input")
def concat_kernel(node, ctx):
    shapes = [tuple(s) for s in ctx.in_shapes]
    dim = int(node.attrs["dim"]) % len(ctx.out_shapes[0])
    outer, ext, total = _slices(shapes, dim)
    views = ctx.options.get("views") or [False] * len(shapes)
    variant = "in_place" if all(views) else ("partial_copy" if any(views) else "copy")

    def emit(e):
        y = e.outs[0].ptr
        off = 0
        for i, (ref, size) in enumerate(zip(e.ins, ext)):
            if not views[i] and size:
                _copy_piece(e, ref.ptr, y.at(off), outer, size, size, total)
            off += size
    return CudaKernel(variant, emit)


@register_kernel(B, "split", "in_place",
                 note="zero-copy views of the input where the leading dims are 1; a device "
                      "copy per remaining piece")
def split_kernel(node, ctx):
    shapes = [tuple(s) for s in ctx.out_shapes]
    dim = int(node.attrs["dim"]) % len(ctx.in_shapes[0])
    outer, ext, total = _slices(shapes, dim)
    views = ctx.options.get("views") or [False] * len(shapes)
    variant = "in_place" if all(views) else ("partial_copy" if any(views) else "copy")

    def emit(e):
        x = e.ins[0].ptr
        off = 0
        for i, (ref, size) in enumerate(zip(e.outs, ext)):
            if not views[i] and size:
                _copy_piece(e, x.at(off), ref.ptr, outer, size, total, size)
            off += size
    return CudaKernel(variant, emit)


def _copy_piece(e, src, dst, outer, chunk, src_stride, dst_stride):
    if outer == 1 or (chunk == src_stride == dst_stride):
        e.copy(dst, src, outer * chunk * F32)
        return
    e.launch("ek_copy_slices", grid_1d(outer * chunk, e.target), src, dst, i64(outer),
             i64(chunk), i64(src_stride), i64(dst_stride))


def missing_ops():
    """Ops of the registry without a CUDA kernel (should be empty)."""
    return sorted(op for op in OPS if (B, op) not in KERNELS)


__all__ = ["CudaKernel", "act_params", "broadcast_plan", "winograd_filter", "missing_ops",
           "BLOCK", "Ptr"]
