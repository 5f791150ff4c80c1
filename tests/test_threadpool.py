"""The kernels' thread pool (include/engine/ek_threadpool.h).

* The C check (tests/c/threadpool_check.c): every tile of random grids runs exactly once
  on a worker number no other running tile has, nested grids, several calling threads,
  pools put to sleep, fork, threads that exit; built plain and under ThreadSanitizer.
* From Python: every kernel module uses the one pool; results do not depend on the thread
  count; sessions run from several Python threads at once, and in a process forked from one
  whose pool has already started.
"""

import multiprocessing
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest

import engine
from engine import _kernels
from engine._kernels import executor

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
