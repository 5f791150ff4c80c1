"""Whether the GPU path can run here, with a message that says what is missing."""

import os

INSTALL_HINT = ("install the optional GPU part with: pip install 'engine[cuda]' (CuPy for "
                "CUDA 12: cupy-cuda12x; for a CUDA 13 driver install cupy-cuda13x instead; "
                "see docs/cuda.md)")


def emulating():
    """ENGINE_CUDA_EMULATE=1: run backend='cuda' on the CPU emulator (tests without a GPU)."""
    return os.environ.get("ENGINE_CUDA_EMULATE", "").strip() not in ("", "0")


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def import_cupy():
    """CuPy, or ImportError saying how to install it."""
    try:
        import cupy
    except ImportError as e:
        raise ImportError(f"CuPy is not installed ({_first_line(e)}); {INSTALL_HINT}") from None
    except Exception as e:          # a broken install (wrong CUDA wheel, missing libraries)
        raise ImportError(f"CuPy failed to import: {_first_line(e)}; {INSTALL_HINT}") from None
    return cupy


def device_count():
    """Number of visible CUDA GPUs; ImportError when CuPy or a usable driver / GPU is missing."""
    cupy = import_cupy()
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:
        raise ImportError(f"CuPy {getattr(cupy, '__version__', '?')} is installed but no CUDA "
                          f"GPU is usable: {_first_line(e)} (is there an NVIDIA GPU and driver? "
                          f"nvidia-smi should list it; a driver older than the CuPy wheel's "
                          f"CUDA needs the matching cupy-cuda12x / cupy-cuda13x)") from None
    if n < 1:
        raise ImportError("CuPy is installed but no CUDA GPU is visible (check "
                          "CUDA_VISIBLE_DEVICES and nvidia-smi)")
    return n


def require():
    """Raise ImportError unless the GPU path can run (or the emulator is requested)."""
    if emulating():
        return
    device_count()
