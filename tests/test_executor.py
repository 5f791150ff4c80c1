"""The nogil executor: prebound kernel calls run as one program, equal to the Python path.

The native and Python executors call the same C kernels with the same arguments, so their
outputs must be bitwise identical; both are checked against the reference elsewhere
(test_random_graph.py).  Also: concurrent runs of one session, per-step profiling, and the
bounds checks of the strided-copy kernel that concat / split / permute / shuffle use.
"""

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import engine
import engine.zoo
from engine._kernels import executor, spatial
from engine.backends.base import NativeKernel
from graphs import random_model
from helpers import assert_close, rng_array


@settings(max_examples=30)
@given(st.integers(0, 2**31), st.sampled_from([1, 2]), st.sampled_from([1, 3]))
def test_native_executor_equals_python_executor(seed, threads, batch):
    rng = np.random.default_rng(seed)
    model, shape = random_model(rng, layers=16)
    x = rng_array(rng, (batch,) + tuple(shape[1:]))
    native = engine.Session(model, threads=threads)
    python = engine.Session(model, threads=threads, executor="python")
    for a, b in zip(native.run(x), python.run(x)):
        assert np.array_equal(a, b, equal_nan=True)
    # everything but NumPy fallbacks runs inside programs
    plan = native.prepare(batch)
    for s in plan.steps:
        if isinstance(s.kernel, NativeKernel) and s.node.op != "batch_norm":
            assert s.native, s.node


def test_zoo_model_runs_as_one_program():
    model = engine.zoo.get("resnet18", num_classes=10, input_size=(3, 64, 64))
    sess = engine.Session(model, threads=2)
    plan = sess.prepare(1)
    assert plan.segments == [(0, len(plan.steps), "native")]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = engine.Session(model, backend="reference").run(x)[0]
    assert_close(sess.run(x)[0], ref, 1e-4)


def test_concurrent_runs_use_separate_instances():
    model = engine.zoo.get("resnet18", num_classes=10, input_size=(3, 48, 48))
    sess = engine.Session(model, threads=1, max_concurrent=3)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 3, 48, 48)).astype(np.float32) for _ in range(6)]
    expected = [sess.run(x)[0] for x in xs]
    results, errors = {}, []

    def worker(i):
        try:
            for _ in range(5):
                results[i] = sess.run(xs[i])[0]
                assert np.array_equal(results[i], expected[i])
        except BaseException as e:       # pragma: no cover - reported below
            errors.append(e)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
    plan = sess.prepare(1)
    assert 1 <= plan._count <= 3


def test_profile_times_every_step():
    model = engine.zoo.get("mobilenet_v2", num_classes=10, input_size=(3, 32, 32))
    sess = engine.Session(model, threads=1)
    plan = sess.prepare(1)
    x = np.zeros((1, 3, 32, 32), np.float32)
    t = plan.profile({"input": x} if "input" in sess.input_names else
                     {sess.input_names[0]: x}, repeat=2)
    assert list(t) == [s.node.name for s in plan.steps]
    assert all(v >= 0 for v in t.values()) and sum(t.values()) > 0


def test_program_rejects_non_steps():
    with pytest.raises(TypeError, match="engine.step"):
        executor.Program([object()])
    assert len(executor.Program([])) == 0
    executor.Program([]).run()


def test_bound_step_equals_direct_call():
    rng = np.random.default_rng(2)
    x = rng_array(rng, (2, 3, 4, 5))
    y1, y2 = np.empty((2, 5, 3, 4), np.float32), np.empty((2, 5, 3, 4), np.float32)
    perm_strides = [60, 1, 20, 5]                    # out[n, w, c, h] = x[n, c, h, w]
    spatial.copy_strided(x, y1, y1.shape, perm_strides, [60, 12, 4, 1])
    step = spatial.copy_strided(x, y2, y2.shape, perm_strides, [60, 12, 4, 1], bind=True)
    assert executor.is_step(step)
    executor.Program([step], keep=(x, y2)).run()
    assert np.array_equal(y1, y2) and np.array_equal(y1, x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("kw,match", [
    (dict(shape=[2, 3], src_strides=[3, 1], dst_strides=[4, 1]), "writes up to"),
    (dict(shape=[2, 4], src_strides=[4, 1], dst_strides=[3, 1]), "reads up to"),
    (dict(shape=[2, 3], src_strides=[3, 1], dst_strides=[3, 1], dst_offset=1), "writes up to"),
    (dict(shape=[2, 3], src_strides=[-1, 1], dst_strides=[3, 1]), ">= 0"),
    (dict(shape=[1] * 7, src_strides=[1] * 7, dst_strides=[1] * 7), "1 to 6"),
])
def test_strided_copy_checks_bounds(kw, match):
    src, dst = np.zeros(6, np.float32), np.zeros(6, np.float32)
    shape = kw.pop("shape")
    with pytest.raises(ValueError, match=match):
        spatial.copy_strided(src, dst, shape, kw.pop("src_strides"), kw.pop("dst_strides"), **kw)
    with pytest.raises(ValueError, match="overlap"):
        spatial.copy_strided(src, src, [6], [1], [1])


def test_concat_inputs_are_written_in_place_at_batch_1():
    """Inception-style branches write straight into the concatenated buffer (no concat
    step) when the concat dim is the outermost non-unit one; otherwise a copy runs."""
    rng = np.random.default_rng(7)
    b = engine.Builder()
    x = b.input("x", (None, 3, 9, 9))
    branches = [b.relu(b.conv2d(x, rng.standard_normal((c, 3, 3, 3)).astype(np.float32),
                                padding=1)) for c in (4, 5, 6)]
    pooled = b.max_pool2d(x, 3, stride=1, padding=1)          # also a concat input
    cat = b.concat(branches + [pooled], dim=1)
    b.output(b.conv2d(cat, rng.standard_normal((2, 18, 1, 1)).astype(np.float32)))
    b.output(branches[0], name="first_branch")                # a kept value inside the concat
    model = b.build()
    sess = engine.Session(model, threads=1)
    for batch, copies in ((1, 0), (2, 1)):
        plan = sess.prepare(batch)
        assert [s.node.op for s in plan.steps].count("concat") == copies
        xv = rng.standard_normal((batch, 3, 9, 9)).astype(np.float32)
        ref = engine.Session(model, backend="reference").run(xv)
        for a, r in zip(sess.run(xv), ref):
            assert np.abs(a - r).max() <= 1e-5 * max(1, np.abs(r).max())
