"""Build script of engine: pure-Python package + Cython kernel extensions.

The kernels are C headers (include/engine/*.h) compiled into Cython extension modules
(pyx/_*.pyx -> engine._kernels.<name>).  Flags: -O3, no -ffast-math (NaN / Inf behave as
IEEE), no -march=native (the wheel must run on any x86-64: include/engine/ek_dispatch.h
compiles every kernel for the baseline, AVX2+FMA and AVX-512 through target pragmas in the
same translation unit and picks one by CPUID at import).  OpenMP is used when the
compiler accepts -fopenmp (probed with a tiny program); otherwise the kernels build
single-threaded and a message says so.

    pip install .                       # or: pip install -e . --no-build-isolation
    python setup.py build_ext --inplace
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
KERNEL_MODULES = ("gemm", "conv", "pool", "eltwise", "norm", "spatial", "executor")

OPENMP_TEST = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
#pragma omp parallel for reduction(+:n) num_threads(2)
    for (int i = 0; i < 4; i++) n += omp_get_thread_num() >= 0;
    printf("%d\n", n);
    return n == 4 ? 0 : 1;
}
"""


def _compiler_cmd(build):
    """The C compiler command line distutils will use (list), for probing."""
    cc = build.compiler
    cmd = getattr(cc, "compiler_so", None) or getattr(cc, "compiler", None)
    if cmd:
        return list(cmd)
    return [os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"]


def probe_openmp(build):
    """(compile_args, link_args) for OpenMP, or None when the compiler cannot do it."""
    if os.environ.get("ENGINE_NO_OPENMP"):
        return None
    if build.compiler.compiler_type == "msvc":
        return (["/openmp"], [])
    cmd = _compiler_cmd(build)
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    tmp = tempfile.mkdtemp(prefix="engine-omp-")
    try:
        src = os.path.join(tmp, "t.c")
        exe = os.path.join(tmp, "t.out")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        for cflags, lflags in candidates:
            # compiler_so may carry -fPIC -shared-ish flags; linking an executable is fine.
            args = [a for a in cmd if a not in ("-shared",)]
            try:
                r = subprocess.run(args + cflags + [src, "-o", exe] + lflags,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
                if r.returncode == 0 and subprocess.run([exe], stdout=subprocess.PIPE,
                                                        timeout=30).returncode == 0:
                    return (cflags, lflags)
            except (OSError, subprocess.SubprocessError):
                continue
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    """build_ext with an OpenMP probe, portable optimisation flags and a parallel build."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        omp = probe_openmp(self)
        if omp is None:
            print("*" * 72 + "\nengine: building without OpenMP: kernels run single-threaded\n"
                  + "*" * 72, flush=True)
        else:
            print(f"engine: building with OpenMP ({' '.join(omp[0])})", flush=True)
        msvc = self.compiler.compiler_type == "msvc"
        if msvc:
            cflags = ["/O2", "/fp:precise"]
        else:
            cflags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function",
                      "-Wno-unknown-pragmas"]
            if os.environ.get("ENGINE_DEBUG_BUILD"):
                cflags = ["-O1", "-g", "-fno-omit-frame-pointer", "-Wno-unused-function"]
        for ext in self.extensions:
            ext.extra_compile_args = cflags + (omp[0] if omp else []) + ext.extra_compile_args
            ext.extra_link_args = (omp[1] if omp else []) + ext.extra_link_args
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize
    import numpy as np

    exts = [
        Extension(
            f"engine._kernels.{name}",
            [os.path.join("pyx", f"_{name}.pyx")],
            include_dirs=[os.path.join(ROOT, "include"), np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            depends=[os.path.join("include", "engine", h)
                     for h in os.listdir(os.path.join(ROOT, "include", "engine"))
                     if h.endswith(".h")] + [os.path.join("pyx", "_common.pxi")],
        )
        for name in KERNEL_MODULES
    ]
    return cythonize(
        exts,
        include_path=[os.path.join(ROOT, "pyx")],
        compiler_directives={"language_level": "3", "boundscheck": False,
                             "wraparound": False, "cdivision": True},
        nthreads=os.cpu_count() or 1,
        quiet=True,
    )


setup(
    name="engine",
    version="0.1.0",
    description="A CPU inference engine for convolutional networks",
    packages=find_packages(include=["engine", "engine.*"]),
    package_data={"engine": ["data/*", "backends/cuda/kernels/*.cu", "backends/cuda/kernels/*.cuh",
                            "backends/cuda/emu/*.h"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=["numpy>=1.23"],
    extras_require={"test": ["pytest", "hypothesis"], "torch": ["torch==2.13.0"],
                    "image": ["pillow"],
                    # the GPU backend (docs/cuda.md); CUDA 13 drivers: pip install cupy-cuda13x
                    "cuda": ["cupy-cuda12x"]},
    entry_points={"console_scripts": ["engine = engine.cli:main"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
