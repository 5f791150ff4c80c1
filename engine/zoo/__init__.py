"""Model zoo: every architecture of the course, written with the Builder.

    import engine, engine.zoo
    model = engine.zoo.get("resnet50")                          # random weights
    model = engine.zoo.get("resnet50", weights=torch_model.state_dict())
    model = engine.zoo.get("resnet50", weights="resnet50.pth")  # a checkpoint file
    emb, = engine.Session(model).run(x, outputs=["avgpool"])   # any layer, by module path

Parameter names are torchvision's wherever torchvision has the model (so its state dicts
load as they are); the other architectures name their parameters as the PyTorch twins in
``tests/torch_twins.py`` do.  Node names are the module paths (``layer1.0.conv1``), with
``_1``, ``_2`` for parameter-free modules used again and FX-style names for functional
ops (``layer1.0.add``, ``flatten``), as torchvision's ``get_graph_node_names`` lists them.

``get(name, weights=None, num_classes=None, input_size=None, **options)``:

- ``weights=None``: deterministic random weights seeded from the name (He-normal, so
  activations stay O(1)); BatchNorm running statistics are random too (mean ~ N(0, 0.1),
  var ~ U(0.5, 1.5)), so folding mistakes show.
- ``weights=dict`` (``{name: ndarray or torch tensor}``, or a module with ``state_dict()``):
  loaded; a wrong shape, missing or unexpected names raise ``engine.ConversionError``
  listing every problem at once (``num_batches_tracked`` and training-only auxiliary heads
  are ignored; a DataParallel ``module.`` prefix is stripped).
- ``weights=path``: a checkpoint read by ``engine.convert.load_state_dict``.
- ``num_classes``: size of the classifier (default: the architecture's, or read from the
  given weights); ``input_size``: ``H`` or ``(H, W)`` where the architecture allows it.

The input is ``"input"`` of shape ``(None, C, H, W)``; the output ``"logits"`` for
classifiers, ``"out"`` for segmentation networks and the autoencoder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Optional, Union

from ..errors import ConversionError, GraphError
from ..ir import Model
from ._core import IMAGENET, REGISTRY, Arch, Net, Params, normalize_state_dict, register  # noqa: F401
from . import (classic, vgg, googlenet, resnet, mobilenet, shufflenet, squeezenet,  # noqa: F401
               densenet, segmentation, autoencoder)

__all__ = ["names", "get", "info", "register"]


def names() -> list[str]:
    """Sorted names of the zoo's architectures."""
    return sorted(REGISTRY)


def info(name: str) -> Arch:
    """The registry entry (default input size, classes, options...) of ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise GraphError(f"unknown zoo model {name!r}; known: {', '.join(names())}") from None


def _input_hw(arch, input_size):
    """(H, W) and the channel count asked for (None: not given)."""
    default = tuple(arch.input_size[1:])
    channels = None
    if input_size is None:
        hw = default
    elif isinstance(input_size, int):
        hw = (input_size, input_size)
    else:
        hw = tuple(int(s) for s in input_size)
        if len(hw) == 3:            # (C, H, W): C is checked once the input exists
            channels, hw = hw[0], hw[1:]
        if len(hw) != 2:
            raise GraphError(f"input_size must be H, (H, W) or (C, H, W), got {input_size!r}")
    if arch.fixed_input and hw != tuple(default):
        raise GraphError(f"{arch.name} needs a {default[0]}x{default[1]} input (its classifier "
                         f"is sized for it), got {hw[0]}x{hw[1]}")
    m = arch.size_multiple
    if hw[0] % m or hw[1] % m:
        raise GraphError(f"{arch.name} needs H and W divisible by {m}, got {hw[0]}x{hw[1]}")
    return hw, channels


def _load_weights(weights, arch):
    if weights is None:
        return None
    if isinstance(weights, (str, os.PathLike)):
        try:
            from ..convert import load_state_dict
        except ImportError as e:
            raise ConversionError(f"reading checkpoint files needs engine.convert ({e})") from None
        weights = load_state_dict(weights)
    return normalize_state_dict(weights, arch.ignore_prefixes)


MAX_CLASSES = 1_000_000


def get(name: str, weights: Any = None, num_classes: Optional[int] = None,
        input_size: Union[int, Sequence[int], None] = None, **options: Any) -> Model:
    """Build the zoo model ``name`` as an ``engine.Model`` (see the module docstring).

    ``weights``: None (seeded random), a state dict ({name: array or torch tensor}), a
    module with ``state_dict()``, or a checkpoint path; ``options``: the architecture's own
    (``info(name).options``)."""
    arch = info(name)
    unknown = set(options) - set(arch.options)
    if unknown:
        known = ", ".join(f"{k}={v!r}" for k, v in arch.options.items()) or "none"
        raise GraphError(f"{name} has no option {', '.join(sorted(unknown))}; options: {known}")
    opts = {**arch.options, **options}
    sd = _load_weights(weights, arch)
    if num_classes is None:
        num_classes = arch.num_classes
        if sd is not None and arch.head is not None and arch.head in sd:
            num_classes = int(tuple(sd[arch.head].shape)[0])
    elif arch.num_classes is None:
        raise GraphError(f"{name} has no classifier; num_classes does not apply")
    elif (not isinstance(num_classes, int) or isinstance(num_classes, bool)
          or not 1 <= num_classes <= MAX_CLASSES):
        raise GraphError(f"num_classes must be an int from 1 to {MAX_CLASSES}, got "
                         f"{num_classes!r}")
    hw, channels = _input_hw(arch, input_size)
    params = Params(name, sd)
    net = Net(name, params, hw, num_classes)
    y = arch.fn(net, **opts)
    x = net.x
    if channels is not None and channels != x.shape[1]:
        hint = " (set in_channels=)" if "in_channels" in arch.options else ""
        raise GraphError(f"{name} reads {x.shape[1]} input channels, input_size asks for "
                         f"{channels}{hint}")
    params.finish()
    net.b.output(y, arch.output)
    meta = {"architecture": name, "description": arch.description,
            "input_size": [int(d) for d in x.shape[1:]], "output": arch.output,
            "num_parameters": params.trainable, "batchnorm_statistics": params.statistics}
    if num_classes is not None:
        meta["num_classes"] = int(num_classes)
    if arch.embedding:
        meta["embedding"] = arch.embedding
    if opts:
        meta["options"] = opts
    if arch.preprocessing is not None:
        size = [int(d) for d in x.shape[2:]]
        meta["preprocessing"] = {"input_size": size, **arch.preprocessing}
        if arch.preprocessing is IMAGENET and arch.output == "logits" and len(size) == 2:
            # an ImageNet classifier: torchvision's evaluation transform, the shorter side
            # to input / 0.875 (224: 256), then the center crop
            meta["preprocessing"]["resize_shorter"] = int(round(max(size) / 0.875))
    return net.b.build(metadata=meta)

