"""The packed GEMM (engine._kernels.gemm) and the GEMM-based convolutions, at every
instruction-set level this machine runs (one pytest run covers scalar, avx2 and avx512),
against float64 NumPy references.

Tolerance: max|got - ref| <= 1e-4 * max(1, max|ref|), ref the float64 result before the
activation (activations are at most ~1.1-Lipschitz).  Sizes are odd on purpose: M, N, K in
1..300 with the register-tile edges (13, 14, 15, 16, 17, 31, 32, 33, ...) drawn often, K
not a multiple of the vector width, so every tail kernel (rows < MR, columns < NR, the
narrow <= 4-column kernel, masked stores) and several K blocks are exercised.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine._kernels as K
from engine._kernels import conv as kconv
from engine._kernels import gemm as kgemm
from engine.ops.activation import apply_activation

import engine.backends.cpu as cpu

TOL = 1e-4
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

ACTS = [None, {"op": "relu"}, {"op": "relu6"}, {"op": "leaky_relu", "negative_slope": 0.1},
        {"op": "clip", "min": -0.5, "max": 0.75}, {"op": "sigmoid"}, {"op": "tanh"},
        {"op": "silu"}, {"op": "hardswish"}, {"op": "hardsigmoid"},
        {"op": "gelu", "approximate": "none"}, {"op": "gelu", "approximate": "tanh"},
        {"op": "elu", "alpha": 0.7}, {"op": "selu"},
        {"op": "softplus", "beta": 1.5, "threshold": 4.0}, {"op": "mish"}]
EDGES = [1, 2, 3, 4, 5, 7, 8, 13, 14, 15, 16, 17, 20, 21, 28, 31, 32, 33, 47, 48, 49, 64, 65,
         97, 196, 257, 300]
SIZE = st.one_of(st.sampled_from(EDGES), st.integers(1, 300))


def close(got, ref, what):
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    err = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
    assert err <= TOL * scale, f"{what}: max error {err:.3g} > {TOL} * {scale:.3g}"


@settings(max_examples=150, **SETTINGS)
@given(st.data())
def test_gemm_random(isa, data):
    M, N, Kd = data.draw(SIZE), data.draw(SIZE), data.draw(SIZE)
    pack = data.draw(st.sampled_from(["none", "a", "b", "ab"]))
    ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
    mode = data.draw(st.sampled_from([0, 1, 2]))
    acc, resid = data.draw(st.booleans()), data.draw(st.booleans())
    act = data.draw(st.sampled_from(ACTS))
    threads = data.draw(st.sampled_from([1, 2]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    A = rng.standard_normal((M, Kd)).astype(np.float32)
    B = rng.standard_normal((Kd, N)).astype(np.float32)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    bias = rng.standard_normal(M if mode == 1 else N).astype(np.float32) if mode else None
    R = rng.standard_normal((M, N)).astype(np.float32) if resid else None
    a_in = np.ascontiguousarray(A.T) if ta else A
    b_in = np.ascontiguousarray(B.T) if tb else B
    if "a" in pack:
        a_in, ta_call = kgemm.pack_a(a_in, trans_a=ta), False
        assert a_in.isa_name == isa and a_in.shape == (M, Kd)
    else:
        ta_call = ta
    if "b" in pack:
        b_in, tb_call = kgemm.pack_b(b_in, trans_b=tb), False
        assert b_in.shape == (Kd, N)
    else:
        tb_call = tb
    code, p0, p1 = cpu.act_params(act)
    c = c0.copy()
    work = np.full(kgemm.gemm_workspace(M, N, Kd, tb_call, threads, a_packed="a" in pack,
                                        b_packed="b" in pack), np.nan, np.float32)
    kgemm.sgemm(a_in, b_in, c, bias, mode, ta_call, tb_call, acc, code, p0, p1, work, threads,
                residual=R)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    if acc:
        ref += c0
    if mode == 1:
        ref += bias[:, None]
    elif mode == 2:
        ref += bias[None, :]
    if resid:
        ref += R
    close(c, apply_activation(ref, act), f"{isa} {M}x{N}x{Kd} pack={pack} ta={ta} tb={tb} "
          f"bias={mode} acc={acc} res={resid} act={act} threads={threads}")


@pytest.mark.parametrize("shape", [(64, 3136, 576), (2048, 49, 512), (1, 1000, 2048),
                                   (1000, 1, 2048), (29, 2000, 700)])
def test_gemm_conv_shapes(isa, shape):
    """ResNet-like shapes: several K blocks, N blocks and tasks, both thread counts."""
    M, N, Kd = shape
    rng = np.random.default_rng(1)
    A = rng.standard_normal((M, Kd)).astype(np.float32)
    B = rng.standard_normal((Kd, N)).astype(np.float32)
    bias = rng.standard_normal(M).astype(np.float32)
    ref = np.maximum(A.astype(np.float64) @ B + bias[:, None], 0)
    pa = kgemm.pack_a(A)
    outs = []
    for t in (1, 2):
        c = np.full((M, N), np.nan, np.float32)
        w = np.full(kgemm.gemm_workspace(M, N, Kd, False, t, a_packed=True), np.nan,
                    np.float32)
        kgemm.sgemm(pa, B, c, bias, 1, act=1, work=w, nthreads=t)
        close(c, ref, f"{isa} {shape} threads={t}")
        outs.append(c)
    np.testing.assert_array_equal(outs[0], outs[1])   # blocking never depends on threads


def test_gemm_k_zero(isa):
    c = np.full((3, 5), 7.0, np.float32)
    bias = np.arange(5, dtype=np.float32)
    kgemm.sgemm(np.zeros((3, 0), np.float32), np.zeros((0, 5), np.float32), c, bias, 2,
                act=1)
    np.testing.assert_array_equal(c, np.broadcast_to(bias, (3, 5)))


def test_packed_operand_checks(isa):
    A = np.ones((5, 7), np.float32)
    pa = kgemm.pack_a(A)
    with pytest.raises(ValueError):          # a Packed B operand is not an A operand
        kgemm.sgemm(A, kgemm.pack_a(np.ones((7, 3), np.float32)), np.empty((5, 3), np.float32))
    with pytest.raises(ValueError):          # inner dimension
        kgemm.sgemm(pa, np.ones((6, 3), np.float32), np.empty((5, 3), np.float32))
    with pytest.raises(ValueError):          # workspace too small for a big product
        big = kgemm.pack_a(np.ones((64, 64), np.float32))
        kgemm.sgemm(big, np.ones((64, 64), np.float32), np.empty((64, 64), np.float32),
                    work=np.empty(3, np.float32))
    with pytest.raises(ValueError):          # residual shape
        kgemm.sgemm(A, np.ones((7, 3), np.float32), np.empty((5, 3), np.float32),
                    residual=np.ones((5, 4), np.float32))
    assert "gemm_a" in repr(pa) and pa.nbytes >= 5 * 7 * 4


# -- convolutions through the GEMM ----------------------------------------------------------

def conv_ref(x, w, b, stride, pad, dil, groups):
    """float64 direct convolution, 2-D, NCHW (pad: (top, left, bottom, right))."""
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    oh = (h + pad[0] + pad[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + pad[1] + pad[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, co, oh, ow))
    cog = co // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dil[0]:i * dil[0] + stride[0] * (oh - 1) + 1:stride[0],
                           j * dil[1]:j * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
                y[:, g * cog:(g + 1) * cog] += np.einsum(
                    "nchw,oc->nohw", patch, w[g * cog:(g + 1) * cog, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


@settings(max_examples=60, **SETTINGS)
@given(st.data())
def test_conv_packed_random(isa, data):
    """Larger convs than test_kernels_cpu's: output rows longer and shorter than a panel,
    several K blocks and N tasks, packed weights, residual, both thread counts."""
    n = data.draw(st.integers(1, 2))
    groups = data.draw(st.sampled_from([1, 1, 2, 3]))
    cg, cog = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    kh, kw = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    pad = [data.draw(st.integers(0, 3)) for _ in range(4)]
    h = data.draw(st.integers(max(1, dh * (kh - 1) + 1 - pad[0] - pad[2]), 45))
    wd = data.draw(st.integers(max(1, dw * (kw - 1) + 1 - pad[1] - pad[3]), 45))
    act = data.draw(st.sampled_from(ACTS))
    threads = data.draw(st.sampled_from([1, 2]))
    resid = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    c, co = cg * groups, cog * groups
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = (rng.standard_normal((co, cg, kh, kw)) * 0.2).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    ref = conv_ref(x, w, b, (sh, sw), pad, (dh, dw), groups)
    R = rng.standard_normal(ref.shape).astype(np.float32) if resid else None
    if resid:
        ref = ref + R
    y = np.full((n, co, 1) + ref.shape[2:], np.nan, np.float32)
    x5, w5 = x[:, :, None], w[:, :, None]
    args = ([1, sh, sw], [0, pad[0], pad[1]], [1, dh, dw])
    wp = kconv.conv_pack(w5, groups)
    work = np.full(kconv.conv_packed_workspace(x5.shape, w5.shape, y.shape, *args, groups,
                                               threads, isa=isa), np.nan, np.float32)
    code, p0, p1 = cpu.act_params(act)
    kconv.conv3d_packed(x5, wp, b, y, *args, code, p0, p1, residual=R, work=work,
                        nthreads=threads)
    what = (f"{isa} x={x.shape} w={w.shape} s={(sh, sw)} pad={pad} d={(dh, dw)} g={groups} "
            f"act={act} res={resid} threads={threads}")
    close(y[:, :, 0], apply_activation(ref, act), what)
    if not resid:          # the unpacked-weights entry point agrees
        y2 = np.full_like(y, np.nan)
        work = np.full(kconv.conv_workspace(x5.shape, w5.shape, y.shape, *args, groups,
                                            threads), np.nan, np.float32)
        kconv.conv3d(x5, w5, b, y2, *args, groups, code, p0, p1, work, threads)
        close(y2[:, :, 0], apply_activation(ref, act), what + " (unpacked)")


@settings(max_examples=80, **SETTINGS)
@given(st.data())
def test_depthwise_random(isa, data):
    """Direct depthwise kernel, padded-plane fast path (with workspace) and general path
    (without): widths below and above 16, stride 1-3, dilation, multiplier, batch."""
    n, c, mult = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 9)), \
        data.draw(st.integers(1, 3))
    k = data.draw(st.sampled_from([1, 3, 5, 7]))
    s, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    sh = data.draw(st.sampled_from([s, 1, 2]))
    p = data.draw(st.integers(0, k // 2 * d))
    h = data.draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 40))
    wd = data.draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 70))
    act = data.draw(st.sampled_from(ACTS))
    threads = data.draw(st.sampled_from([1, 2, 3]))   # > 1: row bands on large maps
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((c * mult, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c * mult).astype(np.float32)
    ref = conv_ref(x, w, b, (sh, s), (p, p, p, p), (d, d), c)
    y = np.full((n, c * mult, 1) + ref.shape[2:], np.nan, np.float32)
    args = ([1, sh, s], [0, p, p], [1, d, d])
    code, p0, p1 = cpu.act_params(act)
    x5, w5 = x[:, :, None], w[:, :, None]
    need = kconv.conv_depthwise_workspace(x5.shape, w5.shape, y.shape, *args, threads)
    for work in ([None, np.full(need, np.nan, np.float32)] if need else [None]):
        y[...] = np.nan
        kconv.conv3d_depthwise(x5, w5, b, y, *args, code, p0, p1, threads, work=work)
        close(y[:, :, 0], apply_activation(ref, act),
              f"{isa} x={x.shape} k={k} s={(sh, s)} p={p} d={d} mult={mult} act={act} "
              f"work={work is not None}")


@pytest.mark.parametrize("case", [
    # (x shape, w shape, stride, pad (t, l, b, r), dilation): blocks with more runs than
    # the run list holds (output width 1, 2), 1-D-like rows, big stride
    ((1, 3, 1500, 3), (5, 3, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 2, 900, 2), (4, 2, 3, 1), (1, 1), (1, 0, 1, 0), (1, 1)),
    ((1, 4, 1, 800), (6, 4, 1, 5), (1, 3), (0, 2, 0, 2), (1, 2)),
    ((2, 5, 9, 700), (7, 5, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
])
def test_conv_long_maps(isa, case):
    xs, ws, st_, pad, dil = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.3).astype(np.float32)
    ref = conv_ref(x, w, None, st_, pad, dil, 1)
    for threads in (1, 2):
        y = np.full((xs[0], ws[0], 1) + ref.shape[2:], np.nan, np.float32)
        args = ([1, st_[0], st_[1]], [0, pad[0], pad[1]], [1, dil[0], dil[1]])
        wp = kconv.conv_pack(w[:, :, None])
        work = np.full(kconv.conv_packed_workspace(x[:, :, None].shape, wp.shape, y.shape,
                                                   *args, 1, threads), np.nan, np.float32)
        kconv.conv3d_packed(x[:, :, None], wp, None, y, *args, work=work, nthreads=threads)
        close(y[:, :, 0], ref, f"{isa} {case} threads={threads}")


@pytest.mark.parametrize("case", [
    # (x shape, w shape, stride, pad): many output channels over a small map, so the GEMM
    # has several M blocks sharing one im2col-filled B (filled once, in the workspace);
    # K over several blocks; the last N panel partial
    ((1, 64, 9, 9), (600, 64, 3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 40, 14, 14), (520, 40, 3, 3), (1, 1), (1, 1, 1, 1)),
    ((1, 96, 11, 13), (300, 96, 1, 1), (2, 2), (0, 0, 0, 0)),
])
def test_conv_many_row_blocks(isa, case):
    xs, ws, st_, pad = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal(ws) * 0.1).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    ref = conv_ref(x, w, b, st_, pad, (1, 1), 1)
    R = rng.standard_normal(ref.shape).astype(np.float32)
    args = ([1, st_[0], st_[1]], [0, pad[0], pad[1]], [1, 1, 1])
    wp = kconv.conv_pack(w[:, :, None])
    outs = []
    for threads in (1, 2):
        y = np.full((xs[0], ws[0], 1) + ref.shape[2:], np.nan, np.float32)
        work = np.full(kconv.conv_packed_workspace(x[:, :, None].shape, wp.shape, y.shape,
                                                   *args, 1, threads), np.nan, np.float32)
        kconv.conv3d_packed(x[:, :, None], wp, b, y, *args, 1, 0.0, 0.0, residual=R,
                            work=work, nthreads=threads)
        close(y[:, :, 0], np.maximum(ref + R, 0), f"{isa} {case} threads={threads}")
        outs.append(y)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_gemm_blocking_follows_cache_sizes(isa):
    """Tiny caches: small K blocks (many C passes) and narrow N blocks; results correct,
    workspace sizes follow the blocking."""
    rng = np.random.default_rng(7)
    M, N, Kd = 45, 333, 517
    A = rng.standard_normal((M, Kd)).astype(np.float32)
    B = rng.standard_normal((Kd, N)).astype(np.float32)
    ref = A.astype(np.float64) @ B
    default = K.cache_sizes()
    try:
        for l1, l2 in ((4096, 65536), (16384, 131072), default):
            K.set_cache_sizes(l1, l2)
            assert K.cache_sizes() == (l1, l2)
            for t in (1, 2):
                c = np.empty((M, N), np.float32)
                w = np.full(kgemm.gemm_workspace(M, N, Kd, False, t), np.nan, np.float32)
                kgemm.sgemm(A, B, c, work=w, nthreads=t)
                close(c, ref, f"{isa} caches {l1}/{l2} threads={t}")
    finally:
        K.set_cache_sizes(*default)


@pytest.mark.parametrize("M,N", [(16, 300), (30, 20), (41, 20), (29, 1000), (71, 45)])
def test_gemm_balanced_row_panels(isa, M, N):
    """M split evenly over its row panels (M = 16: 8 + 8 rows, not MR + rest), with A
    pre-packed and packed per task; M = 30 / 41 with a narrow N at 2 threads also split M
    into blocks, which must start on panel boundaries."""
    Kd = 500
    rng = np.random.default_rng(M * 1000 + N)
    A = rng.standard_normal((M, Kd)).astype(np.float32)
    B = rng.standard_normal((Kd, N)).astype(np.float32)
    bias = rng.standard_normal(M).astype(np.float32)
    ref = np.maximum(A.astype(np.float64) @ B + bias[:, None], 0)
    for t in (1, 2):
        for packed in (True, False):
            c = np.full((M, N), np.nan, np.float32)
            w = np.full(max(1, kgemm.gemm_workspace(M, N, Kd, False, t, a_packed=packed)),
                        np.nan, np.float32)
            kgemm.sgemm(kgemm.pack_a(A) if packed else A, B, c, bias, 1, act=1, work=w,
                        nthreads=t)
            close(c, ref, f"{isa} M={M} N={N} packed={packed} threads={t}")


@pytest.mark.parametrize("M", [4, 16, 24, 29, 42, 43])
def test_gemm_small_m_full_epilogue(isa, M):
    """Few row tiles: B is read in place (AVX-512) over several K blocks and N strips, the
    last strip partial; every epilogue term at once; identical at 1 and 2 threads."""
    N, Kd = 32 * 37 + 13, 1100
    rng = np.random.default_rng(M)
    A = rng.standard_normal((M, Kd)).astype(np.float32)
    B = rng.standard_normal((Kd, N)).astype(np.float32)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    R = rng.standard_normal((M, N)).astype(np.float32)
    for mode, bias in ((1, rng.standard_normal(M)), (2, rng.standard_normal(N))):
        bias = bias.astype(np.float32)
        ref = A.astype(np.float64) @ B + c0 + R + (bias[:, None] if mode == 1 else bias)
        ref = np.clip(ref, -10.0, 10.0)
        outs = []
        for t in (1, 2):
            c = c0.copy()
            w = np.full(kgemm.gemm_workspace(M, N, Kd, False, t, a_packed=True), np.nan,
                        np.float32)
            kgemm.sgemm(kgemm.pack_a(A), B, c, bias, mode, accumulate=True, act=4,
                        p0=-10.0, p1=10.0, work=w, nthreads=t, residual=R)
            close(c, ref, f"{isa} M={M} bias_mode={mode} threads={t}")
            outs.append(c)
        np.testing.assert_array_equal(outs[0], outs[1])


def test_fma_peak_measures_and_checks_its_arguments(isa):
    """The yardstick of the GEMM efficiency figures: finite and positive at every level,
    two threads at least not slower than one; bad arguments raise."""
    one = kgemm.fma_peak(0.02, 1)
    two = kgemm.fma_peak(0.02, 2)
    assert np.isfinite(one) and one > 5e8
    assert two > 0.5 * one
    for bad in (dict(seconds=0.0), dict(seconds=11.0), dict(nthreads=0), dict(nthreads=257)):
        with pytest.raises(ValueError):
            kgemm.fma_peak(**bad)
