"""The CUDA backend (engine/backends/cuda), in four layers, so most of it runs without a GPU.

1. Sources: every .cu file compiles to PTX with ``nvcc`` (skipped when nvcc is not on the
   PATH) for the oldest architecture this nvcc supports, Jetson Orin (sm_87) and Hopper; and
   with NVRTC exactly as the backend compiles it at run time (skipped without NVRTC).
2. No GPU: the messages when CuPy, a driver or a GPU is missing, every unsupported node
   listed at once, the CPU engine never importing CuPy.
3. Host planning (pure Python): kernel choice per node, launch configurations, kernel
   argument types, GEMM parameters, zero-copy concat placement, memory plan, 64-bit sizes.
4. Execution against the NumPy references / the CPU backend, on every available "device":
   - ``emulator``: ENGINE_CUDA_EMULATE=1 runs the same device programs on the CPU (the .cu
     kernels compiled as C++ with a shim, GEMMs with cuBLAS's column-major contract in
     NumPy), with tiny grids (grid-stride loops must not depend on the grid) and a tiny
     workspace (chunked paths run); needs a C++ compiler;
   - ``gpu``: a real GPU through CuPy (skipped cleanly when there is none), plus the
     GPU-only checks: DLPack / __cuda_array_interface__ inputs, device outputs, CUDA-graph
     replay equal to eager runs, no allocation per run.

Tolerances (max|cuda - ref| relative to max(1, max|ref|)): GEMM-based ops (conv,
conv_transpose, linear, matmul) and normalisations 1e-4; everything else 1e-5; data
movement exact.  NaN positions and infinities must match.

On a GPU machine:  pip install -e ".[cuda,test]" && python -m pytest -q tests/test_cuda.py
(HYPOTHESIS_PROFILE=thorough for more random cases).
"""

import importlib
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import engine
import engine.zoo as zoo
from engine.errors import InputError, UnsupportedError
from engine.ir import Model, Node, Value
from engine.ops import OPS
from engine.ops.activation import FUSABLE
from helpers import rel_err

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KDIR = os.path.join(ROOT, "engine", "backends", "cuda", "kernels")
CU_FILES = sorted(f for f in os.listdir(KDIR) if f.endswith(".cu"))
PKG = "engine.backends.cuda"


def _gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU = _gpu_available()
HAVE_CXX = any(shutil.which(c) for c in ("g++", "clang++", "c++")) and sys.platform != "win32"
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA GPU (needs CuPy and a visible GPU)")
DEVICES = (["emulator"] if HAVE_CXX else []) + (["gpu"] if GPU else [])


def _fresh_import(monkeypatch):
    """Import the backend package anew (drop cached modules; monkeypatch restores them)."""
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        monkeypatch.delitem(sys.modules, name)
    return importlib.import_module(PKG)


@pytest.fixture
def cu(monkeypatch):
    """The backend package in emulation mode (pure planning needs no GPU either)."""
    monkeypatch.setenv("ENGINE_CUDA_EMULATE", "1")
    return importlib.import_module(PKG)


@pytest.fixture(params=DEVICES or ["none"])
def device(request, monkeypatch):
    """Run on the emulator and, where there is one, on the GPU."""
    if request.param == "none":
        pytest.skip("neither a C++ compiler (emulator) nor a GPU")
    if request.param == "emulator":
        monkeypatch.setenv("ENGINE_CUDA_EMULATE", "1")
    else:
        monkeypatch.delenv("ENGINE_CUDA_EMULATE", raising=False)
    importlib.import_module(PKG)
    return request.param


# == 1. sources ==================================================================================

def _nvcc_archs():
    try:
        out = subprocess.run(["nvcc", "--list-gpu-arch"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=60).stdout
    except Exception:
        return ["compute_75"]
    have = re.findall(r"compute_(\d+)", out)
    nums = sorted({int(a) for a in have})
    if not nums:
        return ["compute_75"]
    wanted = {nums[0]} | {a for a in (72, 87, 90) if a in nums}   # oldest, Jetson, Hopper
    return [f"compute_{a}" for a in sorted(wanted)]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on the PATH")
@pytest.mark.parametrize("cu_file", CU_FILES)
def test_cu_sources_compile_with_nvcc(cu_file, tmp_path):
    procs = []
    for arch in _nvcc_archs():                  # the architectures in parallel
        out = tmp_path / f"{cu_file}.{arch}.ptx"
        procs.append((arch, out, subprocess.Popen(
            ["nvcc", "-ptx", f"-arch={arch}", "-std=c++14", "-I", KDIR, "-Werror",
             "all-warnings", os.path.join(KDIR, cu_file), "-o", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for arch, out, p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"nvcc {arch} {cu_file}:\n{err}"
        assert out.stat().st_size > 0


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception:
        return None


@pytest.mark.skipif(_nvrtc() is None, reason="NVRTC (CuPy's) not available")
def test_cu_sources_compile_with_nvrtc_as_at_run_time(cu):
    nvrtc = _nvrtc()
    from engine.backends.cuda.sources import NVRTC_OPTIONS, module_names, source
    archs = [a for a in (75, 87, 90) if a in set(getattr(nvrtc, "getSupportedArchs",
                                                         lambda: (75, 87, 90))())]
    for mod in module_names():
        for arch in archs[:2]:
            prog = nvrtc.createProgram(source(mod + ".cu"), mod + ".cu", [], [])
            try:
                nvrtc.compileProgram(prog, [f"--gpu-architecture=compute_{arch}",
                                            *NVRTC_OPTIONS])
            except Exception as e:
                pytest.fail(f"NVRTC {mod}.cu compute_{arch}: {e}\n{nvrtc.getProgramLog(prog)}")
            assert len(nvrtc.getPTX(prog)) > 0


def test_sources_parse_and_ship(cu):
    from engine.backends.cuda import sources
    sigs = sources.signatures()
    assert len(sigs) >= 20
    for name, (mod, params) in sigs.items():
        assert name.startswith("ek_") and mod + ".cu" in CU_FILES
        assert all(kind in ("ptr", "i32", "i64", "f32") for _, kind in params)
    text = sources.source("conv.cu")
    assert "#include" not in text and "EK_COMMON_CUH" in text      # inlined for NVRTC
    setup = open(os.path.join(ROOT, "setup.py")).read()
    assert "backends/cuda/kernels/*.cu" in setup and '"cuda": [' in setup


# == 2. without a GPU: clear errors ==============================================================

def _model():
    b = engine.Builder()
    x = b.input("x", (None, 3, 8, 8))
    y = b.relu(b.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1))
    b.output(y, "y")
    return b.build()


def test_missing_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ENGINE_CUDA_EMULATE", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)              # import cupy -> ImportError
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(UnsupportedError) as e:
        engine.Session(_model(), backend="cuda")
    msg = str(e.value)
    assert "backend 'cuda' is not available" in msg and "CuPy is not installed" in msg
    assert "pip install 'engine[cuda]'" in msg and "cupy-cuda13x" in msg
    assert "compiled extensions" not in msg                     # that hint is the cpu's


@pytest.mark.parametrize("count,match", [(RuntimeError("cudaErrorNoDevice: no CUDA-capable "
                                                       "device is detected"),
                                          "no CUDA GPU is usable: cudaErrorNoDevice"),
                                         (0, "no CUDA GPU is visible")])
def test_missing_gpu_is_a_clear_error(monkeypatch, count, match):
    monkeypatch.delenv("ENGINE_CUDA_EMULATE", raising=False)
    fake = types.ModuleType("cupy")
    fake.__version__ = "99.0"

    def get_count():
        if isinstance(count, Exception):
            raise count
        return count
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(UnsupportedError, match=match):
        engine.Session(_model(), backend="cuda", device=0)


def test_cpu_engine_never_imports_cupy():
    code = ("import sys, numpy as np, engine\n"
            "b = engine.Builder(); x = b.input('x', (None, 2)); b.output(b.relu(x), 'y')\n"
            "engine.Session(b.build()).run(np.ones((1, 2), np.float32))\n"
            "assert 'cupy' not in sys.modules, 'cupy imported'\n"
            "assert 'engine.backends.cuda' not in sys.modules\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ENGINE_CUDA_EMULATE", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_every_registry_op_has_a_cuda_kernel(cu):
    from engine.backends.base import kernels_for
    from engine.backends.cuda.kernels import missing_ops
    assert missing_ops() == []
    assert set(kernels_for("cuda")) == set(OPS)


def test_unsupported_nodes_are_listed_at_once(cu, monkeypatch):
    from engine.backends.base import KERNELS
    monkeypatch.delitem(KERNELS, ("cuda", "local_response_norm"))
    monkeypatch.delitem(KERNELS, ("cuda", "channel_shuffle"))
    b = engine.Builder()
    x = b.input("x", (None, 4, 6, 6))
    y = b.local_response_norm(x, 3)
    y = b.channel_shuffle(y, 2)
    y = b.local_response_norm(y, 3)
    b.output(b.relu(y), "y")
    with pytest.raises(UnsupportedError) as e:
        engine.Session(b.build(), backend="cuda").run(np.ones((1, 4, 6, 6), np.float32))
    msg = str(e.value)
    assert "cannot run 3 node(s)" in msg
    assert "ops without a CUDA kernel yet: channel_shuffle, local_response_norm" in msg


def test_bad_device_and_inputs(cu):
    s = engine.Session(_model(), backend="cuda")
    with pytest.raises(InputError, match="numpy.ndarray"):
        s.run([[1.0]])
    with pytest.raises(ValueError, match="GPU backends only"):
        engine.Session(_model(), backend="cpu", device=0)


# == 3. host planning (pure Python) ==============================================================

def test_launch_configuration_math(cu):
    from engine.backends.cuda.program import GRID_Y_MAX, Target, grid_1d, grid_2d, grid_rows
    t = Target(sm_count=132, max_blocks=132 * 32)
    assert grid_1d(1, t) == (1, 1) and grid_1d(256, t) == (1, 1) and grid_1d(257, t) == (2, 1)
    assert grid_1d(10**12, t) == (132 * 32, 1)                 # capped: grid-stride loops
    assert grid_rows(7, t) == (7, 1) and grid_rows(10**9, t) == (132 * 32, 1)
    gx, gy = grid_2d(12544, 10**7, t)
    assert gx == 49 and 1 <= gy <= GRID_Y_MAX and gx * gy <= 4 * t.max_blocks
    assert grid_2d(1, 1, t) == (1, 1)


def test_launch_arguments_are_checked_against_the_kernel_signature(cu):
    from engine.backends.cuda.program import Launch, Ptr, check_launch, i32, i64, f32
    p = Ptr("arena")
    ok = Launch("ek_unary", (1, 1), 256, (p, p, i64(10), i32(1), f32(0), f32(0)))
    check_launch(ok)
    with pytest.raises(TypeError, match="argument 2 must be i64"):
        check_launch(Launch("ek_unary", (1, 1), 256, (p, p, 10, i32(1), f32(0), f32(0))))
    with pytest.raises(TypeError, match="takes 6 arguments"):
        check_launch(Launch("ek_unary", (1, 1), 256, (p, p)))
    with pytest.raises(ValueError, match="launch configuration"):
        check_launch(Launch("ek_unary", (1, 70000), 256, ok.args))
    with pytest.raises(UnsupportedError):
        i32(2**31)


def test_gemm_parameters_are_checked(cu):
    from engine.backends.cuda.program import Gemm, Ptr, check_gemm
    p = Ptr("arena")
    check_gemm(Gemm(False, False, 4, 3, 2, p, 4, p, 2, p, 4))
    check_gemm(Gemm(True, False, 4, 3, 2, p, 2, p, 2, p, 4))
    with pytest.raises(ValueError, match="leading"):
        check_gemm(Gemm(True, False, 4, 3, 2, p, 1, p, 2, p, 4))    # lda < k for op T
    with pytest.raises(UnsupportedError, match="int32"):
        check_gemm(Gemm(False, False, 2**31, 1, 1, p, 2**31, p, 1, p, 2**31))


def test_broadcast_plan(cu):
    from engine.backends.cuda.kernels import broadcast_plan
    assert broadcast_plan((2, 3, 4), (2, 3, 4), (2, 3, 4)) == ([24], [1], [1])
    assert broadcast_plan((2, 3, 4), (3, 1), (2, 3, 4)) == ([2, 3, 4], [12, 4, 1], [0, 1, 0])
    assert broadcast_plan((), (5,), (5,)) == ([5], [0], [1])
    assert broadcast_plan((1,), (), (1,)) == ([1], [0], [0])


def test_kernel_choice_per_node(cu):
    rng = np.random.default_rng(0)
    b = engine.Builder()
    x = b.input("x", (None, 64, 10, 10))
    r = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)  # noqa: E731
    a = b.conv2d(x, r(64, 64, 3, 3), r(64), padding=1)                  # winograd
    a = b.conv2d(a, r(64, 1, 3, 3), padding=1, groups=64)               # depthwise
    a = b.conv2d(a, r(32, 64, 1, 1))                                     # pointwise
    a = b.conv2d(a, r(32, 32, 3, 3), stride=2, padding=1)                # im2col
    a = b.conv2d(a, r(10, 32, 5, 5))                                     # whole window
    b.output(a, "y")
    s = engine.Session(b.build(), backend="cuda")
    assert [row.variant for row in s.plan(1, timed=False)] == ["winograd_f2x3",
                                                               "depthwise_direct",
                                                               "pointwise_gemm", "im2col_gemm",
                                                               "whole_window"]


def _densenet_block(batch_dims=None):
    b = engine.Builder()
    x = b.input("x", (batch_dims, 4, 5, 5))
    feats = [x]
    rng = np.random.default_rng(1)
    for i in range(3):
        cat = b.concat(feats, dim=1) if len(feats) > 1 else feats[0]
        f = b.relu(b.conv2d(cat, rng.standard_normal((2, cat.shape[1], 3, 3)).astype(
            np.float32), padding=1))
        feats.append(f)
    b.output(b.concat(feats, dim=1), "y")
    return b.build()


def test_concat_without_copies_at_batch_1(cu):
    from engine.backends.cuda.planner import build_program
    m = engine.passes.optimize(_densenet_block())
    prog = build_program(m, {"x": (1, 4, 5, 5)})
    concats = [s for s in prog.steps if s.node.op == "concat"]
    assert concats and all(s.variant == "in_place" and not s.records for s in concats)
    # every feature map lies in the block output: one buffer, no copy records at all
    assert not any(type(r).__name__ == "Copy" for r in prog.records())
    prog2 = build_program(m, {"x": (2, 4, 5, 5)})                     # batch 2: copies
    assert all(s.variant == "copy" and s.records for s in prog2.steps if s.node.op == "concat")


def test_split_views_and_duplicate_concat_inputs(cu):
    from engine.backends.cuda.planner import build_program
    b = engine.Builder()
    x = b.input("x", (None, 4, 3, 3))
    p, q = b.split(x, 2, dim=1)
    y = b.concat([p, b.relu(q), p], dim=1)          # p twice: the second occurrence copies
    b.output(y, "y")
    prog = build_program(b.build(), {"x": (1, 4, 3, 3)})
    kinds = {s.node.op: s.variant for s in prog.steps}
    assert kinds["concat"] == "partial_copy" and kinds["split"] in ("partial_copy", "in_place")


def test_memory_plan_and_64bit_sizes(cu):
    """Planning alone (no execution): a conv whose output has more than 2^31 elements gets
    64-bit element counts, GEMMs stay within int32, offsets beyond 4 GiB are fine."""
    from engine.backends.cuda.planner import build_program
    from engine.backends.cuda.program import Gemm, Launch, Target
    b = engine.Builder()
    x = b.input("x", (None, 8, 512, 512))
    y = b.relu(b.conv2d(x, np.ones((64, 8, 3, 3), np.float32), padding=1))
    b.output(b.relu(b.add(y, y)), "y")
    with engine.limits.override(max_buffer_bytes=2**40):     # 8.5 GB values, planned only
        prog = build_program(engine.passes.optimize(b.build()), {"x": (130, 8, 512, 512)},
                             target=Target(sm_count=132, max_blocks=132 * 32))
    n = 130 * 64 * 512 * 512
    assert n > 2**31 and prog.memory.arena_bytes > 2**33
    sizes = [int(a) for r in prog.records() if isinstance(r, Launch) for a in r.args
             if isinstance(a, np.int64)]
    assert n in sizes
    gemms = [r for r in prog.records() if isinstance(r, Gemm)]
    assert gemms and all(max(r.m, r.n, r.k, r.ldc) < 2**31 for r in gemms)


def test_resnet50_program_on_an_h100_target(cu):
    from engine.backends.cuda.planner import build_program
    from engine.backends.cuda.program import Gemm, Launch, Target
    m = engine.passes.optimize(zoo.get("resnet50"))
    t = Target(name="h100", sm_count=132, max_blocks=132 * 32)
    prog = build_program(m, {"input": (32, 3, 224, 224)}, target=t)
    variants = {s.variant for s in prog.steps if s.node.op == "conv"}
    assert {"winograd_f2x3", "pointwise_gemm", "im2col_gemm"} <= variants
    launches = [r for r in prog.records() if isinstance(r, Launch)]
    gemms = [r for r in prog.records() if isinstance(r, Gemm)]
    assert all(r.grid[0] <= t.max_blocks for r in launches)
    assert len(gemms) >= 53 and prog.memory.workspace_bytes <= t.workspace_bytes + 2**20
    # activations reuse memory: far less than one buffer per value
    assert prog.memory.activation_bytes < 0.3 * prog.memory.sum_activation_bytes


# == 4. execution: every op, every zoo model ====================================================

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much])
GEMM_OPS = {"conv", "conv_transpose", "linear", "matmul"}
NORM_OPS = {"batch_norm", "layer_norm", "instance_norm", "group_norm", "local_response_norm",
            "softmax", "log_softmax", "mean", "avg_pool", "adaptive_avg_pool"}


def tolerance(op):
    return 1e-4 if op in GEMM_OPS or op in NORM_OPS else 1e-5


def _arr(draw, shape, scale=1.0):
    seed = draw(st.integers(0, 2**31 - 1))
    return np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale,
                      dtype=np.float32)


def _act(draw):
    name = draw(st.sampled_from([None] + list(FUSABLE)))
    if name is None:
        return None
    extra = {"leaky_relu": {"negative_slope": 0.1}, "clip": {"min": -0.5, "max": 1.0},
             "gelu": {"approximate": draw(st.sampled_from(["none", "tanh"]))},
             "elu": {"alpha": 0.7}, "softplus": {"beta": 1.5, "threshold": 4.0}}
    return {"op": name, **extra.get(name, {})}


def _conv(draw):
    r = draw(st.sampled_from([1, 2, 2, 2, 3]))
    kind = draw(st.sampled_from(["general", "depthwise", "wino", "pointwise", "whole"]))
    n = draw(st.integers(1, 2))
    if kind == "depthwise":
        g = draw(st.integers(2, 4))
        cin_g, cout = 1, g * draw(st.integers(1, 2))
    else:
        g = 1 if kind in ("wino", "whole") else draw(st.sampled_from([1, 1, 2, 3]))
        cin_g, cout = draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    if kind == "wino":
        r = 2
    k = [3] * r if kind == "wino" else [1] * r if kind == "pointwise" else \
        [draw(st.integers(1, 3)) for _ in range(r)]
    stride = [1] * r if kind in ("wino", "pointwise") else [draw(st.integers(1, 2))
                                                            for _ in range(r)]
    dil = [1] * r if kind in ("wino", "pointwise", "whole") else [draw(st.integers(1, 2))
                                                                   for _ in range(r)]
    pad = [[0, 0]] * r if kind in ("pointwise", "whole") else \
        [[draw(st.integers(0, 2)), draw(st.integers(0, 2))] for _ in range(r)]
    if kind == "whole":
        size = list(k)
    else:
        size = [d * (kk - 1) + 1 + draw(st.integers(0, 5)) for kk, d in zip(k, dil)]
    x = _arr(draw, (n, cin_g * g, *size))
    w = _arr(draw, (cout, cin_g, *k), 0.5)
    bias = _arr(draw, (cout,)) if draw(st.booleans()) else None
    attrs = dict(stride=stride, padding=pad, dilation=dil, groups=g, activation=_act(draw))
    return attrs, [x, w, bias], [False, draw(st.booleans()), draw(st.booleans())]


def _conv_transpose(draw):
    r = draw(st.sampled_from([1, 2, 2, 3]))
    g = draw(st.sampled_from([1, 1, 2]))
    cin, cout_g = g * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    k = [draw(st.integers(1, 3)) for _ in range(r)]
    s = [draw(st.integers(1, 3)) for _ in range(r)]
    d = [draw(st.integers(1, 2)) for _ in range(r)]
    p = [draw(st.integers(0, 1)) for _ in range(r)]
    op = [draw(st.integers(0, max(0, max(si, di) - 1))) for si, di in zip(s, d)]
    size = [draw(st.integers(1, 4)) for _ in range(r)]
    x = _arr(draw, (draw(st.integers(1, 2)), cin, *size))
    w = _arr(draw, (cin, cout_g, *k), 0.5)
    bias = _arr(draw, (cout_g * g,)) if draw(st.booleans()) else None
    attrs = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g,
                 activation=_act(draw))
    return attrs, [x, w, bias], [False, draw(st.booleans()), True]


def _pool(op):
    def case(draw):
        r = draw(st.sampled_from([1, 2, 2, 3]))
        k = [draw(st.integers(1, 3)) for _ in range(r)]
        attrs = dict(kernel_size=k, stride=[draw(st.integers(1, 3)) for _ in range(r)],
                     padding=[draw(st.integers(0, kk // 2)) for kk in k],
                     ceil_mode=draw(st.booleans()))
        if op == "avg_pool":
            attrs["count_include_pad"] = draw(st.booleans())
            dil = [1] * r
        else:
            dil = [draw(st.integers(1, 2)) for _ in range(r)]
            attrs["dilation"] = dil
        size = [d * (kk - 1) + 1 + draw(st.integers(0, 5)) for kk, d in zip(k, dil)]
        return attrs, [_arr(draw, (draw(st.integers(1, 2)), 2, *size))], [False]
    return case


def _adaptive(draw):
    r = draw(st.integers(1, 3))
    size = [draw(st.integers(1, 7)) for _ in range(r)]
    out = [draw(st.integers(1, s + 2)) for s in size]
    if draw(st.booleans()):
        out, size = [1] * r, [draw(st.integers(8, 12)) for _ in range(r)]   # global pooling
    return {"output_size": out}, [_arr(draw, (2, 3, *size))], [False]


def _linear(draw):
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    fin, fout = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    bias = _arr(draw, (fout,)) if draw(st.booleans()) else None
    return ({"activation": _act(draw)}, [_arr(draw, (*lead, fin)), _arr(draw, (fout, fin)),
                                         bias], [False, draw(st.booleans()), True])


MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)), ((2, 1, 2, 3), (1, 3, 3, 2)),
                 ((4, 2, 3), (4, 3, 2))]


def _matmul(draw):
    a, b = draw(st.sampled_from(MATMUL_SHAPES))
    return {}, [_arr(draw, a), _arr(draw, b)], [False, draw(st.booleans())]


def _binary(draw):
    out = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 4)))]

    def operand():
        k = draw(st.integers(0, len(out)))
        return tuple(1 if draw(st.booleans()) else d for d in out[len(out) - k:])
    a, b = operand(), operand()
    if len(a) < len(out) and len(b) < len(out):
        a = tuple(out)
    return {}, [_arr(draw, a), np.asarray(_arr(draw, b) + 0.5, np.float32)], \
        [False, draw(st.booleans())]


def _unary(op):
    def case(draw):
        attrs = {"leaky_relu": {"negative_slope": draw(st.sampled_from([0.01, 0.2, -1.0]))},
                 "clip": {"min": draw(st.sampled_from([None, -1.0, 0.0])),
                          "max": draw(st.sampled_from([None, 1.0, 6.0]))},
                 "gelu": {"approximate": draw(st.sampled_from(["none", "tanh"]))},
                 "elu": {"alpha": draw(st.sampled_from([1.0, 0.3]))},
                 "softplus": {"beta": draw(st.sampled_from([1.0, 2.0, -0.5])),
                              "threshold": draw(st.sampled_from([20.0, 3.0]))}}.get(op, {})
        shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(0, 4))))
        return attrs, [_arr(draw, shape, 4.0)], [False]
    return case


def _prelu(draw):
    shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(2, 4))))
    w = _arr(draw, (draw(st.sampled_from([1, shape[1]])),), 0.3)
    return {}, [_arr(draw, shape), w], [False, draw(st.booleans())]


def _softmax(draw):
    shape = tuple(draw(st.integers(1, 6)) for _ in range(draw(st.integers(1, 4))))
    if draw(st.booleans()):
        shape = shape[:-1] + (draw(st.integers(200, 600)),)        # long rows: block path
    return {"dim": draw(st.integers(-len(shape), len(shape) - 1))}, [_arr(draw, shape, 3.0)], \
        [False]


def _channels(draw, lo=2, hi=4):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)),
             *[draw(st.integers(1, 5)) for _ in range(draw(st.integers(lo - 2, hi - 2)))])
    return shape


def _batch_norm(draw):
    shape = _channels(draw)
    c = shape[1]
    opt = [_arr(draw, (c,)) if draw(st.booleans()) else None for _ in range(2)]
    var = np.abs(_arr(draw, (c,))) + 0.5
    return {"eps": 1e-5, "activation": _act(draw)}, \
        [_arr(draw, shape), _arr(draw, (c,)), var, *opt], [False] + [True] * 4


def _layer_norm(draw):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 4))))
    if draw(st.booleans()):
        shape = shape[:-1] + (draw(st.integers(300, 700)),)
    k = draw(st.integers(1, len(shape)))
    ns = list(shape[len(shape) - k:])
    opt = [_arr(draw, tuple(ns)) if draw(st.booleans()) else None for _ in range(2)]
    return {"normalized_shape": ns, "eps": 1e-5}, [_arr(draw, shape, 2.0), *opt], \
        [False, draw(st.booleans()), True]


def _instance_norm(draw):
    shape = _channels(draw, 3, 5)
    opt = [_arr(draw, (shape[1],)) if draw(st.booleans()) else None for _ in range(2)]
    return {"eps": 1e-5}, [_arr(draw, shape) + 1.0, *opt], [False, True, True]


def _group_norm(draw):
    g = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), g * draw(st.integers(1, 3)),
             *[draw(st.integers(1, 6)) for _ in range(draw(st.integers(0, 2)))])
    opt = [_arr(draw, (shape[1],)) if draw(st.booleans()) else None for _ in range(2)]
    return {"num_groups": g, "eps": 1e-5}, [_arr(draw, shape), *opt], [False, True, False]


def _lrn(draw):
    attrs = dict(size=draw(st.integers(1, 5)), alpha=1e-2, beta=0.75, k=draw(st.sampled_from(
        [1.0, 2.0])))
    return attrs, [_arr(draw, _channels(draw, 3, 4))], [False]


def _alias(op):
    def case(draw):
        shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 4))))
        attrs = {"dropout": {"p": 0.5}}.get(op, {})
        if op == "flatten":
            s = draw(st.integers(-len(shape), len(shape) - 1))
            e = draw(st.integers(s % len(shape), len(shape) - 1))
            attrs = {"start_dim": s, "end_dim": e}
        if op == "reshape":
            numel = int(np.prod(shape))
            attrs = {"shape": draw(st.sampled_from([[-1], [numel, 1], [1, -1]]))}
        return attrs, [_arr(draw, shape)], [draw(st.booleans())]
    return case


def _permute(draw):
    shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 5))))
    return {"dims": list(draw(st.permutations(range(len(shape)))))}, [_arr(draw, shape)], [False]


def _concat(draw):
    shape = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 4)))]
    d = draw(st.integers(0, len(shape) - 1))
    xs = []
    for _ in range(draw(st.integers(1, 4))):
        s = list(shape)
        s[d] = draw(st.integers(1, 3))
        xs.append(_arr(draw, tuple(s)))
    return {"dim": d - len(shape) * draw(st.integers(0, 1))}, xs, \
        [draw(st.booleans()) and i > 0 for i in range(len(xs))]


def _split(draw):
    shape = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 4)))]
    d = draw(st.integers(0, len(shape) - 1))
    shape[d] = draw(st.integers(2, 7))
    if draw(st.booleans()):
        sec = draw(st.integers(1, shape[d]))
    else:
        cut = sorted(draw(st.lists(st.integers(0, shape[d]), min_size=1, max_size=2)))
        sec = [a - b for a, b in zip(cut + [shape[d]], [0] + cut)]
    return {"split_size_or_sections": sec, "dim": d}, [_arr(draw, tuple(shape))], [False]


def _shuffle(draw):
    g = draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), g * draw(st.integers(1, 3)),
             *[draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2)))])
    return {"groups": g}, [_arr(draw, shape)], [False]


def _pad(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    npad = draw(st.integers(1, 3))
    rank = draw(st.integers(npad + (1 if mode != "constant" else 0), npad + 2)) \
        if mode != "constant" else draw(st.integers(npad, 4))
    shape = tuple(draw(st.integers(2, 5)) for _ in range(rank))
    pad = []
    for i in range(npad):
        size = shape[rank - 1 - i]
        hi = size - 1 if mode == "reflect" else 3
        pad += [draw(st.integers(0, hi)), draw(st.integers(0, hi))]
    return {"pad": pad, "mode": mode, "value": 0.5 if mode == "constant" else None}, \
        [_arr(draw, shape)], [False]


def _interpolate(draw):
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    r = 2 if mode == "bilinear" else draw(st.integers(1, 3))
    size_in = [draw(st.integers(1, 6)) for _ in range(r)]
    if draw(st.booleans()):
        sf = [draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])) for _ in range(r)]
        out = [int(np.floor(s * f)) for s, f in zip(size_in, sf)]
        assume(all(o >= 1 for o in out))
    else:
        sf, out = None, [draw(st.integers(1, 9)) for _ in range(r)]
    ac = draw(st.sampled_from([None, False, True])) if mode == "bilinear" else None
    return dict(size=out, scale_factor=sf, mode=mode, align_corners=ac), \
        [_arr(draw, (2, 2, *size_in))], [False]


def _mean(draw):
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(1, 4))))
    dims = draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)))
    return {"dim": dims, "keepdim": draw(st.booleans())}, [_arr(draw, shape)], [False]


CASES = {"conv": _conv, "conv_transpose": _conv_transpose, "linear": _linear,
         "matmul": _matmul, "adaptive_avg_pool": _adaptive, "adaptive_max_pool": _adaptive,
         "prelu": _prelu, "softmax": _softmax, "log_softmax": _softmax,
         "batch_norm": _batch_norm, "layer_norm": _layer_norm, "instance_norm": _instance_norm,
         "group_norm": _group_norm, "local_response_norm": _lrn, "permute": _permute,
         "concat": _concat, "split": _split, "channel_shuffle": _shuffle, "pad": _pad,
         "interpolate": _interpolate, "mean": _mean}
CASES.update({op: _pool(op) for op in ("max_pool", "min_pool", "avg_pool")})
CASES.update({op: _binary for op in ("add", "sub", "mul", "div", "maximum", "minimum")})
CASES.update({op: _unary(op) for op in FUSABLE})
CASES.update({op: _alias(op) for op in ("dropout", "identity", "flatten", "reshape")})


def test_cases_cover_the_registry():
    assert set(CASES) == set(OPS), sorted(set(OPS) ^ set(CASES))


def single_node_model(op, attrs, arrays, const):
    """A model of one node; array i is a constant where const[i] (None: absent input)."""
    inputs, constants, names = [], {}, []
    for i, (a, c) in enumerate(zip(arrays, const)):
        if a is None:
            names.append("")
        elif c:
            constants[f"c{i}"] = a
            names.append(f"c{i}")
        else:
            inputs.append(Value(f"x{i}", tuple(a.shape)))
            names.append(f"x{i}")
    while names and names[-1] == "":
        names.pop()
    node = Node(op, "node", names, ["y"], dict(attrs))
    shapes = OPS[op].infer_shapes(node, [None if a is None else tuple(a.shape)
                                         for a in arrays[:len(names)]])
    node.outputs = [f"y{i}" for i in range(len(shapes))]
    if not inputs:         # at least one runtime input
        inputs.append(Value("dummy", (1,)))
    model = Model(inputs, node.outputs, [node], constants)
    feeds = {v.name: (arrays[int(v.name[1:])] if v.name != "dummy" else
                      np.zeros(1, np.float32)) for v in inputs}
    return model, node, feeds


def check_op(op, case, tol=None):
    attrs, arrays, const = case
    const = list(const) + [False] * (len(arrays) - len(const))
    try:
        model, node, feeds = single_node_model(op, attrs, arrays, const)
    except engine.errors.GraphError:
        assume(False)
    ref = OPS[op].run_reference(node, [a for a in arrays[:len(node.inputs)]])
    got = engine.Session(model, backend="cuda", optimize_graph=False,
                         allow_nonfinite=True).run(feeds)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        err = rel_err(g, r)
        assert err <= (tol or tolerance(op)), f"{op} {attrs}: relative error {err:.3g}"


@pytest.mark.parametrize("op", sorted(CASES))
def test_every_op_matches_the_reference(op, device):
    examples = 30 if device == "gpu" else 6
    if op == "conv" and device == "emulator":
        examples = 25

    @settings(max_examples=examples, **SETTINGS)
    @given(st.data())
    def run(data):
        check_op(op, CASES[op](data.draw))
    run()


@pytest.mark.parametrize("policy", ["always", "never"])
def test_conv_with_winograd_forced(policy, device, monkeypatch):
    monkeypatch.setenv("ENGINE_CUDA_WINOGRAD", policy)
    rng = np.random.default_rng(3)
    for n, c, cout, h, w, pad in [(1, 3, 5, 7, 6, [[1, 1], [1, 1]]),
                                  (3, 4, 2, 5, 8, [[0, 2], [2, 0]]),
                                  (2, 2, 3, 3, 3, [[0, 0], [0, 0]])]:
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        wt = rng.standard_normal((cout, c, 3, 3)).astype(np.float32)
        attrs = dict(stride=[1, 1], padding=pad, dilation=[1, 1], groups=1,
                     activation={"op": "relu"})
        check_op("conv", (attrs, [x, wt, rng.standard_normal(cout).astype(np.float32)],
                          [False, True, True]))


@pytest.mark.parametrize("winograd", ["never", "always"])
def test_residual_epilogue(device, winograd, monkeypatch):
    """A conv with a 4th input (residual, added before the activation; the residual-add
    fusion pass) in every conv variant's epilogue."""
    if OPS["conv"].n_inputs[1] < 4:
        pytest.skip("the conv op does not take a residual input yet")
    monkeypatch.setenv("ENGINE_CUDA_WINOGRAD", winograd)
    rng = np.random.default_rng(4)
    for k, groups, c in [(3, 1, 4), (1, 1, 4), (3, 4, 4), (6, 1, 4)]:
        x = rng.standard_normal((2, c, 6, 6)).astype(np.float32)
        w = rng.standard_normal((c, c // groups, k, k)).astype(np.float32)
        o = 1 if k == 6 else 6                                    # k == 6: whole window
        res = rng.standard_normal((2, c, o, o)).astype(np.float32)
        attrs = dict(stride=[1, 1], padding=[[k // 2 if k < 6 else 0] * 2] * 2,
                     dilation=[1, 1],
                     groups=groups, activation={"op": "relu"})
        check_op("conv", (attrs, [x, w, None, res], [False, True, False, False]))


def test_special_values(device):
    x = np.array([[np.nan, -np.inf, np.inf, 0.0, -0.0, 1e-8, -3.0, 3.0, 88.0, -88.0,
                   6.5, -100.0]], np.float32)
    for op in FUSABLE:
        attrs = {"leaky_relu": {"negative_slope": 0.1}, "clip": {"min": -1.0, "max": 2.0},
                 "gelu": {"approximate": "none"}, "elu": {"alpha": 1.0},
                 "softplus": {"beta": 1.0, "threshold": 20.0}}.get(op, {})
        check_op(op, (attrs, [x], [False]))
    pool = dict(kernel_size=[2], stride=[2], padding=[1], dilation=[1], ceil_mode=True)
    check_op("max_pool", (pool, [x.reshape(1, 1, 12)], [False]))
    check_op("min_pool", (pool, [x.reshape(1, 1, 12)], [False]))
    check_op("softmax", ({"dim": -1}, [np.array([[-np.inf] * 3, [1.0, np.inf, 2.0],
                                                  [1.0, np.nan, 0.0]], np.float32)], [False]))
    check_op("div", ({}, [np.array([1.0, -1.0, 0.0], np.float32),
                          np.zeros(3, np.float32)], [False, False]))


def test_random_graphs(device):
    from graphs import random_model
    for seed in range(4):
        rng = np.random.default_rng(seed)
        m, shape = random_model(rng, layers=16)
        names = ["probs", m.nodes[-2].outputs[0]]               # and the logits
        for batch in (1, 3):
            x = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
            ref = engine.Session(m, backend="reference", optimize_graph=False).run(
                x, outputs=names)
            got = engine.Session(m, backend="cuda").run(x, outputs=names)
            for g, r in zip(got, ref):
                assert rel_err(g, r) <= 1e-4, seed


def test_intermediate_outputs_and_memory_report(device):
    m = _densenet_block()
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 5)).astype(np.float32)
    s = engine.Session(m, backend="cuda")
    names = [n.outputs[0] for n in m.nodes][:3] + ["y"]
    got = s.run(x, outputs=names, return_dict=True)
    ref = engine.Session(m, backend="reference", optimize_graph=False).run(
        x, outputs=names, return_dict=True)
    for k in names:
        assert rel_err(got[k], ref[k]) <= 1e-4
    rep = s.memory_report(1)
    assert rep.arena_bytes >= rep.activation_bytes >= rep.peak_live_bytes > 0
    prof = s.prepare(1).profile({"x": x}, repeat=2)
    assert set(prof) <= {n.name for n in s.graph.nodes} and all(v >= 0 for v in prof.values())


# The emulator runs a representative subset by default (ENGINE_CUDA_EMU_ALL=1: every model,
# slow); a GPU runs every zoo model at its default input size, batch 1 and 2.
EMU_ZOO = ["lenet5", "resnet18", "mobilenet_v2", "densenet121", "googlenet",
           "shufflenet_v2_x0_5", "squeezenet1_1", "conv_autoencoder"]


def _zoo_input(name, device):
    info = zoo.info(name)
    if device == "gpu" or info.fixed_input:
        model = zoo.get(name)
    else:
        m = info.size_multiple
        model = zoo.get(name, input_size=m * max(1, 64 // m) if m > 1 else 64)
    return model, (1,) + tuple(model.inputs[0].shape[1:])


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_models_match_the_cpu_backend(name, device):
    if device == "emulator" and name not in EMU_ZOO and not os.environ.get("ENGINE_CUDA_EMU_ALL"):
        pytest.skip("emulator: a representative subset (ENGINE_CUDA_EMU_ALL=1 runs all)")
    model, shape = _zoo_input(name, device)
    rng = np.random.default_rng(0)
    batches = (1, 2) if device == "gpu" else (1,)
    cuda = engine.Session(model, backend="cuda")
    cpu = engine.Session(model, backend="cpu")
    for batch in batches:
        x = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
        for g, c in zip(cuda.run(x), cpu.run(x)):
            assert rel_err(g, c) <= 1e-4, name


def test_emulator_guard_catches_out_of_bounds_writes(cu):
    if not HAVE_CXX:
        pytest.skip("no C++ compiler")
    from engine.backends.cuda.emulator import EmulatedPlan, emu_target
    from engine.backends.cuda.planner import build_program
    from engine.backends.cuda.program import Launch, f32, i32, i64
    from engine.errors import EngineError
    m = engine.passes.optimize(_model())
    prog = build_program(m, {"x": (1, 3, 8, 8)}, target=emu_target(), guard=256)
    plan = EmulatedPlan(prog)
    x = np.ones((1, 3, 8, 8), np.float32)
    ref = engine.Session(m, backend="reference").run(x)[0]
    assert rel_err(plan.execute({"x": x}, ["y"])[0], ref) <= 1e-5     # clean with guards
    y = prog.slots["y"]
    bad = Launch("ek_unary", (1, 1), 256, (y.ptr, y.ptr, i64(y.size + 1), i32(1), f32(0),
                                           f32(0)))
    prog.steps[-1].records.append(bad)
    with pytest.raises(EngineError, match="wrote past the end"):
        EmulatedPlan(prog).execute({"x": x}, ["y"])


# == GPU only ====================================================================================

@needs_gpu
def test_gpu_device_inputs_outputs_graphs_and_no_allocation(monkeypatch):
    import cupy
    monkeypatch.delenv("ENGINE_CUDA_EMULATE", raising=False)
    model = zoo.get("resnet18")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ref = engine.Session(model, backend="cpu").run(x)[0]
    s = engine.Session(model, backend="cuda", device=0)
    eager = s.run(x)[0]                           # run 1: eager
    graph = s.run(x)[0]                           # run 2: captured, then replayed
    assert rel_err(eager, ref) <= 1e-4 and np.array_equal(eager, graph)
    plan = s.prepare(1)
    assert plan.graph is not None or not plan.use_graph
    pool = cupy.get_default_memory_pool()
    used = pool.used_bytes()
    for _ in range(3):
        s.run(x)
    assert pool.used_bytes() == used              # no device allocation per run
    xd = cupy.asarray(x)
    out = s.run(xd, device_outputs=True)[0]       # device in, device out
    assert isinstance(out, cupy.ndarray) and rel_err(cupy.asnumpy(out), ref) <= 1e-4

    class CAI:                                    # any __cuda_array_interface__ producer
        def __init__(self, a):
            self.__cuda_array_interface__ = a.__cuda_array_interface__
    assert rel_err(s.run(CAI(xd))[0], ref) <= 1e-4
    try:
        import torch
        if torch.cuda.is_available():
            xt = torch.from_numpy(x).cuda()
            assert rel_err(s.run(xt)[0], ref) <= 1e-4          # DLPack, zero copy
            yt = torch.from_dlpack(s.run(xt, device_outputs=True)[0])
            assert yt.is_cuda
    except ImportError:
        pass
    with pytest.raises(InputError, match="dtype float32"):
        s.run(cupy.asarray(x, dtype=cupy.float64))
    with pytest.raises(UnsupportedError, match="CUDA GPU"):
        engine.Session(model, backend="cuda", device=cupy.cuda.runtime.getDeviceCount())


@needs_gpu
def test_gpu_graph_replay_equals_eager_for_every_zoo_model(monkeypatch):
    monkeypatch.delenv("ENGINE_CUDA_EMULATE", raising=False)
    for name in zoo.names():
        model = zoo.get(name)
        x = np.random.default_rng(1).standard_normal(
            (1,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
        s = engine.Session(model, backend="cuda")
        first = s.run(x)[0]
        for _ in range(2):
            assert np.array_equal(s.run(x)[0], first), name


# == device.py on a fake CuPy (no GPU needed) ====================================================
#
# device.py (the CuPy executor) cannot run here, so this runs it against a stand-in CuPy:
# "device" memory is host memory, kernels run through the emulator, cuBLAS calls through
# NumPy with the same column-major contract, and work on a capturing stream is recorded and
# replayed by Graph.launch, as CUDA stream capture does.  It checks device.py's own logic
# (binding, staging, capture / replay, device inputs and outputs, no allocation per run);
# CuPy's real API is exercised only by the GPU tests above.

def _fake_cupy():
    import ctypes
    from numpy.lib.stride_tricks import as_strided

    from engine.backends.cuda.emulator import library
    from engine.backends.cuda.sources import signatures

    cp = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    cp.cuda, cp.__version__ = cuda, "fake"
    state = {"stream": None, "allocated": 0, "keep": []}

    class Array:
        def __init__(self, shape, dtype=np.float32, ptr=None, owner=None):
            self.shape, self.dtype = tuple(int(d) for d in np.atleast_1d(shape)) if \
                not isinstance(shape, tuple) else shape, np.dtype(dtype)
            n = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
            if ptr is None:
                owner = np.zeros(n + 512, np.uint8)
                ptr = owner.ctypes.data + (-owner.ctypes.data) % 256
                state["allocated"] += n
            self._owner, self.ndim = owner, len(self.shape)
            self.data = types.SimpleNamespace(ptr=ptr)
            self.flags = types.SimpleNamespace(c_contiguous=True)
            self.device = types.SimpleNamespace(id=0)
            self.nbytes = n

        def host(self):
            n = int(np.prod(self.shape, dtype=np.int64))
            buf = (ctypes.c_char * max(self.nbytes, 1)).from_address(self.data.ptr)
            return np.frombuffer(buf, self.dtype, n).reshape(self.shape)

        @property
        def __cuda_array_interface__(self):
            return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                    "data": (self.data.ptr, False), "strides": None}

    def asarray(obj, dtype=None):
        if hasattr(obj, "__cuda_array_interface__") and not isinstance(obj, np.ndarray):
            cai = obj.__cuda_array_interface__
            return Array(tuple(cai["shape"]), np.dtype(cai["typestr"]), cai["data"][0], obj)
        a = np.ascontiguousarray(obj, dtype=dtype or np.asarray(obj).dtype)
        out = Array(a.shape, a.dtype)
        out.host()[...] = a
        return out

    cp.ndarray, cp.float32, cp.float64, cp.uint8 = Array, np.float32, np.float64, np.uint8
    cp.empty = lambda shape, dtype=np.float32: Array(shape if isinstance(shape, tuple)
                                                     else (int(shape),), dtype)
    cp.asarray, cp.ascontiguousarray = asarray, asarray
    cp.asnumpy = lambda a: a.host().copy()
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(
        used_bytes=lambda: state["allocated"])

    class Stream:
        def __init__(self, non_blocking=False, null=False):
            self.ptr, self.capture = id(self), None
            streams[self.ptr] = self

        def __enter__(self):
            self._prev, state["stream"] = state["stream"], self
            return self

        def __exit__(self, *a):
            state["stream"] = self._prev

        def begin_capture(self, mode=None):
            self.capture = []

        def end_capture(self):
            ops, self.capture = self.capture, None
            return types.SimpleNamespace(launch=lambda stream=None: [op() for op in ops])

        def synchronize(self):
            assert self.capture is None, "synchronize during capture"

        def wait_event(self, ev):
            pass

    streams = {}
    null = Stream()

    def submit(stream, op):
        stream = stream or state["stream"] or null
        if stream.capture is not None:
            stream.capture.append(op)
        else:
            op()

    class Device:
        def __init__(self, i=0):
            self.id = i

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def use(self):
            pass

        def synchronize(self):
            pass

    class Event:
        def __init__(self, disable_timing=False):
            pass

        def record(self, stream=None):
            pass

        def synchronize(self):
            pass

    def memcpy(dst, src, n, kind):
        ctypes.memmove(dst, src, n)

    def memcpy_async(dst, src, n, kind, stream_ptr):
        submit(streams.get(stream_ptr), lambda: ctypes.memmove(dst, src, n))

    cuda.Device, cuda.Stream, cuda.Event = Device, Stream, Event
    cuda.get_current_stream = lambda: state["stream"] or null
    cuda.get_elapsed_time = lambda a, b: 0.01
    cuda.alloc_pinned_memory = lambda n: bytearray(n)
    cuda.memory = types.SimpleNamespace(OutOfMemoryError=MemoryError)
    cuda.runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, getDevice=lambda: 0, memcpy=memcpy,
        memcpyAsync=memcpy_async,
        getDeviceProperties=lambda d: {"name": b"FakeGPU", "multiProcessorCount": 2})

    lib = library()
    kinds = {"i32": ctypes.c_int32, "i64": ctypes.c_int64, "f32": ctypes.c_float}

    class Function:
        def __init__(self, name):
            self.name, self.params = name, signatures()[name][1]
            self.fn = getattr(lib, f"emu_{name}")

        def __call__(self, grid, block, args, shared_mem=0, stream=None):
            assert len(args) == len(self.params) and len(grid) == 3 and len(block) == 3
            vals = [ctypes.c_void_p(int(a)) if kind == "ptr" else kinds[kind](a.item())
                    for (_, kind), a in zip(self.params, args)]
            for (_, kind), a in zip(self.params, args):
                assert isinstance(a, np.uint64) if kind == "ptr" else isinstance(a, np.generic)
            argv = (ctypes.c_void_p * len(vals))(*[ctypes.addressof(v) for v in vals])
            keep = (vals, argv)
            submit(stream, lambda: self.fn(grid[0], grid[1], block[0], keep[1]))

    class RawModule:
        def __init__(self, code, options=()):
            assert "#include" not in code and "--std=c++14" in options

        def compile(self):
            pass

        def get_function(self, name):
            return Function(name)

    cp.RawModule = RawModule

    def f32(addr, count):
        return np.ctypeslib.as_array((ctypes.c_float * max(count, 1)).from_address(addr))

    def operand(addr, rows, cols, ld):
        return as_strided(f32(addr, (cols - 1) * ld + rows), (rows, cols), (4, 4 * ld))

    def gemm(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch):
        al, be = f32(alpha, 1)[0], f32(beta, 1)[0]

        def op():
            for i in range(batch):
                a = operand(A + 4 * i * sa, *((k, m) if ta else (m, k)), lda)
                b = operand(B + 4 * i * sb, *((n, k) if tb else (k, n)), ldb)
                c = operand(C + 4 * i * sc, m, n, ldc)
                c[...] = al * ((a.T if ta else a) @ (b.T if tb else b)) + \
                    (be * c if be else 0)
        submit(None, op)                 # cuBLAS follows the current stream

    cublas = types.ModuleType("cupy.cuda.cublas")
    cublas.create, cublas.destroy = (lambda: 1), (lambda h: None)
    cublas.setMathMode = lambda h, m: None
    cublas.sgemmStridedBatched = gemm
    cublas.sgemm = lambda h, ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc: gemm(
        h, ta, tb, m, n, k, al, A, lda, 0, B, ldb, 0, be, C, ldc, 0, 1)
    cuda.cublas = cublas
    return cp, state


@pytest.mark.skipif(not HAVE_CXX, reason="the fake CuPy runs kernels through the emulator")
def test_device_executor_on_a_fake_cupy(monkeypatch):
    monkeypatch.setenv("ENGINE_CUDA_EMULATE", "1")
    importlib.import_module(PKG)                        # sources / emulator importable
    cp, state = _fake_cupy()
    monkeypatch.delenv("ENGINE_CUDA_EMULATE")
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cp.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.cublas", cp.cuda.cublas)
    _fresh_import(monkeypatch)
    m = _densenet_block()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    ref = engine.Session(m, backend="reference").run(x)[0]
    s = engine.Session(m, backend="cuda", device="cuda:0")
    first = s.run(x)[0]                                  # eager
    plan = s.prepare(2)
    assert type(plan).__name__ == "DevicePlan" and plan.device_kind == "cuda"
    assert plan.graph is None and rel_err(first, ref) <= 1e-4
    assert np.array_equal(s.run(x)[0], first)            # captured, then replayed
    assert plan.graph is not None and plan.runs == 2
    used = state["allocated"]
    x2 = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    ref2 = engine.Session(m, backend="reference").run(x2)[0]
    assert rel_err(s.run(x2)[0], ref2) <= 1e-4           # replay sees the new input
    assert state["allocated"] == used                    # no device allocation per run
    xd = cp.asarray(x)
    out = s.run(xd, device_outputs=True)[0]              # device in, device out
    assert isinstance(out, cp.ndarray) and np.array_equal(cp.asnumpy(out), first)

    class CAI:
        def __init__(self, a):
            self.__cuda_array_interface__ = a.__cuda_array_interface__
    assert np.array_equal(s.run(CAI(xd))[0], first)
    with pytest.raises(InputError, match="float32"):
        s.run(cp.asarray(x.astype(np.float64)))
    with pytest.raises(InputError, match="CUDA device array"):
        s.run(object())
    prof = plan.profile({"x": x}, repeat=1)
    assert set(prof) == {st.node.name for st in plan.steps}
    rows = s.plan(1)                                     # batch 1: concats in place (timed)
    assert [r.variant for r in rows if r.op == "concat"] == ["in_place"] * 3
    assert all(r.executor == "cuda" and r.seconds is not None for r in rows)
    with pytest.raises(UnsupportedError, match="1 CUDA GPU"):
        engine.Session(m, backend="cuda", device=3).run(x)
