"""The kernels' thread pool (include/engine/ek_threadpool.h).

* The C check (tests/c/threadpool_check.c): every tile of random grids runs exactly once
  on a worker number no other running tile has, nested grids, several calling threads,
  pools put to sleep, fork, threads that exit; built plain and under ThreadSanitizer.
* From Python: every kernel module uses the one pool; results do not depend on the thread
  count; sessions run from several Python threads at once, and in a process forked from one
  whose pool has already started.
* A run capped to fewer threads than its calls ask for (what engine.runtime.threads does
  while fewer threads are faster): the kernels tile for the threads they get, within the
  workspace sized for the count asked for, and give the same results; at every ISA level.
"""

import multiprocessing
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import _kernels
from engine._kernels import conv as kconv
from engine._kernels import executor
from engine._kernels import gemm as kgemm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "c", "threadpool_check.c")


def _build_and_run(tmp_path, extra, env=None):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "threadpool_check"
    r = subprocess.run([cc, "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", *extra,
                        "-I", os.path.join(ROOT, "include"), SRC, "-o", str(exe)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 and extra and "sanitize" in " ".join(extra):
        pytest.skip(f"the compiler cannot build with {extra}: {r.stdout[-300:]}")
    assert r.returncode == 0, r.stdout
    r = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=300, env=dict(os.environ, **(env or {})))
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout[-4000:]


def test_pool_in_c(tmp_path):
    _build_and_run(tmp_path, [])


def test_pool_in_c_under_thread_sanitizer(tmp_path):
    # (ThreadSanitizer cannot follow fork: that check is left to the plain build)
    _build_and_run(tmp_path, ["-fsanitize=thread"],
                   {"THREADPOOL_NO_FORK": "1", "TSAN_OPTIONS": "halt_on_error=1"})


def test_the_kernels_run_on_the_pool():
    assert executor.threads_backend() == "pthreads"
    assert executor.threads_enabled()
    assert _kernels.threads_enabled()
    assert _kernels.build_config()["threads"] == "pthreads"


def _model():
    b = engine.Builder()
    x = b.input("x", (None, 3, 20, 20))
    rng = np.random.default_rng(0)
    h = b.conv2d(x, rng.standard_normal((16, 3, 3, 3)).astype(np.float32), padding=1)
    h = b.relu(h)
    h = b.conv2d(h, rng.standard_normal((16, 1, 3, 3)).astype(np.float32), padding=1,
                 groups=16)
    h = b.max_pool2d(h, 2)
    h = b.conv2d(h, rng.standard_normal((32, 16, 1, 1)).astype(np.float32))
    b.output(b.adaptive_avg_pool2d(h, 1), "y")
    return b.build()


def test_results_do_not_depend_on_threads():
    m = _model()
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 20)).astype(np.float32)
    ref = engine.Session(m, threads=1).run(x)
    for t in (2, 3, 5):
        np.testing.assert_array_equal(engine.Session(m, threads=t).run(x), ref)


def test_sessions_from_several_python_threads():
    m = _model()
    s = engine.Session(m, threads=2)
    xs = [np.random.default_rng(i).standard_normal((1, 3, 20, 20)).astype(np.float32)
          for i in range(6)]
    refs = [engine.Session(m, threads=1).run(x) for x in xs]
    errors = []

    def work(i):
        try:
            for _ in range(20):
                np.testing.assert_array_equal(s.run(xs[i]), refs[i])
        except Exception as e:                          # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a session run hung"
    assert not errors, errors[0]


def _run_in_child(q):
    m = _model()
    x = np.ones((1, 3, 20, 20), np.float32)
    q.put(engine.Session(m, threads=2).run(x))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_gets_a_new_pool():
    m = _model()
    x = np.ones((1, 3, 20, 20), np.float32)
    ref = engine.Session(m, threads=2).run(x)            # this process's pool is running
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_run_in_child, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join(60)
    assert p.exitcode == 0
    np.testing.assert_array_equal(got, ref)


# -- a run capped to fewer threads (engine.runtime.threads) ------------------------------

@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(n=st.integers(1, 2), cin=st.integers(1, 48), cout=st.integers(1, 48),
       h=st.integers(3, 30), w=st.integers(3, 30), tile=st.sampled_from([2, 4, 6]),
       threads=st.integers(2, 5), seed=st.integers(0, 2**31))
def test_capped_winograd_fits_its_workspace_and_gives_the_same_results(
        isa, n, cin, cout, h, w, tile, threads, seed):
    """The workspace of a call asking for `threads` covers the tiling of every smaller count
    (NaN-filled, exactly that size: AddressSanitizer sees any overrun); the cap changes
    nothing in the output."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    wt = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    ys = (n, cout, h, w)
    wp = kconv.winograd_pack(wt, tile)
    outs = {}
    for cap in range(threads, 0, -1):
        y = np.full(ys, np.nan, np.float32)
        work = np.full(kconv.winograd_workspace(x.shape, wt.shape, ys, tile, threads),
                       np.nan, np.float32)
        previous = executor.set_thread_cap(cap)
        try:
            kconv.conv2d_winograd(x, wp, None, y, [1, 1], work=work, nthreads=threads)
        finally:
            executor.set_thread_cap(previous)
        outs[cap] = y
    for cap in outs:
        np.testing.assert_array_equal(outs[cap], outs[threads], err_msg=f"cap {cap}")


@pytest.mark.parametrize("shape", [(64, 3136, 576), (2048, 49, 512), (29, 2000, 700),
                                   (7, 300, 90)])
def test_capped_gemm_fits_its_workspace_and_gives_the_same_results(isa, shape):
    M, N, K = shape
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    threads = 4
    outs = {}
    for cap in (4, 3, 2, 1):
        c = np.full((M, N), np.nan, np.float32)
        work = np.full(kgemm.gemm_workspace(M, N, K, False, threads), np.nan, np.float32)
        previous = executor.set_thread_cap(cap)
        try:
            kgemm.sgemm(a, b, c, work=work, nthreads=threads)
        finally:
            executor.set_thread_cap(previous)
        outs[cap] = c
    for cap in outs:
        np.testing.assert_array_equal(outs[cap], outs[4], err_msg=f"cap {cap}")


def test_an_adaptive_session_gives_the_results_of_a_fixed_one(isa):
    """Sessions choosing their thread count per run (the default) agree with fixed ones,
    at every count the chooser may pick."""
    m = _model()
    x = np.random.default_rng(3).standard_normal((2, 3, 20, 20)).astype(np.float32)
    ref = engine.Session(m, threads=1, isa=isa).run(x)
    s = engine.Session(m, threads=3, isa=isa)
    plan = None
    for _ in range(3):
        np.testing.assert_array_equal(s.run(x), ref)
        plan = plan or next(iter(s._plans.values()))
    for count in (1, 2, 3):      # steer the chooser to each count in turn
        plan.chooser.current = count
        np.testing.assert_array_equal(s.run(x), ref)
    fixed = engine.Session(m, threads=3, adapt_threads=False, isa=isa)
    np.testing.assert_array_equal(fixed.run(x), ref)
    assert next(iter(fixed._plans.values())).chooser is None
    assert executor.set_thread_cap(0) == 0          # a run leaves no cap behind
