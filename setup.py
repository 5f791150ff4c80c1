"""Build script of engine: pure-Python package + Cython kernel extensions.

The kernels are C headers (include/engine/) compiled once into one Cython extension module
(pyx/_lib.pyx, which includes the bindings pyx/<family>.pxi -> engine._kernels._lib).  Flags: -O3, no -ffast-math (NaN / Inf behave as
IEEE), no -march=native (the wheel must run on any x86-64: include/engine/ek_dispatch.h
compiles every kernel for the baseline, AVX2+FMA and AVX-512 through target pragmas in the
same translation unit and picks one by CPUID at import).  Threads: the kernels' own pool
(include/engine/ek_threadpool.h, pthreads; OpenMP with MSVC), compiled into the same module.

    pip install .                       # or: pip install -e . --no-build-isolation
    python setup.py build_ext --inplace
"""

import os

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class BuildExt(build_ext):
    """build_ext with portable optimisation flags and a parallel build."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        if msvc:
            # no pthreads: the thread pool falls back to OpenMP (ek_threadpool.h)
            cflags, lflags = ["/O2", "/fp:precise", "/openmp"], []
        else:
            cflags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function",
                      "-Wno-unknown-pragmas", "-pthread"]
            lflags = ["-pthread"]
            if os.environ.get("ENGINE_DEBUG_BUILD"):
                cflags = ["-O1", "-g", "-fno-omit-frame-pointer", "-Wno-unused-function",
                          "-pthread"]
        for ext in self.extensions:
            ext.extra_compile_args = cflags + ext.extra_compile_args
            ext.extra_link_args = lflags + ext.extra_link_args
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize
    import numpy as np

    headers = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(ROOT, "include"))
               for f in files if f.endswith(".h")]
    bindings = [os.path.join("pyx", f) for f in os.listdir(os.path.join(ROOT, "pyx"))
                if f.endswith(".pxi")]
    exts = [
        Extension(
            "engine._kernels._lib",
            [os.path.join("pyx", "_lib.pyx")],
            include_dirs=[os.path.join(ROOT, "include"), np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            depends=headers + bindings,
        )
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
    package_data={"engine": ["py.typed", "data/*", "backends/cuda/kernels/*.cu",
                             "backends/cuda/kernels/*.cuh", "backends/cuda/emu/*.h"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=["numpy>=1.23"],
    extras_require={"test": ["pytest", "hypothesis"], "torch": ["torch==2.13.0"],
                    "image": ["pillow", "tqdm"],   # tqdm: the progress bar of folder runs
                    "onnx": ["onnx"],
                    # engine.ray and `engine run DIR --ray`: Ray Data (brings pyarrow)
                    "ray": ["ray[data]>=2.9", "pillow"],
                    # the GPU backend (docs/cuda.md); CUDA 13 drivers: pip install cupy-cuda13x
                    "cuda": ["cupy-cuda12x"]},
    entry_points={"console_scripts": ["engine = engine.cli:main"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    zip_safe=False,
)
