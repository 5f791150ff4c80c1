r"""Winograd F(m x m, 3 x 3) convolution (include/engine/ek_winograd.h, engine/backends/
cpu_winograd.py) against the NumPy reference conv, at every instruction-set level.

Error bound.  Winograd computes the same sums as the direct conv, but through transformed
operands: the float32 rounding of U = G g G^T, V = B^T d B and above all of the Cin-long
accumulation of M = sum U (.) V is amplified by the output transform's coefficients (up to
8 for F4, 32 for F6).  The error of an output is bounded by a multiple of the magnitude of
what is summed:

    |y - ref| <= L * tol_m * S(co) + 1e-6 * (1 + |ref|),
    S(co) = sum_{cin, kh, kw} |w[co, cin, kh, kw]| * max |x|

with ref computed in float64, L = 1.5 the largest slope of the fused activations
(hardswish), and the last term the float32 evaluation of the activation itself.
tol_m = 6e-7 (F2), 8e-6 (F4), 1.5e-5 (F6): about 4x the largest |y - ref| / S measured
over 450 random cases of this file's distribution (all levels): 1.4e-7 (F2), 2.0e-6 (F4),
3.2e-6 (F6), against 8.5e-8 for the im2col GEMM (medians 1.7e-8 / 2.3e-7 / 4.1e-7 / 3.4e-8).
Relative to the output's own scale (max |y - ref| / max |ref|) on He-initialised layers with
post-ReLU inputs: F2 3e-7 to 8e-7, F4 5e-6 to 1.1e-5, F6 1e-5 to 1.8e-5 (C = 64 at 56x56 to
C = 512 at 14x14), im2col 2e-7 to 4e-7.  A float32 NumPy emulation with the same sequential
accumulation gives the same F4 / F6 figures: the accumulation of M dominates, the transforms
themselves (U rounded once from double) add under 1e-6.  F6 is therefore taken only when
the cost model finds it clearly faster (cpu_winograd.F6_MARGIN).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import _kernels
from engine import ops as _ops  # noqa: F401  (fills the op registry)
from engine._kernels import conv as kconv
from engine.backends import cpu_winograd as cw
from engine.backends.base import KERNELS, PrepareContext, load_backend
from engine.ir import Node
from engine.ops import get_op
from engine.ops.activation import apply_activation

load_backend("cpu")

TOL = {2: 6e-7, 4: 8e-6, 6: 1.5e-5}
LIPSCHITZ = 1.5
ACT_SLACK = 1e-6

ACTIVATIONS = [None, {"op": "relu"}, {"op": "relu6"}, {"op": "leaky_relu", "negative_slope": 0.1},
               {"op": "clip", "min": -0.5, "max": 0.75}, {"op": "clip", "min": None, "max": 0.5},
               {"op": "sigmoid"}, {"op": "tanh"}, {"op": "silu"}, {"op": "hardswish"},
               {"op": "hardsigmoid"}, {"op": "gelu", "approximate": "none"},
               {"op": "gelu", "approximate": "tanh"}]


def reference(x, w, b, pads, residual, act):
    """float64 reference (the engine's reference conv, then residual and activation) and
    the per-output-channel bound scale S."""
    attrs = dict(stride=[1, 1], padding=pads, dilation=[1, 1], groups=1, activation=None)
    node = Node("conv", "n", ["x", "w", "b" if b is not None else ""], ["y"], attrs)
    pre = np.asarray(get_op("conv").run_reference(node, [x, w, b])[0], np.float64)
    if residual is not None:
        pre = pre + residual.astype(np.float64)
    ref = np.asarray(apply_activation(pre, act), np.float64)
    S = np.abs(w.astype(np.float64)).sum(axis=(1, 2, 3)) * float(np.abs(x).max())
    return ref, S


def check_bound(y, ref, S, m, what=""):
    bound = (LIPSCHITZ * TOL[m] * S.reshape(1, -1, 1, 1)
             + ACT_SLACK * (1.0 + np.abs(ref)))
    err = np.abs(y.astype(np.float64) - ref)
    assert np.isfinite(y).all(), f"{what}: non-finite output"
    bad = err > bound
    assert not bad.any(), (f"{what}: F{m} error {err[bad].max():.3g} above the bound at "
                           f"{np.argwhere(bad)[:3].tolist()} (bound there "
                           f"{bound[bad][:3].tolist()})")


@st.composite
def cases(draw):
    pads = [[draw(st.integers(0, 2)), draw(st.integers(0, 2))] for _ in range(2)]
    size = [draw(st.integers(max(1, 3 - p[0] - p[1]), 20)) for p in pads]
    return dict(n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 40)),
                cout=draw(st.integers(1, 40)), size=size, pads=pads,
                act=draw(st.sampled_from(ACTIVATIONS)), bias=draw(st.booleans()),
                residual=draw(st.booleans()), threads=draw(st.sampled_from([1, 2])),
                tile=draw(st.sampled_from(cw.TILES)), seed=draw(st.integers(0, 2**31)))


def _inputs(c):
    rng = np.random.default_rng(c["seed"])
    x = rng.standard_normal((c["n"], c["cin"]) + tuple(c["size"])).astype(np.float32)
    w = (rng.standard_normal((c["cout"], c["cin"], 3, 3)) * 0.5).astype(np.float32)
    b = rng.standard_normal(c["cout"]).astype(np.float32) if c["bias"] else None
    oh = c["size"][0] + sum(c["pads"][0]) - 2
    ow = c["size"][1] + sum(c["pads"][1]) - 2
    r = (rng.standard_normal((c["n"], c["cout"], oh, ow)).astype(np.float32)
         if c["residual"] else None)
    return x, w, b, r, (c["n"], c["cout"], oh, ow)


@settings(deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(c=cases())
def test_kernel_random(isa, c):
    """The Cython wrapper straight (garbage-filled output and workspace)."""
    x, w, b, r, ys = _inputs(c)
    m, threads = c["tile"], c["threads"]
    code, p0, p1 = cw.act_params(c["act"])
    wp = kconv.winograd_pack(w, m)
    assert wp.isa_name == isa
    y = np.full(ys, np.nan, np.float32)
    work = np.full(kconv.winograd_workspace(x.shape, w.shape, ys, m, threads, isa=isa),
                   np.nan, np.float32)
    kconv.conv2d_winograd(x, wp, b, y, [c["pads"][0][0], c["pads"][1][0]], code, p0, p1, r,
                          work, threads)
    ref, S = reference(x, w, b, c["pads"], r, c["act"])
    check_bound(y, ref, S, m, f"{c}")


def _spec(variant):
    return next(s for s in KERNELS[("cpu", "conv")] if s.variant == variant)


def run_factory(x, w, b, pads, act, variant, threads=1, options=None):
    node = Node("conv", "n", ["x", "w", "b" if b is not None else ""], ["y"],
                dict(stride=[1, 1], padding=pads, dilation=[1, 1], groups=1, activation=act))
    in_shapes = [x.shape, w.shape, None if b is None else b.shape]
    out_shapes = get_op("conv").infer_shapes(node, in_shapes)
    ctx = PrepareContext(in_shapes=in_shapes, out_shapes=out_shapes, constants=[None, w, b],
                         threads=threads, backend="cpu", options=dict(options or {}))
    kernel = _spec(variant).factory(node, ctx)
    out = np.full(out_shapes[0], np.nan, np.float32)
    kernel.run([x.copy(), w, b], [out], np.full(kernel.scratch, np.nan, np.float32))
    return out, node, ctx


@pytest.mark.parametrize("m", cw.TILES)
@pytest.mark.parametrize("shape", [(1, 16, 7, 7, 24), (2, 17, 13, 6, 33), (1, 64, 28, 28, 96)])
def test_factory_every_tile(isa, m, shape):
    """The backend kernel (a PrepareContext as the runtime builds it), every tile size on
    maps smaller than, equal to and larger than a tile block, odd channel counts."""
    n, cin, h, wd, cout = shape
    rng = np.random.default_rng(m * 100 + cin)
    x = rng.standard_normal((n, cin, h, wd)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    act = {"op": "relu6"}
    pads = [[1, 1], [0, 2]]
    y, node, ctx = run_factory(x, w, b, pads, act, f"winograd_f{m}", threads=2)
    ref, S = reference(x, w, b, pads, None, act)
    check_bound(y, ref, S, m, f"shape={shape}")
    # forcing through the options selects exactly that variant
    ctx.options = {"winograd": str(m)}
    assert cw.chosen_tile(node, ctx) == m
    ctx.options = {"winograd": "off"}
    assert cw.chosen_tile(node, ctx) == 0


def test_not_eligible():
    """Strided, dilated, grouped, 5x5, 1-D / 3-D and runtime-weight convs never take it."""
    def ctx_for(x_shape, w_shape, const=True):
        return PrepareContext(in_shapes=[x_shape, w_shape], out_shapes=[None],
                              constants=[None, np.zeros(w_shape, np.float32) if const else None],
                              threads=1, backend="cpu", options={"winograd": "4"})

    def node(**kw):
        a = dict(stride=[1, 1], padding=[[1, 1], [1, 1]], dilation=[1, 1], groups=1,
                 activation=None)
        a.update(kw)
        return Node("conv", "n", ["x", "w"], ["y"], a)
    x, w = (1, 8, 10, 10), (8, 8, 3, 3)
    assert cw.eligible(node(), ctx_for(x, w))
    assert not cw.eligible(node(stride=[2, 2]), ctx_for(x, w))
    assert not cw.eligible(node(dilation=[1, 2]), ctx_for(x, w))
    assert not cw.eligible(node(groups=2), ctx_for(x, (8, 4, 3, 3)))
    assert not cw.eligible(node(), ctx_for(x, (8, 8, 5, 5)))
    assert not cw.eligible(node(), ctx_for(x, w, const=False))
    assert not cw.eligible(node(stride=[1], padding=[[1, 1]], dilation=[1]),
                           ctx_for((1, 8, 10), (8, 8, 3)))


@pytest.mark.parametrize("threads", [1, 2])
def test_cost_model_choices(threads):
    """The per-layer choice on the layers of VGG-16 / ResNet (AVX-512 model): im2col for 3
    input channels, Winograd for the rest, smaller tiles on smaller maps."""
    def choose(c, cout, hw, n=1):
        return cw.choose_tile(n, c, cout, hw, hw, threads, 2)
    assert choose(3, 64, 224) == 0
    assert choose(64, 64, 224) in (4, 6)
    assert choose(128, 128, 56) == 4
    assert choose(256, 256, 56) in (4, 6)
    assert choose(512, 512, 28) == 4
    assert choose(512, 512, 14) == 4
    assert choose(512, 512, 7) == 2
    assert choose(64, 64, 28, n=2) == 4
    for isa in (0, 1, 2):                    # every level has a model
        assert cw.choose_tile(1, 64, 64, 56, 56, threads, isa) in (2, 4, 6)


def test_wrapper_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    wp = kconv.winograd_pack(w, 4)
    ys = (1, 5, 6, 6)
    need = kconv.winograd_workspace(x.shape, w.shape, ys, 4, 1)
    work = np.empty(need, np.float32)
    y = np.empty(ys, np.float32)
    kconv.conv2d_winograd(x, wp, None, y, [1, 1], work=work)
    bad = [
        dict(x=x.astype(np.float64)), dict(x=x[:, :, :, ::2]), dict(x=x.reshape(1, 4, 36)),
        dict(x=np.zeros((1, 3, 6, 6), np.float32)), dict(y=np.empty((2, 5, 6, 6), np.float32)),
        dict(y=np.empty((1, 4, 6, 6), np.float32)), dict(bias=np.zeros(4, np.float32)),
        dict(residual=np.zeros(10, np.float32)), dict(work=np.empty(need - 1, np.float32)),
        dict(work=None), dict(pad=[1]), dict(pad=[-1, 0]), dict(wp=w), dict(wp=None),
        dict(wp=kconv.conv_pack(w.reshape(5, 4, 1, 3, 3))), dict(act=16), dict(nthreads=0),
    ]
    for b in bad:
        a = dict(x=x, wp=wp, bias=None, y=y, pad=[1, 1], act=0, residual=None, work=work,
                 nthreads=1)
        a.update(b)
        with pytest.raises(ValueError):
            kconv.conv2d_winograd(a["x"], a["wp"], a["bias"], a["y"], a["pad"], a["act"],
                                  0.0, 0.0, a["residual"], a["work"], a["nthreads"])
    with pytest.raises(ValueError):
        kconv.conv2d_winograd(x, wp, None, y, [1, 1], residual=y, work=work)  # overlap
    with pytest.raises(ValueError):
        kconv.conv2d_winograd(x, wp, None, x.reshape(ys[:1] + (4, 6, 6)), [1, 1], work=work)
    for t in (3, 8, "x", None):
        with pytest.raises(ValueError):
            kconv.winograd_pack(w, t)
    with pytest.raises(ValueError):
        kconv.winograd_pack(rng.standard_normal((5, 4, 5, 5)).astype(np.float32), 4)
    with pytest.raises(ValueError):
        kconv.winograd_workspace(x.shape, (5, 4, 3, 3), (1, 5, 6), 4, 1)


# -- session level --------------------------------------------------------------------------

def _plan_rows(session, batch):
    """(node name, op, variant) of Session.plan (rows are tuples or PlanRow objects)."""
    for r in session.plan(batch):
        if hasattr(r, "variant"):
            yield r.name, r.op, r.variant
        else:
            yield r[0], r[1], r[2]


def small_net(rng, c=24):
    """3x3 convs (one with a residual add, one of 3 input channels) between pools."""
    b = engine.Builder()
    x = b.input("image", (None, 3, 40, 40))

    def conv(t, cout, name, relu=True):
        y = b.conv2d(t, (rng.standard_normal((cout, t.shape[1], 3, 3)) * 0.15)
                     .astype(np.float32), rng.standard_normal(cout).astype(np.float32),
                     padding=1, name=name)
        return b.relu(y) if relu else y
    t = conv(x, c, "stem")
    t = conv(t, c, "c1")
    t = b.relu(b.add(conv(t, c, "c2", relu=False), t))
    t = b.max_pool2d(t, 2)
    t = conv(t, 2 * c, "c3")
    t = b.max_pool2d(t, 2)
    t = conv(t, 2 * c, "c4")
    f = b.flatten(b.adaptive_avg_pool2d(t, 1), 1)
    b.output(b.linear(f, (rng.standard_normal((10, 2 * c)) * 0.1).astype(np.float32),
                      np.zeros(10, np.float32)), "logits")
    return b.build()


@pytest.mark.parametrize("force", [None, "2", "4", "6"])
def test_session_picks_winograd_and_matches_reference(monkeypatch, force):
    if force is None:
        monkeypatch.delenv(cw.ENV, raising=False)
    else:
        monkeypatch.setenv(cw.ENV, force)
    rng = np.random.default_rng(5)
    model = small_net(rng)
    x = rng.standard_normal((2, 3, 40, 40)).astype(np.float32)
    s = engine.Session(model, threads=2)
    variants = {name: v for name, op, v in _plan_rows(s, 2) if op.startswith("conv")}
    wino = {n for n, v in variants.items() if v.startswith("winograd")}
    if force is None:
        assert variants["stem"] == "im2col_gemm"          # 3 input channels
        assert wino >= {"c1", "c3"}
    else:
        assert all(variants[n] == f"winograd_f{force}" for n in ("c1", "c2", "c3", "c4"))
    out = s.run(x)[0]
    ref = engine.Session(model, backend="reference", optimize_graph=False).run(x)[0]
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(out - ref).max()) <= 1e-4 * scale


def test_session_off_uses_im2col(monkeypatch):
    monkeypatch.setenv(cw.ENV, "off")
    s = engine.Session(small_net(np.random.default_rng(6)), threads=1)
    assert not any(v.startswith("winograd") for _, _, v in _plan_rows(s, 1))
    monkeypatch.setenv(cw.ENV, "7")
    with pytest.raises(ValueError):
        engine.Session(small_net(np.random.default_rng(6)), threads=1).plan(1)
