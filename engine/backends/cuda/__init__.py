"""The CUDA backend: ``engine.Session(model, backend="cuda", device=0)``.

Optional: the CPU engine never imports this package unless a session asks for "cuda".  It
needs CuPy (``pip install 'engine[cuda]'``) and a visible NVIDIA GPU; importing it raises
ImportError saying which is missing (the session reports that as UnsupportedError).
``ENGINE_CUDA_EMULATE=1`` runs the same device programs on the CPU emulator instead (tests).

Layout:
  kernels/*.cu      the CUDA C++ kernels (compiled by NVRTC at prepare time, cached by CuPy)
  sources.py        reading them, parsing kernel signatures
  program.py        device programs as data: pointers, launches, GEMMs, copies
  kernels.py        one factory per op (registered as backend "cuda" kernels)
  planner.py        graph -> program: zero-copy views, memory plan, records
  device.py         executing a program with CuPy: streams, cuBLAS, CUDA graphs, DLPack
  emulator.py       executing a program on the CPU (tests without a GPU)
  plan.py           the runtime hooks build_plan / feed_array
"""

from .availability import require as _require

_require()          # ImportError with a clear message when CuPy or a GPU is missing

from . import kernels  # noqa: E402,F401  (registers the "cuda" kernels)
from .plan import build_plan, feed_array  # noqa: E402,F401

__all__ = ["build_plan", "feed_array"]
