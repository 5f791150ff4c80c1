"""Builder: PyTorch-style API, errors at the call that made them, naming the layer."""

import re

import numpy as np
import pytest

import engine


def test_errors_name_the_layer():
    b = engine.Builder()
    x = b.input("x", (None, 3, 8, 8))
    with pytest.raises(engine.GraphError, match=r"node 'stem' \(conv\).*channels"):
        b.conv2d(x, np.zeros((4, 5, 3, 3), np.float32), name="stem")
    with pytest.raises(engine.GraphError, match="add"):
        b.add(x, b.input("y", (None, 4, 8, 8)))


def test_padding_same_matches_input_size():
    b = engine.Builder()
    x = b.input("x", (None, 2, 9, 10))
    y = b.conv2d(x, np.zeros((3, 2, 4, 3), np.float32), padding="same", dilation=2)
    assert y.shape == (None, 3, 9, 10)
    with pytest.raises(engine.GraphError, match="stride 1"):
        b.conv2d(x, np.zeros((3, 2, 3, 3), np.float32), stride=2, padding="same")


def test_operators_and_names():
    b = engine.Builder()
    x = b.input("x", (None, 4))
    y = (x * 2.0 + 1.0) / x - x
    out = b.output(y, "out")
    m = b.build()
    assert m.outputs == ["out"] and out.name == "out"
    with pytest.raises(engine.GraphError, match="already used"):
        b.input("x", (None, 4))


def test_symbolic_batch_flows_through_shapes():
    b = engine.Builder()
    x = b.input("x", (None, 16, 5, 5))
    f = b.flatten(x, 1)
    assert f.shape == (None, 400)
    assert b.reshape(f, [-1, 16, 25]).shape == (None, 16, 25)
    y = b.linear(f, np.zeros((10, 400), np.float32))
    assert y.shape == (None, 10)


def test_build_validates_and_reports():
    b = engine.Builder()
    x = b.input("x", (None, 1, 4, 4))
    b.output(b.relu(x))
    m = b.build()
    assert "nodes=1" in repr(m)
    with pytest.raises(engine.GraphError, match="no outputs"):
        engine.Builder().build()


def test_edges_of_split_transpose_reshape_constant_and_adaptive_sizes():
    b = engine.Builder()
    x = b.input("x", (None, 4, 6, 8))
    # one piece is still a list, as torch.split gives a 1-tuple
    one = b.split(x, 8, dim=1, name="one")
    assert isinstance(one, list) and len(one) == 1 and one[0].shape == (None, 4, 6, 8)
    assert len(b.split(x, [4], dim=1, name="one_b")) == 1
    with pytest.raises(engine.GraphError, match="dim 5 is out of range for a tensor of rank 4"):
        b.transpose(x, 5, 1)
    assert b.transpose(x, -1, 1).shape == (None, 8, 6, 4)
    with pytest.raises(engine.GraphError, match="shape entries must be ints"):
        b.reshape(x, (None, -1))
    with pytest.raises(engine.GraphError, match="non-empty strings"):
        b.constant(np.zeros(3, np.float32), name="")
    # None in an adaptive pool's output size keeps that input dim, as in PyTorch
    assert b.adaptive_avg_pool2d(x, (None, 2)).shape == (None, 4, 6, 2)
    assert b.adaptive_max_pool2d(x, [3, None]).shape == (None, 4, 3, 8)
    with pytest.raises(engine.GraphError, match="output_size None"):
        b.adaptive_avg_pool2d(x, None)


EINSUMS = [  # (equation, shape a, shape b or None); None in a shape: the symbolic batch
    ("bhqd,bhkd->bhqk", (None, 3, 5, 4), (None, 3, 6, 4)),
    ("bhqk,bhkd->bhqd", (None, 3, 5, 6), (None, 3, 6, 4)),
    ("bchw,ck->bkhw", (None, 4, 3, 5), (4, 7)),
    ("nc,ck->nk", (None, 4), (4, 7)),
    ("nc,kc->nk", (None, 4), (7, 4)),
    ("bij,bjk->bik", (None, 3, 4), (None, 4, 5)),
    ("bhwc->bchw", (None, 3, 4, 5), None),
    ("bn,bn->b", (None, 6), (None, 6)),
    ("ij,jk", (3, 4), (4, 5)),
    ("bhwc,hkc->bhwk", (None, 3, 4, 5), (3, 6, 5)),
    ("bi,bj->bij", (None, 3), (None, 4)),
    ("kc,nc->nk", (7, 4), (None, 4)),
]


@pytest.mark.parametrize("eq, sa, sb", EINSUMS, ids=[e[0] for e in EINSUMS])
@pytest.mark.parametrize("batch", [1, 3])
def test_einsum_matches_numpy(eq, sa, sb, batch):
    rng = np.random.default_rng(0)
    b = engine.Builder()
    ops, feeds, args = [], {}, []
    for name, shape in (("a", sa), ("b", sb)):
        if shape is None:
            continue
        x = rng.standard_normal([batch if d is None else d for d in shape]).astype(np.float32)
        if None in shape:
            ops.append(b.input(name, shape))
            feeds[name] = x
        else:
            ops.append(x)                           # a weight: a constant
        args.append(x)
    b.output(b.einsum(eq, *ops, name="y"), "y")
    got = engine.Session(b.build(), threads=1).run(feeds)[0]
    want = np.einsum(eq, *[x.astype(np.float64) for x in args])
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("eq, shapes, says", [
    ("b...c,ck->b...k", [(None, 3, 4), (4, 5)], "'...' is not supported"),
    ("bii->bi", [(None, 3, 3)], "must name each of the 3 dims"),
    ("bij,bjk->bk", [(None, 3, 4), (None, 4, 5)], "summing over a dim of one operand alone"),
    ("bij->bi", [(None, 3, 4)], "sums over dims are not supported"),
    ("bi,bj,bk->bijk", [(None, 2), (None, 2), (None, 2)], "one or two operands"),
    ("bi,bi->", [(None, 3), (None, 3)], "the symbolic batch may be one output letter only"),
])
def test_einsum_refusals_name_the_reason(eq, shapes, says):
    b = engine.Builder()
    xs = [b.input(f"x{i}", s) for i, s in enumerate(shapes)]
    with pytest.raises(engine.GraphError, match=re.escape(says)):
        b.einsum(eq, *xs)


@pytest.mark.parametrize("pad", [(-1, 2), (1, -2, -1, 0), (-1, -1, -2, -1), (0, 0, -1, 0)])
def test_negative_pads_crop_as_in_pytorch(pad):
    b = engine.Builder()
    x = b.input("x", (None, 3, 6, 7))
    b.output(b.pad(x, list(pad), value=0.5, name="y"), "y")
    a = np.random.default_rng(0).standard_normal((2, 3, 6, 7)).astype(np.float32)
    got = engine.Session(b.build(), threads=1).run(a)[0]
    want = a
    for i in range(len(pad) // 2):                  # numpy: crop, then pad with 0.5
        d = 3 - i
        lo, hi = pad[2 * i], pad[2 * i + 1]
        want = np.take(want, range(max(0, -lo), want.shape[d] - max(0, -hi)), axis=d)
        width = [(0, 0)] * 4
        width[d] = (max(0, lo), max(0, hi))
        want = np.pad(want, width, constant_values=0.5)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shifts, dims", [(2, 1), ((-2, 3), (2, 3)), (7, -1), (0, 2)])
def test_roll_matches_numpy(shifts, dims):
    b = engine.Builder()
    x = b.input("x", (None, 3, 5, 6))
    b.output(b.roll(x, shifts, dims, name="y"), "y")
    a = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32)
    got = engine.Session(b.build(), threads=1).run(a)[0]
    np.testing.assert_array_equal(got, np.roll(a, shifts, dims))


def test_roll_and_crop_refusals():
    b = engine.Builder()
    x = b.input("x", (None, 3, 5))
    with pytest.raises(engine.GraphError, match="symbolic batch"):
        b.roll(x, 1, 0)
    with pytest.raises(engine.GraphError, match="out of range"):
        b.roll(x, 1, 3)
    with pytest.raises(engine.GraphError, match="cannot crop 3 \\+ 2 from dim 2"):
        b.pad(x, [-3, -2])
