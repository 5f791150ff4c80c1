"""ARM NEON kernels (aarch64), checked without ARM hardware: the C test driver
tests/c/neon_check.c is cross-compiled with ``aarch64-linux-gnu-gcc -O2 -static`` twice,
with the NEON paths (the default on aarch64) and with -DEK_NO_NEON (the portable code),
and both are run under ``qemu-aarch64(-static)``.  The driver is also built natively, so on
x86-64 it checks every ISA level this CPU runs with the same cases.

What the driver checks (see its header): the packed GEMM over odd M / N / K with every
tail, transposes, packed / unpacked operands, bias modes, residual, accumulate, every
activation and two thread counts (bit-identical results required); im2col / pointwise
convolutions; depthwise (fast and general paths); max / min / avg pooling with NaN; unary
activations with NaN / inf / +-0; the per-channel affine.  Each case against a naive
double-precision reference:

    max|got - ref| <= TOL * max(1, max|ref|)    TOL = 1e-5 (GEMM, conv), 8e-6 (depthwise),
                                                2e-6 (the others; unary: per element)

NaN exactly where the reference has NaN, equal infinities.  Here, in addition, the NEON
build's outputs are compared with the portable build's, case by case (``--dump``).

Debian packages: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static (.ci/run
installs them when it can); without them the aarch64 tests skip with the reason.
"""

import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests", "c", "neon_check.c")
FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-function", "-Werror",
         "-I", os.path.join(ROOT, "include")]
TOL = {"gemm": 1e-5, "conv": 1e-5, "depthwise": 8e-6}


def _start_build(cc, out, extra=()):
    cmd = [cc, *FLAGS, "-pthread", *extra, SRC, "-o", str(out), "-lm"]
    return cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)


# a toolchain without its C library (headers or static archives) cannot build anything
_NO_LIBC = ("stdio.h: No such file", "stdlib.h: No such file", "cannot find -lc",
            "cannot find -lm", "cannot find crt1.o")


def _build_all(jobs):
    """jobs: {name: (cc, out, extra)}; compiled in parallel.  Skips when the C library is
    missing."""
    procs = {k: _start_build(cc, out, extra) for k, (cc, out, extra) in jobs.items()}
    for k, (cmd, p) in procs.items():
        log = p.communicate(timeout=600)[0]
        if p.returncode != 0 and any(m in log for m in _NO_LIBC):
            pytest.skip(f"{jobs[k][0]} has no usable C library (Debian: libc6-dev-arm64-cross "
                        f"for aarch64): {log.strip().splitlines()[-1]}")
        assert p.returncode == 0, f"{' '.join(cmd)}\n{log}"


def _read_dump(path):
    """[(tag, scale, float32 array)] from a --dump file."""
    data = open(path, "rb").read()
    out, o = [], 0
    while o < len(data):
        (n_tag,) = struct.unpack_from("<i", data, o)
        o += 4
        tag = data[o:o + n_tag].decode()
        o += n_tag
        n, scale = struct.unpack_from("<if", data, o)
        o += 8
        out.append((tag, scale, np.frombuffer(data, np.float32, n, o).copy()))
        o += 4 * n
    return out


def test_driver_native(tmp_path):
    """The driver built for this machine (x86-64: scalar, avx2, avx512 as the CPU allows)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path / "neon_check"
    _build_all({"native": (cc, exe, ())})
    r = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    assert r.returncode == 0 and ", 0 failed: OK" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    """Both aarch64 builds, run under qemu side by side:
    {"neon" | "portable": (exit status, output, dump file)}."""
    cc = shutil.which("aarch64-linux-gnu-gcc")
    if cc is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed (Debian: gcc-aarch64-linux-gnu "
                    "libc6-dev-arm64-cross)")
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    d = tmp_path_factory.mktemp("neon")
    builds = {"neon": (cc, d / "neon_check_neon", ["-static"]),
              "portable": (cc, d / "neon_check_portable", ["-static", "-DEK_NO_NEON"])}
    _build_all(builds)
    if qemu is None:
        pytest.skip("qemu-aarch64 not installed (Debian: qemu-user-static); the cross "
                    "builds themselves succeeded")
    procs = {k: subprocess.Popen([qemu, str(exe), "--dump", str(d / f"{k}.bin")],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k, (_, exe, _) in builds.items()}
    res = {}
    for k, p in procs.items():
        out = p.communicate(timeout=900)[0]
        res[k] = (p.returncode, out, d / f"{k}.bin")
    return res


def test_aarch64_neon(arm):
    rc, out, _ = arm["neon"]
    assert "EK_NEON=1" in out and "gemm neon intrinsics, tile 8x12" in out, out
    assert rc == 0 and ", 0 failed: OK" in out, out


def test_aarch64_portable(arm):
    rc, out, _ = arm["portable"]
    assert "EK_NEON=0" in out and "portable (vector extensions)" in out, out
    assert rc == 0 and ", 0 failed: OK" in out, out


def test_aarch64_neon_vs_portable(arm):
    """Case by case, NEON against the portable build: NaN / inf in the same places, and
    |neon - portable| <= TOL * scale for the kernels with their own NEON code (GEMM, conv
    through it, depthwise; summation orders differ).  Max / min pooling selects the same
    elements (FMAX could differ from the select only in the sign of a zero tie, which the
    random data never has) and the rest runs the same C, so those must be bit-identical."""
    a, b = _read_dump(arm["neon"][2]), _read_dump(arm["portable"][2])
    assert [t for t, _, _ in a] == [t for t, _, _ in b]
    assert len(a) > 1500
    worst = {}
    for (tag, scale, x), (_, _, y) in zip(a, b):
        kind = tag.split()[0]
        nx, ny = np.isnan(x), np.isnan(y)
        assert np.array_equal(nx, ny), f"{tag}: NaN positions differ"
        ix, iy = np.isinf(x), np.isinf(y)
        assert np.array_equal(ix, iy) and np.array_equal(x[ix], y[iy]), f"{tag}: inf differ"
        fin = ~(nx | ix)
        if kind in TOL:
            err = float(np.abs(x[fin].astype(np.float64) - y[fin]).max(initial=0.0)) / scale
            assert err <= TOL[kind], f"{tag}: NEON vs portable {err:.3g} > {TOL[kind]}"
            worst[kind] = max(worst.get(kind, 0.0), err)
        else:
            assert np.array_equal(x[fin], y[fin]), f"{tag}: NEON and portable differ"
    assert set(worst) == set(TOL)
