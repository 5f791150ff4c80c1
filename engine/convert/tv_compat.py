"""Import torchvision even when its compiled ops do not load (a CPU-only torch build).

torchvision 0.28's ``_meta_registrations`` registers fake kernels for the operators
``torchvision::nms`` and ``torchvision::qnms``; when the C++ extension failed to load,
those schemas do not exist and the import dies with "operator torchvision::nms does not
exist".  Conversion only needs the model definitions (plain ``torch.nn``), to verify a
converted model against, so the two schemas (signatures as in torchvision's
``csrc/ops/nms.cpp`` / ``quantized/cpu/qnms``) are defined before importing.  The ops
themselves are never called.  Used by the converter, the tests and tools/bench.py.

    from engine.convert.tv_compat import import_torchvision
    torchvision = import_torchvision()          # or None when torch/torchvision are missing
"""

_LIB = None          # keep the Library object alive: dropping it unregisters the schemas


def _define_missing_schemas(torch):
    global _LIB
    if _LIB is not None:
        return
    existing = set()
    for name in ("nms", "qnms"):
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
            existing.add(name)
        except Exception:       # noqa: BLE001  (not defined: the usual case without the .so)
            pass
    todo = {"nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
    todo = {k: v for k, v in todo.items() if k not in existing}
    if not todo:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in todo.values():
        lib.define(schema)
    _LIB = lib


def import_torchvision():
    """``torchvision`` (importing it with the workaround if needed), or None if absent."""
    return torchvision_or_why()[0]


def torchvision_or_why():
    """(torchvision, None), or (None, why it cannot be imported)."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    try:
        import torchvision
        return torchvision, None
    except ImportError:
        return None, "torchvision is not installed"
    except RuntimeError:
        pass
    import sys
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]            # a half-imported package from the failed attempt
    _define_missing_schemas(torch)
    try:
        import torchvision
    except (ImportError, RuntimeError) as e:
        return None, f"torchvision failed to import ({type(e).__name__}: {e})"
    return torchvision, None
