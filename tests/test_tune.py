"""tune=True: every candidate kernel of a layer is timed once, the fastest kept and cached.

Timings decide which variant wins, so the tests check what does not depend on them: the
choice is one of the layer's candidates, results equal the reference (tolerance 1e-4
relative to the output magnitude: Winograd and im2col round differently), the cache file is
written, reused without timing, and survives corruption and stale entries.
"""

import json

import numpy as np

import engine
from engine.runtime.tune import Tuner, candidates
from helpers import assert_close, rng_array


def three_by_three_model(rng):
    b = engine.Builder()
    x = b.input("x", (None, 16, 12, 12))
    t = b.relu(b.conv2d(x, rng_array(rng, (24, 16, 3, 3), 0.2), rng_array(rng, 24),
                        padding=1, name="c1"))
    t = b.conv2d(t, rng_array(rng, (16, 24, 3, 3), 0.2), padding=1, name="c2")
    b.output(b.add(t, x))
    return b.build()


def test_tune_picks_a_candidate_and_caches_it(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.safetensors"
    engine.save(three_by_three_model(rng), path)
    sess = engine.Session(path, threads=1, tune=True)
    x = rng_array(rng, (1, 16, 12, 12))
    ref = engine.Session(path, backend="reference").run(x)[0]
    assert_close(sess.run(x)[0], ref, 1e-4)
    assert sess.tuner.timed >= 2                      # both 3x3 convs had candidates
    for key, times in sess.tuner.report.items():
        assert len(times) >= 2 and sess.tuner.choices[key] == min(times, key=times.get)
    cache = json.loads((tmp_path / "m.safetensors.tune.json").read_text())
    assert cache["choices"] == sess.tuner.choices
    plan = sess.prepare(1)
    conv_variants = {s.node.name: s.variant for s in plan.steps if s.node.op == "conv"}
    assert set(conv_variants.values()) <= set(cache["choices"].values())

    again = engine.Session(path, threads=1, tune=True)
    again.prepare(1)
    assert again.tuner.timed == 0
    assert {s.node.name: s.variant for s in again.prepare(1).steps
            if s.node.op == "conv"} == conv_variants


def test_candidates_include_every_eligible_variant():
    rng = np.random.default_rng(1)
    m = engine.passes.optimize(three_by_three_model(rng))
    sess = engine.Session(m, threads=1, optimize_graph=False)
    plan = sess.prepare(1)
    from engine.backends.base import PrepareContext
    conv = next(n for n in m.nodes if n.name == "c1" or n.op == "conv")
    shapes = {k: v.shape for k, v in m.infer_shapes({"x": (1, 16, 12, 12)}).items()}
    ctx = PrepareContext([shapes[i] if i else None for i in conv.inputs],
                         [shapes[o] for o in conv.outputs],
                         [m.constants.get(i) if i else None for i in conv.inputs], 1, "cpu")
    variants = [s.variant for s in candidates(conv, ctx)]
    assert "im2col_gemm" in variants and any(v.startswith("winograd") for v in variants)
    assert plan.steps[0].variant in variants


def test_corrupt_or_stale_cache_is_ignored(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "m.safetensors"
    engine.save(three_by_three_model(rng), path)
    cache = tmp_path / "m.safetensors.tune.json"
    cache.write_text("{not json")
    sess = engine.Session(path, threads=1, tune=True)
    sess.prepare(1)
    assert sess.tuner.timed >= 2 and json.loads(cache.read_text())["version"] == 1
    stale = {"version": 1, "choices": {k: "no_such_kernel" for k in sess.tuner.choices}}
    cache.write_text(json.dumps(stale))
    t = Tuner(str(cache))
    assert t.choices == stale["choices"]
    sess2 = engine.Session(path, threads=1, tune=True)
    sess2.prepare(1)
    assert sess2.tuner.timed >= 2                     # stale entries re-timed


def test_tune_without_a_path_keeps_choices_in_memory():
    rng = np.random.default_rng(3)
    sess = engine.Session(three_by_three_model(rng), threads=1, tune=True)
    sess.prepare(1)
    assert sess.tuner.path is None and sess.tuner.choices
