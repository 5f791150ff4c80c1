"""Backends: kernels registered per (backend, op, variant); see ``base``.

Backends load lazily, so ``import engine`` never needs a compiler-built extension or CUDA
unless a session asks for that backend.
"""

import importlib

from .base import KERNELS, kernels_for, load_backend, register_backend, register_kernel  # noqa: F401

register_backend("reference", lambda: importlib.import_module(".reference", __name__))
register_backend("cpu", lambda: importlib.import_module(".cpu", __name__))
register_backend("cuda", lambda: importlib.import_module(".cuda", __name__))
