"""Every NumPy reference in engine.ops checked against PyTorch (CPU, float32).

Tolerance: an output matches when ``max|ours - torch| <= 1e-5 * max(1, max|torch|)`` over
the finite entries; NaN must sit exactly where torch has NaN and +-inf must match exactly.

Each test also checks that the op's shape function (``infer``) predicts the reference's
output shape, and separate tests cover symbolic-batch (None) inference, error messages
for bad shapes/attributes, and MAC counts.  Skips cleanly when torch is not installed.
"""

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
F = torch.nn.functional

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine.ops import OPS  # noqa: E402
from engine.ops.activation import FUSABLE, apply_activation, check_activation  # noqa: E402

torch.set_num_threads(1)
FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


# -- helpers --------------------------------------------------------------------------------

def assert_close(ours, ref):
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref.detach().numpy() if isinstance(ref, torch.Tensor) else ref,
                     dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != torch {ref.shape}"
    nan_o, nan_r = np.isnan(ours), np.isnan(ref)
    assert (nan_o == nan_r).all(), "NaN positions differ from torch"
    inf_r = np.isinf(ref)
    assert (ours[inf_r] == ref[inf_r]).all(), "infinities differ from torch"
    fin = np.isfinite(ref)
    assert np.isfinite(ours[fin]).all(), "non-finite value where torch is finite"
    if fin.any():
        scale = max(1.0, float(np.abs(ref[fin]).max()))
        err = float(np.abs(ours[fin] - ref[fin]).max())
        assert err <= 1e-5 * scale, f"max error {err:.3g} > 1e-5 * {scale:.3g}"


def shape_of(a):
    return None if a is None else tuple(a.shape)


def run(op, *inputs, **attrs):
    """Run the reference, check dtype and that infer predicts the output shape(s)."""
    opdef = OPS[op]
    out = opdef.reference(*inputs, **attrs)
    predicted = opdef.infer(*(shape_of(a) for a in inputs), **attrs)
    if isinstance(out, np.ndarray):
        assert out.dtype == np.float32, f"{op} returned {out.dtype}"
        assert tuple(predicted) == out.shape, f"infer {predicted} != reference {out.shape}"
    else:
        assert [tuple(s) for s in predicted] == [o.shape for o in out]
        for o in out:
            assert o.dtype == np.float32
    return out


def t(a):
    return None if a is None else torch.from_numpy(np.array(a, copy=True))  # keeps 0-d


def t64(a):
    """float64 torch tensor: the oracle for ops where torch's float32 rounding (not the
    semantics) dominates the difference, e.g. normalising near-constant slices."""
    return None if a is None else torch.from_numpy(np.array(a, dtype=np.float64))


def randn(rng, *shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


def torch_pad_list(padding):
    """[[b, e]] per spatial dim -> F.pad's last-dim-first flat list."""
    out = []
    for b, e in reversed(padding):
        out += [b, e]
    return out


TORCH_ACT = {
    "relu": lambda x: F.relu(x),
    "relu6": lambda x: F.relu6(x),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
}


def torch_activation(y, act):
    if act is None:
        return y
    name = act["op"]
    if name in TORCH_ACT:
        return TORCH_ACT[name](y)
    if name == "leaky_relu":
        return F.leaky_relu(y, act["negative_slope"])
    if name == "gelu":
        return F.gelu(y, approximate=act["approximate"])
    if name == "clip":
        return torch.clamp(y, act["min"], act["max"])
    if name == "elu":
        return F.elu(y, act["alpha"])
    if name == "selu":
        return F.selu(y)
    if name == "softplus":
        return F.softplus(y, act["beta"], act["threshold"])
    if name == "mish":
        return F.mish(y)
    raise AssertionError(name)


activations = st.sampled_from([
    None, {"op": "relu"}, {"op": "relu6"}, {"op": "sigmoid"}, {"op": "tanh"}, {"op": "silu"},
    {"op": "hardswish"}, {"op": "hardsigmoid"}, {"op": "leaky_relu", "negative_slope": 0.1},
    {"op": "gelu", "approximate": "none"}, {"op": "gelu", "approximate": "tanh"},
    {"op": "clip", "min": 0.0, "max": 6.0}, {"op": "clip", "min": -0.5, "max": None},
    {"op": "elu", "alpha": 0.7}, {"op": "selu"}, {"op": "softplus", "beta": 1.5, "threshold": 4.0},
    {"op": "mish"},
])


# -- registry flags, imports ----------------------------------------------------------------

ALL_OPS = {
    "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid",
    "gelu", "elu", "selu", "softplus", "mish", "clip", "prelu", "softmax", "log_softmax",
    "conv", "conv_transpose", "max_pool",
    "min_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "linear", "matmul",
    "add", "sub", "mul", "div", "maximum", "minimum", "batch_norm", "layer_norm", "instance_norm", "group_norm",
    "local_response_norm", "dropout", "identity", "flatten", "reshape", "permute", "concat",
    "split", "channel_shuffle", "pad", "interpolate", "mean",
}


def test_all_ops_registered_with_flags():
    assert ALL_OPS <= set(OPS)
    for name in FUSABLE:
        assert OPS[name].elementwise, name
    assert not OPS["prelu"].elementwise and not OPS["softmax"].elementwise
    assert {n for n in ALL_OPS if OPS[n].alias} == {"dropout", "identity", "flatten", "reshape"}
    assert OPS["concat"].n_inputs == (1, 10**6)
    for name in ("conv", "conv_transpose", "linear", "matmul"):
        assert OPS[name].macs is not None


def test_ops_import_with_numpy_only():
    code = ("import sys; import engine.ops; "
            "bad = [m for m in ('torch', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo_root()))


def _repo_root():
    import pathlib
    return pathlib.Path(__file__).resolve().parents[1]


# -- activations ----------------------------------------------------------------------------

UNARY = [
    ("relu", {}, F.relu),
    ("relu6", {}, F.relu6),
    ("sigmoid", {}, torch.sigmoid),
    ("tanh", {}, torch.tanh),
    ("silu", {}, F.silu),
    ("hardswish", {}, F.hardswish),
    ("hardsigmoid", {}, F.hardsigmoid),
    ("leaky_relu", {"negative_slope": 0.01}, lambda x: F.leaky_relu(x, 0.01)),
    ("leaky_relu", {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    ("gelu", {"approximate": "none"}, lambda x: F.gelu(x)),
    ("gelu", {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ("elu", {"alpha": 1.0}, F.elu),
    ("elu", {"alpha": 0.3}, lambda x: F.elu(x, 0.3)),
    ("selu", {}, F.selu),
    ("softplus", {"beta": 1.0, "threshold": 20.0}, F.softplus),
    ("softplus", {"beta": 2.0, "threshold": 3.0}, lambda x: F.softplus(x, 2.0, 3.0)),
    ("softplus", {"beta": -0.5, "threshold": 20.0}, lambda x: F.softplus(x, -0.5, 20.0)),
    ("mish", {}, F.mish),
    ("clip", {"min": 0.0, "max": 6.0}, lambda x: torch.clamp(x, 0.0, 6.0)),
    ("clip", {"min": None, "max": 1.5}, lambda x: torch.clamp(x, max=1.5)),
    ("clip", {"min": -1.0, "max": None}, lambda x: torch.clamp(x, min=-1.0)),
    ("clip", {"min": None, "max": None}, lambda x: x.clone()),
]
SPECIAL = np.array([0.0, -0.0, 3.0, -3.0, 6.0, 1e-8, -1e-8, 88.0, -88.0, 100.0, -100.0,
                    np.inf, -np.inf, np.nan], dtype=np.float32)


@pytest.mark.parametrize("name,attrs,ref", UNARY, ids=[f"{u[0]}-{u[1]}" for u in UNARY])
@FEW
@given(seed=seeds, rank=st.integers(0, 4), scale=st.sampled_from([1.0, 4.0, 30.0]))
def test_unary(name, attrs, ref, seed, rank, scale):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 5, size=rank), scale=scale)
    assert_close(run(name, x, **attrs), ref(t(x)))
    special = SPECIAL
    if name == "gelu" and attrs["approximate"] == "none":
        special = SPECIAL[SPECIAL != np.inf]     # torch's erf-gelu(+inf) is NaN; ours is +inf
    assert_close(run(name, special, **attrs), ref(t(special)))


@FAST
@given(seed=seeds, rank=st.integers(1, 4), single=st.booleans())
def test_prelu(seed, rank, single):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 5, size=rank))
    c = 1 if single or rank < 2 else shape[1]
    x, w = randn(rng, *shape), randn(rng, c)
    x.flat[0] = np.nan
    assert_close(run("prelu", x, w), F.prelu(t(x), t(w)))


@pytest.mark.parametrize("name,fn", [("softmax", torch.softmax),
                                     ("log_softmax", torch.log_softmax)])
@FAST
@given(seed=seeds, rank=st.integers(1, 4), data=st.data())
def test_softmax(name, fn, seed, rank, data):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 6, size=rank), scale=20.0)
    dim = data.draw(st.integers(-rank, rank - 1))
    assert_close(run(name, x, dim=dim), fn(t(x), dim))


def test_softmax_infinities():
    x = np.array([[np.inf, 1.0], [-np.inf, -np.inf], [-np.inf, 2.0]], dtype=np.float32)
    for name, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        assert_close(run(name, x, dim=1), fn(t(x), 1))


def test_apply_activation():
    x = np.linspace(-8, 8, 33, dtype=np.float32)
    assert apply_activation(x, None) is x
    y = apply_activation(x.astype(np.float64), {"op": "leaky_relu", "negative_slope": 0.3})
    assert_close(y, F.leaky_relu(t(x), 0.3))
    with pytest.raises(ValueError, match="not fusable"):
        check_activation({"op": "softmax", "dim": 1})
    with pytest.raises(ValueError, match="negative_slope"):
        check_activation({"op": "leaky_relu"})
    with pytest.raises(ValueError, match="bad attributes"):
        check_activation({"op": "relu", "inplace": True})
    with pytest.raises(ValueError, match="approximate"):
        check_activation({"op": "gelu", "approximate": "fast"})
    with pytest.raises(ValueError, match="dict"):
        check_activation("relu")


# -- conv -----------------------------------------------------------------------------------

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@st.composite
def conv_cases(draw):
    r = draw(st.integers(1, 3))
    n = draw(st.integers(1, 3))
    if draw(st.booleans()):                      # depthwise, channel multiplier 1..3
        groups = draw(st.integers(1, 6))
        cin_g, cout_g = 1, draw(st.integers(1, 3))
    else:
        groups = draw(st.sampled_from([1, 1, 2, 3]))
        cin_g, cout_g = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = [draw(st.integers(1, 3 if r == 3 else 4)) for _ in range(r)]
    stride = [draw(st.integers(1, 3)) for _ in range(r)]
    dilation = [draw(st.integers(1, 2)) for _ in range(r)]
    padding = [[draw(st.integers(0, 2)), draw(st.integers(0, 2))] for _ in range(r)]
    sizes = []
    for k, d, (b, e) in zip(kernel, dilation, padding):
        eff = d * (k - 1) + 1
        sizes.append(draw(st.integers(max(1, eff - b - e), eff + (3 if r == 3 else 7))))
    return dict(r=r, n=n, groups=groups, cin_g=cin_g, cout_g=cout_g, kernel=kernel,
                stride=stride, dilation=dilation, padding=padding, sizes=sizes,
                bias=draw(st.booleans()), activation=draw(activations))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_cases(), seed=seeds)
def test_conv(case, seed):
    rng = np.random.default_rng(seed)
    g = case["groups"]
    x = randn(rng, case["n"], case["cin_g"] * g, *case["sizes"])
    w = randn(rng, case["cout_g"] * g, case["cin_g"], *case["kernel"])
    b = randn(rng, case["cout_g"] * g) if case["bias"] else None
    attrs = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
                 groups=g, activation=case["activation"])
    ours = run("conv", x, w, b, **attrs)
    ref = TORCH_CONV[case["r"]](F.pad(t(x), torch_pad_list(case["padding"])), t(w), t(b),
                                stride=case["stride"], dilation=case["dilation"], groups=g)
    assert_close(ours, torch_activation(ref, case["activation"]))
    macs = OPS["conv"].macs([ours.shape], x.shape, w.shape, shape_of(b), **attrs)
    assert macs == ours.size * case["cin_g"] * int(np.prod(case["kernel"]))


@pytest.mark.parametrize("xshape,wshape,stride,pad,groups", [
    ((1, 3, 1, 1), (5, 3, 1, 1), [1, 1], [[0, 0], [0, 0]], 1),           # 1x1 spatial
    ((2, 13, 5, 7), (11, 13, 5, 7), [1, 1], [[0, 0], [0, 0]], 1),       # kernel == input
    ((1, 12, 9, 9), (36, 1, 3, 3), [2, 2], [[1, 1], [1, 1]], 12),       # depthwise x3
    ((3, 10, 6, 5), (15, 2, 3, 2), [1, 2], [[0, 2], [1, 0]], 5),        # asym pad, groups
    ((1, 7, 1, 9), (7, 7, 1, 3), [1, 1], [[0, 0], [2, 0]], 1),          # causal-like pad
])
def test_conv_edge_cases(xshape, wshape, stride, pad, groups):
    rng = np.random.default_rng(0)
    x, w = randn(rng, *xshape), randn(rng, *wshape)
    ours = run("conv", x, w, None, stride=stride, padding=pad, dilation=[1, 1], groups=groups,
               activation=None)
    ref = F.conv2d(F.pad(t(x), torch_pad_list(pad)), t(w), stride=stride, groups=groups)
    assert_close(ours, ref)


def test_conv_nan_propagates():
    x = np.ones((1, 2, 4, 4), dtype=np.float32)
    x[0, 0, 0, 0] = np.nan
    w = np.ones((1, 2, 2, 2), dtype=np.float32)
    ours = run("conv", x, w, None, stride=[1, 1], padding=[[0, 0], [0, 0]], dilation=[1, 1],
               groups=1, activation={"op": "relu"})
    assert_close(ours, F.relu(F.conv2d(t(x), t(w))))


@st.composite
def conv_transpose_cases(draw):
    r = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = [draw(st.integers(1, 3 if r == 3 else 4)) for _ in range(r)]
    stride = [draw(st.integers(1, 3)) for _ in range(r)]
    dilation = [draw(st.integers(1, 2)) for _ in range(r)]
    out_pad = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    sizes = [draw(st.integers(1, 3 if r == 3 else 6)) for _ in range(r)]
    padding = []
    for i in range(r):
        full = (sizes[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + out_pad[i] + 1
        padding.append(draw(st.integers(0, min(2, (full - 1) // 2))))
    return dict(r=r, n=draw(st.integers(1, 3)), groups=groups,
                cin_g=draw(st.integers(1, 3)), cout_g=draw(st.integers(1, 3)), kernel=kernel,
                stride=stride, dilation=dilation, output_padding=out_pad, padding=padding,
                sizes=sizes, bias=draw(st.booleans()), activation=draw(activations))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_transpose_cases(), seed=seeds)
def test_conv_transpose(case, seed):
    rng = np.random.default_rng(seed)
    g = case["groups"]
    x = randn(rng, case["n"], case["cin_g"] * g, *case["sizes"])
    w = randn(rng, case["cin_g"] * g, case["cout_g"], *case["kernel"])
    b = randn(rng, case["cout_g"] * g) if case["bias"] else None
    attrs = dict(stride=case["stride"], padding=case["padding"],
                 output_padding=case["output_padding"], dilation=case["dilation"], groups=g,
                 activation=case["activation"])
    ours = run("conv_transpose", x, w, b, **attrs)
    ref = TORCH_CONVT[case["r"]](t(x), t(w), t(b), stride=case["stride"],
                                 padding=case["padding"],
                                 output_padding=case["output_padding"], groups=g,
                                 dilation=case["dilation"])
    assert_close(ours, torch_activation(ref, case["activation"]))
    macs = OPS["conv_transpose"].macs([ours.shape], x.shape, w.shape, shape_of(b), **attrs)
    assert macs == x.size * case["cout_g"] * int(np.prod(case["kernel"]))


# -- pooling --------------------------------------------------------------------------------

TORCH_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
TORCH_AVGPOOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@st.composite
def pool_cases(draw, dilated):
    r = draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3 if r == 3 else 4)) for _ in range(r)]
    stride = [draw(st.integers(1, 3)) for _ in range(r)]
    dilation = [draw(st.integers(1, 2)) if dilated else 1 for _ in range(r)]
    padding = [draw(st.integers(0, k // 2)) for k in kernel]
    sizes = []
    for k, d, p in zip(kernel, dilation, padding):
        eff = d * (k - 1) + 1
        lo = eff if r == 3 and not dilated else max(1, eff - 2 * p)  # torch's avg_pool3d rule
        sizes.append(draw(st.integers(lo, eff + (3 if r == 3 else 7))))
    return dict(r=r, n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), kernel=kernel,
                stride=stride, dilation=dilation, padding=padding, sizes=sizes,
                ceil_mode=draw(st.booleans()))


@FAST
@given(case=pool_cases(dilated=True), seed=seeds, nans=st.booleans())
def test_max_min_pool(case, seed, nans):
    rng = np.random.default_rng(seed)
    x = randn(rng, case["n"], case["c"], *case["sizes"])
    if nans:
        x[rng.random(x.shape) < 0.1] = np.nan
    attrs = dict(kernel_size=case["kernel"], stride=case["stride"], padding=case["padding"],
                 dilation=case["dilation"], ceil_mode=case["ceil_mode"])
    ours = run("max_pool", x, **attrs)
    pool = TORCH_MAXPOOL[case["r"]]
    assert_close(ours, pool(t(x), **attrs))
    assert_close(run("min_pool", x, **attrs), -pool(-t(x), **attrs))


@FAST
@given(case=pool_cases(dilated=False), seed=seeds, cip=st.booleans())
def test_avg_pool(case, seed, cip):
    rng = np.random.default_rng(seed)
    x = randn(rng, case["n"], case["c"], *case["sizes"])
    attrs = dict(kernel_size=case["kernel"], stride=case["stride"], padding=case["padding"],
                 ceil_mode=case["ceil_mode"], count_include_pad=cip)
    assert_close(run("avg_pool", x, **attrs), TORCH_AVGPOOL[case["r"]](t(x), **attrs))


def test_max_pool_padding_is_minus_inf():
    x = -np.ones((1, 1, 3, 3), dtype=np.float32) * 5
    attrs = dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[1, 1],
                 ceil_mode=True)
    ours = run("max_pool", x, **attrs)
    assert (ours == -5).all()
    assert_close(ours, F.max_pool2d(t(x), **attrs))
    assert (run("min_pool", -x, **attrs) == 5).all()


@pytest.mark.parametrize("name,fn", [
    ("adaptive_avg_pool", {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d,
                           3: F.adaptive_avg_pool3d}),
    ("adaptive_max_pool", {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d,
                           3: F.adaptive_max_pool3d}),
])
@FAST
@given(seed=seeds, r=st.integers(1, 3), data=st.data(), nans=st.booleans())
def test_adaptive_pool(name, fn, seed, r, data, nans):
    rng = np.random.default_rng(seed)
    sizes = [data.draw(st.integers(1, 5 if r == 3 else 9)) for _ in range(r)]
    out = [data.draw(st.integers(1, 5 if r == 3 else 9)) for _ in range(r)]
    x = randn(rng, data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), *sizes)
    if nans:
        x[rng.random(x.shape) < 0.1] = np.nan
    assert_close(run(name, x, output_size=out), fn[r](t(x), out))


# -- linear / matmul ------------------------------------------------------------------------

@FAST
@given(seed=seeds, lead=st.lists(st.integers(1, 3), max_size=3), fin=st.integers(1, 9),
       fout=st.integers(1, 9), bias=st.booleans(), act=activations)
def test_linear(seed, lead, fin, fout, bias, act):
    rng = np.random.default_rng(seed)
    x, w = randn(rng, *lead, fin), randn(rng, fout, fin)
    b = randn(rng, fout) if bias else None
    ours = run("linear", x, w, b, activation=act)
    assert_close(ours, torch_activation(F.linear(t(x), t(w), t(b)), act))
    assert OPS["linear"].macs([ours.shape], x.shape, w.shape, shape_of(b),
                              activation=act) == int(np.prod(lead)) * fin * fout


@pytest.mark.parametrize("a,b", [
    ((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((2, 4), (4, 3)), ((5, 2, 4), (4, 3)),
    ((4,), (2, 4, 3)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 6)), ((3, 2, 4), (4,)),
])
def test_matmul(a, b):
    rng = np.random.default_rng(1)
    x, y = randn(rng, *a), randn(rng, *b)
    ours = run("matmul", x, y)
    assert_close(ours, torch.matmul(t(x), t(y)))
    k = a[-1]
    assert OPS["matmul"].macs([ours.shape], a, b) == max(ours.size, 1) * k


def test_matmul_errors():
    with pytest.raises(ValueError, match="inner dims"):
        OPS["matmul"].infer((2, 3), (4, 5))
    with pytest.raises(ValueError, match="broadcast"):
        OPS["matmul"].infer((2, 2, 3), (3, 3, 4))


# -- elementwise ----------------------------------------------------------------------------

@st.composite
def broadcast_pair(draw):
    base = draw(st.lists(st.integers(1, 4), max_size=4))

    def operand():
        k = draw(st.integers(0, len(base)))
        return tuple(1 if draw(st.booleans()) else d for d in base[len(base) - k:])
    return operand(), operand()


@pytest.mark.parametrize("name,fn", [("add", torch.add), ("sub", torch.sub),
                                     ("mul", torch.mul), ("div", torch.div),
                                     ("maximum", torch.maximum), ("minimum", torch.minimum)])
@FAST
@given(shapes=broadcast_pair(), seed=seeds)
def test_binary(name, fn, shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, *shapes[0], scale=3), randn(rng, *shapes[1], scale=3)
    if b.size:
        b.flat[0] = 0.0                               # x/0 -> inf, 0*inf etc.
    ours = run(name, a, b)
    ref = fn(t(a), t(b))
    np.testing.assert_array_equal(ours, ref.numpy())  # float32 +-*/ rounds identically


def test_binary_bad_broadcast():
    with pytest.raises(ValueError, match=r"dim -1 has sizes 3 and 4"):
        OPS["add"].infer((2, 3), (4,))
    assert OPS["mul"].infer((None, 8, 4, 4), (1, 8, 1, 1)) == (None, 8, 4, 4)
    assert OPS["add"].infer((None, 8), ()) == (None, 8)
    with pytest.raises(ValueError, match="symbolic"):
        OPS["add"].infer((None, 8), (3, 8))


# -- normalisation --------------------------------------------------------------------------

@FAST
@given(seed=seeds, rank=st.integers(2, 5), affine=st.booleans())
def test_batch_norm(seed, rank, affine):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 5, size=rank), scale=3)
    c = x.shape[1]
    rm, rv = randn(rng, c), rng.random(c).astype(np.float32) + 0.1
    w = randn(rng, c) if affine else None
    b = randn(rng, c) if affine else None
    ours = run("batch_norm", x, rm, rv, w, b, eps=1e-5)
    assert_close(ours, F.batch_norm(t64(x), t64(rm), t64(rv), t64(w), t64(b), training=False,
                                    eps=1e-5))


@FAST
@given(seed=seeds, rank=st.integers(1, 4), data=st.data(), affine=st.booleans())
def test_layer_norm(seed, rank, data, affine):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 6, size=rank), scale=3) + 2
    k = data.draw(st.integers(1, rank))
    ns = list(x.shape[rank - k:])
    w = randn(rng, *ns) if affine else None
    b = randn(rng, *ns) if affine else None
    ours = run("layer_norm", x, w, b, normalized_shape=ns, eps=1e-5)
    assert_close(ours, F.layer_norm(t64(x), ns, t64(w), t64(b), eps=1e-5))


@FAST
@given(seed=seeds, rank=st.integers(3, 5), affine=st.booleans())
def test_instance_norm(seed, rank, affine):
    rng = np.random.default_rng(seed)
    shape = list(rng.integers(1, 5, size=rank))
    shape[-1] = max(shape[-1], 2)                  # torch needs > 1 spatial element
    x = randn(rng, *shape, scale=3) - 1
    c = x.shape[1]
    w = randn(rng, c) if affine else None
    b = randn(rng, c) if affine else None
    assert_close(run("instance_norm", x, w, b, eps=1e-5),
                 F.instance_norm(t64(x), weight=t64(w), bias=t64(b), eps=1e-5))


@FAST
@given(seed=seeds, rank=st.integers(2, 5), data=st.data(), affine=st.booleans())
def test_group_norm(seed, rank, data, affine):
    rng = np.random.default_rng(seed)
    groups = data.draw(st.integers(1, 4))
    shape = [data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))]
    shape += list(rng.integers(1, 5, size=rank - 2))
    if np.prod(shape[2:]) * shape[1] // groups == 1:
        shape[1] *= 2                              # torch needs > 1 value per group
    x = randn(rng, *shape, scale=2) + 1
    c = x.shape[1]
    w = randn(rng, c) if affine else None
    b = randn(rng, c) if affine else None
    assert_close(run("group_norm", x, w, b, num_groups=groups, eps=1e-5),
                 F.group_norm(t64(x), groups, t64(w), t64(b), eps=1e-5))


@FAST
@given(seed=seeds, rank=st.integers(3, 5), size=st.integers(1, 7),
       alpha=st.sampled_from([1e-4, 0.1, 1.0]), beta=st.sampled_from([0.75, 0.5, 1.0]),
       k=st.sampled_from([1.0, 2.0]))
def test_local_response_norm(seed, rank, size, alpha, beta, k):
    rng = np.random.default_rng(seed)
    shape = list(rng.integers(1, 4, size=rank))
    shape[1] = int(rng.integers(1, 10))
    x = randn(rng, *shape, scale=2)
    assert_close(run("local_response_norm", x, size=size, alpha=alpha, beta=beta, k=k),
                 F.local_response_norm(t64(x), size, alpha, beta, k))


# -- shape ops ------------------------------------------------------------------------------

def test_aliases():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert run("dropout", x, p=0.5) is x
    assert run("identity", x) is x


@FAST
@given(seed=seeds, rank=st.integers(0, 5), data=st.data())
def test_flatten(seed, rank, data):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 4, size=rank))
    n = max(rank, 1)
    s = data.draw(st.integers(-n, n - 1))
    e = data.draw(st.integers(-n, n - 1))
    if s % n > e % n:
        with pytest.raises(ValueError, match="after"):
            OPS["flatten"].infer(x.shape, start_dim=s, end_dim=e)
        return
    assert_close(run("flatten", x, start_dim=s, end_dim=e), torch.flatten(t(x), s, e))


@FAST
@given(seed=seeds, rank=st.integers(1, 4), data=st.data())
def test_reshape_permute(seed, rank, data):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 4, size=rank))
    target = list(data.draw(st.permutations(x.shape)))
    if data.draw(st.booleans()):
        target[data.draw(st.integers(0, rank - 1))] = -1
    assert_close(run("reshape", x, shape=target), t(x).reshape(target))
    dims = data.draw(st.permutations(list(range(rank))))
    dims = [d - rank if data.draw(st.booleans()) else d for d in dims]
    assert_close(run("permute", x, dims=dims), t(x).permute(dims))


@FAST
@given(seed=seeds, rank=st.integers(1, 4), n=st.integers(1, 4), data=st.data())
def test_concat_split(seed, rank, n, data):
    rng = np.random.default_rng(seed)
    base = list(rng.integers(1, 4, size=rank))
    dim = data.draw(st.integers(-rank, rank - 1))
    xs = []
    for _ in range(n):
        s = list(base)
        s[dim] = data.draw(st.integers(1, 4))
        xs.append(randn(rng, *s))
    ours = run("concat", *xs, dim=dim)
    assert_close(ours, torch.cat([t(a) for a in xs], dim))
    size = ours.shape[dim]
    if data.draw(st.booleans()):
        spec = data.draw(st.integers(1, size + 1))
    else:
        spec = [x.shape[dim] for x in xs]
    pieces = run("split", ours, split_size_or_sections=spec, dim=dim)
    ref = torch.split(t(ours), spec, dim)
    assert len(pieces) == len(ref)
    for p, r in zip(pieces, ref):
        assert_close(p, r)


@FAST
@given(seed=seeds, rank=st.integers(3, 5), groups=st.integers(1, 4), per=st.integers(1, 3))
def test_channel_shuffle(seed, rank, groups, per):
    rng = np.random.default_rng(seed)
    shape = list(rng.integers(1, 4, size=rank))
    shape[1] = groups * per
    x = randn(rng, *shape)
    assert_close(run("channel_shuffle", x, groups=groups),
                 F.channel_shuffle(t(x), groups))


@FAST
@given(seed=seeds, data=st.data(), mode=st.sampled_from(["constant", "reflect", "replicate"]))
def test_pad(seed, data, mode):
    rng = np.random.default_rng(seed)
    if mode == "constant":
        rank = data.draw(st.integers(1, 5))
        npad = data.draw(st.integers(1, rank))
    else:
        npad = data.draw(st.integers(1, 3))
        rank = npad + data.draw(st.integers(1, 2))
    x = randn(rng, *rng.integers(2, 5, size=rank))
    pad = []
    for i in range(npad):
        size = x.shape[rank - 1 - i]
        hi = size - 1 if mode == "reflect" else 3
        pad += [data.draw(st.integers(0, hi)), data.draw(st.integers(0, hi))]
    value = 1.5 if mode == "constant" else 0.0
    ours = run("pad", x, pad=pad, mode=mode, value=value)
    ref = F.pad(t(x), pad, mode=mode, value=value) if mode == "constant" else \
        F.pad(t(x), pad, mode=mode)
    assert_close(ours, ref)


def test_pad_errors():
    x = (1, 3, 4, 4)
    with pytest.raises(ValueError, match="negative"):
        OPS["pad"].infer(x, pad=[-1, 0], mode="constant", value=0.0)
    with pytest.raises(ValueError, match="smaller than its size"):
        OPS["pad"].infer((1, 3, 4), pad=[4, 0], mode="reflect", value=0.0)
    with pytest.raises(ValueError, match="rank 2 or 3"):
        OPS["pad"].infer((1, 2, 3, 4), pad=[1, 1], mode="replicate", value=0.0)
    with pytest.raises(ValueError, match="mode"):
        OPS["pad"].infer(x, pad=[1, 1], mode="circular", value=0.0)
    assert OPS["pad"].infer((None, 3, 4, 4), pad=[1, 2, 0, 1], mode="reflect",
                            value=0.0) == (None, 3, 5, 7)


# -- interpolate ----------------------------------------------------------------------------

SCALES = [0.5, 0.7, 1.0, 1.2, 1.5, 1.7, 2.0, 2.2, 2.5, 3.0, 1 / 3, 0.75]


@FAST
@given(seed=seeds, data=st.data(), mode=st.sampled_from(["nearest", "bilinear"]),
       use_scale=st.booleans(), nans=st.booleans())
def test_interpolate(seed, data, mode, use_scale, nans):
    rng = np.random.default_rng(seed)
    r = 2 if mode == "bilinear" else data.draw(st.integers(1, 3))
    sizes = [data.draw(st.integers(1, 5 if r == 3 else 8)) for _ in range(r)]
    x = randn(rng, data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), *sizes)
    if nans:
        x[rng.random(x.shape) < 0.1] = np.nan
    align = data.draw(st.sampled_from([None, False, True])) if mode == "bilinear" else None
    if use_scale:
        sf = [data.draw(st.sampled_from(SCALES)) for _ in range(r)]
        out = [math.floor(s * f) for s, f in zip(sizes, sf)]
        if min(out) < 1:
            return
        ref = F.interpolate(t(x), scale_factor=sf, mode=mode, align_corners=align)
    else:
        sf = None
        out = [data.draw(st.integers(1, 12)) for _ in range(r)]
        ref = F.interpolate(t(x), size=out, mode=mode, align_corners=align)
    ours = run("interpolate", x, size=out, scale_factor=sf, mode=mode, align_corners=align)
    assert_close(ours, ref)


SHORTCUT_CASES = [
    ((2, 3, 3), [1.2]), ((2, 3, 4), [2.2]), ((2, 3, 3, 3), [1.2, 1.2]),
    ((2, 3, 4, 5), [2.2, 2.1]), ((1, 2, 3, 1, 3), [1, 1, 1.2]), ((1, 2, 1, 1, 4), [1, 1, 2.2]),
    ((1, 2, 7, 9), [1.3, 0.6]),
]


@pytest.mark.parametrize("shape,sf,mode", [(s, f, "nearest") for s, f in SHORTCUT_CASES]
                         + [(s, f, "bilinear") for s, f in SHORTCUT_CASES if len(s) == 4])
def test_interpolate_scale_shortcuts(shape, sf, mode):
    """torch skips the formula when out == in (and nearest-2d when out == 2*in)."""
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = [math.floor(s * f) for s, f in zip(shape[2:], sf)]
    ours = run("interpolate", x, size=out, scale_factor=sf, mode=mode, align_corners=None)
    assert_close(ours, F.interpolate(t(x), scale_factor=sf, mode=mode))


def test_interpolate_errors():
    with pytest.raises(ValueError, match=r"floor\(4 \* scale_factor 2.0\) = 8"):
        OPS["interpolate"].infer((1, 3, 4, 4), size=[8, 9], scale_factor=[2.0, 2.0],
                                 mode="nearest", align_corners=None)
    with pytest.raises(ValueError, match="mode"):
        OPS["interpolate"].infer((1, 3, 4, 4), size=[8, 8], scale_factor=None,
                                 mode="bicubic", align_corners=None)
    with pytest.raises(ValueError, match="rank 4 to 4"):
        OPS["interpolate"].infer((1, 3, 4), size=[8], scale_factor=None,
                                 mode="bilinear", align_corners=None)
    with pytest.raises(ValueError, match="align_corners"):
        OPS["interpolate"].infer((1, 3, 4, 4), size=[8, 8], scale_factor=None,
                                 mode="nearest", align_corners=True)


# -- mean -----------------------------------------------------------------------------------

@FAST
@given(seed=seeds, rank=st.integers(1, 4), data=st.data(), keepdim=st.booleans())
def test_mean(seed, rank, data, keepdim):
    rng = np.random.default_rng(seed)
    x = randn(rng, *rng.integers(1, 5, size=rank))
    dims = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank,
                              unique=True))
    dims = [d - rank if data.draw(st.booleans()) else d for d in dims]
    assert_close(run("mean", x, dim=dims, keepdim=keepdim), t(x).mean(dims, keepdim=keepdim))


# -- shape inference with a symbolic batch --------------------------------------------------

def test_infer_symbolic_batch():
    conv = OPS["conv"].infer((None, 3, 224, 224), (64, 3, 7, 7), (64,), stride=[2, 2],
                             padding=[[3, 3], [3, 3]], dilation=[1, 1], groups=1,
                             activation={"op": "relu"})
    assert conv == (None, 64, 112, 112)
    assert OPS["conv"].macs([conv], (None, 3, 224, 224), (64, 3, 7, 7), (64,)) == \
        64 * 112 * 112 * 3 * 49
    assert OPS["max_pool"].infer(conv, kernel_size=[3, 3], stride=[2, 2], padding=[1, 1],
                                 dilation=[1, 1], ceil_mode=False) == (None, 64, 56, 56)
    assert OPS["adaptive_avg_pool"].infer((None, 512, 7, 7), output_size=[1, 1]) == \
        (None, 512, 1, 1)
    assert OPS["flatten"].infer((None, 512, 1, 1), start_dim=1, end_dim=-1) == (None, 512)
    assert OPS["linear"].infer((None, 512), (10, 512), None, activation=None) == (None, 10)
    assert OPS["linear"].macs([(None, 10)], (None, 512), (10, 512), None,
                              activation=None) == 5120
    assert OPS["reshape"].infer((None, 512, 1, 1), shape=[-1, 512]) == (None, 512)
    assert OPS["concat"].infer((None, 3, 4), (None, 5, 4), dim=1) == (None, 8, 4)
    assert OPS["split"].infer((None, 8, 4), split_size_or_sections=[3, 5], dim=1) == \
        [(None, 3, 4), (None, 5, 4)]
    assert OPS["mean"].infer((None, 8, 4, 4), dim=[2, 3], keepdim=False) == (None, 8)
    assert OPS["mean"].infer((None, 8, 4, 4), dim=[0], keepdim=True) == (1, 8, 4, 4)
    assert OPS["matmul"].infer((None, 4, 5), (5, 6)) == (None, 4, 6)
    assert OPS["interpolate"].infer((None, 8, 4, 4), size=[8, 8], scale_factor=[2.0, 2.0],
                                    mode="bilinear", align_corners=False) == (None, 8, 8, 8)
    assert OPS["conv_transpose"].infer((None, 8, 4, 4), (8, 4, 4, 4), None, stride=[2, 2],
                                       padding=[1, 1], output_padding=[0, 0],
                                       dilation=[1, 1], groups=1, activation=None) == \
        (None, 4, 8, 8)
    for bad in (lambda: OPS["flatten"].infer((None, 8), start_dim=0, end_dim=1),
                lambda: OPS["reshape"].infer((None, 8), shape=[4, 2]),
                lambda: OPS["reshape"].infer((None, 8), shape=[-1, 4]),
                lambda: OPS["concat"].infer((None, 3), (None, 3), dim=0),
                lambda: OPS["split"].infer((None, 3), split_size_or_sections=1, dim=0)):
        with pytest.raises(ValueError, match="symbolic"):
            bad()


# -- errors ---------------------------------------------------------------------------------

CONV_OK = dict(stride=[1, 1], padding=[[0, 0], [0, 0]], dilation=[1, 1], groups=1,
               activation=None)


def _conv(x, w, b=None, **over):
    return OPS["conv"].infer(x, w, b, **{**CONV_OK, **over})


@pytest.mark.parametrize("call,message", [
    (lambda: _conv((1, 3, 8, 8), (8, 8, 3, 3), groups=2),
     r"expected input with 16 channels \(weight has 8 per group x 2 groups\), got 3"),
    (lambda: _conv((1, 4, 8, 8), (6, 2, 3, 3), groups=4), "divisible by groups=4"),
    (lambda: _conv((1, 3, 8, 8), (8, 3, 3)), "weight must have rank 4"),
    (lambda: _conv((1, 3), (8, 3)), "rank 3 to 5"),
    (lambda: _conv((1, 3, 2, 8), (8, 3, 3, 3)), r"larger than the padded input \(2 \+ 0"),
    (lambda: _conv((1, 3, 8, 8), (8, 3, 3, 3), stride=[1]), "stride must have 2 entries"),
    (lambda: _conv((1, 3, 8, 8), (8, 3, 3, 3), stride=[0, 1]), "stride entries must be >= 1"),
    (lambda: _conv((1, 3, 8, 8), (8, 3, 3, 3), padding=[1, 1]), r"\[begin, end\]"),
    (lambda: _conv((1, 3, 8, 8), (8, 3, 3, 3), (7,)), r"bias must have shape \(8,\)"),
    (lambda: _conv((1, 3, 8, 8), (8, 3, 3, 3), activation={"op": "softmax"}), "not fusable"),
    (lambda: _conv((1, None, 8, 8), (8, 3, 3, 3)), "concrete"),
    (lambda: OPS["conv_transpose"].infer((1, 3, 4, 4), (4, 2, 3, 3), None, stride=[2, 2],
                                         padding=[0, 0], output_padding=[0, 0],
                                         dilation=[1, 1], groups=1, activation=None),
     r"expected input with 4 channels .*got 3"),
    (lambda: OPS["conv_transpose"].infer((1, 4, 4, 4), (4, 2, 3, 3), None, stride=[2, 2],
                                         padding=[0, 0], output_padding=[2, 0],
                                         dilation=[1, 1], groups=1, activation=None),
     "smaller than stride"),
    (lambda: OPS["max_pool"].infer((1, 3, 8, 8), kernel_size=[3, 3], stride=[1, 1],
                                   padding=[2, 2], dilation=[1, 1], ceil_mode=False),
     "at most half"),
    (lambda: OPS["max_pool"].infer((1, 3, 2, 2), kernel_size=[3, 3], stride=[1, 1],
                                   padding=[0, 0], dilation=[1, 1], ceil_mode=False),
     "larger than the padded input"),
    (lambda: OPS["avg_pool"].infer((1, 3, 8), kernel_size=[3, 3], stride=[1, 1],
                                   padding=[0, 0], ceil_mode=False, count_include_pad=True),
     "kernel_size must have 1 entries"),
    (lambda: OPS["adaptive_avg_pool"].infer((1, 3, 8), output_size=[2, 2]),
     "expects a rank-4 input"),
    (lambda: OPS["linear"].infer((2, 7), (10, 8), None, activation=None),
     r"expected input with 8 features.*got 7"),
    (lambda: OPS["batch_norm"].infer((1, 3, 4, 4), (4,), (3,), eps=1e-5),
     r"running_mean must have shape \(3,\)"),
    (lambda: OPS["layer_norm"].infer((2, 3, 4), None, None, normalized_shape=[3], eps=1e-5),
     "trailing dims"),
    (lambda: OPS["group_norm"].infer((1, 6, 4), None, None, num_groups=4, eps=1e-5),
     "divisible by num_groups=4"),
    (lambda: OPS["reshape"].infer((2, 3), shape=[4, -1]), "not divisible"),
    (lambda: OPS["reshape"].infer((2, 3), shape=[-1, -1]), "at most one -1"),
    (lambda: OPS["permute"].infer((2, 3), dims=[0, 0]), "permutation"),
    (lambda: OPS["concat"].infer((2, 3), (2, 4), dim=0), r"dim 1 must match \(3 vs 4\)"),
    (lambda: OPS["split"].infer((2, 6), split_size_or_sections=[2, 2], dim=1),
     "sum to 4 but the split dim has size 6"),
    (lambda: OPS["channel_shuffle"].infer((1, 6, 2, 2), groups=4), "divisible by groups=4"),
    (lambda: OPS["prelu"].infer((1, 6, 2, 2), (4,)), "1 or 6"),
    (lambda: OPS["softmax"].infer((2, 3), dim=2), "out of range"),
    (lambda: OPS["mean"].infer((2, 3), dim=[1, -1], keepdim=False), "twice"),
    (lambda: OPS["gelu"].infer((2, 3), approximate="erf"), "approximate"),
])
def test_bad_shapes_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_reference_rejects_bad_shapes_too():
    x, w = np.zeros((1, 3, 8, 8), np.float32), np.zeros((8, 8, 3, 3), np.float32)
    with pytest.raises(ValueError, match="expected input with 16 channels"):
        OPS["conv"].reference(x, w, None, **{**CONV_OK, "groups": 2})


def test_registry_integration():
    """Errors come back through OpDef.infer_shapes naming the node; split has 2 outputs."""
    from types import SimpleNamespace

    from engine.errors import GraphError
    node = SimpleNamespace(name="conv1", op="conv", inputs=["x", "w", ""], outputs=["y"],
                           attrs={**CONV_OK, "groups": 2})
    with pytest.raises(GraphError, match=r"node 'conv1' \(conv\): expected input with 16"):
        OPS["conv"].infer_shapes(node, [(1, 3, 8, 8), (8, 8, 3, 3), None])
    node = SimpleNamespace(name="s", op="split", inputs=["x"], outputs=["a", "b"],
                           attrs={"split_size_or_sections": 2, "dim": 1})
    assert OPS["split"].infer_shapes(node, [(None, 4, 3)]) == [(None, 2, 3), (None, 2, 3)]
    x = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    a, b = OPS["split"].run_reference(node, [x])
    np.testing.assert_array_equal(np.concatenate([a, b], axis=1), x)
