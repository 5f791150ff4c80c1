"""tools/fuzz.py: the model-file fuzzer's classifier, its corpus, and a fixed-seed slice.

The slice (FUZZ_SLICE_CASES cases of seed FUZZ_SLICE_SEED over 2 workers) is the CI part
of "a hostile model file must never crash or hang the process": every mutated file must
load and run, or be refused with an engine.EngineError.  The long run is
``python tools/fuzz.py --cases 100000 --seed 7 --jobs 2`` (plain and under sanitizer builds,
see the docstring of tools/fuzz.py).
"""

import importlib.util
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLICE_SEED = int(os.environ.get("FUZZ_SLICE_SEED", "20240601"))
SLICE_CASES = int(os.environ.get("FUZZ_SLICE_CASES", "300"))


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("engine_fuzz_tool",
                                                  os.path.join(ROOT, "tools", "fuzz.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _load_fuzz()


@pytest.fixture(scope="module")
def seeds():
    return fuzz.build_seeds()


# -- the classifier, on injected payloads (not engine bugs) -----------------------------------

@pytest.fixture(scope="module")
def payload_results(tmp_path_factory):
    cfg = fuzz.Config(timeout=3.0 if not fuzz.detect_sanitizer() else 10.0,
                      memory_limit=2 * fuzz.GiB, rss_limit=40 * fuzz.MiB)
    names = ["ok", "abort", "ok", "segfault", "exit", "sleep", "exception", "engine_error",
             "memory", "rss:80", "sanitizer_report", "stdout_noise", "ok"]
    res = fuzz.run_payloads(names, cfg, str(tmp_path_factory.mktemp("payloads")))
    return dict(zip(range(len(names)), zip(names, res)))


def _result(payload_results, name, nth=0):
    found = [r for n, r in payload_results.values() if n == name]
    return found[nth]


def test_ok_payload(payload_results):
    assert _result(payload_results, "ok")["class"] == "ok"


SANITIZER = fuzz.detect_sanitizer()      # tools/asan.sh runs this file with one preloaded


@pytest.mark.parametrize("name,signal_name", [("abort", "SIGABRT"), ("segfault", "SIGSEGV")])
def test_crash_is_detected(payload_results, name, signal_name):
    r = _result(payload_results, name)
    assert r["class"] == "crash"
    if SANITIZER:
        return        # the sanitizer's handler reports and aborts instead of faulthandler
    assert signal_name in r["message"]
    # faulthandler's traceback points at the crashing Python line
    assert "_inject" in r["origin"]


def test_exit_without_result_is_a_crash(payload_results):
    r = _result(payload_results, "exit")
    assert r["class"] == "crash" and "status 3" in r["message"]


def test_worker_restarts_after_a_crash(payload_results):
    # the "ok" after "abort" ran in a fresh worker
    assert _result(payload_results, "ok", 1)["class"] == "ok"
    assert _result(payload_results, "ok", 2)["class"] == "ok"


def test_hang_is_detected(payload_results):
    r = _result(payload_results, "sleep")
    assert r["class"] == "hang"
    assert r["elapsed"] < 20
    assert "_inject" in r["stderr"]          # the traceback dumped before the kill


def test_other_exception_is_detected(payload_results):
    r = _result(payload_results, "exception")
    assert r["class"] == "other_exception"
    assert r["exc_type"] == "KeyError"
    assert "Traceback" in r["traceback"] and "_inject" in r["origin"]


def test_engine_error_is_clean(payload_results):
    r = _result(payload_results, "engine_error")
    assert r["class"] == "engine_error" and r["exc_type"] == "GraphError"


def test_memory_error_is_detected(payload_results):
    r = _result(payload_results, "memory")
    assert r["class"] == "memory" and r["exc_type"] == "MemoryError"


def test_peak_rss_above_the_limit_is_memory(payload_results):
    r = _result(payload_results, "rss:80")
    if "peak_rss_delta" not in r:
        pytest.skip("/proc/self/clear_refs is not available here")
    assert r["class"] == "memory" and "peak RSS" in r["message"]


def test_sanitizer_report_is_a_crash(payload_results):
    r = _result(payload_results, "sanitizer_report")
    assert r["class"] == "crash" and "sanitizer" in r["message"]


def test_stdout_noise_does_not_break_the_protocol(payload_results):
    assert _result(payload_results, "stdout_noise")["class"] == "ok"


# -- corpus and mutations ---------------------------------------------------------------------

def test_seeds_load_and_run(seeds, tmp_path):
    assert len(seeds) >= 7
    ops = set()
    for name, data in seeds:
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        cls, info = fuzz.classify_call(lambda: fuzz.execute(str(path), fuzz.DEFAULT_CAP))
        assert cls == "ok", (name, info)
        ops |= {n["op"] for n in fuzz.Doc(data).graph["nodes"]}
    # the corpus covers the op families
    for op in ("conv", "conv_transpose", "max_pool", "avg_pool", "min_pool",
               "adaptive_avg_pool", "adaptive_max_pool", "batch_norm", "linear", "interpolate",
               "pad", "concat", "reshape", "flatten", "softmax", "add", "mul", "sub", "div",
               "matmul", "split", "permute", "group_norm", "layer_norm", "channel_shuffle"):
        assert op in ops, op


def test_cases_are_deterministic(seeds):
    for i in (0, 1, 17, 123):
        assert fuzz.make_case(5, i, seeds) == fuzz.make_case(5, i, seeds)
    assert fuzz.make_case(5, 1, seeds)[3] != fuzz.make_case(6, 1, seeds)[3]


@pytest.mark.parametrize("kind", fuzz.KINDS)
def test_every_kind_mutates(seeds, kind):
    originals = {data for _, data in seeds}
    changed = 0
    for i in range(20):
        k, seed_name, desc, data = fuzz.make_case(3, i, seeds, kinds=(kind,))
        assert k == kind and desc
        changed += data not in originals
    assert changed >= 15


def test_replay(tmp_path, seeds, capsys):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(seeds[0][1][:100])
    assert fuzz.replay(str(path), memory_limit=0) == "engine_error"
    path.write_bytes(seeds[1][1])
    assert fuzz.replay(str(path), memory_limit=0) == "ok"
    assert "class: ok" in capsys.readouterr().out


# -- the fixed-seed slice ---------------------------------------------------------------------

def test_fixed_seed_slice(tmp_path, seeds):
    """FUZZ_SLICE_CASES / FUZZ_SLICE_SEED / FUZZ_OUT make this the long run too, e.g. under
    ASan: FUZZ_SLICE_CASES=100000 FUZZ_OUT=/tmp/engine-fuzz/asan bash tools/asan.sh
    tests/test_fuzz.py -k slice (the workers inherit the preloaded sanitizer)."""
    out = os.environ.get("FUZZ_OUT") or str(tmp_path / "out")
    # A hang is a case that never ends; 30 s leaves room for the graph-size cases (tens of
    # thousands of nodes, prepared at two batch sizes) on a busy 2-core CI machine, and
    # under a preloaded sanitizer (tools/asan.sh) the slower kernels get its own timeout.
    timeout = fuzz.SANITIZER_TIMEOUT if fuzz.detect_sanitizer(os.environ) else 30.0
    c = fuzz.Campaign(SLICE_SEED, SLICE_CASES, 2, out, fuzz.Config(timeout=timeout),
                      progress=False, seeds=seeds).run()
    totals = c.totals()
    assert sum(totals.values()) == SLICE_CASES
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["totals"] == dict(totals)
    assert c.bad_count() == 0, c.report()


@pytest.mark.skipif(not os.environ.get("FUZZ_ASAN_ROOT"),
                    reason="set FUZZ_ASAN_ROOT to a tree built with -fsanitize=address")
def test_asan_worker_reports_heap_overflow(tmp_path):
    """The sanitizer pipeline end to end: libasan preloaded, a heap overflow aborts the
    worker and the report names it."""
    cfg = fuzz.Config(timeout=10.0, sanitizer="asan", engine_root=os.environ["FUZZ_ASAN_ROOT"])
    ok, bad, mem = fuzz.run_payloads(["ok", "heap_overflow", "memory"], cfg, str(tmp_path))
    assert ok["class"] == "ok"
    assert bad["class"] == "crash" and "heap-buffer-overflow" in bad["origin"]
    assert mem["class"] == "memory"
