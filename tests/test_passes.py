"""Every optimisation pass leaves the model's outputs unchanged (reference backend).

Tolerance: 1e-5 relative to the output magnitude (folding changes rounding only).
"""

import numpy as np
import pytest
from hypothesis import given, strategies as st

import engine
from engine.passes import (fold_batchnorm, fold_constants, fuse_activation, fuse_residual,
                           optimize, remove_dead_code, remove_identity)
from graphs import random_model
from helpers import assert_close, rng_array


def outputs(model, x, optimized, **kw):
    m = optimize(model, **kw) if optimized else model
    return engine.Session(m, backend="reference", optimize_graph=False).run(x)


def check_same(model, x, tol=1e-5):
    for a, b in zip(outputs(model, x, True), outputs(model, x, False)):
        assert_close(a, b, tol)


def bn_params(rng, c):
    return dict(running_mean=rng_array(rng, c), running_var=rng.uniform(0.2, 2, c).astype(np.float32),
                weight=rng_array(rng, c), bias=rng_array(rng, c))


@given(st.integers(0, 2**31), st.sampled_from(["conv", "conv_transpose", "linear"]),
       st.sampled_from([1, 2]), st.booleans())
def test_fold_batchnorm_after_layer(seed, kind, groups, with_bias):
    rng = np.random.default_rng(seed)
    b = engine.Builder()
    cin, cout = 4, 6
    if kind == "linear":
        x = b.input("x", (None, 5))
        y = b.linear(x, rng_array(rng, (cout, 5)), rng_array(rng, cout) if with_bias else None)
        xs = (3, 5)
    elif kind == "conv":
        x = b.input("x", (None, cin, 7, 7))
        y = b.conv2d(x, rng_array(rng, (cout, cin // groups, 3, 3)),
                     rng_array(rng, cout) if with_bias else None, padding=1, groups=groups)
        xs = (2, cin, 7, 7)
    else:
        x = b.input("x", (None, cin, 5, 5))
        y = b.conv_transpose2d(x, rng_array(rng, (cin, cout // groups, 3, 3)),
                               rng_array(rng, cout) if with_bias else None, stride=2,
                               groups=groups)
        xs = (2, cin, 5, 5)
    y = b.batch_norm(y, **bn_params(rng, cout))
    b.output(y)
    m = b.build()
    opt = optimize(m)
    assert [n.op for n in opt.nodes] == [kind], "BatchNorm was not folded"
    check_same(m, rng_array(rng, xs))


@given(st.integers(0, 2**31), st.sampled_from([1, 2]))
def test_fold_batchnorm_before_unpadded_conv(seed, groups):
    rng = np.random.default_rng(seed)
    b = engine.Builder()
    x = b.input("x", (None, 4, 6, 6))
    y = b.batch_norm(x, **bn_params(rng, 4))
    y = b.conv2d(y, rng_array(rng, (6, 4 // groups, 3, 3)), rng_array(rng, 6), groups=groups)
    b.output(y)
    m = b.build()
    assert [n.op for n in optimize(m).nodes] == ["conv"]
    check_same(m, rng_array(rng, (2, 4, 6, 6)))


def test_batchnorm_before_padded_conv_is_not_folded():
    rng = np.random.default_rng(0)
    b = engine.Builder()
    x = b.input("x", (None, 3, 5, 5))
    y = b.batch_norm(x, **bn_params(rng, 3))
    b.output(b.conv2d(y, rng_array(rng, (2, 3, 3, 3)), padding=1))
    m = b.build()
    assert [n.op for n in optimize(m).nodes] == ["batch_norm", "conv"]
    check_same(m, rng_array(rng, (1, 3, 5, 5)))


def test_batchnorm_after_a_conv_with_a_fused_residual_is_not_folded_into_it():
    # pre-activation ResNets (timm's resnetv2): bn(conv(x) + shortcut) starts the next
    # block; the fused residual must not be scaled by the BatchNorm's weights
    rng = np.random.default_rng(0)
    b = engine.Builder()
    x = b.input("x", (None, 4, 5, 5))
    y = b.add(b.conv2d(x, rng_array(rng, (4, 4, 3, 3)), rng_array(rng, 4), padding=1), x)
    y = b.relu(b.batch_norm(y, **bn_params(rng, 4)))
    b.output(b.conv2d(y, rng_array(rng, (4, 4, 1, 1))))
    m = b.build()
    ops = [n.op for n in optimize(m).nodes]
    assert "batch_norm" in ops or ops.count("conv") == 2
    check_same(m, rng_array(rng, (2, 4, 5, 5)))


def test_batchnorm_with_two_readers_is_not_folded():
    rng = np.random.default_rng(1)
    b = engine.Builder()
    x = b.input("x", (None, 3, 5, 5))
    c = b.conv2d(x, rng_array(rng, (3, 3, 1, 1)))
    y = b.batch_norm(c, **bn_params(rng, 3))
    b.output(b.add(y, c))
    m = b.build()
    assert "batch_norm" in [n.op for n in optimize(m).nodes]
    check_same(m, rng_array(rng, (1, 3, 5, 5)))


ACTS = [("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.2}),
        ("clip", {"min": -0.5, "max": 0.7}), ("sigmoid", {}), ("tanh", {}), ("silu", {}),
        ("hardswish", {}), ("hardsigmoid", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}),
        ("elu", {"alpha": 0.5}), ("selu", {}), ("softplus", {"beta": 2.0, "threshold": 3.0}),
        ("mish", {})]


@pytest.mark.parametrize("act,kw", ACTS)
@pytest.mark.parametrize("kind", ["conv", "linear", "conv_transpose", "batch_norm"])
def test_fuse_activation(act, kw, kind):
    rng = np.random.default_rng(2)
    b = engine.Builder()
    if kind == "batch_norm":      # pre-activation blocks (DenseNet): after a concat
        x = b.input("x", (None, 3, 6, 6))
        y = b.batch_norm(b.concat([x, b.relu(x)], 1), **bn_params(rng, 6))
        xs = (2, 3, 6, 6)
    elif kind == "linear":
        x = b.input("x", (None, 8))
        y = b.linear(x, rng_array(rng, (5, 8)), rng_array(rng, 5))
        xs = (2, 8)
    elif kind == "conv":
        x = b.input("x", (None, 3, 6, 6))
        y = b.conv2d(x, rng_array(rng, (4, 3, 3, 3)), rng_array(rng, 4), padding=1)
        xs = (2, 3, 6, 6)
    else:
        x = b.input("x", (None, 3, 4, 4))
        y = b.conv_transpose2d(x, rng_array(rng, (3, 4, 2, 2)), rng_array(rng, 4), stride=2)
        xs = (2, 3, 4, 4)
    y = getattr(b, act)(y, **kw)
    b.output(y, "out")
    m = b.build()
    opt = optimize(m)
    layers = [n for n in opt.nodes if n.op == kind]
    assert len(opt.nodes) == (3 if kind == "batch_norm" else 1)
    assert len(layers) == 1 and layers[0].attrs["activation"]["op"] == act
    assert opt.outputs == ["out"]
    x = rng_array(rng, xs, 3.0)
    check_same(m, x)
    if kind == "batch_norm":     # the CPU kernel applies it too
        want = outputs(m, x, False)[0]
        assert_close(engine.Session(opt, optimize_graph=False).run(x)[0], want, 1e-5)


def test_batchnorm_with_activation_folds_after_a_layer_and_keeps_it():
    """A BatchNorm carrying a fused activation (a saved optimised model) folds into the conv
    before it, the activation moving to the conv; one in front of a conv is not folded
    into it (the activation sits between them)."""
    rng = np.random.default_rng(4)
    b = engine.Builder()
    x = b.input("x", (None, 4, 6, 6))
    y = b.relu(b.batch_norm(b.conv2d(x, rng_array(rng, (5, 4, 3, 3))), **bn_params(rng, 5)))
    y = b.relu(b.batch_norm(y, **bn_params(rng, 5)))
    b.output(b.conv2d(y, rng_array(rng, (3, 5, 1, 1))), "out")
    m = b.build()
    fused = m.copy()
    fuse_activation(fused)

    def ops():
        return [n.op for n in fused.nodes if n.op != "identity"]
    assert ops() == ["conv", "batch_norm", "batch_norm", "conv"]
    fold_batchnorm(fused)
    assert ops() == ["conv", "batch_norm", "conv"]
    assert fused.nodes[0].attrs["activation"]["op"] == "relu"
    assert fused.nodes[1].attrs["activation"]["op"] == "relu"
    x = rng_array(rng, (2, 4, 6, 6))
    want = outputs(m, x, False)[0]
    got = engine.Session(fused, backend="reference", optimize_graph=False).run(x)[0]
    assert_close(got, want, 1e-5)
    assert_close(engine.Session(fused, optimize_graph=False).run(x)[0], want, 1e-5)


def test_remove_dropout_and_identity_keeps_output_names():
    rng = np.random.default_rng(3)
    b = engine.Builder()
    x = b.input("x", (None, 4))
    y = b.dropout(b.linear(x, rng_array(rng, (3, 4))), 0.5)
    y = b.identity(y)
    b.output(y, "probs")
    m = b.build()
    opt = optimize(m)
    assert [n.op for n in opt.nodes] == ["linear"] and opt.outputs == ["probs"]
    check_same(m, rng_array(rng, (2, 4)))


def test_dropout_directly_on_input_stays():
    b = engine.Builder()
    x = b.input("x", (None, 4))
    b.output(b.dropout(x))
    m = b.build()
    opt = optimize(m)
    x = rng_array(np.random.default_rng(0), (2, 4))
    assert_close(engine.Session(opt, backend="reference").run(x)[0], x, 0)


def test_constant_folding_and_dead_code():
    rng = np.random.default_rng(4)
    b = engine.Builder()
    x = b.input("x", (None, 6))
    w = b.constant(rng_array(rng, (3, 2)))
    wt = b.reshape(b.permute(w, [1, 0]), [6])          # constant subgraph
    scale = b.add(b.mul(wt, 2.0), 1.0)
    unused = b.relu(x)                                   # dead
    del unused
    b.output(b.mul(x, scale))
    m = b.build()
    opt = optimize(m)
    assert [n.op for n in opt.nodes] == ["mul"]
    assert len(opt.constants) == 1
    check_same(m, rng_array(rng, (2, 6)))


def test_keep_protects_intermediate_values():
    rng = np.random.default_rng(5)
    b = engine.Builder()
    x = b.input("x", (None, 3, 5, 5))
    c = b.conv2d(x, rng_array(rng, (4, 3, 3, 3)), name="conv")
    y = b.relu(b.batch_norm(c, **bn_params(rng, 4), name="bn"))
    b.output(y)
    m = b.build()
    opt = optimize(m, keep={"conv"})
    assert "conv" in {o for n in opt.nodes for o in n.outputs}
    xs = rng_array(rng, (1, 3, 5, 5))
    ref = engine.Session(m, backend="reference", optimize_graph=False).run(xs, outputs=["conv"])
    got = engine.Session(m, backend="reference").run(xs, outputs=["conv"])
    assert_close(got[0], ref[0], 1e-6)


def test_passes_do_not_mutate_the_input_model():
    rng = np.random.default_rng(6)
    b = engine.Builder()
    x = b.input("x", (None, 3, 5, 5))
    y = b.relu(b.batch_norm(b.conv2d(x, rng_array(rng, (4, 3, 3, 3))), **bn_params(rng, 4)))
    b.output(y)
    m = b.build()
    before = ([n.to_dict() for n in m.nodes], {k: v.copy() for k, v in m.constants.items()})
    optimize(m)
    assert [n.to_dict() for n in m.nodes] == before[0]
    for k, v in before[1].items():
        assert np.array_equal(m.constants[k], v)


@pytest.mark.parametrize("pass_fn", [remove_identity, fold_constants, fold_batchnorm,
                                     fuse_residual, fuse_activation, remove_dead_code])
@given(seed=st.integers(0, 2**31))
def test_each_pass_alone_preserves_random_graphs(pass_fn, seed):
    rng = np.random.default_rng(seed)
    m, xs = random_model(rng, layers=12)
    opt = optimize(m, passes=(pass_fn,))
    x = rng_array(rng, xs)
    a = engine.Session(opt, backend="reference", optimize_graph=False).run(x)
    r = engine.Session(m, backend="reference", optimize_graph=False).run(x)
    for u, v in zip(a, r):
        assert_close(u, v, 1e-5)


# -- residual fusion ------------------------------------------------------------------------

def residual_block(rng, c=4, groups=1, act_first=False, shortcut_shape=None, swap=False,
                   keep_conv=False, conv_shortcut=True):
    """x -> conv -> bn -> (+ shortcut) -> relu, the shortcut being conv(x) or x itself."""
    b = engine.Builder()
    x = b.input("x", (None, c, 6, 7))
    sc = b.conv2d(x, rng_array(rng, (c, c, 1, 1), 0.5), name="shortcut") if conv_shortcut else x
    if shortcut_shape is not None:
        sc = b.adaptive_avg_pool2d(sc, shortcut_shape)
    y = b.conv2d(x, rng_array(rng, (c, c // groups, 3, 3), 0.5), rng_array(rng, c),
                 padding=1, groups=groups, name="main")
    y = b.batch_norm(y, **bn_params(rng, c))
    if act_first:
        y = b.relu(y)
    s = b.add(sc, y) if swap else b.add(y, sc)
    b.output(b.relu(s, name="out"))
    if keep_conv:
        b.output(y)
    return b.build(), (2, c, 6, 7)


@pytest.mark.parametrize("swap", [False, True])
def test_fuse_residual_absorbs_add_and_relu(swap):
    rng = np.random.default_rng(3)
    m, xs = residual_block(rng, swap=swap)
    opt = optimize(m)
    ops = [n.op for n in opt.nodes]
    assert ops.count("add") == 0 and ops.count("relu") == 0 and ops.count("batch_norm") == 0
    main = [n for n in opt.nodes if len(n.inputs) == 4]
    assert len(main) == 1 and main[0].attrs["activation"]["op"] == "relu"
    # the fused conv reads the shortcut, so it must come after the shortcut's producer
    order = [n.outputs[0] for n in opt.nodes]
    assert order.index(main[0].inputs[3]) < order.index(main[0].outputs[0])
    check_same(m, rng_array(rng, xs))
    x = rng_array(rng, xs)
    ref = engine.Session(m, backend="reference", optimize_graph=False).run(x)[0]
    for executor in ("native", "python"):
        got = engine.Session(m, threads=2, executor=executor).run(x)[0]
        assert_close(got, ref, 1e-5)


@pytest.mark.parametrize("case", ["act_first", "grouped", "broadcast", "conv_kept"])
def test_fuse_residual_leaves_other_patterns(case):
    rng = np.random.default_rng(4)
    kw = {"act_first": dict(act_first=True), "grouped": dict(groups=2),
          "broadcast": dict(shortcut_shape=(1, 1)), "conv_kept": dict(keep_conv=True)}[case]
    m, xs = residual_block(rng, conv_shortcut=False, **kw)
    opt = optimize(m)
    assert [n.op for n in opt.nodes].count("add") == 1
    assert all(len(n.inputs) <= 3 for n in opt.nodes if n.op == "conv")
    x = rng_array(rng, xs)
    ref = engine.Session(m, backend="reference", optimize_graph=False).run(x)
    for a, r in zip(engine.Session(m, threads=1).run(x), ref):
        assert_close(a, r, 1e-5)


def test_conv_residual_shape_is_checked():
    rng = np.random.default_rng(5)
    b = engine.Builder()
    x = b.input("x", (1, 4, 6, 7))
    b.input("r", (1, 4, 5, 7))
    b.output(b.conv2d(x, rng_array(rng, (4, 4, 3, 3)), padding=1))
    bad = b.build()
    bad.nodes[0].inputs += ["", "r"]
    with pytest.raises(engine.EngineError, match="residual"):
        bad.infer_shapes()
