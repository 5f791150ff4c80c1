import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# One profile for everyone: no deadlines (a 2-core CI box is noisy), modest example counts.
settings.register_profile(
    "default", deadline=None, max_examples=50, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _isas():
    try:
        from engine import _kernels
    except ImportError:                  # kernels not built: the tests that need them skip
        return []
    return _kernels.available_isas()


@pytest.fixture(params=_isas(), ids=lambda i: f"isa={i}")
def isa(request):
    """The test at every instruction-set level this machine runs (the fast paths differ):
    every kernel module switched in-process, kernels prepared inside the test bound to it.
    A module runs all its tests this way with ``pytestmark = pytest.mark.usefixtures("isa")``."""
    from engine import _kernels
    prev = _kernels.set_isa(request.param)
    yield request.param
    _kernels.set_isa(prev)


def pytest_terminal_summary(terminalreporter):
    """Tables that tests collect for the reader (test_onnx_import: which ONNX backend cases
    passed and why the others are unsupported)."""
    import sys
    mod = sys.modules.get("test_onnx_import")
    for line in (mod.results_table() if mod is not None else []):
        terminalreporter.write_line(line)


# -- many inputs: a folder of photos and a small classifier (test_cli, test_ray) --------

@pytest.fixture
def photo_dir(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(
            d / f"img{i:02d}.png")
    np.save(d / "z_sample.npy", rng.standard_normal((3, 32, 32)).astype(np.float32))
    np.save(d / "z_two.npy", rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    (d / "broken.jpg").write_bytes(b"not an image at all")
    (d / "notes.md").write_text("ignored: not an input extension")
    return d


@pytest.fixture
def small_model(tmp_path):
    """The path of a 3x32x32 classifier with labels and a stored preprocessing."""
    import engine
    rng = np.random.default_rng(1)
    b = engine.Builder()
    x = b.input("x", (None, 3, 32, 32))
    y = b.relu(b.conv2d(x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
                        stride=2, padding=1))
    y = b.linear(b.flatten(b.global_avg_pool(y), 1), rng.standard_normal((5, 4)).astype(
        np.float32))
    b.output(y, "logits")
    m = b.build({"labels": ["a", "b", "c", "d", "e"],
                 "preprocessing": {"input_size": [32, 32], "resize_shorter": 36}})
    path = tmp_path / "small.safetensors"
    engine.save(m, str(path))
    return str(path)
