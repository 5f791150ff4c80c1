"""The arena planner never lets two simultaneously live buffers share bytes, and the views
it plans (concat inputs in place, split pieces) give the reference results."""

from hypothesis import given, strategies as st

from engine.memory import ALIGN, Buffer, align, peak_live_bytes, plan_arena


@st.composite
def buffer_sets(draw):
    n = draw(st.integers(1, 40))
    bufs = []
    for i in range(n):
        first = draw(st.integers(-1, 30))
        last = first + draw(st.integers(0, 10))
        bufs.append(Buffer(f"b{i}", draw(st.integers(1, 5000)), first, last))
    return bufs


@given(buffer_sets())
def test_live_buffers_never_overlap(bufs):
    total = plan_arena(bufs)
    for i, a in enumerate(bufs):
        assert a.offset % ALIGN == 0
        assert a.offset + a.size <= total
        for b in bufs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    assert total >= peak_live_bytes(bufs)
    assert total <= sum(align(b.size) for b in bufs)


def test_chain_reuses_memory():
    # A chain a -> b -> c -> d: only two buffers are ever live at once.
    bufs = [Buffer(k, 1024, i, i + 1) for i, k in enumerate("abcd")]
    assert plan_arena(bufs) == 2 * 1024


# -- views in the CPU plans: results equal the reference backend ----------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import engine  # noqa: E402


def _views_model(kind):
    rng = np.random.default_rng(3)
    b = engine.Builder()
    x = b.input("x", (None, 4, 5, 5))
    conv = lambda t, c: b.relu(b.conv2d(t, rng.standard_normal((c, t.shape[1], 3, 3)).astype(  # noqa: E731
        np.float32), padding=1))
    if kind == "repeated":          # one input twice: placed once, copied once
        f = conv(x, 3)
        y = b.concat([f, conv(f, 2), f], dim=1)
    elif kind == "fan":             # the same value in several concats
        f = conv(x, 3)
        y = b.concat([b.concat([f, x], dim=1), b.concat([x, f], dim=1)], dim=1)
    elif kind == "dense":           # DenseNet block: nested concats become views
        feats = [x]
        for _ in range(3):
            cat = b.concat(feats, dim=1) if len(feats) > 1 else feats[0]
            feats.append(conv(cat, 2))
        y = b.concat(feats, dim=1)
    else:                           # split pieces as views, concatenated back in another order
        p, q = b.split(conv(x, 6), 3, dim=1)
        y = b.concat([q, b.relu(p), q], dim=1)
    b.output(y, "y")
    return b.build()


@pytest.mark.parametrize("kind", ["repeated", "fan", "dense", "split"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("threads", [1, 2])
def test_concat_and_split_views_match_the_reference(kind, batch, threads):
    m = _views_model(kind)
    x = np.random.default_rng(batch).standard_normal((batch, 4, 5, 5)).astype(np.float32)
    want = engine.Session(m, backend="reference").run(x)[0]
    got = engine.Session(m, threads=threads).run(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
