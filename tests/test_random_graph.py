"""Random CNN-shaped graphs give the same outputs on the reference and CPU backends.

Tolerance: 1e-4 relative to the output magnitude (float32 accumulation order differs).
"""

import numpy as np
from hypothesis import given, settings, strategies as st

from graphs import random_model
from helpers import rng_array, run_both


@settings(max_examples=40)
@given(st.integers(0, 2**31), st.sampled_from([1, 2]))
def test_random_20_layer_graph_cpu_matches_reference(seed, threads):
    rng = np.random.default_rng(seed)
    model, shape = random_model(rng, layers=20)
    run_both(model, rng_array(rng, shape), tol=1e-4, threads=threads)
