import os

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
