"""Run-time instruction-set dispatch: detection, ENGINE_ISA, set_isa, show_config, and
prepared kernels staying bound to the level they were prepared (packed) for."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
import engine._kernels as K
from engine._kernels import conv as kconv
from engine._kernels import eltwise as kelt
from engine._kernels import executor as kexec
from engine._kernels import gemm as kgemm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, **env):
    e = dict(os.environ)
    e.pop("ENGINE_ISA", None)
    e.update(env)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def test_levels_and_default():
    avail = K.available_isas()
    assert avail[0] == "scalar" and avail == list(K.ISAS[:len(avail)])
    assert K.max_isa() == avail[-1]
    assert K.cpu_isa() in K.ISAS
    if os.environ.get("ENGINE_ISA", "") in ("", "auto"):
        assert K.get_isa() == K.max_isa()


def test_set_isa_switches_the_default_level():
    start = K.get_isa()
    try:
        for isa in K.available_isas():
            K.set_isa(isa)
            lv = K.isa_level(isa)
            assert K.get_isa() == isa
            assert K._lib._isa_level() == lv
            assert K.build_config()["isa"] == isa
            assert kgemm.blocking()["tile"] == kgemm.blocking(isa)["tile"]
        assert K.set_isa("scalar") == K.available_isas()[-1]   # returns the previous
    finally:
        K.set_isa(start)


def test_set_isa_rejects_unknown_and_unavailable():
    with pytest.raises(ValueError, match="unknown"):
        K.set_isa("sse9")
    with pytest.raises(ValueError):
        K.set_isa(7)
    if K.max_isa() != "avx512":
        with pytest.raises(ValueError, match="not available"):
            K.set_isa("avx512")
    with pytest.raises(ValueError):
        kgemm.gemm_workspace(4, 4, 4, isa="neon")


def test_tiles_per_level():
    tiles = {isa: kgemm.blocking(isa) for isa in K.available_isas()}
    if "avx512" in tiles:
        assert (tiles["avx512"]["mr"], tiles["avx512"]["nr"]) == (14, 32)
    if "avx2" in tiles:
        assert (tiles["avx2"]["mr"], tiles["avx2"]["nr"]) == (6, 16)
    for b in tiles.values():
        assert b["mc"] % b["mr"] == 0


def test_engine_isa_env_forces_a_level():
    for isa in K.available_isas():
        r = _python("import engine._kernels as k; print(k.get_isa(), k.isa_source())",
                    ENGINE_ISA=isa.upper())
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [isa, "ENGINE_ISA"]
    r = _python("import engine._kernels as k; print(k.get_isa())", ENGINE_ISA="auto")
    assert r.stdout.strip() == K.max_isa()


def test_engine_isa_env_errors():
    r = _python("import engine._kernels", ENGINE_ISA="bogus")
    assert r.returncode != 0 and "ENGINE_ISA" in r.stderr and "bogus" in r.stderr
    if K.max_isa() != "avx512":         # a level the CPU lacks is an error, not a fallback
        r = _python("import engine._kernels", ENGINE_ISA="avx512")
        assert r.returncode != 0 and "not available" in r.stderr
    # show_config still works and says why the kernels are unavailable
    r = _python("import engine; engine.show_config()", ENGINE_ISA="bogus")
    assert r.returncode == 0 and "unavailable" in r.stdout


def test_show_config_and_version():
    buf = io.StringIO()
    engine.show_config(file=buf)
    out = buf.getvalue()
    for key in ("isa:", "isa_available:", "threads:", "default_threads:", "gemm_tile:"):
        assert key in out, out
    assert f"isa: {K.get_isa()}" in out
    r = _python("import sys; from engine.cli import main; sys.argv=['engine','--version'];"
                " main()", ENGINE_ISA="scalar")
    assert r.returncode == 0, r.stderr
    assert "isa: scalar" in r.stdout and "threads: pthreads" in r.stdout


def test_packed_operands_stay_bound_to_their_level():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((37, 70)).astype(np.float32)
    B = rng.standard_normal((70, 45)).astype(np.float32)
    ref = A.astype(np.float64) @ B
    start = K.get_isa()
    try:
        packs = {}
        for isa in K.available_isas():
            K.set_isa(isa)
            packs[isa] = kgemm.pack_a(A)
        for cur in K.available_isas():
            K.set_isa(cur)                 # the current level does not matter any more
            for isa, pa in packs.items():
                assert pa.isa_name == isa
                c = np.empty((37, 45), np.float32)
                w = np.empty(kgemm.gemm_workspace(37, 45, 70, a_packed=True, isa=isa),
                             np.float32)
                kgemm.sgemm(pa, B, c, work=w)
                assert np.abs(c - ref).max() < 1e-4 * np.abs(ref).max()
                with pytest.raises(ValueError, match="conflicts"):
                    if isa != cur:
                        kgemm.sgemm(pa, B, c, work=w, isa=cur)
                    else:
                        raise ValueError("conflicts")
        if len(packs) > 1:
            lo, hi = K.available_isas()[0], K.available_isas()[-1]
            with pytest.raises(ValueError, match="different instruction sets"):
                kgemm.sgemm(packs[lo], kgemm.pack_b(B, isa=hi), np.empty((37, 45), np.float32))
    finally:
        K.set_isa(start)


def test_prepared_session_survives_isa_switch():
    """A session prepared at one level keeps its packed weights and workspaces valid when
    the process switches level afterwards."""
    rng = np.random.default_rng(2)
    b = engine.Builder()
    x = b.input("x", (None, 8, 12, 12))
    y = b.relu(b.conv2d(x, rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2,
                        rng.standard_normal(16).astype(np.float32), padding=1))
    y = b.conv2d(y, rng.standard_normal((16, 16, 1, 1)).astype(np.float32) * 0.2)
    y = b.conv2d(y, rng.standard_normal((16, 1, 3, 3)).astype(np.float32), stride=2,
                 padding=1, groups=16)
    y = b.flatten(y, 1)
    y = b.linear(y, rng.standard_normal((10, 16 * 36)).astype(np.float32) * 0.05,
                 rng.standard_normal(10).astype(np.float32))
    b.output(y, "logits")
    model = b.build()
    xin = np.random.default_rng(3).standard_normal((1, 8, 12, 12)).astype(np.float32)
    ref = engine.Session(model, backend="reference").run(xin)[0]
    start = K.get_isa()
    try:
        outs = []
        for isa in K.available_isas():
            K.set_isa(isa)
            sess = engine.Session(model, threads=2)
            sess.prepare()
            for other in K.available_isas():
                K.set_isa(other)
                outs.append(sess.run(xin)[0])
        for o in outs:
            np.testing.assert_allclose(o, outs[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(outs[0], ref, rtol=1e-4, atol=1e-4)
    finally:
        K.set_isa(start)


def _plan_steps(sess):
    """The prebound steps of every plan instance of a session (run at least once)."""
    caps = []
    for plan in sess._plans.values():
        for inst in plan._free:
            for seg in inst.segments:
                if seg[3] is not None:
                    caps.extend(seg[3].capsules)
    return caps


def test_isa_is_a_property_of_the_session():
    """Sessions of one process run at their own levels, side by side, whatever the process
    default is when they prepare a new shape; every step of a plan runs its session's
    level, and the results agree across levels."""
    rng = np.random.default_rng(5)
    b = engine.Builder()
    x = b.input("x", (None, 6, 10, 10))
    y = b.relu(b.conv2d(x, rng.standard_normal((8, 6, 3, 3)).astype(np.float32) * 0.2,
                        padding=1))
    y = b.conv2d(y, rng.standard_normal((8, 1, 3, 3)).astype(np.float32), padding=1, groups=8)
    y = b.max_pool2d(b.add(y, b.sigmoid(y)), 2)
    y = b.softmax(b.flatten(b.adaptive_avg_pool2d(y, 1), 1), 1)
    b.output(y, "y")
    model = b.build()
    xs = [rng.standard_normal((n, 6, 10, 10)).astype(np.float32) for n in (1, 3)]
    ref = [engine.Session(model, backend="reference").run(v)[0] for v in xs]
    start = K.get_isa()
    try:
        sessions = {isa: engine.Session(model, threads=2, isa=isa) for isa in K.available_isas()}
        for i, v in enumerate(xs):
            for isa, sess in sessions.items():
                # (the process default moves under the session: it must not matter)
                K.set_isa(K.available_isas()[(i + K.isa_level(isa)) % len(K.available_isas())])
                np.testing.assert_allclose(sess.run(v)[0], ref[i], rtol=1e-4, atol=1e-6)
        for isa, sess in sessions.items():
            assert sess.isa == isa
            steps = _plan_steps(sess)
            assert len(steps) >= 6 and {kexec.step_isa(c) for c in steps} == {isa}, isa
    finally:
        K.set_isa(start)
    assert engine.Session(model).isa == K.get_isa()
    with pytest.raises(engine.EngineError, match="unknown instruction set"):
        engine.Session(model, isa="sse9")
    with pytest.raises(engine.EngineError, match="cpu backend only"):
        engine.Session(model, backend="reference", isa="scalar")
    if K.max_isa() != "avx512":
        with pytest.raises(engine.EngineError, match="not available"):
            engine.Session(model, isa="avx512")
    with pytest.raises(TypeError, match="engine.step"):
        kexec.step_isa(object())


def test_explicit_isa_arguments():
    """Every workspace-carrying entry point takes isa= (names or levels)."""
    x = np.ones((1, 4, 1, 6, 6), np.float32)
    w = np.ones((8, 4, 1, 3, 3), np.float32)
    y = np.empty((1, 8, 1, 4, 4), np.float32)
    args = ([1, 1, 1], [0, 0, 0], [1, 1, 1])
    for isa in K.available_isas():
        need = kconv.conv_workspace(x.shape, w.shape, y.shape, *args, isa=isa)
        kconv.conv3d(x, w, None, y, *args, work=np.empty(need, np.float32), isa=isa)
        assert np.all(y == 36)
        lv = K.isa_level(isa)
        assert kconv.conv_workspace(x.shape, w.shape, y.shape, *args, isa=lv) == need
    kelt.unary(np.ones(4, np.float32), np.empty(4, np.float32), 1)   # current level


# -- the C headers on their own: x86-64 with every level, and a portable aarch64 build ----

# Shared by the C drivers: the GEMM + bias + relu result against double loops.
GEMM_CHECK_C = r"""
static double gemm_relu_err(int M, int N, int K, const float *A, const float *B,
                            const float *bias, const float *C)
{
    double err = 0;
    int i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            double s = bias[i];
            for (k = 0; k < K; k++) s += (double)A[i * K + k] * B[k * N + j];
            s = s < 0 ? 0 : s;
            if (fabs(s - C[i * N + j]) > err) err = fabs(s - C[i * N + j]);
        }
    return err;
}
"""

C_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "engine/ek_dispatch.h"
/* gemm_relu_err */
/* argv[1]: level; packed-A GEMM with bias + relu, and a padded 3x3 conv, vs double loops */
int main(int argc, char **argv) {
    enum { M = 37, N = 45, K = 70 };
    static float A[M * K], B[K * N], C[M * N], bias[M];
    double err = 0;
    int i, lv = argc > 1 ? atoi(argv[1]) : ek_isa_max_level();
    if (ek_isa_set(lv) < 0) { printf("level %d unavailable\n", lv); return 2; }
    for (i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) - 6.0f;
    for (i = 0; i < K * N; i++) B[i] = (float)((i * 5) % 11) - 5.0f;
    for (i = 0; i < M; i++) bias[i] = (float)(i % 5) - 2.0f;
    {
        float *pa = malloc(sizeof(float) * EK_ISA_SEL(lv, ek_gemm_pack_a_size)(M, K));
        ptrdiff_t ws = EK_ISA_SEL(lv, ek_gemm_workspace)(M, N, K, 1, EK_GEMM_B_MATRIX, 2);
        float *w = malloc(sizeof(float) * (ws + 1));
        ek_sgemm_call a;                        /* the bound entry, through its table */
        ek_gemm_args *g = &a.g;
        memset(&a, 0, sizeof(a));
        EK_ISA_SEL(lv, ek_gemm_pack_a)(M, K, A, K, 0, pa);
        g->M = M; g->N = N; g->K = K; g->A = pa; g->a_packed = 1; g->B = B; g->ldb = N;
        g->C = C; g->ldc = N; g->bias = bias; g->bias_mode = EK_BIAS_ROW;
        g->act = EK_ACT_RELU;
        a.work = w;
        a.nt = 2;
        ek_sgemm_at[lv](&a);
        free(w);
        free(pa);
    }
    err = gemm_relu_err(M, N, K, A, B, bias, C);
    {   /* conv 3x3 pad 1, 5 -> 6 channels, 9 x 11 */
        enum { CI = 5, CO = 6, H = 9, W = 11 };
        static float x[CI * H * W], wt[CO * CI * 9], y[CO * H * W];
        ek_geom3 gm = {1, H, W, 1, 3, 3, 1, H, W, 1, 1, 1, 0, 1, 1, 1, 1, 1};
        ptrdiff_t ws = EK_ISA_SEL(lv, ek_conv_workspace)(CI, CO, 1, &gm, 2);
        float *w = malloc(sizeof(float) * (ws + 1));
        int co, ci, oh, ow, kh, kw;
        for (i = 0; i < CI * H * W; i++) x[i] = (float)((i * 3) % 7) - 3.0f;
        for (i = 0; i < CO * CI * 9; i++) wt[i] = (float)((i * 5) % 9) - 4.0f;
        EK_ISA_SEL(lv, ek_conv3d)(x, wt, NULL, y, 1, CI, CO, 1, &gm, 0, 0, 0, w, 2);
        free(w);
        for (co = 0; co < CO; co++)
            for (oh = 0; oh < H; oh++)
                for (ow = 0; ow < W; ow++) {
                    double s = 0;
                    for (ci = 0; ci < CI; ci++)
                        for (kh = 0; kh < 3; kh++)
                            for (kw = 0; kw < 3; kw++) {
                                int ih = oh + kh - 1, iw = ow + kw - 1;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    s += (double)wt[((co * CI + ci) * 3 + kh) * 3 + kw] *
                                         x[(ci * H + ih) * W + iw];
                            }
                    if (fabs(s - y[(co * H + oh) * W + ow]) > err)
                        err = fabs(s - y[(co * H + oh) * W + ow]);
                }
    }
    printf("level=%d multi=%d err=%g\n", ek_isa_cur, EK_MULTI_ISA, err);
    return err > 1e-3;
}
"""


def _compile(cc, out, tmp_path, extra=()):
    src = tmp_path / "driver.c"
    src.write_text(C_DRIVER.replace("/* gemm_relu_err */", GEMM_CHECK_C))
    r = subprocess.run([cc, "-O2", "-pthread", "-Wall", "-Wno-unused-function", "-Werror",
                        "-I", os.path.join(ROOT, "include"), str(src), "-o", str(out), *extra,
                        "-lm"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout


def test_c_headers_standalone_every_level(tmp_path):
    """No -m flags: the multi-ISA translation unit compiles warning-free and each level
    computes the same GEMM / conv."""
    import shutil
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "driver"
    _compile(cc, exe, tmp_path)
    for lv, isa in enumerate(K.available_isas()):
        r = subprocess.run([str(exe), str(lv)], stdout=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 0 and f"level={lv}" in r.stdout, r.stdout


def test_c_headers_portable_aarch64(tmp_path):
    """The same sources cross-compiled for aarch64 (one level: the NEON kernels) and run
    under qemu (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static).
    A smoke test; tests/test_neon.py checks the NEON kernels case by case, also against
    the portable build (-DEK_NO_NEON)."""
    import shutil
    cc = shutil.which("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if cc is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed")
    exe = tmp_path / "driver_arm"
    _compile(cc, exe, tmp_path, ["-static"])
    if qemu is None:
        pytest.skip("qemu-aarch64 not installed (the cross build itself succeeded)")
    r = subprocess.run([qemu, str(exe)], stdout=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0 and "level=0 multi=0" in r.stdout, r.stdout


PLAIN_DRIVER = r"""
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "engine/ek_all.h"
/* gemm_relu_err */
/* One variant, unsuffixed, from the compiler's own target flags: the bound GEMM entry
   (ek_bind.h) on a small product with bias and relu, against double loops. */
int main(void) {
    enum { M = 19, N = 37, K = 23 };
    static float A[M * K], B[K * N], C[M * N], bias[M], work[1 << 16];
    ek_sgemm_call a;
    double err = 0;
    int i;
    for (i = 0; i < M * K; i++) A[i] = (float)((i * 7) % 13) - 6.0f;
    for (i = 0; i < K * N; i++) B[i] = (float)((i * 5) % 11) - 5.0f;
    for (i = 0; i < M; i++) bias[i] = (float)(i % 5) - 2.0f;
    if (ek_gemm_workspace(M, N, K, 0, EK_GEMM_B_MATRIX, 1) > (1 << 16)) return 3;
    memset(&a, 0, sizeof(a));
    a.g.M = M; a.g.N = N; a.g.K = K; a.g.A = A; a.g.lda = K; a.g.B = B; a.g.ldb = N;
    a.g.C = C; a.g.ldc = N; a.g.bias = bias; a.g.bias_mode = EK_BIAS_ROW;
    a.g.act = EK_ACT_RELU; a.work = work; a.nt = 1;
    ek_sgemm_entry(&a);
    err = gemm_relu_err(M, N, K, A, B, bias, C);
    printf("isa=%d err=%g\n", EK_ISA_LEVEL, err);
    return err > 1e-3;
}
"""


@pytest.mark.parametrize("flags, level", [([], 0), (["-mavx2", "-mfma"], 1),
                                          (["-march=x86-64-v4"], 2)])
def test_c_headers_plain_single_variant(tmp_path, flags, level):
    """The headers included once, without ek_dispatch.h, at the compiler's own target (the
    way ek_common.h documents): no clash between a binding's struct and a kernel's types,
    every tunable defined before the tile file uses it, and the result right."""
    import shutil
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src, exe = tmp_path / "plain.c", tmp_path / "plain"
    src.write_text(PLAIN_DRIVER.replace("/* gemm_relu_err */", GEMM_CHECK_C))
    r = subprocess.run([cc, "-O2", "-pthread", "-Wall", "-Wextra", "-Wno-unused-function",
                        "-Werror", *flags, "-I", os.path.join(ROOT, "include"), str(src), "-o",
                        str(exe), "-lm"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    assert r.returncode == 0, r.stdout
    if K.ISAS[level] not in K.available_isas():
        pytest.skip(f"this CPU cannot run {K.ISAS[level]} (the build itself succeeded)")
    r = subprocess.run([str(exe)], stdout=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0 and f"isa={level}" in r.stdout, r.stdout
