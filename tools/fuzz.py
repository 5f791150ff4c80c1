#!/usr/bin/env python3
"""Fuzz the model loader and runtime: a hostile model file must never crash or hang.

In the style of the safetensors and ONNX Runtime loader fuzzers.  A deterministic seed
corpus of tiny models (LeNet-5 and Builder graphs covering the op types and attribute
kinds) is mutated case by case (byte flips, truncations, header-length and JSON header
edits, graph edits, extreme attributes, input-shape and metadata edits, ...); each case is
written to a file and run in a worker subprocess:

    engine.load(path) -> engine.Session(model, threads=1) -> prepare(1) -> run(input)
        -> run(input, outputs=<every node output>) -> prepare(2) -> run (symbolic batch)

with a wall-clock timeout, an address-space limit (RLIMIT_AS; under a sanitizer, which
needs RLIMIT_AS unlimited, ASan's hard_rss_limit_mb / max_allocation_size and a watchdog
on the worker's RSS instead), a per-case peak-RSS check and ENGINE_MAX_BUFFER_BYTES set to
a small cap (256 MiB).  Each case is classified:

    ok               loaded and ran
    engine_error     refused with an engine.EngineError subclass (the desired outcome)
    other_exception  any other exception (type, message, traceback and origin recorded)
    crash            the worker died (signal or exit without a result), or a sanitizer report
    hang             no result within the timeout (a Python traceback is dumped first)
    memory           MemoryError, the memory limit hit, or a peak RSS above the RSS limit

For every case that is not ok / engine_error, the reproducer file and a JSON record are
saved under OUT/cases/; OUT/summary.md and OUT/summary.json hold the counts per mutation
kind x class and the findings grouped by cause; OUT/results.jsonl has one line per case.
Exit status 1 if any case was other_exception, crash, hang or memory.

    python tools/fuzz.py --cases 300 --seed 20240601 --jobs 2    # the CI slice (test_fuzz.py)
    python tools/fuzz.py --cases 100000 --seed 7 --jobs 2 --timeout 30   # the long run
    python tools/fuzz.py --replay /tmp/engine-fuzz/7/cases/0001234-attr_extreme-crash.safetensors
    python tools/fuzz.py --dump-case 1234 --seed 7 -o case.safetensors   # regenerate a case

A case is a function of (seed, index) alone, so any case can be regenerated.

Sanitizer builds.  Either run the test module under tools/asan.sh, whose preloaded runtime
the workers inherit (the sanitizer is detected from LD_PRELOAD):

    FUZZ_SLICE_CASES=100000 FUZZ_OUT=/tmp/engine-fuzz/asan bash tools/asan.sh tests/test_fuzz.py -k slice
    FUZZ_SLICE_CASES=100000 FUZZ_OUT=/tmp/engine-fuzz/ubsan bash tools/asan.sh --ubsan tests/test_fuzz.py -k slice

or build an instrumented copy once (tools/asan.sh's flags) and point the workers at it;
``--sanitizer`` then preloads the runtime into the uninstrumented Python, sets the
sanitizer's options (abort on the first report; allocator_may_return_null,
max_allocation_size = cap + 64 MiB and hard_rss_limit_mb in place of RLIMIT_AS) and a 120 s
timeout:

    w=/tmp/engine-asan; mkdir -p $w && git archive HEAD | tar -x -C $w
    (cd $w && ENGINE_DEBUG_BUILD=1 CFLAGS="-fsanitize=address -fno-omit-frame-pointer" \
        LDFLAGS="-fsanitize=address" python setup.py build_ext --inplace -q)
    python tools/fuzz.py --cases 100000 --seed 7 --jobs 2 --sanitizer asan --engine-root $w

UBSan alike, built with CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all -fno-wrapv
-fno-omit-frame-pointer" (CPython's -fwrapv would hide signed overflow) and run with
``--sanitizer ubsan``.  ``--python``, ``--env KEY=VALUE`` and ``--engine-root`` choose the
interpreter, extra environment and engine tree of the workers.
"""

import argparse
import collections
import copy
import json
import math
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FUZZ_PY = os.path.abspath(__file__)

CLASSES = ("ok", "engine_error", "other_exception", "crash", "hang", "memory")
BAD = ("other_exception", "crash", "hang", "memory")
MiB = 2**20
GiB = 2**30

DEFAULT_CAP = 256 * MiB          # ENGINE_MAX_BUFFER_BYTES in the workers
DEFAULT_MEMORY = 4 * GiB         # RLIMIT_AS of a worker (plain build)
DEFAULT_TIMEOUT = 10.0           # seconds per case
SANITIZER_TIMEOUT = 120.0        # sanitizer builds run the kernels 3-10x slower: the heaviest
                                 # legitimate case of seed 20240601 (a 200-fold replicated
                                 # Winograd model, 65,536 wide) takes 13 s released, 43 s
                                 # under UBSan
RECYCLE_EVERY = 1000             # restart a worker after this many cases (bounds leaks)

SANITIZER_REPORT = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                    "ERROR: UndefinedBehaviorSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
                    "SUMMARY: AddressSanitizer")
MEMORY_REPORT = ("hard rss limit exhausted", "allocation-size-too-big", "out of memory",
                 "requested allocation size", "rss-limit-exceeded", "allocator is out of memory")


# =========================================================================================
# The container: safetensors bytes without any validation (the engine's loader is what we
# test, so none of its code is used here).
# =========================================================================================

def pack(header, body, pad=True):
    """Header (a dict, or JSON text / bytes) + data as safetensors bytes."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"), allow_nan=True)
    if isinstance(header, str):
        header = header.encode("utf-8", "surrogatepass")
    if pad:
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(body)


def unpack(data):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return header, data[8 + n:]


class Doc:
    """A model file as mutable parts: graph and metadata (dicts), the other __metadata__
    entries, and the constants (name -> (shape, float32 little-endian bytes))."""

    def __init__(self, data):
        header, body = unpack(data)
        meta = dict(header.pop("__metadata__"))
        self.graph = json.loads(meta.pop("graph"))
        self.metadata = json.loads(meta.pop("metadata", "{}"))
        self.meta = meta                       # format, format_version, extras
        self.tensors = {}
        for name, info in header.items():
            a, b = info["data_offsets"]
            self.tensors[name] = (list(info["shape"]), bytes(body[a:b]))
        self.shapes = _value_shapes(data)

    def copy(self):
        new = Doc.__new__(Doc)
        new.shapes = self.shapes
        new.graph = copy.deepcopy(self.graph)
        new.metadata = copy.deepcopy(self.metadata)
        new.meta = dict(self.meta)
        new.tensors = {k: (list(s), raw) for k, (s, raw) in self.tensors.items()}
        return new

    def container(self):
        """(header dict, body bytes): tensors laid out in name order, as engine.save does."""
        header, chunks, off = {}, [], 0
        meta = dict(self.meta)
        meta["graph"] = json.dumps(self.graph, separators=(",", ":"), allow_nan=True)
        meta["metadata"] = json.dumps(self.metadata, separators=(",", ":"), allow_nan=True)
        header["__metadata__"] = meta
        for name in sorted(self.tensors):
            shape, raw = self.tensors[name]
            header[name] = {"dtype": "F32", "shape": list(shape),
                            "data_offsets": [off, off + len(raw)]}
            chunks.append(raw)
            off += len(raw)
        return header, b"".join(chunks)

    def to_bytes(self):
        return pack(*self.container())


# =========================================================================================
# Seed corpus: built in-process, deterministically (no network, no files but the bundled
# LeNet-5).  Tiny channel counts and spatial sizes keep each case well under a second.
# =========================================================================================

_SHAPES = {}


def _value_shapes(data):
    """{value name: shape} of a (seed) model, from the engine's own shape inference."""
    key = hash(data)
    if key not in _SHAPES:
        try:
            model = _engine().format.loads(bytes(data))
            _SHAPES[key] = {k: list(v.shape) for k, v in model.values.items()}
        except Exception:  # noqa: BLE001 - a seed the engine refuses has no shapes
            _SHAPES[key] = {}
    return _SHAPES[key]


def _engine(root=None):
    """The engine package: the one already imported, else the one under ``root`` (default:
    this tree)."""
    if "engine" in sys.modules:
        return sys.modules["engine"]
    root = root or ROOT
    if root not in sys.path:
        sys.path.insert(0, root)
    import engine
    return engine


def _w(rng, *shape):
    import numpy as np
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


def _seed_conv2d(engine, np):
    rng = np.random.default_rng(1)
    b = engine.Builder()
    x = b.input("image", (None, 3, 12, 12))
    y = b.conv2d(x, _w(rng, 6, 1, 3, 3), _w(rng, 6), stride=2, padding=((1, 2), (0, 1)),
                 dilation=2, groups=3, name="grouped")
    y = b.batch_norm(y, _w(rng, 6), np.abs(_w(rng, 6)) + 1, _w(rng, 6), _w(rng, 6), name="bn")
    y = b.relu(y)
    y = b.max_pool2d(y, 2, ceil_mode=True, name="maxpool")
    y = b.conv2d(y, _w(rng, 6, 1, 3, 3), None, padding=1, groups=6, name="depthwise")
    y = b.conv2d(y, _w(rng, 6, 3, 1, 3), _w(rng, 6), padding=((0, 0), (1, 1)), groups=2,
                 name="grouped2")
    y = b.conv_transpose2d(y, _w(rng, 6, 4, 3, 3), _w(rng, 4), stride=2, padding=1,
                           output_padding=1, name="deconv")
    y = b.avg_pool2d(y, 3, stride=2, padding=1, count_include_pad=False, name="avgpool")
    y = b.adaptive_avg_pool2d(y, 2, name="adaptive")
    y = b.flatten(y, 1)
    y = b.linear(y, _w(rng, 5, 16), _w(rng, 5), name="fc")
    b.output(b.softmax(y, 1), "probs")
    return b.build(metadata={"labels": list("abcde")})


def _seed_residual(engine, np):
    rng = np.random.default_rng(2)
    b = engine.Builder()
    x = b.input("x", (None, 4, 8, 8))
    y = b.conv2d(x, _w(rng, 4, 4, 3, 3), _w(rng, 4), padding=1, name="c1")
    y = b.batch_norm(y, _w(rng, 4), np.abs(_w(rng, 4)) + 1, name="bn1")
    y = b.relu(y)
    y = b.conv2d(y, _w(rng, 4, 4, 3, 3), None, padding="same", name="c2")
    y = b.relu(b.add(y, x, name="residual"))
    y = b.conv2d(y, _w(rng, 2, 4, 1, 1), _w(rng, 2), name="proj")
    a = b.interpolate(y, scale_factor=2, mode="nearest", name="up_nearest")
    a = b.interpolate(a, size=(5, 7), mode="bilinear", align_corners=True, name="resize_bl")
    a = b.pad(a, (1, 1, 2, 0), mode="reflect", name="pad_reflect")
    c = b.interpolate(y, size=(5, 8), mode="bilinear", align_corners=False, name="resize2")
    c = b.pad(c, (0, 0, 0, 0, 0, 0), mode="constant", value=0.5, name="pad_const")
    c = b.pad(c, (1, 0, 0, 2), mode="replicate", name="pad_rep")
    y = b.cat([a, c], 1, name="concat")
    y = b.channel_shuffle(y, 2, name="shuffle")
    y = b.adaptive_max_pool2d(y, (3, 2), name="amax")
    b.output(b.mean(y, (2, 3), keepdim=False, name="mean"), "out")
    return b.build()


def _seed_conv1d(engine, np):
    rng = np.random.default_rng(3)
    b = engine.Builder()
    x = b.input("signal", (None, 2, 16))
    y = b.conv1d(x, _w(rng, 4, 2, 3), _w(rng, 4), dilation=2, padding=(2,), name="c1")
    y = b.max_pool1d(y, 3, stride=2, padding=1, dilation=1, name="mp")
    y = b.conv_transpose1d(y, _w(rng, 4, 3, 4), _w(rng, 3), stride=3, padding=1,
                           output_padding=2, dilation=1, name="ct")
    y = b.avg_pool1d(y, 2, name="ap")
    y = b.leaky_relu(y, 0.1)
    y = b.layer_norm(y, y.shape[-1], _w(rng, y.shape[-1]), _w(rng, y.shape[-1]), name="ln")
    y = b.min_pool1d(y, 2, stride=1, name="minp")
    y = b.flatten(y, 1)
    b.output(b.linear(y, _w(rng, 3, y.shape[1]), None, name="fc"), "out")
    return b.build()


def _seed_conv3d(engine, np):
    rng = np.random.default_rng(4)
    b = engine.Builder()
    x = b.input("volume", (None, 2, 4, 6, 6))
    y = b.conv3d(x, _w(rng, 4, 2, 2, 3, 3), _w(rng, 4), padding=((0, 1), (1, 1), (1, 0)),
                 name="c3")
    y = b.max_pool3d(y, (1, 2, 2), name="mp3")
    y = b.conv_transpose3d(y, _w(rng, 4, 2, 2, 2, 2), None, stride=(1, 2, 2), name="ct3")
    y = b.avg_pool3d(y, 2, stride=1, name="ap3")
    y = b.group_norm(y, 2, _w(rng, 2), _w(rng, 2), name="gn")
    y = b.instance_norm(y, None, None, name="in")
    y = b.adaptive_avg_pool3d(y, (1, 2, 2), name="aap3")
    y = b.reshape(y, (-1, 2, 4), name="rs")
    y = b.permute(y, (0, 2, 1), name="perm")
    b.output(b.log_softmax(y, -1, name="lsm"), "out")
    return b.build()


def _seed_binary(engine, np):
    rng = np.random.default_rng(5)
    b = engine.Builder()
    a = b.input("a", (None, 3, 4, 5))
    c = b.input("b", (None, 1, 4, 1))
    y = b.add(a, c, name="add_bcast")
    y = b.mul(y, _w(rng, 5), name="mul_const")
    y = b.sub(y, _w(rng, 3, 1, 1), name="sub_const")
    y = b.div(y, np.abs(_w(rng, 1, 4, 1)) + 1, name="div_const")
    y = b.clip(b.gelu(y, approximate="tanh"), -2.0, 3.0, name="clip")
    y = b.hardswish(b.sigmoid(y))
    y = b.prelu(b.tanh(y), _w(rng, 3), name="prelu")
    y = b.silu(b.hardsigmoid(b.relu6(y)))
    y = b.local_response_norm(y, 2, name="lrn")
    y = b.dropout(y, 0.3, name="drop")
    p, q = b.split(y, [2, 3], dim=3, name="split")
    p = b.matmul(p, _w(rng, 2, 3), name="matmul")
    y = b.cat([p, q], -1, name="cat")
    y = b.identity(y, name="ident")
    y = b.gelu(y, name="gelu_erf")
    b.output(b.softmax(y, 1, name="sm"), "out")
    return b.build()


def _seed_winograd(engine, np):
    rng = np.random.default_rng(6)
    b = engine.Builder()
    x = b.input("x", (None, 8, 10, 10))
    y = b.relu(b.conv2d(x, _w(rng, 8, 8, 3, 3), _w(rng, 8), padding=1, name="wino"))
    y = b.conv2d(y, _w(rng, 8, 8, 1, 1), _w(rng, 8), name="pointwise")
    y = b.conv2d(y, _w(rng, 4, 8, 3, 3), None, stride=2, name="strided")
    y = b.conv2d(y, _w(rng, 8, 1, 3, 3), None, padding=1, groups=4, name="depth_mult")
    y = b.max_pool2d(y, 3, stride=1, padding=1, dilation=1, name="mp")
    y = b.global_avg_pool(y, name="gap")
    b.output(b.flatten(y, 1), "out")
    return b.build()


SEED_BUILDERS = {"conv2d_mix": _seed_conv2d, "residual_resize": _seed_residual,
                 "conv1d": _seed_conv1d, "conv3d": _seed_conv3d, "binary_ops": _seed_binary,
                 "winograd": _seed_winograd}


def build_seeds():
    """[(name, bytes)]: LeNet-5 (bundled) and the Builder seeds, as engine.save writes them."""
    engine = _engine()
    import numpy as np
    seeds = []
    with open(os.path.join(os.path.dirname(engine.__file__), "data", "default.safetensors"),
              "rb") as f:
        seeds.append(("lenet5", f.read()))
    for name, fn in SEED_BUILDERS.items():
        model = fn(engine, np)
        seeds.append((name, engine.format.dumps(model.constants, {
            "format": "engine-model", "format_version": "1",
            "graph": json.dumps(model.graph_dict(), separators=(",", ":")),
            "metadata": json.dumps(model.metadata, separators=(",", ":"))})))
    return seeds


# =========================================================================================
# Mutations.  Each kind is a function (rng, seed) -> (bytes, description).
# =========================================================================================

INT_POOL = [0, -1, 1, 2, 3, 7, 255, 2**15, 2**16, 2**30, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
            2**32 + 1, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2, -2**15,
            -2**31, -2**31 - 1, -2**32, -2**63, -2**63 - 1, 10**30, -10**30]
FLOAT_POOL = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 1.7976931348623157e308,
              5e-324, -0.0, 0.0, 0.5, 1.5, 2.0, 1e-45, 3.4028235e38, 1e39, -1.0, 1e-300]
STR_POOL = ["", "same", "valid", "nearest", "bilinear", "linear", "reflect", "replicate",
            "constant", "circular", "relu", "tanh", "none", "x" * 5000, "\ud800", "\u0000",
            "1", "nan"]
ODD_POOL = [None, True, False, [], {}, [[]], [None], {"op": "relu"}, [[1, 1]], [1.0], ["1"],
            {"a": [1]}, [True, False]]

# Dims for input shapes / tensor shapes.
DIM_POOL = [0, -1, 1, 2, 3, 5, 17, 255, 1024, 4096, 65535, 2**20, 2**24, 2**31 - 1, 2**31,
            2**32, 2**40, 2**40 - 1, 2**62, 2**63, -2**63, None, 1.0, 3.5, "3", True, [3], {}]

ACTIVATIONS = [None, {"op": "relu"}, {"op": "relu6"}, {"op": "leaky_relu", "negative_slope": 0.1},
               {"op": "leaky_relu", "negative_slope": float("nan")},
               {"op": "clip", "min": float("inf"), "max": float("-inf")},
               {"op": "clip", "min": None, "max": None}, {"op": "gelu", "approximate": "tanh"},
               {"op": "gelu", "approximate": "bogus"}, {"op": "conv"}, {"op": "softmax", "dim": 1},
               {"op": "sigmoid", "extra": 1}, {"op": "hardswish"}, {"op": 3}, {}, "relu",
               ["relu"], {"op": "clip", "min": 1e308}, {"op": "leaky_relu"}]

ALL_OPS = ["conv", "conv_transpose", "linear", "matmul", "add", "sub", "mul", "div", "relu",
           "relu6", "leaky_relu", "prelu", "sigmoid", "tanh", "silu", "hardswish",
           "hardsigmoid", "gelu", "elu", "selu", "softplus", "mish", "clip", "softmax", "log_softmax", "batch_norm", "layer_norm",
           "instance_norm", "group_norm", "local_response_norm", "max_pool", "min_pool",
           "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "interpolate", "pad",
           "flatten", "reshape", "permute", "concat", "split", "channel_shuffle", "dropout",
           "identity", "mean"]


def _choice_value(rng, like=None):
    """An extreme / odd JSON value; biased towards ints and towards the type of ``like``."""
    r = rng.random()
    if isinstance(like, float) and not isinstance(like, bool) and r < 0.6:
        return rng.choice(FLOAT_POOL)
    if r < 0.55:
        return rng.choice(INT_POOL)
    if r < 0.7:
        return rng.choice(FLOAT_POOL)
    if r < 0.8:
        return rng.choice(STR_POOL)
    return copy.deepcopy(rng.choice(ODD_POOL))


def _leaf_paths(v, path=()):
    """Paths to every leaf (scalar) of a JSON value, and to every list."""
    out = [path]
    if isinstance(v, list):
        for i, x in enumerate(v):
            out += _leaf_paths(x, path + (i,))
    elif isinstance(v, dict):
        for k, x in v.items():
            out += _leaf_paths(x, path + (k,))
    return out


def _set_path(root, path, value):
    if not path:
        return value
    cur = root
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return root


def _fmt(v, limit=60):
    s = json.dumps(v, allow_nan=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= limit else s[:limit] + f"...({len(s)} chars)"


def _node_with_attrs(rng, g):
    nodes = [n for n in g.get("nodes", []) if isinstance(n, dict) and isinstance(n.get("attrs"), dict)
             and n["attrs"]]
    return rng.choice(nodes) if nodes else None


# -- attribute mutations ---------------------------------------------------------------------

def _mutate_attr_extreme(rng, doc):
    g = doc.graph
    n = _node_with_attrs(rng, g)
    if n is None:
        return None
    attrs = n["attrs"]
    key = rng.choice(sorted(attrs))
    old = attrs[key]
    where = f"node {n['name']!r} ({n['op']}) attrs.{key}"
    r = rng.random()
    if key == "activation" and r < 0.4:
        attrs[key] = copy.deepcopy(rng.choice(ACTIVATIONS))
        return f"{where} = {_fmt(attrs[key])}"
    if isinstance(old, list) and old and r < 0.45:
        # one leaf of the list (stride[1], padding[0][1], ...)
        paths = [p for p in _leaf_paths(old) if p and not isinstance(_get(old, p), (list, dict))]
        p = rng.choice(paths)
        v = _choice_value(rng, _get(old, p)) if rng.random() < 0.3 else rng.choice(INT_POOL)
        _set_path(old, p, v)
        return f"{where}{''.join(f'[{i}]' for i in p)} = {_fmt(v)}"
    if isinstance(old, list) and r < 0.65:
        # every entry the same extreme value, or a list of another length
        v = rng.choice(INT_POOL) if rng.random() < 0.8 else _choice_value(rng)
        if old and isinstance(old[0], list):
            new = [[v, v] for _ in old]
        else:
            length = len(old) if rng.random() < 0.6 else rng.choice([0, 1, 2, 3, 4, 6, 9, 4097])
            new = [v] * length
        attrs[key] = new
        return f"{where} = {_fmt(new)}"
    if r < 0.75:
        length = rng.choice([4096, 4097, 10000, 100000])
        new = [rng.choice([1, 2, 0, 2**31 - 1])] * length
        attrs[key] = new
        return f"{where} = list of {length} ints"
    if r < 0.82:
        # nested lists
        depth = rng.choice([2, 8, 9, 20, 60])
        v = rng.choice(INT_POOL[:8])
        for _ in range(depth):
            v = [v]
        attrs[key] = v
        return f"{where} nested {depth} deep"
    v = _choice_value(rng, old)
    attrs[key] = v
    return f"{where} = {_fmt(v)}"


def _get(root, path):
    for p in path:
        root = root[p]
    return root


def _mutate_attr_type(rng, doc):
    g = doc.graph
    nodes = [n for n in g.get("nodes", []) if isinstance(n, dict)]
    n = rng.choice(nodes)
    attrs = n.setdefault("attrs", {})
    where = f"node {n['name']!r} ({n['op']})"
    r = rng.random()
    if attrs and r < 0.3:
        key = rng.choice(sorted(attrs))
        del attrs[key]
        return f"{where}: attribute {key!r} deleted"
    if r < 0.4:
        key = rng.choice(["bogus", "stride", "padding", "groups", "dilation", "kernel_size",
                          "activation", "dim", "eps", "size", "__class__", ""])
        v = _choice_value(rng)
        attrs[key] = v
        return f"{where}: attribute {key!r} = {_fmt(v)} added"
    if r < 0.5:
        v = rng.choice([None, [], "attrs", 1, [["stride", 1]], {"": None}])
        n["attrs"] = v
        return f"{where}: attrs = {_fmt(v)}"
    if not attrs:
        attrs["x"] = 1
    key = rng.choice(sorted(attrs))
    old = attrs[key]
    choices = [str(old)[:20], [old], {"v": old}, None, True, 1.0, 1, "1", [], [[old]]]
    if isinstance(old, list):
        choices += [tuple(old) and old[0], [str(x) for x in old], [float(x) if isinstance(x, int)
                    else x for x in old], [True] * len(old), [None] * len(old), old + old]
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        choices += [float(old) + 0.5, -old, bool(old), [old, old]]
    v = copy.deepcopy(rng.choice(choices))
    attrs[key] = v
    return f"{where}: attrs.{key} {_fmt(old, 30)} -> {_fmt(v)}"


# -- graph structure --------------------------------------------------------------------------

def _values(g, doc):
    vals = [v.get("name") for v in g.get("inputs", []) if isinstance(v, dict)]
    for n in g.get("nodes", []):
        if isinstance(n, dict):
            vals += [o for o in n.get("outputs", []) if isinstance(o, str)]
    return [v for v in vals if isinstance(v, str)]


def _mutate_graph(rng, doc):
    g = doc.graph
    nodes = g["nodes"]
    consts = sorted(doc.tensors)
    vals = _values(g, doc)
    which = rng.randrange(22)
    if which == 0 and nodes:
        i = rng.randrange(len(nodes))
        n = nodes.pop(i)
        return f"node {n['name']!r} deleted (its readers dangle)"
    if which == 1 and nodes:
        n = rng.choice(nodes)
        nodes.insert(rng.randrange(len(nodes) + 1), copy.deepcopy(n))
        return f"node {n['name']!r} duplicated (same name and outputs)"
    if which == 2 and nodes:
        n = copy.deepcopy(rng.choice(nodes))
        n["name"] += "_dup"
        n["outputs"] = [o + "_dup" for o in n["outputs"]]
        nodes.append(n)
        if rng.random() < 0.5:
            g["outputs"].append(n["outputs"][0])
        return f"node {n['name']!r} duplicated under a new name"
    if which == 3 and nodes:
        n = rng.choice(nodes)
        if n["outputs"]:
            n["outputs"][0] = rng.choice(["renamed", "", n["outputs"][0] + "'", consts[0]
                                          if consts else "c", vals[0]])
        return f"node {n['name']!r} output renamed to {_fmt(n['outputs'][:1])}"
    if which == 4 and nodes:
        n = rng.choice(nodes)
        if n["inputs"]:
            k = rng.randrange(len(n["inputs"]))
            choice = rng.choice(["nowhere", "", n["outputs"][0] if n["outputs"] else "x",
                                 rng.choice(vals), rng.choice(consts) if consts else "c",
                                 g["outputs"][0] if g["outputs"] else "y"])
            n["inputs"][k] = choice
            return f"node {n['name']!r} input {k} -> {choice!r}"
    if which == 5 and len(nodes) >= 2:
        i, j = sorted(rng.sample(range(len(nodes)), 2))
        a, b = nodes[i], nodes[j]
        if a["inputs"] and b["outputs"]:
            a["inputs"][0] = b["outputs"][0]
            return f"cycle: node {a['name']!r} reads {b['outputs'][0]!r} (downstream)"
    if which == 6:
        choice = rng.choice([[consts[0]] if consts else ["c"], ["unknown"], [vals[0]], [],
                             g["outputs"] * 2, [1], "out", None, vals, [""],
                             consts[:3] + g["outputs"]])
        g["outputs"] = choice
        return f"graph outputs = {_fmt(choice)}"
    if which == 7 and nodes:
        n = rng.choice(nodes)
        new = rng.choice(ALL_OPS + ["Conv", "conv ", "", "unknown_op", "__init__", "conv2d"])
        old, n["op"] = n["op"], new
        return f"node {n['name']!r} op {old} -> {new}"
    if which == 8 and len(nodes) >= 2:
        i, j = rng.sample(range(len(nodes)), 2)
        nodes[i]["op"], nodes[j]["op"] = nodes[j]["op"], nodes[i]["op"]
        return f"ops of nodes {nodes[i]['name']!r} and {nodes[j]['name']!r} swapped"
    if which == 9:
        rng.shuffle(nodes)
        return "nodes shuffled"
    if which == 10 and nodes:
        n = rng.choice(nodes)
        key = rng.choice(["op", "name", "inputs", "outputs", "attrs"])
        v = rng.choice([None, 1, "x", [], {}, [1], [None], ["a", "a"]]) if rng.random() < 0.7 \
            else "<deleted>"
        if v == "<deleted>":
            n.pop(key, None)
        else:
            n[key] = copy.deepcopy(v)
        return f"node {n.get('name')!r} key {key!r} = {_fmt(v)}"
    if which == 11 and nodes:
        n = rng.choice(nodes)
        extra = rng.choice([[], [rng.choice(vals)], [rng.choice(vals)] * 3, [""],
                            [rng.choice(consts) if consts else ""]])
        if rng.random() < 0.5:
            n["inputs"] = n["inputs"] + extra
        else:
            n["inputs"] = n["inputs"][:rng.randrange(len(n["inputs"]) + 1)]
        return f"node {n['name']!r} inputs -> {n['inputs']}"
    if which == 12 and nodes:
        n = rng.choice([m for m in nodes if len(m["inputs"]) >= 2] or nodes)
        if len(n["inputs"]) >= 2:
            # a weight read from an activation, or an activation read from a weight
            n["inputs"][1], n["inputs"][0] = n["inputs"][0], n["inputs"][1]
            return f"node {n['name']!r} inputs 0 and 1 swapped"
    if which == 13 and nodes:
        n = rng.choice(nodes)
        n["outputs"] = rng.choice([[], n["outputs"] * 2, n["outputs"] + ["extra"],
                                   [o + ":0" for o in n["outputs"]]])
        return f"node {n['name']!r} outputs -> {n['outputs']}"
    if which == 14:
        k = rng.choice([1000, 5000, 20000, 60000])
        op = rng.choice(["relu", "identity", "add", "dropout", "sigmoid"])
        last = g["outputs"][0]
        for i in range(k):
            name = f"chain{i}"
            attrs = {"p": 0.0} if op == "dropout" else {}
            ins = [last, last] if op == "add" else [last]
            nodes.append({"op": op, "name": name, "inputs": ins, "outputs": [name],
                          "attrs": attrs})
            last = name
        g["outputs"][0] = last
        return f"{k} {op} nodes chained after the output"
    if which == 15:
        k = rng.choice([100, 1000, 4097, 20000])
        src = rng.choice(vals)
        names = []
        for i in range(k):
            name = f"fan{i}"
            nodes.append({"op": "identity", "name": name, "inputs": [src], "outputs": [name],
                          "attrs": {}})
            names.append(name)
        nodes.append({"op": "concat", "name": "fan_cat", "inputs": names,
                      "outputs": ["fan_cat"], "attrs": {"dim": rng.choice([0, 1, -1])}})
        g["outputs"].append("fan_cat")
        return f"{k}-way fan-out of {src!r} concatenated"
    if which == 16:
        inp = g["inputs"]
        r = rng.randrange(5)
        if r == 0 and inp:
            inp.pop(0)
            return "graph input 0 deleted"
        if r == 1 and inp:
            inp.append(copy.deepcopy(inp[0]))
            return "graph input duplicated"
        if r == 2 and inp:
            inp[0]["name"] = rng.choice(["", "renamed", consts[0] if consts else "c",
                                         g["outputs"][0]])
            return f"graph input renamed to {inp[0]['name']!r}"
        if r == 3:
            inp.append({"name": "extra_in", "shape": [None, 1, 2, 2]})
            return "unused extra graph input"
        g["inputs"] = rng.choice([None, {}, [1], [{}], "x", [{"name": "x"}]])
        return f"graph inputs = {_fmt(g['inputs'])}"
    if which == 17:
        cl = g["constants"]
        r = rng.randrange(4)
        if r == 0 and cl:
            cl.pop(rng.randrange(len(cl)))
            return "a name dropped from graph constants"
        if r == 1:
            cl.append(rng.choice(["ghost", cl[0] if cl else "x", vals[0]]))
            return f"graph constants + {cl[-1]!r}"
        if r == 2:
            g["constants"] = rng.choice([None, "c", [1], {}])
            return f"graph constants = {_fmt(g['constants'])}"
        key = rng.choice(["inputs", "outputs", "nodes", "constants"])
        del g[key]
        return f"graph key {key!r} deleted"
    if which == 18:
        key = rng.choice(["extra", "version", "__proto__", "nodes2"])
        g[key] = _choice_value(rng)
        if rng.random() < 0.3:
            doc.graph = rng.choice([[], None, "graph", 1, [g]])
            return f"graph = {_fmt(doc.graph, 30)}"
        return f"graph key {key!r} added"
    if which == 19 and nodes:
        # the whole graph read twice: every node and value renamed, outputs added
        k = rng.choice([2, 10, 200])
        base = copy.deepcopy(nodes)
        produced = {o for n in base for o in n["outputs"]}
        for c in range(1, k):
            for n in base:
                m = copy.deepcopy(n)
                m["name"] = f"{n['name']}#{c}"
                m["inputs"] = [f"{i}#{c}" if i in produced else i for i in n["inputs"]]
                m["outputs"] = [f"{o}#{c}" for o in n["outputs"]]
                nodes.append(m)
            g["outputs"].append(f"{g['outputs'][0]}#{c}")
        return f"graph replicated {k} times"
    if which == 20 and nodes:
        n = rng.choice(nodes)
        n["name"] = rng.choice(["", n["name"] * 100, "\ud800", "\x00", "a" * 100000,
                                nodes[0]["name"]])
        return f"node name -> {_fmt(n['name'], 20)}"
    # 21 and fall-through: a value read twice by one node / output that is an input
    if nodes:
        n = rng.choice(nodes)
        if n["inputs"]:
            n["inputs"] = [n["inputs"][0]] * len(n["inputs"])
            return f"node {n['name']!r} reads {n['inputs'][0]!r} for every input"
    g["outputs"] = [g["inputs"][0]["name"]]
    return "graph output is the graph input"


def _mutate_op_swap(rng, doc):
    nodes = doc.graph["nodes"]
    n = rng.choice(nodes)
    r = rng.random()
    if r < 0.7:
        # an op of another family with these attributes (conv -> conv_transpose, ...)
        new = rng.choice(ALL_OPS)
    elif r < 0.85:
        # and, to get past the attribute check, the attributes of a node of that op
        donors = [m for m in nodes if m is not n]
        m = rng.choice(donors) if donors else n
        new = m["op"]
        n["attrs"] = copy.deepcopy(m.get("attrs", {}))
    else:
        new = rng.choice(["Conv", "conv ", "", "unknown_op", "__init__", "conv2d", "reference",
                          "max_pool\x00", "relu" * 1000])
    old, n["op"] = n["op"], new
    return f"node {n['name']!r} op {old} -> {_fmt(new, 30)}"


# -- input shapes, weights, metadata ----------------------------------------------------------

def _mutate_input_shape(rng, doc):
    inputs = doc.graph["inputs"]
    v = rng.choice(inputs)
    shape = v["shape"]
    r = rng.random()
    if r < 0.45:
        i = rng.randrange(len(shape))
        d = copy.deepcopy(rng.choice(DIM_POOL))
        shape[i] = d
        what = f"dim {i} = {_fmt(d)}"
    elif r < 0.65:
        # legal but large, or scaled (spatial work grows; the cap must bound it)
        i = rng.randrange(1, len(shape))
        d = rng.choice([shape[i] * 2, shape[i] * 16, 1, 2, 513, 2048, 8192, 65536])
        shape[i] = d
        what = f"dim {i} = {d}"
    elif r < 0.8:
        k = rng.randrange(4)
        if k == 0:
            shape.append(rng.choice([1, 2, 3]))
        elif k == 1 and len(shape) > 0:
            shape.pop()
        elif k == 2:
            shape.insert(1, rng.choice([1, 2]))
        else:
            v["shape"] = shape = rng.choice([[], [None], [None] * 9, [1] * 9, [None, None, 3, 3]])
        what = f"rank changed: {shape}"
    elif r < 0.9:
        shape[0] = rng.choice([1, 2, 0, -1, 2**31, 2**40])
        what = f"batch dim = {shape[0]}"
    else:
        k = rng.randrange(3)
        if k == 0:
            v["dtype"] = rng.choice(["float16", "float64", "int8", None, 5, "F32", ""])
            what = f"dtype = {_fmt(v['dtype'])}"
        elif k == 1:
            v["shape"] = rng.choice(["1,3", None, 3, {"0": 1}, [[1, 2]], [1.5, 2]])
            what = f"shape = {_fmt(v['shape'])}"
        else:
            v.pop(rng.choice(["shape", "name"]))
            what = "a key deleted"
    return f"input {v.get('name')!r}: {what}"


def _factorizations(count, rng):
    shapes = [[count], [1, count], [count, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, count]]
    for d in (2, 3, 4, 5, 6, 8, 9, 16, 25):
        if count % d == 0:
            shapes += [[d, count // d], [count // d, d, 1, 1], [1, d, count // d]]
    return shapes


def _mutate_weight_shape(rng, doc):
    """A consistent container (shape, offsets and bytes agree) with odd weight shapes."""
    import numpy as np
    name = rng.choice(sorted(doc.tensors))
    shape, raw = doc.tensors[name]
    count = len(raw) // 4
    r = rng.random()
    if r < 0.35:
        new = rng.choice(_factorizations(count, rng))
        if rng.random() < 0.3 and len(shape) >= 2:
            new = list(reversed(shape))
        doc.tensors[name] = (new, raw)
    elif r < 0.6:
        new = list(shape) or [1]
        i = rng.randrange(len(new))
        new[i] = rng.choice([0, 1, 2, new[i] * 2, new[i] + 1, 64])
        n = int(np.prod(new, dtype=np.int64))
        data = (np.arange(n, dtype=np.float32) % 7 - 3).astype("<f4").tobytes()
        doc.tensors[name] = (new, data)
    elif r < 0.8:
        new = [rng.choice([0, 1, 2, 3]) for _ in range(rng.randrange(0, 7))]
        n = int(np.prod(new, dtype=np.int64)) if new else 1
        doc.tensors[name] = (new, np.ones(n, "<f4").tobytes())
    else:
        # a big but legal weight: a few MB
        new = list(shape) or [1]
        i = rng.randrange(len(new))
        new[i] = max(1, new[i]) * rng.choice([100, 1000])
        n = int(np.prod(new, dtype=np.int64))
        if n * 4 > 32 * MiB:
            new[i] = max(1, shape[i] if i < len(shape) else 1) * 10
            n = int(np.prod(new, dtype=np.int64))
        doc.tensors[name] = (new, np.full(n, 0.01, "<f4").tobytes())
    return f"tensor {name!r} shape {shape} -> {doc.tensors[name][0]}"


def _set_meta(doc, key, v):
    """__metadata__[key] = v, or the key removed when v is None."""
    if v is None:
        doc.meta.pop(key, None)
    else:
        doc.meta[key] = v
    return f"__metadata__.{key} = {_fmt(v)}"


def _mutate_metadata(rng, doc):
    r = rng.randrange(9)
    if r == 0:
        return _set_meta(doc, "format", rng.choice(
            ["engine-modell", "", "ENGINE-MODEL", "engine-model\x00", None]))
    if r == 1:
        return _set_meta(doc, "format_version", rng.choice(
            ["0", "2", "01", " 1", "1.0", "1 ", "", "999999999999999999999", None]))
    if r == 2:
        doc.meta[rng.choice(["extra", "graph2", "", "__metadata__"])] = rng.choice(
            ["", "x" * 100000, "{}", "\ud800"])
        return "__metadata__ extra key"
    if r == 3:
        doc.metadata = rng.choice([None, [], "x", 1, {"labels": None}, {"labels": 5},
                                   {"labels": ["a"] * 100000}, {"labels": [[[]]]},
                                   {"preprocess": {"mean": [float("nan")], "std": [0.0]}},
                                   {"input_size": [2**63, -1]}, {"": {"": {"": {}}}}])
        return f"metadata = {_fmt(doc.metadata)}"
    if r == 4:
        v = doc.metadata if isinstance(doc.metadata, dict) else {}
        depth = rng.choice([10, 63, 64, 65, 100, 200])
        x = 1
        for _ in range(depth):
            x = [x]
        v["deep"] = x
        doc.metadata = v
        return f"metadata nested {depth} deep"
    if r == 5:
        v = doc.metadata if isinstance(doc.metadata, dict) else {}
        v.update({"labels": [str(i) for i in range(rng.choice([0, 1, 3, 1000]))],
                  "mean": _choice_value(rng), "std": _choice_value(rng),
                  "channel_order": _choice_value(rng), "input_size": _choice_value(rng)})
        doc.metadata = v
        return "metadata preprocessing fields odd"
    if r == 6:
        depth = rng.choice([63, 64, 65, 100])
        x = 1
        for _ in range(depth):
            x = {"a": x}
        doc.graph["deep"] = x
        return f"graph nested {depth} deep"
    if r == 7:
        n = rng.choice(doc.graph["nodes"])
        depth = rng.choice([7, 8, 9, 10, 60])
        x = 1
        for _ in range(depth):
            x = [x]
        n.setdefault("attrs", {})["deep"] = x
        return f"attrs of {n['name']!r} nested {depth} deep"
    n = rng.choice(doc.graph["nodes"])
    n.setdefault("attrs", {})["big"] = rng.choice(["x" * 4097, {str(i): i for i in range(5000)},
                                                    [[1] * 4096] * 4])
    return f"attrs of {n['name']!r}: a big value"

# -- valid-but-edge geometry: small attribute values that mostly pass the checks and so reach
# the kernels (where a sanitizer build can see an out-of-bounds access) -----------------------

GEOMETRY_OPS = ("conv", "conv_transpose", "max_pool", "min_pool", "avg_pool", "adaptive_avg_pool",
                "adaptive_max_pool", "interpolate", "pad", "mean", "softmax", "log_softmax",
                "flatten", "split", "channel_shuffle", "concat", "permute", "reshape",
                "local_response_norm", "group_norm", "leaky_relu", "clip", "gelu",
                "layer_norm")


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0] if isinstance(n, int) and n > 0 else [1]


def _mutate_geometry(rng, doc):
    shapes = doc.shapes
    nodes = [n for n in doc.graph["nodes"] if n["op"] in GEOMETRY_OPS and n["inputs"]
             and n["inputs"][0] in shapes]
    n = rng.choice(nodes)
    x = list(shapes[n["inputs"][0]])
    rank, r = len(x), len(x) - 2
    op, a = n["op"], n["attrs"]
    small = rng.randint
    if op == "conv" and rng.random() < 0.15:
        # huge dilation / stride made consistent by padding: tiny outputs, huge index math
        a["stride"] = [rng.choice([1, 2 ** small(8, 30)]) for _ in range(r)]
        a["dilation"] = [rng.choice([1, 2 ** small(8, 30)]) for _ in range(r)]
        a["padding"] = [[small(0, 2) * d, small(0, 2) * d] for d in a["dilation"]]
    elif op == "conv":
        a["stride"] = [small(1, 5) for _ in range(r)]
        a["dilation"] = [rng.choice([1, 1, 2, 3, 5]) for _ in range(r)]
        a["padding"] = [[small(0, 5), small(0, 5)] for _ in range(r)]
        if rng.random() < 0.2:
            a["activation"] = copy.deepcopy(rng.choice(ACTIVATIONS[:9]))
    elif op == "conv_transpose":
        a["stride"] = [small(1, 5) for _ in range(r)]
        a["dilation"] = [small(1, 4) for _ in range(r)]
        a["padding"] = [small(0, 4) for _ in range(r)]
        a["output_padding"] = [small(0, max(s, d) - 1) if rng.random() < 0.9 else small(0, 6)
                               for s, d in zip(a["stride"], a["dilation"])]
    elif op in ("max_pool", "min_pool", "avg_pool") and rng.random() < 0.15:
        # huge but consistent windows: kernel 2**p, padding half of it, over a tiny input
        k = [2 ** small(10, 30) for _ in range(r)]
        a["kernel_size"] = k
        a["stride"] = [rng.choice([1, 2, kk]) for kk in k]
        a["padding"] = [kk // 2 for kk in k]
        a["ceil_mode"] = rng.random() < 0.5
        if op == "avg_pool":
            a["count_include_pad"] = rng.random() < 0.5
        else:
            a["dilation"] = [1] * r
    elif op == "conv_transpose" and rng.random() < 0.15:
        # a huge stride / output_padding over a size-1 input stays small (or hits the cap)
        a["stride"] = [2 ** small(8, 30) for _ in range(r)]
        a["dilation"] = [1] * r
        a["padding"] = [0] * r
        a["output_padding"] = [rng.choice([0, 1, 7, s - 1]) for s in a["stride"]]
        v = rng.choice(doc.graph["inputs"])
        for i in range(2, len(v["shape"])):
            v["shape"][i] = 1
    elif op in ("max_pool", "min_pool", "avg_pool"):
        k = [small(1, 6) for _ in range(r)]
        a["kernel_size"] = k
        a["stride"] = [small(1, 6) for _ in range(r)]
        a["padding"] = [small(0, kk // 2) if rng.random() < 0.85 else small(0, kk + 2) for kk in k]
        a["ceil_mode"] = rng.random() < 0.5
        if op == "avg_pool":
            a["count_include_pad"] = rng.random() < 0.5
        else:
            a["dilation"] = [small(1, 3) for _ in range(r)]
    elif op in ("adaptive_avg_pool", "adaptive_max_pool"):
        a["output_size"] = [rng.choice([1, 2, 3, 5, 7, 9, 16, None]) for _ in range(r)]
    elif op == "interpolate":
        mode = rng.choice(["nearest", "bilinear"]) if r == 2 else "nearest"
        a["mode"] = mode
        a["align_corners"] = rng.choice([None, True, False]) if mode == "bilinear" else None
        if rng.random() < 0.5 and all(isinstance(d, int) for d in x[2:]):
            sf = [rng.choice([0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 7.0, 1 / 3]) for _ in range(r)]
            size = [int(math.floor(float(d) * f)) for d, f in zip(x[2:], sf)]
            a["scale_factor"], a["size"] = sf, size
        else:
            a["scale_factor"] = None
            a["size"] = [small(1, 40) for _ in range(r)]
    elif op == "pad":
        npad = small(1, min(3, rank))
        a["pad"] = [small(0, 4) for _ in range(2 * npad)]
        a["mode"] = rng.choice(["constant", "reflect", "replicate"])
        a["value"] = rng.choice([0.0, -1.5, float("nan"), float("inf"), None])
    elif op == "mean":
        dims = rng.sample(range(-rank, rank), small(1, rank))
        a["dim"], a["keepdim"] = dims, rng.random() < 0.5
    elif op in ("softmax", "log_softmax"):
        a["dim"] = small(-rank, rank - 1)
    elif op == "flatten":
        s0 = small(-rank, rank - 1)
        a["start_dim"], a["end_dim"] = s0, small(s0 % rank, rank - 1)
    elif op == "split":
        d = small(1, rank - 1)
        size = x[d]
        a["dim"] = d
        if rng.random() < 0.5:
            a["split_size_or_sections"] = small(1, max(1, size))
            n["outputs"] = [f"{n['name']}:{i}" for i in range(-(-size // a["split_size_or_sections"]))] \
                if len(n["outputs"]) > 1 else n["outputs"]
        else:
            cut = small(0, size)
            a["split_size_or_sections"] = [cut, size - cut]
    elif op == "channel_shuffle":
        a["groups"] = rng.choice(_divisors(x[1]))
    elif op == "concat":
        a["dim"] = small(-rank, rank - 1)
    elif op == "permute":
        p = list(range(rank))
        rng.shuffle(p)
        a["dims"] = p
    elif op == "reshape":
        numel = 1
        for d in x[1:]:
            numel *= d
        f = rng.choice(_divisors(numel))
        a["shape"] = rng.choice([[-1, f, numel // f], [-1, numel], [-1, 1, numel // f, f],
                                 [-1] + [1] * small(0, 5) + [numel]])
    elif op == "local_response_norm":
        a["size"] = small(1, 9)
        a["alpha"], a["beta"], a["k"] = rng.choice([(1e-4, 0.75, 1.0), (1.0, 0.0, 0.0),
                                                    (1e30, 2.5, -1.0)])
    elif op == "group_norm":
        a["num_groups"] = rng.choice(_divisors(x[1]))
        a["eps"] = rng.choice([1e-5, 0.0, 1e-45])
    elif op == "layer_norm":
        a["normalized_shape"] = x[-small(1, rank - 1):]
        a["eps"] = rng.choice([1e-5, 0.0])
    else:
        key = sorted(a)[0] if a else "x"
        a[key] = rng.choice(FLOAT_POOL)
    desc = f"node {n['name']!r} ({op}) attrs = {_fmt(a, 160)}"
    if rng.random() < 0.3:
        v = rng.choice(doc.graph["inputs"])
        for i in range(2, len(v["shape"])):
            v["shape"][i] = rng.choice([1, 2, 3, 5, 8, 13, 17, 24, 31])
        desc += f"; input {v['name']!r} shape {v['shape']}"
    if rng.random() < 0.6:
        _truncate_after(doc, n)
        desc += "; graph cut after it"
    return desc


def _truncate_after(doc, node):
    """Make ``node``'s outputs the graph outputs and drop what they do not need (so a shape
    change there does not fail downstream), constants included."""
    g = doc.graph
    g["outputs"] = list(node["outputs"])
    producer = {o: n for n in g["nodes"] for o in n["outputs"]}
    need, stack = set(), list(g["outputs"])
    while stack:
        v = stack.pop()
        if v in need:
            continue
        need.add(v)
        if v in producer:
            stack.extend(i for i in producer[v]["inputs"] if i)
    g["nodes"] = [n for n in g["nodes"] if any(o in need for o in n["outputs"])]
    g["constants"] = [c for c in g["constants"] if c in need]
    doc.tensors = {k: t for k, t in doc.tensors.items() if k in need}


GRAPH_LEVEL = {"attr_extreme": _mutate_attr_extreme, "attr_type": _mutate_attr_type,
               "graph_edit": _mutate_graph, "op_swap": _mutate_op_swap,
               "input_shape": _mutate_input_shape, "weight_shape": _mutate_weight_shape,
               "metadata": _mutate_metadata, "geometry": _mutate_geometry}


# -- container level (header dict / body) -------------------------------------------------------

def _wrap_shape(rng):
    """Shapes whose int64 element count wraps (to 0 or negative) and each dim < 2**40."""
    return copy.deepcopy(rng.choice([[2**32, 2**32], [2**39, 2**39], [2**20] * 4, [2**32, 2**32, 3],
                                     [2**16] * 4, [2**39, 2**25], [3, 2**31, 2**31, 2**2],
                                     [2**33, 2**31, 1], [2**31 - 1, 2**31 - 1, 2**31 - 1, 5],
                                     [0, 2**39, 2**39], [2**8] * 8]))


def _mutate_tensor_entry(rng, header, body):
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    e = header[name]
    r = rng.randrange(12)
    if r == 0:
        e["dtype"] = copy.deepcopy(rng.choice(["F16", "BF16", "F64", "I8", "I32", "I64", "U8",
                                               "BOOL", "F8_E4M3", "f32", "", 0, None, ["F32"],
                                               {"F32": 1}, 32, "F32 "]))
        what = f"dtype = {_fmt(e['dtype'])}"
    elif r == 1:
        s = _wrap_shape(rng)
        start = e["data_offsets"][0]
        e["shape"] = s
        e["data_offsets"] = [start, start] if rng.random() < 0.7 else e["data_offsets"]
        what = f"shape {s} (element count wraps), offsets {e['data_offsets']}"
    elif r == 2:
        e["shape"] = copy.deepcopy(rng.choice(["3", [1.5], [-1], [True], [None], [[3]], {}, None,
                                               [2**40], [2**63], [2**64], [1] * 9, [-2**63],
                                               [0], [], [1e400 if False else 1e308], ["1"]]))
        what = f"shape = {_fmt(e['shape'])}"
    elif r == 3:
        a, b = e["data_offsets"]
        e["data_offsets"] = copy.deepcopy(rng.choice([[-1, b - a - 1], [a], [a, b, b], "0",
                                                      [float(a), float(b)], [b, a], [0, 2**64],
                                                      [2**63, 2**63 + b - a], [a + 1, b + 1],
                                                      [a - 1, b - 1], [a, b + 4], [a, b - 4],
                                                      [len(body), len(body) + b - a], None,
                                                      [True, b], [a, 2**62], [a, -b]]))
        what = f"data_offsets {[a, b]} -> {_fmt(e['data_offsets'])}"
    elif r == 4 and len(names) >= 2:
        other = header[rng.choice([x for x in names if x != name])]
        e["data_offsets"] = list(other["data_offsets"])
        e["shape"] = list(other["shape"])
        what = f"data_offsets overlap another tensor's {other['data_offsets']}"
    elif r == 5:
        a, b = e["data_offsets"]
        if b - a >= 8:
            # overlapping by part of a tensor: shift into the neighbour
            e["data_offsets"] = [a + 4, b + 4] if b + 4 <= len(body) else [a - 4, b - 4]
        what = f"data_offsets shifted to {e['data_offsets']}"
    elif r == 6:
        key = rng.choice(["dtype", "shape", "data_offsets"])
        del e[key]
        what = f"key {key!r} deleted"
    elif r == 7:
        e[rng.choice(["extra", "__metadata__", "Shape", ""])] = _choice_value(rng)
        what = "an extra key"
    elif r == 8:
        header[name] = copy.deepcopy(rng.choice([None, [], "F32", 1, {}, [e]]))
        what = f"entry = {_fmt(header[name])}"
    elif r == 9:
        header[name + "_alias"] = copy.deepcopy(e)
        what = "a second entry with the same bytes (not in the graph)"
    elif r == 10:
        header[rng.choice(["", "\ud800", "x" * 10000, "__metadata__x"])] = copy.deepcopy(e)
        del header[name]
        what = "tensor renamed"
    else:
        e["shape"] = [rng.choice([0, 1, 2**31, 2**39, 2**40 - 1]) for _ in range(rng.randrange(1, 9))]
        what = f"shape = {e['shape']}"
    return header, body, f"tensor {name!r}: {what}"


def _mutate_header_meta(rng, header, body):
    r = rng.randrange(5)
    if r == 0:
        header["__metadata__"] = copy.deepcopy(rng.choice([None, [], "x", 1, {"format": 1},
                                                           {"format": "engine-model"}]))
        return header, body, f"__metadata__ = {_fmt(header['__metadata__'])}"
    if r == 1:
        del header["__metadata__"]
        return header, body, "__metadata__ deleted"
    if r == 2:
        key = rng.choice(["graph", "metadata", "format_version", "format"])
        header["__metadata__"][key] = copy.deepcopy(rng.choice([1, None, ["x"], {"a": "b"}, 1.5,
                                                                True]))
        return header, body, f"__metadata__.{key} not a string"
    if r == 3:
        key = rng.choice(["graph", "metadata"])
        header["__metadata__"][key] = rng.choice(["", "null", "[]", "{}", "1", "{", "\"x\"",
                                                  "NaN", "[" * 100000, "{\"a\":" * 50000,
                                                  "1" * 5000, "9" * 4301, "-" + "9" * 4400,
                                                  "{\"inputs\": []}" + " " * 10, "\x00",
                                                  "\ud800", "[1e999]", "{\"a\":1,\"a\":2}"])
        return header, body, f"__metadata__.{key} = {_fmt(header['__metadata__'][key], 30)}"
    body = body + b"\x00" * rng.choice([1, 4, 7, 4096])
    return header, body, "trailing bytes after the tensors"


CONTAINER_LEVEL = {"tensor_entry": _mutate_tensor_entry, "header_meta": _mutate_header_meta}


# -- header text --------------------------------------------------------------------------------

def _mutate_json_text(rng, text, body):
    """Edits of the header's JSON text (str): syntax, duplicates, depth, numbers, encoding.
    Returns (header bytes, body, description)."""
    r = rng.randrange(14)
    if r == 0:
        # duplicate key: a second __metadata__ or tensor entry (json keeps the last)
        i = text.index("{") + 1
        dup = rng.choice(['"__metadata__":{},', '"__metadata__":{"format":"engine-model"},',
                          '"__metadata__":null,'])
        if rng.random() < 0.5:
            return (text[:i] + dup + text[i:]).encode(), body, f"duplicate key {dup[:16]} first"
        return (text.rstrip()[:-1] + "," + dup[:-1] + "}").encode(), body, \
            f"duplicate key {dup[:16]} last"
    if r == 1:
        depth = rng.choice([64, 65, 1000, 100000, 1000000])
        kind = rng.choice(["[", "{\"a\":"])
        close = "]" if kind == "[" else "}"
        nested = kind * depth + "1" + close * depth
        t = text.rstrip()[:-1] + ',"deep":' + nested + "}"
        return t.encode(), body, f"header nested {depth} deep ({kind})"
    if r == 2:
        raw = bytearray(text.encode("utf-8", "surrogatepass"))
        bad = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80",
                          b"\xe2\x82"])
        quotes = [i for i, c in enumerate(raw) if c == ord('"')]
        i = rng.choice(quotes) + 1
        raw[i:i] = bad
        return bytes(raw), body, f"invalid UTF-8 {bad!r} inside a string"
    if r == 3:
        t = text.replace('"', '"\\ud800', 1) if rng.random() < 0.5 else \
            text.replace('"shape"', '"sh\\u0000ape"', 1)
        return t.encode(), body, "escaped lone surrogate / NUL in a key"
    if r == 4:
        # a number replaced by a huge / odd one (the first few tensors' offsets and shapes)
        import re
        nums = [m.span() for m in re.finditer(r"(?<![\\\w.])-?\d+(?![\w.])", text)]
        a, b = rng.choice(nums[:200])
        v = rng.choice(["1" + "0" * 5000, "9" * 4301, "1e999", "-1e999", "NaN", "Infinity",
                        "-0", "1.0", "1e2", "0x10", "00", "18446744073709551616", "-1", "true",
                        "null", "\"1\""])
        return (text[:a] + v + text[b:]).encode(), body, f"number {text[a:b]} -> {v[:20]}"
    if r == 5:
        v = rng.choice(["[]", "null", "\"x\"", "{}", "1", "", " ", "{\"__metadata__\":{}}",
                        "[" + text + "]", "\ufeff" + text, text + "x", text + "{}", text[:-1],
                        "\x00" * 8])
        return v.encode("utf-8", "surrogatepass"), body, f"header = {_fmt(v[:20])}"
    if r == 6:
        # the graph string's own JSON text edited (numbers inside the graph)
        import re
        header = json.loads(text)
        g = header["__metadata__"]["graph"]
        nums = [m.span() for m in re.finditer(r"(?<![\w.])-?\d+(?![\w.])", g)]
        if nums:
            a, b = rng.choice(nums)
            v = rng.choice(["1" + "0" * 5000, "9" * 4301, "1e999", "-1e999", "NaN", "Infinity",
                            "-Infinity", "1.0", "-0", "18446744073709551616", "1" * 400])
            header["__metadata__"]["graph"] = g[:a] + v + g[b:]
            return json.dumps(header, separators=(",", ":")).encode(), body, \
                f"graph text: number {g[a:b]} -> {v[:20]}"
    if r == 7:
        header = json.loads(text)
        g = header["__metadata__"]["graph"]
        depth = rng.choice([64, 65, 3000, 100000])
        i = g.index('"attrs":{') + len('"attrs":{') if '"attrs":{' in g else None
        if i is not None:
            nested = "[" * depth + "]" * depth
            header["__metadata__"]["graph"] = g[:i] + '"deep":' + nested + "," + g[i:] \
                if g[i] != "}" else g[:i] + '"deep":' + nested + g[i:]
            return json.dumps(header, separators=(",", ":")).encode(), body, \
                f"graph text: attribute nested {depth} deep"
    if r == 8:
        header = json.loads(text)
        key = rng.choice(["graph", "metadata"])
        s = header["__metadata__"].get(key, "{}")
        cut = rng.randrange(len(s) + 1)
        header["__metadata__"][key] = s[:cut]
        return json.dumps(header, separators=(",", ":")).encode(), body, \
            f"{key} text truncated at {cut}"
    if r == 9:
        header = json.loads(text)
        g = header["__metadata__"]["graph"]
        # duplicate keys inside the graph JSON
        t = g.replace('"op":', '"op":"relu","op":', 1) if rng.random() < 0.5 else \
            g.replace('"nodes":', '"nodes":[],"nodes":', 1)
        header["__metadata__"]["graph"] = t
        return json.dumps(header, separators=(",", ":")).encode(), body, \
            "duplicate keys in the graph text"
    if r == 10:
        pad = rng.choice([b"\x00" * 7, b"\n", b"\t" * 8, b"\xff" * 8])
        return text.rstrip().encode() + pad, body, f"header padded with {pad[:2]!r}"
    if r == 11:
        header = json.loads(text)
        s = header["__metadata__"]["graph"]
        header["__metadata__"]["graph"] = s + rng.choice([" ", "x", "\x00", "}", ",{}"])
        return json.dumps(header, separators=(",", ":")).encode(), body, \
            "trailing characters after the graph JSON"
    if r == 12:
        # a huge header (tens of MB of whitespace / a long string): size checks, speed
        n = rng.choice([10 * MiB, 99 * MiB, 101 * MiB])
        t = text.rstrip()[:-1] + ',"pad":"' + "a" * min(n, 30 * MiB) + '"}'
        return t.encode(), body, f"header with a {min(n, 30 * MiB) // MiB} MiB string"
    t = text.replace(":", " : ", rng.randrange(1, 50))
    return t.encode(), body, "whitespace inserted (still valid JSON)"


# -- raw bytes ----------------------------------------------------------------------------------

INTERESTING_BYTES = b'"{}[],:\\0123456789-e.\x00\xff\x80 tfn'


def _header_span(data):
    (n,) = struct.unpack("<Q", data[:8])
    return 8, min(len(data), 8 + n)


def _mutate_bytes_header(rng, data):
    data = bytearray(data)
    a, b = _header_span(data)
    k = rng.choice([1, 1, 2, 3, 8, 32])
    how = rng.random()
    if how < 0.5:
        # digits only: changes numbers while mostly keeping the JSON valid
        digits = [i for i in range(a, b) if 48 <= data[i] <= 57]
        for _ in range(k):
            i = rng.choice(digits)
            data[i] = rng.choice(b"0123456789")
        return bytes(data), f"{k} header digit(s) changed"
    for _ in range(k):
        i = rng.randrange(a, b)
        if how < 0.75:
            data[i] ^= 1 << rng.randrange(8)
        else:
            data[i] = rng.choice(INTERESTING_BYTES)
    return bytes(data), f"{k} header byte(s) flipped/replaced"


def _mutate_bytes_data(rng, data):
    import numpy as np
    data = bytearray(data)
    a, b = _header_span(data)
    if b >= len(data):
        return bytes(data), "no data section"
    k = rng.choice([1, 4, 64])
    if rng.random() < 0.5:
        for _ in range(k):
            i = rng.randrange(b, len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data), f"{k} data bit(s) flipped"
    specials = np.array([np.nan, np.inf, -np.inf, 1e-45, 3.4e38, -0.0, 1e30], "<f4").tobytes()
    for _ in range(k):
        i = b + rng.randrange((len(data) - b) // 4) * 4
        j = rng.randrange(7) * 4
        data[i:i + 4] = specials[j:j + 4]
    return bytes(data), f"{k} data floats set to NaN/Inf/denormal/huge"


def _mutate_truncate(rng, data):
    a, b = _header_span(data)
    cut = rng.choice([0, 1, 7, 8, 9, b - 1, b, b + 1, b + 4, len(data) - 1, len(data) - 4,
                      rng.randrange(len(data)), rng.randrange(a, b), rng.randrange(b, len(data))])
    cut = max(0, min(cut, len(data) - 1))
    return data[:cut], f"truncated to {cut} of {len(data)} bytes"


def _mutate_header_length(rng, data):
    (n,) = struct.unpack("<Q", data[:8])
    v = rng.choice([0, 1, 2, 7, n - 1, n + 1, n - 8, n + 8, len(data) - 8, len(data) - 7,
                    len(data), 2**31 - 1, 2**31, 2**32, 2**32 + n, 2**63, 2**64 - 1,
                    100 * MiB, 100 * MiB + 1, n // 2, rng.randrange(2**64)]) % 2**64
    v = max(v, 0)
    return struct.pack("<Q", v) + data[8:], f"header length {n} -> {v}"


# -- the cases ----------------------------------------------------------------------------------

KINDS = ("byte_header", "byte_data", "truncate", "header_length", "tensor_entry",
         "header_meta", "json_text", "graph_edit", "op_swap", "attr_type", "attr_extreme",
         "geometry", "input_shape", "weight_shape", "metadata", "combo")
WEIGHTS = {"attr_extreme": 3, "attr_type": 2, "graph_edit": 2, "op_swap": 2, "input_shape": 2,
           "combo": 2, "weight_shape": 2, "geometry": 3}


def _apply_graph_level(rng, kind, doc, tries=8):
    for _ in range(tries):
        d = doc.copy()
        try:
            desc = GRAPH_LEVEL[kind](rng, d)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            desc = None           # the mutation did not apply to this graph; try again
        if desc:
            return d, desc
    return doc, None


def make_case(seed, index, seeds, kinds=KINDS):
    """(kind, seed name, description, bytes) of case ``index``: a function of (seed, index)."""
    rng = random.Random(f"engine-fuzz:{seed}:{index}")
    weights = [WEIGHTS.get(k, 1) for k in kinds]
    kind = rng.choices(list(kinds), weights)[0]
    seed_name, data = seeds[rng.randrange(len(seeds))]
    doc = Doc(data)
    if kind in GRAPH_LEVEL:
        doc2, desc = _apply_graph_level(rng, kind, doc)
        return kind, seed_name, desc or "(no change)", doc2.to_bytes()
    if kind in CONTAINER_LEVEL:
        header, body = doc.container()
        header, body, desc = CONTAINER_LEVEL[kind](rng, header, body)
        return kind, seed_name, desc, pack(header, body)
    if kind == "json_text":
        header, body = doc.container()
        text = json.dumps(header, separators=(",", ":"), allow_nan=True)
        for _ in range(4):
            try:
                raw, body2, desc = _mutate_json_text(rng, text, body)
                break
            except (ValueError, KeyError, IndexError):
                continue
        else:
            raw, body2, desc = text.encode(), body, "(no change)"
        if raw is None:
            raw, body2, desc = text.encode(), body, "(no change)"
        return kind, seed_name, desc, pack(raw, body2, pad=rng.random() < 0.8)
    if kind == "combo":
        descs = []
        for _ in range(rng.randrange(2, 5)):
            k = rng.choice(list(GRAPH_LEVEL))
            doc, desc = _apply_graph_level(rng, k, doc)
            if desc:
                descs.append(f"{k}: {desc}")
        data = doc.to_bytes()
        if rng.random() < 0.25:
            data, desc = rng.choice([_mutate_bytes_header, _mutate_bytes_data])(rng, data)
            descs.append(desc)
        return kind, seed_name, " + ".join(descs), data
    fn = {"byte_header": _mutate_bytes_header, "byte_data": _mutate_bytes_data,
          "truncate": _mutate_truncate, "header_length": _mutate_header_length}[kind]
    out, desc = fn(rng, doc.to_bytes())
    return kind, seed_name, desc, out


# =========================================================================================
# The worker: a long-lived child process that runs cases and reports one JSON line each.
# =========================================================================================

def _read_status_kb(field, pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _origin(tb_list, engine_root):
    """(innermost frame inside engine/, innermost frame) of a traceback, as file:function:line."""
    def rel(fr):
        fn = fr.filename
        for root in (engine_root, ROOT):
            if root and fn.startswith(root + os.sep):
                fn = os.path.relpath(fn, root)
                break
        else:
            parts = fn.split(os.sep)
            fn = os.sep.join(parts[-2:])
        return f"{fn}:{fr.name}:{fr.lineno}"
    inner = rel(tb_list[-1]) if tb_list else "?"
    eng = [fr for fr in tb_list if f"{os.sep}engine{os.sep}" in fr.filename]
    return (rel(eng[-1]) if eng else inner), inner


def _inject(what):
    """Test payloads exercising each class (tests/test_fuzz.py)."""
    import ctypes
    if what == "ok":
        return
    if what == "abort":
        os.abort()
    if what == "segfault":
        ctypes.memmove(8, b"boom", 4)          # a write to an unmapped page
    if what == "exit":
        os._exit(3)
    if what == "sleep":
        time.sleep(3600)
    if what == "exception":
        raise KeyError("injected")
    if what == "engine_error":
        import engine
        raise engine.GraphError("injected")
    if what == "memory":
        bytearray(64 * GiB)          # above RLIMIT_AS: MemoryError
    if what.startswith("rss:"):
        b = bytearray(int(what[4:]) * MiB)     # touched: above a small --rss-limit
        b[::4096] = b"\x01" * len(b[::4096])
        return
    if what == "heap_overflow":
        # a read past a malloc'd block: ASan's memcpy interceptor reports it (a plain build
        # reads the neighbouring heap bytes and carries on)
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        p = libc.malloc(16)
        ctypes.string_at(p, 64)
        return
    if what == "sanitizer_report":
        sys.stderr.write("==1==ERROR: AddressSanitizer: heap-buffer-overflow (injected)\n")
        sys.stderr.flush()
        return
    if what == "stdout_noise":
        print("noise on stdout", flush=True)
        return
    raise ValueError(f"unknown payload {what!r}")


STAGE = ["-"]     # where the current case is: load, session, prepare, run, run_all, prepare2, run2
ALL_OUTPUTS_MAX_NODES = 300


FILLS = ["normal"] * 8 + ["nan", "inf", "-inf", "huge", "zeros", "denormal", "mixed"]


def input_fill(path):
    """How a case's input is filled: standard normal mostly, special values for some files
    (a function of the file's bytes, so --replay feeds the same)."""
    import zlib
    with open(path, "rb") as f:
        return FILLS[zlib.crc32(f.read()) % len(FILLS)]


def _fill(np, shape, fill):
    x = np.random.default_rng(12345).standard_normal(shape).astype(np.float32)
    special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 3e38, "zeros": 0.0,
               "denormal": 1e-45}
    if fill in special:
        x[...] = special[fill]
    elif fill == "mixed":
        flat = x.reshape(-1)
        flat[0::5] = np.nan
        flat[1::5] = np.inf
        flat[2::5] = -3e38
    return x


def _feeds(np, inputs, batch, cap, fill="normal"):
    feeds = {}
    for v in inputs:
        shape = tuple(batch if d is None else d for d in v.shape)
        n = 1
        for d in shape:
            n *= d
        if n * 4 > cap:
            # prepare accepted a declared input above the cap: do not allocate it ourselves.
            return None, (f"prepare({batch}) accepted input {v.name!r} of shape {shape} "
                          f"({n * 4} bytes) above the {cap}-byte cap")
        feeds[v.name] = _fill(np, shape, fill)
    return feeds, None


def execute(path, cap, engine_mod=None, batches=(1, 2), threads=1):
    """load + Session + prepare(1) + run on one file, then run with every node output
    requested, then prepare(2) + run when the model has a symbolic batch; the input is
    filled as ``input_fill`` says.  Returns (class, info dict).  Exceptions other than EngineError /
    MemoryError propagate to the caller; STAGE[0] says where."""
    import numpy as np
    engine = engine_mod or _engine()
    fill = input_fill(path)
    STAGE[0] = "load"
    model = engine.load(path)
    STAGE[0] = "session"
    # (the inputs may hold NaN / Inf on purpose: the kernels must survive them)
    sess = engine.Session(model, threads=threads, allow_nonfinite=True)
    outputs = []
    for k, batch in enumerate(batches):
        if k and not any(d is None for v in model.inputs for d in v.shape):
            break
        suffix = "" if k == 0 else str(k + 1)
        STAGE[0] = "prepare" + suffix
        sess.prepare(batch)
        feeds, problem = _feeds(np, model.inputs, batch, cap, fill)
        if problem:
            return "memory", {"message": problem}
        STAGE[0] = "run" + suffix
        outs = sess.run(feeds)
        outputs.append([list(getattr(o, "shape", ())) for o in outs][:4])
        if k == 0 and len(model.nodes) <= ALL_OUTPUTS_MAX_NODES:
            # every value an output: no fusion, another memory plan, "keep" in every pass
            STAGE[0] = "run_all"
            names = [o for n in model.nodes for o in n.outputs]
            sess.run(feeds, outputs=names)
    STAGE[0] = "done"
    return "ok", {"outputs": outputs, "fill": fill}


def classify_call(fn, engine_root=None):
    """Run ``fn`` and classify what it raised (the worker and --replay share this)."""
    STAGE[0] = "-"
    try:
        engine = _engine()
        cls, info = fn()
        return cls, dict(info, stage=STAGE[0])
    except MemoryError as e:
        tb = traceback.extract_tb(e.__traceback__)
        origin, inner = _origin(tb, engine_root)
        return "memory", {"exc_type": "MemoryError", "message": str(e)[:500], "origin": origin,
                          "raise_site": inner, "traceback": traceback.format_exc()[-4000:],
                          "stage": STAGE[0]}
    except Exception as e:  # noqa: BLE001 - classifying is the point
        tb = traceback.extract_tb(e.__traceback__)
        origin, inner = _origin(tb, engine_root)
        info = {"exc_type": type(e).__name__, "message": str(e)[:500], "origin": origin,
                "raise_site": inner, "stage": STAGE[0]}
        if isinstance(e, engine.EngineError):
            return "engine_error", info
        info["traceback"] = traceback.format_exc()[-4000:]
        return "other_exception", info


def worker_main():
    """Child side: set limits, import engine, then serve requests (JSON lines on stdin)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                        # anything printed goes to the stderr log
    sys.stdout = sys.stderr
    import resource
    mem = int(os.environ.get("FUZZ_MEMORY_LIMIT", "0"))
    if mem > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    import faulthandler
    if os.environ.get("FUZZ_FAULTHANDLER", "1") == "1":
        faulthandler.enable(all_threads=True)
    # the parent sends SIGUSR1 when a case runs out of time: the traceback says where it hung
    # (a signal handler in the running thread, unlike dump_traceback_later's watchdog thread,
    # which reads the frames of a running thread and can crash it)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    engine_root = os.environ.get("FUZZ_ENGINE_ROOT") or ROOT
    if engine_root not in sys.path:
        sys.path.insert(0, engine_root)
    import engine  # noqa: F401  (import cost outside the first case's timeout)
    import numpy  # noqa: F401
    cap = int(os.environ["ENGINE_MAX_BUFFER_BYTES"])
    threads = int(os.environ.get("FUZZ_THREADS", "1"))
    out.write(json.dumps({"ready": True, "pid": os.getpid(),
                          "engine": os.path.dirname(engine.__file__)}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        can_measure = _reset_peak_rss()
        rss0 = _read_status_kb("VmRSS")
        t0 = time.perf_counter()
        if "inject" in req:
            fn = lambda: (_inject(req["inject"]), ("ok", {}))[1]  # noqa: E731
        else:
            fn = lambda: execute(req["path"], cap, engine, threads=threads)  # noqa: E731
        cls, info = classify_call(fn, engine_root)
        info["elapsed"] = round(time.perf_counter() - t0, 4)
        if can_measure:
            info["peak_rss_delta"] = max(0, _read_status_kb("VmHWM") - rss0) * 1024
        info["class"] = cls
        try:
            text = json.dumps(info, default=str)
        except (TypeError, ValueError):
            text = json.dumps({"class": cls, "message": repr(info)[:2000]})
        out.write(text + "\n")


# =========================================================================================
# The runner (parent side).
# =========================================================================================

def detect_sanitizer(env=None):
    """'asan' / 'ubsan' when the sanitizer runtime is preloaded (as tools/asan.sh does for
    the test run), else None."""
    pre = (env or os.environ).get("LD_PRELOAD", "")
    if "libasan" in pre:
        return "asan"
    if "libubsan" in pre:
        return "ubsan"
    return None


class Config:
    """How workers run.  ``sanitizer``: 'asan', 'ubsan', None, or 'auto' (the default: what
    LD_PRELOAD in the environment or in ``env`` names)."""

    def __init__(self, python=None, engine_root=None, timeout=None,
                 memory_limit=DEFAULT_MEMORY, rss_limit=None, cap=DEFAULT_CAP, sanitizer="auto",
                 env=None, workdir=None, startup_timeout=120.0, recycle=RECYCLE_EVERY,
                 threads=1):
        self.python = python or sys.executable
        self.engine_root = os.path.abspath(engine_root or ROOT)
        self.env = dict(env or {})
        if sanitizer == "auto":
            sanitizer = detect_sanitizer({**os.environ, **self.env})
        self.sanitizer = sanitizer or None
        self.timeout = float(timeout or (SANITIZER_TIMEOUT if self.sanitizer else DEFAULT_TIMEOUT))
        self.memory_limit = int(memory_limit)
        self.cap = int(cap)
        # A case may hold a few buffers at the cap (input, arena, workspace, output copy).
        self.rss_limit = int(rss_limit) if rss_limit else 4 * self.cap + 256 * MiB
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.recycle = recycle
        self.threads = int(threads)

    def child_env(self):
        env = dict(os.environ)
        env.update({"ENGINE_MAX_BUFFER_BYTES": str(self.cap), "FUZZ_THREADS": str(self.threads),
                    "OMP_NUM_THREADS": str(self.threads),
                    "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "FUZZ_ENGINE_ROOT": self.engine_root, "PYTHONHASHSEED": "0",
                    "FUZZ_MEMORY_LIMIT": "0" if self.sanitizer else str(self.memory_limit),
                    "PYTHONPATH": self.engine_root + (os.pathsep + env["PYTHONPATH"]
                                                      if env.get("PYTHONPATH") else "")})
        if self.sanitizer:
            env["FUZZ_FAULTHANDLER"] = "0"      # the sanitizer's own SEGV handler reports
            cc = os.environ.get("CC", "gcc")
            # our defaults first: options given in the environment come later and win
            if self.sanitizer == "asan":
                lib, var = "libasan.so", "ASAN_OPTIONS"
                ours = ["detect_leaks=0", "abort_on_error=1", "halt_on_error=1",
                        "allocator_may_return_null=1",
                        f"max_allocation_size={self.cap + 64 * MiB}",
                        f"hard_rss_limit_mb={self.memory_limit // MiB}",
                        "handle_segv=1", "handle_abort=1", "detect_stack_use_after_return=0"]
            else:
                lib, var = "libubsan.so", "UBSAN_OPTIONS"
                ours = ["halt_on_error=1", "abort_on_error=1", "print_stacktrace=1"]
            env[var] = ":".join(ours + ([env[var]] if env.get(var) else []))
            if "LD_PRELOAD" not in self.env and "LD_PRELOAD" not in os.environ:
                try:
                    path = subprocess.run([cc, f"-print-file-name={lib}"], capture_output=True,
                                          text=True, check=True).stdout.strip()
                    if os.path.isabs(path):
                        env["LD_PRELOAD"] = path
                except (OSError, subprocess.CalledProcessError):
                    pass
        env.update(self.env)
        return env


class WorkerDied(Exception):
    pass


class Worker:
    """One long-lived child; restarted after a crash, hang or memory blow-up."""

    def __init__(self, slot, cfg):
        self.slot, self.cfg = slot, cfg
        self.proc = None
        self.served = 0
        self.buf = b""
        self.stderr_path = os.path.join(cfg.workdir, f"worker{slot}.stderr")

    def start(self):
        self.stop()
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([self.cfg.python, "-X", "faulthandler", FUZZ_PY, "--worker"]
                                     if not self.cfg.sanitizer else
                                     [self.cfg.python, FUZZ_PY, "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=self.cfg.child_env(),
                                     cwd=self.cfg.workdir, close_fds=True)
        self.buf = b""
        self.served = 0
        line = self._readline(self.cfg.startup_timeout)
        if line is None or not line.get("ready"):
            tail = self._stderr_tail(0)
            self.stop()
            raise WorkerDied(f"worker failed to start: {line}\n{tail[-3000:]}")
        self.pid = line["pid"]

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.kill()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.stderr.close()
            self.proc = None

    def _dump_traceback(self, pos, wait=2.0):
        """SIGUSR1 (faulthandler in the worker prints every thread's traceback), then wait
        until the dump stops growing."""
        try:
            os.kill(self.proc.pid, signal.SIGUSR1)
        except OSError:
            return
        deadline, size = time.monotonic() + wait, -1
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = os.path.getsize(self.stderr_path)
            if now == size and now > pos:
                return
            size = now

    def _stderr_tail(self, pos):
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(pos)
                return f.read(200000).decode("utf-8", "replace")
        except OSError:
            return ""

    def _readline(self, timeout, watch_rss=None):
        """One JSON line from the worker; None on EOF; 'timeout' / 'rss' when killed."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([fd], [], [], min(left, 0.05))
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
            elif watch_rss and _read_status_kb("VmRSS", self.proc.pid) * 1024 > watch_rss:
                return "rss"
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return {"class": "other_exception", "exc_type": "ProtocolError",
                    "message": line[:500].decode("utf-8", "replace")}

    def run(self, request):
        """Run one request; returns the result dict (with 'class')."""
        if self.proc is None or self.proc.poll() is not None or self.served >= self.cfg.recycle:
            self.start()
        pos = os.path.getsize(self.stderr_path)
        request = dict(request, timeout=self.cfg.timeout)
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.served += 1
        t0 = time.monotonic()
        res = self._readline(self.cfg.timeout, watch_rss=self.cfg.memory_limit)
        elapsed = round(time.monotonic() - t0, 4)
        if res == "timeout":
            self._dump_traceback(pos)
            self.stop()
            tail = self._stderr_tail(pos)
            return {"class": "hang", "elapsed": elapsed,
                    "message": f"no result within {self.cfg.timeout} s",
                    "stderr": tail[-6000:], "origin": _hang_origin(tail)}
        if res == "rss":
            self.stop()
            return {"class": "memory", "elapsed": elapsed,
                    "message": f"worker RSS above {self.cfg.memory_limit} bytes (killed)",
                    "stderr": self._stderr_tail(pos)[-6000:]}
        if res is None:
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = None
            self.stop()
            tail = self._stderr_tail(pos)
            # a blow-up the sanitizer or the allocator stopped is "memory"; an invalid access
            # after a failed allocation is still a crash
            cls = ("memory" if any(m in tail for m in MEMORY_REPORT)
                   and "SEGV" not in tail and "runtime error" not in tail else "crash")
            how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exited with status {code} without a result")
            return {"class": cls, "elapsed": elapsed, "message": how, "returncode": code,
                    "stderr": tail[-8000:], "origin": _crash_origin(tail)}
        tail = self._stderr_tail(pos) if os.path.getsize(self.stderr_path) > pos else ""
        if any(m in tail for m in SANITIZER_REPORT):
            # a sanitizer report on a case the worker survived (recoverable checks)
            self.stop()
            return dict(res, **{"class": "crash", "message": "sanitizer report: " +
                                (res.get("message") or ""), "stderr": tail[-8000:],
                                "origin": _crash_origin(tail), "original_class": res["class"]})
        if res["class"] == "ok" and res.get("peak_rss_delta", 0) > self.cfg.rss_limit:
            res = dict(res, **{"class": "memory", "message": f"peak RSS grew by "
                               f"{res['peak_rss_delta']} bytes, above the {self.cfg.rss_limit}"
                               f"-byte limit"})
        if res["class"] == "memory":
            self.stop()
        return res


def _crash_origin(text):
    """Where a crash happened: the first sanitizer stack frame outside the sanitizer's own
    runtime, else its SUMMARY / runtime-error line, else faulthandler's innermost frame."""
    import re
    m = re.search(r"^(\S+:\d+:\d+: runtime error: .*)$", text, re.M)
    if m:
        return m.group(1)[:200]
    for fn, where in re.findall(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S+)", text):
        if not any(k in where for k in ("sanitizer", "libasan", "libubsan", "asan_")) \
                and not fn.startswith("__interceptor") and not fn.startswith("__sanitizer"):
            kind = re.search(r"ERROR: \w+Sanitizer: ([\w-]+)", text)
            return f"{kind.group(1) + ' ' if kind else ''}{where} in {fn}"[:200]
    m = re.search(r"SUMMARY: \w+Sanitizer: (.*)", text)
    if m:
        return m.group(1).strip()[:200]
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', text)
    if frames:
        f, line, fn = frames[0]                # faulthandler prints the innermost first
        return f"{os.path.relpath(f, ROOT) if f.startswith(ROOT) else f}:{fn}:{line}"
    return "?"


def _hang_origin(text):
    """Where a hung case was: the engine frames of the dumped traceback, outermost first
    (stage > component > ...), as file:function."""
    import re
    block = text.split("Thread 0x")
    block = block[-1] if len(block) > 1 else text
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', block)
    chain = []
    for f, line, fn in reversed(frames):          # faulthandler prints innermost first
        if f"{os.sep}engine{os.sep}" in f:
            where = f"{f.split(os.sep + 'engine' + os.sep, 1)[1]}:{fn}"
            if not chain or chain[-1] != where:
                chain.append(where)
    if chain:
        inner = [m for m in reversed(frames) if f"{os.sep}engine{os.sep}" in m[0]][-1]
        return " > ".join(chain[:4]) + f" (innermost line {inner[1]})"
    return _crash_origin(text)


def signature(rec):
    """What groups findings: class, exception type, where it comes from."""
    origin = rec.get("origin") or "?"
    if rec["class"] in ("other_exception", "engine_error", "memory"):
        origin = ":".join(origin.split(":")[:2])   # file:function, without the line
    if rec["class"] == "hang":
        origin = origin.split(" (innermost")[0]
        origin = " > ".join(origin.split(" > ")[:3])
    return f"{rec['class']} | {rec.get('exc_type', '-')} | {origin}"


class Campaign:
    """Cases [start, start + n) of one seed over ``jobs`` workers; results and reproducers
    under ``out``."""

    def __init__(self, seed, cases, jobs, out, cfg, kinds=KINDS, start=0, progress=True,
                 seeds=None):
        self.seed, self.cases, self.jobs, self.out = seed, cases, jobs, out
        self.cfg, self.kinds, self.start, self.progress = cfg, tuple(kinds), start, progress
        self.seeds = seeds if seeds is not None else build_seeds()
        self.counts = collections.defaultdict(collections.Counter)   # kind -> class -> n
        self.engine_errors = collections.Counter()                    # exc type -> n
        self.stages = collections.Counter()                           # (stage, class) -> n
        self.groups = collections.OrderedDict()                       # signature -> info
        self.slowest = []
        self.lock = threading.Lock()
        self.next = start
        self.done = 0

    def _setup(self):
        os.makedirs(self.out, exist_ok=True)
        for sub in ("cases", "work"):
            shutil.rmtree(os.path.join(self.out, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.out, sub))
        self.cfg.workdir = os.path.join(self.out, "work")
        self.results = open(os.path.join(self.out, "results.jsonl"), "w")

    def _take(self):
        with self.lock:
            if self.next >= self.start + self.cases:
                return None
            i, self.next = self.next, self.next + 1
            return i

    def _record(self, i, kind, seed_name, desc, data, res):
        cls = res["class"]
        rec = {"index": i, "seed": self.seed, "kind": kind, "seed_model": seed_name,
               "mutation": desc, **res}
        with self.lock:
            self.done += 1
            self.counts[kind][cls] += 1
            if cls == "engine_error":
                self.engine_errors[res.get("exc_type", "?")] += 1
            self.stages[(res.get("stage", "?"), cls)] += 1
            slim = {k: rec.get(k) for k in ("index", "kind", "seed_model", "class", "exc_type",
                                            "stage", "elapsed", "peak_rss_delta")}
            slim["mutation"] = desc[:200]
            if cls != "ok":
                slim["message"] = (res.get("message") or "")[:200]
            self.results.write(json.dumps(slim) + "\n")
            self.slowest.append((res.get("elapsed") or 0, i, kind, desc[:120]))
            self.slowest = sorted(self.slowest, reverse=True)[:10]
            if cls in BAD:
                stem = f"{i:07d}-{kind}-{cls}"
                path = os.path.join(self.out, "cases", stem + ".safetensors")
                with open(path, "wb") as f:
                    f.write(data)
                with open(os.path.join(self.out, "cases", stem + ".json"), "w") as f:
                    json.dump(rec, f, indent=1, default=str)
                sig = signature(rec)
                g = self.groups.setdefault(sig, {"count": 0, "kinds": collections.Counter(),
                                                 "first": path, "mutation": desc[:300],
                                                 "message": (res.get("message") or "")[:300],
                                                 "examples": []})
                g["count"] += 1
                g["kinds"][kind] += 1
                if len(g["examples"]) < 5:
                    g["examples"].append(path)

    def _loop(self, slot):
        w = Worker(slot, self.cfg)
        try:
            while True:
                i = self._take()
                if i is None:
                    return
                kind, seed_name, desc, data = make_case(self.seed, i, self.seeds, self.kinds)
                path = os.path.join(self.cfg.workdir, f"case{slot}.safetensors")
                with open(path, "wb") as f:
                    f.write(data)
                res = w.run({"path": path})
                self._record(i, kind, seed_name, desc, data, res)
        except Exception as e:  # noqa: BLE001
            self.error = e
            raise
        finally:
            w.stop()

    def run(self):
        self._setup()
        self.error = None
        t0 = time.monotonic()
        threads = [threading.Thread(target=self._loop, args=(k,), daemon=True)
                   for k in range(self.jobs)]
        for t in threads:
            t.start()
        last = time.monotonic()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=1.0)
            if self.progress and time.monotonic() - last > 10:
                last = time.monotonic()
                bad = sum(c[k] for c in self.counts.values() for k in BAD)
                rate = self.done / max(1e-9, last - t0)
                sys.stderr.write(f"[fuzz] {self.done}/{self.cases} cases, {bad} bad, "
                                 f"{rate:.0f}/s\n")
        self.wall = time.monotonic() - t0
        self.results.close()
        if self.error is not None:
            raise self.error
        self._write_summary()
        return self

    # -- summary ----------------------------------------------------------------------------
    def totals(self):
        t = collections.Counter()
        for c in self.counts.values():
            t.update(c)
        return t

    def table(self):
        cols = CLASSES
        lines = ["| kind | " + " | ".join(cols) + " | total |",
                 "|---|" + "---:|" * (len(cols) + 1)]
        for kind in self.kinds:
            c = self.counts.get(kind, collections.Counter())
            if not sum(c.values()):
                continue
            lines.append(f"| {kind} | " + " | ".join(str(c[k]) for k in cols) +
                         f" | {sum(c.values())} |")
        t = self.totals()
        lines.append("| **total** | " + " | ".join(f"**{t[k]}**" for k in cols) +
                     f" | **{sum(t.values())}** |")
        return "\n".join(lines)

    def _write_summary(self):
        t = self.totals()
        s = {"seed": self.seed, "cases": self.cases, "start": self.start, "jobs": self.jobs,
             "wall_s": round(self.wall, 1), "timeout_s": self.cfg.timeout,
             "cap_bytes": self.cfg.cap, "memory_limit": self.cfg.memory_limit,
             "rss_limit": self.cfg.rss_limit, "sanitizer": self.cfg.sanitizer,
             "python": self.cfg.python, "engine_root": self.cfg.engine_root,
             "totals": dict(t), "counts": {k: dict(v) for k, v in self.counts.items()},
             "engine_error_types": dict(self.engine_errors.most_common()),
             "stages": {f"{st} {cl}": n for (st, cl), n in sorted(self.stages.items())},
             "groups": {k: dict(v, kinds=dict(v["kinds"])) for k, v in self.groups.items()},
             "slowest": self.slowest}
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(s, f, indent=1)
        with open(os.path.join(self.out, "summary.md"), "w") as f:
            f.write(self.report())

    def report(self):
        t = self.totals()
        lines = [f"engine fuzz: seed {self.seed}, cases {self.start}..{self.start + self.cases - 1}"
                 f", {self.jobs} jobs, {self.wall:.0f} s wall, timeout {self.cfg.timeout:g} s, "
                 f"cap {self.cfg.cap} B, sanitizer {self.cfg.sanitizer or 'none'}", "",
                 self.table(), "",
                 "engine_error types: " + ", ".join(f"{k} {v}" for k, v in
                                                    self.engine_errors.most_common()),
                 "where cases ended (stage class: count; done = loaded and ran): " +
                 ", ".join(f"{st} {cl}: {n}" for (st, cl), n in sorted(self.stages.items())), ""]
        if self.groups:
            lines.append(f"findings ({sum(t[k] for k in BAD)} cases, {len(self.groups)} groups):")
            for sig, g in sorted(self.groups.items(), key=lambda kv: -kv[1]["count"]):
                lines += [f"- {sig}: {g['count']} case(s) ({dict(g['kinds'])})",
                          f"    message: {g['message'][:200]}",
                          f"    e.g. {g['mutation'][:200]}",
                          f"    reproducer: {g['first']}"]
        else:
            lines.append("findings: none")
        lines += ["", "slowest cases: " + "; ".join(f"#{i} {kind} {e:.2f}s"
                                                    for e, i, kind, _ in self.slowest[:5])]
        return "\n".join(lines) + "\n"

    def bad_count(self):
        t = self.totals()
        return sum(t[k] for k in BAD)


# =========================================================================================
# Payload runs (tests), replay, CLI.
# =========================================================================================

def run_payloads(payloads, cfg, workdir):
    """Run test payloads (see _inject) through one worker; returns the result dicts."""
    os.makedirs(workdir, exist_ok=True)
    cfg.workdir = workdir
    w = Worker(0, cfg)
    try:
        return [w.run({"inject": p}) for p in payloads]
    finally:
        w.stop()


def replay(path, cap=DEFAULT_CAP, memory_limit=DEFAULT_MEMORY, engine_root=None):
    """Run one file in this process with the traceback shown; returns its class.  Under a
    sanitizer build, run this with the sanitizer's runtime preloaded and memory_limit=0
    (see the module docstring)."""
    if memory_limit:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    engine = _engine(engine_root)
    print(f"engine: {os.path.dirname(engine.__file__)}")
    old = engine.set_limits(max_buffer_bytes=cap)
    try:
        cls, info = classify_call(lambda: execute(path, cap, engine))
    finally:
        engine.set_limits(max_buffer_bytes=old.max_buffer_bytes)
    print(f"class: {cls}")
    for k in ("exc_type", "message", "origin", "raise_site", "outputs", "fill"):
        if k in info:
            print(f"{k}: {info[k]}")
    if "traceback" in info:
        print(info["traceback"])
    elif cls == "engine_error":
        print("(an EngineError: the clean outcome)")
    return cls


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="kinds: " + ", ".join(KINDS))
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--jobs", "-j", type=int, default=max(1, (os.cpu_count() or 2)))
    p.add_argument("--timeout", type=float, default=None,
                   help=f"seconds per case (default {DEFAULT_TIMEOUT:g}; under a sanitizer "
                        f"{SANITIZER_TIMEOUT:g})")
    p.add_argument("--threads", type=int, default=1, help="Session threads in the workers")
    p.add_argument("--memory-limit", type=int, default=DEFAULT_MEMORY // MiB,
                   help="MiB of address space per worker (RLIMIT_AS; under a sanitizer: RSS)")
    p.add_argument("--rss-limit", type=int, default=0,
                   help="MiB a case's peak RSS may grow (default 4 x cap + 256)")
    p.add_argument("--cap", type=int, default=DEFAULT_CAP // MiB,
                   help="ENGINE_MAX_BUFFER_BYTES of the workers, in MiB (default 256)")
    p.add_argument("--out", "-o", default=None,
                   help="output directory (default /tmp/engine-fuzz/<seed>)")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), metavar="KIND",
                   help="mutation kinds to draw from (default: all, listed below)")
    p.add_argument("--sanitizer", choices=("asan", "ubsan", "none", "auto"), default="auto",
                   help="the workers' sanitizer runtime (default auto: the one LD_PRELOAD "
                        "names, else none)")
    p.add_argument("--python", default=sys.executable, help="interpreter of the workers")
    p.add_argument("--engine-root", default=ROOT,
                   help="tree whose engine package the workers import (a sanitizer build)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the workers (repeatable)")
    p.add_argument("--replay", metavar="FILE", help="run one reproducer in this process")
    p.add_argument("--dump-case", type=int, metavar="INDEX",
                   help="write case INDEX of --seed to --out (a file) and print its mutation")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker_main()
        return 0
    if a.replay:
        san = detect_sanitizer() if a.sanitizer == "auto" else a.sanitizer
        cls = replay(a.replay, cap=a.cap * MiB, engine_root=a.engine_root,
                     memory_limit=0 if san not in (None, "none") else a.memory_limit * MiB)
        return 1 if cls in BAD else 0
    if a.dump_case is not None:
        kind, seed_name, desc, data = make_case(a.seed, a.dump_case, build_seeds(), a.kinds)
        path = a.out or f"case-{a.seed}-{a.dump_case}.safetensors"
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {kind} on {seed_name}: {desc}")
        return 0
    env = {}
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    cfg = Config(python=a.python, engine_root=a.engine_root, timeout=a.timeout,
                 memory_limit=a.memory_limit * MiB, rss_limit=a.rss_limit * MiB,
                 cap=a.cap * MiB, sanitizer=None if a.sanitizer == "none" else a.sanitizer,
                 env=env, threads=a.threads)
    out = a.out or os.path.join("/tmp/engine-fuzz", str(a.seed))
    c = Campaign(a.seed, a.cases, a.jobs, out, cfg, kinds=a.kinds, start=a.start).run()
    sys.stdout.write(c.report())
    sys.stdout.write(f"results: {out}/summary.md, {out}/results.jsonl, reproducers in "
                     f"{out}/cases/\n")
    return 1 if c.bad_count() else 0


if __name__ == "__main__":
    sys.exit(main())
