"""The CUDA backend's runtime hooks: ``build_plan`` and ``feed_array`` (see engine.Session).

``build_plan`` prepares the device program once per input shape (planner.py) and binds it
to a GPU (device.py) or, with ENGINE_CUDA_EMULATE=1, to the CPU emulator (emulator.py).

Options (``options`` dict of build_plan; Session passes ``{"device": d}``) and environment:
  device            GPU index (default: CuPy's current device, normally 0)
  winograd          "auto" | "always" | "never"  (env ENGINE_CUDA_WINOGRAD)
  workspace_bytes   im2col / Winograd chunk budget (env ENGINE_CUDA_WORKSPACE_MB, 256)
  cuda_graph        capture repeated runs as a CUDA graph (env ENGINE_CUDA_GRAPH=0 turns off)
  zero_copy         place concat inputs / split pieces in place (default True)
  guard             emulator only: bytes between buffers to catch out-of-bounds writes
"""

import os

from ...errors import InputError, UnsupportedError
from .availability import emulating, import_cupy
from .planner import build_program

_WINOGRAD = {"": "auto", "auto": "auto", "1": "always", "always": "always", "on": "always",
             "0": "never", "never": "never", "off": "never"}


def _settings(options):
    wino = options.get("winograd", os.environ.get("ENGINE_CUDA_WINOGRAD", "auto"))
    wino = _WINOGRAD.get(str(wino).strip().lower())
    if wino is None:
        raise ValueError("winograd must be 'auto', 'always' or 'never' (ENGINE_CUDA_WINOGRAD)")
    ws = options.get("workspace_bytes")
    if ws is None:
        ws = int(float(os.environ.get("ENGINE_CUDA_WORKSPACE_MB", "256")) * 2**20)
    graph = options.get("cuda_graph")
    if graph is None:
        graph = os.environ.get("ENGINE_CUDA_GRAPH", "1").strip() not in ("0", "false", "no")
    return {"winograd": wino, "workspace_bytes": max(int(ws), 1 << 20),
            "cuda_graph": bool(graph), "zero_copy": bool(options.get("zero_copy", True))}


def build_plan(model, input_shapes, backend, threads, keep=(), options=None):
    options = dict(options or {})
    s = _settings(options)
    if emulating():
        from .emulator import EmulatedPlan, emu_target
        target = emu_target(winograd=s["winograd"],
                            **({"workspace_bytes": options["workspace_bytes"]}
                               if "workspace_bytes" in options else {}))
        program = build_program(model, input_shapes, keep, target, s["zero_copy"],
                                guard=int(options.get("guard", 0)))
        return EmulatedPlan(program)
    from .device import DevicePlan, device_target, resolve_device
    dev = resolve_device(options.get("device"))
    target = device_target(dev, winograd=s["winograd"], workspace_bytes=s["workspace_bytes"])
    program = build_program(model, input_shapes, keep, target, s["zero_copy"])
    return DevicePlan(program, dev, use_graph=s["cuda_graph"])


def feed_array(name, obj):
    """A non-NumPy input as a CuPy array without a host round trip: CuPy arrays as they
    are, other CUDA arrays through DLPack (stream-ordered) or __cuda_array_interface__."""
    if emulating():
        raise InputError(f"input {name!r}: the CUDA emulator takes numpy.ndarray inputs, got "
                         f"{type(obj).__name__}")
    cupy = import_cupy()
    if isinstance(obj, cupy.ndarray):
        return obj
    errors = []
    if hasattr(obj, "__dlpack__"):
        try:
            return cupy.from_dlpack(obj)
        except Exception as e:
            errors.append(f"DLPack: {str(e).strip().splitlines()[0] if str(e).strip() else e}")
    if hasattr(obj, "__cuda_array_interface__"):
        try:
            return cupy.asarray(obj)          # wraps the memory, no copy
        except Exception as e:
            errors.append(f"__cuda_array_interface__: {e}")
    why = f" ({'; '.join(errors)})" if errors else ""
    raise InputError(f"input {name!r}: expected a numpy.ndarray or a CUDA device array (CuPy, "
                     f"PyTorch CUDA tensor, anything with __dlpack__ or "
                     f"__cuda_array_interface__), got {type(obj).__name__}{why}")


__all__ = ["build_plan", "feed_array", "UnsupportedError"]
