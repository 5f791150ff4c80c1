"""PyTorch and ONNX -> engine conversion.

PyTorch needs ``torch`` (``pip install engine[torch]``), ONNX the ``onnx`` package
(``pip install engine[onnx]``; ``from_onnx``, see ``onnx_import``).

    from engine.convert import from_torch, load_state_dict, convert_checkpoint
    model = from_torch(net, torch.randn(1, 3, 224, 224))          # a live nn.Module
    model = convert_checkpoint("weights.pth", arch="resnet50")     # zoo architecture
    model = convert_checkpoint("weights.pth", module="pkg.models:Net",
                               input_shape=(1, 3, 224, 224))       # your class
    model = convert_checkpoint("model.pt", input_shape=(1, 3, 224, 224))   # TorchScript

Importing this package does not import torch; each function imports it when called, so
``import engine`` and running converted models never need PyTorch.

Pieces: ``trace`` (torch.export frontend and the graph walker), ``aten_ops`` (the mapping
table, one handler per ATen op), ``torchscript`` (TorchScript archives), ``checkpoint``
(safe state-dict loading).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

from ..errors import ConversionError
from ..ir import Model

__all__ = ["from_torch", "from_onnx", "to_onnx", "is_onnx_file", "verify_onnx", "from_torchscript", "load_state_dict", "convert_checkpoint",
           "supported_ops", "verify", "ConversionError"]


def _need_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConversionError("converting PyTorch models needs PyTorch: "
                              "pip install 'engine[torch]'") from None


def from_torch(module: Any, example_input: Any, *, input_names: Optional[Sequence[str]] = None,
               output_names: Optional[Sequence[str]] = None,
               names: Optional[Mapping[str, str]] = None,
               metadata: Optional[Mapping[str, Any]] = None, dynamic_batch: bool = True,
               progress: Optional[Callable[[str], Any]] = None) -> Model:
    """Trace ``module`` (a ``torch.nn.Module``) with torch.export and map it to an engine
    Model.

    ``example_input``: a tensor (or tuple of tensors) of the input shape; dim 0 is the batch
    and is symbolic in the result.  ``names``: {module path: node name} renames.
    ``progress``: called with a line of text per stage.  Raises ConversionError listing
    every unsupported op with module path and source line.  See ``engine.convert.trace``
    for the details."""
    _need_torch()
    from .trace import from_torch as impl
    return impl(module, example_input, input_names=input_names, output_names=output_names,
                names=names, metadata=metadata, dynamic_batch=dynamic_batch, progress=progress)


def from_onnx(src: Union[str, os.PathLike, bytes, Any], *,
              input_shape: Union[Sequence[int], dict[str, Sequence[int]], None] = None,
              dynamic_batch: bool = True, metadata: Optional[Mapping[str, Any]] = None,
              ) -> Model:
    """An engine Model from an ONNX model: a path, the file's bytes or an onnx.ModelProto
    (see ``engine.convert.onnx_import``).  ``input_shape`` fixes dims the file leaves
    symbolic (a shape, or {input name: shape}); a symbolic dim 0 stays the symbolic batch
    while ``dynamic_batch``.  Raises ConversionError listing every op it cannot map."""
    from .onnx_import import from_onnx as impl
    return impl(src, input_shape=input_shape, dynamic_batch=dynamic_batch, metadata=metadata)


def to_onnx(model):
    """An onnx.ModelProto computing ``model`` (``engine export``; raises UnsupportedError
    listing every op the exporter cannot express)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConversionError("exporting to ONNX needs the onnx package: "
                              "pip install 'engine[onnx]'") from None
    from ..peers import to_onnx as impl
    return impl(model)


def is_onnx_file(path):
    """Whether ``path`` names an ONNX model (by its name or its first bytes)."""
    from .onnx_import import is_onnx_file as impl
    return impl(path)


def verify_onnx(model, path, inputs, backend="cpu", threads=None):
    """(max abs diff, max rel diff) between ``model`` and ONNX Runtime running ``path``."""
    from .onnx_import import verify as impl
    return impl(model, path, inputs, backend=backend, threads=threads)


def onnx_verification_note():
    """None when ONNX Runtime can verify an import, else why not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "ONNX Runtime is not installed: pip install onnxruntime"
    return None


def from_torchscript(ts, example_input, *, input_names=None, output_names=None,
                     metadata=None, progress=None):
    """Convert a TorchScript module or ``torch.jit.save`` archive (see torchscript.py)."""
    _need_torch()
    from .torchscript import from_torchscript as impl
    return impl(ts, example_input, input_names=input_names, output_names=output_names,
                metadata=metadata, progress=progress)


def load_state_dict(path):
    """{name: numpy array} from a PyTorch checkpoint, loaded with weights_only=True."""
    _need_torch()
    from .checkpoint import load_state_dict as impl
    return impl(path)


def supported_ops():
    """The ATen ops (overload packets) the converter maps."""
    from .aten_ops import supported_ops as impl
    return impl()


def verify(model, reference, inputs, backend="cpu", threads=None):
    """(max abs diff, max rel diff) between ``model`` and a torch callable on ``inputs``."""
    _need_torch()
    from .trace import verify as impl
    return impl(model, reference, inputs, backend=backend, threads=threads)


def import_class(spec):
    """The class named by 'package.module:Class' (or 'package.module.Class')."""
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
    else:
        mod_name, _, attr = spec.rpartition(".")
    if not mod_name or not attr:
        raise ConversionError(f"--module expects 'package.module:Class', got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConversionError(f"cannot import {mod_name!r} ({e}); is it on PYTHONPATH?") \
            from None
    except Exception as e:          # the user's module failed while importing
        raise ConversionError(f"importing {mod_name!r} failed: {type(e).__name__}: {e}") \
            from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConversionError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def instantiate(spec, state_dict=None):
    """Import the class, build it with no arguments, load the state dict; eval mode."""
    import torch
    from .checkpoint import check_state_dict
    cls = import_class(spec)
    try:
        net = cls()
    except TypeError as e:
        raise ConversionError(f"cannot instantiate {spec} with no arguments ({e}); give "
                              f"its constructor defaults or a factory function") from None
    except Exception as e:
        raise ConversionError(f"{spec}() raised {type(e).__name__}: {e}") from None
    if not isinstance(net, torch.nn.Module):
        raise ConversionError(f"{spec} built a {type(net).__name__}, not a torch.nn.Module")
    if state_dict is not None:
        own = net.state_dict()
        state_dict = dict(state_dict)
        for k, v in own.items():       # older checkpoints lack BatchNorm's counter
            if k.endswith("num_batches_tracked") and k not in state_dict:
                state_dict[k] = v
        expected = {k: tuple(v.shape) for k, v in own.items()}
        check_state_dict(expected, {k: tuple(v.shape) for k, v in state_dict.items()},
                         what=spec)
        net.load_state_dict(state_dict)
    return net.eval()


def _torch_input(shape, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def convert_checkpoint(path, *, arch=None, module=None, input_shape=None, num_classes=None,
                       input_size=None, metadata=None, progress=None):
    """Convert a checkpoint file to an engine Model.

    - ``arch``: a state dict loaded into ``engine.zoo.get(arch, weights=...)``;
    - ``module``: 'pkg.mod:Class' built with no arguments, given the state dict, traced
      with ``input_shape``;
    - neither: a TorchScript archive, traced with ``input_shape``.
    """
    return _convert(path, arch=arch, module=module, input_shape=input_shape,
                    num_classes=num_classes, input_size=input_size, metadata=metadata,
                    progress=progress)[0]


def _convert(path, *, arch=None, module=None, input_shape=None, num_classes=None,
             input_size=None, metadata=None, progress=None, dynamic_batch=True):
    """(model, torch reference callable or None, note) -- the CLI's workhorse."""
    _need_torch()
    from .checkpoint import is_torchscript, load_torch_state_dict
    say = progress or (lambda msg: None)
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConversionError(f"{path!r} does not exist")
    if arch and module:
        raise ConversionError("give either --arch or --module, not both")
    if arch and not dynamic_batch:
        raise ConversionError(f"--fixed-batch applies to --module and ONNX conversions; "
                              f"{arch} from the zoo always takes any batch size")
    if arch and input_shape is not None:
        raise ConversionError(f"--input-shape applies to --module and TorchScript files; "
                              f"{arch} takes its input size from --input-size H[,W]")
    if arch:
        try:
            from .. import zoo
        except ImportError:
            raise ConversionError("the model zoo (engine.zoo) is not available") from None
        if arch not in zoo.names():
            raise ConversionError(f"unknown architecture {arch!r}; known: "
                                  f"{', '.join(zoo.names())}")
        say(f"loading checkpoint {path}")
        sd = load_torch_state_dict(path)
        n = sum(int(v.numel()) for v in sd.values())
        say(f"  {len(sd)} tensors, {n:,} values; building {arch}")
        from .checkpoint import to_numpy
        kwargs = {}
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        if input_size is not None:
            kwargs["input_size"] = tuple(input_size)
        model = zoo.get(arch, weights={k: to_numpy(v) for k, v in sd.items()}, **kwargs)
        model.metadata.update(metadata or {})
        ref, note = _torchvision_twin(arch, sd, num_classes)
        return model, ref, note
    if module:
        if input_shape is None:
            raise ConversionError("--module needs --input-shape (e.g. --input-shape 1,3,224,224)")
        say(f"loading checkpoint {path}")
        sd = load_torch_state_dict(path)
        say(f"  {len(sd)} tensors; building {module}")
        net = instantiate(module, sd)
        model = from_torch(net, _torch_input(input_shape), metadata=metadata, progress=say,
                           dynamic_batch=dynamic_batch)
        return model, net, None
    if is_torchscript(path):
        if input_shape is None:
            raise ConversionError("converting TorchScript needs --input-shape "
                                  "(e.g. --input-shape 1,3,224,224)")
        if not dynamic_batch:
            raise ConversionError("--fixed-batch applies to --module and ONNX conversions; "
                                  "a TorchScript file converts with a symbolic batch")
        from .torchscript import load_torchscript
        say(f"loading TorchScript archive {path}")
        ts = load_torchscript(path)
        model = from_torchscript(ts, _torch_input(input_shape), metadata=metadata,
                                 progress=say)
        return model, ts, None
    load_torch_state_dict(path)        # a clear error if it is not a state dict at all
    raise ConversionError(f"{path} is a state dict (weights only); say which architecture "
                          f"it belongs to: --arch NAME (see engine.zoo.names()) or "
                          f"--module package.module:Class")


def _torchvision_twin(arch, sd, num_classes):
    """torchvision's model with these weights, to verify against; (None, why) if absent."""
    from .tv_compat import torchvision_or_why
    torchvision, why = torchvision_or_why()
    if torchvision is None:
        return None, f"no PyTorch twin to compare with: {why}"
    try:
        builder = torchvision.models.get_model_builder(arch)
    except Exception:       # noqa: BLE001  (torchvision has no such model)
        return None, f"no PyTorch twin to compare with: torchvision has no model {arch!r}"
    try:
        kw = {"num_classes": num_classes} if num_classes else {}
        if not num_classes:
            for key in ("fc.weight", "classifier.weight", "classifier.1.weight",
                        "classifier.6.weight", "classifier.3.weight", "head.weight"):
                if key in sd:
                    kw["num_classes"] = int(sd[key].shape[0])
                    break
        net = builder(weights=None, **kw)
        net.load_state_dict(sd)
        return net.eval(), None
    except Exception as e:
        return None, f"torchvision's {arch} could not load these weights ({type(e).__name__})"
