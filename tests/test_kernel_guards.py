"""The C kernels' own guards: the second line of defence against a hostile model file.

engine/limits.py bounds every model's geometry before a kernel exists; the kernels must
still never crash or hang when called directly with hostile geometry:

* the size functions (workspaces, packed operands) compute with checked arithmetic and
  report an overflow, and every window geometry passes ek_geom3_check (every extent and
  derived span <= 2**31 - 1): the wrappers raise ValueError instead of calling C with
  sizes that wrap (the reproducer: a conv with stride 2**31 - 1 and padding 2**30 wrapped
  its padded dims and overflowed the heap in ek_im2col_pad);
* pooling visits only the window taps that hit the input: a kernel of 2**30 on an 8 x 8
  input costs as much as one of 8 (it used to loop 2**60 times with the GIL released);
* the nogil executor looks for pending signals between steps: Ctrl-C stops a long run.

Everything is compared with direct NumPy references that clip each window to the input
(the op references in engine/ops would visit every tap: far too slow at these sizes).
"""

import os
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import _kernels
from engine._kernels import conv as kconv
from engine._kernels import eltwise as kelt
from engine._kernels import executor as kexec
from engine._kernels import gemm as kgemm
from engine._kernels import pool as kpool

BIG = 2**31 - 1




def _f(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- references (windows clipped to the input: cost independent of the kernel size) --------

def _taps(n_out, n_in, k, s, p, d):
    """Per output position, the input indices its window reads (the taps inside)."""
    out = []
    for o in range(n_out):
        start = o * s - p
        lo = 0 if start >= 0 else -(start // d)           # ceil(-start / d)
        hi = min(k, (n_in - 1 - start) // d + 1) if n_in - 1 - start >= 0 else 0
        out.append([start + t * d for t in range(lo, max(lo, hi))])
    return out


def pool_ref(x, out_sp, kernel, stride, pad_begin, pad_end, dilation, mode,
             count_include_pad=True):
    """x: (N, C, D, H, W) -> (N, C, *out_sp) in float64; mode 0 max, 1 min, 2 avg."""
    N, C = x.shape[:2]
    taps = [_taps(o, n, k, s, p, d) for o, n, k, s, p, d in
            zip(out_sp, x.shape[2:], kernel, stride, pad_begin, dilation)]
    y = np.empty((N, C) + tuple(out_sp))
    xd = x.astype(np.float64)
    for od, td in enumerate(taps[0]):
        for oh, th in enumerate(taps[1]):
            for ow, tw in enumerate(taps[2]):
                win = xd[:, :, td][:, :, :, th][:, :, :, :, tw].reshape(N, C, -1)
                if mode == 2:
                    div = 1.0
                    for o, n, k, s, p, pe, t in zip((od, oh, ow), x.shape[2:], kernel, stride,
                                                    pad_begin, pad_end, (td, th, tw)):
                        start = o * s - p
                        end = min(start + k, n + pe)
                        div *= (end - start) if count_include_pad else len(t)
                    y[:, :, od, oh, ow] = win.sum(-1) / div if div else np.nan
                elif win.shape[-1] == 0:
                    y[:, :, od, oh, ow] = -np.inf if mode == 0 else np.inf
                else:
                    y[:, :, od, oh, ow] = win.max(-1) if mode == 0 else win.min(-1)
    return y


def conv_ref(x, w, bias, out_sp, stride, pad, dilation):
    """Direct conv3d (groups 1) in float64, windows clipped to the input."""
    N = x.shape[0]
    Cout = w.shape[0]
    y = np.zeros((N, Cout) + tuple(out_sp))
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    for od in range(out_sp[0]):
        for oh in range(out_sp[1]):
            for ow in range(out_sp[2]):
                acc = np.zeros((N, Cout))
                for kd in range(w.shape[2]):
                    i = od * stride[0] - pad[0] + kd * dilation[0]
                    if not 0 <= i < x.shape[2]:
                        continue
                    for kh in range(w.shape[3]):
                        j = oh * stride[1] - pad[1] + kh * dilation[1]
                        if not 0 <= j < x.shape[3]:
                            continue
                        for kw in range(w.shape[4]):
                            k = ow * stride[2] - pad[2] + kw * dilation[2]
                            if 0 <= k < x.shape[4]:
                                acc += xd[:, :, i, j, k] @ wd[:, :, kd, kh, kw].T
                y[:, :, od, oh, ow] = acc
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1, 1)
    return y


# -- conv: overflowing geometry is a ValueError, never a crash ------------------------------

def test_conv_reproducer_raises():
    """The heap overflow of the issue: stride 2**31 - 1, padding 2**30, a 2 x 2 output."""
    x, w, y = _f(1, 3, 1, 8, 8), _f(4, 3, 1, 3, 3), np.zeros((1, 4, 1, 2, 2), np.float32)
    geo = ((1, BIG, BIG), (0, 2**30, 2**30), (1, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        kconv.conv_workspace(x.shape, w.shape, y.shape, *geo)
    for bind in (False, True):
        with pytest.raises(ValueError):
            kconv.conv3d(x, w, None, y, *geo, work=np.zeros(1 << 16, np.float32), bind=bind)
    with pytest.raises(ValueError):
        kconv.conv3d_packed(x, kconv.conv_pack(w), None, y, *geo,
                            work=np.zeros(1 << 16, np.float32))
    with pytest.raises(ValueError):
        kconv.conv3d_depthwise(_f(1, 4, 1, 8, 8), _f(4, 1, 1, 3, 3), None, y, *geo,
                               work=np.zeros(1 << 16, np.float32))
    with pytest.raises(ValueError):
        kconv.conv_depthwise_workspace((1, 4, 1, 8, 8), (4, 1, 1, 3, 3), y.shape, *geo)


def test_conv_workspace_overflow_raises():
    """Spans within 2**31 - 1 per dim, but a padded copy of 3 x (2**30 + 3)**3 floats."""
    x, w = _f(1, 3, 8, 8, 8), _f(4, 3, 3, 3, 3)
    y = np.zeros((1, 4, 2, 2, 2), np.float32)
    geo = ((2**30,) * 3, (0, 0, 0), (1, 1, 1))
    for fn in (kconv.conv_workspace, kconv.conv_packed_workspace):
        with pytest.raises(ValueError, match="overflows or exceeds"):
            fn(x.shape, w.shape, y.shape, *geo)
    with pytest.raises(ValueError, match="overflows or exceeds"):
        kconv.conv3d(x, w, None, y, *geo, work=np.zeros(16, np.float32))
    # the same with a huge dilation instead of the stride
    geo = ((1, 1, 1), (0, 0, 0), (2**29,) * 3)
    with pytest.raises(ValueError, match="overflows or exceeds"):
        kconv.conv_workspace(x.shape, w.shape, y.shape, *geo)


def test_conv_transpose_span_overflow_raises():
    x, w = _f(1, 2, 1, 2, 2), _f(2, 3, 1, 3, 3)
    y = np.zeros((1, 3, 1, 4, 4), np.float32)
    geo = ((1, BIG, BIG), (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        kconv.conv_transpose_workspace(x.shape, w.shape, y.shape, *geo)
    with pytest.raises(ValueError):
        kconv.conv_transpose3d(x, w, None, y, *geo, work=np.zeros(1 << 16, np.float32))


def test_winograd_and_gemm_sizes_raise():
    with pytest.raises(ValueError):
        kconv.winograd_workspace((BIG, BIG, BIG, BIG), (BIG, BIG, 3, 3), (BIG, BIG, BIG, BIG))
    with pytest.raises(ValueError):
        kconv.winograd_blocking((BIG, BIG, BIG, BIG), (BIG, BIG, 3, 3), (BIG, BIG, BIG, BIG))
    with pytest.raises(ValueError, match="overflows or exceeds"):
        kgemm.gemm_workspace(2**41, 2**41, 2**41, nthreads=2)
    wp = kconv.winograd_pack(_f(2, 3, 3, 3), 4)
    with pytest.raises(ValueError, match="out of range"):
        kconv.conv2d_winograd(_f(1, 3, 4, 4), wp, None, np.zeros((1, 2, 4, 4), np.float32),
                              (BIG, BIG))
    # sane sizes still work
    assert kgemm.gemm_workspace(64, 64, 64) >= 0


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_conv_hostile_geometry_raises_or_matches(data, isa):
    """Random hostile stride / padding / dilation on small arrays: ValueError, or the
    exact (windows clipped) result."""
    big = st.one_of(st.integers(1, 3), st.integers(1, BIG), st.sampled_from([2**30, BIG]))
    stride = tuple(data.draw(big) for _ in range(3))
    dilation = tuple(data.draw(big) for _ in range(3))
    pad = tuple(data.draw(st.one_of(st.integers(0, 2), st.integers(0, BIG))) for _ in range(3))
    out = tuple(data.draw(st.integers(1, 3)) for _ in range(3))
    x, w, b = _f(1, 2, 3, 4, 5), _f(3, 2, 2, 2, 3, seed=1), _f(3, seed=2)
    y = np.full((1, 3) + out, np.nan, np.float32)
    try:
        need = kconv.conv_workspace(x.shape, w.shape, y.shape, stride, pad, dilation)
    except ValueError:
        with pytest.raises(ValueError):
            kconv.conv3d(x, w, b, y, stride, pad, dilation, work=np.zeros(64, np.float32))
        return
    if need > 1 << 24:     # valid, but more memory than a unit test should take
        return
    kconv.conv3d(x, w, b, y, stride, pad, dilation, work=np.zeros(max(need, 1), np.float32))
    np.testing.assert_allclose(y, conv_ref(x, w, b, out, stride, pad, dilation), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("geo", [
    # stride, pad, dilation, output: a padded plane for the fast path would be huge
    ((1, 1, 1), (0, 2**20, 2**20), (1, 2**20, 2**20), (1, 8, 8)),
    ((1, 1, 2), (0, 1, 2**24), (1, 1, 1), (1, 8, 3)),
    ((1, 2**30, 1), (0, 1, 1), (1, 1, 1), (1, 2, 8)),
])
def test_depthwise_hostile_geometry_matches(geo, isa):
    stride, pad, dil, out = geo
    C, mult = 3, 2
    x, w, b = _f(2, C, 1, 8, 8), _f(C * mult, 1, 1, 3, 3, seed=1), _f(C * mult, seed=2)
    y = np.full((2, C * mult) + out, np.nan, np.float32)
    need = kconv.conv_depthwise_workspace(x.shape, w.shape, y.shape, stride, pad, dil)
    assert need < 1 << 20
    kconv.conv3d_depthwise(x, w, b, y, stride, pad, dil,
                           work=np.zeros(max(need, 1), np.float32))
    ref = np.concatenate([conv_ref(x[:, c:c + 1], w[c * mult:(c + 1) * mult],
                                   b[c * mult:(c + 1) * mult], out, stride, pad, dil)
                          for c in range(C)], axis=1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


# -- pooling: no loop over taps outside the input -------------------------------------------

def _pool(x, out_sp, kernel, stride, pb, pe, dil, mode, cip=True):
    y = np.full(x.shape[:2] + tuple(out_sp), np.nan, np.float32)
    kpool.pool3d(x, y, kernel, stride, pb, pe, dil, mode, cip)
    return y


@pytest.mark.parametrize("mode", [kpool.MAX, kpool.MIN, kpool.AVG])
def test_pool_huge_window_is_fast(mode, isa):
    """Kernel 2**30, stride 2**30, padding 2**29 on 8 x 8 (output 1 x 1): the window holds
    the whole input; it used to loop ~2**60 times."""
    x = _f(2, 3, 1, 8, 8)
    k, s, p = (1, 2**30, 2**30), (1, 2**30, 2**30), (0, 2**29, 2**29)
    for cip in (True, False):
        t = time.perf_counter()
        y = _pool(x, (1, 1, 1), k, s, p, p, (1, 1, 1), mode, cip)
        assert time.perf_counter() - t < 2.0
        ref = pool_ref(x, (1, 1, 1), k, s, p, p, (1, 1, 1), mode, cip)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mode", [kpool.MAX, kpool.MIN, kpool.AVG])
@pytest.mark.parametrize("case", [
    # kernel, stride, pad, dilation, output
    ((1, 4001, 4001), (1, 1, 1), (0, 2000, 2000), (1, 1, 1), (1, 8, 8)),
    ((1, 4001, 3), (1, 2000, 1), (0, 2000, 1), (1, 1, 1), (1, 2, 8)),
    ((1, 4001, 4001), (1, 3, 2000), (0, 2000, 2000), (1, 1, 1), (1, 5, 3)),
    ((2001, 1, 4001), (1, 1, 7), (1000, 0, 2000), (1, 1, 1), (6, 8, 3)),
    ((1, 3, 3), (1, 2**30, 2**30), (0, 1, 1), (1, 1, 1), (1, 2, 2)),
    ((1, 3, 3), (1, 1, 1), (0, 1, 2**20), (1, 1, 2**20), (1, 8, 3)),     # max/min only
])
def test_pool_moderate_hostile_sizes_match_reference(mode, case, isa):
    kernel, stride, pad, dil, out = case
    if mode == kpool.AVG and dil != (1, 1, 1):
        pytest.skip("avg pooling has no dilation")
    x = _f(2, 3, 6 if kernel[0] > 1 else 1, 8, 8, seed=3)
    for cip in (True, False):
        y = _pool(x, out, kernel, stride, pad, pad, dil, mode, cip)
        ref = pool_ref(x, out, kernel, stride, pad, pad, dil, mode, cip)
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-30)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pool_hostile_geometry_fast_and_correct(data, isa):
    """Random hostile kernels / strides / paddings / dilations: ValueError, or the result
    (bounded work: the whole example under a second)."""
    mode = data.draw(st.sampled_from([kpool.MAX, kpool.MIN, kpool.AVG]))
    anyint = st.one_of(st.integers(1, 4), st.integers(1, BIG), st.sampled_from([2**30, BIG]))
    kernel = tuple(data.draw(anyint) for _ in range(3))
    stride = tuple(data.draw(anyint) for _ in range(3))
    dil = (1, 1, 1) if mode == kpool.AVG else tuple(data.draw(anyint) for _ in range(3))
    pb = tuple(data.draw(st.one_of(st.integers(0, 3), st.integers(0, BIG))) for _ in range(3))
    pe = tuple(data.draw(st.one_of(st.integers(0, 3), st.integers(0, BIG))) for _ in range(3))
    out = tuple(data.draw(st.integers(1, 4)) for _ in range(3))
    cip = data.draw(st.booleans())
    x = _f(1, 2, 3, 5, 7, seed=4)
    y = np.full((1, 2) + out, np.nan, np.float32)
    t = time.perf_counter()
    try:
        kpool.pool3d(x, y, kernel, stride, pb, pe, dil, mode, cip)
    except ValueError as e:
        assert "out of range" in str(e)
        return
    assert time.perf_counter() - t < 1.0
    ref = pool_ref(x, out, kernel, stride, pb, pe, dil, mode, cip)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-30)


def test_pool_span_overflow_raises():
    x, y = _f(1, 1, 1, 8, 8), np.zeros((1, 1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="out of range"):   # (2 - 1) * BIG + 3 > BIG
        kpool.pool3d(x, y, (1, 3, 3), (1, BIG, BIG), (0, 0, 0), (0, 0, 0), (1, 1, 1), kpool.MAX)
    with pytest.raises(ValueError, match="out of range"):   # pad_begin + 8 + pad_end > BIG
        kpool.pool3d(x, y, (1, 3, 3), (1, 1, 1), (0, 2**30, 0), (0, 2**30, 0), (1, 1, 1),
                     kpool.AVG, bind=True)


def test_session_huge_max_pool_is_fast():
    """The issue's reproducer through a Session, then 1-D / 2-D hostile-but-moderate windows
    against the reference backend."""
    b = engine.Builder()
    x = b.input("x", (None, 3, 8, 8))
    b.output(b.max_pool2d(x, 2**30, stride=2**30, padding=2**29), "y")
    s = engine.Session(b.build(), threads=1)
    xv = _f(1, 3, 8, 8, seed=5)
    t = time.perf_counter()
    y = s.run(xv)[0]
    assert time.perf_counter() - t < 5.0
    np.testing.assert_array_equal(y.reshape(3), xv.reshape(3, 64).max(1))

    b = engine.Builder()
    x = b.input("x", (None, 3, 8, 8))
    b.output(b.max_pool2d(x, (4001, 5), stride=(1, 2), padding=(2000, 2)), "y")
    b.output(b.avg_pool2d(x, (4001, 5), stride=(2000, 1), padding=(2000, 2)), "z")
    model = b.build()
    got = engine.Session(model, threads=2).run(xv)
    ref = engine.Session(model, backend="reference").run(xv)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-30)


# -- the nogil executor stops on Ctrl-C -----------------------------------------------------

class _Interrupted(Exception):
    pass


def _long_program(seconds):
    """A Program of many 1-thread tanh steps, about `seconds` long."""
    x = _f(1 << 18)
    y = np.empty_like(x)
    one = kexec.Program([kelt.unary(x, y, 6, bind=True)], keep=(x, y))
    t = time.perf_counter()
    for _ in range(20):
        one.run()
    per = (time.perf_counter() - t) / 20
    n = int(min(500_000, max(1000, seconds / max(per, 1e-7))))
    caps = [kelt.unary(x, y, 6, bind=True) for _ in range(n)]
    return kexec.Program(caps, keep=(x, y)), n * per


@pytest.mark.parametrize("timed", [False, True])
def test_executor_is_interrupted_by_sigint(timed):
    prog, expected = _long_program(20.0)
    assert expected > 5.0
    fired = []

    def handler(signum, frame):
        raise _Interrupted()

    def send():
        fired.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    old = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(0.3, send)
    try:
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(_Interrupted):
            if timed:
                prog.run_timed(np.zeros(len(prog)))
            else:
                prog.run()
            time.sleep(5)      # (not reached unless the run ignored the signal)
        t1 = time.perf_counter()
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, old)
    assert fired
    assert t1 - fired[0] < 2.0, f"stopped {t1 - fired[0]:.2f} s after SIGINT"
    assert t1 - t0 < expected / 2


def test_executor_default_handler_raises_keyboardinterrupt():
    prog, expected = _long_program(10.0)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    try:
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            prog.run()
            time.sleep(5)
        assert time.perf_counter() - t0 < 2.5
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, old)


def test_executor_signal_without_exception_completes():
    """A handler that does not raise runs during the program, which goes on to the end."""
    prog, expected = _long_program(1.0)
    got = []
    old = signal.signal(signal.SIGINT, lambda s, f: got.append(time.perf_counter()))
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    try:
        t0 = time.perf_counter()
        timer.start()
        prog.run()
        t1 = time.perf_counter()
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, old)
    assert got and got[0] < t1      # handled inside the run, not after it
    assert t1 - t0 > 0.5 * expected


def test_executor_off_main_thread_runs_to_the_end():
    x = _f(64)
    y = np.empty_like(x)
    prog = kexec.Program([kelt.unary(x, y, 1, bind=True) for _ in range(100)], keep=(x, y))
    errors = []

    def work():
        try:
            prog.run()
        except BaseException as e:     # noqa: BLE001
            errors.append(e)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert not errors
    np.testing.assert_array_equal(y, np.maximum(x, 0))
