"""The per-run thread count chooser (engine/runtime/threads.py), on simulated run times.

Each scenario gives the time a run takes at each thread count (with noise) and checks what
the chooser settles on, how fast it reacts when conditions change, and what its probes
cost.  Real runs at every count give the same results: tests/test_threadpool.py.
"""

import threading

import numpy as np
import pytest

from engine.runtime.threads import PROBE_BUDGET, ThreadChooser


def simulate(chooser, cost, runs, seed=0, noise=0.02):
    """Run the chooser `runs` times; cost(i, count) is the run's mean seconds.  Returns the
    counts picked and the seconds taken, per run."""
    rng = np.random.default_rng(seed)
    counts, seconds = [], []
    for i in range(runs):
        count = chooser.pick()
        assert 1 <= count <= chooser.threads
        t = cost(i, count) * float(rng.lognormal(0.0, noise))
        chooser.record(count, t)
        counts.append(count)
        seconds.append(t)
    return np.array(counts), np.array(seconds)


QUIET = {1: 19.5e-3, 2: 11.5e-3}          # ResNet-18 here: the second thread helps
BUSY = {1: 19.8e-3, 2: 23.0e-3}           # another process on one core: it hurts


def test_one_thread_never_probes():
    c = ThreadChooser(1)
    counts, _ = simulate(c, lambda i, n: 0.01, 50)
    assert (counts == 1).all()


def test_quiet_machine_keeps_every_thread_and_probes_cost_about_the_budget():
    c = ThreadChooser(2)
    counts, seconds = simulate(c, lambda i, n: QUIET[n], 2000)
    assert c.current == 2
    assert (counts == 2).mean() > 0.95
    ideal = QUIET[2] * len(seconds)
    assert seconds.sum() / ideal - 1 < 1.5 * PROBE_BUDGET


def test_busy_core_moves_to_fewer_threads_within_a_few_runs():
    c = ThreadChooser(2)
    counts, seconds = simulate(c, lambda i, n: BUSY[n], 400)
    assert c.current == 1
    assert (counts[10:] == 1).mean() > 0.9
    # the median run is the 1-thread run
    assert np.median(seconds) <= BUSY[1] * 1.03


def test_follows_a_busy_period_and_comes_back():
    start, end = 200, 600

    def cost(i, n):
        return BUSY[n] if start <= i < end else QUIET[n]

    c = ThreadChooser(2)
    counts, _ = simulate(c, cost, 1000)
    assert (counts[start - 50:start] == 2).mean() > 0.9
    # a few runs after the other process starts: one thread
    assert (counts[start + 10:end] == 1).mean() > 0.9
    # back to two threads soon after it stops (probes are spaced by what they cost)
    assert (counts[end + 40:] == 2).mean() > 0.9


def test_more_threads_settle_on_the_best_count():
    # 4 threads asked for, 3 cores free: the fourth thread costs more than it gives
    times = {1: 40e-3, 2: 21e-3, 3: 15e-3, 4: 24e-3}
    c = ThreadChooser(4)
    counts, _ = simulate(c, lambda i, n: times[n], 300)
    assert c.current == 3
    assert (counts[-100:] == 3).mean() > 0.85


def test_a_noisy_probe_does_not_stick():
    # a probe that happened to be fast is corrected once the new count's runs are slow
    c = ThreadChooser(2)
    rng = np.random.default_rng(5)

    def cost(i, n):       # two threads: bimodal, 11 ms or 30 ms (median 30); one: 19.8 ms
        if n == 1:
            return 19.8e-3
        return 11e-3 if rng.random() < 0.3 else 30e-3

    counts, seconds = simulate(c, cost, 600)
    assert (counts[50:] == 1).mean() > 0.8
    assert np.median(seconds[50:]) <= 19.8e-3 * 1.05


def test_first_run_is_not_counted():
    c = ThreadChooser(2)
    n = c.pick()
    c.record(n, 10.0)                # cold caches, page faults
    for _ in range(20):
        n = c.pick()
        c.record(n, QUIET[n])
    assert c.current == 2 and c.state()["time_ms"] < 12


@pytest.mark.parametrize("threads", [2, 4])
def test_shared_between_python_threads(threads):
    c = ThreadChooser(threads)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(500):
                n = c.pick()
                assert 1 <= n <= threads
                c.record(n, 0.01 / n * float(rng.lognormal(0, 0.1)))
        except Exception as e:                  # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[0]
    assert 1 <= c.current <= threads and c.probing in (None, *range(1, threads + 1))
