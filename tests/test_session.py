"""Session API: input forms, output forms, bad input, NaN/Inf, batches, memory, threads."""

import threading

import numpy as np
import pytest

import engine
from helpers import assert_close, rng_array


def mid_model(rng, c=8):
    """A small VGG/ResNet-like net: enough layers for the memory plan to matter."""
    b = engine.Builder()
    x = b.input("image", (None, 3, 32, 32))
    t = x
    for i, cout in enumerate([c, c, 2 * c, 2 * c, 4 * c]):
        y = b.conv2d(t, rng_array(rng, (cout, t.shape[1], 3, 3), 0.2), rng_array(rng, cout),
                     padding=1, name=f"conv{i}")
        y = b.batch_norm(y, rng_array(rng, cout), rng.uniform(.5, 2, cout).astype(np.float32),
                         rng_array(rng, cout), rng_array(rng, cout))
        y = b.relu(y)
        if y.shape == t.shape:
            y = b.add(y, t)
        t = b.max_pool2d(y, 2) if i % 2 else y
    f = b.flatten(b.adaptive_avg_pool2d(t, 1), 1, name="features")
    b.output(b.linear(f, rng_array(rng, (10, 4 * c)), rng_array(rng, 10)), "logits")
    return b.build()


@pytest.fixture(scope="module")
def model():
    return mid_model(np.random.default_rng(0))


def test_input_forms_agree(model):
    x = rng_array(np.random.default_rng(1), (2, 3, 32, 32))
    s = engine.Session(model, threads=1)
    a = s.run(x)[0]
    assert_close(s.run([x])[0], a, 0)
    assert_close(s({"image": x})[0], a, 0)
    d = s.run({"image": x}, return_dict=True)
    assert list(d) == ["logits"] and d["logits"].shape == (2, 10)


def test_cpu_matches_reference_and_batches_are_independent(model):
    rng = np.random.default_rng(2)
    x = rng_array(rng, (3, 3, 32, 32))
    s = engine.Session(model, threads=2)
    ref = engine.Session(model, backend="reference", optimize_graph=False).run(x)[0]
    out = s.run(x)[0]
    assert_close(out, ref, 1e-4)
    for i in range(3):                      # batch 1 gives the same rows (new plan per shape)
        assert_close(s.run(x[i:i + 1])[0], out[i:i + 1], 1e-5)


def test_outputs_are_copies_not_arena_views(model):
    s = engine.Session(model, threads=1)
    rng = np.random.default_rng(3)
    a = s.run(rng_array(rng, (1, 3, 32, 32)))[0]
    keep = a.copy()
    s.run(rng_array(rng, (1, 3, 32, 32)))
    assert np.array_equal(a, keep)


def test_intermediate_outputs(model):
    x = rng_array(np.random.default_rng(4), (2, 3, 32, 32))
    s = engine.Session(model, threads=1)
    feats, logits = s.run(x, outputs=["features", "logits"])
    assert feats.shape == (2, 32)
    ref = engine.Session(model, backend="reference", optimize_graph=False)
    assert_close(feats, ref.run(x, outputs=["features"])[0], 1e-4)
    assert_close(logits, s.run(x)[0], 1e-6)
    with pytest.raises(engine.InputError, match="unknown output"):
        s.run(x, outputs=["nope"])


def test_memory_plan_reuses_buffers(model):
    mem = engine.Session(model, threads=1).memory_report(batch_size=4)
    assert mem.activation_bytes <= 0.6 * mem.sum_activation_bytes
    assert mem.activation_bytes >= mem.peak_live_bytes
    assert mem.arena_bytes <= mem.activation_bytes + mem.workspace_bytes + 64 * len(model.nodes)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((1, 3, 32, 32), np.float64), "dtype float32"),
    (np.zeros((1, 3, 32, 32), np.int32), "dtype float32"),
    (np.zeros((3, 32, 32), np.float32), r"expected shape \('N', 3, 32, 32\)"),
    (np.zeros((1, 4, 32, 32), np.float32), "expected shape"),
    (np.zeros((1, 3, 31, 32), np.float32), "expected shape"),
    (np.zeros((0, 3, 32, 32), np.float32), "empty"),
    ([[1.0]], "numpy.ndarray"),
])
def test_bad_inputs_raise_clear_errors(model, bad, match):
    with pytest.raises(engine.InputError, match=match):
        engine.Session(model, threads=1).run(bad)


def test_deep_network_needs_a_fraction_of_the_naive_memory():
    rng = np.random.default_rng(9)
    b = engine.Builder()
    t = b.input("x", (None, 8, 16, 16))
    for i in range(16):                      # residual stages: every block output is kept
        y = b.relu(b.conv2d(t, rng_array(rng, (8, 8, 3, 3), 0.1), padding=1))
        t = b.add(t, b.conv2d(y, rng_array(rng, (8, 8, 3, 3), 0.1), padding=1))
    b.output(t)
    mem = engine.Session(b.build(), threads=1).memory_report(batch_size=2)
    assert mem.activation_bytes <= 0.1 * mem.sum_activation_bytes
    assert mem.activation_bytes <= 1.25 * mem.peak_live_bytes


def test_wrong_input_names(model):
    s = engine.Session(model, threads=1)
    with pytest.raises(engine.InputError, match="missing"):
        s.run({"x": np.zeros((1, 3, 32, 32), np.float32)})
    with pytest.raises(engine.InputError, match="takes 1 input"):
        s.run([np.zeros((1, 3, 32, 32), np.float32)] * 2)


def test_non_contiguous_input_is_accepted(model):
    x = rng_array(np.random.default_rng(5), (2, 3, 32, 64))[..., ::2]
    s = engine.Session(model, threads=1)
    assert_close(s.run(x)[0], s.run(np.ascontiguousarray(x))[0], 0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_nan_and_inf_propagate(model, backend):
    x = rng_array(np.random.default_rng(6), (2, 3, 32, 32))
    x[0, 0, 5, 5] = np.nan
    x[1, 1, 7, 7] = np.inf
    out = engine.Session(model, threads=1, backend=backend, allow_nonfinite=True).run(x)[0]
    assert np.isnan(out[0]).any()          # NaN reaches the logits of sample 0
    assert not np.isfinite(out[1]).all()   # Inf (or inf - inf = NaN) reaches sample 1


def test_concurrent_python_threads_share_a_session(model):
    rng = np.random.default_rng(7)
    xs = [rng_array(rng, (1, 3, 32, 32)) for _ in range(6)]
    s = engine.Session(model, threads=1)
    expected = [s.run(x)[0] for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(5):
            results[i] = s.run(xs[i])[0]

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r, e in zip(results, expected):
        assert np.array_equal(r, e)


def test_session_from_path_and_bad_arguments(model, tmp_path):
    p = tmp_path / "m.safetensors"
    engine.save(model, p)
    s = engine.Session(str(p), threads=1)
    assert s.input_names == ["image"] and s.output_names == ["logits"]
    with pytest.raises(engine.UnsupportedError, match="unknown backend"):
        engine.Session(model, backend="tpu")
    with pytest.raises(ValueError, match="threads"):
        engine.Session(model, threads=0)


def test_plan_lists_every_kernel(model):
    plan = engine.Session(model, threads=1).plan()
    ops = [row.op for row in plan]
    assert "batch_norm" not in ops and "relu" not in ops      # folded and fused
    assert ops.count("conv+relu") == 5
    assert all(row.layout == "nchw" and row.executor == "native" for row in plan)
    assert abs(sum(row.share for row in plan) - 1) < 1e-6
    assert all(row.seconds > 0 for row in plan)
    convs = [row for row in plan if row.op.startswith("conv")]
    assert all(row.macs > 0 and row.gflops > 0 for row in convs)
    untimed = engine.Session(model, threads=1).plan(timed=False)
    assert [r.variant for r in untimed] == [r.variant for r in plan]
    assert all(r.seconds is None and r.share is None for r in untimed)


def test_default_threads_is_physical_cores():
    from engine.config import physical_cores
    s = engine.Session(mid_model(np.random.default_rng(0), c=2))
    assert s.threads == physical_cores() >= 1


def test_huge_activation_needs_are_a_clean_error():
    b = engine.Builder()
    x = b.input("x", (None, 1, 1, 1))
    # Refused while the graph is built (engine.limits), before any plan allocates.
    with pytest.raises(engine.GraphError, match="GiB"):
        b.output(b.interpolate(x, size=(300000, 300000)))


def test_plan_cache_is_bounded(model):
    from engine.runtime.session import MAX_PLANS
    s = engine.Session(model, threads=1)
    for n in range(1, MAX_PLANS + 3):
        s.run(np.zeros((n, 3, 32, 32), np.float32))
    assert len(s._plans) == MAX_PLANS


# -- pickling: the model and the options travel, the prepared plans do not ---------------------

def _run_pickled(blob, x):
    import pickle
    return pickle.loads(blob).run(x)[0]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_pickled_session_runs_anew_with_the_same_options(model, backend, tmp_path):
    import pickle
    x = rng_array(np.random.default_rng(3), (2, 3, 32, 32))
    s = engine.Session(model, threads=2, backend=backend, max_concurrent=3,
                       adapt_threads=False, executor="python")
    want = s.run(x)[0]
    back = pickle.loads(pickle.dumps(s))
    assert back is not s and back.threads == 2 and back.max_concurrent == 3
    assert back.adapt_threads is False and back.executor == "python"
    assert back.backend == backend and not back._plans          # prepared anew
    np.testing.assert_array_equal(back.run(x)[0], want)
    # a session made from a file carries the model itself: the file may be gone
    path = tmp_path / "m.safetensors"
    engine.save(model, path)
    blob = pickle.dumps(engine.Session(str(path), threads=1, backend=backend))
    path.unlink()
    np.testing.assert_array_equal(pickle.loads(blob).run(x)[0], want)


def test_pickled_session_keeps_an_unset_isa_and_threads_unset():
    import pickle
    b = engine.Builder()
    x = b.input("x", (None, 4))
    b.output(b.relu(x))
    back = pickle.loads(pickle.dumps(engine.Session(b.build(), isa="scalar")))
    assert back.isa == "scalar" and back._options["threads"] is None
    assert pickle.loads(pickle.dumps(engine.Session(b.build())))._options["isa"] is None


def test_a_session_ships_to_worker_processes(model):
    """What multiprocessing / Dask / Ray do: the session pickled to a fresh (spawned)
    interpreter runs there and gives the same result."""
    import multiprocessing
    import pickle
    x = rng_array(np.random.default_rng(4), (1, 3, 32, 32))
    s = engine.Session(model, threads=1)
    want = s.run(x)[0]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(_run_pickled, (pickle.dumps(s), x))
    np.testing.assert_array_equal(got, want)


def test_nonfinite_inputs_are_refused_unless_allowed():
    import engine.zoo
    from engine.runtime.session import nonfinite_count
    m = engine.zoo.get("lenet5")
    x = np.zeros((2, 1, 32, 32), np.float32)
    assert engine.Session(m).run(x)[0].shape == (2, 10)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 0, 3, 4] = bad
        assert nonfinite_count(y) == 1
        with pytest.raises(engine.InputError, match=r"1 NaN / Inf value\(s\), the first at "
                                                    r"index \(1, 0, 3, 4\)"):
            engine.Session(m).run(y)
        out = engine.Session(m, allow_nonfinite=True).run(y)[0]
        assert np.isfinite(out[0]).all() and not np.isfinite(out[1]).all()
    big = np.full((1, 1, 32, 32), 3e38, np.float32)      # finite, however large
    assert nonfinite_count(big) == 0
    with pytest.raises(engine.ArgumentError, match="allow_nonfinite"):
        engine.Session(m, allow_nonfinite="yes")


def test_run_takes_any_mapping_of_inputs():
    import types
    b = engine.Builder()
    x = b.input("x", (None, 3))
    b.output(b.relu(x), "y")
    sess = engine.Session(b.build(), threads=1)
    a = np.array([[-1.0, 0.5, 2.0]], np.float32)
    got = sess.run(types.MappingProxyType({"x": a}))[0]
    np.testing.assert_array_equal(got, np.maximum(a, 0))
