"""Reading PyTorch checkpoints safely: state dicts only, never arbitrary pickled objects.

``torch.load(path, map_location="cpu", weights_only=True)`` restricts unpickling to
tensors, containers and primitive types, so a hostile or unexpected file cannot run code.
It reads both the zip format (``torch.save`` since 1.6) and the legacy non-zip format.
We then accept:

- a plain state dict ``{name: tensor}``,
- a training checkpoint nesting it under ``"state_dict"``, ``"model_state_dict"``,
  ``"model"``, ``"net"`` or ``"module"`` (other entries such as the optimizer are ignored),
- names prefixed with ``module.`` (``nn.DataParallel``) or ``_orig_mod.`` (``torch.compile``),
  which are stripped.

Anything else (a whole pickled ``nn.Module``, a list, a bare tensor) raises
ConversionError saying what the file holds and how to save a state dict instead.
"""

import os
import pickle
import re
import zipfile

import numpy as np

from ..errors import ConversionError

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
PREFIXES = ("module.", "_orig_mod.")

_HOW = ("save the weights with torch.save(model.state_dict(), path), then convert with "
        "--arch NAME or --module pkg.mod:Class")


def is_torchscript(path):
    """True for a TorchScript archive (torch.jit.save): a zip with code/ and constants.pkl."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith("constants.pkl") for n in names) or \
        any("/code/" in n for n in names)


def load_torch_state_dict(path):
    """The checkpoint's state dict as {name: torch.Tensor} (see the module docstring)."""
    import torch
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConversionError(f"checkpoint {path!r} does not exist")
    if is_torchscript(path):
        raise ConversionError(f"{path}: a TorchScript archive (torch.jit.save), not a state "
                              f"dict; convert it without --arch/--module: "
                              f"engine convert {os.path.basename(path)} -o model.safetensors")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConversionError(_explain_unpickling(path, str(e))) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in msg or "Unsupported global" in str(e):
            raise ConversionError(_explain_unpickling(path, str(e))) from None
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({msg})") from None
    return _state_dict_of(obj, path)


def _explain_unpickling(path, message):
    m = re.search(r"GLOBAL ([\w.]+)", message)
    what = m.group(1) if m else None
    if what and ("Module" in what or "." in what):
        kind = (f"a pickled Python object of class {what} (a whole model saved with "
                f"torch.save(model)?)")
    else:
        kind = "pickled Python objects other than tensors"
    return (f"{path} holds {kind}, not a state dict; loading it would execute arbitrary code, "
            f"so it is refused. Load it in your own code and {_HOW}, or export it with "
            f"torch.jit.save(torch.jit.script(model), path)")


def _describe(obj):
    import torch
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        return f"a dict without tensors at the top level (keys: {keys})"
    return f"a {type(obj).__name__}"


def _is_state_dict(obj):
    import torch
    return isinstance(obj, dict) and all(isinstance(k, str) for k in obj) and \
        all(isinstance(v, torch.Tensor) for v in obj.values())


def _state_dict_of(obj, path):
    import torch
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in NESTED_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                obj = obj[key]
                break
        else:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and len(tensors) >= len(obj) // 2 + 1 and all(
                    isinstance(k, str) for k in tensors):
                obj = tensors              # e.g. a state dict with an extra metadata entry
    if not _is_state_dict(obj):
        raise ConversionError(f"{path} holds {_describe(obj)}, not a state dict "
                              f"(a dict of parameter name -> tensor); {_HOW}")
    out = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def load_state_dict(path):
    """Read a PyTorch checkpoint into {name: numpy array} without running pickled code.

    Floating-point tensors become float32 arrays; integer buffers (``num_batches_tracked``)
    keep their dtype.  Raises ConversionError for files that are not state dicts.
    """
    sd = load_torch_state_dict(path)
    return {k: to_numpy(v) for k, v in sd.items()}


def to_numpy(t):
    t = t.detach().cpu()
    if t.is_floating_point():
        return np.ascontiguousarray(t.float().numpy())
    return np.ascontiguousarray(t.numpy())


def check_state_dict(expected, given, what="the model"):
    """Compare {name: shape} dicts; ConversionError naming every missing, unexpected or
    mis-shaped tensor (with both shapes)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [(k, tuple(expected[k]), tuple(given[k])) for k in expected
             if k in given and tuple(expected[k]) != tuple(given[k])]
    if not (missing or unexpected or wrong):
        return
    lines = [f"the checkpoint does not fit {what}:"]
    for k, want, got in wrong[:20]:
        lines.append(f"  {k}: checkpoint has shape {got}, {what} expects {want}")
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): "
                     + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        lines.append(f"  not in {what} ({len(unexpected)}): "
                     + ", ".join(unexpected[:10]) + (" ..." if len(unexpected) > 10 else ""))
    raise ConversionError("\n".join(lines))
