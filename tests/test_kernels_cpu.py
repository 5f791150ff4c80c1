r"""CPU backend kernels against the NumPy references (and PyTorch where it is installed).

Every op is run the way the runtime runs it: an ``engine.ir.Node`` goes through its CPU
kernel factory with a ``PrepareContext`` of concrete shapes (weights as constants, or as
runtime values), into outputs preallocated and filled with garbage (NaN), with a scratch
array of exactly ``kernel.scratch`` elements.

Every test runs once per instruction-set level this CPU supports (scalar, avx2, avx512:
the autouse ``isa`` fixture switches all kernel modules in-process with
``engine._kernels.set_isa``), so one pytest run covers every dispatch path.  Larger GEMM /
conv / depthwise cases per level are in tests/test_gemm.py, dispatch itself in
tests/test_dispatch.py.

AddressSanitizer (not in CI; run by hand after kernel changes).  Builds an instrumented copy
of the working tree in /tmp and runs the kernel tests against it:

    rm -rf /tmp/engine-asan && mkdir /tmp/engine-asan && \
    git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C /tmp/engine-asan && \
    cd /tmp/engine-asan && \
    ENGINE_DEBUG_BUILD=1 LDFLAGS="-fsanitize=address" \
        CFLAGS="-fsanitize=address -fno-omit-frame-pointer -DEK_IM2COL_MAXRUNS=64" \
        python setup.py build_ext --inplace --force && \
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
        python -m pytest -q -p no:cacheprovider tests/test_kernels_cpu.py \
        tests/test_gemm.py tests/test_dispatch.py

(ASan checks every plain load and store, including the vector-extension and unmasked
intrinsic ones; AVX-512 masked loads / stores are not instrumented, so the avx2 and scalar
levels, which run the same index arithmetic with plain accesses, matter there.
EK_IM2COL_MAXRUNS=64 makes the im2col run list overflow often, exercising its slicing.)

Tolerances, relative to the output magnitude:
  conv / conv_transpose / linear / matmul (GEMM-based): max|cpu - ref| <= 1e-4 * max(1, max|ref|)
  everything else:                                       max|cpu - ref| <= 1e-5 * max(1, max|ref|)
NaN must appear exactly where the reference has NaN (and infinities must match).

The Cython wrappers are also fed wrong dtypes, non-contiguous arrays and wrong sizes: they
must raise ValueError, never crash.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ops as _ops  # noqa: F401  (fills the op registry)
from engine.backends.base import KERNELS, PrepareContext, select_kernel
from engine.ops import OPS, get_op

from engine.ir import Node

import engine.backends.cpu as cpu  # noqa: E402
from engine import _kernels  # noqa: E402
from engine._kernels import conv as kconv  # noqa: E402
from engine._kernels import eltwise as kelt  # noqa: E402
from engine._kernels import gemm as kgemm  # noqa: E402
from engine._kernels import norm as knorm  # noqa: E402
from engine._kernels import pool as kpool  # noqa: E402
from engine._kernels import spatial as ksp  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except Exception:  # pragma: no cover
    torch = None

GEMM_TOL = 1e-4
TOL = 1e-5
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])



# every test of this module at every instruction-set level (the isa fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("isa")

ACTIVATIONS = [None, {"op": "relu"}, {"op": "relu6"}, {"op": "leaky_relu", "negative_slope": 0.1},
               {"op": "clip", "min": -0.5, "max": 0.75}, {"op": "clip", "min": None, "max": 0.5},
               {"op": "clip", "min": -0.25, "max": None}, {"op": "sigmoid"}, {"op": "tanh"},
               {"op": "silu"}, {"op": "hardswish"}, {"op": "hardsigmoid"},
               {"op": "gelu", "approximate": "none"}, {"op": "gelu", "approximate": "tanh"},
               {"op": "elu", "alpha": 0.7}, {"op": "selu"},
               {"op": "softplus", "beta": 1.5, "threshold": 4.0}, {"op": "mish"}]


def rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_cpu(op, attrs, inputs, const=(), threads=1, n_out=None, variant=None):
    """Run ``op`` through its CPU kernel (the registry's choice, or ``variant``); inputs
    listed in ``const`` are constants.  Returns (outputs, reference outputs, kernel spec,
    the other variants that support this node)."""
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    opdef = get_op(op)
    in_shapes = [None if a is None else tuple(a.shape) for a in inputs]
    probe = Node(op, "n", names, ["out0"], dict(attrs))
    if n_out is None:
        shapes = opdef.infer(*in_shapes, **attrs)
        n_out = 1 if isinstance(shapes, tuple) and all(isinstance(d, int) for d in shapes) \
            else len(shapes)
    node = Node(op, "n", names, [f"out{i}" for i in range(n_out)], dict(attrs))
    del probe
    out_shapes = opdef.infer_shapes(node, in_shapes)
    ctx = PrepareContext(in_shapes=in_shapes, out_shapes=out_shapes,
                         constants=[a if (i in const and a is not None) else None
                                    for i, a in enumerate(inputs)],
                         threads=threads, backend="cpu")
    spec = select_kernel(node, ctx, variant)
    others = [o.variant for o in KERNELS[("cpu", op)]
              if o is not spec and (o.supports is None or o.supports(node, ctx))]
    kernel = spec.factory(node, ctx)
    outs = [np.full(s, np.nan, dtype=np.float32) for s in out_shapes]
    scratch = np.full(kernel.scratch, np.nan, dtype=np.float32)
    # runtime values arrive as arena views: pass copies so a kernel writing into an input
    # would be noticed by the reference comparison
    rt = [None if a is None else np.array(a, dtype=np.float32, order="C") for a in inputs]
    kernel.run(rt, outs, scratch)
    ref = opdef.run_reference(node, [None if a is None else a for a in inputs])
    return outs, ref, spec, others


def assert_close(got, ref, tol, what=""):
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float32)
    if got.shape == () and ref.shape == (1,):
        ref = ref.reshape(())       # run_reference returns 0-d results as shape (1,)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    nan_g, nan_r = np.isnan(got), np.isnan(ref)
    assert np.array_equal(nan_g, nan_r), (
        f"{what}: NaN mismatch at {np.argwhere(nan_g != nan_r)[:5].tolist()}")
    inf_r = np.isinf(ref)
    assert np.array_equal(got[inf_r], ref[inf_r]), f"{what}: infinities differ"
    fin = ~(nan_r | inf_r)
    if not fin.any():
        return
    scale = max(1.0, float(np.abs(ref[fin]).max()))
    err = float(np.abs(got[fin].astype(np.float64) - ref[fin]).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol} * {scale:.3g}"


def check(op, attrs, inputs, const=(), threads=1, tol=TOL, n_out=None):
    """``op`` against its NumPy reference through every registered CPU variant that supports
    the node (the registry's choice first); returns the chosen one's outputs and spec."""
    outs, refs, spec, others = run_cpu(op, attrs, inputs, const, threads, n_out)
    assert len(outs) == len(refs)
    for i, (o, r) in enumerate(zip(outs, refs)):
        assert_close(o, r, tol, f"{op}[{spec.variant}] output {i} attrs={attrs}")
    for variant in others:
        outs2, refs2, _, _ = run_cpu(op, attrs, inputs, const, threads, n_out, variant)
        for i, (o, r) in enumerate(zip(outs2, refs2)):
            assert_close(o, r, tol, f"{op}[{variant}] output {i} attrs={attrs}")
    return outs, spec


# -- convolution ----------------------------------------------------------------------------

@st.composite
def conv_cases(draw, transposed=False):
    r = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        groups, cin_g, cout_g = 1, draw(st.integers(1, 9)), draw(st.integers(1, 19))
    elif kind == "grouped":
        groups, cin_g, cout_g = draw(st.integers(2, 4)), draw(st.integers(1, 4)), \
            draw(st.integers(1, 5))
    else:
        groups, cin_g = draw(st.integers(2, 7)), 1
        cout_g = 1 if transposed else draw(st.integers(1, 3))     # channel multiplier
    cin, cout = groups * cin_g, groups * cout_g
    small = r == 3
    k = [draw(st.integers(1, 2 if small else 4)) for _ in range(r)]
    s = [draw(st.integers(1, 3)) for _ in range(r)]
    d = [draw(st.integers(1, 2)) for _ in range(r)]
    if transposed:
        p = [draw(st.integers(0, (dd * (kk - 1)) // 2)) for kk, dd in zip(k, d)]
        op_ = [draw(st.integers(0, max(ss, dd) - 1)) for ss, dd in zip(s, d)]
        size = [draw(st.integers(1, 4 if small else 7)) for _ in range(r)]
        pads = p
    else:
        pads = [[draw(st.integers(0, 3)), draw(st.integers(0, 3))] for _ in range(r)]
        size = []
        for kk, dd, (pb, pe) in zip(k, d, pads):
            eff = dd * (kk - 1) + 1
            lo = max(1, eff - pb - pe)
            size.append(draw(st.integers(lo, lo + (3 if small else 9))))
        op_ = None
    bias = draw(st.booleans())
    act = draw(st.sampled_from(ACTIVATIONS))
    threads = draw(st.sampled_from([1, 2]))
    wconst = draw(st.booleans())
    return dict(r=r, n=n, groups=groups, cin=cin, cout=cout, cout_g=cout_g, cin_g=cin_g, k=k,
                s=s, d=d, pads=pads, size=size, bias=bias, act=act, threads=threads,
                wconst=wconst, output_padding=op_, seed=draw(st.integers(0, 2**31)))


def _conv_inputs(c, transposed):
    rng = np.random.default_rng(c["seed"])
    x = rand(rng, (c["n"], c["cin"]) + tuple(c["size"]))
    if transposed:
        w = rand(rng, (c["cin"], c["cout_g"]) + tuple(c["k"]), 0.5)
    else:
        w = rand(rng, (c["cout"], c["cin_g"]) + tuple(c["k"]), 0.5)
    b = rand(rng, (c["cout"],)) if c["bias"] else None
    return [x, w, b]


@settings(max_examples=400, **SETTINGS)
@given(conv_cases())
def test_conv_random(c):
    attrs = dict(stride=c["s"], padding=c["pads"], dilation=c["d"], groups=c["groups"],
                 activation=c["act"])
    inputs = _conv_inputs(c, False)
    const = (1, 2) if c["wconst"] else ()
    check("conv", attrs, inputs, const, c["threads"], GEMM_TOL)


@settings(max_examples=250, **SETTINGS)
@given(conv_cases(transposed=True))
def test_conv_transpose_random(c):
    attrs = dict(stride=c["s"], padding=c["pads"], output_padding=c["output_padding"],
                 dilation=c["d"], groups=c["groups"], activation=c["act"])
    inputs = _conv_inputs(c, True)
    const = (1, 2) if c["wconst"] else ()
    check("conv_transpose", attrs, inputs, const, c["threads"], GEMM_TOL)


CONV_EDGE = [
    # (x shape, w shape, stride, padding, dilation, groups)
    ((1, 16, 7, 7), (32, 16, 1, 1), [1, 1], [[0, 0], [0, 0]], [1, 1], 1),      # pointwise
    ((2, 17, 5, 6), (23, 17, 1, 1), [1, 1], [[0, 0], [0, 0]], [1, 1], 1),      # pointwise, odd C
    ((1, 8, 6, 6), (8, 8, 1, 1), [2, 2], [[0, 0], [0, 0]], [1, 1], 1),         # strided 1x1
    ((1, 3, 5, 5), (4, 3, 5, 5), [1, 1], [[0, 0], [0, 0]], [1, 1], 1),         # kernel == input
    ((2, 5, 1, 1), (7, 5, 1, 1), [1, 1], [[0, 0], [0, 0]], [1, 1], 1),         # 1x1 spatial
    ((1, 4, 1, 1), (6, 4, 3, 3), [1, 1], [[1, 1], [1, 1]], [1, 1], 1),         # 1x1, padded
    ((1, 3, 8, 8), (5, 3, 3, 3), [2, 2], [[0, 1], [2, 0]], [1, 1], 1),         # asymmetric
    ((3, 32, 9, 9), (32, 1, 3, 3), [1, 1], [[1, 1], [1, 1]], [1, 1], 32),      # depthwise
    ((1, 24, 10, 9), (72, 1, 3, 3), [2, 2], [[1, 1], [1, 1]], [1, 1], 24),     # dw, mult 3
    ((1, 12, 8, 8), (12, 1, 5, 5), [1, 1], [[4, 4], [4, 4]], [2, 2], 12),      # dw dilated
    ((1, 12, 11, 13), (12, 1, 3, 3), [3, 3], [[0, 0], [1, 0]], [1, 1], 12),    # dw stride 3
    ((2, 6, 20), (4, 3, 3), [2], [[1, 1]], [2], 2),                            # 1-D grouped
    ((1, 4, 5, 6, 7), (6, 4, 3, 1, 2), [1, 2, 1], [[1, 1], [0, 0], [1, 0]], [1, 1, 2], 1),  # 3-D
    ((1, 1, 30, 30), (8, 1, 3, 3), [1, 1], [[1, 1], [1, 1]], [1, 1], 1),       # C = 1
    ((1, 64, 28, 28), (96, 64, 3, 3), [1, 1], [[1, 1], [1, 1]], [1, 1], 1),    # multi-block
    ((3, 40, 1, 1), (70, 40, 1, 1), [1, 1], [[0, 0], [0, 0]], [1, 1], 1),      # SE-like FC
    ((2, 6, 3, 4), (33, 6, 3, 4), [2, 2], [[0, 0], [0, 0]], [1, 1], 1),        # whole window
    ((2, 9, 1, 1), (12, 3, 1, 1), [1, 1], [[0, 0], [0, 0]], [1, 1], 3),        # grouped 1x1
]


@pytest.mark.parametrize("case", CONV_EDGE)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_edge_cases(case, threads):
    xs, ws, s, p, d, g = case
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, xs), rand(rng, ws, 0.3), rand(rng, (ws[0],))
    attrs = dict(stride=s, padding=p, dilation=d, groups=g, activation={"op": "relu6"})
    _, spec = check("conv", attrs, [x, w, b], (1, 2), threads, GEMM_TOL)
    dw = g > 1 and g == xs[1] and ws[1] == 1
    pw = all(k == 1 for k in ws[2:]) and all(v == 1 for v in s) and not any(map(any, p))
    whole = g == 1 and tuple(xs[2:]) == tuple(ws[2:]) and not any(map(any, p))
    # 2-D 3x3 stride-1 convs go to Winograd when its cost model says so (test_winograd.py)
    wino = (len(xs) == 4 and tuple(ws[2:]) == (3, 3) and g == 1 and not whole
            and all(v == 1 for v in s) and all(v == 1 for v in d))
    if wino and spec.variant.startswith("winograd_f"):
        return
    assert spec.variant == ("depthwise_direct" if dw else "linear_gemm" if whole else
                            "pointwise_gemm" if pw else "im2col_gemm")


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_conv_matches_torch():
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, (2, 6, 11, 10)), rand(rng, (10, 3, 3, 2)), rand(rng, (10,))
    attrs = dict(stride=[2, 1], padding=[[1, 1], [0, 0]], dilation=[1, 2], groups=2,
                 activation=None)
    (y,), _, _, _ = run_cpu("conv", attrs, [x, w, b], (1, 2), 2)
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=(2, 1),
                 padding=(1, 0), dilation=(1, 2), groups=2).numpy()
    assert_close(y, t, GEMM_TOL, "conv vs torch")
    x, w = rand(rng, (2, 4, 5, 6)), rand(rng, (4, 3, 3, 3))
    attrs = dict(stride=[2, 3], padding=[1, 0], output_padding=[1, 2], dilation=[1, 1],
                 groups=2, activation=None)
    (y,), _, _, _ = run_cpu("conv_transpose", attrs, [x, w, None], (1,), 2)
    t = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=(2, 3),
                           padding=(1, 0), output_padding=(1, 2), groups=2).numpy()
    assert_close(y, t, GEMM_TOL, "conv_transpose vs torch")


# -- pooling --------------------------------------------------------------------------------

@st.composite
def pool_cases(draw):
    r = draw(st.integers(1, 3))
    op = draw(st.sampled_from(["max_pool", "min_pool", "avg_pool"]))
    k = [draw(st.integers(1, 3 if r == 3 else 4)) for _ in range(r)]
    s = [draw(st.integers(1, 3)) for _ in range(r)]
    p = [draw(st.integers(0, kk // 2)) for kk in k]
    d = [1] * r if op == "avg_pool" else [draw(st.integers(1, 2)) for _ in range(r)]
    size = [draw(st.integers(max(1, dd * (kk - 1) + 1 - 2 * pp), 9)) for kk, dd, pp in zip(k, d, p)]
    ceil = draw(st.booleans())
    attrs = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil)
    if op == "avg_pool":
        attrs["count_include_pad"] = draw(st.booleans())
    else:
        attrs["dilation"] = d
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5))) + tuple(size)
    return op, attrs, shape, draw(st.sampled_from([1, 2])), draw(st.integers(0, 2**31))


@settings(max_examples=400, **SETTINGS)
@given(pool_cases())
def test_pool_random(case):
    op, attrs, shape, threads, seed = case
    x = rand(np.random.default_rng(seed), shape)
    check(op, attrs, [x], (), threads)


def test_pool_nan_propagates():
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
    x[0, 1, 2, 3] = np.nan
    x[1, 2, 0, 0] = np.nan
    for op in ("max_pool", "min_pool"):
        attrs = dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[1, 1],
                     ceil_mode=True)
        (y,), _ = check(op, attrs, [x], (), 2)
        assert np.isnan(y[0, 1]).sum() >= 1 and np.isnan(y[1, 2, 0, 0])
    (y,), _ = check("adaptive_max_pool", dict(output_size=[2, 2]), [x], (), 1)
    assert np.isnan(y[0, 1]).any()


@settings(max_examples=80, **SETTINGS)
@given(st.integers(1, 3), st.data())
def test_adaptive_pool_random(r, data):
    op = data.draw(st.sampled_from(["adaptive_avg_pool", "adaptive_max_pool"]))
    size = [data.draw(st.integers(1, 9)) for _ in range(r)]
    out = [data.draw(st.integers(1, 7)) for _ in range(r)]
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 4))) + tuple(size)
    x = rand(np.random.default_rng(data.draw(st.integers(0, 999))), shape)
    check(op, dict(output_size=out), [x], (), data.draw(st.sampled_from([1, 2])))


@pytest.mark.parametrize("shape", [(1, 1280, 7, 7), (2, 3, 112, 112), (3, 5, 1, 1),
                                   (1, 4, 3, 5, 7)])
def test_global_avg_pool(shape):
    """Output size 1 everywhere: the one-sum-per-plane path; a NaN poisons its plane only."""
    x = rand(np.random.default_rng(len(shape)), shape)
    for threads in (1, 2):
        check("adaptive_avg_pool", dict(output_size=[1] * (len(shape) - 2)), [x], (), threads)
    x[0, 1].flat[-1] = np.nan
    (y,), _ = check("adaptive_avg_pool", dict(output_size=[1] * (len(shape) - 2)), [x], (), 1)
    assert np.isnan(y[0, 1]).all() and not np.isnan(y[0, 0]).any()


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_pool_matches_torch():
    rng = np.random.default_rng(3)
    x = rand(rng, (2, 3, 9, 8))
    attrs = dict(kernel_size=[3, 2], stride=[2, 2], padding=[1, 1], ceil_mode=True,
                 count_include_pad=False)
    (y,), _, _, _ = run_cpu("avg_pool", attrs, [x])
    t = F.avg_pool2d(torch.from_numpy(x), (3, 2), (2, 2), (1, 1), ceil_mode=True,
                     count_include_pad=False).numpy()
    assert_close(y, t, TOL, "avg_pool vs torch")
    attrs = dict(kernel_size=[3, 3], stride=[2, 1], padding=[1, 0], dilation=[2, 1],
                 ceil_mode=True)
    (y,), _, _, _ = run_cpu("max_pool", attrs, [x])
    t = F.max_pool2d(torch.from_numpy(x), (3, 3), (2, 1), (1, 0), (2, 1), ceil_mode=True).numpy()
    assert_close(y, t, TOL, "max_pool vs torch")
    (y,), _, _, _ = run_cpu("adaptive_avg_pool", dict(output_size=[4, 3]), [x])
    assert_close(y, F.adaptive_avg_pool2d(torch.from_numpy(x), (4, 3)).numpy(), TOL)


# -- linear / matmul / gemm -----------------------------------------------------------------

@settings(max_examples=80, **SETTINGS)
@given(st.data())
def test_linear_random(data):
    lead = tuple(data.draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    fin, fout = data.draw(st.integers(1, 70)), data.draw(st.integers(1, 70))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x, w = rand(rng, lead + (fin,)), rand(rng, (fout, fin), 0.3)
    b = rand(rng, (fout,)) if data.draw(st.booleans()) else None
    act = data.draw(st.sampled_from(ACTIVATIONS))
    const = (1, 2) if data.draw(st.booleans()) else ()
    check("linear", dict(activation=act), [x, w, b], const, data.draw(st.sampled_from([1, 2])),
          GEMM_TOL)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((5, 7), (7, 3)), ((7,), (7, 4)), ((4, 7), (7,)), ((7,), (7,)), ((2, 3, 5, 6), (6, 4)),
    ((3, 1, 5, 6), (2, 6, 9)), ((1, 65, 33), (4, 33, 17)), ((2, 1, 4, 3), (3, 3, 2)),
    ((130, 200), (200, 70)),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_matmul(a_shape, b_shape, threads):
    rng = np.random.default_rng(4)
    a, b = rand(rng, a_shape), rand(rng, b_shape)
    check("matmul", {}, [a, b], (), threads, GEMM_TOL)
    check("matmul", {}, [a, b], (1,), threads, GEMM_TOL)


@settings(max_examples=120, **SETTINGS)
@given(st.data())
def test_sgemm_direct(data):
    M, N, K = (data.draw(st.integers(0, 80)), data.draw(st.integers(0, 80)),
               data.draw(st.integers(0, 300)))
    ta, tb, acc = data.draw(st.booleans()), data.draw(st.booleans()), data.draw(st.booleans())
    mode = data.draw(st.sampled_from([0, 1, 2]))
    threads = data.draw(st.sampled_from([1, 2]))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    A, Bm = rand(rng, (M, K)), rand(rng, (K, N))
    c0 = rand(rng, (M, N))
    bias = rand(rng, (M if mode == 1 else N,)) if mode else None
    c = c0.copy()
    work = np.full(kgemm.gemm_workspace(M, N, K, tb, threads), np.nan, np.float32)
    kgemm.sgemm(np.ascontiguousarray(A.T) if ta else A, np.ascontiguousarray(Bm.T) if tb else Bm,
                c, bias, mode, ta, tb, acc, 1, 0.0, 0.0, work, threads)
    ref = A.astype(np.float64) @ Bm + (c0 if acc else 0)
    if mode == 1:
        ref = ref + bias[:, None]
    elif mode == 2:
        ref = ref + bias[None, :]
    ref = np.maximum(ref, 0)
    assert_close(c, ref.astype(np.float32), GEMM_TOL, f"sgemm {M}x{N}x{K} ta={ta} tb={tb}")


def test_gemm_threads_agree():
    rng = np.random.default_rng(5)
    A, Bm = rand(rng, (100, 333)), rand(rng, (333, 257))
    outs = []
    for t in (1, 2):
        c = np.empty((100, 257), np.float32)
        kgemm.sgemm(A, Bm, c, work=np.empty(kgemm.gemm_workspace(100, 257, 333, False, t),
                                             np.float32), nthreads=t)
        outs.append(c)
    np.testing.assert_array_equal(outs[0], outs[1])     # same blocking arithmetic


# -- elementwise ----------------------------------------------------------------------------

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0, 6.0, 6.5,
                    -6.5, 88.0, -88.0, 100.0, -100.0, 0.5, -0.5, 1e10, -1e10], np.float32)

UNARY = [("relu", {}), ("relu6", {}), ("sigmoid", {}), ("tanh", {}), ("silu", {}),
         ("hardswish", {}), ("hardsigmoid", {}), ("leaky_relu", {"negative_slope": 0.2}),
         ("leaky_relu", {"negative_slope": -1.5}), ("gelu", {"approximate": "none"}),
         ("gelu", {"approximate": "tanh"}), ("clip", {"min": -1.0, "max": 2.0}),
         ("clip", {"min": None, "max": 0.0}), ("clip", {"min": 0.5, "max": None}),
         ("clip", {"min": 1.0, "max": -1.0}), ("elu", {"alpha": 1.0}), ("elu", {"alpha": 0.3}),
         ("selu", {}), ("softplus", {"beta": 1.0, "threshold": 20.0}),
         ("softplus", {"beta": 2.0, "threshold": 3.0}), ("softplus", {"beta": -1.0, "threshold": 20.0}),
         ("mish", {})]


@pytest.mark.parametrize("op,attrs", UNARY)
@pytest.mark.parametrize("threads", [1, 2])
def test_unary(op, attrs, threads):
    rng = np.random.default_rng(6)
    x = np.concatenate([SPECIAL, rand(rng, (70001,), 4.0)]).reshape(1, -1)
    if op == "silu":    # x / (1 + exp(-x)) at -inf is NaN in float arithmetic; torch too
        x = x[np.isfinite(x) | (x > 0)].reshape(1, -1)
    check(op, attrs, [x], (), threads)


def test_gelu_is_accurate_to_float32_rounding_and_in_its_negative_tail():
    """Exact GELU, x Phi(x), against float64 on a dense grid: within 2.5e-7 max(1, |x|)
    everywhere (a few float32 roundings), and within 2e-5 relative for x in [-9, -1],
    where 0.5 x (1 + erf(x / sqrt 2)) in float32 loses every digit to cancellation (our
    Phi comes from erfc there); the standalone kernel and the GEMM epilogue alike."""
    x = np.concatenate([np.linspace(-20, 20, 200001), np.linspace(-3, 3, 100001)])
    x = x.astype(np.float32)
    erf = np.vectorize(math.erf)
    ref = x.astype(np.float64) * 0.5 * (1.0 + erf(x.astype(np.float64) / math.sqrt(2.0)))
    tail = (x > -9) & (x < -1)
    ref[tail] = x[tail] * 0.5 * np.vectorize(math.erfc)(-x[tail].astype(np.float64) /
                                                         math.sqrt(2.0))
    code, p0, p1 = cpu.act_params({"op": "gelu", "approximate": "none"})
    y = np.empty_like(x)
    kelt.unary(x, y, code, p0, p1, 1)
    # the GEMM's epilogue: identity times x, x as 100 rows of a 100 x 3000 output
    cols = x[:300000].reshape(100, 3000)
    g = np.empty_like(cols)
    work = np.empty(kgemm.gemm_workspace(100, 3000, 100), np.float32)
    kgemm.sgemm(np.eye(100, dtype=np.float32), cols, g, act=code, p0=p0, p1=p1, work=work)
    for got, want, xs, what in [(y, ref, x, "unary"),
                                (g.ravel(), ref[:300000], x[:300000], "gemm epilogue")]:
        err = np.abs(got.astype(np.float64) - want)
        bound = 2.5e-7 * np.maximum(1.0, np.abs(xs))
        assert (err <= bound).all(), f"{what}: {(err / bound).max():.2f} x the bound"
        t = (xs > -9) & (xs < -1)
        rel = (err[t] / np.abs(want[t])).max()
        assert rel < 2e-5, f"{what}: tail relative error {rel:.3g}"


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_unary_special_values_match_torch():
    x = SPECIAL
    t = torch.from_numpy(x)
    pairs = {"relu": F.relu(t), "relu6": F.relu6(t), "sigmoid": torch.sigmoid(t),
             "tanh": torch.tanh(t), "hardswish": F.hardswish(t), "hardsigmoid": F.hardsigmoid(t),
             "silu": F.silu(t), "selu": F.selu(t), "mish": F.mish(t)}
    for op, want in pairs.items():
        (y,), _, _, _ = run_cpu(op, {}, [x])
        finite = np.isfinite(x) if op == "silu" else np.ones(x.shape, bool)
        assert_close(y[finite], want.numpy()[finite], TOL, f"{op} vs torch")
    (y,), _, _, _ = run_cpu("clip", {"min": -1.0, "max": 1.0}, [x])
    assert_close(y, torch.clamp(t, -1.0, 1.0).numpy(), TOL, "clip vs torch")


@st.composite
def broadcast_pairs(draw):
    nd = draw(st.integers(0, 6))
    out = [draw(st.integers(1, 5)) for _ in range(nd)]
    total = 1
    for d in out:
        total *= d
    if total > 3000:
        out = [min(d, 2) for d in out]

    def operand():
        k = draw(st.integers(0, nd))
        dims = out[nd - k:]
        return tuple(d if draw(st.booleans()) else 1 for d in dims)
    return operand(), operand()


@settings(max_examples=200, **SETTINGS)
@given(broadcast_pairs(), st.sampled_from(["add", "sub", "mul", "div", "maximum", "minimum"]),
       st.sampled_from([(), (0,), (1,)]), st.integers(0, 999), st.sampled_from([1, 2]))
def test_binary_random(shapes, op, const, seed, threads):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, shapes[0]), rand(rng, shapes[1])
    check(op, {}, [a, b], const, threads)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum"])
@pytest.mark.parametrize("threads", [1, 2])
def test_binary_fast_paths(op, threads):
    rng = np.random.default_rng(7)
    x = rand(rng, (2, 16, 33, 35))
    for other in [rand(rng, x.shape), np.array(1.7, np.float32), rand(rng, (1, 16, 1, 1)),
                  rand(rng, (16, 1, 1)), rand(rng, (35,)), np.zeros((1,), np.float32)]:
        check(op, {}, [x, other], (1,), threads)
        check(op, {}, [other, x], (0,), threads)
    z = np.array([0.0, -0.0, 1.0, np.nan, np.inf, -np.inf], np.float32)
    check(op, {}, [z[:, None], z[None, :]], (), threads)


def test_prelu():
    rng = np.random.default_rng(8)
    for shape, wn in [((2, 5, 4, 3), 5), ((2, 5, 4, 3), 1), ((3, 7), 7), ((6,), 1),
                      ((1, 3, 8), 3)]:
        x = rand(rng, shape)
        x.flat[0] = np.nan
        w = rand(rng, (wn,))
        check("prelu", {}, [x, w], (1,), 2)
        check("prelu", {}, [x, w], (), 1)


@settings(max_examples=80, **SETTINGS)
@given(st.data())
def test_softmax_random(data):
    shape = tuple(data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=4)))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    x = rand(rng, shape, 5.0)
    if data.draw(st.booleans()):
        x.flat[data.draw(st.integers(0, x.size - 1))] = -np.inf
    for op in ("softmax", "log_softmax"):
        check(op, {"dim": dim}, [x], (), data.draw(st.sampled_from([1, 2])))


def test_softmax_special():
    x = np.array([[1.0, 2.0, 3.0], [-np.inf, -np.inf, -np.inf], [np.nan, 0.0, 1.0],
                  [np.inf, 0.0, 1.0], [1e30, -1e30, 0.0], [-np.inf, 0.0, 1.0]], np.float32)
    for op in ("softmax", "log_softmax"):
        check(op, {"dim": 1}, [x], ())
        check(op, {"dim": 0}, [np.ascontiguousarray(x.T)], ())
    big = rand(np.random.default_rng(9), (3, 1000, 70))
    check("softmax", {"dim": 1}, [big], (), 2)
    check("log_softmax", {"dim": -1}, [big], (), 2)


# -- normalisation --------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(2, 5), (2, 5, 7), (3, 4, 6, 5), (1, 3, 2, 3, 4)])
def test_batch_norm(shape, threads):
    rng = np.random.default_rng(10)
    C = shape[1]
    x = rand(rng, shape, 3.0)
    mean, var = rand(rng, (C,)), np.abs(rand(rng, (C,))) + 0.1
    w, b = rand(rng, (C,)), rand(rng, (C,))
    check("batch_norm", {"eps": 1e-5}, [x, mean, var, w, b], (1, 2, 3, 4), threads)
    check("batch_norm", {"eps": 1e-3}, [x, mean, var, None, None], (1, 2), threads)
    check("batch_norm", {"eps": 1e-5}, [x, mean, var, w, b], (), threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_group_instance_layer_norm(threads):
    rng = np.random.default_rng(11)
    x = rand(rng, (2, 12, 5, 7), 2.0) + 3.0
    w, b = rand(rng, (12,)), rand(rng, (12,))
    for g in (1, 3, 4, 12):
        check("group_norm", {"num_groups": g, "eps": 1e-5}, [x, w, b], (1, 2), threads)
    check("group_norm", {"num_groups": 2, "eps": 1e-5}, [x, None, None], (), threads)
    check("instance_norm", {"eps": 1e-5}, [x, w, b], (1, 2), threads)
    check("instance_norm", {"eps": 1e-5}, [x[:, :, :, 0].copy(), None, None], (), threads)
    for ns in ([7], [5, 7], [12, 5, 7]):
        wl, bl = rand(rng, tuple(ns)), rand(rng, tuple(ns))
        check("layer_norm", {"normalized_shape": ns, "eps": 1e-5}, [x, wl, bl], (1, 2), threads)
        check("layer_norm", {"normalized_shape": ns, "eps": 1e-5}, [x, wl, None], (), threads)
        check("layer_norm", {"normalized_shape": ns, "eps": 1e-5}, [x, None, bl], (2,), threads)
    # large offset: centring must stay accurate
    xo = rand(rng, (2, 4, 50)) + 1000.0
    check("layer_norm", {"normalized_shape": [50], "eps": 1e-5}, [xo, None, None], (), threads)
    check("instance_norm", {"eps": 1e-5}, [xo, None, None], (), threads)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_local_response_norm(size):
    rng = np.random.default_rng(12)
    for shape in [(2, 7, 5, 4), (1, 3, 9), (1, 300, 2, 2)]:
        x = rand(rng, shape, 2.0)
        check("local_response_norm", dict(size=size, alpha=1e-2, beta=0.75, k=1.0), [x], (), 2)
        check("local_response_norm", dict(size=size, alpha=0.5, beta=0.5, k=2.0), [x], (), 1)


# -- spatial ops ----------------------------------------------------------------------------

@settings(max_examples=120, **SETTINGS)
@given(st.data())
def test_pad_random(data):
    mode = data.draw(st.sampled_from(["constant", "reflect", "replicate"]))
    if mode == "constant":
        rank = data.draw(st.integers(1, 5))
        npad = data.draw(st.integers(1, rank))
    else:
        npad = data.draw(st.integers(1, 3))
        rank = npad + data.draw(st.integers(1, 2))
    shape = tuple(data.draw(st.integers(1, 6)) for _ in range(rank))
    pad = []
    for i in range(npad):
        size = shape[rank - 1 - i]
        hi = size - 1 if mode == "reflect" else 4
        pad += [data.draw(st.integers(0, hi)), data.draw(st.integers(0, hi))]
    value = data.draw(st.sampled_from([0.0, -2.5, float("nan")]))
    x = rand(np.random.default_rng(data.draw(st.integers(0, 999))), shape)
    check("pad", dict(pad=pad, mode=mode, value=value), [x], (), data.draw(st.sampled_from([1, 2])))


@settings(max_examples=150, **SETTINGS)
@given(st.data())
def test_interpolate_random(data):
    mode = data.draw(st.sampled_from(["nearest", "bilinear"]))
    r = 2 if mode == "bilinear" else data.draw(st.integers(1, 3))
    size = [data.draw(st.integers(1, 8)) for _ in range(r)]
    if data.draw(st.booleans()):
        sf = [data.draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 0.7])) for _ in range(r)]
        out = [int(math.floor(s * f)) for s, f in zip(size, sf)]
        if min(out) < 1:
            sf = None
            out = [data.draw(st.integers(1, 12)) for _ in range(r)]
    else:
        sf = None
        out = [data.draw(st.integers(1, 12)) for _ in range(r)]
    ac = data.draw(st.sampled_from([None, False, True])) if mode == "bilinear" else None
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))) + tuple(size)
    x = rand(np.random.default_rng(data.draw(st.integers(0, 999))), shape)
    check("interpolate", dict(size=out, scale_factor=sf, mode=mode, align_corners=ac), [x], (),
          data.draw(st.sampled_from([1, 2])))


@pytest.mark.skipif(torch is None, reason="torch not installed")
def test_interpolate_matches_torch():
    rng = np.random.default_rng(13)
    x = rand(rng, (1, 2, 5, 7))
    for ac in (False, True):
        (y,), _, _, _ = run_cpu("interpolate", dict(size=[9, 4], scale_factor=None, mode="bilinear",
                                                 align_corners=ac), [x])
        t = F.interpolate(torch.from_numpy(x), size=(9, 4), mode="bilinear", align_corners=ac)
        assert_close(y, t.numpy(), TOL, f"bilinear ac={ac}")
    (y,), _, _, _ = run_cpu("interpolate", dict(size=[12, 17], scale_factor=[2.5, 2.5],
                                             mode="nearest", align_corners=None), [x])
    t = F.interpolate(torch.from_numpy(x), scale_factor=2.5, mode="nearest")
    assert_close(y, t.numpy(), TOL, "nearest sf 2.5")


# -- reductions and data movement -----------------------------------------------------------

@pytest.mark.parametrize("dim,keep", [([2, 3], False), ([2, 3], True), ([-1], False), ([1], True),
                                      ([0, 2], False), ([], False), ([3, 2, 1], True)])
def test_mean(dim, keep):
    x = rand(np.random.default_rng(14), (2, 3, 5, 7))
    _, spec = check("mean", dict(dim=dim, keepdim=keep), [x], (), 2)
    axes = sorted(d % 4 for d in dim) if dim else [0, 1, 2, 3]     # [] reduces every dim
    trailing = axes == list(range(4 - len(axes), 4))
    assert spec.variant == ("trailing_pool" if trailing else "numpy")


def test_data_movement():
    rng = np.random.default_rng(15)
    x = rand(rng, (2, 6, 3, 4))
    check("flatten", dict(start_dim=1, end_dim=-1), [x], (0,))
    check("flatten", dict(start_dim=1, end_dim=-1), [x], ())
    check("reshape", dict(shape=[4, -1]), [x], ())
    check("dropout", dict(p=0.5), [x], ())
    check("identity", {}, [x], ())
    check("permute", dict(dims=[0, 2, 3, 1]), [x], ())
    check("concat", dict(dim=1), [x, rand(rng, (2, 1, 3, 4)), x], (1,))
    check("concat", dict(dim=-1), [x, rand(rng, (2, 6, 3, 2))], ())
    check("split", dict(split_size_or_sections=4, dim=1), [x], (), n_out=2)
    check("split", dict(split_size_or_sections=[1, 0, 5], dim=1), [x], (), n_out=3)
    check("channel_shuffle", dict(groups=3), [x], ())
    check("channel_shuffle", dict(groups=2), [x[:, :, :, 0].copy()], ())


def test_every_op_has_a_cpu_kernel():
    missing = [op for op in OPS if ("cpu", op) not in KERNELS]
    assert not missing, f"ops without a cpu kernel: {missing}"
    moving = {"dropout", "identity", "flatten", "reshape", "permute", "concat", "split",
              "channel_shuffle"}
    for op in OPS:
        specs = KERNELS[("cpu", op)]
        if op not in moving | {"mean"}:
            assert specs[0].native, f"{op}: best cpu kernel should be native"


def test_fused_activation_codes():
    assert cpu.act_params(None) == (0, 0.0, 0.0)
    assert cpu.act_params({"op": "clip", "min": None, "max": 6.0}) == (4, -math.inf, 6.0)
    assert cpu.act_params({"op": "gelu", "approximate": "tanh"})[0] == 11
    assert cpu.act_params({"op": "leaky_relu", "negative_slope": 0.3}) == (3, 0.3, 0.0)


# -- argument checking of the Cython wrappers -----------------------------------------------

def _f(*shape):
    return np.zeros(shape, np.float32)


BAD_CALLS = [
    # gemm
    lambda: kgemm.sgemm(_f(3, 4).astype(np.float64), _f(4, 5), _f(3, 5)),
    lambda: kgemm.sgemm(_f(3, 4), _f(5, 4).T, _f(3, 5)),                 # non-contiguous
    lambda: kgemm.sgemm(_f(3, 4), _f(4, 5), _f(3, 6)),                   # wrong c
    lambda: kgemm.sgemm(_f(3, 4), _f(3, 5), _f(3, 5)),                   # K mismatch
    lambda: kgemm.sgemm(_f(3, 4), _f(4, 5), _f(3, 5), _f(4), 1),         # bias size
    lambda: kgemm.sgemm(_f(3, 4), _f(4, 5), _f(3, 5), _f(5), 0),         # bias mode
    lambda: kgemm.sgemm(_f(64, 64), _f(64, 64), _f(64, 64), work=_f(3)),  # small work
    lambda: kgemm.sgemm(_f(64, 64), _f(64, 64), _f(64, 64), work=None),
    lambda: kgemm.sgemm(_f(3, 4), _f(4, 5), _f(3, 5), act=99),
    lambda: kgemm.sgemm(_f(3, 4), _f(4, 5), _f(3, 5), nthreads=0),
    lambda: kgemm.sgemm([[1.0]], _f(1, 1), _f(1, 1)),
    lambda: kgemm.matmul_batched(_f(2, 3, 4), _f(2, 4, 5), _f(3, 3, 5),
                                 np.array([0, 1, 2]), np.array([0, 1, 1])),   # index range
    lambda: kgemm.matmul_batched(_f(2, 3, 4), _f(2, 4, 5), _f(2, 3, 5),
                                 np.array([0, 1], np.int32), np.array([0, 1])),
    # conv
    lambda: kconv.conv3d(_f(1, 4, 1, 5, 5), _f(2, 3, 1, 3, 3), None, _f(1, 2, 1, 3, 3),
                         [1, 1, 1], [0, 0, 0], [1, 1, 1], 1),                 # Cin mismatch
    lambda: kconv.conv3d(_f(1, 4, 5, 5), _f(2, 4, 3, 3), None, _f(1, 2, 3, 3),
                         [1, 1], [0, 0], [1, 1], 1),                          # not 5-D
    lambda: kconv.conv3d(_f(1, 4, 1, 5, 5), _f(2, 4, 1, 3, 3), _f(3), _f(1, 2, 1, 3, 3),
                         [1, 1, 1], [0, 0, 0], [1, 1, 1], 1, work=_f(10000)),  # bias size
    lambda: kconv.conv3d(_f(1, 4, 1, 5, 5), _f(2, 4, 1, 3, 3), None, _f(1, 2, 1, 3, 3),
                         [1, 0, 1], [0, 0, 0], [1, 1, 1], 1, work=_f(10000)),  # stride 0
    lambda: kconv.conv3d(_f(1, 4, 1, 5, 5), _f(2, 4, 1, 3, 3), None, _f(1, 2, 1, 3, 3),
                         [1, 1, 1], [0, -1, 0], [1, 1, 1], 1, work=_f(10000)),  # neg pad
    lambda: kconv.conv3d(_f(1, 4, 1, 5, 5), _f(2, 4, 1, 3, 3), None, _f(1, 2, 1, 3, 3),
                         [1, 1, 1], [0, 0, 0], [1, 1, 1], 1, work=_f(5)),  # small work
    lambda: kconv.conv3d(_f(1, 4, 1, 5, 5), _f(2, 2, 1, 3, 3), None, _f(1, 2, 1, 3, 3),
                         [1, 1, 1], [0, 0, 0], [1, 1, 1], 3, work=_f(10000)),  # groups
    lambda: kconv.conv3d_depthwise(_f(1, 4, 1, 5, 5), _f(6, 1, 1, 3, 3), None,
                                   _f(1, 6, 1, 3, 3), [1, 1, 1], [0, 0, 0], [1, 1, 1]),
    lambda: kconv.conv_transpose3d(_f(1, 4, 1, 5, 5), _f(2, 4, 1, 3, 3), None,
                                   _f(1, 4, 1, 7, 7), [1, 1, 1], [0, 0, 0], [1, 1, 1], 1,
                                   work=_f(100000)),                          # w layout
    lambda: kconv.conv3d(np.zeros((1, 4, 1, 5, 5), np.float32)[:, :, :, ::-1],
                         _f(2, 4, 1, 3, 3), None, _f(1, 2, 1, 3, 3), [1, 1, 1], [0, 0, 0],
                         [1, 1, 1], 1, work=_f(10000)),                      # negative strides
    # pool
    lambda: kpool.pool3d(_f(1, 2, 1, 4, 4), _f(1, 3, 1, 2, 2), [1, 2, 2], [1, 2, 2], [0] * 3,
                         [0] * 3, [1] * 3, kpool.MAX),                         # C mismatch
    lambda: kpool.pool3d(_f(1, 2, 1, 4, 4), _f(1, 2, 1, 2, 2), [1, 0, 2], [1, 2, 2], [0] * 3,
                         [0] * 3, [1] * 3, kpool.MAX),                         # kernel 0
    lambda: kpool.pool3d(_f(1, 2, 1, 4, 4), _f(1, 2, 1, 2, 2), [1, 2, 2], [1, 2, 2], [0] * 3,
                         [0] * 3, [1, 2, 1], kpool.AVG),                       # avg dilation
    lambda: kpool.pool3d(_f(1, 2, 1, 4, 4), _f(1, 2, 1, 2, 2), [1, 2, 2], [1, 2, 2], [0] * 3,
                         [0] * 3, [1] * 3, 7),                                 # mode
    lambda: kpool.adaptive_pool3d(_f(1, 2, 4, 4), _f(1, 2, 2, 2), kpool.AVG),
    # eltwise
    lambda: kelt.unary(_f(10), _f(9), 1),
    lambda: kelt.unary(_f(10), _f(10), 16),
    lambda: kelt.binary(0, _f(3), _f(4), _f(4), [4], [1], [1]),               # a too small
    lambda: kelt.binary(0, _f(4), _f(4), _f(5), [4], [1], [1]),               # out size
    lambda: kelt.binary(0, _f(4), _f(4), _f(4), [4], [-1], [1]),              # neg stride
    lambda: kelt.binary(0, _f(4), _f(4), _f(4), [1] * 7, [0] * 7, [0] * 7),   # 7 dims
    lambda: kelt.binary(6, _f(4), _f(4), _f(4), [4], [1], [1]),               # op
    lambda: kelt.prelu(_f(2, 3, 4), _f(2), _f(2, 3, 4)),
    lambda: kelt.softmax(_f(10), _f(10), 2, 3, 2),
    lambda: kelt.channel_affine(_f(2, 3, 4), _f(4), None, _f(2, 3, 4)),
    # norm
    lambda: knorm.group_norm(_f(2, 6, 4), None, None, _f(2, 6, 4), 4, 1e-5),
    lambda: knorm.layer_norm(_f(2, 6, 4), _f(5), None, _f(2, 6, 4), 4, 1e-5),
    lambda: knorm.lrn(_f(2, 6, 4), _f(2, 6, 4), 0, 1e-4, 0.75, 1.0),
    lambda: knorm.lrn(_f(5), _f(5), 2, 1e-4, 0.75, 1.0),
    # spatial
    lambda: ksp.resize_nearest3d(_f(1, 1, 1, 2, 2), _f(1, 1, 1, 4, 4), np.zeros(1, np.intp),
                                 np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1])),  # idx range
    lambda: ksp.resize_nearest3d(_f(1, 1, 1, 2, 2), _f(1, 1, 1, 4, 4), np.zeros(1, np.intp),
                                 np.array([0, 0, 1]), np.array([0, 0, 1, 1])),     # idx size
    lambda: ksp.resize_bilinear2d(_f(1, 1, 2, 2), _f(1, 1, 3, 3), *([np.zeros(3, np.intp)] * 2
                                  + [_f(3)] * 2 + [np.zeros(3, np.intp)] * 2 + [_f(2)] * 2)),
    lambda: ksp.pad(_f(2, 3), _f(2, 3, 1), [0, 0], ksp.CONSTANT),
    lambda: ksp.pad(_f(2, 3), _f(4, 5), [1], ksp.CONSTANT),
    lambda: ksp.pad(_f(2, 3), _f(4, 5), [1, 1], 9),
]


@pytest.mark.parametrize("i", range(len(BAD_CALLS)))
def test_bad_arguments_raise_value_error(i):
    with pytest.raises(ValueError):
        BAD_CALLS[i]()


def test_read_only_output_rejected():
    c = _f(3, 5)
    c.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        kgemm.sgemm(_f(3, 4), _f(4, 5), c)


def test_overlap_rejected():
    buf = _f(100)
    with pytest.raises(ValueError, match="overlap"):
        kgemm.sgemm(buf[:12].reshape(3, 4), _f(4, 5), buf[10:25].reshape(3, 5))
    x = _f(2, 3, 4)
    kelt.unary(x, x, 1)                                # exact in place: fine
    with pytest.raises(ValueError, match="overlap"):
        kelt.unary(buf[:50], buf[1:51], 1)
    with pytest.raises(ValueError, match="overlap"):
        knorm.lrn(x, x, 3, 1e-4, 0.75, 1.0)


def test_threads_flag_and_blocking():
    from engine import _kernels
    assert _kernels.threads_enabled() is True         # pthreads here (Linux)
    for mod in (kgemm, kconv, kpool, kelt, knorm, ksp):
        assert mod.threads_enabled() == _kernels.threads_enabled()
    b = kgemm.blocking()
    assert b["mc"] % b["mr"] == 0 and b["nr"] >= 4


# -- x86 depthwise / pooling paths: targeted cases ------------------------------------------
# The AVX2 / AVX-512 depthwise kernel (3x3 / 5x5, equal strides 1 or 2, no dilation, pads
# below the kernel) and the max / min / avg pooling kernel (2x2 / 3x3 windows, equal strides
# 1 or 2) load straight from the input with per-column-vector masks: these cases hit their edges
# (widths around the vector width and its multiples, odd sizes, stride 2 with odd sizes,
# asymmetric pads, tiny maps of the flat mode, channel multipliers, NaN / inf inputs, ceil
# mode), and the geometries just outside them (dilation, unequal strides) that fall back.

def _inject_specials(rng, x, nan, inf):
    flat = x.reshape(-1)
    if nan:
        flat[rng.integers(0, flat.size, size=nan)] = np.nan
    if inf:
        idx = rng.integers(0, flat.size, size=inf)
        flat[idx] = np.where(rng.random(inf) < 0.5, np.inf, -np.inf).astype(np.float32)
    return x


@st.composite
def dw_x86_cases(draw):
    k = draw(st.sampled_from([3, 3, 3, 5]))
    s = draw(st.sampled_from([1, 2]))
    sw = s if draw(st.integers(0, 9)) else 3 - s            # a few unequal strides (fallback)
    d = 1 if draw(st.integers(0, 9)) else 2                  # a few dilated (fallback)
    pads = [[draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))] for _ in range(2)]
    small = draw(st.booleans())
    hmax, wmax = (9, 17) if small else (20, 75)
    size = []
    for (pb, pe), hi in zip(pads, (hmax, wmax)):
        lo = max(1, d * (k - 1) + 1 - pb - pe)
        size.append(draw(st.integers(lo, max(lo, hi))))
    if draw(st.integers(0, 3)) == 0:                         # "same" maps (flat mode)
        p = (k - 1) // 2
        pads, s, sw, d = [[p, p], [p, p]], 1, 1, 1
        size = [draw(st.integers(1, 16)), draw(st.integers(1, 16))]
    c = draw(st.integers(2, 6))                              # (groups == C > 1: depthwise)
    mult = draw(st.sampled_from([1, 1, 1, 2, 3]))
    return dict(k=k, s=[s, sw], d=[d, d], pads=pads, size=size, n=draw(st.integers(1, 2)),
                c=c, mult=mult, bias=draw(st.booleans()), act=draw(st.sampled_from(ACTIVATIONS)),
                threads=draw(st.sampled_from([1, 2])), nan=draw(st.sampled_from([0, 0, 0, 2])),
                seed=draw(st.integers(0, 2**31)))


@settings(max_examples=300, **SETTINGS)
@given(dw_x86_cases())
def test_depthwise_x86_paths(c):
    rng = np.random.default_rng(c["seed"])
    x = rand(rng, (c["n"], c["c"]) + tuple(c["size"]))
    _inject_specials(rng, x, c["nan"], 0)
    w = rand(rng, (c["c"] * c["mult"], 1, c["k"], c["k"]), 0.5)
    b = rand(rng, (c["c"] * c["mult"],)) if c["bias"] else None
    attrs = dict(stride=c["s"], padding=c["pads"], dilation=c["d"], groups=c["c"],
                 activation=c["act"])
    _, spec = check("conv", attrs, [x, w, b], (1, 2), c["threads"], GEMM_TOL)
    assert spec.variant == "depthwise_direct"


@pytest.mark.parametrize("hw,k,s,pad", [
    ((112, 112), 3, 1, 1), ((112, 112), 3, 2, 1), ((56, 56), 3, 2, 1), ((14, 14), 3, 2, 1),
    ((7, 7), 3, 1, 1), ((14, 14), 3, 1, 1), ((28, 28), 5, 2, 2), ((7, 7), 5, 1, 2),
    ((33, 47), 3, 2, 0), ((1, 1), 3, 1, 1), ((2, 40), 3, 2, 2), ((17, 16), 5, 1, 4),
])
@pytest.mark.parametrize("threads", [1, 2])
def test_depthwise_x86_layers(hw, k, s, pad, threads):
    """MobileNet / EfficientNet-like layers (row blocks of every height, several column
    vectors, stride 2 with every column parity) and degenerate maps."""
    rng = np.random.default_rng(hash((hw, k, s, pad)) % 2**31)
    ch = 19
    x = rand(rng, (1, ch) + hw)
    w, b = rand(rng, (ch, 1, k, k), 0.3), rand(rng, (ch,))
    for act in ({"op": "relu6"}, None, {"op": "hardswish"}):
        attrs = dict(stride=[s, s], padding=[[pad, pad], [pad, pad]], dilation=[1, 1],
                     groups=ch, activation=act)
        check("conv", attrs, [x, w, b], (1, 2), threads, GEMM_TOL)


@st.composite
def pool_x86_cases(draw):
    op = draw(st.sampled_from(["max_pool", "max_pool", "min_pool", "avg_pool"]))
    k = draw(st.sampled_from([2, 3, 3]))
    s = draw(st.sampled_from([1, 2]))
    sw = s if draw(st.integers(0, 9)) else 3 - s             # a few unequal strides (fallback)
    d = 1 if draw(st.integers(0, 9)) or op == "avg_pool" else 2   # a few dilated (fallback)
    p = [draw(st.integers(0, k // 2)) for _ in range(2)]
    small = draw(st.booleans())
    hmax, wmax = (9, 17) if small else (24, 75)
    size = [draw(st.integers(max(1, d * (k - 1) + 1 - 2 * pp), hi))
            for pp, hi in zip(p, (hmax, wmax))]
    attrs = dict(kernel_size=[k, k], stride=[s, sw], padding=p, ceil_mode=draw(st.booleans()))
    if op == "avg_pool":
        attrs["count_include_pad"] = draw(st.booleans())
    else:
        attrs["dilation"] = [d, d]
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5))) + tuple(size)
    return (op, attrs, shape, draw(st.sampled_from([1, 2])), draw(st.sampled_from([0, 0, 1, 3])),
            draw(st.sampled_from([0, 0, 2])), draw(st.integers(0, 2**31)))


@settings(max_examples=300, **SETTINGS)
@given(pool_x86_cases())
def test_pool_x86_paths(case):
    op, attrs, shape, threads, nan, inf, seed = case
    rng = np.random.default_rng(seed)
    x = _inject_specials(rng, rand(rng, shape), nan, inf)
    check(op, attrs, [x], (), threads)


@pytest.mark.parametrize("op", ["max_pool", "min_pool", "avg_pool"])
@pytest.mark.parametrize("hw,k,s,pad,ceil", [
    ((112, 112), 3, 2, 0, True), ((112, 112), 3, 2, 1, False), ((56, 56), 3, 2, 0, True),
    ((28, 28), 3, 1, 1, True), ((14, 14), 3, 1, 1, True), ((7, 7), 3, 1, 1, True),
    ((14, 14), 2, 2, 0, True), ((13, 13), 2, 2, 0, True), ((1, 1), 3, 2, 1, True),
    ((35, 35), 3, 2, 0, False),
])
def test_pool_x86_layers(op, hw, k, s, pad, ceil):
    """GoogLeNet / ResNet / Inception / DenseNet pools with NaN and infinities in some windows
    (and whole rows of them)."""
    rng = np.random.default_rng(hash((hw, k, s, pad)) % 2**31)
    x = _inject_specials(rng, rand(rng, (1, 21) + hw), 5, 5)
    x[0, 3, hw[0] // 2, :] = np.nan
    x[0, 4, :, hw[1] - 1] = -np.inf if op == "max_pool" else np.inf
    attrs = dict(kernel_size=[k, k], stride=[s, s], padding=[pad, pad], ceil_mode=ceil)
    attrs.update(dict(count_include_pad=bool(hw[0] % 2)) if op == "avg_pool"
                 else dict(dilation=[1, 1]))
    for threads in (1, 2):
        check(op, attrs, [x], (), threads)


# -- strided copy: permutes, and permutes written into a slice of a larger array -------------

@settings(max_examples=120, **SETTINGS)
@given(st.data())
def test_copy_strided_permutes(data):
    """copy_strided against NumPy for random permutes of random shapes (extents up to 40:
    the 16 x 16 blocked transpose with full and partial blocks, dims merged where both
    sides walk them as one, extent-1 dims), written into a contiguous array or into a slice
    of a larger one (concat's layout), on 1 to 3 threads."""
    rank = data.draw(st.integers(1, 5))
    shape = tuple(data.draw(st.integers(1, 40 if rank <= 3 else 9)) for _ in range(rank))
    perm = data.draw(st.permutations(range(rank)))
    threads = data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.standard_normal(shape).astype(np.float32)
    want = x.transpose(perm)
    out_shape = want.shape
    src_strides = [x.strides[p] // 4 for p in perm]
    # the destination: a slice [lo, lo + extent) of a larger array along one dim
    axis = data.draw(st.integers(0, rank - 1))
    pad = data.draw(st.integers(0, 3))
    lo = data.draw(st.integers(0, pad))
    big_shape = list(out_shape)
    big_shape[axis] += pad
    big = np.full(big_shape, np.nan, np.float32)
    dst_strides = [s // 4 for s in big.strides]
    offset = lo * dst_strides[axis]
    ksp.copy_strided(x, big, out_shape, src_strides, dst_strides, dst_offset=offset,
                     nthreads=threads)
    index = tuple(slice(lo, lo + out_shape[d]) if d == axis else slice(None)
                  for d in range(rank))
    np.testing.assert_array_equal(big[index], want)
    rest = np.ones(big.shape, bool)
    rest[index] = False
    assert np.isnan(big[rest]).all(), "wrote outside the destination slice"
