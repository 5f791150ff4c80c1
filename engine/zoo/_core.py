"""Zoo plumbing: the registry, the parameter provider and a small network-writing helper.

Every architecture is a function ``fn(net, **options) -> Tensor`` registered with
``@register(...)``.  It asks ``net`` for layers (``net.conv``, ``net.bn``, ``net.relu``...),
giving each the PyTorch module path it has in the reference implementation, e.g.
``net.conv(x, "layer1.0.conv1", 64, 3, padding=1, bias=False)``.  That one path

- names the parameters (``layer1.0.conv1.weight``), which the parameter provider either
  reads from the given state dict (checking the shape) or draws at random, and
- names the node, so ``Session.run(x, outputs=["layer1.0.conv1"])`` reads that layer.

Parameter-free modules used more than once (``relu`` in a ResNet block) get ``_1``,
``_2``... suffixes, as torch.fx / torchvision's ``get_graph_node_names`` name them; the
functional ops of a ``forward`` are named like FX names them too (``layer1.0.add``,
``flatten``, ``features.denseblock1.cat``).
"""

import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..builder import Builder
from ..errors import ConversionError, GraphError

IMAGENET = {"channels": "rgb", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225]}


@dataclass
class Arch:
    name: str
    fn: Callable
    input_size: tuple                  # default (C, H, W)
    num_classes: Optional[int]         # None: the output is not a class vector
    output: str = "logits"
    fixed_input: bool = False          # classifier fixed to one spatial size
    size_multiple: int = 1             # H and W must be multiples of this
    preprocessing: Optional[dict] = None
    head: Optional[str] = None         # parameter whose dim 0 is num_classes
    embedding: Optional[str] = None    # node whose output is the pre-classifier feature
    ignore_prefixes: tuple = ()        # training-only parts of checkpoints (aux heads)
    description: str = ""
    options: dict = field(default_factory=dict)   # documented options and defaults


REGISTRY = {}
SHOWN = 8       # tensors named per kind of problem when a state dict does not fit


def register(name, *, input_size, num_classes=1000, output="logits", fixed_input=False,
             size_multiple=1, preprocessing=IMAGENET, head=None, embedding=None,
             ignore_prefixes=(), description="", options=None):
    """Register ``fn(net, **options) -> Tensor`` as the zoo architecture ``name``."""
    def deco(fn):
        if name in REGISTRY:
            raise RuntimeError(f"zoo architecture {name!r} registered twice")
        REGISTRY[name] = Arch(name, fn, tuple(input_size), num_classes, output, fixed_input,
                              size_multiple, preprocessing, head, embedding,
                              tuple(ignore_prefixes), description, dict(options or {}))
        return fn
    return deco


# -- parameters -------------------------------------------------------------------------------

_STATS = ("bn_mean", "bn_var")


def _as_array(key, v):
    if hasattr(v, "detach"):                      # a torch tensor, without importing torch
        v = v.detach().cpu()
        if v.is_floating_point() and str(v.dtype) != "torch.float32":
            v = v.float()
        v = v.numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "fiu":
        raise ConversionError(f"{key}: expected a numeric array, got dtype {a.dtype}")
    return a


def normalize_state_dict(weights, ignore_prefixes=()):
    """A ``{name: array}`` dict from a state dict (NumPy arrays or torch tensors) or an object
    with ``state_dict()``; ``num_batches_tracked`` entries and ignored prefixes dropped, a
    ``module.`` prefix (DataParallel) stripped when every key has it."""
    if hasattr(weights, "state_dict") and callable(weights.state_dict):
        weights = weights.state_dict()
    if not hasattr(weights, "items"):
        raise ConversionError(f"weights must be a state dict, a checkpoint path or None, got "
                              f"{type(weights).__name__}")
    keys = [str(k) for k in weights.keys()]
    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    out = {}
    for k, v in weights.items():
        k = str(k)
        if strip:
            k = k[len("module."):]
        if k.endswith("num_batches_tracked") or any(k.startswith(p) for p in ignore_prefixes):
            continue
        out[k] = v
    return out


class Params:
    """Parameter provider: ``P(key, shape, init)`` returns the array for ``key``.

    With a state dict, the stored array (shape checked); without, a deterministic random
    array seeded from the architecture name and the key (so it does not depend on the
    order of requests).  Problems are collected and raised together by ``finish``.
    """

    def __init__(self, arch, state_dict=None):
        self.arch = arch
        self.sd = state_dict
        self.requested = {}                   # key -> shape
        self.missing, self.mismatched = [], []
        self.trainable = 0
        self.statistics = 0

    def __call__(self, key, shape, init="conv", fan_in=None, gain=1.0):
        shape = tuple(int(s) for s in shape)
        if key in self.requested:
            raise GraphError(f"{self.arch}: parameter {key!r} requested twice")
        self.requested[key] = shape
        size = int(np.prod(shape, dtype=np.int64))
        if init in _STATS:
            self.statistics += size
        else:
            self.trainable += size
        if self.sd is None:
            return self._random(key, shape, init, fan_in, gain)
        if key not in self.sd:
            self.missing.append(key)
            return np.zeros(shape, np.float32)
        a = _as_array(key, self.sd[key])
        if a.shape != shape:
            self.mismatched.append((key, a.shape, shape))
            return np.zeros(shape, np.float32)
        return np.array(a, dtype=np.float32, order="C")    # a copy: the model owns its weights

    def _random(self, key, shape, init, fan_in, gain):
        rng = np.random.default_rng([zlib.crc32(self.arch.encode()), zlib.crc32(key.encode())])
        if init in ("conv", "linear"):
            fan = fan_in if fan_in is not None else int(np.prod(shape[1:], dtype=np.int64))
            std = gain * np.sqrt(2.0 / max(fan, 1))          # He-normal: keeps O(1) through ReLU
            return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        if init == "bias":
            return rng.uniform(-0.1, 0.1, shape).astype(np.float32)
        if init == "bn_weight":
            return (rng.uniform(0.7, 1.2, shape) * gain).astype(np.float32)
        if init == "bn_bias":
            return (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if init == "bn_mean":
            return (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if init == "bn_var":
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        raise ValueError(f"unknown init {init!r}")

    def finish(self):
        """Raise ConversionError listing every missing, unexpected and mis-shaped tensor."""
        if self.sd is None:
            return
        unexpected = sorted(k for k in self.sd if k not in self.requested)
        if not (self.missing or unexpected or self.mismatched):
            return
        lines = [f"the state dict does not fit {self.arch}:"]
        if len(self.mismatched) + len(self.missing) > len(self.requested) // 2:
            lines.append(f"  of the {len(self.requested)} tensors {self.arch} expects, "
                         f"{len(self.mismatched)} have other shapes and {len(self.missing)} "
                         f"are missing: is the state dict for another architecture?")
        for key, got, want in self.mismatched[:SHOWN]:
            lines.append(f"  {key}: shape {tuple(got)} in the state dict, {self.arch} expects "
                         f"{tuple(want)}")
        if len(self.mismatched) > SHOWN:
            lines.append(f"  ... and {len(self.mismatched) - SHOWN} more of other shapes")
        for what, keys in (("missing", self.missing), ("unexpected", unexpected)):
            if keys:
                lines.append(f"  {what} ({len(keys)}): {', '.join(keys[:SHOWN])}"
                             + (f", ... and {len(keys) - SHOWN} more" if len(keys) > SHOWN
                                else ""))
        raise ConversionError("\n".join(lines))


# -- the network-writing helper -----------------------------------------------------------------

def _pair(v):
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


class Net:
    """Builder + parameter provider + unique names: what an architecture function uses."""

    def __init__(self, arch, params, hw, num_classes=None):
        self.arch, self.P, self.hw = arch, params, tuple(hw)
        self.num_classes = num_classes
        self.b = Builder()
        self._used = set()

    # naming ---------------------------------------------------------------------------------
    def name(self, path):
        """``path``, or ``path_1``, ``path_2``... when already used (as torch.fx names)."""
        name, i = path, 0
        while name in self._used:
            i += 1
            name = f"{path}_{i}"
        self._used.add(name)
        return name

    def param(self, key, shape, init="conv", **kw):
        return self.b.constant(self.P(key, shape, init, **kw), name=key)

    def input(self, channels):
        """The model input ``"input"``: (None, channels, H, W)."""
        self.x = self.b.input("input", (None, int(channels)) + self.hw)
        return self.x

    # layers ---------------------------------------------------------------------------------
    def conv(self, x, path, out_channels, kernel_size, stride=1, padding=0, dilation=1,
             groups=1, bias=True, gain=1.0):
        """Conv2d; ``gain`` scales the random weight (about 0.7 for a conv whose output is
        not followed by a ReLU, so random weights keep activations O(1))."""
        k = _pair(kernel_size)
        cin = x.shape[1]
        if cin % groups or out_channels % groups:
            raise GraphError(f"{path}: channels {cin}->{out_channels} not divisible by "
                             f"groups={groups}")
        w = self.param(f"{path}.weight", (out_channels, cin // groups) + k, "conv", gain=gain)
        b = self.param(f"{path}.bias", (out_channels,), "bias") if bias else None
        return self.b.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, name=self.name(path))

    def conv_transpose(self, x, path, out_channels, kernel_size, stride=1, padding=0,
                       output_padding=0, bias=True):
        k, s = _pair(kernel_size), _pair(stride)
        cin = x.shape[1]
        fan = cin * k[0] * k[1] / (s[0] * s[1])     # inputs feeding one output position
        w = self.param(f"{path}.weight", (cin, out_channels) + k, "conv", fan_in=fan)
        b = self.param(f"{path}.bias", (out_channels,), "bias") if bias else None
        return self.b.conv_transpose2d(x, w, b, stride=stride, padding=padding,
                                       output_padding=output_padding, name=self.name(path))

    def bn(self, x, path, eps=1e-5, gain=1.0):
        """BatchNorm2d; ``gain`` < 1 shrinks the random weight (last BN of a residual branch,
        so random deep residual networks keep O(1) activations)."""
        c = x.shape[1]
        return self.b.batch_norm(
            x, self.param(f"{path}.running_mean", (c,), "bn_mean"),
            self.param(f"{path}.running_var", (c,), "bn_var"),
            self.param(f"{path}.weight", (c,), "bn_weight", gain=gain),
            self.param(f"{path}.bias", (c,), "bn_bias"), eps=eps, name=self.name(path))

    def linear(self, x, path, out_features, bias=True, gain=1.0):
        w = self.param(f"{path}.weight", (out_features, x.shape[-1]), "linear", gain=gain)
        b = self.param(f"{path}.bias", (out_features,), "bias") if bias else None
        return self.b.linear(x, w, b, name=self.name(path))

    def relu(self, x, path):
        return self.b.relu(x, name=self.name(path))

    def relu6(self, x, path):
        return self.b.relu6(x, name=self.name(path))

    def sigmoid(self, x, path):
        return self.b.sigmoid(x, name=self.name(path))

    def max_pool(self, x, path, kernel_size, stride=None, padding=0, ceil_mode=False):
        return self.b.max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode,
                                 name=self.name(path))

    def avg_pool(self, x, path, kernel_size, stride=None, padding=0, ceil_mode=False):
        return self.b.avg_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode,
                                 name=self.name(path))

    def adaptive_avg_pool(self, x, path, output_size):
        return self.b.adaptive_avg_pool2d(x, output_size, name=self.name(path))

    def lrn(self, x, path, size=5, alpha=1e-4, beta=0.75, k=2.0):
        return self.b.local_response_norm(x, size, alpha, beta, k, name=self.name(path))

    def dropout(self, x, path, p=0.5):
        return self.b.dropout(x, p, name=self.name(path))

    def flatten(self, x, path="flatten"):
        return self.b.flatten(x, 1, name=self.name(path))

    def add(self, a, b, path):
        return self.b.add(a, b, name=self.name(path))

    def mul(self, a, b, path):
        return self.b.mul(a, b, name=self.name(path))

    def cat(self, xs, path):
        return self.b.cat(xs, 1, name=self.name(path))
