"""Shared test helpers: tolerances relative to the output's magnitude, random models."""

import numpy as np

import engine


def rel_err(actual, expected):
    """max |actual - expected| / max(1, max |expected|), NaNs compared position-wise."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert (nan_a == nan_e).all(), "NaN positions differ"
    fin = ~nan_e
    if not fin.any():
        return 0.0
    inf = np.isinf(expected) & fin
    assert (actual[inf] == expected[inf]).all(), "infinities differ"
    ok = fin & ~inf
    if not ok.any():
        return 0.0
    scale = max(1.0, float(np.abs(expected[ok]).max()))
    return float(np.abs(actual[ok] - expected[ok]).max() / scale)


def assert_close(actual, expected, tol=1e-5):
    err = rel_err(actual, expected)
    assert err <= tol, f"relative error {err:.3g} > {tol:.1g}"


def rng_array(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def run_both(model, x, tol=1e-4, threads=1, **kw):
    """Run on the reference and cpu backends; assert they agree; return the cpu outputs."""
    ref = engine.Session(model, backend="reference", optimize_graph=False).run(x, **kw)
    cpu = engine.Session(model, backend="cpu", threads=threads).run(x, **kw)
    for r, c in zip(ref, cpu):
        assert_close(c, r, tol)
    return cpu
